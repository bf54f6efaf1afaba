"""Choosing the images to export, and the report (if any) that describes them."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from gen.errors import GenError
from gen.export.layout import (
    GRID_PREFIX,
    MD5SUMS_NAME,
    PLOT_PREFIX,
    REPORT_NAME,
    RESERVED_NAMES,
    ExportedImage,
)
from gen.image_folder import check_class_name, check_distinct_class_names

if TYPE_CHECKING:
    from db.generators import CheckpointInfo, ModelInfo
    from db.images import ModelImage


def check_class_folder_name(name: str) -> None:
    """A class name must work as one folder name beside the data set's own files: the rule
    class folders follow (gen.image_folder.check_class_name), and none of the data set's own names."""
    check_class_name(name)
    if name.lower() in {reserved.lower() for reserved in RESERVED_NAMES}:
        raise GenError(
            f"class name {name!r} clashes with the data set's own {name} (reserved: "
            f"{', '.join(sorted(RESERVED_NAMES))})."
        )
    if name.lower().startswith((GRID_PREFIX, PLOT_PREFIX)) and name.lower().endswith(".png"):
        raise GenError(
            f"class name {name!r} looks like one of the data set's own pictures "
            f"({GRID_PREFIX}*.png, {PLOT_PREFIX}*.png); choose another."
        )


@dataclass(frozen=True)
class ScoreFilter:
    """Which images an export keeps by their curation scores (the images table's columns)."""

    curated: bool = False  # only images a curation run kept
    min_class_confidence: float | None = None
    min_realism: float | None = None
    min_near_copy_distance: float | None = None

    def __post_init__(self) -> None:
        if self.min_class_confidence is not None and not 0 <= self.min_class_confidence <= 1:
            raise GenError(f"--min-class-confidence must lie in [0, 1], not {self.min_class_confidence}.")
        if self.min_near_copy_distance is not None and not self.min_near_copy_distance >= 0:
            raise GenError(f"--min-near-copy-distance must be 0 or more, not {self.min_near_copy_distance}.")
        if self.min_realism is not None and not math.isfinite(self.min_realism):
            raise GenError("--min-realism must be a finite number.")

    def minimums(self) -> dict[str, float]:
        """The images table's score columns that have a minimum, with it."""
        return {
            name: minimum
            for name, minimum in (
                ("class_confidence", self.min_class_confidence),
                ("realism", self.min_realism),
                ("near_copy_distance", self.min_near_copy_distance),
            )
            if minimum is not None
        }

    def describe(self) -> str:
        parts = ["curated images"] if self.curated else []
        parts += [f"{name} >= {minimum:g}" for name, minimum in self.minimums().items()]
        return " and ".join(parts) or "any scores"


def select_images(
    session: Session,
    model_id: int,
    *,
    classes: Sequence[str] | None = None,
    limit_per_class: int | None = None,
    skip_missing: bool = False,
    checkpoint: str | int | None = None,
    seed: int | None = None,
    folder: str | Path | None = None,
    scores: ScoreFilter | None = None,
) -> tuple[list[ExportedImage], list[str]]:
    """(the images to export, in class label order then oldest first, with their data set names;
    the recorded files found missing and left out, with skip_missing).

    checkpoint ("best", "latest" or an iteration), seed and folder keep only the images made
    from that checkpoint, with that seed, or sampled into that folder; scores only the images
    whose curation scores pass (gen.curation; an image without scores never passes a minimum).
    One query for all rows. Raises GenError when the model, a class or the images are not there.
    """
    from db import generators as generator_rows

    info = generator_rows.get_model(session, model_id)
    wanted = _wanted_classes(info, classes)
    rows = _matching_rows(session, info, checkpoint=checkpoint, seed=seed, folder=folder, scores=scores)
    chosen, missing = _name_images(rows, wanted, limit_per_class=limit_per_class, skip_missing=skip_missing)
    if missing and not skip_missing:
        raise GenError(
            f"{len(missing)} recorded images of model {model_id} are missing on disk (first: {missing[0]}); "
            "restore them, or export the others with --skip-missing."
        )
    if not chosen:
        raise GenError(f"none of model {model_id}'s recorded image files is left on disk; nothing to export.")
    return chosen, missing


def _wanted_classes(info: ModelInfo, classes: Sequence[str] | None) -> set[str]:
    """The classes to export (all by default), each known, with images, and a valid folder name."""
    if classes:
        unknown = [name for name in classes if name not in info.class_names]
        if unknown:
            raise GenError(
                f"model {info.id} has no class {unknown[0]!r}; its classes: {', '.join(info.class_names)}."
            )
        empty = [name for name in classes if not info.image_counts[name]]
        if empty:
            raise GenError(f"model {info.id} has no images of class {empty[0]!r} yet; run gen sample first.")
    if not sum(info.image_counts.values()):
        raise GenError(f"model {info.id} has no recorded images yet; run gen sample first.")
    wanted = set(classes) if classes else set(info.class_names)
    for name in wanted:
        check_class_folder_name(name)
    check_distinct_class_names(wanted)
    return wanted


def _matching_rows(
    session: Session,
    info: ModelInfo,
    *,
    checkpoint: str | int | None,
    seed: int | None,
    folder: str | Path | None,
    scores: ScoreFilter | None,
) -> list[ModelImage]:
    """The model's image rows that the checkpoint, seed, folder and score filters keep; GenError
    when filters were given and no row passes them."""
    from db import images as image_rows
    from db.names import stored_path

    checkpoint_id = None
    chosen_filters = []
    if checkpoint is not None:
        row = _checkpoint_with_images(info, session, checkpoint)
        checkpoint_id = row.id
        chosen_filters.append(f"checkpoint {checkpoint} (iteration {row.iteration})")
    if seed is not None:
        chosen_filters.append(f"seed {seed}")
    if folder is not None:
        chosen_filters.append(f"folder {folder}")
    if scores is not None:
        chosen_filters.append(scores.describe())
    rows = image_rows.model_images(
        session,
        info.id,
        checkpoint_id=checkpoint_id,
        seed=seed,
        folder=None if folder is None else stored_path(folder),
        curated=scores is not None and scores.curated,
        minimums=None if scores is None else scores.minimums(),
    )
    if chosen_filters and not rows:
        raise GenError(f"model {info.id} has no recorded images of {', '.join(chosen_filters)}.")
    return rows


def _name_images(
    rows: Sequence[ModelImage], wanted: set[str], *, limit_per_class: int | None, skip_missing: bool
) -> tuple[list[ExportedImage], list[str]]:
    """(the rows of the wanted classes, up to limit_per_class each, as images with the name their
    file gets in its class folder; the files found missing, left out with skip_missing).

    A file keeps its name unless another file of its class took it first (or it is MD5SUMS):
    then it becomes <stem>-<image id><suffix>. Two rows of one file share one name."""
    chosen: list[ExportedImage] = []
    per_class: dict[str, int] = {}
    names: dict[str, dict[str, str]] = {}  # class -> exported name -> source path
    by_source: dict[str, str] = {}  # source path -> exported name
    missing: list[str] = []
    for row in rows:
        if row.class_name not in wanted:
            continue
        if limit_per_class is not None and per_class.get(row.class_name, 0) >= limit_per_class:
            continue
        if not os.path.isfile(row.file_path):
            missing.append(row.file_path)
            if skip_missing:
                continue
        name = by_source.get(row.file_path)
        if name is None:
            taken = names.setdefault(row.class_name, {})
            name = os.path.basename(row.file_path)
            if name in taken or name == MD5SUMS_NAME:
                stem, suffix = os.path.splitext(name)
                name = f"{stem}-{row.id}{suffix}"
            taken[name] = row.file_path
            by_source[row.file_path] = name
        per_class[row.class_name] = per_class.get(row.class_name, 0) + 1
        chosen.append(
            ExportedImage(
                row.id,
                Path(row.file_path),
                row.class_name,
                name,
                row.md5,
                row.seed,
                row.sample_index,
                row.iteration,
                row.checkpoint_path,
            )
        )
    return chosen, missing


def _checkpoint_with_images(info: ModelInfo, session: Session, which: str | int) -> CheckpointInfo:
    """The model's checkpoint row that ``which`` names ("latest": the newest that made images;
    "best": the lowest domain FID measured in training; or an iteration)."""
    from db import generators as generator_rows

    with_images = generator_rows.checkpoint_ids_with_images(session, info.id)
    candidates = [c for c in info.checkpoints if c.id in with_images]
    if which == "best":
        return generator_rows.best_checkpoint(info, info.checkpoints)
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


def describing_report(
    images: Sequence[ExportedImage], figures: list[dict[str, Any]], report_path: Path | None
) -> tuple[list[dict[str, Any]], Path | None, str | None]:
    """(figures, report folder, note): the recorded report (or --report's) when it measured the
    one checkpoint all the exported images come from; else none of it, and a note saying so."""
    from db.names import stored_path

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


def recorded_figures(session: Session, model_id: int) -> list[dict[str, Any]]:
    """The model's newest recorded figure of each metric and class, as report.json lists them."""
    from db import reports as report_rows

    return [
        {
            "metric": row.metric,
            "class_name": row.class_name,
            "value": row.value,
            "settings": row.settings,
            "created_at": row.created_at.isoformat(),
        }
        for row in report_rows.latest_report(session, model_id)
    ]
