"""Architecture searches and their candidates (gen search): each candidate evaluated, with the
model or classifier rows it made, so that a search can be resumed and ranked from rows alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.datasets import find_dataset_by_folder
from db.errors import UserError
from db.generators import epochs, record_checkpoint_file, record_run
from db.models import Classifier, GanArchitecture, Search, SearchCandidate
from db.names import stored_path
from db.session import insert_row, transaction


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
    candidate_id = record_search_candidate(
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
    classifier = None
    if weights is not None and accuracy is not None and architecture is not None:
        path, sha256 = weights
        classifier = {
            "dataset_fingerprint": data_fingerprint,
            "path": stored_path(path),
            "sha256": sha256,
            "architecture": architecture,
            "accuracy": accuracy,
            "dataset_id": find_dataset_by_folder(session, stored_path(data_path), data_fingerprint),
        }
    return record_classifier_search_candidate(
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
