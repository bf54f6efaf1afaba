"""gen.images: grids of images, with the rows named on the picture where asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gen.images import write_grid

TILE = 64


def row_label_pixels(path: Path, rows: int, columns: int) -> list[np.ndarray]:
    """The left margin of a labelled grid, one band per row; checks the grid is that much wider."""
    with Image.open(path) as picture:
        pixels = np.asarray(picture.convert("L"))
    margin = pixels.shape[1] - (columns * (TILE + 2) + 2)
    assert margin > 20, "no room for the row labels"
    assert pixels.shape[0] == rows * (TILE + 2) + 2
    return [pixels[2 + row * (TILE + 2) : (row + 1) * (TILE + 2), :margin] for row in range(rows)]


def test_each_row_is_named_in_a_left_margin(tmp_path: Path) -> None:
    images = torch.full((6, 3, TILE, TILE), 128, dtype=torch.uint8)
    write_grid(images, 3, tmp_path / "plain.png")
    with Image.open(tmp_path / "plain.png") as plain:
        assert plain.size == (3 * (TILE + 2) + 2, 2 * (TILE + 2) + 2)
    write_grid(images, 3, tmp_path / "labelled.png", row_labels=["real", "synthetic"])
    real, synthetic = row_label_pixels(tmp_path / "labelled.png", 2, 3)
    assert (real < 128).any() and (synthetic < 128).any(), "text in each row's margin"
    assert (real < 128).sum() != (synthetic < 128).sum(), "two different words"
    with Image.open(tmp_path / "labelled.png") as labelled:
        right = np.asarray(labelled.convert("RGB"))[:, -(3 * (TILE + 2) + 2) :]
    assert (right == np.asarray(Image.open(tmp_path / "plain.png").convert("RGB"))).all()
