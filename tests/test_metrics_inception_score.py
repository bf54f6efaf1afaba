"""Inception Score on cases with known answers and against the formula written out per image."""

import math

import numpy as np
import pytest

from gen.errors import GenError
from gen.metrics.inception_score import inception_score


def test_confident_predictions_spread_evenly_score_the_number_of_classes():
    probabilities = np.eye(4)[np.arange(40) % 4]  # every split of 4 holds one image per class
    mean, std = inception_score(probabilities, splits=10)
    assert mean == pytest.approx(4.0) and std == pytest.approx(0.0, abs=1e-12)


def test_one_class_or_no_confidence_scores_one():
    assert inception_score(np.eye(4)[np.zeros(20, dtype=int)], splits=2)[0] == pytest.approx(1.0)
    assert inception_score(np.full((20, 4), 0.25), splits=2)[0] == pytest.approx(1.0)


def test_matches_the_formula_written_out_per_image():
    probabilities = np.random.default_rng(0).dirichlet(np.ones(5) * 0.3, size=30)
    scores = []
    for group in (probabilities[:10], probabilities[10:20], probabilities[20:]):
        marginal = group.mean(axis=0)
        kl = [sum(p * math.log(p / q) for p, q in zip(row, marginal, strict=True) if p > 0) for row in group]
        scores.append(math.exp(sum(kl) / len(kl)))
    mean, std = inception_score(probabilities, splits=3)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12)
    assert std == pytest.approx(np.std(scores), rel=1e-9)


def test_fewer_images_than_splits_still_scores_and_bad_input_is_refused():
    assert inception_score(np.eye(3), splits=10)[0] == pytest.approx(1.0)  # 3 splits of one image
    with pytest.raises(GenError):
        inception_score(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(np.full((4, 3), 0.5))
