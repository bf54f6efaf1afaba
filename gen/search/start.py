"""Starting or resuming a search: the one module that knows every stage.

``prepare_search`` records a new search (or reads back the one recorded for a folder), picks
its stage by the name in its settings (``generator`` and ``discriminator``:
gen.search.gan_stage; ``classifier``: gen.search.classifier_stage) and rebuilds the evolution;
gen.search.engine.run_search then runs it. Everything a user can get wrong is refused before
any row is written.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from gen.errors import GenError
from gen.image_folder import LabelledImages, load_image_folder
from gen.search.classifier_stage import ClassifierStage
from gen.search.engine import (
    SearchRun,
    SearchSettings,
    check_new_search,
    new_evolution,
    record_search,
    recorded_search,
)
from gen.search.gan_stage import GanStage


def stage_for(settings: SearchSettings, data: LabelledImages, engine: Engine) -> GanStage | ClassifierStage:
    """The stage that searches what ``settings.stage`` names, checked against the data."""
    if settings.stage == "classifier":
        return ClassifierStage.prepare(settings, data)
    return GanStage.prepare(settings, len(data.class_names), engine)


def prepare_search(
    settings: SearchSettings | None, engine: Engine, *, resume_folder: str | Path | None = None
) -> SearchRun:
    """Record a new search, or (``resume_folder``) read back the one recorded for that folder."""
    with Session(engine) as session:
        if resume_folder is not None:
            settings, info, candidates = recorded_search(session, resume_folder)
        else:
            assert settings is not None
            check_new_search(session, settings)
            info, candidates = None, []
    data = load_image_folder(settings.data)
    if info is not None and data.fingerprint != info.dataset_fingerprint:
        raise GenError(
            f"the images in {settings.data} changed since this search started; resume needs the same data."
        )
    stage = stage_for(settings, data, engine)
    if info is None:
        search_id, settings = record_search(engine, settings, data.fingerprint)
    else:
        search_id = info.id
    return SearchRun(
        search_id,
        settings,
        stage,
        new_evolution(settings, stage.space, stage.history(candidates)),
        {c.step: c.fitness for c in candidates},
        data.class_names,
        data.fingerprint,
        len(data.labels),
    )
