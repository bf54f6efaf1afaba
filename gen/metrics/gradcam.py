"""Does a classifier look at the cell in synthetic images, as it does in real ones? Grad-CAM.

The lung X-ray work this project grew out of checked its synthetic images this way. Here the
utility classifier trained on real images only (``gen.metrics.utility``'s "real_only"
regime: the domain CNN) is explained with captum's ``LayerGradCam`` at its last
convolutional block (8x8 for a 64x64 input): for each image, the map of where the evidence
for its class lies, upsampled to the image and scaled to [0, 1] by its maximum.

Per class, the report shows real and synthetic images with their maps laid over them, and
measures how alike the mean maps of the two are: the Pearson correlation of the two mean
maps' pixels (1: the classifier looks at the same places on average; 0 or below: elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from matplotlib import colormaps

from gen.images import write_grid
from gen.metrics._plotting import new_figure, save_png
from gen.metrics.domain import DomainClassifier, to_model_input
from gen.metrics.figures import Report

GRID_COLUMNS = 8
OVERLAY_ALPHA = 0.45


def class_activation_maps(
    model: DomainClassifier,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] of uint8 images (N, 3, H, W) for their target classes."""
    model = model.eval()
    cam = LayerGradCam(model, model.body[-1])
    maps = []
    for start in range(0, len(images), batch_size):
        batch = to_model_input(images[start : start + batch_size], device).requires_grad_(True)
        target = targets[start : start + batch_size].to(device)
        attribution = cam.attribute(batch, target=target, relu_attributions=True)
        upsampled = LayerAttribution.interpolate(attribution, tuple(images.shape[2:]), "bilinear")
        maps.append(upsampled[:, 0].detach().double().cpu().numpy())
    if not maps:
        return np.zeros((0, *images.shape[2:]))
    maps_array = np.concatenate(maps)
    peaks = maps_array.reshape(len(maps_array), -1).max(axis=1)
    scale = np.where(peaks > 0, peaks, 1.0)
    return np.clip(maps_array / scale[:, None, None], 0.0, 1.0)


def map_similarity(real_maps: np.ndarray, synthetic_maps: np.ndarray) -> float | None:
    """Pearson correlation of the mean real and mean synthetic maps; None if either is flat."""
    first, second = real_maps.mean(axis=0).ravel(), synthetic_maps.mean(axis=0).ravel()
    if first.std() == 0 or second.std() == 0:
        return None
    return float(np.corrcoef(first, second)[0, 1])


def overlay(images: torch.Tensor, maps: np.ndarray, alpha: float = OVERLAY_ALPHA) -> torch.Tensor:
    """uint8 images (N, 3, H, W) with their maps laid over them in the 'jet' colour map."""
    colours = colormaps["jet"](maps)[..., :3]  # (N, H, W, 3) in [0, 1]
    heat = torch.from_numpy(colours).permute(0, 3, 1, 2).float() * 255
    blended = (1 - alpha) * images.float() + alpha * heat
    return blended.round().clamp(0, 255).to(torch.uint8)


@dataclass
class ClassGradCam:
    class_name: str
    similarity: float | None
    real_mean: np.ndarray  # (H, W)
    synthetic_mean: np.ndarray


def class_gradcam(
    model: DomainClassifier,
    real: torch.Tensor,
    synthetic: torch.Tensor,
    label: int,
    class_name: str,
    grid_path: str | Path,
    *,
    device: str | torch.device = "cpu",
) -> ClassGradCam:
    """Maps of one class's real and synthetic images (for that class), their similarity, and a
    grid: real images with their maps on the top row, synthetic ones below."""
    maps = {}
    for name, images in (("real", real), ("synthetic", synthetic)):
        targets = torch.full((len(images),), label, dtype=torch.long)
        maps[name] = class_activation_maps(model, images, targets, device=device)
    shown = min(GRID_COLUMNS, len(real), len(synthetic))
    if shown:
        rows = torch.cat(
            [
                overlay(real[:shown], maps["real"][:shown]),
                overlay(synthetic[:shown], maps["synthetic"][:shown]),
            ]
        )
        write_grid(rows, shown, Path(grid_path), row_labels=["real", "synthetic"])
    return ClassGradCam(
        class_name,
        map_similarity(maps["real"], maps["synthetic"]) if shown else None,
        maps["real"].mean(axis=0) if len(real) else np.zeros(real.shape[2:]),
        maps["synthetic"].mean(axis=0) if len(synthetic) else np.zeros(synthetic.shape[2:]),
    )


def plot_mean_maps(results: list[ClassGradCam], path: str | Path) -> Path:
    """The mean real and mean synthetic map of each class side by side, with their correlation."""
    figure = new_figure(2.2 * len(results) + 0.5, 4.6)
    axes = figure.subplots(2, len(results), squeeze=False)
    for column, result in enumerate(results):
        for row, (name, mean) in enumerate(
            (("real", result.real_mean), ("synthetic", result.synthetic_mean))
        ):
            ax = axes[row][column]
            ax.imshow(mean, cmap="jet", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                similarity = "-" if result.similarity is None else f"{result.similarity:.2f}"
                ax.set_title(f"{result.class_name}\nr = {similarity}", fontsize=9)
            if column == 0:
                ax.set_ylabel(f"mean map, {name}")
    return save_png(figure, path)


def gradcam_figures(
    report: Report,
    folder: Path,
    model: torch.nn.Module,
    real: tuple[torch.Tensor, torch.Tensor],
    synthetic: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
) -> None:
    """gradcam_similarity per class and overall (gen.metrics.gradcam: the correlation of the
    mean Grad-CAM maps of real and synthetic images under the real-only utility classifier),
    a grid per class of maps over real (top) and synthetic images, and the mean maps."""
    results = []
    for label, name in enumerate(report.class_names):
        plot = folder / f"gradcam-{name}.png"
        result = class_gradcam(
            model,
            real[0][real[1] == label],
            synthetic[0][synthetic[1] == label],
            label,
            name,
            plot,
            device=device,
        )
        results.append(result)
        if plot.is_file():
            report.plots.append(plot.name)
        if result.similarity is None:
            report.notes.append(f"Grad-CAM {name}: no similarity; a side has no images or a flat mean map.")
        else:
            report.add("gradcam_similarity", result.similarity, name, measure="pearson of mean maps")
    measured = [r.similarity for r in results if r.similarity is not None]
    if measured:
        report.add("gradcam_similarity", float(np.mean(measured)), None, measure="mean over classes")
    report.plots.append(plot_mean_maps(results, folder / "gradcam-mean-maps.png").name)
