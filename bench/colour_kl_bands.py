"""Where a checkpoint's colour-histogram KL comes from: each channel's KL split into bands of
intensity, and the images that put a quarter of their pixels in the band that costs most.

    .venv/bin/python -m bench.colour_kl_bands CHECKPOINT [--real DIR] [--n 150]

For each class, the report's comparison (``gen.metrics.histogram``: up to ``--n`` real held-out
images against as many synthetic ones of ``gen.sample``'s generator, seed 0, pooled histograms,
KL(real || synthetic)), then per channel: the KL, its share in each band of 32 intensities
(negative where the synthetic set has more there), the real and synthetic 5/25/50/75/95th
percentiles, and how many real and how many synthetic images have at least a quarter of their
pixels in the band that contributes most. A band that holds a quarter of some real images
(their background) and of no synthetic one is a kind of smear the generator does not draw.
Prints a line per class and channel; asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.special import rel_entr

from gen.checkpoint import load_for_sampling
from gen.errors import GenError
from gen.image_folder import load_image_folder
from gen.metrics.histogram import CHANNELS, DEFAULT_SUBSET_SIZE, choose_subset, colour_histograms
from gen.sample import generate, load_generator

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "pbc4" / "test"
BAND = 32  # intensities per band
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def quantiles(histogram: np.ndarray) -> list[int]:
    return np.searchsorted(np.cumsum(histogram), QUANTILES).tolist()


def in_band(images: torch.Tensor, channel: int, band: int) -> int:
    """How many images have at least a quarter of their pixels' ``channel`` in ``band``."""
    share = (images[:, channel].flatten(1).long() // BAND == band).float().mean(1)
    return int((share >= 0.25).sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser("python -m bench.colour_kl_bands", description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--real", type=Path, default=REAL, help="held-out real images (default: pbc4 test)")
    parser.add_argument("--n", type=int, default=DEFAULT_SUBSET_SIZE, help="images per class and side")
    args = parser.parse_args(argv)
    try:
        real = load_image_folder(args.real)
        state = load_for_sampling(args.checkpoint)
    except GenError as error:
        raise SystemExit(str(error)) from None
    generator = load_generator(state, torch.device("cpu"))
    print(f"bands of {BAND} intensities, low to high; KL in nats; 'a quarter in': images (real, synthetic)")
    print("with at least a quarter of their pixels in the band that costs most")
    for label, name in enumerate(real.class_names):
        real_images, _ = choose_subset(real.images[real.labels == label], args.n, 0)
        synthetic = generate(generator, 0, label, list(range(len(real_images))), torch.device("cpu"))
        real_histograms, synthetic_histograms = colour_histograms(real_images), colour_histograms(synthetic)
        for channel, channel_name in enumerate(CHANNELS):
            costs = rel_entr(real_histograms[channel], synthetic_histograms[channel])
            bands = costs.reshape(-1, BAND).sum(1)
            worst = int(bands.argmax())
            low, high = worst * BAND, worst * BAND + BAND - 1
            backgrounds = (in_band(real_images, channel, worst), in_band(synthetic, channel, worst))
            print(
                f"{name:>12} {channel_name} KL {costs.sum():.3f} bands "
                + " ".join(f"{band:+.3f}" for band in bands)
                + f" | percentiles real {quantiles(real_histograms[channel])} "
                f"synthetic {quantiles(synthetic_histograms[channel])} | a quarter in {low}-{high}: "
                f"{backgrounds[0]}, {backgrounds[1]} of {len(real_images)}"
            )


if __name__ == "__main__":
    main()
