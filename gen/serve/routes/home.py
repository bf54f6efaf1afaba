"""The front page: what the database holds and what the queue is doing."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from db import jobs as job_rows
from db import overview
from gen.serve.context import engine_of, render

router = APIRouter()


@router.get("/", include_in_schema=False)
def home(request: Request) -> Response:
    with Session(engine_of(request)) as session:
        counts = overview.counts(session)
        active = job_rows.list_jobs(session, ("queued", "running"))
    return render(request, "home.html", counts=counts, jobs=active[:20])


@router.get("/api/summary", tags=["summary"])
def api_summary(request: Request) -> dict[str, int]:
    """How many models, images, data sets, classifiers, searches and waiting or running jobs."""
    with Session(engine_of(request)) as session:
        return overview.counts(session)
