"""Near copies: are the synthetic images new cells, or the training patients' cells again?

A GAN trained on a few hundred images per class can memorise them; its "synthetic" data set
then leaks patient data and adds nothing. For each class, every synthetic image's distance to
its nearest training image is compared with what real, unseen cells of that class show: the
nearest-training distances of the held-out real images. A synthetic image closer to a training
image than the ``percentile``-th percentile (default 1st) of those real distances is a near
copy: so close that only 1% of genuinely new cells come as close.

Distances are Euclidean in two spaces, and an image is a near copy if it is one in either:
- domain features, z-scored with the training statistics (as for domain FID): robust to a
  shifted or slightly noisy copy, which a CNN's pooled features barely notice;
- pixels (uint8 scaled to [0, 1]): catches an exact or near-exact copy whatever the features.

By construction about ``percentile``% of held-out real images would be flagged, so a share
near 1% means "no more memorisation than chance"; a share far above it means copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gen.images import write_grid
from gen.metrics.figures import Report

SPACES = ("features", "pixels")


def nearest(queries: np.ndarray, references: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query row's nearest reference row, Euclidean."""
    reference = torch.from_numpy(np.ascontiguousarray(references, dtype=np.float32))
    distances, indices = [], []
    for start in range(0, len(queries), chunk):
        block = torch.from_numpy(np.ascontiguousarray(queries[start : start + chunk], dtype=np.float32))
        best = torch.cdist(block, reference).min(dim=1)
        distances.append(best.values.numpy())
        indices.append(best.indices.numpy())
    if not distances:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(distances), np.concatenate(indices)


def pixels(images_uint8: torch.Tensor) -> np.ndarray:
    return images_uint8.reshape(len(images_uint8), -1).float().div(255).numpy()


@dataclass(frozen=True)
class ClassNearCopies:
    class_name: str
    synthetic: int
    near_copies: int  # synthetic images that are near copies in either space
    share_by_space: dict[str, float]
    thresholds: dict[str, float]  # the real held-out percentile distance per space
    closest: list[tuple[int, int, float]]  # (synthetic index, training index, pixel distance), closest first

    @property
    def share(self) -> float:
        return self.near_copies / max(self.synthetic, 1)


def near_copies(
    spaces: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    labels: tuple[np.ndarray, np.ndarray, np.ndarray],
    class_names: list[str],
    percentile: float = 1.0,
    pairs: int = 8,
) -> list[ClassNearCopies]:
    """Per class, which synthetic images are near copies of training images.

    ``spaces`` maps a space name to (training, real held-out, synthetic) vectors, one row per
    image; ``labels`` gives (training, real, synthetic) labels. Indices in ``closest`` are into
    the full training and synthetic arrays.
    """
    train_labels, real_labels, fake_labels = labels
    results = []
    for label, name in enumerate(class_names):
        train_rows = np.flatnonzero(train_labels == label)
        real_rows = np.flatnonzero(real_labels == label)
        fake_rows = np.flatnonzero(fake_labels == label)
        if not len(train_rows) or not len(real_rows) or not len(fake_rows):
            continue
        flagged = np.zeros(len(fake_rows), dtype=bool)
        shares, thresholds, pixel_nearest = {}, {}, None
        for space, (train, real, fake) in spaces.items():
            real_distance, _ = nearest(real[real_rows], train[train_rows])
            fake_distance, fake_index = nearest(fake[fake_rows], train[train_rows])
            threshold = float(np.percentile(real_distance, percentile))
            copies = fake_distance < threshold
            flagged |= copies
            shares[space], thresholds[space] = float(copies.mean()), threshold
            if space == "pixels":
                pixel_nearest = (fake_distance, fake_index)
        closest = []
        if pixel_nearest is not None:
            order = np.argsort(pixel_nearest[0])[:pairs]
            closest = [
                (int(fake_rows[i]), int(train_rows[pixel_nearest[1][i]]), float(pixel_nearest[0][i]))
                for i in order
            ]
        results.append(ClassNearCopies(name, len(fake_rows), int(flagged.sum()), shares, thresholds, closest))
    return results


def write_closest_pairs(
    result: ClassNearCopies, synthetic: torch.Tensor, training: torch.Tensor, path: str
) -> None:
    """The closest synthetic/training pairs of a class: synthetic images on the top row, their
    nearest training images below."""
    if not result.closest:
        return
    top = [synthetic[i] for i, _, _ in result.closest]
    bottom = [training[j] for _, j, _ in result.closest]
    write_grid(
        torch.stack(top + bottom), len(top), path, row_labels=["synthetic", "nearest\ntraining\n(real)"]
    )


def near_copy_figures(
    report: Report,
    folder: Path,
    spaces: dict[str, Any],
    labels: tuple[np.ndarray, np.ndarray, np.ndarray],
    images: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """near_copy_share per class and overall (either space), each space's share, and a grid of
    the closest synthetic/training pairs per class (gen.metrics.near_copies)."""
    results = near_copies(spaces, labels, list(report.class_names))
    train_images, fake_images = images
    for result in results:
        report.add(
            "near_copy_share",
            result.share,
            result.class_name,
            synthetic=result.synthetic,
            percentile_of_real=1.0,
            **{f"share_{space}": share for space, share in result.share_by_space.items()},
        )
        plot = folder / f"near-copies-{result.class_name}.png"
        write_closest_pairs(result, fake_images, train_images, plot)
        if plot.is_file():
            report.plots.append(plot.name)
    if results:
        total = sum(result.synthetic for result in results)
        report.add("near_copy_share", sum(r.near_copies for r in results) / total, None, synthetic=total)
