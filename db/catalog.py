"""Registered data sets, model names and classifiers: the rows behind gen data, gen models
rename/retrain and gen classifiers.

Names work wherever an id does: a reference that is all digits is an id, anything else a name,
which is why names may not be all digits. Deleting reports what depends on a row first
(`*_dependents`), so the command line can show the counts and ask before anything goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from db.errors import UserError
from db.models import (
    Checkpoint,
    Classifier,
    ClassName,
    Dataset,
    GanArchitecture,
    Image,
    Job,
    Report,
    SearchCandidate,
    TrainingParameters,
)
from db.queries import require_model
from db.session import insert_row, transaction


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    name: str
    folder: str
    fingerprint: str
    classes: dict[str, int] | None  # class name -> images, when known
    created_at: datetime
    models: int  # models trained on it
    classifiers: int  # classifiers trained on it

    @property
    def images(self) -> int | None:
        return None if self.classes is None else sum(self.classes.values())


# Ids are positive and fit a signed 64-bit integer, the widest any database column holds; a
# reference outside that range is refused here rather than by the driver (SQLite overflows).
MAX_ID = 2**63 - 1
_ID = re.compile(r"[0-9]+")


def as_id(reference: str | int) -> int | None:
    """The id a reference names, or None when it is a name. All ASCII digits is an id, and only
    1..MAX_ID is one (UserError otherwise): the one place where ids typed by a user are read."""
    text = str(reference).strip()
    if not _ID.fullmatch(text):
        return None
    number = int(text)
    if not 1 <= number <= MAX_ID:
        shown = text if len(text) <= 30 else f"{text[:12]}...{text[-6:]}"
        raise UserError(f"{shown} is not an id: ids are whole numbers from 1 to {MAX_ID}.")
    return number


def check_name(name: str, what: str) -> None:
    """UserError unless name can name a data set or model: not empty, not all digits (an id)."""
    if not name or name != name.strip() or not name.isprintable():
        raise UserError(f"{what} name {name!r} must not be empty or start or end with a space.")
    if _ID.fullmatch(name):
        raise UserError(f"{what} name {name!r} is all digits, which would read as an id; add a letter.")


def _info(session: Session, dataset: Dataset) -> DatasetInfo:
    counts = dataset_dependents(session, dataset.id)
    return DatasetInfo(
        id=dataset.id,
        name=dataset.name,
        folder=dataset.folder,
        fingerprint=dataset.fingerprint,
        classes=dataset.classes,
        created_at=dataset.created_at,
        models=counts["models"],
        classifiers=counts["classifiers"],
    )


def _find_dataset(session: Session, reference: str | int) -> Dataset:
    text = str(reference)
    number = as_id(text)
    query = select(Dataset).where(Dataset.id == number if number is not None else Dataset.name == text)
    dataset = session.scalars(query).first()
    if dataset is None:
        names = list(session.scalars(select(Dataset.name).order_by(Dataset.id)))
        known = f"data sets: {', '.join(names)}" if names else "none is registered yet; use gen data add"
        raise UserError(f"no data set {text!r}; {known}.")
    return dataset


def get_dataset(session: Session, reference: str | int) -> DatasetInfo:
    """A data set by name or id; UserError naming the registered ones if there is none."""
    return _info(session, _find_dataset(session, reference))


def list_datasets(session: Session) -> list[DatasetInfo]:
    return [_info(session, d) for d in session.scalars(select(Dataset).order_by(Dataset.id))]


def find_dataset_by_folder(session: Session, folder: str, fingerprint: str) -> int | None:
    """The newest data set registered for this folder with these very files, if any."""
    return session.scalar(
        select(Dataset.id)
        .where(Dataset.folder == folder, Dataset.fingerprint == fingerprint)
        .order_by(Dataset.id.desc())
        .limit(1)
    )


def unused_dataset_name(session: Session, base: str) -> str:
    """base, or base-2, base-3, ...: the first name no data set has (for self-registering paths)."""
    base = base.strip() or "data"
    if base.isdigit():
        base = f"data-{base}"
    taken = set(session.scalars(select(Dataset.name).where(Dataset.name.startswith(base, autoescape=True))))
    name, number = base, 2
    while name in taken:
        name, number = f"{base}-{number}", number + 1
    return name


def add_dataset(
    session: Session, *, name: str, folder: str, fingerprint: str, classes: dict[str, int]
) -> int:
    """Register a folder under a new name; returns the data set's id."""
    check_name(name, "data set")
    if session.scalar(select(Dataset.id).where(Dataset.name == name)) is not None:
        raise UserError(
            f"a data set called {name!r} exists already; pick another name or gen data rename it."
        )
    with transaction(session):
        dataset = Dataset(name=name, folder=folder, fingerprint=fingerprint, classes=classes)
        dataset_id = insert_row(session, dataset)
    # Models and classifiers trained on exactly these files before it was registered join it.
    with transaction(session):
        session.execute(
            update(TrainingParameters)
            .where(
                TrainingParameters.dataset_id.is_(None),
                TrainingParameters.dataset_path == folder,
                TrainingParameters.dataset_fingerprint == fingerprint,
            )
            .values(dataset_id=dataset_id)
        )
        session.execute(
            update(Classifier)
            .where(Classifier.dataset_id.is_(None), Classifier.dataset_fingerprint == fingerprint)
            .values(dataset_id=dataset_id)
        )
    return dataset_id


def rename_dataset(session: Session, reference: str, new_name: str) -> tuple[str, str]:
    """(old name, new name)."""
    check_name(new_name, "data set")
    dataset = _find_dataset(session, reference)
    old = dataset.name
    if old != new_name and session.scalar(select(Dataset.id).where(Dataset.name == new_name)) is not None:
        raise UserError(f"a data set called {new_name!r} exists already.")
    with transaction(session):
        dataset.name = new_name
    return old, new_name


def dataset_dependents(session: Session, dataset_id: int) -> dict[str, int]:
    """What uses the data set: {"models": n, "classifiers": n}."""
    models = session.scalar(
        select(func.count())
        .select_from(TrainingParameters)
        .where(TrainingParameters.dataset_id == dataset_id)
    )
    classifiers = session.scalar(
        select(func.count()).select_from(Classifier).where(Classifier.dataset_id == dataset_id)
    )
    return {"models": models or 0, "classifiers": classifiers or 0}


def move_dataset(session: Session, reference: str, folder: str, fingerprint: str) -> DatasetInfo:
    """Point the data set at another folder holding the same files; refused while it is used."""
    dataset = _find_dataset(session, reference)
    used = dataset_dependents(session, dataset.id)
    if any(used.values()):
        raise UserError(
            f"data set {dataset.name!r} is used by {used['models']} models and {used['classifiers']} "
            "classifiers, so its folder cannot change; register the new folder with gen data add."
        )
    if fingerprint != dataset.fingerprint:
        raise UserError(
            f"the files in {folder} differ from the ones registered as {dataset.name!r}; "
            "register them as a new data set with gen data add."
        )
    with transaction(session):
        dataset.folder = folder
    return get_dataset(session, dataset.id)


def delete_dataset(session: Session, reference: str) -> DatasetInfo:
    """Delete the data set's row; the models and classifiers that used it keep their rows (and
    their recorded folder and fingerprint) but no longer point to it. Returns what was deleted."""
    info = get_dataset(session, reference)
    with transaction(session):
        session.execute(
            update(TrainingParameters).where(TrainingParameters.dataset_id == info.id).values(dataset_id=None)
        )
        session.execute(update(Classifier).where(Classifier.dataset_id == info.id).values(dataset_id=None))
        session.execute(delete(Dataset).where(Dataset.id == info.id))
    return info


def link_model_to_dataset(session: Session, model_id: int, dataset_id: int) -> None:
    with transaction(session):
        session.execute(
            update(TrainingParameters)
            .where(TrainingParameters.gan_id == model_id)
            .values(dataset_id=dataset_id)
        )


def model_dataset(session: Session, model_id: int) -> str | None:
    """The name of the data set the model was trained on, if it is registered."""
    return session.scalar(
        select(Dataset.name)
        .join(TrainingParameters, TrainingParameters.dataset_id == Dataset.id)
        .where(TrainingParameters.gan_id == model_id)
    )


# Models by name


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

    def count(model: Any, *where: Any) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    return {
        "checkpoints": count(Checkpoint, Checkpoint.gan_id == model_id),
        "images": count(Image, Image.class_id.in_(class_ids)),
        "reports": count(Report, Report.gan_id == model_id),
        "jobs": count(Job, Job.gan_id == model_id),
        "retrained models": count(GanArchitecture, GanArchitecture.retrained_from == model_id),
    }


# Classifiers


@dataclass(frozen=True)
class ClassifierSummary:
    id: int
    dataset: str | None  # the registered data set's name
    dataset_fingerprint: str
    path: str
    sha256: str
    accuracy: float
    architecture: dict[str, Any]
    created_at: datetime
    # Filled for classifiers trained by gen classifiers train (None for older kinds of row).
    name: str | None = None
    settings: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    per_class_f1: dict[str, float] | None = None
    confusion_matrix: list[list[int]] | None = None


def _classifier_rows(session: Session, *where: Any) -> list[ClassifierSummary]:
    rows = session.execute(
        select(Classifier, Dataset.name)
        .outerjoin(Dataset, Dataset.id == Classifier.dataset_id)
        .where(*where)
        .order_by(Classifier.id)
    )
    return [
        ClassifierSummary(
            id=c.id,
            dataset=name,
            dataset_fingerprint=c.dataset_fingerprint,
            path=c.path,
            sha256=c.sha256,
            accuracy=c.accuracy,
            architecture=c.architecture,
            created_at=c.created_at,
            name=c.name,
            settings=c.settings,
            history=c.history,
            per_class_f1=c.per_class_f1,
            confusion_matrix=c.confusion_matrix,
        )
        for c, name in rows
    ]


def list_classifiers(session: Session) -> list[ClassifierSummary]:
    return _classifier_rows(session)


def get_classifier(session: Session, reference: int | str) -> ClassifierSummary:
    """A classifier by id or by name (gen classifiers train --name); UserError naming what exists."""
    text = str(reference).strip()
    number = as_id(text)  # all digits: an id within 1..MAX_ID, or one sentence
    if number is not None:
        rows = _classifier_rows(session, Classifier.id == number)
    else:
        rows = _classifier_rows(session, Classifier.name == text)
    if not rows:
        known_rows = _classifier_rows(session)
        ids = [c.name or str(c.id) for c in known_rows]
        known = (
            f"classifiers: {', '.join(ids)}"
            if ids
            else "there are none yet (gen classifiers train or gen report trains them)"
        )
        raise UserError(f"no classifier {text if text.isdigit() else repr(text)}; {known}.")
    return rows[0]


def check_classifier_name(session: Session, name: str) -> None:
    """UserError unless ``name`` can name a new classifier: a valid name no classifier has."""
    check_name(name, "classifier")
    holder = session.scalar(select(Classifier.id).where(Classifier.name == name))
    if holder is not None:
        raise UserError(f"classifier {holder} is already called {name!r}; pick another --name.")


def delete_classifier(session: Session, classifier_id: int) -> ClassifierSummary:
    """Delete the classifier's row (its file is the caller's business); returns what it was."""
    info = get_classifier(session, classifier_id)
    search_ids = sorted(
        set(
            session.scalars(
                select(SearchCandidate.search_id).where(SearchCandidate.classifier_id == classifier_id)
            )
        )
    )
    if search_ids:
        raise UserError(
            f"classifier {classifier_id} is a candidate of search {', '.join(map(str, search_ids))}; "
            "a search keeps every candidate it evaluated."
        )
    with transaction(session):
        session.execute(delete(Classifier).where(Classifier.id == classifier_id))
    return info


def model_image_files(session: Session, model_id: int) -> list[tuple[str, str]]:
    """(file, MD5) of the images the model made, as recorded (for --delete-files); a file that
    another model's rows also name is left out."""
    class_ids = select(ClassName.id).where(ClassName.gan_id == model_id).scalar_subquery()
    others = select(Image.file_path).where(Image.class_id.not_in(class_ids))
    query = select(Image.file_path, Image.md5).where(
        Image.class_id.in_(class_ids), Image.file_path.not_in(others)
    )
    return [(path, md5) for path, md5 in session.execute(query)]


def model_or_latest(session: Session, reference: str | int | None) -> int:
    """--model ID|NAME as the commands take it: the model named, else the latest one."""
    from db.queries import latest_model_id

    return latest_model_id(session) if reference is None else resolve_model(session, reference)
