"""Jobs: the queue, each job's status and live log, cancelling a queued or running job (as
gen jobs does: db.jobs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from db import jobs as job_rows
from gen.serve.context import engine_of, redirect, render

router = APIRouter()
LOG_CHUNK = 256 * 1024  # the most of a log one request returns


def _job(request: Request, job_id: int) -> job_rows.JobInfo:
    with Session(engine_of(request)) as session:
        return job_rows.get_job(session, job_id)


def read_log(job: job_rows.JobInfo, offset: int) -> tuple[str, int]:
    """(the log from offset, up to LOG_CHUNK bytes; the offset to ask for next)."""
    if not job.log_path or not Path(job.log_path).is_file():
        return "", offset
    with open(job.log_path, "rb") as log:
        log.seek(max(offset, 0))
        data = log.read(LOG_CHUNK)
    return data.decode("utf-8", errors="replace"), max(offset, 0) + len(data)


@router.get("/jobs", include_in_schema=False)
def jobs_page(request: Request) -> Response:
    with Session(engine_of(request)) as session:
        rows = job_rows.list_jobs(session)
    return render(request, "jobs.html", jobs=list(reversed(rows)))


@router.get("/jobs/{job_id}", include_in_schema=False)
def job_page(request: Request, job_id: int) -> Response:
    job = _job(request, job_id)
    log, offset = read_log(job, 0)
    return render(
        request, "job.html", job=job, log=log, offset=offset, finished=job.status in job_rows.FINISHED
    )


@router.post("/jobs/{job_id}/cancel", include_in_schema=False)
def cancel(request: Request, job_id: int) -> Response:
    with Session(engine_of(request)) as session:
        job_rows.request_cancel(session, job_id)
    return redirect(f"/jobs/{job_id}")


@router.get("/api/jobs", tags=["jobs"])
def api_jobs(request: Request, status: str = "") -> list[dict]:
    """Every job (or those in one status), oldest first."""
    with Session(engine_of(request)) as session:
        return [dataclasses.asdict(job) for job in job_rows.list_jobs(session, (status,) if status else ())]


@router.get("/api/jobs/{job_id}", tags=["jobs"])
def api_job(request: Request, job_id: int) -> dict:
    return dataclasses.asdict(_job(request, job_id))


@router.get("/api/jobs/{job_id}/log", tags=["jobs"])
def api_log(request: Request, job_id: int, offset: int = 0) -> dict:
    """The job's output from byte offset on; poll with the returned offset for more."""
    job = _job(request, job_id)
    text, next_offset = read_log(job, offset)
    return {
        "status": job.status,
        "text": text,
        "offset": next_offset,
        "finished": job.status in job_rows.FINISHED,
    }
