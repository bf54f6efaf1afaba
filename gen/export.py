"""Packing a model's recorded images into a folder a stranger can download and verify.

    result = export_dataset(engine, 3, Path("exports/pbc-synthetic"), sql_dump=True, csv=True)

The folder (`gen verify` checks all of it):

    <class>/*.png           every image the model's rows point to (or the chosen subset)
    <class>/MD5SUMS         md5sum's format: (cd <class> && md5sum -c MD5SUMS)
    database.sql            the rows behind the images, file paths relative to this folder
    settings.csv            the GAN settings behind the first N images, one row per image
    report.json, plots/     the quality report: --report DIR's report.json, report.md and
                            plots, else report.json built from the reports rows
    grids/<class>.png       a sample grid per class, shown by index.html
    README.md, index.html   the data set's card (licence and citation from --license and
                            --citation); both may be edited and so are not checksummed
    manifest.json           counts, sizes, SHA-256 of every other file, tool, source, time

Decisions worth knowing:
- Images are copied, never hard-linked: a published data set must not share inodes with the
  working files, or editing one would silently change the other. Each source file is read
  once, and its MD5 is checked against its row while it is copied: a file changed since it was
  sampled stops the export instead of being published under a wrong checksum.
- A file keeps its name inside its class folder. If two rows of one class point to different
  files with the same name (sampled into two folders), the later row's file is renamed
  <stem>-<image id><suffix>; the dump records the name used.
- The export is built in a hidden folder beside the target, synced to disk and renamed into
  place when complete, so a failure, an interrupt or a power cut leaves no half data set (a
  killed process may leave the hidden .<name>.*.partial folder, never the target). --force
  replaces only an existing gen data set (or an empty folder), never another folder.
- The archive is deterministic: sorted names, owner 0, modes 644/755 and every mtime set to the
  manifest's creation time, so archiving the same data set twice gives the same bytes.
"""

from __future__ import annotations

import csv
import ctypes
import errno
import glob
import gzip
import hashlib
import html
import io
import json
import os
import re
import secrets
import shlex
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from tqdm import tqdm

from gen import __version__
from gen.checkpoint import file_sha256
from gen.data import check_class_name
from gen.errors import GenError
from gen.redact import local_paths, redact, redact_text
from gen.runtime import left_by_a_dead_process

MANIFEST_FORMAT = "gen-dataset/1"
DUMP_DIALECTS = ("postgresql", "sqlite")
DEFAULT_CSV_ROWS = 100
SQL_DUMP_NAME = "database.sql"
CSV_NAME = "settings.csv"
REPORT_NAME = "report.json"
REPORT_MARKDOWN_NAME = "report.md"
MANIFEST_NAME = "manifest.json"
MD5SUMS_NAME = "MD5SUMS"
GRIDS_DIR = "grids"
PLOTS_DIR = "plots"
# Written for people to edit (licence, citation), so their bytes are not part of the manifest.
CARD_FILES = ("README.md", "index.html")
RESERVED_NAMES = frozenset(
    {
        SQL_DUMP_NAME,
        CSV_NAME,
        REPORT_NAME,
        REPORT_MARKDOWN_NAME,
        MANIFEST_NAME,
        GRIDS_DIR,
        PLOTS_DIR,
        *CARD_FILES,
    }
)
GRID_COLUMNS, GRID_ROWS = 8, 4
CSV_COLUMNS = (
    "file_path",
    "class_name",
    "md5",
    "seed",
    "sample_index",
    "model_id",
    "preset",
    "g_optimizer",
    "d_optimizer",
    "loss",
    "batch_size",
    "epochs",
    "iterations",
    "g_lr",
    "d_lr",
    "ema_decay",
    "diffaugment",
)
# Copying is disk- and hashing-bound; hashlib and file I/O release the GIL, so a few threads
# keep both cores busy. Work goes out in chunks so the pool's overhead stays small.
COPY_THREADS = max(2, min(8, 2 * (os.cpu_count() or 1)))
COPY_CHUNK = 128


@dataclass(frozen=True)
class ExportedImage:
    """One image row and where its file goes in the data set."""

    id: int
    source: Path
    class_name: str
    name: str  # file name inside the class folder
    md5: str
    seed: int
    sample_index: int
    iteration: int
    checkpoint: str = ""  # the stored path of the checkpoint that made it

    @property
    def relative_path(self) -> str:
        return f"{self.class_name}/{self.name}"


@dataclass(frozen=True)
class ExportResult:
    out: Path
    model_id: int
    classes: dict[str, int]  # class name -> image files, in label order
    images: int  # image files
    rows: int  # image rows (more than files only if two rows share one file)
    image_bytes: int
    files: tuple[str, ...]  # the other files written, relative to out
    missing: tuple[str, ...]  # recorded files left out because they are gone (skip_missing)
    archive: Path | None
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


# ----------------------------------------------------------------------------- md5sum's format


def md5sums_line(md5: str, name: str) -> str:
    """One line as `md5sum` writes it (text mode), escaping a backslash or newline in the name."""
    if "\\" in name or "\n" in name:
        escaped = name.replace("\\", "\\\\").replace("\n", "\\n")
        return f"\\{md5}  {escaped}\n"
    return f"{md5}  {name}\n"


def parse_md5sums_line(line: str) -> tuple[str, str] | None:
    """(md5, name) from a line in md5sum's format (text or binary mode), or None if malformed."""
    escaped = line.startswith("\\")
    if escaped:
        line = line[1:]
    md5, separator, name = line[:32], line[32:34], line[34:]
    if len(md5) != 32 or any(c not in "0123456789abcdefABCDEF" for c in md5) or separator not in ("  ", " *"):
        return None
    if not name:
        return None
    if escaped:
        name = name.replace("\\\\", "\x00").replace("\\n", "\n").replace("\x00", "\\")
    return md5.lower(), name


# ----------------------------------------------------------------------------- choosing images


def check_class_folder_name(name: str) -> None:
    """A class name must work as one folder name beside the data set's own files: the rule
    class folders follow (gen.data.check_class_name), and none of the data set's own names."""
    check_class_name(name)
    if name.lower() in {reserved.lower() for reserved in RESERVED_NAMES}:
        raise GenError(
            f"class name {name!r} clashes with the data set's own {name} (reserved: "
            f"{', '.join(sorted(RESERVED_NAMES))})."
        )


def select_images(
    session: Session,
    gan_id: int,
    *,
    classes: Sequence[str] | None = None,
    limit_per_class: int | None = None,
    skip_missing: bool = False,
    checkpoint: str | int | None = None,
    seed: int | None = None,
    folder: str | Path | None = None,
) -> tuple[list[ExportedImage], list[str]]:
    """(the images to export, in class label order then oldest first, with their data set names;
    the recorded files found missing and left out, with skip_missing).

    checkpoint ("best", "latest" or an iteration), seed and folder keep only the images made
    from that checkpoint, with that seed, or sampled into that folder. One query for all rows.
    Raises GenError when the model, a class or the images are not there.
    """
    from db import queries
    from db.models import Checkpoint, ClassName, Image
    from db.recording import stored_path

    info = queries.get_model(session, gan_id)
    if classes:
        unknown = [name for name in classes if name not in info.class_names]
        if unknown:
            raise GenError(
                f"model {gan_id} has no class {unknown[0]!r}; its classes: {', '.join(info.class_names)}."
            )
        empty = [name for name in classes if not info.image_counts[name]]
        if empty:
            raise GenError(f"model {gan_id} has no images of class {empty[0]!r} yet; run gen sample first.")
    if not sum(info.image_counts.values()):
        raise GenError(f"model {gan_id} has no recorded images yet; run gen sample first.")
    wanted = set(classes) if classes else set(info.class_names)
    for name in wanted:
        check_class_folder_name(name)
    query = (
        select(
            Image.id,
            Image.file_path,
            ClassName.name,
            Image.md5,
            Image.seed,
            Image.sample_index,
            Image.iteration,
            Checkpoint.path,
        )
        .join(ClassName, ClassName.id == Image.class_id)
        .join(Checkpoint, Checkpoint.id == Image.checkpoint_id)
        .where(ClassName.gan_id == gan_id)
        .order_by(ClassName.label, Image.id)
    )
    chosen_filters = []
    if checkpoint is not None:
        row = _checkpoint_with_images(info, session, checkpoint)
        query = query.where(Image.checkpoint_id == row.id)
        chosen_filters.append(f"checkpoint {checkpoint} (iteration {row.iteration})")
    if seed is not None:
        query = query.where(Image.seed == seed)
        chosen_filters.append(f"seed {seed}")
    if folder is not None:
        query = query.where(Image.file_path.startswith(stored_path(folder) + os.sep, autoescape=True))
        chosen_filters.append(f"folder {folder}")
    rows = session.execute(query).all()
    if chosen_filters and not rows:
        raise GenError(f"model {gan_id} has no recorded images of {', '.join(chosen_filters)}.")
    chosen: list[ExportedImage] = []
    per_class: dict[str, int] = {}
    names: dict[str, dict[str, str]] = {}  # class -> exported name -> source path
    by_source: dict[str, str] = {}  # source path -> exported name
    missing: list[str] = []
    for image_id, file_path, class_name, md5, image_seed, sample_index, iteration, checkpoint_path in rows:
        if class_name not in wanted:
            continue
        if limit_per_class is not None and per_class.get(class_name, 0) >= limit_per_class:
            continue
        if not os.path.isfile(file_path):
            missing.append(file_path)
            if skip_missing:
                continue
        name = by_source.get(file_path)
        if name is None:
            taken = names.setdefault(class_name, {})
            name = os.path.basename(file_path)
            if name in taken or name == MD5SUMS_NAME:
                stem, suffix = os.path.splitext(name)
                name = f"{stem}-{image_id}{suffix}"
            taken[name] = file_path
            by_source[file_path] = name
        per_class[class_name] = per_class.get(class_name, 0) + 1
        chosen.append(
            ExportedImage(
                image_id,
                Path(file_path),
                class_name,
                name,
                md5,
                image_seed,
                sample_index,
                iteration,
                checkpoint_path,
            )
        )
    if missing and not skip_missing:
        raise GenError(
            f"{len(missing)} recorded images of model {gan_id} are missing on disk (first: {missing[0]}); "
            "restore them, or export the others with --skip-missing."
        )
    if not chosen:
        raise GenError(f"none of model {gan_id}'s recorded image files is left on disk; nothing to export.")
    return chosen, missing


def _checkpoint_with_images(info: Any, session: Session, which: str | int) -> Any:
    """The model's checkpoint row that ``which`` names ("latest": the newest that made images;
    "best": the lowest domain FID measured in training; or an iteration)."""
    from db.models import Checkpoint, Image
    from db.recording import best_checkpoint

    with_images = {
        checkpoint_id
        for (checkpoint_id,) in session.execute(
            select(Image.checkpoint_id).join(Checkpoint).where(Checkpoint.gan_id == info.id).distinct()
        )
    }
    candidates = [c for c in info.checkpoints if c.id in with_images]
    if which == "best":
        return best_checkpoint(info, info.checkpoints)
    if which == "latest":
        if not candidates:
            raise GenError(f"model {info.id} has no recorded images yet; run gen sample first.")
        return candidates[-1]
    matching = [c for c in info.checkpoints if c.iteration == int(which)]
    if not matching:
        made = ", ".join(str(c.iteration) for c in candidates) or "none"
        raise GenError(f"model {info.id} has no checkpoint of iteration {which} (images came from {made}).")
    return matching[-1]


def report_describes(report_checkpoint: str | None, images: Sequence[ExportedImage]) -> bool:
    """Whether a report that measured ``report_checkpoint`` describes these images: they all
    come from that one checkpoint."""
    made_from = {image.checkpoint for image in images}
    return report_checkpoint is not None and made_from == {report_checkpoint}


def _report_for(
    images: Sequence[ExportedImage], figures: list[dict[str, Any]], report_path: Path | None
) -> tuple[list[dict[str, Any]], Path | None, str | None]:
    """(figures, report folder, note): the recorded report (or --report's) when it measured the
    one checkpoint all the exported images come from; else none of it, and a note saying so."""
    from db.recording import stored_path

    if report_path is not None:
        claimed = json.loads((report_path / REPORT_NAME).read_text(encoding="utf-8")).get("checkpoint")
        measured = {claimed} if isinstance(claimed, str) else set()
    else:
        measured = {f["settings"]["checkpoint"] for f in figures if (f["settings"] or {}).get("checkpoint")}
    if not figures and report_path is None:
        return [], None, None
    if len(measured) == 1 and report_describes(stored_path(next(iter(measured))), images):
        return figures, report_path, None
    made_from = ", ".join(map(str, sorted({image.iteration for image in images})))
    note = (
        "No quality report describes these images: the recorded report measured another checkpoint "
        f"than the one they come from (iteration {made_from}). Run gen report on that checkpoint, or "
        "export the images of the checkpoint it measured (--checkpoint), to publish figures with them."
    )
    return [], None, note


# ----------------------------------------------------------------------------- writing the folder


def _copy_chunk(images: Sequence[ExportedImage], root: Path) -> tuple[int, list[str]]:
    """Copy and check one chunk of distinct files; (bytes copied, problems)."""
    copied, problems = 0, []
    for image in images:
        try:
            data = image.source.read_bytes()
        except OSError as error:
            problems.append(f"cannot read {image.source}: {error.strerror}")
            continue
        md5 = hashlib.md5(data).hexdigest()
        if md5 != image.md5:
            problems.append(f"{image.source} changed since it was recorded (MD5 {md5}, row says {image.md5})")
            continue
        with open(root / image.class_name / image.name, "xb") as file:
            file.write(data)
        copied += len(data)
    return copied, problems


def copy_images(images: Sequence[ExportedImage], root: Path, *, progress: bool = False) -> int:
    """Copy every distinct file into root/<class>/, checking MD5s; returns the bytes copied.

    Raises GenError listing the files that changed or could not be read (after trying all).
    """
    distinct = list({image.relative_path: image for image in images}.values())
    for class_name in dict.fromkeys(image.class_name for image in distinct):
        (root / class_name).mkdir()
    chunks = [distinct[start : start + COPY_CHUNK] for start in range(0, len(distinct), COPY_CHUNK)]
    total, problems = 0, []
    with (
        tqdm(total=len(distinct), disable=not progress, unit="img", desc="copy", dynamic_ncols=True) as bar,
        ThreadPoolExecutor(COPY_THREADS) as pool,
    ):
        for (copied, found), chunk in zip(
            pool.map(lambda c: _copy_chunk(c, root), chunks), chunks, strict=True
        ):
            total += copied
            problems += found
            bar.update(len(chunk))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise GenError(f"refusing to export: {problems[0]}{more}.")
    return total


def write_md5sums(images: Iterable[ExportedImage], root: Path) -> None:
    per_class: dict[str, dict[str, str]] = {}
    for image in images:
        per_class.setdefault(image.class_name, {})[image.name] = image.md5
    for class_name, files in per_class.items():
        text = "".join(md5sums_line(md5, name) for name, md5 in sorted(files.items()))
        (root / class_name / MD5SUMS_NAME).write_text(text, encoding="utf-8", newline="\n")


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


def write_settings_csv(path: Path, images: Sequence[ExportedImage], model: Any, rows: int | None) -> int:
    """The GAN settings behind the first `rows` images (None: all); returns the rows written."""
    training = model.training
    fixed = {
        "model_id": model.id,
        "preset": model.preset,
        **{key: training.get(key) for key in ("g_optimizer", "d_optimizer", "loss", "batch_size", "epochs")},
        **{key: training.get(key) for key in ("g_lr", "d_lr", "ema_decay", "diffaugment")},
    }
    chosen = images if rows is None else images[:rows]
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for image in chosen:
            record = {
                **fixed,
                "file_path": image.relative_path,
                "class_name": image.class_name,
                "md5": image.md5,
                "seed": image.seed,
                "sample_index": image.sample_index,
                # The checkpoint's iteration: how far the GAN was trained when it made the image.
                "iterations": image.iteration,
            }
            writer.writerow([_csv_value(record[column]) for column in CSV_COLUMNS])
    return len(chosen)


def write_grid(paths: Sequence[Path], target: Path, columns: int = GRID_COLUMNS, padding: int = 2) -> None:
    """Up to columns x GRID_ROWS images as one PNG on white, without metadata (same bytes each time)."""
    tiles = []
    for path in paths:
        with PILImage.open(path) as image:
            tiles.append(image.convert("RGB"))
    width = max(tile.width for tile in tiles)
    height = max(tile.height for tile in tiles)
    rows = -(-len(tiles) // columns)
    used_columns = min(columns, len(tiles))
    canvas = PILImage.new(
        "RGB",
        (used_columns * (width + padding) + padding, rows * (height + padding) + padding),
        (255, 255, 255),
    )
    for position, tile in enumerate(tiles):
        row, column = divmod(position, columns)
        canvas.paste(tile, (padding + column * (width + padding), padding + row * (height + padding)))
    canvas.save(target, format="PNG", compress_level=6)


def _report_rows(session: Session, gan_id: int) -> list[dict[str, Any]]:
    from db import queries

    return [
        {
            "metric": row.metric,
            "class_name": row.class_name,
            "value": row.value,
            "settings": row.settings,
            "created_at": row.created_at.isoformat(),
        }
        for row in queries.latest_report(session, gan_id)
    ]


def copy_report(report_dir: Path, root: Path) -> list[str]:
    """report.json, report.md and the *.png plots of a `gen report` folder; returns the files
    written. The plots go to plots/, and report.md's links to them are pointed there."""
    source = report_dir / REPORT_NAME
    if not source.is_file():
        raise GenError(f"{report_dir} holds no {REPORT_NAME}; point --report at a folder gen report wrote.")
    try:
        report = json.loads(source.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise GenError(f"{source} is not valid JSON ({error}).") from None
    # The report names the machine's folders and files: published without them (gen.redact).
    local = local_paths(report)
    (root / REPORT_NAME).write_text(json.dumps(redact(report), indent=2) + "\n", encoding="utf-8")
    written = [REPORT_NAME]
    plots = sorted(report_dir.glob("*.png"))
    if plots:
        (root / PLOTS_DIR).mkdir()
        for plot in plots:
            shutil.copyfile(plot, root / PLOTS_DIR / plot.name)
            written.append(f"{PLOTS_DIR}/{plot.name}")
    markdown = report_dir / REPORT_MARKDOWN_NAME
    if markdown.is_file():
        text = redact_text(markdown.read_text(encoding="utf-8"), local)
        for plot in plots:
            text = text.replace(f"]({plot.name})", f"]({PLOTS_DIR}/{plot.name})")
        (root / REPORT_MARKDOWN_NAME).write_text(text, encoding="utf-8")
        written.append(REPORT_MARKDOWN_NAME)
    return written


# ----------------------------------------------------------------------------- the card


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _architecture_line(spec: dict[str, Any]) -> str:
    from gen.architecture import from_json

    try:
        parsed = from_json(spec)
    except (GenError, TypeError, ValueError):
        return "custom (see gan_architectures in database.sql)"
    return f"cell {parsed.encoding()}, channels {list(parsed.channels)}"


# An SPDX licence identifier (https://spdx.org/licenses/), an SPDX expression of them, or a
# LicenseRef-; "none" says that no licence is granted.
_SPDX = re.compile(r"(LicenseRef-[A-Za-z0-9.-]+|[A-Za-z0-9][A-Za-z0-9.+-]*)( (AND|OR|WITH) \S+)*")


def check_license(value: str, option: str = "--license") -> str:
    """``value`` if it is an SPDX identifier or expression (or "none"), else GenError."""
    if value == "none" or _SPDX.fullmatch(value):
        return value
    raise GenError(
        f"{option} {value!r} is not an SPDX licence identifier (e.g. CC-BY-4.0, CC0-1.0, MIT; "
        "see https://spdx.org/licenses/), nor 'none'."
    )


@dataclass(frozen=True)
class Publication:
    """What the publisher says about the data set: licence, the training images' licence,
    citation, title and description. Licences are SPDX identifiers; None means not stated."""

    license: str | None = None  # "none": no licence is granted
    training_license: str | None = None
    citation: str | None = None
    title: str | None = None
    description: str | None = None


def _licence_section(publication: Publication) -> str:
    def link(identifier: str) -> str:
        if " " in identifier or identifier.startswith("LicenseRef-"):
            return f"`{identifier}`"
        return f"[{identifier}](https://spdx.org/licenses/{identifier}.html)"

    if publication.license in (None, "none"):
        this = "No licence is granted for this data set: ask its publisher before reusing the images."
    else:
        this = f"This data set is published under {link(publication.license)}."
    if publication.training_license is None:
        training = (
            "The licence of the real images the generator was trained on was not stated "
            "(`gen export --training-license`)."
        )
    elif publication.training_license == "none":
        training = "The real images the generator was trained on were not published under a licence."
    else:
        training = (
            f"The real images the generator was trained on are under {link(publication.training_license)}."
        )
    return f"{this} {training}"


def _citation_section(card: _Card) -> str:
    citation = card.publication.citation
    if citation:
        text = citation.strip()
        return f"```bibtex\n{text}\n```" if text.startswith("@") else text
    created = card.manifest["created_at"]
    key = f"gen_model{card.model.id}_{created[:10].replace('-', '')}"
    return (
        "No citation was given; this entry describes the data set itself.\n\n"
        f"```bibtex\n@misc{{{key},\n  title  = {{{{{card.title}}}}},\n  year   = {{{created[:4]}}},\n"
        f"  note   = {{Synthetic images generated with gen {card.manifest['tool_version']}, model "
        f"{card.model.id}}}\n}}\n```"
    )


@dataclass
class _Card:
    """What the README and index.html say, gathered once."""

    title: str
    model: Any
    manifest: dict[str, Any]
    figures: list[dict[str, Any]]
    report_copied: bool
    plots: list[str]
    grids: dict[str, str]  # class -> grid path
    checkpoints: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    publication: Publication = field(default_factory=lambda: Publication())
    report_note: str | None = None  # why no report describes these images


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def render_readme(card: _Card) -> str:
    manifest, model, training = card.manifest, card.model, card.model.training
    classes = manifest["classes"]
    total = manifest["images"]
    has_dump = SQL_DUMP_NAME in manifest["files"]
    has_csv = CSV_NAME in manifest["files"]
    contents = [("`<class>/*.png`", "the images, one folder per class"), ("`<class>/MD5SUMS`", "their MD5s")]
    if has_dump:
        contents.append(
            (
                f"`{SQL_DUMP_NAME}`",
                f"SQL dump ({manifest['dialect']}) of the rows recording how each image was made",
            )
        )
    if has_csv:
        contents.append((f"`{CSV_NAME}`", f"GAN settings behind the first {manifest['csv_rows']} images"))
    report_files = [
        REPORT_NAME,
        *([REPORT_MARKDOWN_NAME] if REPORT_MARKDOWN_NAME in manifest["files"] else []),
    ]
    contents.append(
        (
            ", ".join(f"`{name}`" for name in report_files),
            "the quality report" + (", plots in `plots/`" if card.plots else ""),
        )
    )
    contents += [
        ("`index.html`", "a preview: a sample grid per class"),
        (f"`{MANIFEST_NAME}`", "counts, sizes and SHA-256 of the other files"),
    ]
    if card.figures:
        quality = _table(
            ("metric", "class", "value"),
            ((f["metric"], f["class_name"] or "all classes", _fmt(f["value"])) for f in card.figures),
        )
    elif card.report_copied:
        quality = f"See `{REPORT_NAME}`" + (" and the plots in `plots/`." if card.plots else ".")
    elif card.report_note:
        quality = card.report_note
    else:
        quality = (
            "No quality report was recorded for this model, so this data set comes without quality "
            f"figures (`{REPORT_NAME}` lists none)."
        )
    training_rows = [
        ("generator", _architecture_line(model.generator)),
        ("discriminator", _architecture_line(model.discriminator)),
        *((key, _fmt(training.get(key))) for key in ("g_optimizer", "d_optimizer", "loss", "batch_size")),
        ("iterations trained", _fmt(training.get("iterations"))),
        ("epochs", _fmt(training.get("epochs"))),
        *((key, _fmt(training.get(key))) for key in ("g_lr", "d_lr", "ema_decay", "diffaugment", "seed")),
        ("images sampled at iterations", ", ".join(map(str, card.checkpoints))),
        ("sampling seeds", ", ".join(map(str, card.seeds))),
    ]
    commands = [
        (
            f"(cd {shlex.quote(next(iter(classes)))} && md5sum -c {MD5SUMS_NAME})",
            "each class folder, no gen needed",
        ),
        ("gen verify .", "every checksum, count and row"),
    ]
    if has_dump:
        load = (
            f"psql -v ON_ERROR_STOP=1 -d EMPTY_DATABASE -f {SQL_DUMP_NAME}"
            if manifest["dialect"] == "postgresql"
            else f"sqlite3 provenance.db < {SQL_DUMP_NAME}"
        )
        commands.append((load, "the provenance rows, into an empty database"))
    width = max(len(command) for command, _ in commands)
    verify = [f"{command.ljust(width)}   # {why}" for command, why in commands]
    sections = [
        f"# {card.title}",
        f"A synthetic, labelled image data set: {total} images in {len(classes)} classes, generated by a "
        f"class-conditional GAN (gen model {model.id}, {model.preset or 'custom'} architecture) with gen "
        f"{manifest['tool_version']} on {manifest['created_at'][:10]}. Every image is recorded with the "
        "model, checkpoint, class, seed and sample index that made it, so each one can be made again.",
        *([card.publication.description.strip()] if card.publication.description else []),
        "## Contents",
        _table(("path", "what"), contents),
        "## Classes",
        _table(("class", "images"), [*classes.items(), ("**total**", f"**{total}**")]),
        "## How it was made",
        _table(("setting", "value"), training_rows),
        "## Quality",
        quality,
        "## Licence",
        _licence_section(card.publication),
        "## Citation",
        _citation_section(card),
        "## How to verify",
        "```sh\n" + "\n".join(verify) + "\n```\n"
        "`README.md` and `index.html` are meant to be edited and are not checksummed; `gen verify` checks "
        "everything else.",
    ]
    return "\n\n".join(sections) + "\n"


def render_index(card: _Card) -> str:
    """A static page with no external assets: the images it shows are files of the data set."""
    manifest = card.manifest
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(card.title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
        "img{image-rendering:pixelated;max-width:100%;border:1px solid #ccc}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
        "figure{margin:1em 0}</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(card.title)}</h1>",
        f"<p>{manifest['images']} synthetic images in {len(manifest['classes'])} classes from gen model "
        f"{card.model.id}, made with gen {esc(manifest['tool_version'])} "
        f"on {esc(manifest['created_at'][:10])}. "
        'See <a href="README.md">README.md</a> for how they were made and how to verify them.</p>',
        *([f"<p>{esc(card.publication.description.strip())}</p>"] if card.publication.description else []),
        f"<p>Licence: {esc(card.publication.license or 'not stated')}; training images: "
        f"{esc(card.publication.training_license or 'not stated')}.</p>",
        "<table><tr><th>class</th><th>images</th></tr>",
        *(f"<tr><td>{esc(name)}</td><td>{count}</td></tr>" for name, count in manifest["classes"].items()),
        "</table>",
    ]
    for name, grid in card.grids.items():
        shown = min(manifest["classes"][name], GRID_COLUMNS * GRID_ROWS)
        parts += [
            f'<h2 id="class-{esc(quote(name))}">{esc(name)}</h2>',
            f'<figure><img src="{esc(quote(grid))}" alt="{shown} sample images of class {esc(name)}">'
            f"<figcaption>{shown} of {manifest['classes'][name]} images</figcaption></figure>",
        ]
    if card.figures:
        parts += ["<h2>Quality</h2>", "<table><tr><th>metric</th><th>class</th><th>value</th></tr>"]
        parts += [
            f"<tr><td>{esc(f['metric'])}</td><td>{esc(f['class_name'] or 'all classes')}</td>"
            f"<td>{esc(_fmt(f['value']))}</td></tr>"
            for f in card.figures
        ]
        parts.append("</table>")
    if card.figures or card.report_copied:
        reports = [
            REPORT_NAME,
            *([REPORT_MARKDOWN_NAME] if REPORT_MARKDOWN_NAME in manifest["files"] else []),
        ]
        links = ", ".join(f'<a href="{name}">{name}</a>' for name in reports)
        parts.append(f"<p>The full quality report: {links}.</p>")
    if card.plots:
        parts.append("<h2>Plots</h2>")
        parts += [
            f'<figure><img src="{esc(quote(plot))}" alt="{esc(Path(plot).stem)}">'
            f"<figcaption>{esc(Path(plot).name)}</figcaption></figure>"
            for plot in card.plots
        ]
    if not card.figures and not card.report_copied:
        note = card.report_note or "No quality report was recorded for this model."
        parts.append(f"<p>{esc(note)}</p>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- archive, target


def _walk_sorted(root: Path) -> list[Path]:
    found = []
    for folder, directories, files in os.walk(root):
        directories.sort()
        base = Path(folder)
        found += [base / name for name in directories]
        found += [base / name for name in sorted(files)]
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def write_archive(folder: Path, target: Path, *, arcname: str | None = None, mtime: int | None = None) -> str:
    """A deterministic .tar.gz of folder (entries under arcname, default the folder's name);
    mtime defaults to the manifest's creation time. Returns the archive's SHA-256."""
    arcname = arcname or folder.name
    if mtime is None:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        mtime = int(datetime.fromisoformat(manifest["created_at"]).timestamp())
    digest = hashlib.sha256()

    class _Hashing(io.RawIOBase):
        def __init__(self, file: Any) -> None:
            self.file = file

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            digest.update(data)
            return self.file.write(data)

    def info(name: str, *, directory: bool, size: int = 0) -> tarfile.TarInfo:
        entry = tarfile.TarInfo(name)
        entry.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        entry.mode = 0o755 if directory else 0o644
        entry.size = size
        entry.mtime = mtime
        entry.uid = entry.gid = 0
        entry.uname = entry.gname = ""
        return entry

    with open(target, "wb") as raw:
        hashing = _Hashing(raw)
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=hashing, mtime=mtime, compresslevel=6) as zipped,
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            tar.addfile(info(arcname, directory=True))
            for path in _walk_sorted(folder):
                name = f"{arcname}/{path.relative_to(folder).as_posix()}"
                if path.is_dir():
                    tar.addfile(info(name, directory=True))
                else:
                    with open(path, "rb") as file:
                        tar.addfile(info(name, directory=False, size=os.fstat(file.fileno()).st_size), file)
    return digest.hexdigest()


def is_dataset(path: Path) -> bool:
    """Whether path is a folder gen exported (its manifest says so)."""
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT


def _check_target(out: Path, *, force: bool, archive: bool) -> None:
    if out.exists() or out.is_symlink():
        if not force:
            raise GenError(f"{out} already exists; choose another --out or replace it with --force.")
        if not out.is_dir() or out.is_symlink() or (any(out.iterdir()) and not is_dataset(out)):
            raise GenError(
                f"{out} exists and is not a gen data set; refusing to replace it, even with --force."
            )
    if archive and not force:
        for path in _archive_paths(out):
            if path.exists():
                raise GenError(f"{path} already exists; choose another --out or replace it with --force.")


def _archive_paths(out: Path) -> tuple[Path, Path]:
    archive = out.with_name(out.name + ".tar.gz")
    return archive, archive.with_name(archive.name + ".sha256")


def _remove_stale_staging(out: Path) -> None:
    """Remove what earlier exports to ``out`` left when their process was killed: hidden staging
    folders and partial archives, ``.<name>.<pid>.<token>.partial`` and ``...tar.gz.partial``."""
    for stale in out.parent.glob(f".{glob.escape(out.name)}.*.partial"):
        if not left_by_a_dead_process(stale.name[len(out.name) + 2 :].split(".")[0]):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _make_staging(out: Path) -> Path:
    """The hidden folder beside out that the data set is built in."""
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(out)
        # Not tempfile.mkdtemp: its folder is private (0700), and this one becomes the data set.
        # The pid in the name tells a later export whether its process is gone.
        staging = parent / f".{out.name}.{os.getpid()}.{secrets.token_hex(6)}.partial"
        staging.mkdir()
        return staging
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), parent)
        raise GenError(f"cannot create the data set {out}: {blocking} is a file, not a folder.") from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise GenError(f"cannot create the data set {out}: {reason} ({error.filename or parent}).") from None


_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2  # renameat2(2) flags
_AT_FDCWD = -100


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """Linux's renameat2(source, target, flags); False where the system or file system has none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(error, os.strerror(error), str(target))


def _move_into_place(staging: Path, out: Path, *, force: bool) -> None:
    """Publish the finished staging folder as ``out``.

    Without --force the "already exists" rule holds at the moment of the move, not only when
    the export started: of two exports racing to one target, the second is refused. With
    --force the old data set and the new one swap places in one step (RENAME_EXCHANGE), so
    there is no moment without a complete data set at ``out``; the old one is then removed.
    """
    exists = GenError(f"{out} already exists; choose another --out or replace it with --force.")
    if not force or not out.exists():
        try:
            if _renameat2(staging, out, _RENAME_NOREPLACE):
                return
            out.mkdir()  # claims the name where renameat2 is missing; the rename replaces it
        except FileExistsError:
            raise exists from None
        os.rename(staging, out)
        return
    if _renameat2(staging, out, _RENAME_EXCHANGE):
        shutil.rmtree(staging, ignore_errors=True)  # the old data set, now at the staging path
        return
    # No atomic exchange here: move the old one aside first; a crash between the two renames
    # leaves it whole in the hidden .<name>.*.old folder.
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    os.rename(out, old / out.name)
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- the export


def export_dataset(
    engine: Engine,
    gan_id: int | None,
    out: str | Path,
    *,
    classes: Sequence[str] | None = None,
    limit_per_class: int | None = None,
    sql_dump: bool = False,
    dialect: str = "postgresql",
    csv: bool = False,
    csv_rows: int | None = DEFAULT_CSV_ROWS,
    archive: bool = False,
    force: bool = False,
    report_dir: str | Path | None = None,
    skip_missing: bool = False,
    progress: bool = False,
    publication: Publication = Publication(),
    checkpoint: str | int | None = None,
    seed: int | None = None,
    folder: str | Path | None = None,
) -> ExportResult:
    """Export model gan_id's images (None: the latest model) as a data set folder at out.

    classes / limit_per_class choose a subset (the first images of each class); sql_dump writes
    database.sql in dialect ("postgresql" or "sqlite"); csv writes settings.csv with the first
    csv_rows images (None: all); archive also writes out.tar.gz and its .sha256 beside out;
    report_dir copies a report folder's report.json and plots; skip_missing leaves out images
    whose file is gone instead of refusing; checkpoint, seed and folder choose the images by
    how they were made (select_images); publication is what the card and manifest say of
    licence, citation, title and description. A report goes in only when it measured the
    checkpoint every exported image came from; otherwise the card says no report describes
    them. Everything a user can get wrong raises GenError before anything is written; nothing
    is left behind on failure.
    """
    from db import queries
    from db.dump import dump_sql

    started = time.perf_counter()
    if sql_dump and dialect not in DUMP_DIALECTS:
        raise GenError(f"unknown SQL dialect {dialect!r}; choose one of: {', '.join(DUMP_DIALECTS)}.")
    if csv_rows is not None and csv_rows < 0:
        raise GenError("--csv-rows must be a number of rows (0 or more) or 'all'.")
    if limit_per_class is not None and limit_per_class < 1:
        raise GenError("--limit-per-class must be at least 1.")
    out = Path(out)
    report_path = Path(report_dir) if report_dir is not None else None
    if report_path is not None and not (report_path / REPORT_NAME).is_file():
        raise GenError(f"{report_path} holds no {REPORT_NAME}; point --report at a folder gen report wrote.")
    _check_target(out, force=force, archive=archive)
    with Session(engine) as session:
        gan_id = queries.latest_model_id(session) if gan_id is None else gan_id
        model = queries.get_model(session, gan_id)
        images, missing = select_images(
            session,
            gan_id,
            classes=classes,
            limit_per_class=limit_per_class,
            skip_missing=skip_missing,
            checkpoint=checkpoint,
            seed=seed,
            folder=folder,
        )
        figures = _report_rows(session, gan_id)
    figures, report_path, report_note = _report_for(images, figures, report_path)
    figures = redact(figures)
    with Session(engine) as session:
        dump = (
            dump_sql(
                session,
                gan_id,
                image_ids={image.id for image in images},
                dialect=dialect,
                file_paths={image.id: image.relative_path for image in images},
                publish=redact,
            )
            if sql_dump
            else None
        )
    created_at = datetime.now(UTC).replace(microsecond=0)
    staging = _make_staging(out)
    archive_path, checksum_path = _archive_paths(out)
    # Named like the staging folder (pid first), so that a later export cleans it up the same way.
    partial_archive = staging.with_name(staging.name.removesuffix(".partial") + ".tar.gz.partial")
    try:
        image_bytes = copy_images(images, staging, progress=progress)
        write_md5sums(images, staging)
        files: list[str] = []
        if dump is not None:
            (staging / SQL_DUMP_NAME).write_text(dump, encoding="utf-8", newline="\n")
            files.append(SQL_DUMP_NAME)
        written_csv_rows = None
        if csv:
            written_csv_rows = write_settings_csv(staging / CSV_NAME, images, model, csv_rows)
            files.append(CSV_NAME)
        if report_path is not None:
            files += copy_report(report_path, staging)
        else:
            report = {"model_id": gan_id, "source": "the reports table", "figures": figures}
            if report_note:
                report["note"] = report_note
            (staging / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            files.append(REPORT_NAME)
        by_class: dict[str, list[ExportedImage]] = {}
        for image in images:
            by_class.setdefault(image.class_name, []).append(image)
        grids = {}
        (staging / GRIDS_DIR).mkdir()
        for class_name, members in by_class.items():
            shown = list(dict.fromkeys(m.name for m in members))[: GRID_COLUMNS * GRID_ROWS]
            grid = f"{GRIDS_DIR}/{class_name}.png"
            write_grid([staging / class_name / name for name in shown], staging / grid)
            grids[class_name] = grid
            files.append(grid)
        class_counts = {name: len({m.name for m in members}) for name, members in by_class.items()}
        manifest = {
            "format": MANIFEST_FORMAT,
            "tool": "gen",
            "tool_version": __version__,
            "created_at": created_at.isoformat(),
            # The kind of database only: its URL names a host, a user or a local file.
            "source_database": engine.dialect.name,
            "model_id": gan_id,
            "preset": model.preset,
            "classes": class_counts,
            "images": sum(class_counts.values()),
            "image_rows": len(images),
            "image_bytes": image_bytes,
            "dialect": dialect if dump is not None else None,
            "csv_rows": written_csv_rows,
            "card": list(CARD_FILES),
            "license": publication.license,
            "training_license": publication.training_license,
            "files": {},
        }
        # Every MD5SUMS is pinned too: without a dump, a changed image with a regenerated
        # MD5SUMS would otherwise verify.
        checksums = [f"{name}/{MD5SUMS_NAME}" for name in class_counts]
        for name in sorted([*files, *checksums]):
            path = staging / name
            manifest["files"][name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        card = _Card(
            title=publication.title or f"{out.name}: synthetic images from gen model {gan_id}",
            model=model,
            manifest=manifest,
            figures=figures,
            report_copied=report_path is not None,
            plots=[name for name in files if name.startswith(f"{PLOTS_DIR}/")],
            grids=grids,
            checkpoints=sorted({image.iteration for image in images}),
            seeds=sorted({image.seed for image in images}),
            publication=publication,
            report_note=report_note,
        )
        (staging / "README.md").write_text(render_readme(card), encoding="utf-8")
        (staging / "index.html").write_text(render_index(card), encoding="utf-8")
        other = [*files, *CARD_FILES, *checksums]
        manifest["total_bytes"] = image_bytes + sum((staging / name).stat().st_size for name in other)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if archive:
            digest = write_archive(
                staging, partial_archive, arcname=out.name, mtime=int(created_at.timestamp())
            )
        # The files reach the disk before the rename publishes them, so that even a power cut
        # leaves no data set or a whole one. One sync costs far less than an fsync per file.
        os.sync()
        _move_into_place(staging, out, force=force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        partial_archive.unlink(missing_ok=True)
        raise
    if archive:
        os.replace(partial_archive, archive_path)
        checksum_path.write_text(f"{digest}  {archive_path.name}\n", encoding="utf-8")
    return ExportResult(
        out=out,
        model_id=gan_id,
        classes=class_counts,
        images=manifest["images"],
        rows=len(images),
        image_bytes=image_bytes,
        files=tuple(sorted([*files, *CARD_FILES, MANIFEST_NAME])),
        missing=tuple(missing),
        archive=archive_path if archive else None,
        seconds=time.perf_counter() - started,
    )
