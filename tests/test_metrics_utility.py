"""Classifier utility: the metric pieces against hand and scipy computations, then all three regimes."""

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

from gen.errors import GenError
from gen.metrics.utility import (
    REGIMES,
    classifier_utility,
    confusion_matrix,
    evaluate_predictions,
    macro_f1,
    per_class_f1,
    plot_confusion_matrix,
    roc_auc,
)


def colour_squares(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0 reddish, class 1 bluish, with pixel noise: learnable in one or two epochs."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(2).repeat_interleave(per_class)
    base = torch.tensor([[180.0, 60.0, 60.0], [60.0, 60.0, 180.0]])[labels][:, :, None, None]
    images = base + 30 * torch.randn(len(labels), 3, 64, 64, generator=generator)
    return images.clamp(0, 255).round().to(torch.uint8), labels


def test_auc_of_a_hand_worked_example():
    # Positives score 0.9, 0.4, 0.6; negatives 0.5, 0.1, 0.4. Of the 9 (positive, negative)
    # pairs the positive wins 7 (0.9 beats all 3, 0.6 beats 0.5 and 0.1, 0.4 beats 0.1) and
    # ties 1 (0.4 with 0.4): AUC = (7 + 0.5) / 9.
    scores = np.array([0.9, 0.5, 0.4, 0.1, 0.6, 0.4])
    positive = np.array([True, False, True, False, True, False])
    assert roc_auc(scores, positive) == pytest.approx(7.5 / 9)


def test_auc_matches_mann_whitney_and_its_extremes():
    rng = np.random.default_rng(0)
    scores, positive = rng.random(50).round(2), rng.random(50) < 0.4  # rounding makes ties
    u_statistic = mannwhitneyu(scores[positive], scores[~positive]).statistic
    assert roc_auc(scores, positive) == pytest.approx(u_statistic / (positive.sum() * (~positive).sum()))
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True])) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([False, False, True, True])) == 0.0
    assert roc_auc(np.array([0.3, 0.4]), np.array([True, True])) is None


def test_confusion_matrix_and_macro_f1_by_hand():
    true = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    matrix = confusion_matrix(true, predicted, 3)
    np.testing.assert_array_equal(matrix, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    # F1 per class: 2*2/(2+3) = 0.8, 2*1/(2+2) = 0.5, 2*1/(2+1) = 2/3.
    assert macro_f1(matrix) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    np.testing.assert_allclose(per_class_f1(matrix), [0.8, 0.5, 2 / 3])
    assert macro_f1(np.array([[3, 0, 0], [0, 0, 0], [0, 0, 2]])) == pytest.approx((1 + 0 + 1) / 3)


def test_evaluate_predictions_reports_every_figure():
    probabilities = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8], [0.6, 0.4]])
    result = evaluate_predictions(probabilities, np.array([0, 0, 1, 1]), ["a", "b"])
    assert result["accuracy"] == 0.5
    assert result["confusion_matrix"] == [[1, 1], [1, 1]]
    assert result["roc_auc"] == {"a": pytest.approx(0.75), "b": pytest.approx(0.75)}
    assert result["macro_roc_auc"] == pytest.approx(0.75)


def test_utility_trains_all_three_regimes_on_the_same_classifier():
    real_train, synthetic_train, real_test = colour_squares(8, 0), colour_squares(8, 1), colour_squares(10, 2)
    results = classifier_utility(real_train, synthetic_train, real_test, 2, ["red", "blue"], epochs=2, seed=0)
    assert tuple(results) == REGIMES == ("real_only", "synthetic_only", "real_plus_synthetic")
    assert [results[regime]["train_count"] for regime in REGIMES] == [16, 16, 32]
    for regime in REGIMES:
        result = results[regime]
        assert set(result) == {
            "train_count",
            "accuracy",
            "macro_f1",
            "roc_auc",
            "macro_roc_auc",
            "confusion_matrix",
        }
        assert set(result["roc_auc"]) == {"red", "blue"}
        assert np.sum(result["confusion_matrix"]) == 20
        assert result["accuracy"] >= 0.9, regime


def test_utility_without_synthetic_images_is_a_user_error():
    real = colour_squares(2, 0)
    empty = (torch.zeros(0, 3, 64, 64, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(GenError, match="synthetic"):
        classifier_utility(real, empty, real, 2, ["red", "blue"], epochs=1)


def test_confusion_matrix_plot_writes_a_png(tmp_path):
    path = plot_confusion_matrix(
        np.array([[5, 1], [0, 6]]), ["red", "blue"], tmp_path / "cm.png", "real only"
    )
    assert path.read_bytes().startswith(b"\x89PNG")
