"""gen.metrics.gradcam: captum's LayerGradCam on the domain CNN, maps, similarity and grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_images import row_label_pixels

from gen.metrics.domain import DomainClassifierConfig, train_domain_classifier
from gen.metrics.gradcam import class_activation_maps, class_gradcam, map_similarity, plot_mean_maps


def spots(count: int, where: tuple[int, int], seed: int) -> torch.Tensor:
    """Grey noise with a bright 12x12 square at ``where``: the only thing telling classes apart."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(90, 110, (count, 3, 64, 64), generator=generator, dtype=torch.uint8)
    row, column = where
    images[:, :, row : row + 12, column : column + 12] = 250
    return images


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    images = torch.cat([spots(24, (8, 8), 0), spots(24, (44, 44), 1)])
    labels = torch.cat([torch.zeros(24), torch.ones(24)]).long()
    config = DomainClassifierConfig(num_classes=2, channels=(8, 8, 16, 16))
    return train_domain_classifier(images, labels, 2, epochs=3, progress=False, augment=False, config=config)


def test_maps_have_the_image_shape_and_lie_in_0_1(tiny_model: torch.nn.Module) -> None:
    images = spots(5, (8, 8), 2)
    maps = class_activation_maps(tiny_model, images, torch.zeros(5, dtype=torch.long), batch_size=2)
    assert maps.shape == (5, 64, 64) and maps.min() >= 0 and maps.max() <= 1


def test_similarity_is_pearson_of_the_mean_maps() -> None:
    rng = np.random.default_rng(0)
    real, synthetic = rng.random((4, 8, 8)), rng.random((3, 8, 8))
    expected = np.corrcoef(real.mean(0).ravel(), synthetic.mean(0).ravel())[0, 1]
    assert map_similarity(real, synthetic) == pytest.approx(expected)
    assert map_similarity(real, real) == pytest.approx(1.0)
    assert map_similarity(real, np.zeros((2, 8, 8))) is None


def test_class_gradcam_writes_a_grid_and_compares_real_and_synthetic(tiny_model, tmp_path) -> None:
    real, synthetic = spots(6, (8, 8), 3), spots(6, (8, 8), 4)
    result = class_gradcam(tiny_model, real, synthetic, 0, "top-left", tmp_path / "grid.png")
    real_row, synthetic_row = row_label_pixels(tmp_path / "grid.png", 2, 6)  # named on the picture
    assert (real_row < 128).any() and (synthetic_row < 128).any()
    assert result.similarity is None or -1 <= result.similarity <= 1
    assert result.real_mean.shape == (64, 64)
    assert plot_mean_maps([result, result], tmp_path / "means.png").stat().st_size > 1000
