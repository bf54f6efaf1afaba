"""Packing a model's recorded images into a folder a stranger can download and verify.

    result = export_dataset(engine, 3, Path("exports/pbc-synthetic"), sql_dump=True, csv=True)

The folder (`gen verify` checks all of it):

    <class>/*.png           every image the model's rows point to (or the chosen subset)
    <class>/MD5SUMS         md5sum's format: (cd <class> && md5sum -c MD5SUMS)
    database.sql            the rows behind the images, file paths relative to this folder
    settings.csv            the GAN settings behind the first N images, one row per image
    images.csv              file_name,label,md5,...: each image's class and how it was made
    metadata.parquet        the same, label a ClassLabel: Hugging Face datasets' imagefolder
    croissant.json          MLCommons Croissant metadata (gen.export.croissant)
    report.json, plot-*     the quality report: --report DIR's report.json, report.md and
                            plots, else report.json built from the reports rows
    grid-<class>.png        a sample grid per class, shown by index.html
    README.md, index.html   the data set's card (licence and citation from --license and
                            --citation); both may be edited and so are not checksummed
    manifest.json           counts, sizes, SHA-256 of every other file, tool, source, time

Decisions worth knowing:
- No folder at the top level but the class folders, so torchvision's ImageFolder(EXPORT) loads
  it as is: the grids and plots are files beside them (grid-*.png, plot-*.png).
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

The package, in the order an export runs: layout (the names of the data set's files),
choosing (which images, and which report describes them), files (copying, checksums,
settings.csv, grids, the report), card (README.md and index.html), archive (the .tar.gz),
place (staging folder and the atomic move) and dataset (export_dataset, which runs them).
"""

from __future__ import annotations

from gen.export.archive import write_archive
from gen.export.card import Publication, check_license, render_index, render_readme
from gen.export.choosing import check_class_folder_name, report_describes, select_images
from gen.export.dataset import export_dataset
from gen.export.files import (
    copy_images,
    copy_report,
    md5sums_line,
    parse_md5sums_line,
    write_grid,
    write_md5sums,
    write_metadata_csv,
    write_metadata_parquet,
    write_settings_csv,
)
from gen.export.layout import (
    CARD_FILES,
    COPY_CHUNK,
    COPY_THREADS,
    CROISSANT_NAME,
    CSV_COLUMNS,
    CSV_NAME,
    DEFAULT_CSV_ROWS,
    DUMP_DIALECTS,
    GRID_COLUMNS,
    GRID_PREFIX,
    GRID_ROWS,
    HF_METADATA_NAME,
    MANIFEST_FORMAT,
    MANIFEST_FORMAT_FAMILY,
    MANIFEST_NAME,
    MD5SUMS_NAME,
    METADATA_COLUMNS,
    METADATA_NAME,
    PLOT_PREFIX,
    REPORT_MARKDOWN_NAME,
    REPORT_NAME,
    RESERVED_NAMES,
    SQL_DUMP_NAME,
    ExportedImage,
    ExportResult,
)
from gen.export.place import is_dataset

__all__ = [
    "CARD_FILES",
    "COPY_CHUNK",
    "COPY_THREADS",
    "CSV_COLUMNS",
    "CSV_NAME",
    "DEFAULT_CSV_ROWS",
    "DUMP_DIALECTS",
    "ExportResult",
    "ExportedImage",
    "GRID_PREFIX",
    "GRID_COLUMNS",
    "GRID_ROWS",
    "HF_METADATA_NAME",
    "MANIFEST_FORMAT",
    "MANIFEST_FORMAT_FAMILY",
    "MANIFEST_NAME",
    "MD5SUMS_NAME",
    "METADATA_COLUMNS",
    "METADATA_NAME",
    "CROISSANT_NAME",
    "PLOT_PREFIX",
    "Publication",
    "REPORT_MARKDOWN_NAME",
    "REPORT_NAME",
    "RESERVED_NAMES",
    "SQL_DUMP_NAME",
    "check_class_folder_name",
    "check_license",
    "copy_images",
    "copy_report",
    "export_dataset",
    "is_dataset",
    "md5sums_line",
    "parse_md5sums_line",
    "render_index",
    "render_readme",
    "report_describes",
    "select_images",
    "write_archive",
    "write_grid",
    "write_md5sums",
    "write_metadata_csv",
    "write_metadata_parquet",
    "write_settings_csv",
]
