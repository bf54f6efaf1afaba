"""Fréchet distance against closed forms computed independently with numpy and scipy."""

import numpy as np
import pytest
from scipy import linalg

from gen.errors import GenError
from gen.metrics.frechet import frechet_distance, gaussian_statistics


def written_out_frechet(mu1, sigma1, mu2, sigma2):
    """The textbook formula, with scipy's sqrtm and nothing else."""
    root = linalg.sqrtm(sigma1 @ sigma2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2 * root.real))


def test_statistics_are_mean_and_unbiased_covariance():
    features = np.random.default_rng(0).normal(size=(50, 4))
    mu, sigma = gaussian_statistics(features)
    centred = features - features.mean(axis=0)
    np.testing.assert_allclose(mu, features.mean(axis=0))
    np.testing.assert_allclose(sigma, centred.T @ centred / 49)
    assert mu.dtype == np.float64 and sigma.shape == (4, 4)


def test_a_set_against_itself_is_zero():
    features = np.random.default_rng(1).normal(size=(200, 16))
    mu, sigma = gaussian_statistics(features)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)


def test_diagonal_gaussians_match_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    variances1, variances2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 9.0])
    trace_term = np.sum(variances1 + variances2 - 2 * np.sqrt(variances1 * variances2))
    expected = np.sum((mu1 - mu2) ** 2) + trace_term
    distance = frechet_distance(mu1, np.diag(variances1), mu2, np.diag(variances2))
    assert distance == pytest.approx(expected, rel=1e-10)


def test_general_covariances_match_the_written_out_formula():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    sigma1, sigma2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = written_out_frechet(mu1, sigma1, mu2, sigma2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-8)


def test_shifted_samples_are_further_apart_than_same_distribution_samples():
    rng = np.random.default_rng(3)
    reference = gaussian_statistics(rng.normal(size=(500, 8)))
    same = gaussian_statistics(rng.normal(size=(500, 8)))
    shifted = gaussian_statistics(rng.normal(size=(500, 8)) + 1.0)
    assert frechet_distance(*reference, *same) < 0.5 < frechet_distance(*reference, *shifted)


def test_one_image_is_a_user_error():
    with pytest.raises(GenError, match="at least 2"):
        gaussian_statistics(np.zeros((1, 4)))
