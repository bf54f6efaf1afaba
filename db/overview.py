"""What the database holds, counted: the front page of gen serve."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.models import Classifier, Dataset, GanArchitecture, Image, Job, Search
from db.session import count_rows


def counts(session: Session) -> dict[str, int]:
    """Rows on the front page: models, images, data sets, classifiers, searches, queued and
    running jobs."""
    return {
        "models": count_rows(session, GanArchitecture),
        "images": count_rows(session, Image),
        "data sets": count_rows(session, Dataset),
        "classifiers": count_rows(session, Classifier),
        "searches": count_rows(session, Search),
        "queued jobs": count_rows(session, Job, Job.status == "queued"),
        "running jobs": count_rows(session, Job, Job.status == "running"),
    }
