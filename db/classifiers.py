"""Classifiers: the ones gen classifiers train and gen report train for a data set, by id or name.

Deleting reports what the row is part of first (a search's candidate is kept), and never touches
the weights file, which is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from db.errors import UserError
from db.models import Classifier, Dataset, SearchCandidate
from db.names import as_id, check_name
from db.session import insert_row, transaction


@dataclass(frozen=True)
class ClassifierInfo:
    id: int
    dataset_fingerprint: str
    path: str
    sha256: str
    architecture: dict[str, Any]
    accuracy: float
    created_at: datetime


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


def _classifier_rows(session: Session, *where: ColumnElement[bool]) -> list[ClassifierSummary]:
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
