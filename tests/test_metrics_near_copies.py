"""gen.metrics.near_copies: memorised training images are flagged, new cells are not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_images import row_label_pixels

from gen.image_folder import load_image_folder
from gen.metrics.near_copies import ClassNearCopies, near_copies, nearest, pixels, write_closest_pairs
from gen.phantoms import write_phantoms


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    root = tmp_path_factory.mktemp("near")
    sets = {}
    for name, seed in (("train", 0), ("held_out", 1), ("unseen", 2)):
        write_phantoms(root / name, per_class=40, seed=seed)
        data = load_image_folder(root / name)
        sets[name] = (data.images, data.labels)
    sets["class_names"] = data.class_names
    return sets


def pooled(images: torch.Tensor) -> np.ndarray:
    """A cheap stand-in for CNN features: 8x8 average pooling, tolerant of small shifts."""
    return F.avg_pool2d(images.float() / 255, 8).flatten(1).numpy()


def share_for(phantoms: dict, synthetic: torch.Tensor) -> float:
    (train, train_labels), (held_out, held_out_labels) = phantoms["train"], phantoms["held_out"]
    spaces = {
        "features": (pooled(train), pooled(held_out), pooled(synthetic)),
        "pixels": (pixels(train), pixels(held_out), pixels(synthetic)),
    }
    labels = (train_labels.numpy(), held_out_labels.numpy(), train_labels.numpy())
    results = near_copies(spaces, labels, list(phantoms["class_names"]))
    assert len(results) == len(phantoms["class_names"])
    for result in results:
        assert len(result.closest) == 8
        assert [d for _, _, d in result.closest] == sorted(d for _, _, d in result.closest)
    return sum(r.near_copies for r in results) / sum(r.synthetic for r in results)


def test_nearest_matches_a_brute_force_computation() -> None:
    rng = np.random.default_rng(0)
    queries, references = rng.normal(size=(50, 7)), rng.normal(size=(30, 7))
    distances, indices = nearest(queries, references, chunk=16)
    full = np.linalg.norm(queries[:, None] - references[None], axis=2)
    assert np.array_equal(indices, full.argmin(1))
    assert np.allclose(distances, full.min(1), atol=1e-5)


def test_a_generator_that_returns_training_images_is_flagged(phantoms: dict) -> None:
    train, _ = phantoms["train"]
    assert share_for(phantoms, train) == 1.0


@pytest.mark.parametrize("change", ["shifted by a pixel", "slight noise"])
def test_near_copies_that_were_changed_a_little_are_flagged(phantoms: dict, change: str) -> None:
    train, _ = phantoms["train"]
    if change == "shifted by a pixel":
        copies = torch.roll(train, shifts=1, dims=3)
    else:
        noise = torch.randint(-3, 4, train.shape, generator=torch.Generator().manual_seed(0))
        copies = (train.short() + noise).clamp(0, 255).to(torch.uint8)
    assert share_for(phantoms, copies) >= 0.9


def test_unseen_real_images_of_the_same_class_are_not_flagged(phantoms: dict) -> None:
    unseen, unseen_labels = phantoms["unseen"]
    _, train_labels = phantoms["train"]
    assert torch.equal(unseen_labels, train_labels)  # the same classes in the same order
    assert share_for(phantoms, unseen) <= 0.1  # about the 1% that new cells show by construction


def test_the_closest_pairs_grid_names_its_rows(tmp_path) -> None:
    """Synthetic on top, their nearest training images below, each row named on the picture."""
    synthetic = torch.zeros((3, 3, 64, 64), dtype=torch.uint8)
    training = torch.full((3, 3, 64, 64), 255, dtype=torch.uint8)
    result = ClassNearCopies("a", 3, 1, {}, {}, [(0, 2, 0.1), (1, 0, 0.2)])
    write_closest_pairs(result, synthetic, training, tmp_path / "pairs.png")
    top, bottom = row_label_pixels(tmp_path / "pairs.png", 2, 2)
    assert (top < 128).any() and (bottom < 128).any()
