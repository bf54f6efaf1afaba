"""Kernel Inception Distance (Bińkowski et al., 2018, "Demystifying MMD GANs").

KID is the unbiased estimate of the squared maximum mean discrepancy between real and
synthetic features under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
random equal-sized subsets of both sets; the spread over subsets is reported as its std
(population std, ddof 0, as torch-fidelity reports it).
Unlike FID it is unbiased, so it is fair to compare across sample sizes, and it can be slightly
negative when the two sets come from the same distribution. Subsets are drawn as
torch-fidelity draws them: ``np.random.RandomState(seed).choice(n, size, replace=False)`` for
one set then the other, per subset.

Any feature network works: Inception pool3 for KID proper, or the domain classifier.
"""

from __future__ import annotations

import numpy as np

from gen.errors import GenError

# Above this many pairwise kernel entries (float64: 8 bytes each) the Gram matrices over all
# features are too big to precompute, and each subset's kernels are computed on their own.
MAX_PRECOMPUTED_KERNEL_ENTRIES = 40_000_000


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for every row pair: (len(x), len(y))."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def unbiased_mmd2(kernel_xx: np.ndarray, kernel_yy: np.ndarray, kernel_xy: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-sized samples from their kernel matrices.

    Within-set sums leave out the diagonal (a point compared with itself), which is what makes
    the estimate unbiased.
    """
    m = kernel_xx.shape[0]
    within_x = (kernel_xx.sum() - np.trace(kernel_xx)) / (m * (m - 1))
    within_y = (kernel_yy.sum() - np.trace(kernel_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * kernel_xy.mean())


def kernel_inception_distance(
    features_real: np.ndarray,
    features_fake: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID mean and std over ``num_subsets`` random subsets of ``subset_size`` points per side.

    ``subset_size`` is clipped to the smaller set, so small sets still get a number (with every
    subset then holding all of the smaller set).
    """
    real = np.asarray(features_real, dtype=np.float64)
    fake = np.asarray(features_fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {real.shape} and {fake.shape}")
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        counts = f"{len(real)} real and {len(fake)} synthetic"
        raise GenError(f"KID needs at least 2 images per set, got {counts}.")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be at least 1, got {num_subsets}")

    rng = np.random.RandomState(seed)
    subsets = [
        (rng.choice(len(real), size, replace=False), rng.choice(len(fake), size, replace=False))
        for _ in range(num_subsets)
    ]
    # Many overlapping subsets of a moderate set: one Gram matrix per pair of sets, then every
    # subset is a lookup, instead of num_subsets * 3 matrix products of size x D x size.
    precompute = (len(real) + len(fake)) ** 2 <= MAX_PRECOMPUTED_KERNEL_ENTRIES and num_subsets > 1
    if precompute:
        gram_rr = polynomial_kernel(real, real)
        gram_ff = polynomial_kernel(fake, fake)
        gram_rf = polynomial_kernel(real, fake)

    values = np.empty(num_subsets)
    for position, (real_index, fake_index) in enumerate(subsets):
        if precompute:
            kernel_xx = gram_rr[np.ix_(real_index, real_index)]
            kernel_yy = gram_ff[np.ix_(fake_index, fake_index)]
            kernel_xy = gram_rf[np.ix_(real_index, fake_index)]
        else:
            x, y = real[real_index], fake[fake_index]
            kernel_xx, kernel_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
            kernel_xy = polynomial_kernel(x, y)
        values[position] = unbiased_mmd2(kernel_xx, kernel_yy, kernel_xy)
    return float(values.mean()), float(values.std())
