"""Differentiable augmentation (Zhao et al., NeurIPS 2020), applied to every image the
discriminator sees, real or generated, so it cannot memorise a small training set.

Adapted from the authors' DiffAugment_pytorch.py (BSD 2-Clause); the only change is an
explicit ``torch.Generator`` so that training resumes bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(x.size(0), 1, 1, 1, generator=generator, device=x.device, dtype=x.dtype)


def brightness(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x + (_uniform(x, generator) - 0.5)


def saturation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(x, generator) * 2) + mean


def contrast(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, generator) + 0.5) + mean


def translation(x: torch.Tensor, generator: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, filling with zeros (mid-grey)."""
    batch, _, height, width = x.shape
    max_y, max_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    shift_y = torch.randint(-max_y, max_y + 1, (batch, 1, 1), generator=generator, device=x.device)
    shift_x = torch.randint(-max_x, max_x + 1, (batch, 1, 1), generator=generator, device=x.device)
    grid_batch, grid_y, grid_x = torch.meshgrid(
        torch.arange(batch, device=x.device),
        torch.arange(height, device=x.device),
        torch.arange(width, device=x.device),
        indexing="ij",
    )
    grid_y = torch.clamp(grid_y + shift_y + 1, 0, height + 1)
    grid_x = torch.clamp(grid_x + shift_x + 1, 0, width + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    return padded.permute(0, 2, 3, 1)[grid_batch, grid_y, grid_x].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, generator: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero (mid-grey) one square of ``ratio`` of the image's side at a random place per image."""
    batch, _, height, width = x.shape
    cut_y, cut_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    offset_y = torch.randint(0, height + (1 - cut_y % 2), (batch, 1, 1), generator=generator, device=x.device)
    offset_x = torch.randint(0, width + (1 - cut_x % 2), (batch, 1, 1), generator=generator, device=x.device)
    grid_y = torch.arange(cut_y, device=x.device).view(1, -1, 1)
    grid_x = torch.arange(cut_x, device=x.device).view(1, 1, -1)
    rows = torch.clamp(grid_y + offset_y - cut_y // 2, 0, height - 1)
    columns = torch.clamp(grid_x + offset_x - cut_x // 2, 0, width - 1)
    mask = torch.ones(batch, height, width, dtype=x.dtype, device=x.device)
    mask[torch.arange(batch, device=x.device).view(-1, 1, 1), rows, columns] = 0
    return x * mask.unsqueeze(1)


POLICIES: dict[str, list[Augmentation]] = {
    "color": [brightness, saturation, contrast],
    "translation": [translation],
    "cutout": [cutout],
}


def parse_policy(policy: str) -> list[tuple[str, float]]:
    """``"color@0.3,translation"`` -> ``[("color", 0.3), ("translation", 1.0)]``.

    ``NAME@P`` applies that augmentation to each image with probability P (DiffAugment's own
    policies apply it to every image, P = 1): colour shifted in every real image can hide a
    generator's colour error from D, since D then never sees a real image's true colour.
    """
    from gen.errors import GenError

    parsed = []
    for part in (part.strip() for part in policy.split(",")):
        if not part:
            continue
        name, _, probability = part.partition("@")
        name = name.strip()
        if name not in POLICIES:
            raise GenError(f"unknown DiffAugment policy {name!r}; known: {', '.join(POLICIES)}.")
        try:
            chance = float(probability) if probability else 1.0
        except ValueError:
            chance = math.nan
        if not 0 <= chance <= 1:  # NaN fails too
            raise GenError(f"DiffAugment {part!r}: the probability after @ must be between 0 and 1.")
        parsed.append((name, chance))
    return parsed


def diff_augment(
    x: torch.Tensor, policy: str, generator: torch.Generator, strength: float = 1.0
) -> torch.Tensor:
    """Apply the comma-separated ``policy`` (e.g. ``"color@0.3,translation"``); ``""`` is identity.

    ``strength`` scales every augmentation's probability (ADA's p, see gen.losses.AdaptiveAugment):
    ``color@0.3`` at strength 0.5 shifts the colour of 15% of the images.
    """
    for name, chance in parse_policy(policy):
        chance *= strength
        if chance == 0:
            continue
        if chance < 1:
            chosen = torch.rand(x.size(0), 1, 1, 1, generator=generator, device=x.device) < chance
        for augmentation in POLICIES[name]:
            augmented = augmentation(x, generator)
            x = augmented if chance == 1 else torch.where(chosen, augmented, x)
    # channels_last: oneDNN on the CPU and cuDNN on the GPU both convolve fastest in it.
    return x.contiguous(memory_format=torch.channels_last)
