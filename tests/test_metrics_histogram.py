"""Colour-histogram KL: smoothing, agreement with scipy.stats.entropy, subsets, figures; the
colour spread."""

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from gen.errors import GenError
from gen.metrics.histogram import (
    PSEUDO_COUNT,
    choose_subset,
    colour_histograms,
    colour_spread,
    histogram_kl,
    kl_per_channel,
    per_class_histogram_kl,
    plot_histograms,
)


def random_images(count, seed, low=0, high=256):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (count, 3, 64, 64), generator=generator, dtype=torch.uint8)


def test_histograms_count_pixels_per_channel_with_one_pseudo_count():
    images = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    images[:, 1] = 7  # green all 7
    images[0, 2] = 255  # blue: half 255, half 0
    histograms = colour_histograms(images)
    total = 2 * 64 * 64 + 256 * PSEUDO_COUNT
    assert histograms.shape == (3, 256)
    np.testing.assert_allclose(histograms.sum(axis=1), 1.0)
    assert histograms[0, 0] == pytest.approx((2 * 64 * 64 + PSEUDO_COUNT) / total)
    assert histograms[1, 7] == pytest.approx((2 * 64 * 64 + PSEUDO_COUNT) / total)
    assert histograms[2, 255] == pytest.approx((64 * 64 + PSEUDO_COUNT) / total)
    assert histograms.min() == pytest.approx(PSEUDO_COUNT / total)  # no empty bins


def test_identical_sets_have_zero_divergence():
    images = random_images(5, seed=0)
    assert histogram_kl(images, images.clone()) == {"r": 0.0, "g": 0.0, "b": 0.0, "mean": 0.0}


def test_divergence_matches_scipy_entropy_on_random_histograms():
    rng = np.random.default_rng(1)
    real, fake = rng.random((3, 256)), rng.random((3, 256))
    result = kl_per_channel(real, fake)
    for index, channel in enumerate("rgb"):
        assert result[channel] == pytest.approx(entropy(real[index], fake[index]), rel=1e-12)
    assert result["mean"] == pytest.approx(np.mean([result[c] for c in "rgb"]))


def test_images_matching_colours_are_closer_than_shifted_ones_and_finite_despite_empty_bins():
    real = random_images(20, seed=2, low=100, high=150)
    similar = random_images(20, seed=3, low=100, high=150)
    disjoint = random_images(20, seed=4, low=200, high=256)  # no bin in common with real
    near, far = histogram_kl(real, similar)["mean"], histogram_kl(real, disjoint)["mean"]
    assert 0 < near < 0.01
    assert np.isfinite(far) and far > 5
    histograms_real, histograms_disjoint = colour_histograms(real), colour_histograms(disjoint)
    by_scipy = [entropy(histograms_real[c], histograms_disjoint[c]) for c in range(3)]
    assert far == pytest.approx(np.mean(by_scipy))


def flat_images(rows):
    """One image per (r, g, b) row, every pixel that colour."""
    return torch.tensor(rows, dtype=torch.uint8)[:, :, None, None].expand(-1, -1, 64, 64).contiguous()


def test_colour_spread_is_the_ratio_of_the_spreads_of_per_image_mean_colours():
    # Real means per channel: r 10, 20, 30, 40 (std 12.91); g 5, 5, 5, 9 (std 2); b 100, 110 x2, 120.
    real = flat_images([[10, 5, 100], [20, 5, 110], [30, 5, 110], [40, 9, 120]])
    # Synthetic: r 20, 25, 25, 30 (std 4.082); g 1, 1, 1, 5 (std 2); b all 110 (std 0).
    fake = flat_images([[20, 1, 110], [25, 1, 110], [25, 1, 110], [30, 5, 110]])
    spread = colour_spread(real, fake)
    assert spread["r"] == pytest.approx(np.sqrt(50 / 3) / np.sqrt(500 / 3))  # 4.082 / 12.91
    assert spread["g"] == pytest.approx(1.0)
    assert spread["b"] == 0.0  # every synthetic image the same colour
    assert spread["mean"] == pytest.approx((spread["r"] + 1.0) / 3)
    # Only the spread counts, not where the colours lie, nor how pixels vary inside an image.
    shifted = flat_images([[110, 105, 0], [120, 105, 10], [130, 105, 10], [140, 109, 20]])
    textured = real.clone()
    textured[:, :, ::2] += 50
    textured[:, :, 1::2] -= 5
    assert colour_spread(real, shifted) == {"r": 1.0, "g": 1.0, "b": 1.0, "mean": 1.0}
    assert colour_spread(real, textured)["mean"] == pytest.approx(1.0)


def test_colour_spread_is_undefined_without_two_images_or_real_variation():
    images = random_images(3, seed=11)
    assert colour_spread(images[:1], images) is None
    assert colour_spread(images, images[:1]) is None
    assert colour_spread(flat_images([[1, 2, 3]] * 3), images) is None


def test_choose_subset_takes_n_or_all_with_a_note():
    images = random_images(10, seed=5)
    subset, note = choose_subset(images, n=4, seed=0)
    assert len(subset) == 4 and note is None
    assert torch.equal(subset, choose_subset(images, n=4, seed=0)[0])
    everything, note = choose_subset(images, n=150, seed=0)
    assert torch.equal(everything, images)
    assert "only 10" in note and "150" in note


def test_per_class_comparison_reports_every_class_and_notes_small_ones():
    real = random_images(12, seed=6)
    fake = random_images(8, seed=7)
    real_labels = torch.tensor([0] * 6 + [1] * 6)
    fake_labels = torch.tensor([0] * 5 + [1] * 3)
    comparisons = per_class_histogram_kl(real, real_labels, fake, fake_labels, ["a", "b"], n=4)
    assert [c.class_name for c in comparisons] == ["a", "b"]
    assert (comparisons[0].real_count, comparisons[0].synthetic_count, comparisons[0].notes) == (4, 4, ())
    assert comparisons[1].synthetic_count == 3
    assert comparisons[1].notes == ("synthetic: only 3 images available, all used instead of 4",)
    assert set(comparisons[1].kl) == {"r", "g", "b", "mean"}
    assert set(comparisons[1].spread) == {"r", "g", "b", "mean"}


def test_a_class_without_synthetic_images_is_a_user_error():
    images = random_images(4, seed=8)
    with pytest.raises(GenError, match="'b' has no synthetic images"):
        per_class_histogram_kl(
            images, torch.tensor([0, 0, 1, 1]), images, torch.zeros(4, dtype=torch.int64), ["a", "b"]
        )


def test_plot_writes_a_png(tmp_path):
    real, fake = colour_histograms(random_images(3, seed=9)), colour_histograms(random_images(3, seed=10))
    path = plot_histograms(real, fake, "class a: real vs synthetic", tmp_path / "figures" / "a.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]  # no temporary file left behind
