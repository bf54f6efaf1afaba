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

What a job may not do (SECURITY.md, "Background jobs"):
- import from its folder: the child is an isolated Python (``-I``) that finds modules only in
  the folder this gen came from, the worker's own absolute PYTHONPATH entries and the
  interpreter's own libraries, never in the job's folder;
- run anywhere else: a job whose folder is gone fails with a sentence in its log;
- outlive its worker: the child leads a process group of its own, and holds the reading end of
  a pipe whose only writing end the worker holds. When the worker ends, however it ends (kill
  -9 included), the kernel closes that end, and a thread in the child (gen.job_process) then
  kills the child's whole group. The worker signals the whole group too, when it cancels,
  hands back or loses a job, and kills what is left of it when the job's command has ended;
- be taken from a live worker: see the leases in db.jobs.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db import jobs as job_rows
from db.jobs import CANCELLED, DONE, FAILED, QUEUED, JobInfo, Lease
from gen.checkpoint import checkpoints_in
from gen.errors import GenError
from gen.text import printable

# A job's Python: -I (isolated) puts neither the working folder (the job's, where anyone who
# submits may leave a click.py) nor the user's site-packages on sys.path, and ignores PYTHON*
# variables such as PYTHONPATH, whose empty or relative entries would name the working folder
# too. The modules the worker itself runs are then given explicitly (argv[1], absolute folders
# only): so a worker started from a source tree (a git worktree under test, PYTHONPATH=...) runs
# its jobs with that same gen, which "python -I -m gen.cli" would not (it finds only an installed
# gen). -u: unbuffered output, which -I's ignoring of PYTHONUNBUFFERED would otherwise lose, so
# that gen jobs logs -f follows the job as it runs. argv[2] is the pipe gen.job_process watches.
CHILD = (
    "import os, sys; sys.path[:0] = sys.argv.pop(1).split(os.pathsep); "
    "from gen.job_process import main; main()"
)
# What gen's command line offers, kept here as data so that this library imports no CLI
# (tests/test_commands_jobs.py checks both against gen's command tree): its commands, and those
# (a group's subcommand written as "classifiers train") that take --device.
COMMANDS = (
    "classifiers",
    "classify",
    "data",
    "db",
    "demo-data",
    "export",
    "jobs",
    "models",
    "report",
    "reproduce",
    "sample",
    "search",
    "searches",
    "serve",
    "train",
    "verify",
    "worker",
)
DEVICE_COMMANDS = (
    "classifiers train",
    "classify",
    "models retrain",
    "report",
    "reproduce",
    "sample",
    "search",
    "train",
    "verify",
    "worker",
)
# Commands a job may not run: they would run workers inside a worker or queue from one, or
# hold the worker forever (a web server).
REFUSED_COMMANDS = ("worker", "jobs", "serve")
# How long a cancelled command may take to save and exit before it is killed.
CANCEL_GRACE_S = 120.0


@dataclass(frozen=True)
class WorkerSettings:
    device: str | None = None  # cpu, cuda, cuda:N (CUDA_VISIBLE_DEVICES=N), mps, auto; None: the command's
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


def _takes_device(arguments: Sequence[str]) -> bool:
    """Whether the command the argv names (a group's subcommand too: classifiers train) takes
    --device."""
    return bool(arguments) and (arguments[0] in DEVICE_COMMANDS or " ".join(arguments[:2]) in DEVICE_COMMANDS)


def child_arguments(job: JobInfo, settings: WorkerSettings, cwd: Path) -> tuple[list[str], dict[str, str]]:
    """The argv after "gen" and the environment changes for running the job on this worker."""
    arguments = list(job.arguments)
    environment: dict[str, str] = {}
    if job.command == "train" and "--resume" not in arguments:
        out = option_value(arguments, "--out")
        # A run this job started before its worker died: continue it from its last checkpoint.
        if job.attempts > 1 and out and (cwd / out).is_dir() and checkpoints_in(cwd / out):
            arguments.append("--resume")
    if settings.device and _takes_device(arguments) and option_value(arguments, "--device") is None:
        device = settings.device
        if device.startswith("cuda:"):
            environment["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
            device = "cuda"
        arguments += ["--device", device]
    return arguments, environment


def child_module_path() -> list[str]:
    """Where a job's Python finds modules besides its own libraries: the folder this gen was
    imported from, then the worker's PYTHONPATH entries that are absolute (an empty or relative
    entry would name the job's folder)."""
    source = str(Path(__file__).resolve().parents[1])
    entries = [source, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return list(dict.fromkeys(entry for entry in entries if os.path.isabs(entry)))


def signal_group(child: subprocess.Popen, number: int) -> None:
    """Send a signal to the child's process group (the child and all it started), if it is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, number)


# How far a worker's start may seem to come after its claim (the boot time in /proc is whole
# seconds, and the clock may be stepped) before its pid counts as reused by a newer process.
PID_START_SLACK_S = 5.0


def _process_state(pid: int) -> tuple[str, float] | None:
    """(state, start as a Unix time) of a process, from Linux's /proc; None without it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        lines = Path("/proc/stat").read_text().splitlines()
        boot = next(float(line.split()[1]) for line in lines if line.startswith("btime "))
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def worker_alive(pid: int, claimed_at: datetime) -> bool:
    """Whether the worker that claimed a job at claimed_at, process pid on this machine, still
    runs: that pid exists, is not a zombie, and (where /proc tells) began before the claim, so
    that a pid the system gave to a newer process does not keep a dead worker's job."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    found = _process_state(pid)
    if found is None:
        return True
    state, started = found
    return state not in ("Z", "X") and started <= claimed_at.timestamp() + PID_START_SLACK_S


class _Heartbeat(threading.Thread):
    """Heartbeats the job while its command runs, independently of the command; stops the
    command's process group when cancelling is asked for (SIGINT, as Ctrl-C) or at once when the
    lease was lost (SIGKILL: the job may run elsewhere now; its last checkpoint stands)."""

    def __init__(self, engine: Engine, lease: Lease, child: subprocess.Popen, every_s: float):
        super().__init__(daemon=True)
        self.engine, self.lease, self.child, self.every_s = engine, lease, child, every_s
        self.stopped = threading.Event()
        self.cancelled = False
        self.lost = False
        self._signalled_at: float | None = None

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            try:
                held, cancel = job_rows.heartbeat(self.engine, self.lease)
            except Exception:  # a database hiccup: try again at the next beat
                continue
            if self.child.returncode is not None:  # ended: its process group is the worker's to clean
                continue
            if not held and not self.lost:
                self.lost = True
                signal_group(self.child, signal.SIGKILL)
            elif cancel and not self.cancelled:
                self.cancelled = True
                self._signalled_at = time.monotonic()
                signal_group(self.child, signal.SIGINT)
            elif self._signalled_at is not None and time.monotonic() - self._signalled_at > CANCEL_GRACE_S:
                signal_group(self.child, signal.SIGKILL)


def model_made(engine: Engine, job: JobInfo, cwd: Path) -> int | None:
    """The model a training job recorded, found by its run folder."""
    from db.generators import model_for_run_folder

    out = option_value(job.arguments, "--out")
    if job.command != "train" or not out:
        return None
    with Session(engine) as session:
        return model_for_run_folder(session, cwd / out)


def log_folder(log_dir: str) -> Path:
    """The worker's folder for the jobs' logs, made if missing; one sentence if it cannot be."""
    folder = Path(log_dir).resolve()
    if folder.exists() and not folder.is_dir():
        raise GenError(f"--log-dir {printable(log_dir)} is a file, not a folder for the jobs' logs.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GenError(f"--log-dir {printable(log_dir)} cannot be made: {error.strerror}.") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GenError(f"--log-dir {printable(log_dir)} is not writable by this worker.")
    return folder


def command_line(arguments: Sequence[str]) -> str:
    """A job's command as one printable line: quoted as a shell would need it, controls escaped."""
    return printable(f"gen {shlex.join(arguments)}")


def start_child(
    arguments: list[str], folder: Path, environment: dict[str, str], log: Any
) -> tuple[subprocess.Popen, int]:
    """Start a job's command (its argv after "gen") in folder, its output to log: an isolated
    Python (CHILD) that leads a process group of its own and watches a pipe. Returns the child
    and the pipe's writing end, which only the worker holds: once it is closed (by the worker,
    or by the kernel when the worker dies) the child's whole group ends."""
    path = os.pathsep.join(child_module_path())
    # PYTHONPATH for the job's own Python subprocesses that are not isolated: the same gen, and
    # no empty entry.
    env = {**os.environ, **environment, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    watched, held = os.pipe()  # both ends close-on-exec: only the child gets one, by pass_fds
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-u", "-c", CHILD, path, str(watched), *arguments],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(watched,),
        )
    except BaseException:
        os.close(held)
        raise
    finally:
        os.close(watched)
    return child, held


def _refuse(engine: Engine, lease: Lease, log_path: Path, log: Any, reason: str) -> str:
    log.write(f"{reason}\n")
    log.flush()
    job_rows.started(engine, lease, str(log_path))
    job_rows.finish(engine, lease, FAILED, None, None)
    return FAILED


def run_job(engine: Engine, database_url: str, job: JobInfo, worker: str, settings: WorkerSettings) -> str:
    """Run one claimed job to its end; returns the status recorded (or QUEUED when handed back)."""
    lease = Lease(job.id, worker, job.attempts)
    log_path = log_folder(settings.log_dir) / f"job-{job.id}.log"
    try:
        log = open(log_path, "a", encoding="utf-8")
    except OSError as error:  # the worker's fault, not the job's: hand it back, and stop
        job_rows.finish(engine, lease, QUEUED, None, None)
        raise GenError(
            f"cannot write job {job.id}'s log {printable(str(log_path))}: {error.strerror}; "
            "the job was handed back to the queue."
        ) from None
    with log:
        header = f"== attempt {job.attempts} on {printable(worker)}: "
        # Relative paths in the job name its folder: elsewhere it would read and write other files.
        folder = Path(job.cwd) if job.cwd else None
        gone = (
            f"the folder it was submitted from, {printable(str(folder))}, is gone; it is not run elsewhere."
        )
        if folder is None or not folder.is_dir():
            log.write(header + command_line(job.arguments) + "\n")
            reason = "no folder was recorded for it; it is not run elsewhere." if folder is None else gone
            return _refuse(engine, lease, log_path, log, reason)
        arguments, environment = child_arguments(job, settings, folder)
        log.write(header + command_line(arguments) + "\n")
        log.flush()
        try:
            child, held = start_child(
                arguments, folder, {**environment, "GEN_DATABASE_URL": database_url}, log
            )
        except OSError as error:
            if not folder.is_dir():  # removed since the look above
                return _refuse(engine, lease, log_path, log, gone)
            job_rows.finish(engine, lease, QUEUED, None, None)
            raise GenError(
                f"cannot start job {job.id}: {error.strerror}; the job was handed back to the queue."
            ) from None
    beat = _Heartbeat(engine, lease, child, settings.heartbeat_s)
    interrupted = False
    try:
        job_rows.started(engine, lease, str(log_path))
        beat.start()
        try:
            exit_code = child.wait()
        except KeyboardInterrupt:  # the worker itself was stopped: let the command save, hand it back
            interrupted = True
            signal_group(child, signal.SIGINT)
            exit_code = child.wait()
    finally:
        beat.stopped.set()
        if beat.is_alive():
            beat.join()
        # Whatever the command left running (or all of it, if this worker fails here), and then
        # the pipe: the job's processes end with its run.
        signal_group(child, signal.SIGKILL)
        os.close(held)
    if beat.lost:
        return QUEUED
    if beat.cancelled:
        status = CANCELLED
    elif interrupted:
        status = QUEUED
    else:
        status = DONE if exit_code == 0 else FAILED
    job_rows.finish(engine, lease, status, exit_code, model_made(engine, job, folder))
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
    log_folder(settings.log_dir)  # before any job is claimed
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
        job = job_rows.claim(engine, worker, host, os.getpid(), settings.stale_after_s, worker_alive)
        if job is None:
            if settings.once:
                return ran
            time.sleep(settings.poll_s)
            continue
        say(f"job {job.id}: {command_line(job.arguments)} (attempt {job.attempts})")
        status = run_job(engine, database_url, job, worker, settings)
        say(f"job {job.id}: {status}")
        ran += 1
        if settings.once:
            return ran


def check_job_command(arguments: Sequence[str], commands: Collection[str] = COMMANDS) -> None:
    """One sentence unless the argv (after "gen") is a command a job may run on the worker's
    database; ``commands``: gen's commands (gen jobs submit gives those of its click context)."""
    command = arguments[0] if arguments else ""
    if command not in commands or command in REFUSED_COMMANDS:
        runnable = ", ".join(name for name in sorted(commands) if name not in REFUSED_COMMANDS)
        raise GenError(f"a job runs a gen command ({runnable}), not {command!r}.")
    if "--db" in arguments or any(a.startswith("--db=") for a in arguments):
        raise GenError("a job runs on the worker's database; leave --db out of the command.")


def submit(
    engine: Engine, arguments: Sequence[str], cwd: str | Path, commands: Collection[str] = COMMANDS
) -> int:
    """Queue a gen command (its argv after "gen") to run in the folder cwd; returns the job's id.
    What `gen jobs submit` and the web application (gen serve) both call."""
    check_job_command(arguments, commands)
    with Session(engine) as session:
        return job_rows.submit(session, arguments, str(cwd))
