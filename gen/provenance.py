"""What gen writes about a run into the database: the one place where training, sampling and
reports meet it.

``gen.train.train(..., database=...)`` and ``gen.sample.sample(..., database=...)`` record
through these, so a Python caller gets the same rows as ``gen train`` and ``gen sample``;
the CLI is a thin layer over them. The rows themselves are written by db.generators and db.images: imports
go one way, gen -> db. On gen's side this module sits below what it records: it reads the
run's data (gen.train_config) and a report's figures (gen.metrics.figures), and gen.train and
gen.sample call it, never the reverse (metrics <- provenance <- sample, train <- report).

    from gen.train import train
    from gen.train_config import TrainConfig
    result = train(TrainConfig(data="cells/", out="runs/a", preset="tiny", iterations=100),
                   database="sqlite:///gen.db")
    result.model_id
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db import classifiers as classifier_rows
from db import datasets as dataset_rows
from db import generators as generator_rows
from db import images as image_rows
from db import open_database
from db import reports as report_rows
from gen.checkpoint import file_sha256
from gen.errors import GenError

if TYPE_CHECKING:
    from gen.metrics.figures import Report
    from gen.train_config import RunStart


def engine_for(database: Engine | str) -> Engine:
    """An Engine for ``database``: one already opened, or a URL (created and migrated if new)."""
    return database if isinstance(database, Engine) else open_database(database)


class TrainingRecord:
    """gen.train's callbacks that record a run: the model at start, then each checkpoint.

    A resumed run continues the model that recorded the checkpoint it resumes from (adopting
    that checkpoint if it was saved but never recorded); any other run is a new model.
    """

    def __init__(self, database: Engine | str, *, data_set: str | None = None):
        """``database``: an Engine or a URL, opened when the run starts, on the main process
        only (under torchrun the other ranks must not race it to create a new database).
        ``data_set``: the registered data set a new model is linked to (else its folder's)."""
        self._database = database
        self._data_set = data_set
        self.engine: Engine | None = None
        self.model_id: int | None = None
        self._config: dict[str, Any] = {}
        self._num_images = 0

    def on_start(self, start: RunStart) -> RunStart:
        """Records (or finds) the run's model; returns ``start`` with its id and any notes."""
        from gen.dataset_registry import dataset_for_run

        notes: list[str] = []
        self._config, self._num_images = dataclasses.asdict(start.config), start.num_images
        self.engine = engine_for(self._database)
        with Session(self.engine) as session:
            if start.resumed_from is not None:
                self.model_id = generator_rows.adopt_resumed_checkpoint(
                    session,
                    start.config.out,
                    start.resumed_from,
                    start.start_iteration,
                    lambda: file_sha256(start.resumed_from),
                )
            if self.model_id is None:
                generator_rows.forget_unfinished_runs(session, start.config.out)  # killed before a checkpoint
                dataset_id, note = dataset_for_run(
                    session,
                    self._data_set,
                    start.config.data,
                    start.data_fingerprint,
                    start.class_names,
                    start.skipped_files,
                )
                notes += [note] if note else []
                self.model_id = generator_rows.record_run(
                    session,
                    config=self._config,
                    generator=start.generator,
                    discriminator=start.discriminator,
                    class_names=start.class_names,
                    data_fingerprint=start.data_fingerprint,
                    num_images=start.num_images,
                    iterations=start.start_iteration,
                    device=start.device,
                )
                dataset_rows.link_model_to_dataset(session, self.model_id, dataset_id)
        return dataclasses.replace(start, model_id=self.model_id, notes=tuple(notes))

    def on_checkpoint(self, path: Path, iteration: int, sha256: str, evaluation: float | None) -> None:
        with Session(self.engine) as session:
            generator_rows.record_checkpoint_file(
                session,
                self.model_id,
                path,
                iteration,
                sha256,
                domain_fid=evaluation,
                epochs=generator_rows.epochs(self._config, iteration, self._num_images),
            )

    def protected(self) -> set[Path]:
        """Checkpoints that recorded images were made from: pruning keeps them."""
        with Session(self.engine) as session:
            return {Path(p) for p in generator_rows.checkpoints_with_images(session, self.model_id)}


def image_recorder(
    engine: Engine, state: dict[str, Any], *, seed: int, settings: dict[str, object], sha256: str = ""
) -> image_rows.ImageRecorder:
    """gen.sample's recorder for a loaded checkpoint, recording its model first if the database
    has never seen it (any gen checkpoint carries its architecture, classes and settings).
    ``settings``: what, besides checkpoint, seed, class and index, decides an image's bytes
    (gen.sample.sampling_settings)."""
    with Session(engine) as session:
        model_id, checkpoint_id = generator_rows.adopt_checkpoint(
            session, state, sha256 or file_sha256(state["path"])
        )
    return image_rows.ImageRecorder(engine, model_id, checkpoint_id, state["iteration"], seed, settings)


def model_checkpoint(info: generator_rows.ModelInfo, which: str | int = "latest") -> tuple[Path, str]:
    """One of the model's checkpoints still on disk, and its SHA-256, checked against its row.

    ``which``: "latest"; "best", the lowest normalised domain FID measured while training
    (``--eval-every``); or an iteration.
    """
    present = [c for c in info.checkpoints if Path(c.path).is_file()]
    if not present:
        raise GenError(f"model {info.id} has no checkpoint file left on disk; train it (or resume) first.")
    if which == "latest":
        chosen = present[-1]
    elif which == "best":
        chosen = generator_rows.best_checkpoint(info, present)
    else:
        matching = [c for c in present if c.iteration == int(which)]
        if not matching:
            kept = ", ".join(str(c.iteration) for c in present)
            raise GenError(f"model {info.id} has no checkpoint of iteration {which} on disk (it has {kept}).")
        chosen = matching[-1]
    path, sha256 = Path(chosen.path), file_sha256(Path(chosen.path))
    if sha256 != chosen.sha256:
        raise GenError(f"{path} changed since it was recorded (its SHA-256 differs); refusing to use it.")
    return path, sha256


def recorded_model(engine: Engine, model: str | int | None) -> generator_rows.ModelInfo:
    """The model ``model``, an id or a name (the latest when None), or a sentence naming those
    that exist."""
    with Session(engine) as session:
        return generator_rows.get_model(session, generator_rows.model_or_latest(session, model))


def classifier_recorder(engine: Engine) -> Callable[..., None]:
    """gen.report's ``on_classifier``: a row for each utility classifier it trains."""

    def on_classifier(path: Path, sha256: str, architecture: dict, accuracy: float, fingerprint: str) -> None:
        with Session(engine) as session:
            classifier_rows.record_classifier(
                session,
                dataset_fingerprint=fingerprint,
                path=str(path),
                sha256=sha256,
                architecture=architecture,
                accuracy=accuracy,
            )

    return on_classifier


def recorded_classifier(engine: Engine, classifier_id: int | str) -> tuple[int, Path, dict[str, Any]]:
    """(id, weights file, architecture) of a classifiers row (by id or name), the file checked
    against the row's SHA-256; a sentence when it is gone or changed."""
    with Session(engine) as session:
        info = classifier_rows.get_classifier(session, classifier_id)
    path = Path(info.path)
    if not path.is_file():
        raise GenError(f"classifier {classifier_id}'s weights file {path} is gone.")
    if file_sha256(path) != info.sha256:
        raise GenError(f"{path} changed since it was recorded (its SHA-256 differs); refusing to use it.")
    return info.id, path, info.architecture


def record_report(engine: Engine, model_id: int, result: Report) -> None:
    """A report's figures as rows of ``reports``, each with the settings and checkpoint it measured."""
    with Session(engine) as session:
        report_rows.record_report(
            session,
            model_id,
            [
                {
                    "metric": figure.metric,
                    "value": figure.value,
                    "class_name": figure.class_name,
                    "settings": {**result.settings, **figure.settings, "checkpoint": result.checkpoint},
                }
                for figure in result.figures
            ],
        )
