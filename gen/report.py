"""A model's quality report: every figure the source method reported, measured the same way.

The synthetic side is generated afresh from the model's checkpoint (seeded, so a report can be
repeated); the real side is a held-out folder (``--real``). Figures:

- domain FID, KID and IS, overall and per class, from a small CNN trained on the model's
  training classes (cached per data set fingerprint and recorded in ``classifiers``). FID and
  KID are normalised: computed on features z-scored with the real training images' statistics
  (``gen.metrics.normalised``), so they do not depend on the network's scale, and each comes
  beside its floor, the same figure between real training and real held-out images;
- near copies (``gen.metrics.near_copies``): the share of synthetic images closer to a
  training image, in domain features or in pixels, than 99% of real held-out images come,
  per class and overall, with a grid of the closest synthetic/training pairs per class;
- two-sample AUC (``gen.metrics.two_sample``): how well a small CNN tells synthetic images
  from real held-out ones of the same class (0.5: not at all, 1.0: always), per class and
  overall, with a grid per class of the images it found most and least synthetic;
- Inception FID (pytorch-fid's network and published weights) when the weights are present;
- per-class colour-histogram KL, real against synthetic (150 against 150), beside its floor:
  the same KL between real training and real held-out images of the class;
- classifier utility (optional): one classifier trained on real, synthetic, and both; by
  default the domain CNN's architecture, or (``utility_classifier``, ``gen report --classifier
  ID``) a recorded classifier's, e.g. one found by ``gen search --stage classifier``: its
  architecture is rebuilt from the row and trained in each regime from the same seeded
  initialisation (so the regimes stay comparable), and its recorded weights, as found, are
  scored on the held-out images too (``accuracy_recorded_classifier``);
- Grad-CAM (optional, ``gen.metrics.gradcam``): the real-only utility classifier's class
  activation maps over real and synthetic images, a grid per class, and how alike the mean
  maps of the two are (Pearson correlation), per class and overall;
- curated beside uncurated (optional, ``curated_keep_best``, ``gen report --curated F``): the
  same number of images per class kept as ``gen sample --keep-best F`` keeps them
  (gen.curation), measured by this report's own classifiers, never the curating one (another
  seed, another split): ``curated_``-prefixed domain accuracy on synthetic, domain FID and
  two-sample AUC, shown in report.md beside the uncurated figures.

Each figure becomes a ``reports`` row and a line of report.json / report.md, beside the plots.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gen.checkpoint import file_sha256, load_for_sampling
from gen.data import LabelledImages, load_image_folder
from gen.errors import GenError
from gen.metrics import (
    domain,
    frechet,
    gradcam,
    histogram,
    inception,
    inception_score,
    near_copies,
    normalised,
    two_sample,
    utility,
)
from gen.runtime import cache_dir, resolve_device
from gen.sample import generate, load_generator


@dataclass(frozen=True)
class Figure:
    metric: str
    value: float
    class_name: str | None = None  # None: all classes
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    model_id: int | None
    checkpoint: str
    iteration: int
    class_names: tuple[str, ...]
    settings: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    utility: dict[str, Any] | None = None

    def add(self, metric: str, value: float, class_name: str | None = None, **settings: Any) -> None:
        self.figures.append(Figure(metric, float(value), class_name, settings))


@dataclass(frozen=True)
class ReportSettings:
    n_per_class: int = 300  # synthetic images generated per class
    histogram_n: int = 150  # the source's 150 real against 150 synthetic
    seed: int = 0
    classifier_epochs: int = 15
    utility: bool = False
    utility_epochs: int = 15
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    two_sample_folds: int = 5
    two_sample_epochs: int = 8
    gradcam: bool = False
    utility_classifier: int | None = None  # the classifiers row the utility figures use, if any
    curated_keep_best: float | None = None  # also measure a set curated by gen sample --keep-best


@dataclass(frozen=True)
class UtilityClassifier:
    """A recorded classifier for the utility figures: its row's id and architecture, and its
    weights file (already checked against the row's SHA-256)."""

    id: int
    path: Path
    architecture: dict[str, Any]


def _align(
    real: LabelledImages, class_names: tuple[str, ...], what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a real folder, relabelled to the model's label order."""
    missing = [name for name in class_names if name not in real.class_names]
    if missing:
        raise GenError(
            f"the {what} folder has no class {missing[0]!r}; the model's classes: {', '.join(class_names)}."
        )
    mapping = torch.tensor(
        [class_names.index(name) if name in class_names else -1 for name in real.class_names]
    )
    labels = mapping[real.labels]
    keep = labels >= 0
    return real.images[keep], labels[keep]


class _Steps:
    """One progress line on stderr for the report as a whole: which step runs, how many are done
    and for how long (the steps that train or embed many images show their own bars too)."""

    def __init__(self, names: list[str], enabled: bool) -> None:
        self._bar = tqdm(total=len(names), unit="step", disable=not enabled, dynamic_ncols=True)
        self._started = False

    def start(self, name: str) -> None:
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_description_str(f"report: {name}")

    def close(self, finished: bool = True) -> None:
        if self._started and finished:
            self._bar.update(1)
        self._bar.close()


def report_steps(settings: ReportSettings, has_train: bool, has_weights: bool) -> list[str]:
    """The names of the steps make_report runs with these settings, in order."""
    return [
        "generating synthetic images",
        *(["domain classifier and features", "near copies"] if has_train else []),
        "two-sample test",
        *(["Inception FID"] if has_weights else []),
        "colour histograms",
        *(["utility classifiers"] if settings.utility else []),
        *(["Grad-CAM"] if settings.gradcam else []),
    ]


def _synthetic(state: Any, n: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = load_generator(state, device)
    images, labels = [], []
    for label in range(len(state.class_names)):
        for start in range(0, n, 256):
            indices = list(range(start, min(n, start + 256)))
            images.append(generate(generator, seed, label, indices, device))
            labels.append(torch.full((len(indices),), label))
    return torch.cat(images), torch.cat(labels)


def domain_classifier(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int,
    fingerprint: str,
    settings: ReportSettings,
    device: torch.device,
    progress: bool = True,
) -> tuple[domain.DomainClassifier, Path, bool]:
    """The cached classifier for this training set, trained once: (model, path, was_cached)."""
    config = domain.DomainClassifierConfig(num_classes=num_classes)
    key = f"{fingerprint[:16]}-{num_classes}c-{settings.classifier_epochs}e-s{settings.seed}"
    path = cache_dir() / "classifiers" / f"{key}.pt"
    if path.is_file():
        return domain.load_classifier(path, device), path, True
    model = domain.train_domain_classifier(
        train_images,
        train_labels,
        num_classes,
        epochs=settings.classifier_epochs,
        seed=settings.seed,
        device=device,
        progress=progress,
        config=config,
    )
    domain.save_classifier(model, path)
    return model, path, False


def _real_inception_statistics(
    network: torch.nn.Module, images: torch.Tensor, fingerprint: str, weights_sha: str, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    path = cache_dir() / "fid" / f"{fingerprint[:16]}-{weights_sha[:12]}.npz"
    if path.is_file():
        cached = np.load(path)
        return cached["mu"], cached["sigma"]
    mu, sigma = frechet.gaussian_statistics(inception.inception_features(network, images, device=device))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(handle)
    np.savez(temporary, mu=mu, sigma=sigma)
    os.replace(temporary, path)
    return mu, sigma


# How the domain FID and KID rows say they are normalised (the metric names stay as they were).
NORMALISED_FEATURES = "z-scored with real training statistics"
FLOOR_BETWEEN = "real train and real test"


def _fid(
    report: Report,
    metric: str,
    class_name: str | None,
    first: np.ndarray,
    second: np.ndarray,
    standardiser: normalised.FeatureStandardiser,
    **row_settings: Any,
) -> None:
    """One normalised FID row, or a note when a side has too few images for a stable estimate."""
    dims = first.shape[1]
    smallest = min(len(first), len(second))
    if smallest <= dims:
        report.notes.append(
            f"{metric} {class_name or 'overall'}: not computed; {smallest} images on one side are too few "
            f"for a stable estimate with {dims}-dimensional features (needs more than {dims})."
        )
        return
    distance = normalised.normalised_fid(first, second, standardiser)
    report.add(metric, distance, class_name, features=NORMALISED_FEATURES, **row_settings)


def _kid(
    report: Report,
    metric: str,
    class_name: str | None,
    first: np.ndarray,
    second: np.ndarray,
    standardiser: normalised.FeatureStandardiser,
    settings: ReportSettings,
    **row_settings: Any,
) -> None:
    """One normalised KID row (noted as noisy under 50 images a side), or a note under 2."""
    where = class_name or "overall"
    smallest = min(len(first), len(second))
    if smallest < 2:
        report.notes.append(f"{metric} {where}: not computed; fewer than 2 images on one side.")
        return
    mean, std = normalised.normalised_kid(
        first, second, standardiser, settings.kid_subsets, settings.kid_subset_size, settings.seed
    )
    if smallest < 50:
        report.notes.append(f"{metric} {where}: only {smallest} images per side; the estimate is noisy.")
    report.add(
        metric,
        mean,
        class_name,
        std=std,
        subset_size=min(settings.kid_subset_size, smallest),
        features=NORMALISED_FEATURES,
        **row_settings,
    )


def _feature_scores(
    report: Report,
    prefix: str,
    standardiser: normalised.FeatureStandardiser,
    train: np.ndarray,
    real: np.ndarray,
    fake: np.ndarray,
    labels: tuple[np.ndarray, np.ndarray, np.ndarray],
    settings: ReportSettings,
) -> None:
    """Normalised FID and KID overall and per class, each followed by its real-vs-real floor.

    ``standardiser`` is fitted on ``train``, the real training images' features; each figure
    compares real held-out against synthetic features, its floor real training against real
    held-out ones, both z-scored by it.
    """
    train_labels, real_labels, fake_labels = labels
    groups: list[tuple[str | None, np.ndarray, np.ndarray, np.ndarray]] = [(None, train, real, fake)]
    for label, name in enumerate(report.class_names):
        groups.append(
            (name, train[train_labels == label], real[real_labels == label], fake[fake_labels == label])
        )
    for class_name, train_part, real_part, fake_part in groups:
        floor_counts = {"train": len(train_part), "real": len(real_part), "between": FLOOR_BETWEEN}
        comparisons = (
            ("", real_part, fake_part, {"real": len(real_part), "synthetic": len(fake_part)}),
            ("_floor", train_part, real_part, floor_counts),
        )
        for suffix, first, second, counts in comparisons:
            _fid(report, f"{prefix}fid{suffix}", class_name, first, second, standardiser, **counts)
        for suffix, first, second, counts in comparisons:
            _kid(report, f"{prefix}kid{suffix}", class_name, first, second, standardiser, settings, **counts)


def _near_copy_figures(
    report: Report,
    folder: Path,
    spaces: dict[str, Any],
    labels: tuple[np.ndarray, np.ndarray, np.ndarray],
    images: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """near_copy_share per class and overall (either space), each space's share, and a grid of
    the closest synthetic/training pairs per class (gen.metrics.near_copies)."""
    results = near_copies.near_copies(spaces, labels, list(report.class_names))
    train_images, fake_images = images
    for result in results:
        report.add(
            "near_copy_share",
            result.share,
            result.class_name,
            synthetic=result.synthetic,
            percentile_of_real=1.0,
            **{f"share_{space}": share for space, share in result.share_by_space.items()},
        )
        plot = folder / f"near-copies-{result.class_name}.png"
        near_copies.write_closest_pairs(result, fake_images, train_images, plot)
        if plot.is_file():
            report.plots.append(plot.name)
    if results:
        total = sum(result.synthetic for result in results)
        report.add("near_copy_share", sum(r.near_copies for r in results) / total, None, synthetic=total)


def _two_sample_figures(
    report: Report,
    folder: Path,
    real: tuple[torch.Tensor, torch.Tensor],
    synthetic: tuple[torch.Tensor, torch.Tensor],
    settings: ReportSettings,
    device: torch.device,
) -> None:
    """two_sample_auc per class and overall (gen.metrics.two_sample), with a grid per class of
    the synthetic images the network found most (top) and least synthetic."""
    results = two_sample.two_sample_test(
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
        two_sample.write_extremes_grid(result, synthetic[0][synthetic[1] == label], plot)
        report.plots.append(plot.name)
    overall = two_sample.overall_auc(results)
    if overall is None:
        report.notes.append(
            f"two-sample test: not computed; fewer than {settings.two_sample_folds} images per class."
        )
    else:
        report.add("two_sample_auc", overall, None, per_group=sum(r.per_group for r in results), **counted)


def _gradcam_figures(
    report: Report,
    folder: Path,
    model: torch.nn.Module,
    real: tuple[torch.Tensor, torch.Tensor],
    synthetic: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
) -> None:
    """gradcam_similarity per class and overall (gen.metrics.gradcam: the correlation of the
    mean Grad-CAM maps of real and synthetic images under the real-only utility classifier),
    a grid per class of maps over real (top) and synthetic images, and the mean maps."""
    results = []
    for label, name in enumerate(report.class_names):
        plot = folder / f"gradcam-{name}.png"
        result = gradcam.class_gradcam(
            model,
            real[0][real[1] == label],
            synthetic[0][synthetic[1] == label],
            label,
            name,
            plot,
            device=device,
        )
        results.append(result)
        if plot.is_file():
            report.plots.append(plot.name)
        if result.similarity is None:
            report.notes.append(f"Grad-CAM {name}: no similarity; a side has no images or a flat mean map.")
        else:
            report.add("gradcam_similarity", result.similarity, name, measure="pearson of mean maps")
    measured = [r.similarity for r in results if r.similarity is not None]
    if measured:
        report.add("gradcam_similarity", float(np.mean(measured)), None, measure="mean over classes")
    report.plots.append(gradcam.plot_mean_maps(results, folder / "gradcam-mean-maps.png").name)


def make_report(
    checkpoint: str | Path | dict,
    real_dir: str | Path,
    train_dir: str | Path | None,
    out: str | Path,
    *,
    model_id: int | None = None,
    settings: ReportSettings = ReportSettings(),
    fid_weights: str | Path | None = None,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    on_classifier: Any = None,
    utility_classifier: UtilityClassifier | None = None,
) -> Report:
    """Measure a checkpoint against held-out real images; write report.json, report.md and plots.

    ``train_dir`` holds the real training images (for the domain classifier, the histogram
    floor and classifier utility); without it those figures are left out and a note says so.
    ``on_classifier(path, sha256, architecture, accuracy, fingerprint)`` is called when a new
    domain classifier was trained (the CLI records it in the database). ``utility_classifier``
    replaces the utility figures' architecture (and turns them on).
    """
    out = Path(out)
    if out.exists() and not force:
        raise GenError(f"{out} already exists; pass --force to replace it or choose another --out.")
    torch_device = resolve_device(device)
    if utility_classifier is not None:
        from dataclasses import replace

        settings = replace(settings, utility=True, utility_classifier=utility_classifier.id)
    weights = inception.find_fid_weights(fid_weights)  # a wrong path is said before minutes of work
    state = load_for_sampling(checkpoint)
    class_names = state.class_names
    report = Report(
        model_id=model_id,
        checkpoint=str(state.path),
        iteration=state.iteration,
        class_names=class_names,
        settings=asdict(settings) | {"real": str(Path(real_dir).resolve()), "train": str(train_dir or "")},
    )
    real = load_image_folder(real_dir)
    real_images, real_labels = _align(real, class_names, "--real")
    train = load_image_folder(train_dir) if train_dir else None
    if train is None and settings.gradcam:
        raise GenError("--gradcam needs the real training images: pass --train DIR.")
    if train is None and settings.curated_keep_best is not None:
        raise GenError("--curated needs the real training images: pass --train DIR.")
    steps = _Steps(report_steps(settings, train is not None, weights is not None), progress)
    steps.start("generating synthetic images")
    fake_images, fake_labels = _synthetic(state, settings.n_per_class, settings.seed, torch_device)
    if train is not None and train.fingerprint == real.fingerprint:
        raise GenError("--real and the training folder hold the same images; evaluate on held-out images.")

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # Built beside the target and renamed into place: never half a report folder.
        temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as error:
        raise GenError(f"cannot write a report under {out.parent}: {error.strerror}.") from None
    try:
        # Domain network: features and class probabilities from a CNN trained on the real classes.
        if train is None:
            report.notes.append(
                "no training folder: domain FID/KID/IS, the histogram floor and utility skipped."
            )
        else:
            train_images, train_labels = _align(train, class_names, "training")
            steps.start("domain classifier and features")
            classifier, path, cached = domain_classifier(
                train_images,
                train_labels,
                len(class_names),
                train.fingerprint,
                settings,
                torch_device,
                progress=progress,
            )
            # Domain FID and KID are measured on features z-scored with these (training) statistics.
            standardiser, train_features = normalised.domain_reference(classifier, train_images, torch_device)
            real_features, real_probabilities = domain.domain_features_and_probabilities(
                classifier, real_images, device=torch_device
            )
            fake_features, fake_probabilities = domain.domain_features_and_probabilities(
                classifier, fake_images, device=torch_device
            )
            accuracy = float((real_probabilities.argmax(1) == real_labels.numpy()).mean())
            report.add(
                "domain_classifier_accuracy",
                accuracy,
                None,
                classifier=str(path),
                fingerprint=train.fingerprint,
            )
            if not cached and on_classifier is not None:
                on_classifier(
                    path, file_sha256(path), classifier.config.to_dict(), accuracy, train.fingerprint
                )
            _feature_scores(
                report,
                "domain_",
                standardiser,
                train_features,
                real_features,
                fake_features,
                (train_labels.numpy(), real_labels.numpy(), fake_labels.numpy()),
                settings,
            )
            report.add("domain_is", inception_score.inception_score(fake_probabilities)[0])
            report.add("domain_is_real", inception_score.inception_score(real_probabilities)[0])
            synthetic_accuracy = float((fake_probabilities.argmax(1) == fake_labels.numpy()).mean())
            report.add("domain_classifier_accuracy_on_synthetic", synthetic_accuracy)
            steps.start("near copies")
            _near_copy_figures(
                report,
                temporary,
                {
                    "features": (
                        standardiser(train_features),
                        standardiser(real_features),
                        standardiser(fake_features),
                    ),
                    "pixels": tuple(near_copies.pixels(x) for x in (train_images, real_images, fake_images)),
                },
                (train_labels.numpy(), real_labels.numpy(), fake_labels.numpy()),
                (train_images, fake_images),
            )

        # Could a small CNN tell synthetic images from real held-out ones of the same class?
        steps.start("two-sample test")
        _two_sample_figures(
            report, temporary, (real_images, real_labels), (fake_images, fake_labels), settings, torch_device
        )

        if settings.curated_keep_best is not None and train is not None:
            _curated_figures(
                report,
                checkpoint,
                train_dir,
                settings,
                classifier,
                standardiser,
                (real_images, real_labels),
                real_features,
                torch_device,
                progress,
            )

        # Inception FID: only with the published weights, never with stand-ins.
        if weights is None:
            report.notes.append(inception.missing_weights_message())
        else:
            steps.start("Inception FID")
            network = inception.load_fid_inception(weights, torch_device)
            mu, sigma = _real_inception_statistics(
                network, real_images, real.fingerprint, file_sha256(weights), torch_device
            )
            fake_mu, fake_sigma = frechet.gaussian_statistics(
                inception.inception_features(network, fake_images, device=torch_device, progress=progress)
            )
            report.add("fid", frechet.frechet_distance(mu, sigma, fake_mu, fake_sigma), weights=weights.name)
            if min(len(real_images), len(fake_images)) <= inception.FEATURE_DIM:
                report.notes.append(
                    f"Inception FID from fewer than {inception.FEATURE_DIM + 1} images per side is biased "
                    "upwards; compare it only with FIDs from as many images."
                )

        # Colour histograms, 150 against 150 per class, beside the real-against-real floor.
        steps.start("colour histograms")
        comparisons = histogram.per_class_histogram_kl(
            real_images,
            real_labels,
            fake_images,
            fake_labels,
            list(class_names),
            settings.histogram_n,
            settings.seed,
        )
        floors = {}
        if train is not None:
            floors = {
                c.class_name: c
                for c in histogram.per_class_histogram_kl(
                    train_images,
                    train_labels,
                    real_images,
                    real_labels,
                    list(class_names),
                    settings.histogram_n,
                    settings.seed,
                )
            }
        for comparison in comparisons:
            name = comparison.class_name
            for channel, value in comparison.kl.items():
                metric = "histogram_kl" if channel == "mean" else f"histogram_kl_{channel}"
                report.add(
                    metric, value, name, real=comparison.real_count, synthetic=comparison.synthetic_count
                )
            report.notes.extend(f"histogram {name}: {note}" for note in comparison.notes)
            if name in floors:
                report.add(
                    "histogram_kl_floor", floors[name].kl["mean"], name, between="real train and real test"
                )
            plot = temporary / f"histogram-{name}.png"
            histogram.plot_histograms(
                comparison.real_histograms,
                comparison.synthetic_histograms,
                f"{name}: real (solid) vs synthetic (dashed), KL {comparison.kl['mean']:.4f}",
                plot,
            )
            report.plots.append(plot.name)

        # Classifier utility: does adding synthetic images help a classifier on real test images?
        utility_models: dict[str, torch.nn.Module] = {}
        if settings.utility:
            if train is None:
                raise GenError("--utility needs the real training images: pass --train DIR.")
            steps.start("utility classifiers")
            build = None
            if utility_classifier is not None:
                build = _recorded_classifier_figures(
                    report,
                    utility_classifier,
                    class_names,
                    (real_images, real_labels),
                    settings,
                    torch_device,
                )
            results = utility.classifier_utility(
                (train_images, train_labels),
                (fake_images, fake_labels),
                (real_images, real_labels),
                len(class_names),
                list(class_names),
                epochs=settings.utility_epochs,
                seed=settings.seed,
                device=torch_device,
                progress=progress,
                models=utility_models,
                build=build,
            )
            report.utility = results
            for regime, result in results.items():
                report.add(f"accuracy_{regime}", result["accuracy"], train_count=result["train_count"])
                report.add(f"macro_f1_{regime}", result["macro_f1"])
                for name, auc in result["roc_auc"].items():
                    if auc is not None:
                        report.add(f"roc_auc_{regime}", auc, name)
                plot = temporary / f"confusion-{regime}.png"
                utility.plot_confusion_matrix(
                    np.array(result["confusion_matrix"]), list(class_names), plot, f"trained on {regime}"
                )
                report.plots.append(plot.name)

        # Grad-CAM: does the classifier look at the same places in synthetic as in real images?
        if settings.gradcam:
            if train is None:
                raise GenError("--gradcam needs the real training images: pass --train DIR.")
            steps.start("Grad-CAM")
            # The utility classifier trained on real images only; trained here as utility would
            # train it when --utility did not run.
            explained = utility_models.get("real_only")
            if explained is None:
                explained = domain.train_domain_classifier(
                    train_images,
                    train_labels,
                    len(class_names),
                    epochs=settings.utility_epochs,
                    seed=settings.seed,
                    device=torch_device,
                    progress=progress,
                )
            _gradcam_figures(
                report,
                temporary,
                explained,
                (real_images, real_labels),
                (fake_images, fake_labels),
                torch_device,
            )

        steps.close()
        (temporary / "report.json").write_text(json.dumps(report_json(report), indent=2) + "\n")
        (temporary / "report.md").write_text(report_markdown(report))
        if out.exists():
            shutil.rmtree(out)
        os.replace(temporary, out)
    except BaseException:
        steps.close(finished=False)
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return report


CURATED_METRICS = ("domain_classifier_accuracy_on_synthetic", "domain_fid", "two_sample_auc")


def _curated_figures(
    report: Report,
    checkpoint: str | Path | dict,
    train_dir: str | Path | None,
    settings: ReportSettings,
    classifier: domain.DomainClassifier,
    standardiser: normalised.FeatureStandardiser,
    real: tuple[torch.Tensor, torch.Tensor],
    real_features: np.ndarray,
    device: torch.device,
    progress: bool,
) -> None:
    """The ``curated_`` figures: n_per_class images per class kept of ceil(n / F) candidates by
    gen.curation's own classifier, scored by this report's (another seed and split)."""
    from gen.checkpoint import load_checkpoint
    from gen.curation import CurationSettings, Curator, plan_class

    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, device)
    curation = CurationSettings(
        keep_best=settings.curated_keep_best, classifier_epochs=settings.classifier_epochs
    )
    curator = Curator(state, curation, device, train_dir=train_dir, progress=progress)
    generator = load_generator(load_for_sampling(state), device)
    images, labels = [], []
    for label, name in enumerate(report.class_names):
        plan = plan_class(
            curator,
            generate,
            generator,
            class_name=name,
            label=label,
            seed=settings.seed,
            n=settings.n_per_class,
            resumed=set(),
            batch_size=256,
            device=device,
        )
        for _, pixels in plan.kept_batches(generate, generator, settings.seed, label, device):
            images.append(pixels)
            labels.append(torch.full((len(pixels),), label))
    curated_images, curated_labels = torch.cat(images), torch.cat(labels)
    counted = {
        "keep_best": settings.curated_keep_best,
        "curating_classifier": curator.record(0)["classifier"],
    }
    features, probabilities = domain.domain_features_and_probabilities(
        classifier, curated_images, device=device
    )
    accuracy = float((probabilities.argmax(1) == curated_labels.numpy()).mean())
    report.add("curated_domain_classifier_accuracy_on_synthetic", accuracy, **counted)
    _fid(report, "curated_domain_fid", None, real_features, features, standardiser, **counted)
    results = two_sample.two_sample_test(
        real,
        (curated_images, curated_labels),
        list(report.class_names),
        folds=settings.two_sample_folds,
        epochs=settings.two_sample_epochs,
        seed=settings.seed,
        device=device,
    )
    for result in results:
        report.add("curated_two_sample_auc", result.auc, result.class_name, **counted)
    overall = two_sample.overall_auc(results)
    if overall is not None:
        report.add("curated_two_sample_auc", overall, None, **counted)


def side_by_side(report: Report) -> list[tuple[str, str, str, str]]:
    """(metric, class or "overall", uncurated, curated) for each curated figure."""
    values = {(f.metric, f.class_name): f.value for f in report.figures}
    rows = []
    for figure in report.figures:
        if figure.metric.startswith("curated_"):
            plain = values.get((figure.metric.removeprefix("curated_"), figure.class_name))
            shown = "-" if plain is None else f"{plain:.4f}"
            rows.append(
                (
                    figure.metric.removeprefix("curated_"),
                    figure.class_name or "overall",
                    shown,
                    f"{figure.value:.4f}",
                )
            )
    return rows


def _recorded_classifier_figures(
    report: Report,
    recorded: UtilityClassifier,
    class_names: tuple[str, ...],
    test_real: tuple[torch.Tensor, torch.Tensor],
    settings: ReportSettings,
    device: torch.device,
) -> Any:
    """Score the recorded classifier's weights on the held-out images (a figure) and return
    what builds its architecture afresh for the utility regimes (any kind gen.classifiers
    builds: a searched one, the simple CNN, a torchvision ResNet)."""
    from gen.classifiers import build_network, load_network

    classes = recorded.architecture.get("classes")
    if classes is not None and tuple(classes) != tuple(class_names):
        raise GenError(
            f"classifier {recorded.id} was trained on classes {', '.join(classes)}; "
            f"the model's are {', '.join(class_names)}."
        )
    model = load_network(recorded.path, recorded.architecture, device)
    if model.config.num_classes != len(class_names):
        raise GenError(
            f"classifier {recorded.id} tells {model.config.num_classes} classes apart; "
            f"the model has {len(class_names)}."
        )
    _, probabilities = domain.domain_features_and_probabilities(model, test_real[0], device=device)
    scored = utility.evaluate_predictions(probabilities, test_real[1].numpy(), list(class_names))
    report.add("accuracy_recorded_classifier", scored["accuracy"], classifier=recorded.id)
    return lambda: build_network(recorded.architecture, settings.seed)


def report_json(report: Report) -> dict[str, Any]:
    return {
        "model": report.model_id,
        "checkpoint": report.checkpoint,
        "iteration": report.iteration,
        "classes": list(report.class_names),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": report.settings,
        "figures": [asdict(figure) for figure in report.figures],
        "notes": report.notes,
        "plots": report.plots,
        "utility": report.utility,
    }


def table_rows(report: Report) -> list[tuple[str, str, str]]:
    """(metric, class or "overall", value) for printing, in report order."""
    return [(f.metric, f.class_name or "overall", f"{f.value:.4f}") for f in report.figures]


def report_markdown(report: Report) -> str:
    lines = [
        f"# Quality report: model {report.model_id if report.model_id is not None else '-'}",
        "",
        f"Checkpoint `{report.checkpoint}` (iteration {report.iteration}); "
        f"{report.settings['n_per_class']} synthetic images per class against `{report.settings['real']}`.",
        "",
        "| metric | class | value |",
        "|---|---|---|",
        *(f"| {metric} | {where} | {value} |" for metric, where, value in table_rows(report)),
        "",
    ]
    compared = side_by_side(report)
    if compared:
        lines += [
            f"## Curated against uncurated (keep the best {report.settings['curated_keep_best']:g})",
            "",
            "| metric | class | uncurated | curated |",
            "|---|---|---|---|",
            *(f"| {metric} | {where} | {plain} | {curated} |" for metric, where, plain, curated in compared),
            "",
        ]
    if report.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in report.notes), ""]
    if report.plots:
        lines += ["## Plots", "", *(f"![{plot}]({plot})" for plot in report.plots), ""]
    return "\n".join(lines)
