"""Classifier utility: are the synthetic images worth training on?

The source thesis's final test: a classifier trained on the 800 real images plus 16,000
synthetic ones reached 99.6% accuracy. Here one classifier architecture (the domain CNN of
``gen.metrics.domain``) is trained three times from the same seeded initialisation, on real
images only, on synthetic images only, and on both, and each is tested on held-out real
images. Synthetic-only accuracy near real-only accuracy means the generator captured what
tells the classes apart; real+synthetic above real-only means the images add something.

All three regimes train for the same number of epochs, so a larger training set also gets
more optimiser steps; that is the comparison a user makes when adding synthetic data.

Reported per regime: accuracy, macro F1, one-vs-rest ROC AUC per class (from the predicted
probability of that class), and the confusion matrix (rows: true class; columns: predicted).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from gen.errors import GenError
from gen.metrics._plotting import new_figure, save_png
from gen.metrics.domain import domain_features_and_probabilities, train_domain_classifier
from gen.metrics.figures import Report, ReportSettings

REGIMES = ("real_only", "synthetic_only", "real_plus_synthetic")

LabelledSet = tuple[torch.Tensor, torch.Tensor]  # uint8 images (N, 3, 64, 64), int64 labels (N,)


def roc_auc(scores: np.ndarray, is_positive: np.ndarray) -> float | None:
    """Area under the ROC curve; None when only one of the two groups is present.

    Computed as the Mann-Whitney U statistic over n_pos * n_neg: the chance that a random
    positive scores above a random negative, ties counting half (average ranks do that).
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_positive = np.asarray(is_positive, dtype=bool)
    positives = int(is_positive.sum())
    negatives = len(is_positive) - positives
    if positives == 0 or negatives == 0:
        return None
    rank_sum = rankdata(scores)[is_positive].sum()
    u_statistic = rank_sum - positives * (positives + 1) / 2
    return float(u_statistic / (positives * negatives))


def confusion_matrix(true_labels: np.ndarray, predicted_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; rows are true classes, columns predictions."""
    true_labels = np.asarray(true_labels, dtype=np.int64)
    predicted_labels = np.asarray(predicted_labels, dtype=np.int64)
    flat = np.bincount(true_labels * num_classes + predicted_labels, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_f1(matrix: np.ndarray) -> np.ndarray:
    """F1 of each class (float64, in the matrix's order); a class never predicted and never
    present scores 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positives = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    denominator = predicted + actual
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted + actual), with 0/0 read as 0.
    return np.divide(
        2 * true_positives, denominator, out=np.zeros_like(true_positives), where=denominator > 0
    )


def macro_f1(matrix: np.ndarray) -> float:
    """Unweighted mean over classes of F1; a class never predicted and never present scores 0."""
    return float(per_class_f1(matrix).mean())


def evaluate_predictions(
    probabilities: np.ndarray, true_labels: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Accuracy, macro F1, per-class ROC AUC and confusion matrix of (N, C) class probabilities."""
    true_labels = np.asarray(true_labels, dtype=np.int64)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(true_labels, predicted, len(class_names))
    aucs = {
        name: roc_auc(probabilities[:, label], true_labels == label) for label, name in enumerate(class_names)
    }
    defined = [value for value in aucs.values() if value is not None]
    return {
        "accuracy": float((predicted == true_labels).mean()),
        "macro_f1": macro_f1(matrix),
        "roc_auc": aucs,
        "macro_roc_auc": float(np.mean(defined)) if defined else None,
        "confusion_matrix": matrix.tolist(),
    }


def classifier_utility(
    train_real: LabelledSet,
    train_synthetic: LabelledSet,
    test_real: LabelledSet,
    num_classes: int,
    class_names: list[str],
    *,
    epochs: int = 20,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    models: dict[str, torch.nn.Module] | None = None,
    build: Callable[[], torch.nn.Module] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train on each regime in ``REGIMES`` and test on ``test_real``; ``models``, if given,
    receives each regime's trained classifier (Grad-CAM explains the real_only one).
    ``build``, if given, makes the freshly initialised network each regime trains (the same
    seeded weights each time) instead of the domain CNN.

    Returns {regime: {"train_count", "accuracy", "macro_f1", "roc_auc" {class: AUC or None},
    "macro_roc_auc", "confusion_matrix" (list of lists)}}.
    """
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    for name, (images, _labels) in (("real training", train_real), ("synthetic", train_synthetic)):
        if len(images) == 0:
            raise GenError(f"classifier utility needs {name} images, got none.")
    test_images, test_labels = test_real
    if len(test_images) == 0:
        raise GenError("classifier utility needs held-out real test images, got none.")
    training_sets = {
        "real_only": train_real,
        "synthetic_only": train_synthetic,
        "real_plus_synthetic": (
            torch.cat([train_real[0], train_synthetic[0]]),
            torch.cat([train_real[1], train_synthetic[1]]),
        ),
    }
    results = {}
    for regime in REGIMES:
        images, labels = training_sets[regime]
        model = train_domain_classifier(
            images,
            labels,
            num_classes,
            epochs=epochs,
            seed=seed,
            device=device,
            progress=progress,
            model=build() if build is not None else None,
        )
        if models is not None:
            models[regime] = model
        _, probabilities = domain_features_and_probabilities(model, test_images, device=device)
        results[regime] = {"train_count": len(images)} | evaluate_predictions(
            probabilities, test_labels.numpy(), class_names
        )
    return results


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], path: str | Path, title: str) -> Path:
    """A PNG of the confusion matrix, counts written in each cell. Returns the path."""
    matrix = np.asarray(matrix)
    size = 1.2 + 0.9 * len(class_names)
    figure = new_figure(size + 1.5, size + 0.8)
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax, shrink=0.8)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    threshold = matrix.max() / 2 if matrix.size else 0
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            value = matrix[row, column]
            ax.text(
                column,
                row,
                str(value),
                ha="center",
                va="center",
                color="white" if value > threshold else "black",
            )
    ax.set_title(title)
    return save_png(figure, path)


def utility_figures(
    report: Report,
    folder: Path,
    sets: tuple[LabelledSet, LabelledSet, LabelledSet],
    settings: ReportSettings,
    device: torch.device,
    progress: bool,
    *,
    models: dict[str, torch.nn.Module],
    build: Callable[[], torch.nn.Module] | None,
) -> None:
    """The report's utility figures: a classifier trained on real, on synthetic and on both
    (``sets``: real training, synthetic, real held-out), each tested on the held-out images:
    accuracy, macro F1 and ROC AUC per class, and a confusion matrix plot per regime."""
    class_names = list(report.class_names)
    results = classifier_utility(
        *sets,
        len(class_names),
        class_names,
        epochs=settings.utility_epochs,
        seed=settings.seed,
        device=device,
        progress=progress,
        models=models,
        build=build,
    )
    report.utility = results
    for regime, result in results.items():
        report.add(f"accuracy_{regime}", result["accuracy"], train_count=result["train_count"])
        report.add(f"macro_f1_{regime}", result["macro_f1"])
        for name, auc in result["roc_auc"].items():
            if auc is not None:
                report.add(f"roc_auc_{regime}", auc, name)
        plot = folder / f"confusion-{regime}.png"
        plot_confusion_matrix(np.array(result["confusion_matrix"]), class_names, plot, f"trained on {regime}")
        report.plots.append(plot.name)
