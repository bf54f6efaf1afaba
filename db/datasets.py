"""Registered data sets (gen data): a name for a folder of training images and its fingerprint,
and the models and classifiers trained on it.

Deleting or moving reports what depends on the data set first (`dataset_dependents`), so the
command line can show the counts and ask before anything goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from db.errors import UserError
from db.models import Classifier, Dataset, TrainingParameters
from db.names import as_id, check_name
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
