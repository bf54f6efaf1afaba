"""Writing the data set's files: images copied and checked, MD5SUMS, settings.csv, grids, the report."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image as PILImage
from tqdm import tqdm

from gen.errors import GenError
from gen.export.layout import (
    COPY_CHUNK,
    COPY_THREADS,
    CSV_COLUMNS,
    GRID_COLUMNS,
    MD5SUMS_NAME,
    METADATA_COLUMNS,
    PLOT_PREFIX,
    REPORT_MARKDOWN_NAME,
    REPORT_NAME,
    ExportedImage,
)
from gen.redact import local_paths, redact, redact_text
from gen.text import csv_cell

if TYPE_CHECKING:
    from db.generators import ModelInfo

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


def write_settings_csv(
    path: Path, images: Sequence[ExportedImage], model: ModelInfo, rows: int | None
) -> int:
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
            writer.writerow([csv_cell(record[column]) for column in CSV_COLUMNS])
    return len(chosen)


def _metadata_rows(images: Sequence[ExportedImage], model_id: int) -> list[tuple[Any, ...]]:
    """One row (METADATA_COLUMNS) per image file: its path relative to the top level and its class."""
    distinct = {image.relative_path: image for image in images}
    return [
        (relative, image.class_name, image.md5, model_id, image.iteration, image.seed, image.sample_index)
        for relative, image in distinct.items()
    ]


def write_metadata_csv(path: Path, images: Sequence[ExportedImage], model_id: int) -> None:
    """images.csv: one row per image file, its path in file_name and its class name in label
    (what croissant.json's records are read from, and a table for people)."""
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(METADATA_COLUMNS)
        writer.writerows(_metadata_rows(images, model_id))


def metadata_parquet_schema(class_names: Sequence[str]) -> Any:
    """The Arrow schema of metadata.parquet: METADATA_COLUMNS, label the class's index, and in the
    schema's "huggingface" metadata the features datasets reads, label a ClassLabel of the names."""
    import pyarrow

    types = {"file_name": pyarrow.string(), "label": pyarrow.int64(), "md5": pyarrow.string()}
    features = {
        name: {"names": list(class_names), "_type": "ClassLabel"}
        if name == "label"
        else {"dtype": "string" if types.get(name) == pyarrow.string() else "int64", "_type": "Value"}
        for name in METADATA_COLUMNS
    }
    return pyarrow.schema(
        [(name, types.get(name, pyarrow.int64())) for name in METADATA_COLUMNS],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )


def write_metadata_parquet(
    path: Path, images: Sequence[ExportedImage], model_id: int, class_names: Sequence[str]
) -> None:
    """metadata.parquet, Hugging Face `imagefolder`'s metadata: the rows of images.csv with each
    label the index of its class in class_names, declared a ClassLabel of those names, so that
    datasets.load_dataset("imagefolder", data_dir=EXPORT) gives every image with a ClassLabel
    (and reads no other PNG of the data set: with a metadata file it yields only its rows)."""
    import pyarrow
    import pyarrow.parquet

    rows = _metadata_rows(images, model_id)
    index = {name: position for position, name in enumerate(class_names)}
    columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in METADATA_COLUMNS]
    columns[METADATA_COLUMNS.index("label")] = [index[name] for name in columns[1]]
    table = pyarrow.Table.from_arrays(columns, schema=metadata_parquet_schema(class_names))
    pyarrow.parquet.write_table(table, path)


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


def copy_report(report_dir: Path, root: Path) -> list[str]:
    """report.json, report.md and the *.png plots of a `gen report` folder; returns the files
    written. Each plot becomes plot-<name>.png at the top level (no folder there but the
    classes', see layout), and report.md's links to them are pointed there."""
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
    for plot in plots:
        shutil.copyfile(plot, root / f"{PLOT_PREFIX}{plot.name}")
        written.append(f"{PLOT_PREFIX}{plot.name}")
    markdown = report_dir / REPORT_MARKDOWN_NAME
    if markdown.is_file():
        text = redact_text(markdown.read_text(encoding="utf-8"), local)
        for plot in plots:
            text = text.replace(f"]({plot.name})", f"]({PLOT_PREFIX}{plot.name})")
        (root / REPORT_MARKDOWN_NAME).write_text(text, encoding="utf-8")
        written.append(REPORT_MARKDOWN_NAME)
    return written
