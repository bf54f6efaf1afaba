"""The data set's layout: the names of its files and folders, and what one exported image is."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# /2: metadata.csv and croissant.json, grids and plots beside the class folders rather than in
# folders of their own (so that loaders see only classes). /3: metadata.parquet for Hugging
# Face (labels as a ClassLabel), the same table for Croissant and people as images.csv. An older
# export is still one (gen export --force replaces it) but this gen does not verify it.
MANIFEST_FORMAT = "gen-dataset/3"
MANIFEST_FORMAT_FAMILY = "gen-dataset/"
DUMP_DIALECTS = ("postgresql", "sqlite")
DEFAULT_CSV_ROWS = 100
SQL_DUMP_NAME = "database.sql"
CSV_NAME = "settings.csv"
REPORT_NAME = "report.json"
REPORT_MARKDOWN_NAME = "report.md"
MANIFEST_NAME = "manifest.json"
MD5SUMS_NAME = "MD5SUMS"
# Hugging Face `imagefolder` reads a metadata.csv, .jsonl or .parquet beside the folders its
# file_name column points into (here: the top level, file_name "<class>/<file>") and then yields
# only its rows. Only Parquet can say that `label` is a ClassLabel with the class names (the
# features in the schema's "huggingface" metadata; datasets 5.2 ignores a card's dataset_info
# for load_dataset("imagefolder", data_dir=...)), so that table is Parquet, its label the class's
# index in the manifest's order. datasets refuses two metadata files of different formats, so
# the same table for Croissant and for people, labels as class names, is images.csv.
HF_METADATA_NAME = "metadata.parquet"
METADATA_NAME = "images.csv"
METADATA_COLUMNS = ("file_name", "label", "md5", "model_id", "iteration", "seed", "sample_index")
CROISSANT_NAME = "croissant.json"
# The top level holds no folder but the class folders: torchvision's ImageFolder takes every
# folder there for a class. So the card's pictures are files beside it, named by these prefixes.
GRID_PREFIX = "grid-"  # grid-<class>.png: a sample grid per class
PLOT_PREFIX = "plot-"  # plot-<name>.png: the report's plots
# Written for people to edit (licence, citation), so their bytes are not part of the manifest.
CARD_FILES = ("README.md", "index.html")
RESERVED_NAMES = frozenset(
    {
        SQL_DUMP_NAME,
        CSV_NAME,
        REPORT_NAME,
        REPORT_MARKDOWN_NAME,
        MANIFEST_NAME,
        METADATA_NAME,
        HF_METADATA_NAME,
        CROISSANT_NAME,
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
