"""Normalised FID and KID against z-scoring written out by hand, closed forms and scale changes."""

import numpy as np
import pytest
import torch

from gen.errors import GenError
from gen.metrics.domain import build_classifier, domain_features_and_probabilities
from gen.metrics.frechet import frechet_distance, gaussian_statistics
from gen.metrics.kid import kernel_inception_distance
from gen.metrics.normalised import (
    RELATIVE_STD_FLOOR,
    FeatureStandardiser,
    domain_reference,
    normalised_fid,
    normalised_kid,
)


def feature_sets(seed: int = 0, dims: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training, real and synthetic features on CNN-like scales: offsets and spreads per dimension."""
    rng = np.random.default_rng(seed)
    offsets, spreads = rng.uniform(100, 3000, size=dims), rng.uniform(5, 500, size=dims)
    train = offsets + spreads * rng.normal(size=(300, dims))
    real = offsets + spreads * rng.normal(size=(250, dims))
    fake = offsets + spreads * (rng.normal(size=(200, dims)) * 1.2 + 0.3)
    return train, real, fake


def z_scored(features: np.ndarray, train: np.ndarray) -> np.ndarray:
    return (features - train.mean(axis=0)) / train.std(axis=0)


def test_the_standardiser_is_the_training_mean_and_population_std():
    train, real, _ = feature_sets()
    standardiser = FeatureStandardiser.fit(train)
    np.testing.assert_allclose(standardiser.mean, train.mean(axis=0))
    np.testing.assert_allclose(standardiser.std, np.sqrt(((train - train.mean(axis=0)) ** 2).mean(axis=0)))
    np.testing.assert_allclose(standardiser(real), z_scored(real, train))
    standardised_train = standardiser(train)
    np.testing.assert_allclose(standardised_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(standardised_train.std(axis=0), 1)


def test_normalised_fid_is_frechet_distance_of_hand_z_scored_features():
    train, real, fake = feature_sets(1)
    expected = frechet_distance(
        *gaussian_statistics(z_scored(real, train)), *gaussian_statistics(z_scored(fake, train))
    )
    assert normalised_fid(real, fake, FeatureStandardiser.fit(train)) == pytest.approx(expected, rel=1e-10)
    # The raw figure carries the features' scale; the normalised one does not.
    raw = frechet_distance(*gaussian_statistics(real), *gaussian_statistics(fake))
    assert raw > 100 * expected


def test_normalised_kid_is_kid_of_hand_z_scored_features():
    train, real, fake = feature_sets(2)
    expected = kernel_inception_distance(z_scored(real, train), z_scored(fake, train), 10, 100, 3)
    result = normalised_kid(real, fake, FeatureStandardiser.fit(train), subsets=10, subset_size=100, seed=3)
    np.testing.assert_allclose(result, expected, rtol=1e-10)


@pytest.mark.parametrize("scale", [1e-3, 1000.0])
def test_scaling_every_feature_changes_nothing(scale: float):
    train, real, fake = feature_sets(3)
    standardiser, scaled = FeatureStandardiser.fit(train), FeatureStandardiser.fit(train * scale)
    fid = normalised_fid(real, fake, standardiser)
    assert normalised_fid(real * scale, fake * scale, scaled) == pytest.approx(fid, rel=1e-8)
    kid = normalised_kid(real, fake, standardiser, 10, 100, 0)
    np.testing.assert_allclose(normalised_kid(real * scale, fake * scale, scaled, 10, 100, 0), kid, rtol=1e-8)


def test_identical_sets_are_zero():
    train, real, _ = feature_sets(4)
    standardiser = FeatureStandardiser.fit(train)
    assert normalised_fid(real, real, standardiser) == pytest.approx(0.0, abs=1e-6)
    # KID is unbiased: a set against itself is off zero by the diagonal terms only, O(1/n).
    mean, _ = normalised_kid(real, real, standardiser, subsets=1, subset_size=len(real), seed=0)
    assert abs(mean) < 0.1


@pytest.mark.parametrize("shift", [[0.5, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 3.0]])
def test_a_shifted_copy_gives_the_squared_shift_in_standard_deviations(shift: list[float]):
    # The synthetic set is the real one moved by `shift` training standard deviations: equal
    # covariances after z-scoring, so FID = |shift|^2 exactly, whatever the raw units.
    rng = np.random.default_rng(5)
    scales = np.array([1.0, 20.0, 300.0, 4000.0])
    train = 50 + scales * rng.normal(size=(400, 4))
    real = 50 + scales * rng.normal(size=(400, 4))
    standardiser = FeatureStandardiser.fit(train)
    fake = real + np.array(shift) * standardiser.std
    assert normalised_fid(real, fake, standardiser) == pytest.approx(np.sum(np.square(shift)), rel=1e-6)


def test_isotropic_gaussians_shifted_by_d_are_near_the_analytic_value():
    rng = np.random.default_rng(6)
    shift = np.array([1.0, 0.0, -1.0, 0.5, 0.0, 0.0])
    train, real = rng.normal(size=(20_000, 6)) * 7.0, rng.normal(size=(20_000, 6)) * 7.0
    fake = (rng.normal(size=(20_000, 6)) + shift) * 7.0
    fid = normalised_fid(real, fake, FeatureStandardiser.fit(train))
    assert fid == pytest.approx(np.sum(shift**2), abs=0.02)


def test_constant_dimensions_are_floored_not_divided_by_zero():
    train, real, _ = feature_sets(7, dims=3)
    train[:, 1] = real[:, 1] = 0.0  # a dead ReLU channel
    standardiser = FeatureStandardiser.fit(train)
    assert standardiser.std[1] == pytest.approx(RELATIVE_STD_FLOOR * standardiser.std.max())
    fake = real.copy()
    fake[:, 1] = 1e-6 * standardiser.std.max()  # barely alive on the synthetic side
    assert np.isfinite(standardiser(fake)).all()
    assert normalised_fid(real, fake, standardiser) < 1e-3
    everything_constant = FeatureStandardiser.fit(np.full((5, 2), 3.0))
    np.testing.assert_allclose(everything_constant(np.full((1, 2), 4.0)), [[1.0, 1.0]])


def test_bad_shapes_and_too_few_images_are_refused():
    standardiser = FeatureStandardiser.fit(np.random.default_rng(8).normal(size=(10, 4)))
    with pytest.raises(ValueError, match="fitted on 4"):
        standardiser(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        standardiser(np.zeros(4))
    with pytest.raises(GenError, match="at least 2"):
        FeatureStandardiser.fit(np.zeros((1, 4)))


def test_domain_reference_is_the_classifier_features_and_their_standardiser():
    classifier = build_classifier(num_classes=2, seed=0)
    images = torch.randint(
        0, 256, (12, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    standardiser, features = domain_reference(classifier, images, "cpu")
    expected, _ = domain_features_and_probabilities(classifier, images)
    np.testing.assert_allclose(features, expected)
    assert features.shape == (12, classifier.config.feature_dim)
    np.testing.assert_allclose(standardiser.mean, expected.mean(axis=0))
    assert normalised_fid(features, features, standardiser) == pytest.approx(0.0, abs=1e-6)
