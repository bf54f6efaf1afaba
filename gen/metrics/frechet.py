"""Fréchet distance between two sets of features, each summarised as a Gaussian.

The distance itself is pytorch-fid's ``calculate_frechet_distance`` (Dougal Sutherland's
stable version), so a number printed here is the number pytorch-fid would print for the
same features. This module only adds the summary statistics and a plain float result. Which
network made the features (Inception for FID proper, the domain classifier for the cheaper
domain FID of the source thesis) is the caller's choice.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

import gen._torchvision  # noqa: F401  (before pytorch_fid, which imports torchvision)
from gen.errors import GenError

# isort: split
from pytorch_fid.fid_score import calculate_frechet_distance


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64, as pytorch-fid computes them."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    if features.shape[0] < 2:
        raise GenError(f"a Fréchet distance needs at least 2 images per set, got {features.shape[0]}.")
    # rowvar=False: rows are images; np.cov's default unbiased (N - 1) matches pytorch-fid.
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), via pytorch-fid.

    Raises GenError when the square root has a large imaginary part, which in practice means
    far too few images for the feature dimension.
    """
    with warnings.catch_warnings():
        # pytorch-fid 0.3.0 passes sqrtm's `disp`, deprecated in SciPy 1.17 (still honoured there).
        warnings.filterwarnings("ignore", message=".*`disp` argument", category=DeprecationWarning)
        # A singular covariance (dead ReLU features, fewer images than dimensions) is handled
        # by pytorch-fid itself, which adds a small offset; scipy's warning about it is noise.
        warnings.filterwarnings("ignore", category=scipy.linalg.LinAlgWarning)
        try:
            distance = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
        except ValueError as error:
            if "Imaginary component" not in str(error):
                raise
            raise GenError(
                f"the Fréchet distance is numerically undefined for these features ({error}); "
                "use more images per set."
            ) from error
    # A squared distance: rounding can leave an exact match a hair below zero (about -1e-14).
    return max(float(distance), 0.0)
