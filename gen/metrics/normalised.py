"""FID and KID on features z-scored with the real training images' statistics.

A domain CNN's penultimate features are unnormalised (averages of ReLU outputs, easily in
the thousands), so a raw FID or KID on them carries the network's arbitrary scale: it changes
when the feature network is retrained, widened or swapped, and cannot be compared across
feature networks or data sets. Z-scoring every dimension with the mean and standard deviation
of the real training images' features takes that scale out: the same images give the same
figure whatever the network multiplies its outputs by, and a normalised FID reads as a sum
of squared standard deviations. Measured the same way between real training and real held-out
images, the figure has a floor (what two real samples already differ by), so a synthetic set
reads as "how far above real-vs-real" rather than as a bare number.

The distances themselves are ``gen.metrics.frechet`` and ``gen.metrics.kid``; this module only
standardises what goes into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gen.errors import GenError
from gen.metrics import domain, frechet, kid
from gen.metrics.figures import Report, ReportSettings

# A dimension whose spread on the real training images is below this fraction of the widest
# dimension's (a dead ReLU channel, constant everywhere) is divided by that floor instead of by
# ~0. Relative, so scaling all features leaves the z-scores unchanged.
RELATIVE_STD_FLOOR = 1e-3


def _as_features(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    return features


@dataclass(frozen=True)
class FeatureStandardiser:
    """Z-scores features with the real training images' per-dimension mean and standard deviation."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, real_training_features: np.ndarray) -> FeatureStandardiser:
        """Mean and population standard deviation (ddof 0) per dimension, the std floored.

        The floor is ``RELATIVE_STD_FLOOR`` times the largest standard deviation, so constant
        dimensions don't explode; when every dimension is constant, features are only centred.
        """
        features = _as_features(real_training_features)
        if len(features) < 2:
            raise GenError(
                f"standardising features needs at least 2 real training images, got {len(features)}."
            )
        std = features.std(axis=0)
        widest = float(std.max())
        floor = RELATIVE_STD_FLOOR * widest if widest > 0 else 1.0
        return cls(mean=features.mean(axis=0), std=np.maximum(std, floor))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(features - mean) / std, in float64."""
        features = _as_features(features)
        if features.shape[1] != len(self.mean):
            dims, fitted = features.shape[1], len(self.mean)
            raise ValueError(f"features have {dims} dimensions; the standardiser was fitted on {fitted}")
        return (features - self.mean) / self.std


def normalised_fid(
    real_features: np.ndarray, fake_features: np.ndarray, standardiser: FeatureStandardiser
) -> float:
    """The Fréchet distance between the z-scored real and synthetic features."""
    return frechet.frechet_distance(
        *frechet.gaussian_statistics(standardiser(real_features)),
        *frechet.gaussian_statistics(standardiser(fake_features)),
    )


def normalised_kid(
    real_features: np.ndarray,
    fake_features: np.ndarray,
    standardiser: FeatureStandardiser,
    subsets: int,
    subset_size: int,
    seed: int,
) -> tuple[float, float]:
    """KID mean and std (``gen.metrics.kid``) between the z-scored real and synthetic features."""
    return kid.kernel_inception_distance(
        standardiser(real_features), standardiser(fake_features), subsets, subset_size, seed
    )


def domain_reference(
    classifier: domain.DomainClassifier, real_images_uint8: torch.Tensor, device: str | torch.device
) -> tuple[FeatureStandardiser, np.ndarray]:
    """The standardiser fitted on real training images' domain features, and those features.

    Computed once, then ``normalised_fid(features, fake_features, standardiser)`` measures any
    number of synthetic sets against it (the training loop's cheap evaluation does so).
    """
    features, _ = domain.domain_features_and_probabilities(classifier, real_images_uint8, device=device)
    return FeatureStandardiser.fit(features), features


# How the domain FID and KID rows say they are normalised (the metric names stay as they were).
NORMALISED_FEATURES = "z-scored with real training statistics"
FLOOR_BETWEEN = "real train and real test"


def fid_figure(
    report: Report,
    metric: str,
    class_name: str | None,
    first: np.ndarray,
    second: np.ndarray,
    standardiser: FeatureStandardiser,
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
    distance = normalised_fid(first, second, standardiser)
    report.add(metric, distance, class_name, features=NORMALISED_FEATURES, **row_settings)


def kid_figure(
    report: Report,
    metric: str,
    class_name: str | None,
    first: np.ndarray,
    second: np.ndarray,
    standardiser: FeatureStandardiser,
    settings: ReportSettings,
    **row_settings: Any,
) -> None:
    """One normalised KID row (noted as noisy under 50 images a side), or a note under 2."""
    where = class_name or "overall"
    smallest = min(len(first), len(second))
    if smallest < 2:
        report.notes.append(f"{metric} {where}: not computed; fewer than 2 images on one side.")
        return
    mean, std = normalised_kid(
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


def feature_figures(
    report: Report,
    prefix: str,
    standardiser: FeatureStandardiser,
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
            fid_figure(report, f"{prefix}fid{suffix}", class_name, first, second, standardiser, **counts)
        for suffix, first, second, counts in comparisons:
            kid_figure(
                report, f"{prefix}kid{suffix}", class_name, first, second, standardiser, settings, **counts
            )
