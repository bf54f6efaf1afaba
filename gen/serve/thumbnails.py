"""Thumbnails, made once and kept: a page never decodes a full image.

A thumbnail is named after the source file's resolved path, size and modification time, so an
edited file gets a new one and an unchanged one is read from the cache. An image already as
small as a thumbnail (gen's 64x64 samples) is served as it is, without a copy.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from gen.checkpoint import atomic_write
from gen.errors import GenError

THUMBNAIL_SIZE = 96


def default_cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gen" / "thumbnails"


def thumbnail(source: str | Path, cache: Path, size: tuple[int, int] | None = None) -> Path:
    """The file to serve for source as a thumbnail: source itself when it is small already (its
    recorded size, if the caller knows it), else the cached copy, made now if missing."""
    source = Path(source)
    if size is not None and max(size) <= THUMBNAIL_SIZE:
        if not source.is_file():
            raise GenError(f"the image file {source} is gone.")
        return source
    try:
        stat = source.stat()
    except OSError:
        raise GenError(f"the image file {source} is gone.") from None
    key = hashlib.sha256(f"{source.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
    cached = cache / key[:2] / f"{key}.png"
    if cached.is_file():
        return cached
    try:
        with Image.open(source) as image:
            image.draft("RGB", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))  # JPEG: decode at a fraction
            image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            small = image.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        raise GenError(f"{source} is not a readable image.") from None
    atomic_write(cached, lambda file: small.save(file, format="PNG"))
    return cached
