"""The job queue's rows: submitting, claiming, heartbeats, cancelling, finishing (gen jobs,
gen worker).

A job is claimed in one short transaction that first re-queues jobs whose worker stopped
heartbeating, then takes the oldest queued job. The claim must be atomic across processes and
machines: PostgreSQL locks the chosen row with SELECT ... FOR UPDATE SKIP LOCKED, so concurrent
workers each take a different job without waiting on one another; SQLite (one machine) takes
its database-wide write lock up front with BEGIN IMMEDIATE, so two claims never interleave.

Leases: a claim is a lease on the job, named by (job, worker, attempt); the attempt counts the
claims, so each lease is distinct even between two workers given the same --name. Every later
write by a worker (its pid and log, heartbeats, the end) names its whole lease, so one that lost
the job to a re-queue (paused past the stale limit, or cut off from the database) can no longer
touch it: its heartbeat reports the loss and its worker stops its command.

A stale heartbeat alone does not end a lease when the owning worker runs on the claiming
worker's own machine: the claim asks owner_alive(pid, claimed_at) about its process (the row
keeps the worker's host and pid), and a job whose worker still runs there is left to it, however
late its heartbeats (a stalled database, a stopped process). Only a worker that has ended, or one
on another machine that stopped heartbeating, loses its jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from db.errors import UserError
from db.models import JOB_STATUSES, Job, utc_now
from db.session import insert_row, transaction

QUEUED, RUNNING, DONE, FAILED, CANCELLED = JOB_STATUSES
FINISHED = (DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class JobInfo:
    id: int
    command: str
    arguments: list[str]  # the argv after "gen", command first
    cwd: str | None
    status: str
    cancel_requested: bool
    worker: str | None
    host: str | None
    pid: int | None
    heartbeat_at: datetime | None
    log_path: str | None
    attempts: int
    exit_code: int | None
    gan_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a job, from its claim until it records the end or loses it."""

    job_id: int
    worker: str
    attempt: int  # the job's attempts when it was claimed: distinct for every claim


def _info(job: Job) -> JobInfo:
    return JobInfo(**{name: getattr(job, name) for name in JobInfo.__dataclass_fields__})


def submit(session: Session, arguments: Sequence[str], cwd: str | None) -> int:
    """Queue a gen command (its argv after "gen"); returns the job's id."""
    if not arguments:
        raise UserError("name the gen command to run after --, e.g. gen jobs submit -- train --data ...")
    with transaction(session):
        job = Job(
            command=arguments[0], arguments=list(arguments), cwd=cwd, status=QUEUED, cancel_requested=False
        )
        job_id = insert_row(session, job)
    return job_id


def get_job(session: Session, job_id: int) -> JobInfo:
    job = session.get(Job, job_id)
    if job is None:
        ids = list(session.scalars(select(Job.id).order_by(Job.id.desc()).limit(10)))
        known = f"the newest jobs: {', '.join(map(str, ids))}" if ids else "no job was submitted yet"
        raise UserError(f"no job {job_id}; {known}.")
    session.refresh(job)
    return _info(job)


def list_jobs(session: Session, statuses: Sequence[str] = ()) -> list[JobInfo]:
    query = select(Job).order_by(Job.id)
    if statuses:
        query = query.where(Job.status.in_(statuses))
    return [_info(job) for job in session.scalars(query)]


def request_cancel(session: Session, job_id: int) -> str:
    """Cancel a job: a queued one at once, a running one by asking its worker (which stops the
    command as Ctrl-C would). Returns the job's status afterwards."""
    job = get_job(session, job_id)
    if job.status in FINISHED:
        raise UserError(f"job {job_id} has already finished ({job.status}).")
    with transaction(session):
        if job.status == QUEUED:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == QUEUED)
                .values(status=CANCELLED, cancel_requested=True, finished_at=utc_now())
            )
        else:
            session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    return get_job(session, job_id).status


OwnerAlive = Callable[[int, datetime], bool]  # (pid, claimed at) -> that worker still runs here


def _requeue_stale(
    connection: Connection,
    stale_after_s: float,
    now: datetime,
    host: str,
    owner_alive: OwnerAlive,
    lock: bool,
) -> None:
    """Jobs whose worker stopped heartbeating and is not known to run on this machine: queued
    again, or cancelled if that was asked."""
    stale = select(Job.id, Job.host, Job.pid, Job.started_at, Job.attempts, Job.cancel_requested).where(
        Job.status == RUNNING, Job.heartbeat_at < now - timedelta(seconds=stale_after_s)
    )
    if lock:
        stale = stale.with_for_update(skip_locked=True)
    for job in connection.execute(stale).all():
        if job.host == host and job.pid is not None and owner_alive(job.pid, job.started_at):
            continue  # a late heartbeat from a worker that runs here: still its job
        ended = {"status": CANCELLED, "finished_at": now} if job.cancel_requested else {"status": QUEUED}
        connection.execute(
            update(Job)
            .where(Job.id == job.id, Job.attempts == job.attempts, Job.status == RUNNING)
            .values(worker=None, pid=None, **ended)
        )


def claim(
    engine: Engine,
    worker: str,
    host: str,
    pid: int,
    stale_after_s: float,
    owner_alive: OwnerAlive = lambda pid, claimed_at: False,
) -> JobInfo | None:
    """Atomically take the oldest queued job for the worker, process pid on host (re-queueing
    stale ones first); its lease is Lease(job.id, worker, job.attempts)."""
    now = utc_now()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            # pysqlite would begin a deferred transaction only at the first write; take the
            # write lock before reading instead, so two workers never pick the same row.
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            transaction = None
        else:
            transaction = connection.begin()
        try:
            _requeue_stale(connection, stale_after_s, now, host, owner_alive, lock=not sqlite)
            oldest = select(Job.id).where(Job.status == QUEUED).order_by(Job.id).limit(1)
            if not sqlite:
                oldest = oldest.with_for_update(skip_locked=True)
            job_id = connection.scalar(oldest)
            if job_id is not None:
                connection.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(
                        status=RUNNING,
                        worker=worker,
                        host=host,
                        pid=pid,
                        heartbeat_at=now,
                        started_at=now,
                        finished_at=None,
                        exit_code=None,
                        attempts=Job.attempts + 1,
                    )
                )
            if sqlite:
                connection.exec_driver_sql("COMMIT")
            else:
                transaction.commit()
        except BaseException:
            if sqlite:
                connection.exec_driver_sql("ROLLBACK")
            else:
                transaction.rollback()
            raise
    if job_id is None:
        return None
    with Session(engine) as session:
        return get_job(session, job_id)


def _held(lease: Lease) -> ColumnElement[bool]:
    return (
        (Job.id == lease.job_id)
        & (Job.worker == lease.worker)
        & (Job.attempts == lease.attempt)
        & (Job.status == RUNNING)
    )


def started(engine: Engine, lease: Lease, log_path: str) -> None:
    with engine.begin() as connection:
        connection.execute(update(Job).where(_held(lease)).values(log_path=log_path))


def heartbeat(engine: Engine, lease: Lease) -> tuple[bool, bool]:
    """(the lease still holds, cancelling the job was asked for)."""
    with engine.begin() as connection:
        held = connection.execute(update(Job).where(_held(lease)).values(heartbeat_at=utc_now()))
        cancel = connection.scalar(select(Job.cancel_requested).where(Job.id == lease.job_id))
    return held.rowcount == 1, bool(cancel)


def finish(engine: Engine, lease: Lease, status: str, exit_code: int | None, model_id: int | None) -> bool:
    """Record how the job ended; False when the lease was lost (nothing written)."""
    values: dict[str, Any] = {"status": status, "exit_code": exit_code, "finished_at": utc_now()}
    if model_id is not None:
        values["gan_id"] = model_id
    if status == QUEUED:  # handed back (the worker was stopped): another worker continues it
        values.update(worker=None, pid=None, finished_at=None)
    with engine.begin() as connection:
        return connection.execute(update(Job).where(_held(lease)).values(**values)).rowcount == 1
