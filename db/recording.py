"""What training and sampling write to the database, in the shape gen hands it over.

gen.train and gen.sample know nothing of SQL: they call back with what they made (through
gen.recording), and the functions here turn that into rows; db imports nothing of gen. Paths
are stored absolute (resolved), so rows stay true whichever folder a later command runs from;
an export rewrites them relative to its root.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from db import queries
from db.errors import UserError, disk_full
from db.models import Checkpoint, ClassName, SearchCandidate, TrainingParameters


def stored_path(path: str | Path) -> str:
    return str(Path(path).resolve())


def epochs(config: dict[str, Any], iterations: int, num_images: int) -> int | None:
    """Passes over the training images so far: real images seen / training images (None when
    the number of training images is unknown). The source counts epochs; we train by
    iterations and record both."""
    if num_images < 1:
        return None
    seen = iterations * config["batch_size"] * (config.get("critic_steps") or 1)
    return round(seen / num_images)


def training_parameters(config: dict[str, Any], *, num_images: int, iterations: int, device: str) -> dict:
    """training_parameters' columns from a run's settings (gen.train.TrainConfig as a dict)."""
    batch_size = config["batch_size"]
    optimizer = config.get("optimizer") or "adam"  # runs from before the setting were all Adam
    return {
        "g_optimizer": optimizer,
        "d_optimizer": optimizer,
        "loss": config.get("loss") or "hinge",
        "batch_size": batch_size,
        "epochs": epochs(config, iterations, num_images),
        "g_lr": config["g_lr"],
        "d_lr": config["d_lr"],
        "betas": {"g": list(config["betas"]), "d": list(config["betas"])},
        "ema_decay": config["ema_decay"],
        "diffaugment": config["diffaugment"],
        "iterations": iterations,
        "dataset_path": stored_path(config["data"]),
        "device": device,
        "seed": config["seed"],
        "settings": config,
    }


def record_run(
    session: Session,
    *,
    config: dict[str, Any],
    generator: dict[str, Any],
    discriminator: dict[str, Any],
    class_names: Sequence[str],
    data_fingerprint: str,
    num_images: int,
    iterations: int,
    device: str,
) -> int:
    """A new model row set for a training run; returns its id."""
    training = training_parameters(config, num_images=num_images, iterations=iterations, device=device)
    training["dataset_fingerprint"] = data_fingerprint
    if config.get("out"):  # so that a resume finds its model even before a checkpoint has a row
        training["settings"] = {**training["settings"], "run_dir": stored_path(config["out"])}
    return queries.record_model(
        session,
        preset=config["preset"],
        generator=generator,
        discriminator=discriminator,
        class_names=class_names,
        training=training,
    )


def model_for_run_folder(session: Session, run_dir: str | Path) -> int | None:
    """The model an earlier run in ``run_dir`` recorded (the newest): by its checkpoints' rows,
    else by the run folder its settings name. None when no run there was ever recorded."""
    folder = stored_path(run_dir)
    model_id = session.scalar(
        select(Checkpoint.gan_id)
        .where(Checkpoint.path.startswith(folder + os.sep, autoescape=True))
        .order_by(Checkpoint.id.desc())
        .limit(1)
    )
    if model_id is not None:
        return model_id
    for parameters in session.scalars(select(TrainingParameters).order_by(TrainingParameters.id.desc())):
        if (parameters.settings or {}).get("run_dir") == folder:
            return parameters.gan_id
    return None


def forget_unfinished_runs(session: Session, run_dir: str | Path) -> list[int]:
    """Delete the models that earlier runs in ``run_dir`` recorded but never checkpointed (killed
    before their first checkpoint), so that no model row points at nothing; returns their ids.
    For a new run in the folder, which holds the folder's lock: no such run is still going. A
    model with images, or that a search evaluated, is never one of them."""
    folder = stored_path(run_dir)
    unfinished = [
        parameters.gan_id
        for parameters in session.scalars(select(TrainingParameters).order_by(TrainingParameters.id))
        if (parameters.settings or {}).get("run_dir") == folder
        and session.scalar(select(Checkpoint.id).where(Checkpoint.gan_id == parameters.gan_id).limit(1))
        is None
        and session.scalar(
            select(SearchCandidate.id).where(SearchCandidate.gan_id == parameters.gan_id).limit(1)
        )
        is None
    ]
    for model_id in unfinished:
        queries.delete_model(session, model_id)
    return unfinished


def adopt_resumed_checkpoint(
    session: Session, run_dir: str | Path, path: str | Path, iteration: int, sha256: Callable[[], str]
) -> int | None:
    """The model a resumed run continues: the one that recorded the checkpoint it resumes from,
    or, when that checkpoint never got its row (the run was killed between writing it and
    recording it, or the database was locked), the model of the run folder, which then records
    it (``sha256()`` hashes the file, only then). None when the run folder belongs to no model
    of this database."""
    row = checkpoint_row(session, path)
    if row is not None:
        return row.gan_id
    model_id = model_for_run_folder(session, run_dir)
    if model_id is not None:
        record_checkpoint_file(session, model_id, path, iteration, sha256())
    return model_id


def checkpoint_row(session: Session, path: str | Path) -> Checkpoint | None:
    """The newest row recorded for this checkpoint file, if any."""
    return session.scalars(
        select(Checkpoint).where(Checkpoint.path == stored_path(path)).order_by(Checkpoint.id.desc()).limit(1)
    ).first()


CHECKPOINT_CHOICES = ("best", "latest")


def best_checkpoint(info: queries.ModelInfo, checkpoints: Sequence[queries.CheckpointInfo]) -> Any:
    """Of ``checkpoints``, the lowest normalised domain FID measured in training (the later one
    on a tie); UserError when none was evaluated (--eval-every)."""
    measured = [c for c in checkpoints if c.domain_fid is not None]
    if not measured:
        raise UserError(f"model {info.id} has no evaluated checkpoint; train with --eval-every to mark one.")
    return min(measured, key=lambda c: (c.domain_fid, -c.iteration))


def record_checkpoint_file(
    session: Session,
    model_id: int,
    path: str | Path,
    iteration: int,
    sha256: str,
    *,
    domain_fid: float | None = None,
    epochs: int | None = None,
) -> int:
    checkpoint_id = queries.record_checkpoint(
        session, model_id, stored_path(path), iteration, sha256, domain_fid
    )
    queries.update_training_iterations(session, model_id, iteration, epochs)
    return checkpoint_id


def adopt_checkpoint(session: Session, state: dict[str, Any], sha256: str) -> tuple[int, int]:
    """(model id, checkpoint id) for a loaded checkpoint, recording its model if it is new.

    Any gen checkpoint carries its architecture, classes and settings, so one trained without
    this database (or elsewhere) can still be sampled with full provenance.
    """
    row = checkpoint_row(session, state["path"])
    if row is not None and row.sha256 == sha256:
        return row.gan_id, row.id
    config = json.loads(state["config"])
    model_id = record_run(
        session,
        config=config,
        generator=json.loads(state["generator_spec"]),
        discriminator=json.loads(state["discriminator_spec"]),
        class_names=state["class_names"],
        data_fingerprint=state["data_fingerprint"],
        num_images=state.get("num_images", 0),
        iterations=state["iteration"],
        device=config["device"],
    )
    checkpoint_id = record_checkpoint_file(
        session,
        model_id,
        state["path"],
        state["iteration"],
        sha256,
        domain_fid=state.get("evaluation"),
        epochs=epochs(config, state["iteration"], state.get("num_images", 0)),
    )
    return model_id, checkpoint_id


class ImageRecorder:
    """gen.sample's Recorder: one transaction per batch, after the batch's files exist."""

    def __init__(
        self,
        engine: Engine,
        model_id: int,
        checkpoint_id: int,
        iteration: int,
        seed: int,
        computed: dict[str, Any] | None = None,
    ):
        """``computed``: how the images are computed (batch_size, threads, device, torch_version),
        recorded with each so that gen reproduce can say whether bytes or only pixels must match."""
        self.engine = engine
        self.checkpoint_id = checkpoint_id
        self.iteration = iteration
        self.seed = seed
        self.computed = computed or {}
        self.gan_id = model_id
        self.curation_settings: dict[str, Any] | None = None
        self.curation_id: int | None = None  # the run's row, made when it first records
        self.earlier_curations: list[int] = []
        with Session(engine) as session:
            self.class_ids = {
                c.name: c.id for c in session.scalars(select(ClassName).where(ClassName.gan_id == model_id))
            }

    def begin_curation(self, settings: dict[str, Any]) -> None:
        """Later records belong to a curation run with these settings; its row is made when it
        first records something (a run that fails before then leaves no row)."""
        self.curation_settings = settings
        with Session(self.engine) as session:
            self.earlier_curations = queries.matching_curations(
                session, self.checkpoint_id, self.seed, settings
            )

    def recorded_in_curation(self, class_name: str, directory: Path) -> dict[int, Path]:
        """Indices in ``directory`` that runs of the same curation settings kept and recorded."""
        with Session(self.engine) as session:
            found = queries.recorded_samples(
                session,
                self.checkpoint_id,
                self.class_ids[class_name],
                self.seed,
                stored_path(directory),
                curation_ids=self.earlier_curations,
            )
        return {index: Path(path) for index, (path, _md5) in found.items() if Path(path).is_file()}

    def _curation(self) -> int | None:
        if self.curation_settings is not None and self.curation_id is None:
            with Session(self.engine) as session:
                self.curation_id = queries.record_curation(
                    session, self.gan_id, self.checkpoint_id, self.seed, self.curation_settings
                )
        return self.curation_id

    def finish_class(self, curation: Any, seconds: float) -> None:
        """A class of the curation run is done: its counts (gen.curation.ClassCuration)."""
        curation_id = self._curation()
        with Session(self.engine) as session:
            queries.finish_curation_class(
                session, curation_id, curation.class_name, curation.to_json(), seconds
            )

    def recorded(self, class_name: str, directory: Path) -> dict[int, Path]:
        with Session(self.engine) as session:
            found = queries.recorded_samples(
                session, self.checkpoint_id, self.class_ids[class_name], self.seed, stored_path(directory)
            )
        return {index: Path(path) for index, (path, _md5) in found.items() if Path(path).is_file()}

    def known_paths(self, directory: Path) -> set[Path]:
        with Session(self.engine) as session:
            return {Path(p) for p in queries.recorded_paths(session, stored_path(directory))}

    def record(self, images: Sequence[Any]) -> None:
        curation_id = self._curation()
        rows = [
            {
                "file_path": stored_path(image.path),
                "class_id": self.class_ids[image.class_name],
                "md5": image.md5,
                "width": image.width,
                "height": image.height,
                "seed": image.seed,
                "sample_index": image.index,
                "checkpoint_id": self.checkpoint_id,
                "iteration": self.iteration,
                **self.computed,
                **_scores(image.scores),
                "curation_id": curation_id,
            }
            for image in images
        ]
        try:
            with Session(self.engine) as session:
                queries.record_images(session, rows)
        except IntegrityError:
            # The model (or this checkpoint's row) was deleted while sampling: the files of this
            # batch are whole on disk but belong to no model any more.
            raise UserError(
                f"the model was deleted from the database while sampling; {len(rows)} images of this "
                f"batch were written without rows (first: {rows[0]['file_path']})."
            ) from None
        except OperationalError as error:
            if not disk_full(error):
                raise
            # The batch's transaction rolled back: its files are whole, and the same request run
            # again adopts them (gen.sample) instead of writing them twice.
            raise UserError(
                f"the database's disk is full: {len(rows)} images of this batch were written without rows "
                f"(first: {rows[0]['file_path']}); free some space and run the same gen sample again, "
                "which records them."
            ) from None


def _scores(scores: Any) -> dict[str, float | None]:
    """The images row's score columns from a gen.curation.ImageScores (or None: no scores)."""
    names = ("class_confidence", "realism", "near_copy_distance")
    return {name: getattr(scores, name) if scores is not None else None for name in names}


def record_candidate(
    session: Session,
    *,
    search_id: int,
    step: int,
    parent_step: int | None,
    config: dict[str, Any],
    generator: dict[str, Any],
    discriminator: dict[str, Any],
    class_names: Sequence[str],
    data_fingerprint: str,
    num_images: int,
    device: str,
    checkpoint: tuple[str | Path, int, str] | None,
    fitness: float | None,
    budget: dict[str, Any],
    seconds: float,
    worker: str | None,
) -> tuple[int, int]:
    """An evaluated search candidate: its model rows (gan_architectures, classes, training, the
    checkpoint it ended with and that checkpoint's fitness) and its search_candidates row.
    ``checkpoint`` is (path, iteration, sha256), or None when the candidate failed before one.
    Returns (model id, candidate id)."""
    iterations = checkpoint[1] if checkpoint is not None else 0
    model_id = record_run(
        session,
        config=config,
        generator=generator,
        discriminator=discriminator,
        class_names=class_names,
        data_fingerprint=data_fingerprint,
        num_images=num_images,
        iterations=iterations,
        device=device,
    )
    if checkpoint is not None:
        path, iteration, sha256 = checkpoint
        record_checkpoint_file(
            session,
            model_id,
            path,
            iteration,
            sha256,
            domain_fid=fitness,
            epochs=epochs(config, iteration, num_images),
        )
    candidate_id = queries.record_search_candidate(
        session,
        search_id=search_id,
        model_id=model_id,
        step=step,
        parent_step=parent_step,
        fitness=fitness,
        budget=budget,
        seconds=seconds,
        worker=worker,
        status="done" if fitness is not None else "failed",
    )
    return model_id, candidate_id


def record_classifier_candidate(
    session: Session,
    *,
    search_id: int,
    step: int,
    parent_step: int | None,
    weights: tuple[str | Path, str] | None,
    architecture: dict[str, Any] | None,
    accuracy: float | None,
    data_path: str | Path,
    data_fingerprint: str,
    budget: dict[str, Any],
    seconds: float,
    worker: str | None,
) -> tuple[int | None, int]:
    """An evaluated classifier-search candidate: its classifiers row (``weights`` as (path,
    sha256); linked to the registered data set of that folder and fingerprint, if any) and its
    search_candidates row, whose fitness is the validation error 1 - accuracy. A failed
    candidate (``weights`` None) gets only the candidate row. Both rows in one transaction.
    Returns (classifier id, candidate id)."""
    from db import catalog

    classifier = None
    if weights is not None and accuracy is not None and architecture is not None:
        path, sha256 = weights
        classifier = {
            "dataset_fingerprint": data_fingerprint,
            "path": stored_path(path),
            "sha256": sha256,
            "architecture": architecture,
            "accuracy": accuracy,
            "dataset_id": catalog.find_dataset_by_folder(session, stored_path(data_path), data_fingerprint),
        }
    return queries.record_classifier_search_candidate(
        session,
        search_id=search_id,
        step=step,
        parent_step=parent_step,
        classifier=classifier,
        fitness=None if classifier is None else 1.0 - accuracy,
        budget=budget,
        seconds=seconds,
        worker=worker,
        status="done" if classifier is not None else "failed",
    )
