"""Inception Score (Salimans et al., 2016) from a classifier's class probabilities.

IS = exp(E_x KL(p(y|x) || p(y))): high when each image is confidently one class and the
classes are evenly used; at most the number of classes. As in the source thesis the
probabilities come from the domain classifier trained on the real classes
(``gen.metrics.domain``), not from ImageNet Inception, whose 1,000 classes do not include cell
types; an IS computed this way is only comparable with others computed by the same classifier.
The images are cut into ``splits`` consecutive groups, a score is taken per group, and the
mean and (population) std over groups are reported, as in the original code.
"""

from __future__ import annotations

import numpy as np
from scipy.special import rel_entr

from gen.errors import GenError


def inception_score(probabilities: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Mean and std of the Inception Score over ``splits`` groups of rows of (N, C) probabilities.

    ``splits`` is lowered to N when there are fewer images than splits.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be (N, C), got shape {probabilities.shape}")
    if len(probabilities) == 0:
        raise GenError("the Inception Score needs at least one image.")
    if (probabilities < 0).any() or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("each row of probabilities must be non-negative and sum to 1")
    scores = []
    for group in np.array_split(probabilities, min(splits, len(probabilities))):
        marginal = group.mean(axis=0, keepdims=True)
        # rel_entr gives 0 for 0 * log(0 / q), the limit, where a plain log would give nan.
        kl_per_image = rel_entr(group, marginal).sum(axis=1)
        scores.append(np.exp(kl_per_image.mean()))
    return float(np.mean(scores)), float(np.std(scores))
