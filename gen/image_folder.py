"""A labelled image folder in, uint8 tensors out.

The folder is laid out ``root/<class>/<images>``: every sub-folder of ``root`` is a class, named
after the folder, and label ``i`` is the ``i``-th class name in sorted (code point) order.
Choices made here, each for a reason:

- Images anywhere below a class folder belong to it (nested folders included), so a class kept
  in several batches needs no reshuffling. Anything whose name starts with a dot
  (``.ipynb_checkpoints``, ``.DS_Store``) is operating-system or tool clutter and is ignored
  silently, as are loose files directly in ``root``.
- A file is an image if Pillow decodes it as PNG, JPEG, BMP or TIFF, whatever its extension.
  Files that are not, or that fail to decode (truncated, corrupt, unreadable), are skipped and
  listed in ``skipped``; the caller decides how loudly to say so.
- Every image becomes 8-bit RGB. Transparency is composited over white, the colour of an empty
  bright-field slide. 16-bit grey (and Pillow's 32-bit integer grey, which such files can arrive
  as) is scaled by the 16-bit range (65535 -> 255), never clipped and never stretched per image,
  so relative brightness between images survives; 12-bit camera data stored in 16 bits therefore
  looks dark, as it is. Floating-point grey is read as 0..1 when it fits there, else likewise.
  EXIF orientation is applied, as any image viewer would.
- The largest centred square is cropped (cells are usually centred; squashing would distort
  them) and resized with Lanczos, antialiased over the whole source.
- ``balance=N`` tops up every class with fewer than N images to exactly N with augmented copies
  of its own images (rotation, flips, zoom, shear, elastic distortion, each with probability
  0.5, as Augmentor does in the source method). Classes with more than N images keep all of
  them: real images are never thrown away, so such a class simply stays larger.

The fingerprint covers the bytes and relative paths of the files that were loaded, not the
pixels after resizing, so it identifies the folder whatever ``image_size`` or ``balance`` a
caller asks for; a cache keyed on it must add those two itself.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import unicodedata
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from gen.errors import GenError
from gen.text import FORMULA_STARTS

IMAGE_SIZE = 64

ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")  # JPEG includes MPO, the variant many cameras write
Image.init()  # registers every format plugin: Image.open(formats=...) only sees registered ones
_HIGH_BIT_DEPTH_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
# Class names become folder names in exported data sets that strangers unpack on any system,
# so the characters Windows forbids in file names are refused along with control characters.
_UNSAFE_CLASS_NAME_CHARACTERS = frozenset('/\\:*?"<>|')
# A class folder's files are named <class>_NNNNNN.png (and .<that>.<pid>.tmp while written, or
# <stem>-<image id>.png in an export), and a file name may have 255 bytes: these leave room.
MAX_CLASS_NAME_CHARACTERS = 100
MAX_CLASS_NAME_BYTES = 200

# Augmentation strengths for ``balance``, in the spirit of the source method's Augmentor pipeline.
AUGMENTATION_PROBABILITY = 0.5
MAX_ROTATION_DEGREES = 20.0
ZOOM_RANGE = (1.0, 1.25)  # zoom in only: less of the frame is filled by reflected border
MAX_SHEAR = 0.15
DISTORTION_GRID = 4  # control points per side of the elastic displacement field
DISTORTION_STRENGTH = 0.05  # standard deviation of a control point's shift, in half-widths
# ``balance`` holds every image in memory and augments a class's shortfall in one go (about
# 200 KB per copy while it is made): 10,000 per class is a few GB, three times PBC's largest class.
MAX_BALANCE = 10_000


@dataclass(frozen=True)
class LabelledImages:
    """Images of one folder, ready to train on."""

    images: torch.Tensor  # uint8 (N, 3, image_size, image_size)
    labels: torch.Tensor  # int64 (N,), an index into class_names
    class_names: tuple[str, ...]  # label order = sorted folder names
    fingerprint: str  # sha256 hex over the sorted (relative path, file bytes) of every loaded file
    skipped: tuple[str, ...]  # "relative/path: why" for each file that is not a readable image
    files: tuple[tuple[str, str], ...] = ()  # (relative path, sha256) of every loaded file

    def counts(self) -> dict[str, int]:
        """Images per class name, in label order (augmented copies included)."""
        per_label = torch.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(count) for name, count in zip(self.class_names, per_label, strict=True)}

    def __len__(self) -> int:
        return len(self.labels)


def check_class_name(name: str) -> None:
    """Raise GenError unless ``name`` is usable as a class name, a folder name, a database value
    and a CSV cell."""
    if name.startswith(FORMULA_STARTS):
        raise GenError(
            f"class name {name!r} must not start with {name[0]!r}: a spreadsheet opening metadata.csv "
            "would run it as a formula."
        )
    if len(name) > MAX_CLASS_NAME_CHARACTERS or len(name.encode("utf-8")) > MAX_CLASS_NAME_BYTES:
        raise GenError(
            f"class name {name[:20]!r}... is too long: at most {MAX_CLASS_NAME_CHARACTERS} characters "
            f"and {MAX_CLASS_NAME_BYTES} bytes in UTF-8, so that its files' names fit in a folder."
        )
    if not name or name != name.strip() or _hidden(name):
        raise GenError(
            f"class name {name!r} must not be empty, start with a dot, or start or end with a space."
        )
    unsafe = sorted({c for c in name if c in _UNSAFE_CLASS_NAME_CHARACTERS or not c.isprintable()})
    if unsafe:
        raise GenError(
            f"class name {name!r} contains characters unsafe in a folder name: {''.join(unsafe)!r}."
        )


def check_distinct_class_names(names: Iterable[str]) -> None:
    """Raise GenError if two names would be one folder on some system: names equal after case
    folding (Windows, macOS) or Unicode normalisation (macOS stores names decomposed)."""
    seen: dict[str, str] = {}
    for name in names:
        key = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
        if key in seen:
            raise GenError(
                f"class names {seen[key]!r} and {name!r} differ only in case or Unicode normalisation, "
                "so they would be one folder on some systems."
            )
        seen[key] = name


def load_image_folder(
    root: str | Path,
    image_size: int = IMAGE_SIZE,
    balance: int | None = None,
    seed: int = 0,
    *,
    progress: bool = False,
) -> LabelledImages:
    """Load ``root/<class>/<images>`` as square RGB uint8 images of side ``image_size``.

    ``balance`` (optional) tops each smaller class up to that many images with augmented copies,
    deterministic for a given ``seed``; see the module docstring. ``progress`` shows a tqdm bar.
    """
    if image_size < 1:
        raise GenError(f"image size must be at least 1, not {image_size}.")
    if balance is not None and not 1 <= balance <= MAX_BALANCE:
        raise GenError(f"--balance must be 1 to {MAX_BALANCE} images per class, not {balance}.")
    root = Path(root)
    class_folders = _class_folders(root)
    labelled_paths = [
        (label, path) for label, folder in enumerate(class_folders) for path in _files_in(folder)
    ]

    read = partial(_read_image, image_size=image_size)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(
            tqdm(
                pool.map(read, [path for _, path in labelled_paths]),
                total=len(labelled_paths),
                desc=f"loading {root.name}",
                unit="image",
                disable=not progress,
            )
        )

    pixels, labels, hashed, skipped = [], [], [], []
    for (label, path), (file_digest, image) in zip(labelled_paths, results, strict=True):
        relative = path.relative_to(root).as_posix()
        if isinstance(image, str):
            skipped.append(f"{relative}: {image}")
            continue
        pixels.append(image)
        labels.append(label)
        hashed.append((relative, file_digest))
    loaded_labels = set(labels)
    empty = [folder.name for label, folder in enumerate(class_folders) if label not in loaded_labels]
    if empty:
        raise GenError(f"class folder {root / empty[0]} holds no readable PNG, JPEG, BMP or TIFF images.")

    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    if balance is not None:
        images, label_tensor = _balance(images, label_tensor, len(class_folders), balance, seed)
    return LabelledImages(
        images=images,
        labels=label_tensor,
        class_names=tuple(folder.name for folder in class_folders),
        fingerprint=_fingerprint(hashed),
        skipped=tuple(skipped),
        files=tuple(hashed),
    )


def hash_image_folder(root: str | Path) -> str:
    """The fingerprint ``load_image_folder(root)`` would report.

    Deciding which files count means decoding them, so this costs about as much as loading.
    """
    return load_image_folder(root).fingerprint


def augment(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random affine and elastic copies of uint8 images (N, 3, H, W), drawn from ``rng``.

    Rotation, horizontal flip, vertical flip, zoom, shear (the source method's "skew") and an
    elastic distortion are each applied with probability 0.5, all as one resampling so the
    image is interpolated once. Borders are filled by reflection: a microscopy background
    continues plausibly, where a constant fill would draw corners no real image has.
    """
    count, _, height, width = images.shape
    applied = rng.random((count, 6)) < AUGMENTATION_PROBABILITY
    # A copy with nothing applied would only duplicate an original, so it gets one operation.
    untouched = np.flatnonzero(~applied.any(axis=1))
    applied[untouched, rng.integers(0, 6, size=len(untouched))] = True
    rotate, flip_horizontal, flip_vertical, zoom, shear, distort = applied.T

    angle = np.radians(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES, count)) * rotate
    scale = np.where(zoom, rng.uniform(*ZOOM_RANGE, count), 1.0)
    shear_x, shear_y = rng.uniform(-MAX_SHEAR, MAX_SHEAR, (2, count)) * shear
    rotation = _matrices(np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle))
    shearing = _matrices(np.ones(count), shear_x, shear_y, np.ones(count))
    mirror_x, mirror_y = np.where(flip_horizontal, -1.0, 1.0), np.where(flip_vertical, -1.0, 1.0)
    # theta maps each output position to where it samples the input, so zooming in divides.
    flip_and_zoom = _matrices(mirror_x / scale, np.zeros(count), np.zeros(count), mirror_y / scale)
    linear = rotation @ shearing @ flip_and_zoom
    theta = torch.from_numpy(np.concatenate([linear, np.zeros((count, 2, 1))], axis=2)).float()
    grid = F.affine_grid(theta, [count, 3, height, width], align_corners=False)

    control_shifts = rng.normal(0.0, DISTORTION_STRENGTH, (count, 2, DISTORTION_GRID, DISTORTION_GRID))
    control_shifts *= distort[:, None, None, None]
    shifts = torch.from_numpy(control_shifts).float()
    displacement = F.interpolate(shifts, size=(height, width), mode="bicubic", align_corners=True)
    grid = grid + displacement.permute(0, 2, 3, 1)

    warped = F.grid_sample(
        images.float(), grid, mode="bicubic", padding_mode="reflection", align_corners=False
    )
    return warped.round().clamp(0, 255).to(torch.uint8)


def _matrices(
    top_left: np.ndarray, top_right: np.ndarray, bottom_left: np.ndarray, bottom_right: np.ndarray
) -> np.ndarray:
    """A batch of 2x2 matrices (N, 2, 2) from four (N,) arrays of entries."""
    return np.stack([top_left, top_right, bottom_left, bottom_right], axis=-1).reshape(-1, 2, 2)


def _class_folders(root: Path) -> list[Path]:
    if not root.exists():
        raise GenError(f"image folder {root} does not exist.")
    if not root.is_dir():
        raise GenError(f"{root} is not a folder; expected a folder laid out as root/<class>/<images>.")
    try:
        folders = sorted(entry for entry in root.iterdir() if entry.is_dir() and not _hidden(entry.name))
    except OSError as error:
        raise GenError(f"cannot read image folder {root}: {error.strerror or error}.") from None
    for folder in folders:
        check_class_name(folder.name)
        if folder.is_symlink():
            # A link back into the data folder makes a class of duplicates, one to an ancestor a
            # loop, one elsewhere a class nobody sees in the folder: none is what a user means.
            raise GenError(
                f"class folder {folder} is a link (to {os.path.realpath(folder)}); put the class's images "
                "in a real folder inside the data folder."
            )
    check_distinct_class_names(folder.name for folder in folders)
    if len(folders) < 2:
        layout = "lay images out as root/<class>/<images>"
        raise GenError(f"found {len(folders)} class folder(s) in {root} but need at least 2; {layout}.")
    return folders


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _files_in(folder: Path) -> list[Path]:
    """Files anywhere below a class folder, hidden ones and those in hidden folders left out.

    Links to folders are not followed (rglob does not descend into them); they are returned so
    that the loader names each as skipped, with why."""
    relative_paths = (path.relative_to(folder) for path in folder.rglob("*"))
    visible = [relative for relative in relative_paths if not any(_hidden(part) for part in relative.parts)]
    return [
        folder / relative
        for relative in sorted(visible, key=Path.as_posix)
        if (folder / relative).is_file() or (folder / relative).is_symlink()
    ]


def _read_image(path: Path, image_size: int) -> tuple[str, np.ndarray | str]:
    """(sha256 of the file, uint8 (size, size, 3) pixels), or ("", why it was skipped)."""
    if path.is_dir():
        return "", "a link to a folder, not followed"
    if not path.is_file():
        return "", "not a regular file"
    try:
        data = path.read_bytes()
    except OSError as error:
        return "", f"unreadable ({error.strerror or error})"
    try:
        pixels = _decode(data, image_size)
    except Image.DecompressionBombError:
        return "", "too many pixels for an image of its size (a decompression bomb?)"
    except UnidentifiedImageError:
        return "", f"not a {', '.join(ACCEPTED_FORMATS)} image"
    # Pillow signals a malformed file with many exception types (OSError, SyntaxError, ValueError,
    # KeyError, struct.error, EOFError...); to us they all mean "skip it, saying so". The price: a
    # bug in _decode would skip every file, which the "no readable images" error and the tests of
    # every format make loud rather than silent.
    except Exception as error:
        return "", f"damaged or truncated ({type(error).__name__})"
    return hashlib.sha256(data).hexdigest(), pixels


def _decode(data: bytes, image_size: int) -> np.ndarray:
    with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
        if image.format in ("JPEG", "MPO"):
            # JPEG can decode at 1/2, 1/4 or 1/8 scale in the DCT itself, several times faster;
            # kept at least twice the target size, nothing the final resize would keep is lost.
            image.draft(image.mode, (2 * image_size, 2 * image_size))
        rgb = _to_rgb(ImageOps.exif_transpose(image))
    width, height = rgb.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # Cropped before resizing, so nothing outside the square bleeds into the edge pixels.
    square = rgb.crop((left, top, left + side, top + side))
    # reducing_gap=3 first shrinks by whole factors (fast), then resamples: indistinguishable
    # from a full Lanczos over the source, which is what antialiasing needs.
    resized = square.resize((image_size, image_size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(resized, dtype=np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _HIGH_BIT_DEPTH_GREY_MODES:
        image = _high_bit_depth_to_grey(image)
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _high_bit_depth_to_grey(image: Image.Image) -> Image.Image:
    # Pillow's own convert("L") clips these modes at 255 instead of scaling them.
    values = np.asarray(image, dtype=np.float64)
    full_scale = 1.0 if image.mode == "F" and values.max(initial=0.0) <= 1.0 else 65535.0
    return Image.fromarray(np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8))


def _fingerprint(relative_paths_and_digests: list[tuple[str, str]]) -> str:
    # One line per file, the path first: a NUL cannot occur in a path, so no two folders
    # produce the same stream, and hashing each file first keeps this streaming-cheap.
    digest = hashlib.sha256()
    for relative, file_digest in sorted(relative_paths_and_digests):
        digest.update(f"{relative}\0{file_digest}\n".encode())
    return digest.hexdigest()


def _balance(
    images: torch.Tensor, labels: torch.Tensor, class_count: int, target: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    image_parts, label_parts = [], []
    for label in range(class_count):
        own = images[labels == label]
        image_parts.append(own)
        shortfall = target - len(own)
        if shortfall > 0:
            # One generator per class: changing one class's images leaves the others' copies alone.
            rng = np.random.default_rng([seed, label])
            # Cycling through shuffled orders uses every original about equally often.
            rounds = math.ceil(shortfall / len(own))
            sources = np.concatenate([rng.permutation(len(own)) for _ in range(rounds)])[:shortfall]
            image_parts.append(augment(own[torch.from_numpy(sources)], rng))
        label_parts.append(torch.full((max(target, len(own)),), label, dtype=torch.int64))
    return torch.cat(image_parts), torch.cat(label_parts)
