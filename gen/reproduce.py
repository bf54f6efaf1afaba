"""Making recorded images again from their rows alone (`gen reproduce`).

An image row names its checkpoint (file and SHA-256), class, seed and index in the seeded
noise stream, and how it was computed: batch size, threads, device, torch version. Each image
is regenerated and compared with its record:

- exact: the same bytes (MD5) as recorded. What to expect on the machine that made it, with
  the same torch, device, batch size and threads;
- within tolerance: other bytes, but every pixel within one intensity level of the file on
  disk. What gen.sample promises on any other machine, thread count or batch size (oneDNN
  picks kernels by instruction set, threads and batch size, and they round differently);
- differs: anything more, or another MD5 when the file is gone and pixels cannot be compared.

Exactness needs the same batches: an image is regenerated inside the batch it was made in.
The sampler cut each stream into batches of its batch size from index 0; the stream's length
is taken as one past the largest recorded index of that stream in that folder (so a request
that was interrupted and completed later may be reproduced within tolerance only). The
recorded thread count is used where this machine has that many cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gen.checkpoint import file_sha256, load_for_sampling
from gen.errors import GenError
from gen.images import png_bytes
from gen.runtime import resolve_device
from gen.sample import generate, load_generator

EXACT, WITHIN_TOLERANCE, DIFFERS = "exact", "within tolerance", "differs"
DEFAULT_BATCH_SIZE = 256  # gen sample's, for rows recorded before batch sizes were


@dataclass(frozen=True)
class ImageRecord:
    """What the database says about one image (db.images.image_records)."""

    id: int
    file_path: str
    md5: str
    seed: int
    sample_index: int
    label: int
    class_name: str
    checkpoint_path: str
    checkpoint_sha256: str
    stream_length: int  # one past the largest recorded index of its stream in its folder
    batch_size: int | None = None
    threads: int | None = None
    device: str | None = None
    torch_version: str | None = None


@dataclass(frozen=True)
class Reproduction:
    record: ImageRecord
    verdict: str  # EXACT, WITHIN_TOLERANCE or DIFFERS
    max_difference: int | None  # largest pixel difference from the file; None if it is gone
    same_settings: bool  # batch size, threads, device and torch all as recorded

    def describe(self) -> str:
        if self.verdict == EXACT:
            return EXACT
        if self.max_difference is None:
            return f"{self.verdict} (the file is gone; the MD5 differs)"
        settings = "" if self.same_settings else "; made with other settings, see gen reproduce --help"
        levels = f"{self.max_difference} level{'s' if self.max_difference != 1 else ''}"
        return f"{self.verdict} (pixels up to {levels} apart{settings})"


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if count and count <= (os.cpu_count() or 1):
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _file_pixels(path: str) -> torch.Tensor | None:
    try:
        with Image.open(path) as opened:
            return torch.from_numpy(np.array(opened.convert("RGB"))).permute(2, 0, 1).short()
    except (OSError, ValueError):
        return None


def reproduce(records: Sequence[ImageRecord], device: str = "auto") -> list[Reproduction]:
    """Regenerate each recorded image and say how close it comes (see the module docstring)."""
    torch_device = resolve_device(device)
    results: dict[int, Reproduction] = {}
    by_checkpoint: dict[tuple[str, str], list[ImageRecord]] = {}
    for record in records:
        by_checkpoint.setdefault((record.checkpoint_path, record.checkpoint_sha256), []).append(record)
    for (path, sha256), group in by_checkpoint.items():
        if not Path(path).is_file():
            raise GenError(f"checkpoint {path} of image {group[0].id} is gone; it cannot be made again.")
        if file_sha256(Path(path)) != sha256:
            raise GenError(
                f"checkpoint {path} changed since image {group[0].id} was made (its SHA-256 differs)."
            )
        state = load_for_sampling(path, torch_device)
        generator = load_generator(state, torch_device)
        made: dict[tuple[int, int, int, int], torch.Tensor] = {}  # (seed, label, batch size, start)
        for record in group:
            batch_size = record.batch_size or DEFAULT_BATCH_SIZE
            start = record.sample_index // batch_size * batch_size
            key = (record.seed, record.label, batch_size, start)
            if key not in made:
                stop = max(min(start + batch_size, record.stream_length), record.sample_index + 1)
                with _threads(record.threads):
                    made[key] = generate(
                        generator, record.seed, record.label, list(range(start, stop)), torch_device
                    )
            pixels = made[key][record.sample_index - start]
            results[record.id] = _compare(record, pixels, torch_device)
    return [results[record.id] for record in records]


def _compare(record: ImageRecord, pixels: torch.Tensor, device: torch.device) -> Reproduction:
    same_settings = (
        record.batch_size is not None
        and record.threads in (None, torch.get_num_threads())
        and record.device in (None, str(device))
        and record.torch_version == torch.__version__
    )
    if hashlib.md5(png_bytes(pixels)).hexdigest() == record.md5:
        return Reproduction(record, EXACT, 0, same_settings)
    on_disk = _file_pixels(record.file_path)
    if on_disk is None or hashlib.md5(Path(record.file_path).read_bytes()).hexdigest() != record.md5:
        return Reproduction(record, DIFFERS, None, same_settings)
    difference = int((on_disk - pixels.short()).abs().max())
    return Reproduction(record, WITHIN_TOLERANCE if difference <= 1 else DIFFERS, difference, same_settings)


def regenerate_dataset(path: str | Path, checkpoint: str | Path, device: str = "auto") -> list[Reproduction]:
    """Make the images of an exported data set (gen verify --regenerate) again from the rows of
    its database.sql and the checkpoint they name, which a data set does not ship: the caller
    passes it, and its SHA-256 must be the one the rows record. Call it on a data set that
    verified (gen.verify.verify_dataset): the files are then known to be regular files."""
    from gen.verify import SQL_DUMP_NAME, load_dump, open_inside, read_manifest

    root = Path(path)
    manifest = read_manifest(root)
    if SQL_DUMP_NAME not in manifest.get("files", {}):
        raise GenError(
            f"{root} has no {SQL_DUMP_NAME}: its images cannot be made again (export with --sql-dump)."
        )
    with open_inside(root, SQL_DUMP_NAME) as file:
        connection = load_dump(file, manifest.get("dialect"))
    try:
        rows = connection.execute(
            "SELECT i.id, i.file_path, i.md5, i.seed, i.sample_index, c.label, c.name, k.sha256, "
            "i.batch_size, i.threads, i.device, i.torch_version "
            "FROM images i JOIN class_names c ON c.id = i.class_name "
            "JOIN checkpoints k ON k.id = i.checkpoint ORDER BY i.id"
        ).fetchall()
    finally:
        connection.close()
    sha256 = file_sha256(Path(checkpoint))
    mine = [row for row in rows if row[7] == sha256]
    if not mine:
        made_from = ", ".join(sorted({row[7][:12] for row in rows}))
        raise GenError(
            f"{checkpoint} is not the checkpoint these images were made from (SHA-256 {sha256[:12]}...; "
            f"the rows name {made_from}...)."
        )
    lengths: dict[tuple[int, int], int] = {}
    for row in mine:
        lengths[(row[5], row[3])] = max(lengths.get((row[5], row[3]), 0), row[4] + 1)
    records = [
        ImageRecord(
            id=row[0],
            file_path=str(root / row[1]),
            md5=row[2],
            seed=row[3],
            sample_index=row[4],
            label=row[5],
            class_name=row[6],
            checkpoint_path=str(checkpoint),
            checkpoint_sha256=sha256,
            stream_length=lengths[(row[5], row[3])],
            batch_size=row[8],
            threads=row[9],
            device=row[10],
            torch_version=row[11],
        )
        for row in mine
    ]
    return reproduce(records, device=device)
