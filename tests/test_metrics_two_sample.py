"""gen.metrics.two_sample: two halves of one real set cannot be told apart; blurred images can."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_images import row_label_pixels

from gen.image_folder import load_image_folder
from gen.metrics.two_sample import overall_auc, two_sample_test, write_extremes_grid
from gen.metrics.utility import roc_auc
from gen.phantoms import write_phantoms

# Few images and epochs keep each test to seconds; the bands below hold for any seed.
SETTINGS = {"folds": 4, "epochs": 4, "seed": 0}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Eight tiny trainings per test: on a shared two-core machine, two threads each spend most
    of their time waiting for the other (15x slower here); one thread keeps a test to seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    root = tmp_path_factory.mktemp("two-sample")
    write_phantoms(root, per_class=64, seed=3, image_size=64)
    data = load_image_folder(root)
    keep = data.labels < 2  # two classes are enough
    return data.images[keep], data.labels[keep], list(data.class_names[:2])


def halves(images: torch.Tensor, labels: torch.Tensor) -> tuple[tuple, tuple]:
    """Each class split in two interleaved halves: one as 'real', the other as 'synthetic'."""
    rank = torch.zeros(len(labels), dtype=torch.long)
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        rank[members] = torch.arange(len(members))
    first = rank % 2 == 0
    return (images[first], labels[first]), (images[~first], labels[~first])


def blur(images: torch.Tensor) -> torch.Tensor:
    kernel = torch.ones(3, 1, 5, 5) / 25
    blurred = F.conv2d(F.pad(images.float(), (2, 2, 2, 2), mode="replicate"), kernel, groups=3)
    return blurred.round().clamp(0, 255).to(torch.uint8)


def test_roc_auc_matches_a_hand_computation() -> None:
    # Positives 0.9, 0.4, 0.4; negatives 0.4, 0.1: of the 6 pairs, 0.9 beats both (2), each 0.4
    # beats 0.1 (2) and ties 0.4 (2 halves): (2 + 2 + 1) / 6.
    scores = np.array([0.9, 0.4, 0.4, 0.4, 0.1])
    positive = np.array([True, True, True, False, False])
    assert roc_auc(scores, positive) == pytest.approx(5 / 6)
    assert roc_auc(scores, np.ones(5, dtype=bool)) is None


def test_real_against_real_is_about_chance(real: tuple) -> None:
    images, labels, names = real
    first, second = halves(images, labels)
    results = two_sample_test(first, second, names, **SETTINGS)
    assert [r.class_name for r in results] == names and all(r.per_group == 32 for r in results)
    auc = overall_auc(results)
    assert auc is not None and 0.3 < auc < 0.7, auc


def test_real_against_blurred_real_is_told_apart(real: tuple, tmp_path) -> None:
    images, labels, names = real
    first, second = halves(images, labels)
    blurred = (blur(second[0]), second[1])
    results = two_sample_test(first, blurred, names, **SETTINGS)
    assert overall_auc(results) > 0.9
    grid = tmp_path / "extremes.png"
    write_extremes_grid(results[0], blurred[0][blurred[1] == 0], grid)
    most, least = row_label_pixels(grid, 2, 8)  # each row named on the picture
    assert (most < 128).any() and (least < 128).any()


def test_too_few_images_leave_a_class_out(real: tuple) -> None:
    images, labels, names = real
    results = two_sample_test((images[:3], labels[:3]), (images[:3], labels[:3]), names, **SETTINGS)
    assert results == [] and overall_auc(results) is None
