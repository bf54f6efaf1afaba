"""Turning generator output into pixels and files."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from gen._torchvision import torchvision
from gen.checkpoint import atomic_write


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] (N, 3, H, W) -> uint8 on the CPU, rounded, not truncated."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def png_bytes(image: torch.Tensor) -> bytes:
    """One uint8 (3, H, W) image as PNG bytes.

    Written without metadata or timestamps, so the same pixels always give the same bytes
    (and so the same MD5) on every machine.
    """
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


GRID_PADDING = 2
LABEL_FONT_SIZE = 11


def write_grid(
    images: torch.Tensor, columns: int, path: Path, row_labels: Sequence[str] | None = None
) -> None:
    """uint8 images (N, 3, H, W) as one PNG, ``columns`` per row, written atomically.

    ``row_labels`` (one per row; a label may hold a line break) are written in a white margin
    left of the rows, so that a reader of the picture alone knows what each row shows.
    """
    grid = torchvision.utils.make_grid(images, nrow=columns, padding=GRID_PADDING, pad_value=255)
    if row_labels is not None:
        grid = _with_row_labels(grid, list(row_labels), images.shape[2])
    data = png_bytes(grid)
    atomic_write(path, lambda file: file.write(data))


def _with_row_labels(grid: torch.Tensor, labels: list[str], tile_height: int) -> torch.Tensor:
    """The (3, H, W) grid with a left margin naming each row, in PIL's default font."""
    font = ImageFont.load_default(size=LABEL_FONT_SIZE)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [measure.multiline_textbbox((0, 0), label, font=font) for label in labels]
    margin = max(box[2] - box[0] for box in boxes) + 3 * GRID_PADDING
    height, width = grid.shape[1:]
    canvas = Image.new("RGB", (margin + width, height), (255, 255, 255))
    canvas.paste(Image.fromarray(grid.permute(1, 2, 0).numpy(), "RGB"), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for row, (label, box) in enumerate(zip(labels, boxes, strict=True)):
        middle = GRID_PADDING + row * (tile_height + GRID_PADDING) + tile_height // 2
        top = middle - (box[3] - box[1]) // 2 - box[1]
        draw.multiline_text((GRID_PADDING, top), label, fill=(0, 0, 0), font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)
