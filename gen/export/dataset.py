"""export_dataset: choosing, writing, rendering and placing, in that order."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from gen import __version__
from gen.checkpoint import file_sha256
from gen.errors import GenError
from gen.export.archive import write_archive
from gen.export.card import Card, Publication, render_index, render_readme
from gen.export.choosing import ScoreFilter, describing_report, recorded_figures, select_images
from gen.export.croissant import croissant_json, write_croissant
from gen.export.files import (
    copy_images,
    copy_report,
    write_grid,
    write_md5sums,
    write_metadata_csv,
    write_metadata_parquet,
    write_settings_csv,
)
from gen.export.layout import (
    CARD_FILES,
    CROISSANT_NAME,
    CSV_NAME,
    DEFAULT_CSV_ROWS,
    DUMP_DIALECTS,
    GRID_COLUMNS,
    GRID_PREFIX,
    GRID_ROWS,
    HF_METADATA_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MD5SUMS_NAME,
    METADATA_NAME,
    PLOT_PREFIX,
    REPORT_NAME,
    SQL_DUMP_NAME,
    ExportedImage,
    ExportResult,
)
from gen.export.place import archive_paths, check_target, make_staging, move_into_place
from gen.redact import redact, redact_row

if TYPE_CHECKING:
    from db.generators import ModelInfo


def export_dataset(
    engine: Engine,
    model_id: int | None,
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
    publication: Publication = Publication(),  # noqa: B008 (frozen, so one shared default is safe)
    checkpoint: str | int | None = None,
    seed: int | None = None,
    folder: str | Path | None = None,
    scores: ScoreFilter | None = None,
) -> ExportResult:
    """Export the images of model model_id (None: the latest model) as a data set folder at out.

    classes / limit_per_class choose a subset (the first images of each class); sql_dump writes
    database.sql in dialect ("postgresql" or "sqlite"); csv writes settings.csv with the first
    csv_rows images (None: all); archive also writes out.tar.gz and its .sha256 beside out;
    report_dir copies a report folder's report.json and plots; skip_missing leaves out images
    whose file is gone instead of refusing; checkpoint, seed and folder choose the images by
    how they were made, scores by their curation scores (select_images); publication is what
    the card and manifest say of licence, citation, title and description. A report goes in
    only when it measured the checkpoint every exported image came from; otherwise the card
    says no report describes them. Everything a user can get wrong raises GenError before
    anything is written; nothing is left behind on failure.
    """
    from db import generators as generator_rows

    started = time.perf_counter()
    _check_options(sql_dump=sql_dump, dialect=dialect, csv_rows=csv_rows, limit_per_class=limit_per_class)
    out = Path(out)
    report_path = _report_folder(report_dir)
    check_target(out, force=force, archive=archive)
    with Session(engine) as session:
        model_id = generator_rows.latest_model_id(session) if model_id is None else model_id
        model = generator_rows.get_model(session, model_id)
        images, missing = select_images(
            session,
            model_id,
            classes=classes,
            limit_per_class=limit_per_class,
            skip_missing=skip_missing,
            checkpoint=checkpoint,
            seed=seed,
            folder=folder,
            scores=scores,
        )
        figures = recorded_figures(session, model_id)
    figures, report_path, report_note = describing_report(images, figures, report_path)
    export = _Export(
        out=out,
        model=model,
        images=images,
        figures=redact(figures),
        report_path=report_path,
        report_note=report_note,
        dump=_dump(engine, model.id, images, dialect) if sql_dump else None,
        dialect=dialect,
        settings_csv=csv,
        csv_rows=csv_rows,
        publication=publication,
        source_database=engine.dialect.name,
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    written, archive_path = _build_and_place(export, force=force, archive=archive, progress=progress)
    return _result(export, written, missing, archive_path, seconds=time.perf_counter() - started)


def _check_options(
    *, sql_dump: bool, dialect: str, csv_rows: int | None, limit_per_class: int | None
) -> None:
    if sql_dump and dialect not in DUMP_DIALECTS:
        raise GenError(f"unknown SQL dialect {dialect!r}; choose one of: {', '.join(DUMP_DIALECTS)}.")
    if csv_rows is not None and csv_rows < 0:
        raise GenError("--csv-rows must be a number of rows (0 or more) or 'all'.")
    if limit_per_class is not None and limit_per_class < 1:
        raise GenError("--limit-per-class must be at least 1.")


def _report_folder(report_dir: str | Path | None) -> Path | None:
    """--report's folder, which must hold a report.json; None without --report."""
    if report_dir is None:
        return None
    report_path = Path(report_dir)
    if not (report_path / REPORT_NAME).is_file():
        raise GenError(f"{report_path} holds no {REPORT_NAME}; point --report at a folder gen report wrote.")
    return report_path


def _dump(engine: Engine, model_id: int, images: Sequence[ExportedImage], dialect: str) -> str:
    """database.sql: the model's rows and the exported images', file paths inside the data set."""
    from db.dump import dump_sql

    with Session(engine) as session:
        return dump_sql(
            session,
            model_id,
            image_ids={image.id for image in images},
            dialect=dialect,
            file_paths={image.id: image.relative_path for image in images},
            publish=redact_row,
        )


@dataclass(frozen=True)
class _Export:
    """Everything the data set's files are made from, read from the database before any is written."""

    out: Path
    model: ModelInfo
    images: list[ExportedImage]
    figures: list[dict[str, Any]]  # the report's figures, redacted; [] when none describes the images
    report_path: Path | None  # --report's folder to copy, or None: report.json from figures
    report_note: str | None  # why no report describes the images
    dump: str | None  # database.sql, or None without --sql-dump
    dialect: str
    settings_csv: bool
    csv_rows: int | None  # settings.csv's rows (None: all)
    publication: Publication
    source_database: str  # the kind of database only: its URL names a host, a user or a local file
    created_at: datetime

    @cached_property
    def by_class(self) -> dict[str, list[ExportedImage]]:
        by_class: dict[str, list[ExportedImage]] = {}
        for image in self.images:
            by_class.setdefault(image.class_name, []).append(image)
        return by_class

    @cached_property
    def class_counts(self) -> dict[str, int]:
        """Image files per class, in the images' order (label order)."""
        return {name: len({m.name for m in members}) for name, members in self.by_class.items()}

    @property
    def md5sums(self) -> list[str]:
        """Each class folder's MD5SUMS."""
        return [f"{name}/{MD5SUMS_NAME}" for name in self.class_counts]

    @property
    def title(self) -> str:
        return self.publication.title or f"{self.out.name}: synthetic images from gen model {self.model.id}"


def _result(
    export: _Export, written: _Written, missing: list[str], archive_path: Path | None, *, seconds: float
) -> ExportResult:
    return ExportResult(
        out=export.out,
        model_id=export.model.id,
        classes=export.class_counts,
        images=sum(export.class_counts.values()),
        rows=len(export.images),
        image_bytes=written.image_bytes,
        files=tuple(sorted([*written.names, *CARD_FILES, MANIFEST_NAME])),
        missing=tuple(missing),
        archive=archive_path,
        seconds=seconds,
    )


@dataclass
class _Written:
    """What the staging folder holds so far, beside the images."""

    image_bytes: int
    names: list[str] = field(default_factory=list)  # the files the manifest lists, less the MD5SUMS
    csv_rows: int | None = None  # the rows settings.csv holds, None without it
    grids: dict[str, str] = field(default_factory=dict)  # class -> its grid's file name


def _build_and_place(
    export: _Export, *, force: bool, archive: bool, progress: bool
) -> tuple[_Written, Path | None]:
    """Build the data set in a hidden staging folder, sync it to disk and move it to its place;
    with archive, the .tar.gz (returned) and its .sha256 beside it. On any failure, nothing of
    it is left behind."""
    out = export.out
    staging = make_staging(out)
    archive_path, checksum_path = archive_paths(out)
    # Named like the staging folder (pid first), so that a later export cleans it up the same way.
    partial_archive = staging.with_name(staging.name.removesuffix(".partial") + ".tar.gz.partial")
    try:
        written = _build(staging, export, progress=progress)
        if archive:
            digest = write_archive(
                staging, partial_archive, arcname=out.name, mtime=int(export.created_at.timestamp())
            )
        # The files reach the disk before the rename publishes them, so that even a power cut
        # leaves no data set or a whole one. One sync costs far less than an fsync per file.
        os.sync()
        move_into_place(staging, out, force=force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        partial_archive.unlink(missing_ok=True)
        raise
    if not archive:
        return written, None
    os.replace(partial_archive, archive_path)
    checksum_path.write_text(f"{digest}  {archive_path.name}\n", encoding="utf-8")
    return written, archive_path


def _build(staging: Path, export: _Export, *, progress: bool) -> _Written:
    """Every file of the data set, written into staging in the order they need each other: the
    manifest pins the checksums of the files before it, and the card shows the manifest."""
    written = _Written(image_bytes=copy_images(export.images, staging, progress=progress))
    write_md5sums(export.images, staging)
    _write_tables(staging, export, written)
    _write_report(staging, export, written)
    _write_grids(staging, export, written)
    _write_croissant(staging, export, written)
    manifest = _manifest(staging, export, written)
    _write_card(staging, export, written, manifest)
    other = [*written.names, *CARD_FILES, *export.md5sums]
    manifest["total_bytes"] = written.image_bytes + sum((staging / name).stat().st_size for name in other)
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return written


def _write_tables(staging: Path, export: _Export, written: _Written) -> None:
    """images.csv and metadata.parquet; database.sql and settings.csv when asked for."""
    model_id = export.model.id
    write_metadata_csv(staging / METADATA_NAME, export.images, model_id)
    class_order = list(export.class_counts)  # the manifest's
    write_metadata_parquet(staging / HF_METADATA_NAME, export.images, model_id, class_order)
    written.names += [METADATA_NAME, HF_METADATA_NAME]
    if export.dump is not None:
        (staging / SQL_DUMP_NAME).write_text(export.dump, encoding="utf-8", newline="\n")
        written.names.append(SQL_DUMP_NAME)
    if export.settings_csv:
        written.csv_rows = write_settings_csv(
            staging / CSV_NAME, export.images, export.model, export.csv_rows
        )
        written.names.append(CSV_NAME)


def _write_report(staging: Path, export: _Export, written: _Written) -> None:
    """--report's folder copied, or else report.json from the recorded figures (or a note)."""
    if export.report_path is not None:
        written.names += copy_report(export.report_path, staging)
        return
    report = {"model_id": export.model.id, "source": "the reports table", "figures": export.figures}
    if export.report_note:
        report["note"] = export.report_note
    (staging / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    written.names.append(REPORT_NAME)


def _write_grids(staging: Path, export: _Export, written: _Written) -> None:
    """A grid of each class's first images, grid-<class>.png, for the card."""
    for class_name, members in export.by_class.items():
        shown = list(dict.fromkeys(m.name for m in members))[: GRID_COLUMNS * GRID_ROWS]
        grid = f"{GRID_PREFIX}{class_name}.png"
        write_grid([staging / class_name / name for name in shown], staging / grid)
        written.grids[class_name] = grid
        written.names.append(grid)


def _write_croissant(staging: Path, export: _Export, written: _Written) -> None:
    """croissant.json, its description and citation made up when the publisher gave none."""
    class_counts = export.class_counts
    overall = {f["metric"]: f["value"] for f in export.figures if f["class_name"] is None}
    publication = export.publication
    croissant = croissant_json(
        staging,
        export.images,
        title=export.title,
        description=(publication.description or "").strip()
        or f"{sum(class_counts.values())} synthetic images in {len(class_counts)} classes "
        f"({', '.join(class_counts)}), generated by a class-conditional GAN.",
        license=publication.license,
        citation=(publication.citation or "").strip()
        or f"{export.title}. Synthetic images generated with gen {__version__}, model {export.model.id}, "
        f"{export.created_at.date().isoformat()}.",
        created_at=export.created_at,
        tool_version=__version__,
        model=export.model,
        near_copy_share=overall.get("near_copy_share"),
    )
    write_croissant(staging / CROISSANT_NAME, croissant)
    written.names.append(CROISSANT_NAME)


def _manifest(staging: Path, export: _Export, written: _Written) -> dict[str, Any]:
    """manifest.json's content, the size and SHA-256 of every file written so far included
    (total_bytes, which counts the card too, is added once the card is written)."""
    class_counts = export.class_counts
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "tool": "gen",
        "tool_version": __version__,
        "created_at": export.created_at.isoformat(),
        # The kind of database only: its URL names a host, a user or a local file.
        "source_database": export.source_database,
        "model_id": export.model.id,
        "preset": export.model.preset,
        "classes": class_counts,
        "images": sum(class_counts.values()),
        "image_rows": len(export.images),
        "image_bytes": written.image_bytes,
        "dialect": export.dialect if export.dump is not None else None,
        "csv_rows": written.csv_rows,
        "card": list(CARD_FILES),
        "license": export.publication.license,
        "training_license": export.publication.training_license,
        "files": {},
    }
    # Every MD5SUMS is pinned too: without a dump, a changed image with a regenerated
    # MD5SUMS would otherwise verify.
    for name in sorted([*written.names, *export.md5sums]):
        path = staging / name
        manifest["files"][name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    return manifest


def _write_card(staging: Path, export: _Export, written: _Written, manifest: dict[str, Any]) -> None:
    """README.md and index.html, the data set's card."""
    images = export.images
    card = Card(
        title=export.title,
        model=export.model,
        manifest=manifest,
        figures=export.figures,
        report_copied=export.report_path is not None,
        plots=[name for name in written.names if name.startswith(PLOT_PREFIX)],
        grids=written.grids,
        checkpoints=sorted({image.iteration for image in images}),
        seeds=sorted({image.seed for image in images}),
        publication=export.publication,
        report_note=export.report_note,
    )
    (staging / "README.md").write_text(render_readme(card), encoding="utf-8")
    (staging / "index.html").write_text(render_index(card), encoding="utf-8")
