"""KID against a loop-by-loop unbiased MMD^2 that is obviously right, and its basic behaviour."""

import itertools

import numpy as np
import pytest

from gen.errors import GenError
from gen.metrics import kid
from gen.metrics.kid import kernel_inception_distance


def loop_unbiased_mmd2(x, y):
    """Unbiased MMD^2, one pair at a time, k(a, b) = (a.b / d + 1)^3."""
    d = x.shape[1]

    def k(a, b):
        return (sum(ai * bi for ai, bi in zip(a, b, strict=True)) / d + 1) ** 3

    m = len(x)
    within_x = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    within_y = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    across = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return within_x + within_y - 2 * across


def test_one_subset_holding_everything_matches_the_loop():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(7, 3)), rng.normal(loc=0.5, size=(7, 3))
    mean, std = kernel_inception_distance(real, fake, num_subsets=1, subset_size=7)
    assert mean == pytest.approx(loop_unbiased_mmd2(real, fake), rel=1e-10)
    assert std == 0.0


def test_subset_size_is_clipped_to_the_smaller_set():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(6, 3)), rng.normal(size=(9, 3))
    # Every subset holds all 6 real points; only the choice of 6 of the 9 synthetic ones varies.
    mean, _ = kernel_inception_distance(real, fake, num_subsets=5, subset_size=1000, seed=3)
    state = np.random.RandomState(3)
    expected = []
    for _ in range(5):
        real_index = state.choice(6, 6, replace=False)
        fake_index = state.choice(9, 6, replace=False)
        expected.append(loop_unbiased_mmd2(real[real_index], fake[fake_index]))
    assert mean == pytest.approx(np.mean(expected), rel=1e-10)


def test_precomputed_and_per_subset_kernels_agree(monkeypatch):
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(60, 8)), rng.normal(size=(50, 8))
    precomputed = kernel_inception_distance(real, fake, num_subsets=20, subset_size=30, seed=4)
    monkeypatch.setattr(kid, "MAX_PRECOMPUTED_KERNEL_ENTRIES", 0)
    per_subset = kernel_inception_distance(real, fake, num_subsets=20, subset_size=30, seed=4)
    np.testing.assert_allclose(precomputed, per_subset, rtol=1e-10, atol=1e-14)


def test_same_distribution_is_near_zero_and_shifted_is_clearly_positive():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(400, 16))
    same_sample, shifted_sample = rng.normal(size=(400, 16)), rng.normal(size=(400, 16)) + 0.5
    same, _ = kernel_inception_distance(real, same_sample, num_subsets=20, subset_size=200)
    shifted, _ = kernel_inception_distance(real, shifted_sample, num_subsets=20, subset_size=200)
    assert abs(same) < 0.01
    assert shifted > 0.1
    assert shifted > 20 * abs(same)


def test_same_seed_same_result():
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(40, 4)), rng.normal(size=(40, 4))
    first = kernel_inception_distance(real, fake, num_subsets=10, subset_size=20, seed=7)
    assert kernel_inception_distance(real, fake, num_subsets=10, subset_size=20, seed=7) == first


def test_one_image_is_a_user_error():
    with pytest.raises(GenError, match="at least 2"):
        kernel_inception_distance(np.zeros((1, 4)), np.zeros((10, 4)))
