"""Turning generator output into pixels and files."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

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


def write_grid(images: torch.Tensor, columns: int, path: Path) -> None:
    """uint8 images (N, 3, H, W) as one PNG, ``columns`` per row, written atomically."""
    grid = torchvision.utils.make_grid(images, nrow=columns, padding=2, pad_value=255)
    data = png_bytes(grid)
    atomic_write(path, lambda file: file.write(data))
