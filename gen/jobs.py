"""Background jobs: a worker takes queued gen commands from the project database and runs them.

Why the database and not a message broker: every gen user already has the database, and the
queue needs only what a table gives (an atomic claim, a heartbeat, a status); see db.jobs for
how the claim stays atomic on PostgreSQL (many machines) and SQLite (one machine).

A worker runs each job as a child process (this Python, ``gen.cli.main``), with the worker's
database in $GEN_DATABASE_URL and its --device, writing the child's output to a log file. A
thread heartbeats while the child runs; a job whose heartbeat goes stale (its worker died) is
re-queued by the next worker that looks, and a training job then continues from its last
checkpoint (--resume). Cancelling asks the worker, which sends the child SIGINT: gen train
saves a checkpoint and exits, as on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db import jobs as job_rows
from db.jobs import CANCELLED, DONE, FAILED, QUEUED, JobInfo
from gen.checkpoint import checkpoints_in

CHILD = "from gen.cli import main; main()"
# Commands a job may not run: they would run workers inside a worker or queue from one, or
# hold the worker forever (a web server).
REFUSED_COMMANDS = ("worker", "jobs", "serve")
# How long a cancelled command may take to save and exit before it is killed.
CANCEL_GRACE_S = 120.0


@dataclass(frozen=True)
class WorkerSettings:
    device: str | None = None  # cpu, cuda, cuda:N (CUDA_VISIBLE_DEVICES=N), auto; None: the command's
    poll_s: float = 5.0  # seconds between looks at an empty queue
    heartbeat_s: float = 10.0
    stale_after_s: float = 120.0  # a running job not heartbeaten for this long is re-queued
    log_dir: str = "gen-jobs"
    once: bool = False  # run at most one job, then stop


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def option_value(arguments: Sequence[str], option: str) -> str | None:
    """The value of --option in an argv (as --option VALUE or --option=VALUE), if given."""
    for index, argument in enumerate(arguments):
        if argument == option and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith(option + "="):
            return argument[len(option) + 1 :]
    return None


def _accepts(command: str, parameter: str) -> bool:
    from gen.cli import cli

    found = cli.commands.get(command)
    return found is not None and any(p.name == parameter for p in found.params)


def child_arguments(job: JobInfo, settings: WorkerSettings, cwd: Path) -> tuple[list[str], dict[str, str]]:
    """The argv after "gen" and the environment changes for running the job on this worker."""
    arguments = list(job.arguments)
    environment: dict[str, str] = {}
    if job.command == "train" and "--resume" not in arguments:
        out = option_value(arguments, "--out")
        # A run this job started before its worker died: continue it from its last checkpoint.
        if job.attempts > 1 and out and (cwd / out).is_dir() and checkpoints_in(cwd / out):
            arguments.append("--resume")
    if settings.device and _accepts(job.command, "device") and option_value(arguments, "--device") is None:
        device = settings.device
        if device.startswith("cuda:"):
            environment["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
            device = "cuda"
        arguments += ["--device", device]
    return arguments, environment


class _Heartbeat(threading.Thread):
    """Heartbeats the job while its command runs; stops the command when cancelling is asked
    for (SIGINT) or when the job was taken from this worker (SIGTERM)."""

    def __init__(self, engine: Engine, job_id: int, worker: str, child: subprocess.Popen, every_s: float):
        super().__init__(daemon=True)
        self.engine, self.job_id, self.worker, self.child, self.every_s = (
            engine,
            job_id,
            worker,
            child,
            every_s,
        )
        self.stopped = threading.Event()
        self.cancelled = False
        self.lost = False
        self._signalled_at: float | None = None

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            try:
                held, cancel = job_rows.heartbeat(self.engine, self.job_id, self.worker)
            except Exception:  # a database hiccup: try again at the next beat
                continue
            if not held and not self.lost:
                self.lost = True
                self.child.terminate()
            elif cancel and not self.cancelled:
                self.cancelled = True
                self._signalled_at = time.monotonic()
                self.child.send_signal(signal.SIGINT)
            elif self._signalled_at is not None and time.monotonic() - self._signalled_at > CANCEL_GRACE_S:
                self.child.kill()


def model_made(engine: Engine, job: JobInfo, cwd: Path) -> int | None:
    """The model a training job recorded, found by its run folder."""
    from db.recording import model_for_run_folder

    out = option_value(job.arguments, "--out")
    if job.command != "train" or not out:
        return None
    with Session(engine) as session:
        return model_for_run_folder(session, cwd / out)


def run_job(engine: Engine, database_url: str, job: JobInfo, worker: str, settings: WorkerSettings) -> str:
    """Run one claimed job to its end; returns the status recorded (or QUEUED when handed back)."""
    cwd = Path(job.cwd) if job.cwd and Path(job.cwd).is_dir() else Path.cwd()
    log_dir = Path(settings.log_dir).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"job-{job.id}.log"
    arguments, environment = child_arguments(job, settings, cwd)
    # The child imports the very gen this worker runs, whatever folder the job runs in.
    source = str(Path(__file__).resolve().parents[1])
    python_path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        **environment,
        "GEN_DATABASE_URL": database_url,
        "PYTHONPATH": python_path,
        "PYTHONUNBUFFERED": "1",
    }
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"== attempt {job.attempts} on {worker}: gen {' '.join(arguments)}\n")
        log.flush()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, *arguments], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    job_rows.started(engine, job.id, worker, child.pid, str(log_path))
    beat = _Heartbeat(engine, job.id, worker, child, settings.heartbeat_s)
    beat.start()
    interrupted = False
    try:
        exit_code = child.wait()
    except KeyboardInterrupt:  # the worker itself was stopped: let the command save, hand it back
        interrupted = True
        child.send_signal(signal.SIGINT)
        exit_code = child.wait()
    finally:
        beat.stopped.set()
        beat.join()
    if beat.lost:
        return QUEUED
    if beat.cancelled:
        status = CANCELLED
    elif interrupted:
        status = QUEUED
    else:
        status = DONE if exit_code == 0 else FAILED
    job_rows.finish(engine, job.id, worker, status, exit_code, model_made(engine, job, cwd))
    if interrupted:
        raise KeyboardInterrupt
    return status


def run_worker(
    engine: Engine,
    database_url: str,
    settings: WorkerSettings,
    name: str | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Take and run jobs until stopped (or one job with settings.once); returns the jobs run."""
    worker, host = name or default_worker_name(), socket.gethostname()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if main_thread:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill: hand the job back, as Ctrl-C
    try:
        return _take_jobs(engine, database_url, settings, worker, host, say)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _take_jobs(
    engine: Engine, database_url: str, settings: WorkerSettings, worker: str, host: str, say: Callable
) -> int:
    ran = 0
    while True:
        job = job_rows.claim(engine, worker, host, settings.stale_after_s)
        if job is None:
            if settings.once:
                return ran
            time.sleep(settings.poll_s)
            continue
        say(f"job {job.id}: gen {' '.join(job.arguments)} (attempt {job.attempts})")
        status = run_job(engine, database_url, job, worker, settings)
        say(f"job {job.id}: {status}")
        ran += 1
        if settings.once:
            return ran


def check_job_command(arguments: Sequence[str]) -> None:
    """One sentence unless the argv (after "gen") is a command a job may run on the worker's database."""
    from gen.cli import cli
    from gen.errors import GenError

    command = arguments[0] if arguments else ""
    if command not in cli.commands or command in REFUSED_COMMANDS:
        runnable = ", ".join(name for name in sorted(cli.commands) if name not in REFUSED_COMMANDS)
        raise GenError(f"a job runs a gen command ({runnable}), not {command!r}.")
    if "--db" in arguments or any(a.startswith("--db=") for a in arguments):
        raise GenError("a job runs on the worker's database; leave --db out of the command.")


def submit(engine: Engine, arguments: Sequence[str], cwd: str | Path) -> int:
    """Queue a gen command (its argv after "gen") to run in the folder cwd; returns the job's id.
    What `gen jobs submit` and the web application (gen serve) both call."""
    check_job_command(arguments)
    with Session(engine) as session:
        return job_rows.submit(session, arguments, str(cwd))
