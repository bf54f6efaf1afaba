"""Procedural phantoms of stained blood-smear cells, so demos and tests need no downloaded data.

``gen demo-data`` writes them. They are drawings, not patients: the class names say what the
drawing varies, never a diagnosis. Each image shows one nucleated cell near the centre among
pale red cells on a light pink background, as a May-Grünwald-Giemsa smear looks under a
bright-field microscope. The four classes differ in the ways real cell types do:

| class | cell size | nucleus | chromatin | cytoplasm |
|---|---|---|---|---|
| phantom_small_round | small | one large round | smooth, dark | thin pale-blue rim |
| phantom_large_lobed | large | one folded, three lobes | lacy, lighter | wide grey-blue |
| phantom_binucleate | medium | two round, apart | smooth | lilac |
| phantom_granular | medium | one round, off-centre | speckled | full of orange-red granules |

Colour follows the Beer-Lambert law: each stain adds optical density per channel, and the
pixel is the illumination dimmed by exp(-density). Overlapping stains then mix as they do on
glass, and one density map per structure is all a class has to describe.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.special import expit

from gen.errors import GenError

PHANTOM_CLASSES: tuple[str, ...] = (
    "phantom_small_round",
    "phantom_large_lobed",
    "phantom_binucleate",
    "phantom_granular",
)

_ILLUMINATION = np.array([244.0, 230.0, 226.0], dtype=np.float32)  # the lamp through bare glass, RGB
# Optical density per unit stain, (red, green, blue) channels: what each stain absorbs.
_PLASMA = (0.02, 0.06, 0.05)  # the faint pink of the smear's background
_RED_CELL = (0.08, 0.34, 0.26)  # eosin-stained haemoglobin: salmon pink
_NUCLEUS = (1.05, 1.45, 0.50)  # azure and methylene blue on chromatin: deep purple
_GRANULE = (0.10, 0.85, 0.95)  # eosin in coarse granules: orange-red


@dataclass(frozen=True)
class _Recipe:
    """What one phantom class looks like; lengths are fractions of the cell radius unless noted."""

    cell_radius: float  # fraction of the image side
    cytoplasm_stain: tuple[float, float, float]
    cytoplasm_density: float
    nuclei: tuple[tuple[float, float, float], ...]  # (x, y, radius) of each nuclear lobe, cell frame
    nucleus_density: float
    chromatin_contrast: float  # 0 smooth .. 1 coarse
    chromatin_grain: float  # texture scale in pixels: small is speckled
    granules: float  # fraction of the cytoplasm covered by granules


_RECIPES = {
    "phantom_small_round": _Recipe(
        cell_radius=0.15,
        cytoplasm_stain=(0.38, 0.24, 0.06),
        cytoplasm_density=0.8,
        nuclei=((0.08, 0.0, 0.8),),
        nucleus_density=1.15,
        chromatin_contrast=0.12,
        chromatin_grain=2.5,
        granules=0.0,
    ),
    "phantom_large_lobed": _Recipe(
        cell_radius=0.27,
        cytoplasm_stain=(0.30, 0.27, 0.14),
        cytoplasm_density=0.9,
        nuclei=((-0.32, 0.05, 0.3), (0.0, 0.28, 0.3), (0.32, 0.05, 0.3)),
        nucleus_density=0.8,
        chromatin_contrast=0.35,
        chromatin_grain=1.6,
        granules=0.0,
    ),
    "phantom_binucleate": _Recipe(
        cell_radius=0.22,
        cytoplasm_stain=(0.22, 0.42, 0.16),
        cytoplasm_density=0.9,
        nuclei=((-0.42, 0.0, 0.33), (0.42, 0.0, 0.33)),
        nucleus_density=1.0,
        chromatin_contrast=0.15,
        chromatin_grain=2.5,
        granules=0.0,
    ),
    "phantom_granular": _Recipe(
        cell_radius=0.21,
        cytoplasm_stain=(0.10, 0.30, 0.30),
        cytoplasm_density=0.9,
        nuclei=((0.3, 0.0, 0.5),),
        nucleus_density=1.0,
        chromatin_contrast=0.8,
        chromatin_grain=0.7,
        granules=0.45,
    ),
}


def write_phantoms(
    out: str | Path, per_class: int = 100, seed: int = 0, image_size: int = 96
) -> dict[str, int]:
    """Write ``per_class`` PNG phantoms of each class to ``out/<class>/<class>_0001.png`` ...

    Deterministic for a given ``seed``. Refuses to touch a class folder that already holds
    files. Each class folder is built in a temporary folder beside ``out`` and moved in whole,
    so an interrupted run leaves complete classes or none. Returns the images written per class.
    """
    if per_class < 1:
        raise GenError(f"phantoms per class must be at least 1, not {per_class}.")
    if image_size < 32:
        raise GenError(f"phantom image size must be at least 32 pixels, not {image_size}.")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenError(f"{out} exists and is not a folder.")
    occupied = [name for name in PHANTOM_CLASSES if (out / name).is_dir() and any((out / name).iterdir())]
    occupied += [name for name in PHANTOM_CLASSES if (out / name).exists() and not (out / name).is_dir()]
    if occupied:
        raise GenError(f"{out / occupied[0]} already exists and is not empty; choose another folder.")

    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-phantoms-", dir=out.parent))
    except OSError as error:
        raise GenError(f"cannot create {out}: {error.strerror or error}.") from None
    try:
        digits = max(4, len(str(per_class)))
        for class_index, name in enumerate(PHANTOM_CLASSES):
            # One generator per class, so each class is the same whatever per_class the others get.
            rng = np.random.default_rng([seed, class_index])
            (staging / name).mkdir()
            for number in range(1, per_class + 1):
                image = draw_phantom(name, rng, image_size)
                Image.fromarray(image).save(staging / name / f"{name}_{number:0{digits}d}.png")
        for name in PHANTOM_CLASSES:
            if (out / name).is_dir():
                (out / name).rmdir()  # empty, checked above; rename cannot replace a folder everywhere
            (staging / name).rename(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dict.fromkeys(PHANTOM_CLASSES, per_class)


def draw_phantom(class_name: str, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """One phantom of ``class_name`` as uint8 (size, size, 3), drawn from ``rng``."""
    if class_name not in _RECIPES:
        raise GenError(f"unknown phantom class {class_name!r}; choose one of {', '.join(PHANTOM_CLASSES)}.")
    recipe = _RECIPES[class_name]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    cell_radius = recipe.cell_radius * size * rng.uniform(0.9, 1.1)
    centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size

    cell = _blob(ys, xs, centre, cell_radius, rng)
    nucleus = _nucleus(ys, xs, centre, cell_radius, recipe.nuclei, rng)
    cytoplasm = cell * (1 - nucleus)
    red_cells = _red_cells(ys, xs, centre, cell_radius, size, rng) * (1 - cell)  # the white cell lies on top
    chromatin = 1 + recipe.chromatin_contrast * _texture(size, recipe.chromatin_grain, rng)
    cytoplasm_texture = 1 + 0.15 * _texture(size, 2.0, rng)
    stains = [
        (np.ones_like(cell), _PLASMA),
        (red_cells, _RED_CELL),
        (nucleus * recipe.nucleus_density * np.clip(chromatin, 0.3, None), _NUCLEUS),
        (cytoplasm * recipe.cytoplasm_density * cytoplasm_texture, recipe.cytoplasm_stain),
    ]
    if recipe.granules > 0:
        # Granules are the highest spots of fine noise, cut off to cover the asked fraction.
        spots = _texture(size, 0.9, rng)
        threshold = np.quantile(spots, 1 - recipe.granules)
        stains.append((expit((spots - threshold) * 4) * cell * (1 - 0.7 * nucleus), _GRANULE))
    amounts = np.stack([amount for amount, _ in stains])
    # Every smear takes each stain a little more or less strongly; so does every phantom.
    strengths = rng.uniform(0.88, 1.12, (len(stains), 1)).astype(np.float32)
    colours = np.array([stain for _, stain in stains], dtype=np.float32) * strengths
    density = np.tensordot(amounts, colours, axes=(0, 0))  # (size, size, 3)

    direction = float(rng.uniform(0, 2 * np.pi))
    uneven_light = 1 - 0.05 * ((math.cos(direction) * xs + math.sin(direction) * ys) / size)
    image = _ILLUMINATION * uneven_light[..., None] * np.exp(-density)
    image = gaussian_filter(image, sigma=(rng.uniform(0.5, 0.9),) * 2 + (0,))  # slightly soft focus
    image += 2.5 * rng.standard_normal(image.shape, dtype=np.float32)  # camera noise
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _nucleus(
    ys: np.ndarray,
    xs: np.ndarray,
    centre: np.ndarray,
    cell_radius: float,
    lobes: tuple[tuple[float, float, float], ...],
    rng: np.random.Generator,
) -> np.ndarray:
    """The union of the nucleus's lobes, laid out in the cell's frame and turned by a random angle."""
    angle = rng.uniform(0, 2 * np.pi)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    nucleus = np.zeros_like(ys)
    for x, y, radius in lobes:
        lobe_centre = centre + turn @ (np.array([y, x]) * cell_radius) + rng.normal(0, 0.03 * cell_radius, 2)
        lobe_radius = radius * cell_radius * rng.uniform(0.9, 1.1)
        nucleus = np.maximum(nucleus, _blob(ys, xs, lobe_centre, lobe_radius, rng))
    return nucleus


def _blob(
    ys: np.ndarray, xs: np.ndarray, centre: np.ndarray, radius: float, rng: np.random.Generator
) -> np.ndarray:
    """A soft-edged disc whose rim wobbles a little, as no cell is a perfect circle; values 0..1."""
    dy, dx = ys - np.float32(centre[0]), xs - np.float32(centre[1])
    angle = np.arctan2(dy, dx)
    wobble = sum(
        rng.uniform(0, 0.05) * np.cos(harmonic * angle + np.float32(rng.uniform(0, 2 * np.pi)))
        for harmonic in (2, 3)
    )
    return expit((radius * (1 + wobble) - np.sqrt(dy * dy + dx * dx)) / np.float32(0.8))


def _red_cells(
    ys: np.ndarray,
    xs: np.ndarray,
    centre: np.ndarray,
    cell_radius: float,
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Stain density of 3 to 8 red cells around the nucleated one: discs with a pale centre."""
    count = rng.integers(3, 9)
    radius = (size * rng.uniform(0.10, 0.13, count)).astype(np.float32)[:, None, None]
    bearing = rng.uniform(0, 2 * np.pi, count)
    distance = (
        cell_radius + radius.ravel() * rng.uniform(0.6, 1.1, count) + rng.uniform(0, 0.35 * size, count)
    )
    cy, cx = (centre[:, None] + distance * np.stack([np.sin(bearing), np.cos(bearing)])).astype(np.float32)
    dy, dx = ys - cy[:, None, None], xs - cx[:, None, None]
    separation = np.sqrt(dy * dy + dx * dx)
    disc = expit((radius - separation) / np.float32(0.8))
    # Red cells are biconcave: thinner, so paler, in the middle.
    pallor = 1 - 0.45 * np.exp(-((separation / (0.55 * radius)) ** 2))
    return np.clip((disc * pallor).sum(axis=0), 0, 1.4) * np.float32(rng.uniform(0.8, 1.2))


def _texture(size: int, grain: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field of zero mean and unit spread; ``grain`` is its feature size in pixels."""
    field = gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), grain)
    return (field - field.mean()) / (field.std() + 1e-6)
