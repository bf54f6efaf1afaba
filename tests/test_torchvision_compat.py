"""gen._torchvision: torchvision imports (and stays importable for pytorch-fid) beside a CPU torch."""

from __future__ import annotations

import subprocess
import sys

import torch

from gen._torchvision import compiled_ops_loaded, import_torchvision, torchvision


def test_make_grid_lays_images_out_with_padding() -> None:
    images = torch.zeros(5, 3, 8, 8, dtype=torch.uint8)
    grid = torchvision.utils.make_grid(images, nrow=3, padding=2, pad_value=255)

    # Two rows of three cells of 8 pixels, 2 pixels of padding around and between them.
    assert grid.shape == (3, 2 * 8 + 3 * 2, 3 * 8 + 4 * 2)
    assert grid.dtype == torch.uint8
    assert int(grid[:, 0, :].min()) == 255  # the top padding
    assert int(grid[:, 2:10, 2:10].max()) == 0  # the first image
    assert int(grid[:, 12:20, 22:30].min()) == 255  # the empty sixth cell is padding colour


def test_compiled_ops_loaded_is_a_bool() -> None:
    assert isinstance(compiled_ops_loaded(), bool)


def test_import_is_idempotent() -> None:
    assert import_torchvision() is torchvision
    assert sys.modules["torchvision"] is torchvision


def test_pytorch_fid_imports_after_gen_torchvision_in_a_fresh_interpreter() -> None:
    # A fresh interpreter: the failure this module fixes happens at the first import only.
    code = (
        "import gen._torchvision, pytorch_fid.inception, torchvision; "
        "print(torchvision.models.inception.Inception3.__name__)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "Inception3"
