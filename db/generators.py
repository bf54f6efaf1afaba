"""GAN models: their architecture, classes and training parameters, their checkpoints and
names, and what a training run records (gen train, gen models, a resumed run, a checkpoint
sampled that this database has not seen).

Every function that writes is one transaction: it commits when it succeeds and rolls back when
it fails, so a caller never leaves half a model behind. Functions that only read do not commit.
Mistakes a user can make (an unknown model id, name or class, deleting a model that still has
images) raise UserError with one sentence that says what exists. gen.train knows nothing of
SQL: it hands over what it made (through gen.provenance), and the functions here turn that into
rows; db imports nothing of gen.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from db.errors import UserError
from db.models import (
    Checkpoint,
    ClassName,
    Curation,
    GanArchitecture,
    Image,
    Job,
    Report,
    SearchCandidate,
    TrainingParameters,
)
from db.names import as_id, check_name, stored_path
from db.session import count_rows, insert_row, transaction

# The keys record_model's `training` may hold: training_parameters' columns, less the ones the
# database fills in itself and the data set link that db.datasets sets.
TRAINING_KEYS = frozenset(
    column.key
    for column in TrainingParameters.__mapper__.column_attrs
    if column.key not in {"id", "gan_id", "created_at", "dataset_id"}
)


@dataclass(frozen=True)
class CheckpointInfo:
    id: int
    path: str
    iteration: int
    sha256: str
    created_at: datetime
    domain_fid: float | None = None  # measured while training (--eval-every)


@dataclass(frozen=True)
class ModelInfo:
    """Everything the database knows about one model; enough to rebuild and resume it."""

    id: int
    preset: str | None
    generator: dict[str, Any]
    discriminator: dict[str, Any]
    class_names: tuple[str, ...]  # in label order: class_names[label]
    training: dict[str, Any]  # training_parameters' columns, as record_model takes them
    checkpoints: tuple[CheckpointInfo, ...]  # oldest iteration first
    image_counts: dict[str, int]  # per class name, zero included
    created_at: datetime

    @property
    def latest_checkpoint(self) -> CheckpointInfo | None:
        return self.checkpoints[-1] if self.checkpoints else None


@dataclass(frozen=True)
class ModelSummary:
    id: int
    preset: str | None
    class_names: tuple[str, ...]
    iterations: int
    image_count: int
    created_at: datetime
    checkpoints: int = 0  # recorded checkpoints; none: a run killed before its first, or still before it


def _model_ids(session: Session) -> list[int]:
    return list(session.scalars(select(GanArchitecture.id).order_by(GanArchitecture.id)))


def require_model(session: Session, model_id: int) -> GanArchitecture:
    model = session.get(GanArchitecture, model_id)
    if model is None:
        ids = _model_ids(session)
        if not ids:
            raise UserError(f"no model {model_id}; the database has no models yet; run gen train first")
        raise UserError(f"no model {model_id}; models in the database: {', '.join(map(str, ids))}")
    return model


def model_classes(session: Session, model_id: int) -> list[ClassName]:
    """The model's classes in label order."""
    return list(
        session.scalars(select(ClassName).where(ClassName.gan_id == model_id).order_by(ClassName.label))
    )


def record_model(
    session: Session,
    *,
    preset: str | None,
    generator: dict[str, Any],
    discriminator: dict[str, Any],
    class_names: Sequence[str],
    training: Mapping[str, Any],
) -> int:
    """Record a new model: its architecture, its classes (label i is class_names[i]) and how it
    is trained. Returns the model's id (gan_architectures.id)."""
    unknown = set(training) - TRAINING_KEYS
    if unknown:
        # A programming error, not a user's: the caller and the schema disagree.
        raise TypeError(f"unknown training parameters {sorted(unknown)}; known: {sorted(TRAINING_KEYS)}")
    if not class_names:
        raise UserError("a model needs at least one class")
    if len(set(class_names)) != len(class_names):
        raise UserError(f"class names must be unique; got {', '.join(class_names)}")
    with transaction(session):
        model = GanArchitecture(preset=preset, generator=generator, discriminator=discriminator)
        model_id = insert_row(session, model)
        session.add_all(
            ClassName(gan_id=model_id, name=name, label=label) for label, name in enumerate(class_names)
        )
        session.add(TrainingParameters(gan_id=model_id, **training))
    return model_id


def update_training_iterations(
    session: Session, model_id: int, iterations: int, epochs: int | None = None
) -> None:
    """Record how far training has got (and, when known, the epochs that makes)."""
    require_model(session, model_id)
    values: dict[str, int] = {"iterations": iterations}
    if epochs is not None:
        values["epochs"] = epochs
    with transaction(session):
        session.execute(
            update(TrainingParameters).where(TrainingParameters.gan_id == model_id).values(**values)
        )


def record_checkpoint(
    session: Session, model_id: int, path: str, iteration: int, sha256: str, domain_fid: float | None = None
) -> int:
    """Record a saved checkpoint file (and its quality figure from training); returns its id."""
    require_model(session, model_id)
    with transaction(session):
        checkpoint = Checkpoint(
            gan_id=model_id, path=path, iteration=iteration, sha256=sha256, domain_fid=domain_fid
        )
        checkpoint_id = insert_row(session, checkpoint)
    return checkpoint_id


def checkpoints_with_images(session: Session, model_id: int) -> set[str]:
    """Paths of the model's checkpoints that recorded images were made from: each image can be
    made again only while its checkpoint exists, so these are never pruned."""
    query = (
        select(Checkpoint.path)
        .where(Checkpoint.gan_id == model_id)
        .where(select(Image.id).where(Image.checkpoint_id == Checkpoint.id).exists())
    )
    return set(session.scalars(query))


def checkpoint_ids_with_images(session: Session, model_id: int) -> set[int]:
    """The ids of the model's checkpoints that recorded images were made from."""
    query = select(Image.checkpoint_id).join(Checkpoint).where(Checkpoint.gan_id == model_id).distinct()
    return set(session.scalars(query))


def latest_model_id(session: Session) -> int:
    """The model added most recently: what commands use when no id is given."""
    model_id = session.scalar(select(func.max(GanArchitecture.id)))
    if model_id is None:
        raise UserError("no model in the database yet; run gen train first")
    return model_id


def _image_counts(session: Session, model_ids: Sequence[int] | None = None) -> dict[int, int]:
    """class_names.id -> number of image rows."""
    query = select(Image.class_id, func.count()).group_by(Image.class_id)
    if model_ids is not None:
        query = query.join(ClassName, ClassName.id == Image.class_id).where(ClassName.gan_id.in_(model_ids))
    return {class_id: count for class_id, count in session.execute(query)}


def get_model(session: Session, model_id: int) -> ModelInfo:
    """Everything recorded about model model_id; UserError listing the ids that exist if unknown."""
    model = require_model(session, model_id)
    classes = model_classes(session, model_id)
    parameters = session.scalars(
        select(TrainingParameters).where(TrainingParameters.gan_id == model_id)
    ).one_or_none()
    checkpoints = session.scalars(
        select(Checkpoint).where(Checkpoint.gan_id == model_id).order_by(Checkpoint.iteration, Checkpoint.id)
    )
    counts = _image_counts(session, [model_id])
    return ModelInfo(
        id=model.id,
        preset=model.preset,
        generator=model.generator,
        discriminator=model.discriminator,
        class_names=tuple(c.name for c in classes),
        training={}
        if parameters is None
        else {key: getattr(parameters, key) for key in sorted(TRAINING_KEYS)},
        checkpoints=tuple(
            CheckpointInfo(
                id=c.id,
                path=c.path,
                iteration=c.iteration,
                sha256=c.sha256,
                created_at=c.created_at,
                domain_fid=c.domain_fid,
            )
            for c in checkpoints
        ),
        image_counts={c.name: counts.get(c.id, 0) for c in classes},
        created_at=model.created_at,
    )


def resolve_class(session: Session, model_id: int, name: str) -> int:
    """The class_names.id of a model's class called name; UserError listing its classes if none."""
    classes = model_classes(session, model_id)
    if not classes:
        require_model(session, model_id)
    for class_name in classes:
        if class_name.name == name:
            return class_name.id
    raise UserError(
        f"model {model_id} has no class {name!r}; its classes: {', '.join(c.name for c in classes)}"
    )


def list_models(session: Session) -> list[ModelSummary]:
    """Every model, oldest first, with how far it is trained and how many images it has made."""
    rows = session.execute(
        select(GanArchitecture, TrainingParameters.iterations)
        .outerjoin(TrainingParameters, TrainingParameters.gan_id == GanArchitecture.id)
        .order_by(GanArchitecture.id)
    ).all()
    names: dict[int, list[str]] = {}
    images: dict[int, int] = {}
    counts = _image_counts(session)
    checkpoints = dict(
        session.execute(select(Checkpoint.gan_id, func.count()).group_by(Checkpoint.gan_id)).all()
    )
    for class_name in session.scalars(select(ClassName).order_by(ClassName.gan_id, ClassName.label)):
        names.setdefault(class_name.gan_id, []).append(class_name.name)
        images[class_name.gan_id] = images.get(class_name.gan_id, 0) + counts.get(class_name.id, 0)
    return [
        ModelSummary(
            id=model.id,
            preset=model.preset,
            class_names=tuple(names.get(model.id, [])),
            iterations=iterations or 0,
            image_count=images.get(model.id, 0),
            created_at=model.created_at,
            checkpoints=checkpoints.get(model.id, 0),
        )
        for model, iterations in rows
    ]


def delete_model(session: Session, model_id: int, cascade: bool = False) -> int:
    """Delete a model's rows (never its files); returns how many image rows went with it.

    Refuses while images are recorded for it, unless cascade: the images table is the published
    record of how each file was made, so losing it must be asked for.
    """
    require_model(session, model_id)
    class_ids = select(ClassName.id).where(ClassName.gan_id == model_id).scalar_subquery()
    image_count = session.scalar(select(func.count()).select_from(Image).where(Image.class_id.in_(class_ids)))
    if image_count and not cascade:
        raise UserError(
            f"model {model_id} still has {image_count} recorded images; "
            "delete it with --cascade to remove their rows too (the image files are kept)"
        )
    search_ids = sorted(
        set(session.scalars(select(SearchCandidate.search_id).where(SearchCandidate.gan_id == model_id)))
    )
    if search_ids:
        raise UserError(
            f"model {model_id} is a candidate of search {', '.join(map(str, search_ids))}; "
            "a search keeps every candidate it evaluated"
        )
    # Children before parents: foreign keys stay enforced throughout.
    checkpoint_ids = select(Checkpoint.id).where(Checkpoint.gan_id == model_id).scalar_subquery()
    statements = [
        # Rows that only point to the model (a job that made it, a model retrained from it) forget it.
        update(Job).where(Job.gan_id == model_id).values(gan_id=None),
        update(GanArchitecture).where(GanArchitecture.retrained_from == model_id).values(retrained_from=None),
        delete(Image).where(Image.class_id.in_(class_ids) | Image.checkpoint_id.in_(checkpoint_ids)),
        delete(Curation).where(Curation.gan_id == model_id),
        delete(Report).where(Report.gan_id == model_id),
        delete(Checkpoint).where(Checkpoint.gan_id == model_id),
        delete(ClassName).where(ClassName.gan_id == model_id),
        delete(TrainingParameters).where(TrainingParameters.gan_id == model_id),
        delete(GanArchitecture).where(GanArchitecture.id == model_id),
    ]
    with transaction(session):
        for statement in statements:
            session.execute(statement, execution_options={"synchronize_session": False})
        session.expunge_all()
    return image_count or 0


# Models by name (gen models rename): a reference is an id or a name


def resolve_model(session: Session, reference: str | int) -> int:
    """A model's id from its id or its name (gen models rename); UserError naming what exists."""
    text = str(reference).strip()
    number = as_id(text)
    if number is not None:
        return require_model(session, number).id
    model_id = session.scalar(select(GanArchitecture.id).where(GanArchitecture.name == text))
    if model_id is None:
        named = list(session.scalars(select(GanArchitecture.name).where(GanArchitecture.name.is_not(None))))
        known = f"named models: {', '.join(named)}" if named else "no model has a name yet"
        raise UserError(f"no model called {text!r}; {known}.")
    return model_id


def model_or_latest(session: Session, reference: str | int | None) -> int:
    """--model ID|NAME as the commands take it: the model named, else the latest one."""
    return latest_model_id(session) if reference is None else resolve_model(session, reference)


def model_name(session: Session, model_id: int) -> str | None:
    return session.scalar(select(GanArchitecture.name).where(GanArchitecture.id == model_id))


def rename_model(session: Session, reference: str, new_name: str | None) -> int:
    """Give a model a name (None removes it); returns its id."""
    model_id = resolve_model(session, reference)
    if new_name is not None:
        check_name(new_name, "model")
        holder = session.scalar(select(GanArchitecture.id).where(GanArchitecture.name == new_name))
        if holder is not None and holder != model_id:
            raise UserError(f"model {holder} is already called {new_name!r}.")
    with transaction(session):
        session.execute(update(GanArchitecture).where(GanArchitecture.id == model_id).values(name=new_name))
    return model_id


def set_retrained_from(session: Session, model_id: int, parent_id: int) -> None:
    with transaction(session):
        session.execute(
            update(GanArchitecture).where(GanArchitecture.id == model_id).values(retrained_from=parent_id)
        )


def model_dependents(session: Session, model_id: int) -> dict[str, int]:
    """What deleting the model takes with it (rows only), and what only points to it."""
    require_model(session, model_id)
    class_ids = select(ClassName.id).where(ClassName.gan_id == model_id).scalar_subquery()
    return {
        "checkpoints": count_rows(session, Checkpoint, Checkpoint.gan_id == model_id),
        "images": count_rows(session, Image, Image.class_id.in_(class_ids)),
        "reports": count_rows(session, Report, Report.gan_id == model_id),
        "jobs": count_rows(session, Job, Job.gan_id == model_id),
        "retrained models": count_rows(session, GanArchitecture, GanArchitecture.retrained_from == model_id),
    }


def model_names(session: Session) -> dict[int, str]:
    """id -> name of the models that have one (gen models rename)."""
    return dict(
        session.execute(
            select(GanArchitecture.id, GanArchitecture.name).where(GanArchitecture.name.is_not(None))
        ).all()
    )


# What a training run records, in the shape gen hands it over (paths stored resolved)


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
    return record_model(
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
        delete_model(session, model_id)
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


def best_checkpoint(info: ModelInfo, checkpoints: Sequence[CheckpointInfo]) -> CheckpointInfo:
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
    checkpoint_id = record_checkpoint(session, model_id, stored_path(path), iteration, sha256, domain_fid)
    update_training_iterations(session, model_id, iteration, epochs)
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
