"""export_dataset: choosing, writing, rendering and placing, in that order."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from gen import __version__
from gen.checkpoint import file_sha256
from gen.errors import GenError
from gen.export.archive import write_archive
from gen.export.card import Publication, _Card, render_index, render_readme
from gen.export.choosing import ScoreFilter, _report_for, _report_rows, select_images
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
from gen.export.place import _archive_paths, _check_target, _make_staging, _move_into_place
from gen.redact import redact, redact_row


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
    publication: Publication = Publication(),  # noqa: B008 (frozen, so one shared default is safe)
    checkpoint: str | int | None = None,
    seed: int | None = None,
    folder: str | Path | None = None,
    scores: ScoreFilter | None = None,
) -> ExportResult:
    """Export model gan_id's images (None: the latest model) as a data set folder at out.

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
            scores=scores,
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
                publish=redact_row,
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
        write_metadata_csv(staging / METADATA_NAME, images, gan_id)
        class_order = list(dict.fromkeys(image.class_name for image in images))  # the manifest's
        write_metadata_parquet(staging / HF_METADATA_NAME, images, gan_id, class_order)
        files: list[str] = [METADATA_NAME, HF_METADATA_NAME]
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
        for class_name, members in by_class.items():
            shown = list(dict.fromkeys(m.name for m in members))[: GRID_COLUMNS * GRID_ROWS]
            grid = f"{GRID_PREFIX}{class_name}.png"
            write_grid([staging / class_name / name for name in shown], staging / grid)
            grids[class_name] = grid
            files.append(grid)
        class_counts = {name: len({m.name for m in members}) for name, members in by_class.items()}
        title = publication.title or f"{out.name}: synthetic images from gen model {gan_id}"
        overall = {f["metric"]: f["value"] for f in figures if f["class_name"] is None}
        croissant = croissant_json(
            staging,
            images,
            title=title,
            description=(publication.description or "").strip()
            or f"{sum(class_counts.values())} synthetic images in {len(class_counts)} classes "
            f"({', '.join(class_counts)}), generated by a class-conditional GAN.",
            license=publication.license,
            citation=(publication.citation or "").strip()
            or f"{title}. Synthetic images generated with gen {__version__}, model {gan_id}, "
            f"{created_at.date().isoformat()}.",
            created_at=created_at,
            tool_version=__version__,
            model=model,
            near_copy_share=overall.get("near_copy_share"),
        )
        write_croissant(staging / CROISSANT_NAME, croissant)
        files.append(CROISSANT_NAME)
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
            title=title,
            model=model,
            manifest=manifest,
            figures=figures,
            report_copied=report_path is not None,
            plots=[name for name in files if name.startswith(PLOT_PREFIX)],
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
