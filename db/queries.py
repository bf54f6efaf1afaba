"""Small functions over a Session, each doing one thing the CLI and the Python API need.

Every function that writes is one transaction: it commits when it succeeds and rolls back when
it fails, so a caller never leaves half a model or half a batch of images behind. Functions that
only read do not commit. Mistakes a user can make (an unknown model id or class name, deleting
a model that still has images) raise UserError with one sentence that says what exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from db.errors import UserError
from db.models import (
    Checkpoint,
    Classifier,
    ClassName,
    Curation,
    GanArchitecture,
    Image,
    Job,
    Report,
    Search,
    SearchCandidate,
    TrainingParameters,
    utc_now,
)
from db.session import insert_row, transaction

# The keys record_model's `training` may hold: training_parameters' columns, less the ones the
# database fills in itself and the data set link that db.catalog sets.
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


@dataclass(frozen=True)
class ReportRow:
    metric: str
    class_name: str | None  # None: the figure covers all classes
    value: float
    settings: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class ClassifierInfo:
    id: int
    dataset_fingerprint: str
    path: str
    sha256: str
    architecture: dict[str, Any]
    accuracy: float
    created_at: datetime


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


def _class_names(session: Session, model_id: int) -> list[ClassName]:
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


def latest_model_id(session: Session) -> int:
    """The model added most recently: what commands use when no id is given."""
    model_id = session.scalar(select(func.max(GanArchitecture.id)))
    if model_id is None:
        raise UserError("no model in the database yet; run gen train first")
    return model_id


def _image_counts(session: Session, gan_ids: Sequence[int] | None = None) -> dict[int, int]:
    """class_names.id -> number of image rows."""
    query = select(Image.class_id, func.count()).group_by(Image.class_id)
    if gan_ids is not None:
        query = query.join(ClassName, ClassName.id == Image.class_id).where(ClassName.gan_id.in_(gan_ids))
    return {class_id: count for class_id, count in session.execute(query)}


def get_model(session: Session, model_id: int) -> ModelInfo:
    """Everything recorded about model model_id; UserError listing the ids that exist if unknown."""
    model = require_model(session, model_id)
    classes = _class_names(session, model_id)
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
    classes = _class_names(session, model_id)
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


def _directory_filter(directory: str) -> tuple[str, str]:
    """(the folder as compared with os.path.dirname of a stored path, the LIKE prefix to find it)."""
    folder = directory[:-1] if len(directory) > 1 and directory.endswith(os.sep) else directory
    return folder, os.path.join(folder, "") if folder else ""


def recorded_samples(
    session: Session,
    checkpoint_id: int,
    class_id: int,
    seed: int,
    directory: str,
    curation_ids: Sequence[int] | None = None,
) -> dict[int, tuple[str, str]]:
    """sample_index -> (file_path, md5) of the samples already recorded with files directly in
    directory, so that a rerun of an interrupted request can skip them; with curation_ids, only
    those that these curation runs kept.

    directory is compared with each file_path as stored (no normalisation), so pass it in the
    form the paths were recorded in: "out/cyt_mast" finds "out/cyt_mast/00007.png".
    """
    folder, prefix = _directory_filter(directory)
    query = select(Image.sample_index, Image.file_path, Image.md5).where(
        # The unique constraint's leading columns make this an index range scan.
        Image.checkpoint_id == checkpoint_id,
        Image.class_id == class_id,
        Image.seed == seed,
        Image.file_path.startswith(prefix, autoescape=True),
    )
    if curation_ids is not None:
        query = query.where(Image.curation_id.in_(curation_ids))
    rows = session.execute(query)
    # The prefix also matches files in sub-folders; keep only the folder's own files.
    return {
        sample_index: (file_path, md5)
        for sample_index, file_path, md5 in rows
        if os.path.dirname(file_path) == folder
    }


@dataclass(frozen=True)
class ModelImage:
    """One image row of a model, with its class's name and its checkpoint's stored path."""

    id: int
    file_path: str
    class_name: str
    md5: str
    seed: int
    sample_index: int
    iteration: int
    checkpoint_path: str


def model_images(
    session: Session,
    model_id: int,
    *,
    checkpoint_id: int | None = None,
    seed: int | None = None,
    folder: str | None = None,
    curated: bool = False,
    minimums: Mapping[str, float] | None = None,
) -> list[ModelImage]:
    """The model's image rows in class label order, then oldest first, in one query; only those
    made from checkpoint_id, with seed, in folder (a stored path, sub-folders included), kept by
    a curation run (curated), or whose score columns (class_confidence, realism,
    near_copy_distance) reach minimums (a row without a score never does)."""
    query = (
        select(
            Image.id,
            Image.file_path,
            ClassName.name,
            Image.md5,
            Image.seed,
            Image.sample_index,
            Image.iteration,
            Checkpoint.path,
        )
        .join(ClassName, ClassName.id == Image.class_id)
        .join(Checkpoint, Checkpoint.id == Image.checkpoint_id)
        .where(ClassName.gan_id == model_id)
        .order_by(ClassName.label, Image.id)
    )
    if checkpoint_id is not None:
        query = query.where(Image.checkpoint_id == checkpoint_id)
    if seed is not None:
        query = query.where(Image.seed == seed)
    if folder is not None:
        query = query.where(Image.file_path.startswith(folder + os.sep, autoescape=True))
    if curated:
        query = query.where(Image.curation_id.is_not(None))
    for column, minimum in (minimums or {}).items():
        query = query.where(_SCORE_COLUMNS[column] >= minimum)
    return [ModelImage(*row) for row in session.execute(query)]


_SCORE_COLUMNS = {
    "class_confidence": Image.class_confidence,
    "realism": Image.realism,
    "near_copy_distance": Image.near_copy_distance,
}


def checkpoint_ids_with_images(session: Session, model_id: int) -> set[int]:
    """The ids of the model's checkpoints that recorded images were made from."""
    query = select(Image.checkpoint_id).join(Checkpoint).where(Checkpoint.gan_id == model_id).distinct()
    return set(session.scalars(query))


def image_records(session: Session, image_ids: Sequence[int]) -> list[dict[str, Any]]:
    """What making each image again needs, in the order asked: its row, class label and name,
    checkpoint file and SHA-256, and its stream's length (one past the largest recorded index of
    the same checkpoint, class and seed in the same folder). UserError naming an unknown id."""
    rows = {
        image.id: (image, class_name, checkpoint)
        for image, class_name, checkpoint in session.execute(
            select(Image, ClassName, Checkpoint)
            .join(ClassName, ClassName.id == Image.class_id)
            .join(Checkpoint, Checkpoint.id == Image.checkpoint_id)
            .where(Image.id.in_(set(image_ids)))
        )
    }
    unknown = [image_id for image_id in image_ids if image_id not in rows]
    if unknown:
        raise UserError(f"no image {unknown[0]} in the database.")
    records = []
    streams: dict[tuple[int, int, int, str], dict[int, tuple[str, str]]] = {}
    for image_id in image_ids:
        image, class_name, checkpoint = rows[image_id]
        stream = (checkpoint.id, class_name.id, image.seed, os.path.dirname(image.file_path))
        if stream not in streams:
            streams[stream] = recorded_samples(session, *stream)
        siblings = streams[stream]
        records.append(
            {
                "id": image.id,
                "file_path": image.file_path,
                "md5": image.md5,
                "seed": image.seed,
                "sample_index": image.sample_index,
                "label": class_name.label,
                "class_name": class_name.name,
                "checkpoint_path": checkpoint.path,
                "checkpoint_sha256": checkpoint.sha256,
                "stream_length": max(siblings, default=image.sample_index) + 1,
                "batch_size": image.batch_size,
                "threads": image.threads,
                "device": image.device,
                "torch_version": image.torch_version,
            }
        )
    return records


def recorded_paths(session: Session, directory: str) -> set[str]:
    """Every file_path directly in directory that has a row, whichever model or request made it,
    so that a request never overwrites a file another one recorded. Paths compare as stored.

    Unindexed (a prefix match cannot use a b-tree index under every collation); it reads the
    images table once, which takes milliseconds for the tens of thousands of rows a data set has.
    """
    folder, prefix = _directory_filter(directory)
    paths = session.scalars(
        select(Image.file_path).where(Image.file_path.startswith(prefix, autoescape=True))
    )
    return {path for path in paths if os.path.dirname(path) == folder}


def record_curation(
    session: Session, model_id: int, checkpoint_id: int, seed: int, settings: Mapping[str, Any]
) -> int:
    """A new curations row (gen sample --keep-best); its classes are filled in as each ends."""
    with transaction(session):
        curation = Curation(gan_id=model_id, checkpoint_id=checkpoint_id, seed=seed, settings=dict(settings))
        curation_id = insert_row(session, curation)
    return curation_id


def matching_curations(
    session: Session, checkpoint_id: int, seed: int, settings: Mapping[str, Any]
) -> list[int]:
    """The curation runs of this checkpoint and seed with exactly these settings (compared as
    JSON values here, the same way on every dialect): the runs a rerun continues."""
    rows = session.execute(
        select(Curation.id, Curation.settings).where(
            Curation.checkpoint_id == checkpoint_id, Curation.seed == seed
        )
    )
    return [curation_id for curation_id, stored in rows if stored == dict(settings)]


def finish_curation_class(
    session: Session, curation_id: int, class_name: str, counts: Mapping[str, Any], seconds: float
) -> None:
    """Add one class's counts (candidates, kept, rejected by reason) and its time to a run."""
    with transaction(session):
        curation = session.get(Curation, curation_id)
        if curation is None:
            raise UserError(f"curation {curation_id} was deleted while sampling.")
        curation.classes = {**(curation.classes or {}), class_name: dict(counts)}
        curation.seconds = (curation.seconds or 0.0) + seconds


def record_images(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert a batch of image rows in one transaction.

    Each row maps Image's attribute names to values: file_path, class_id, md5, width, height,
    seed, sample_index, checkpoint_id, iteration (created_at is filled in). Call it once per
    batch of files written (a few hundred): a batch is then either fully recorded or not at all.
    """
    if not rows:
        return
    with transaction(session):
        # A list of dicts makes this an executemany (insertmanyvalues), not one INSERT per row.
        session.execute(insert(Image), [dict(row) for row in rows])


def record_report(session: Session, model_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record one quality report: rows of {"metric", "value", "class_name" (a name, or None for
    all classes), "settings" (optional)}. All rows share one created_at, which is what groups
    them into a report."""
    require_model(session, model_id)
    class_ids = {c.name: c.id for c in _class_names(session, model_id)}
    created_at = utc_now()
    values = []
    for row in rows:
        name = row.get("class_name")
        if name is not None and name not in class_ids:
            raise UserError(f"model {model_id} has no class {name!r}; its classes: {', '.join(class_ids)}")
        values.append(
            {
                "gan_id": model_id,
                "metric": row["metric"],
                "class_id": None if name is None else class_ids[name],
                "value": float(row["value"]),
                "settings": row.get("settings"),
                "created_at": created_at,
            }
        )
    if not values:
        return
    with transaction(session):
        session.execute(insert(Report), values)


def latest_report(session: Session, model_id: int) -> list[ReportRow]:
    """The newest figure of each (metric, class) recorded for the model, overall figures first.

    Per (metric, class) rather than the newest report as a whole, so that a report that measured
    only some metrics does not hide the others.
    """
    require_model(session, model_id)
    names = {c.id: c.name for c in _class_names(session, model_id)}
    reports = session.scalars(
        select(Report).where(Report.gan_id == model_id).order_by(Report.created_at.desc(), Report.id.desc())
    )
    newest: dict[tuple[str, int | None], Report] = {}
    for report in reports:
        newest.setdefault((report.metric, report.class_id), report)
    labels = {class_id: label for label, class_id in enumerate(names)}
    ordered = sorted(
        newest.values(), key=lambda r: (r.metric, -1 if r.class_id is None else labels[r.class_id])
    )
    return [
        ReportRow(
            metric=r.metric,
            class_name=None if r.class_id is None else names[r.class_id],
            value=r.value,
            settings=r.settings,
            created_at=r.created_at,
        )
        for r in ordered
    ]


def record_classifier(
    session: Session,
    *,
    dataset_fingerprint: str,
    path: str,
    sha256: str,
    architecture: dict[str, Any],
    accuracy: float,
    dataset_id: int | None = None,
    **trained: Any,
) -> int:
    """Record a trained classifier for a data set; returns its id. ``trained``: what gen
    classifiers train adds (name, settings, history, per_class_f1, confusion_matrix)."""
    with transaction(session):
        classifier = Classifier(
            dataset_fingerprint=dataset_fingerprint,
            path=path,
            sha256=sha256,
            architecture=architecture,
            accuracy=accuracy,
            dataset_id=dataset_id,
            **trained,
        )
        classifier_id = insert_row(session, classifier)
    return classifier_id


def latest_classifier(session: Session, dataset_fingerprint: str) -> ClassifierInfo | None:
    """The newest classifier trained on the data set with this fingerprint, if any."""
    classifier = session.scalars(
        select(Classifier)
        .where(Classifier.dataset_fingerprint == dataset_fingerprint)
        .order_by(Classifier.id.desc())
        .limit(1)
    ).first()
    if classifier is None:
        return None
    return ClassifierInfo(
        id=classifier.id,
        dataset_fingerprint=classifier.dataset_fingerprint,
        path=classifier.path,
        sha256=classifier.sha256,
        architecture=classifier.architecture,
        accuracy=classifier.accuracy,
        created_at=classifier.created_at,
    )


@dataclass(frozen=True)
class SearchInfo:
    id: int
    stage: str
    dataset_path: str
    dataset_fingerprint: str
    settings: dict[str, Any]
    seed: int
    status: str
    created_at: datetime


@dataclass(frozen=True)
class CandidateInfo:
    id: int
    step: int
    gan_id: int | None  # a generator or discriminator search's candidate model
    parent_step: int | None
    fitness: float | None
    budget: dict[str, Any]
    seconds: float
    worker: str | None
    status: str
    generator: dict[str, Any] | None
    discriminator: dict[str, Any] | None
    created_at: datetime
    classifier_id: int | None = None  # a classifier search's candidate
    classifier_architecture: dict[str, Any] | None = None
    accuracy: float | None = None


@dataclass(frozen=True)
class SearchSummary:
    id: int
    stage: str
    status: str
    candidates: int
    total: int | None
    best_fitness: float | None
    created_at: datetime


def _search_info(search: Search) -> SearchInfo:
    return SearchInfo(
        id=search.id,
        stage=search.stage,
        dataset_path=search.dataset_path,
        dataset_fingerprint=search.dataset_fingerprint,
        settings=search.settings,
        seed=search.seed,
        status=search.status,
        created_at=search.created_at,
    )


def create_search(
    session: Session,
    *,
    stage: str,
    dataset_path: str,
    dataset_fingerprint: str,
    settings: dict[str, Any],
    seed: int,
) -> int:
    """Record a new architecture search (status running); returns its id."""
    with transaction(session):
        search = Search(
            stage=stage,
            dataset_path=dataset_path,
            dataset_fingerprint=dataset_fingerprint,
            settings=settings,
            seed=seed,
            status="running",
        )
        search_id = insert_row(session, search)
    return search_id


def get_search(session: Session, search_id: int) -> SearchInfo:
    search = session.get(Search, search_id)
    if search is None:
        ids = list(session.scalars(select(Search.id).order_by(Search.id)))
        known = (
            f"searches in the database: {', '.join(map(str, ids))}" if ids else "the database has no searches"
        )
        raise UserError(f"no search {search_id}; {known}")
    return _search_info(search)


def search_in_folder(session: Session, folder: str) -> SearchInfo | None:
    """The newest search whose settings name this (resolved) search folder."""
    for search in session.scalars(select(Search).order_by(Search.id.desc())):
        if (search.settings or {}).get("out") == folder:
            return _search_info(search)
    return None


def set_search_status(session: Session, search_id: int, status: str) -> None:
    with transaction(session):
        session.execute(update(Search).where(Search.id == search_id).values(status=status))


def record_search_candidate(
    session: Session,
    *,
    search_id: int,
    model_id: int | None,
    step: int,
    parent_step: int | None,
    fitness: float | None,
    budget: dict[str, Any],
    seconds: float,
    worker: str | None,
    status: str,
    classifier_id: int | None = None,
) -> int:
    """Record an evaluated candidate (its model or classifier row already written, if it got
    one); returns its id."""
    with transaction(session):
        return _add_search_candidate(
            session,
            search_id,
            parent_step,
            gan_id=model_id,
            classifier_id=classifier_id,
            step=step,
            fitness=fitness,
            budget=budget,
            seconds=seconds,
            worker=worker,
            status=status,
        )


def _add_search_candidate(session: Session, search_id: int, parent_step: int | None, **columns: Any) -> int:
    """A search_candidates row, its parent found by step, inside the caller's transaction."""
    parent_id = None
    if parent_step is not None:
        parent_id = session.scalar(
            select(SearchCandidate.id).where(
                SearchCandidate.search_id == search_id, SearchCandidate.step == parent_step
            )
        )
    candidate = SearchCandidate(search_id=search_id, parent_id=parent_id, **columns)
    return insert_row(session, candidate)


def record_classifier_search_candidate(
    session: Session,
    *,
    search_id: int,
    step: int,
    parent_step: int | None,
    classifier: dict[str, Any] | None,
    fitness: float | None,
    budget: dict[str, Any],
    seconds: float,
    worker: str | None,
    status: str,
) -> tuple[int | None, int]:
    """A classifier search's candidate and its classifiers row (``classifier``: that row's
    columns; None for a failed candidate) in one transaction, so that a crash leaves both or
    neither. Returns (classifier id, candidate id)."""
    with transaction(session):
        classifier_id = None
        if classifier is not None:
            row = Classifier(**classifier)
            classifier_id = insert_row(session, row)
        candidate_id = _add_search_candidate(
            session,
            search_id,
            parent_step,
            gan_id=None,
            classifier_id=classifier_id,
            step=step,
            fitness=fitness,
            budget=budget,
            seconds=seconds,
            worker=worker,
            status=status,
        )
    return classifier_id, candidate_id


def search_candidates(session: Session, search_id: int) -> list[CandidateInfo]:
    """A search's candidates in the order they were recorded (the order they were evaluated)."""
    parent = SearchCandidate.__table__.alias("parent_candidate")
    query = (
        select(SearchCandidate, GanArchitecture, Classifier, parent.c.step)
        .outerjoin(GanArchitecture, GanArchitecture.id == SearchCandidate.gan_id)
        .outerjoin(Classifier, Classifier.id == SearchCandidate.classifier_id)
        .outerjoin(parent, parent.c.id == SearchCandidate.parent_id)
        .where(SearchCandidate.search_id == search_id)
        .order_by(SearchCandidate.id)
    )
    return [
        CandidateInfo(
            id=candidate.id,
            step=candidate.step,
            gan_id=candidate.gan_id,
            parent_step=parent_step,
            fitness=candidate.fitness,
            budget=candidate.budget,
            seconds=candidate.seconds,
            worker=candidate.worker,
            status=candidate.status,
            generator=model.generator if model is not None else None,
            discriminator=model.discriminator if model is not None else None,
            created_at=candidate.created_at,
            classifier_id=candidate.classifier_id,
            classifier_architecture=classifier.architecture if classifier is not None else None,
            accuracy=classifier.accuracy if classifier is not None else None,
        )
        for candidate, model, classifier, parent_step in session.execute(query)
    ]


def list_searches(session: Session) -> list[SearchSummary]:
    counts = dict(
        session.execute(
            select(SearchCandidate.search_id, func.count()).group_by(SearchCandidate.search_id)
        ).all()
    )
    best = dict(
        session.execute(
            select(SearchCandidate.search_id, func.min(SearchCandidate.fitness)).group_by(
                SearchCandidate.search_id
            )
        ).all()
    )
    return [
        SearchSummary(
            id=search.id,
            stage=search.stage,
            status=search.status,
            candidates=counts.get(search.id, 0),
            total=(search.settings or {}).get("total"),
            best_fitness=best.get(search.id),
            created_at=search.created_at,
        )
        for search in session.scalars(select(Search).order_by(Search.id))
    ]
