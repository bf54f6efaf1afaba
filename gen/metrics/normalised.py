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

import numpy as np
import torch

from gen.errors import GenError
from gen.metrics import domain, frechet, kid

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
