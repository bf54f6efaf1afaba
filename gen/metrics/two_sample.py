"""Could anyone tell them apart? A classifier two-sample test, real against synthetic.

For each class, a small CNN is trained to tell real held-out images from synthetic ones of
that class. The two groups are balanced (the larger is subsampled, seeded) and split into k
stratified folds; each fold is scored by a network trained on the other k-1, so every image
gets an out-of-fold probability of being synthetic. The ROC AUC of those scores is the
figure: 0.5 means the network cannot tell them apart (as two halves of one real set), 1.0
that it always can. A latent diffusion model for blood-cell smears (2025) reports that
haematologists told its images from real ones 52.3% of the time; this is the machine's
version of that question, and a stricter one: the network sees thousands of pixels at once.

Overall: the mean of the per-class AUCs, weighted by each class's number of images. (Pooling
scores across classes would compare outputs of different networks.)

The network is ``gen.metrics.domain``'s CNN, narrower (it has two classes and few images),
trained with the same seeded, augmented recipe; ROC AUC is ``gen.metrics.utility.roc_auc``
(Mann-Whitney U from scipy's ranks: sklearn is not a dependency).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gen.images import write_grid
from gen.metrics.domain import (
    DomainClassifierConfig,
    domain_features_and_probabilities,
    train_domain_classifier,
)
from gen.metrics.figures import Report, ReportSettings
from gen.metrics.utility import roc_auc

CHANNELS = (16, 16, 32, 32)
GRID_COLUMNS = 8


@dataclass
class ClassTwoSample:
    """One class's test: its AUC, group sizes, and each synthetic image's out-of-fold score."""

    class_name: str
    auc: float
    per_group: int  # images of each group used (the smaller group's size)
    folds: int
    synthetic_indices: np.ndarray = field(repr=False)  # into the synthetic images given
    synthetic_scores: np.ndarray = field(repr=False)  # P(synthetic), out of fold

    def most_and_least_synthetic(self, count: int = GRID_COLUMNS) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the synthetic images the network found most synthetic, and least."""
        order = np.argsort(-self.synthetic_scores, kind="stable")
        count = min(count, len(order))
        return self.synthetic_indices[order[:count]], self.synthetic_indices[order[::-1][:count]]


def _stratified_folds(count: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number for each of ``count`` items of one group, shuffled, sizes within one."""
    assignment = np.arange(count) % folds
    rng.shuffle(assignment)
    return assignment


def real_vs_synthetic_network(
    images: torch.Tensor,
    is_synthetic: torch.Tensor,
    *,
    epochs: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """The test's network (two classes, ``CHANNELS`` wide) trained on uint8 images with int64
    labels 1 for synthetic, 0 for real; its second output is P(synthetic)."""
    return train_domain_classifier(
        images,
        is_synthetic,
        2,
        epochs=epochs,
        seed=seed,
        device=device,
        progress=False,
        batch_size=32,
        config=DomainClassifierConfig(num_classes=2, channels=CHANNELS),
    )


def two_sample_class(
    real: torch.Tensor,
    synthetic: torch.Tensor,
    class_name: str,
    *,
    folds: int = 5,
    epochs: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ClassTwoSample | None:
    """The test for one class's uint8 images (N, 3, 64, 64); None with fewer than ``folds``
    images in either group (each fold must hold both)."""
    per_group = min(len(real), len(synthetic))
    if per_group < folds:
        return None
    rng = np.random.default_rng(seed)
    real_indices = np.sort(rng.permutation(len(real))[:per_group])
    synthetic_indices = np.sort(rng.permutation(len(synthetic))[:per_group])
    images = torch.cat([real[torch.from_numpy(real_indices)], synthetic[torch.from_numpy(synthetic_indices)]])
    is_synthetic = np.concatenate([np.zeros(per_group, dtype=bool), np.ones(per_group, dtype=bool)])
    fold_of = np.concatenate(
        [_stratified_folds(per_group, folds, rng), _stratified_folds(per_group, folds, rng)]
    )
    scores = np.zeros(len(images))
    labels = torch.from_numpy(is_synthetic.astype(np.int64))
    for fold in range(folds):
        held_out = fold_of == fold
        train = torch.from_numpy(np.flatnonzero(~held_out))
        model = real_vs_synthetic_network(
            images[train], labels[train], epochs=epochs, seed=seed + fold, device=device
        )
        _, probabilities = domain_features_and_probabilities(
            model, images[torch.from_numpy(np.flatnonzero(held_out))], device=device
        )
        scores[held_out] = probabilities[:, 1]
    auc = roc_auc(scores, is_synthetic)
    assert auc is not None  # both groups are present by construction
    return ClassTwoSample(class_name, auc, per_group, folds, synthetic_indices, scores[is_synthetic])


def two_sample_test(
    real: tuple[torch.Tensor, torch.Tensor],
    synthetic: tuple[torch.Tensor, torch.Tensor],
    class_names: list[str],
    *,
    folds: int = 5,
    epochs: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> list[ClassTwoSample]:
    """Per-class tests of (images, labels) pairs; classes with too few images are left out."""
    results = []
    for label, name in enumerate(class_names):
        found = two_sample_class(
            real[0][real[1] == label],
            synthetic[0][synthetic[1] == label],
            name,
            folds=folds,
            epochs=epochs,
            seed=seed,
            device=device,
        )
        if found is not None:
            results.append(found)
    return results


def overall_auc(results: list[ClassTwoSample]) -> float | None:
    """The per-class AUCs' mean, weighted by each class's images; None without classes."""
    if not results:
        return None
    weights = np.array([r.per_group for r in results], dtype=np.float64)
    return float(np.average([r.auc for r in results], weights=weights))


def write_extremes_grid(result: ClassTwoSample, synthetic: torch.Tensor, path: str | Path) -> None:
    """The synthetic images of a class the network found most synthetic (top row) and least
    synthetic, i.e. most real-looking (bottom row); ``synthetic`` as given to the test."""
    most, least = result.most_and_least_synthetic()
    rows = torch.cat([synthetic[torch.from_numpy(most)], synthetic[torch.from_numpy(least)]])
    labels = ["synthetic:\nmost told\napart", "synthetic:\nleast told\napart"]
    write_grid(rows, len(most), Path(path), row_labels=labels)


def two_sample_figures(
    report: Report,
    folder: Path,
    real: tuple[torch.Tensor, torch.Tensor],
    synthetic: tuple[torch.Tensor, torch.Tensor],
    settings: ReportSettings,
    device: torch.device,
) -> None:
    """two_sample_auc per class and overall (gen.metrics.two_sample), with a grid per class of
    the synthetic images the network found most (top) and least synthetic."""
    results = two_sample_test(
        real,
        synthetic,
        list(report.class_names),
        folds=settings.two_sample_folds,
        epochs=settings.two_sample_epochs,
        seed=settings.seed,
        device=device,
    )
    counted = {"folds": settings.two_sample_folds, "epochs": settings.two_sample_epochs}
    for result in results:
        report.add("two_sample_auc", result.auc, result.class_name, per_group=result.per_group, **counted)
        plot = folder / f"two-sample-{result.class_name}.png"
        label = report.class_names.index(result.class_name)
        write_extremes_grid(result, synthetic[0][synthetic[1] == label], plot)
        report.plots.append(plot.name)
    overall = overall_auc(results)
    if overall is None:
        report.notes.append(
            f"two-sample test: not computed; fewer than {settings.two_sample_folds} images per class."
        )
    else:
        report.add("two_sample_auc", overall, None, per_group=sum(r.per_group for r in results), **counted)
