"""What the two-sample test sees: its AUC after taking one cue away from both groups.

    .venv/bin/python -m bench.two_sample_cues CHECKPOINT [--classes 0,3] [--cues plain,grey,4px]

For each class, as many synthetic images as the real held-out folder holds (``gen.sample``'s
EMA generator, seed 0) against those real images, through the report's own test
(``gen.metrics.two_sample``: a small CNN, 5 folds, out-of-fold ROC AUC), once per cue:

- ``plain``: the images as they are (the report's figure);
- ``noise``: white noise added to the synthetic images, as much as the real images have more
  power than the synthetic ones at the highest spatial frequencies (radius 32-45 of the 64x64
  spectrum) — does the test see missing sensor noise?
- ``blur``: both groups blurred (Gaussian, sigma 2 pixels) — fine texture gone;
- ``grey``: both groups grey — hue gone;
- ``matched``: the synthetic set's pooled histograms mapped onto the real set's, per channel
  (what the histogram KL measures) — pooled colour gone;
- ``16px``, ``8px``, ``4px``: both groups shrunk to that size (area) and enlarged back — only
  the coarse layout, then only the mean colour of 16 patches, remain.

Then ``means``: the AUC of a linear discriminant (fitted on one half, scored on the other) on
each image's mean R, G, B alone, and the colour spread (``gen.metrics.histogram``). Prints a
line per class and cue. Asserts nothing; one class takes about a minute per cue on 2 cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gen._torchvision import torchvision
from gen.checkpoint import load_for_sampling
from gen.errors import GenError
from gen.image_folder import load_image_folder
from gen.metrics.histogram import colour_spread
from gen.metrics.two_sample import two_sample_class
from gen.metrics.utility import roc_auc
from gen.sample import generate, load_generator

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "pbc4" / "test"
CUES = ("plain", "noise", "blur", "grey", "matched", "16px", "8px", "4px")
SIZE = 64


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.round().clamp(0, 255).to(torch.uint8)


def radial_power(images: torch.Tensor) -> np.ndarray:
    """Mean power spectrum of the grey images, averaged over rings of whole-number radius."""
    grey = images.double().mean(1).numpy()
    grey = grey - grey.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fftshift(np.fft.fft2(grey), axes=(1, 2))) ** 2).mean(0)
    y, x = np.mgrid[-SIZE // 2 : SIZE // 2, -SIZE // 2 : SIZE // 2]
    radius = np.hypot(y, x).astype(int).ravel()
    return np.bincount(radius, power.ravel()) / np.bincount(radius)


def add_missing_noise(real: torch.Tensor, fake: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """``fake`` plus grey white noise of the variance the real images have in excess at radius
    32-45 (white noise of variance v puts v * 64 * 64 in every frequency bin)."""
    excess = (radial_power(real)[32:46] - radial_power(fake)[32:46]).mean()
    sigma = float(np.sqrt(max(excess, 0.0) / SIZE**2))
    noise = torch.randn(len(fake), 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    return to_uint8(fake.double() + sigma * noise)


def blur(images: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """Gaussian blur (torchvision's: reflected borders, a kernel 6 sigma + 1 wide)."""
    width = 6 * int(sigma) + 1
    return to_uint8(torchvision.transforms.functional.gaussian_blur(images.double(), width, sigma))


def grey(images: torch.Tensor) -> torch.Tensor:
    return to_uint8(images.double().mean(1, keepdim=True).expand(-1, 3, -1, -1))


def match_histograms(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Each channel's pixels of ``source`` replaced, rank for rank, by ``reference``'s."""
    matched = source.clone()
    for channel in range(3):
        values = source[:, channel].flatten().numpy()
        ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable") / (len(values) - 1)
        pool = np.sort(reference[:, channel].flatten().numpy())
        chosen = pool[np.round(ranks * (len(pool) - 1)).astype(int)]
        matched[:, channel] = torch.from_numpy(chosen.reshape(source[:, channel].shape))
    return matched


def shrink(images: torch.Tensor, size: int) -> torch.Tensor:
    small = F.interpolate(images.double(), size=size, mode="area")
    return to_uint8(F.interpolate(small, size=SIZE, mode="bilinear", align_corners=False))


def cue_pair(cue: str, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if cue == "plain":
        return real, fake
    if cue == "noise":
        return real, add_missing_noise(real, fake)
    if cue == "matched":
        return real, match_histograms(fake, real)
    change = {"blur": blur, "grey": grey}.get(cue) or (lambda x: shrink(x, int(cue.removesuffix("px"))))
    return change(real), change(fake)


def mean_colour_auc(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> float:
    """ROC AUC of Fisher's linear discriminant on each image's mean R, G, B: fitted on a random
    half of both groups, scored on the other half."""
    features = torch.cat([real, fake]).double().mean(dim=(2, 3)).numpy()
    is_fake = np.r_[np.zeros(len(real), dtype=bool), np.ones(len(fake), dtype=bool)]
    order = np.random.default_rng(seed).permutation(len(features))
    fit, score = order[: len(order) // 2], order[len(order) // 2 :]
    groups = [features[fit][is_fake[fit] == side] for side in (False, True)]
    scatter = np.cov(groups[0].T) + np.cov(groups[1].T) + 1e-6 * np.eye(3)
    direction = np.linalg.solve(scatter, groups[1].mean(0) - groups[0].mean(0))
    return float(roc_auc(features[score] @ direction, is_fake[score]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--real", type=Path, default=REAL, help="held-out real images (default: pbc4 test)")
    parser.add_argument("--classes", help="comma-separated class indices (default: all)")
    parser.add_argument("--cues", default=",".join(CUES), help=f"comma-separated, of {', '.join(CUES)}")
    args = parser.parse_args()
    cues = args.cues.split(",")
    if unknown := sorted(set(cues) - set(CUES)):
        raise SystemExit(f"unknown cue {unknown[0]!r}; choose from {', '.join(CUES)}.")
    device = torch.device("cpu")
    try:
        test = load_image_folder(args.real)
        generator = load_generator(load_for_sampling(args.checkpoint), device)
    except GenError as error:
        raise SystemExit(f"error: {error}") from None
    labels = range(len(test.class_names)) if args.classes is None else map(int, args.classes.split(","))
    for label in labels:
        name = test.class_names[label]
        real = test.images[test.labels == label]
        fake = generate(generator, 0, label, range(len(real)), device)
        spread = colour_spread(real, fake)
        print(
            f"{name}: mean colour alone, linear AUC {mean_colour_auc(real, fake):.3f}; colour spread "
            + " / ".join(f"{spread[c]:.2f}" for c in "rgb"),
            flush=True,
        )
        for cue in cues:
            result = two_sample_class(*cue_pair(cue, real, fake), name, seed=0)
            print(f"{name}: two-sample AUC, {cue}: {result.auc:.3f}", flush=True)


if __name__ == "__main__":
    main()
