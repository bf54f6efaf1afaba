"""Colour-histogram KL divergence between real and synthetic images, per class.

The source thesis compared 150 real with 150 synthetic images of each class through their
colour histograms (KL between 0.0032 and 0.0095 for its four classes) and drew both
histograms per class. Here a histogram is pooled over a whole image set: for each RGB channel,
the share of all its pixels at each of the 256 intensities.

Smoothing, chosen once and used everywhere (KL, figures): one pseudo-count is added to every
bin before normalising (Laplace smoothing). A bin that one set never uses would otherwise give
an infinite KL; with 150 images (614,400 pixels per channel) the added mass is 0.04%, and an
unused bin gets about the probability of a single pixel, the resolution the data has.

KL(real || synthetic) = sum p_real log(p_real / p_synthetic) in nats, as
``scipy.stats.entropy(p_real, p_synthetic)`` computes it: large when the synthetic images miss
colours the real ones have.

A pooled histogram cannot see how colour varies from image to image: a generator that draws
every image in the set's average colour can match it. The colour spread can: per channel, the
standard deviation over images of each image's mean intensity (stain and illumination vary from
smear to smear), synthetic divided by real. 1 means as varied as the real images; below 1, the
synthetic images are more alike in colour than real ones, and a classifier can tell them apart
by their mean colour alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import rel_entr

from gen.errors import GenError
from gen.metrics._plotting import new_figure, save_png
from gen.metrics.figures import Report, ReportSettings

CHANNELS = ("r", "g", "b")
PSEUDO_COUNT = 1.0
DEFAULT_SUBSET_SIZE = 150  # the source thesis's 150 real and 150 synthetic per class


def colour_histograms(images_uint8: torch.Tensor) -> np.ndarray:
    """Smoothed, normalised histograms (3, 256) of uint8 images (N, 3, H, W) pooled over the set."""
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
        shape = tuple(images_uint8.shape)
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images_uint8.dtype} {shape}")
    if len(images_uint8) == 0:
        raise GenError("cannot take a colour histogram of zero images.")
    counts = np.stack(
        [torch.bincount(images_uint8[:, channel].reshape(-1), minlength=256).numpy() for channel in range(3)]
    ).astype(np.float64)
    counts += PSEUDO_COUNT
    return counts / counts.sum(axis=1, keepdims=True)


def kl_per_channel(real_histograms: np.ndarray, fake_histograms: np.ndarray) -> dict[str, float]:
    """KL(real || synthetic) per channel of (3, 256) histograms, and their mean."""
    real = np.asarray(real_histograms, dtype=np.float64)
    fake = np.asarray(fake_histograms, dtype=np.float64)
    if real.shape != (3, 256) or fake.shape != (3, 256):
        raise ValueError(f"histograms must be (3, 256), got {real.shape} and {fake.shape}")
    real = real / real.sum(axis=1, keepdims=True)
    fake = fake / fake.sum(axis=1, keepdims=True)
    divergences = rel_entr(real, fake).sum(axis=1)
    result = {name: float(value) for name, value in zip(CHANNELS, divergences, strict=True)}
    result["mean"] = float(divergences.mean())
    return result


def colour_spread(real_images: torch.Tensor, fake_images: torch.Tensor) -> dict[str, float] | None:
    """Per channel, the standard deviation (n - 1) of the synthetic images' mean intensities
    divided by the real images': keys "r", "g", "b", "mean". None when it is undefined (fewer
    than two images in either set, or real images whose mean colours do not vary)."""
    if len(real_images) < 2 or len(fake_images) < 2:
        return None
    real = real_images.double().mean(dim=(2, 3)).std(dim=0)
    fake = fake_images.double().mean(dim=(2, 3)).std(dim=0)
    if bool((real == 0).any()):
        return None
    ratios = (fake / real).tolist()
    result = {name: float(value) for name, value in zip(CHANNELS, ratios, strict=True)}
    result["mean"] = float(np.mean(ratios))
    return result


def histogram_kl(real_images: torch.Tensor, fake_images: torch.Tensor) -> dict[str, float]:
    """KL(real || synthetic) of the two sets' colour histograms: keys "r", "g", "b", "mean"."""
    return kl_per_channel(colour_histograms(real_images), colour_histograms(fake_images))


def choose_subset(
    images: torch.Tensor, n: int = DEFAULT_SUBSET_SIZE, seed: int = 0
) -> tuple[torch.Tensor, str | None]:
    """``n`` images drawn without replacement (in their original order), and a note or None.

    With fewer than ``n`` images all are used and the note says so; that alone is no error.
    """
    if len(images) <= n:
        note = None if len(images) == n else f"only {len(images)} images available, all used instead of {n}"
        return images, note
    chosen = np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    return images[torch.from_numpy(chosen)], None


@dataclass(frozen=True)
class ClassHistogramComparison:
    class_name: str
    kl: dict[str, float]  # "r", "g", "b", "mean"
    spread: dict[str, float] | None  # colour_spread of the same subsets, "r", "g", "b", "mean"
    real_histograms: np.ndarray  # (3, 256)
    synthetic_histograms: np.ndarray  # (3, 256)
    real_count: int
    synthetic_count: int
    notes: tuple[str, ...]


def per_class_histogram_kl(
    real_images: torch.Tensor,
    real_labels: torch.Tensor,
    fake_images: torch.Tensor,
    fake_labels: torch.Tensor,
    class_names: list[str],
    n: int = DEFAULT_SUBSET_SIZE,
    seed: int = 0,
) -> list[ClassHistogramComparison]:
    """For each class, up to ``n`` real against up to ``n`` synthetic images of it.

    Raises GenError when a class has no real or no synthetic images at all.
    """
    comparisons = []
    for label, class_name in enumerate(class_names):
        real = real_images[real_labels == label]
        fake = fake_images[fake_labels == label]
        if len(real) == 0 or len(fake) == 0:
            side = "real" if len(real) == 0 else "synthetic"
            raise GenError(f"class {class_name!r} has no {side} images to compare colour histograms with.")
        real, real_note = choose_subset(real, n, seed)
        fake, fake_note = choose_subset(fake, n, seed)
        notes = tuple(
            f"{side}: {note}" for side, note in (("real", real_note), ("synthetic", fake_note)) if note
        )
        real_histograms, fake_histograms = colour_histograms(real), colour_histograms(fake)
        comparisons.append(
            ClassHistogramComparison(
                class_name=class_name,
                kl=kl_per_channel(real_histograms, fake_histograms),
                spread=colour_spread(real, fake),
                real_histograms=real_histograms,
                synthetic_histograms=fake_histograms,
                real_count=len(real),
                synthetic_count=len(fake),
                notes=notes,
            )
        )
    return comparisons


def plot_histograms(real_hist: np.ndarray, fake_hist: np.ndarray, title: str, path: str | Path) -> Path:
    """A PNG with one panel per channel: real solid, synthetic dashed. Returns the path."""
    figure = new_figure(7.0, 6.0)
    axes = figure.subplots(3, 1, sharex=True)
    intensities = np.arange(256)
    for index, (ax, colour) in enumerate(zip(axes, ("tab:red", "tab:green", "tab:blue"), strict=True)):
        ax.plot(intensities, real_hist[index], color=colour, linestyle="-", linewidth=1.2, label="real")
        ax.plot(intensities, fake_hist[index], color=colour, linestyle="--", linewidth=1.2, label="synthetic")
        ax.set_ylabel(f"{CHANNELS[index].upper()}: share of pixels")
        ax.set_xlim(0, 255)
        ax.legend(loc="upper left", frameon=False)
    axes[-1].set_xlabel("intensity")
    figure.suptitle(title)
    return save_png(figure, path)


def histogram_figures(
    report: Report,
    folder: Path,
    real: tuple[torch.Tensor, torch.Tensor],
    synthetic: tuple[torch.Tensor, torch.Tensor],
    train: tuple[torch.Tensor, torch.Tensor] | None,
    settings: ReportSettings,
) -> None:
    """Per class: the colour-histogram KL of ``histogram_n`` real against as many synthetic
    images, per channel and their mean, beside its floor (the same KL between real training and
    real held-out images, with ``train``), and a plot of the two sets of histograms; and the
    colour spread of the same images (``colour_spread``, per channel and their mean) beside the
    same ratio between real training and real held-out images (``colour_spread_floor``)."""
    class_names = list(report.class_names)
    comparisons = per_class_histogram_kl(*real, *synthetic, class_names, settings.histogram_n, settings.seed)
    floors = {}
    if train is not None:
        floors = {
            c.class_name: c
            for c in per_class_histogram_kl(*train, *real, class_names, settings.histogram_n, settings.seed)
        }
    for comparison in comparisons:
        name = comparison.class_name
        for channel, value in comparison.kl.items():
            metric = "histogram_kl" if channel == "mean" else f"histogram_kl_{channel}"
            report.add(metric, value, name, real=comparison.real_count, synthetic=comparison.synthetic_count)
        report.notes.extend(f"histogram {name}: {note}" for note in comparison.notes)
        if comparison.spread is not None:
            for channel, value in comparison.spread.items():
                metric = "colour_spread" if channel == "mean" else f"colour_spread_{channel}"
                report.add(metric, value, name, measure="std of per-image mean intensity, synthetic / real")
        if name in floors:
            between = "real train and real test"
            report.add("histogram_kl_floor", floors[name].kl["mean"], name, between=between)
            if floors[name].spread is not None:
                report.add("colour_spread_floor", floors[name].spread["mean"], name, between=between)
        plot = folder / f"histogram-{name}.png"
        plot_histograms(
            comparison.real_histograms,
            comparison.synthetic_histograms,
            f"{name}: real (solid) vs synthetic (dashed), KL {comparison.kl['mean']:.4f}",
            plot,
        )
        report.plots.append(plot.name)
