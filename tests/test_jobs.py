"""The job queue end to end: gen jobs submit, gen worker (as real processes), the claim on
SQLite and PostgreSQL, a worker killed mid-job, cancel; and what a job may not do: import from
its folder, run elsewhere when its folder is gone, outlive its worker, be taken from a live
worker, or print raw control characters."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import update
from sqlalchemy.orm import Session

from db import jobs as job_rows
from db.generators import model_for_run_folder
from db.jobs import JobInfo
from db.models import GanArchitecture, Job, utc_now
from db.session import make_engine
from gen.cli import cli
from gen.phantoms import write_phantoms

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[1]
GEN = [sys.executable, "-c", "from gen.cli import main; main()"]
TRAIN = "--preset tiny --batch-size 4 --checkpoint-every 1 --device cpu --quiet"
WAIT_S = 600  # a limit that only a broken queue reaches, not a speed expectation


def gen(url: str, *arguments: str) -> Result:
    result = CliRunner().invoke(cli, [*arguments, "--db", url])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def invoke(url: str, *arguments: str) -> Result:
    """A gen command that may fail: its exit code and output, never an uncaught exception."""
    result = CliRunner().invoke(cli, [*arguments, "--db", url])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def submit(url: str, command: str | list[str]) -> int:
    arguments = command.split() if isinstance(command, str) else command
    result = CliRunner().invoke(cli, ["jobs", "submit", "--db", url, "--", *arguments])
    assert result.exit_code == 0, result.output
    return int(result.stdout.split()[1])


def change_job(url: str, job_id: int, **values: object) -> None:
    """Write a job's row directly, as another machine or a broken worker would have left it."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(update(Job).where(Job.id == job_id).values(**values))
    finally:
        engine.dispose()


def job(url: str, job_id: int) -> JobInfo:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return job_rows.get_job(session, job_id)
    finally:
        engine.dispose()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def child_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def running_descendants(pid: int) -> set[int]:
    """The processes below pid that still run (zombies count as ended), read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it ended while we looked
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def still_running(pids: set[int]) -> set[int]:
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    return {pid for pid in pids if running(pid)}


def start_worker(url: str, folder: Path, name: str, *options: str) -> subprocess.Popen:
    """A worker process in a session of its own (so that the signals sent to it reach it alone)."""
    return subprocess.Popen(
        [*GEN, "worker", "--name", name, "--db", url, "--log-dir", str(folder / "logs"), *options],
        cwd=folder,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs") / "phantoms"
    write_phantoms(root, per_class=4)
    return root


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Jobs are submitted from tmp_path, so their relative paths land there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield tmp_path


def test_submit_and_worker_once_train_to_done(phantoms: Path, in_tmp: Path) -> None:
    url = f"sqlite:///{in_tmp / 'gen.db'}"
    job_id = submit(url, f"train --data {phantoms} --out run --iters 2 {TRAIN}")
    assert "queued" in gen(url, "jobs", "list").stdout
    worked = gen(url, "worker", "--once", "--heartbeat", "1", "--stale-after", "30", "--log-dir", "logs")
    assert worked.stdout.splitlines()[-1] == "worker ran 1 job"

    done = job(url, job_id)
    assert (done.status, done.exit_code, done.attempts) == ("done", 0, 1)
    engine = make_engine(url)
    with Session(engine) as session:
        assert done.gan_id == model_for_run_folder(session, in_tmp / "run") is not None
    engine.dispose()
    log = gen(url, "jobs", "logs", str(job_id)).stdout
    assert f"trained model {done.gan_id} to iteration 2" in log
    assert Path(done.log_path) == in_tmp / "logs" / f"job-{job_id}.log"
    assert f"model       {done.gan_id}" in gen(url, "jobs", "show", str(job_id)).stdout
    # The training folder registered itself as a data set, with the model on it.
    assert gen(url, "data", "list").stdout.splitlines()[1].split()[1:6] == ["phantoms", "4", "16", "1", "0"]

    # A name works wherever an id does; retrain continues the run, or starts a linked new model.
    gen(url, "models", "rename", str(done.gan_id), "pbc-sagan")
    more = gen(url, "models", "retrain", "pbc-sagan", "--iters", "3", "--device", "cpu", "-q").stdout
    assert f"trained model {done.gan_id} to iteration 3" in more
    again = gen(
        url, "models", "retrain", "pbc-sagan", "--iters", "1", "--from-scratch", "--device", "cpu", "-q"
    )
    new_id = done.gan_id + 1
    assert again.stdout.splitlines()[-1] == f"model {new_id} retrains model {done.gan_id} from scratch"
    assert (in_tmp / f"run-retrain-{done.gan_id}" / "checkpoint-0000001.pt").is_file()
    engine = make_engine(url)
    with Session(engine) as session:
        assert session.get(GanArchitecture, new_id).retrained_from == done.gan_id
    engine.dispose()
    assert gen(url, "data", "list").stdout.splitlines()[1].split()[4] == "2"  # both models on it


def test_two_workers_share_three_jobs_without_running_one_twice(database_url: str, in_tmp: Path) -> None:
    job_ids = [submit(database_url, f"demo-data --out made-{i} --per-class 2") for i in range(3)]
    workers = [
        start_worker(database_url, in_tmp, f"w{i}", "--poll", "0.2", "--heartbeat", "1") for i in range(2)
    ]
    try:
        wait_for(lambda: all(job(database_url, i).status == "done" for i in job_ids), "three jobs done")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=60)[0] for worker in workers]
    taken = [
        {int(line.split()[1].rstrip(":")) for line in output.splitlines() if line.endswith("(attempt 1)")}
        for output in outputs
    ]
    assert taken[0].isdisjoint(taken[1]) and taken[0] | taken[1] == set(job_ids), outputs
    for job_id in job_ids:
        info = job(database_url, job_id)
        assert info.attempts == 1 and info.exit_code == 0
        assert Path(info.log_path).read_text().count("== attempt") == 1
    assert all((in_tmp / f"made-{i}").is_dir() for i in range(3))


def test_a_job_whose_worker_was_killed_completes_on_another_from_its_checkpoint(
    database_url: str, phantoms: Path, in_tmp: Path
) -> None:
    iterations = 8
    job_id = submit(database_url, f"train --data {phantoms} --out run --iters {iterations} {TRAIN}")
    first = start_worker(database_url, in_tmp, "doomed", "--once", "--heartbeat", "0.5", "--stale-after", "3")
    wait_for(lambda: (in_tmp / "run" / "checkpoint-0000001.pt").is_file(), "the first checkpoint")
    training = running_descendants(first.pid)
    assert training, "the worker has no child process"
    os.kill(first.pid, signal.SIGKILL)  # the worker alone: its training must not outlive it
    first.communicate(timeout=60)
    try:
        deadline = time.monotonic() + 30  # the child stops at once; only a missing watchdog waits
        while still_running(training) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not still_running(training), "the killed worker's training went on, orphaned"
    finally:
        for pid in still_running(training):
            os.kill(pid, signal.SIGKILL)
    killed = job(database_url, job_id)
    assert (killed.status, killed.worker) == ("running", "doomed")
    if (in_tmp / "run" / f"checkpoint-{iterations:07d}.pt").is_file():
        pytest.fail("training finished before its worker was killed; give it more iterations")

    time.sleep(3.5)  # until its heartbeat is stale
    gen(database_url, "worker", "--once", "--name", "rescuer", "--heartbeat", "0.5", "--stale-after", "3")
    done = job(database_url, job_id)
    assert (done.status, done.worker, done.attempts, done.exit_code) == ("done", "rescuer", 2, 0)
    log = Path(done.log_path).read_text()
    assert "== attempt 2 on rescuer: gen train" in log and "--resume" in log.split("== attempt 2")[1]
    assert f"trained model {done.gan_id} to iteration {iterations}" in log
    models = gen(database_url, "models", "list").stdout.splitlines()
    assert len(models) == 2 and models[1].split()[:3] == [str(done.gan_id), "tiny", str(iterations)]


def test_cancel(phantoms: Path, in_tmp: Path) -> None:
    url = f"sqlite:///{in_tmp / 'gen.db'}"
    running = submit(url, f"train --data {phantoms} --out run --iters 500 {TRAIN}")
    waiting = submit(url, "models list")
    assert gen(url, "jobs", "cancel", str(waiting)).stdout.strip() == f"job {waiting} cancelled"

    worker = start_worker(url, in_tmp, "w", "--once", "--heartbeat", "0.5")
    wait_for(lambda: (in_tmp / "run" / "checkpoint-0000001.pt").is_file(), "the first checkpoint")
    assert "is stopping" in gen(url, "jobs", "cancel", str(running)).stdout
    output = worker.communicate(timeout=WAIT_S)[0]
    assert worker.returncode == 0, output

    stopped = job(url, running)
    assert (stopped.status, stopped.exit_code) == ("cancelled", 130)
    log = Path(stopped.log_path).read_text()
    assert "interrupted at iteration" in log and "continue with --resume" in log
    never = job(url, waiting)
    assert (never.status, never.attempts, never.started_at) == ("cancelled", 0, None)
    assert (
        "has already finished (cancelled)"
        in CliRunner().invoke(cli, ["jobs", "cancel", str(running), "--db", url]).output
    )


def test_a_job_imports_nothing_from_the_folder_it_was_submitted_from(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{in_tmp / 'gen.db'}"
    # Modules a job's folder could plant: one the command imports, and gen itself.
    (in_tmp / "click.py").write_text("open('imported-click', 'w').close()\n")
    (in_tmp / "gen").mkdir()
    (in_tmp / "gen" / "__init__.py").write_text("open('imported-gen', 'w').close()\n")
    # A worker's PYTHONPATH with an empty entry (a trailing ':') names the working folder too.
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", "") + os.pathsep + "." + os.pathsep)
    job_id = submit(url, "models list")
    gen(url, "worker", "--once", "--log-dir", "logs")
    done = job(url, job_id)
    assert (done.status, done.exit_code) == ("done", 0), Path(done.log_path).read_text()
    assert not (in_tmp / "imported-click").exists() and not (in_tmp / "imported-gen").exists()


def test_a_job_whose_folder_is_gone_fails_and_runs_nowhere_else(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{in_tmp / 'gen.db'}"
    folder = in_tmp / "submitted"
    folder.mkdir()
    monkeypatch.chdir(folder)
    removed = submit(url, "demo-data --out made --per-class 2")
    replaced = submit(url, "demo-data --out made --per-class 2")
    monkeypatch.chdir(in_tmp)
    shutil.rmtree(folder)
    engine = make_engine(url)
    with Session(engine) as session:  # the Python API, without a folder
        unplaced = job_rows.submit(session, ["demo-data", "--out", "made", "--per-class", "2"], None)
    engine.dispose()

    gen(url, "worker", "--once", "--log-dir", "logs")
    folder.write_text("a file where the folder was")
    gen(url, "worker", "--once", "--log-dir", "logs")
    worked = gen(url, "worker", "--once", "--log-dir", "logs")
    assert worked.stdout.splitlines()[-2] == f"job {unplaced}: failed"
    for job_id in (removed, replaced, unplaced):
        refused = job(url, job_id)
        assert (refused.status, refused.exit_code, refused.attempts) == ("failed", None, 1)
        log = gen(url, "jobs", "logs", str(job_id)).stdout
        assert "it is not run elsewhere" in log.splitlines()[-1]
    assert str(folder) in gen(url, "jobs", "logs", str(removed)).stdout
    assert not (in_tmp / "made").exists()


def test_a_stale_heartbeat_does_not_take_a_job_from_its_live_worker(
    database_url: str, phantoms: Path, in_tmp: Path
) -> None:
    job_id = submit(database_url, f"train --data {phantoms} --out run --iters 100000 {TRAIN}")
    first = start_worker(database_url, in_tmp, "slow", "--once", "--heartbeat", "300", "--stale-after", "600")
    try:
        wait_for(lambda: (in_tmp / "run" / "checkpoint-0000001.pt").is_file(), "the first checkpoint")
        training = running_descendants(first.pid)
        # Its heartbeat is an hour old (a stalled database, a paused thread), but it still runs here.
        change_job(database_url, job_id, heartbeat_at=utc_now() - timedelta(hours=1))
        second = gen(
            database_url, "worker", "--once", "--name", "eager", "--heartbeat", "0.5", "--stale-after", "1"
        )
        assert second.stdout.splitlines()[-1] == "worker ran 0 jobs"
        kept = job(database_url, job_id)
        assert (kept.status, kept.worker, kept.attempts, kept.pid) == ("running", "slow", 1, first.pid)
        assert still_running(training) == training
    finally:
        first.send_signal(signal.SIGTERM)  # hand the job back: the training saves and stops
        output = first.communicate(timeout=WAIT_S)[0]
    assert first.returncode == 130, output
    assert job(database_url, job_id).status == "queued"


def test_a_stale_job_is_taken_only_from_a_dead_or_distant_worker(database_url: str) -> None:
    """The lease protocol on the rows alone: which stale jobs a claim re-queues, and a worker that
    lost its lease (even to a worker of the same name) can no longer write to the job."""
    from db import open_database
    from gen.jobs import worker_alive

    engine = open_database(database_url)
    try:
        with Session(engine) as session:
            job_id = job_rows.submit(session, ["models", "list"], "/")
        here, me = socket.gethostname(), os.getpid()
        ended = subprocess.Popen(["true"])
        ended.wait()

        def claim_stale(host: str, pid: int) -> JobInfo | None:
            with engine.begin() as connection:
                connection.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(host=host, pid=pid, heartbeat_at=utc_now() - timedelta(hours=1))
                )
            return job_rows.claim(engine, "w", here, me, stale_after_s=60, owner_alive=worker_alive)

        first = job_rows.claim(engine, "w", here, me, stale_after_s=60, owner_alive=worker_alive)
        lease = job_rows.Lease(job_id, "w", first.attempts)
        assert claim_stale(here, me) is None  # its worker (this process) is alive here
        assert job_rows.heartbeat(engine, lease) == (True, False)
        taken = claim_stale("another-machine", me)  # a worker elsewhere stopped heartbeating
        assert (taken.id, taken.attempts, taken.worker, taken.pid) == (job_id, 2, "w", me)
        assert job_rows.heartbeat(engine, lease) == (False, False)
        assert not job_rows.finish(engine, lease, "failed", 1, None)
        again = claim_stale(here, ended.pid)  # a worker here that has ended
        assert again.attempts == 3
        assert not job_rows.finish(engine, job_rows.Lease(job_id, "w", 2), "done", 0, None)
        assert job_rows.finish(engine, job_rows.Lease(job_id, "w", 3), "done", 0, None)
        with Session(engine) as session:
            assert job_rows.get_job(session, job_id).status == "done"
    finally:
        engine.dispose()


def test_control_characters_in_what_jobs_print_are_escaped(in_tmp: Path) -> None:
    url = f"sqlite:///{in_tmp / 'gen.db'}"
    hostile = "\x1b]0;owned\x07\x1b[2J\u202e\x9b31m"
    escaped = "\\x1b]0;owned\\x07\\x1b[2J\\u202e\\x9b31m"
    queued = CliRunner().invoke(cli, ["jobs", "submit", "--db", url, "--", "models", "show", hostile])
    job_id = int(queued.stdout.split()[1])
    worked = invoke(url, "worker", "--once", "--name", f"w{hostile}", "--log-dir", "logs")
    log_path = Path(job(url, job_id).log_path)
    with open(log_path, "a") as log:
        log.write(f"output naming {hostile}\r\n")
    change_job(url, job_id, cwd=f"/tmp/{hostile}", host=f"h{hostile}")
    printed = [
        queued,
        worked,
        invoke(url, "jobs", "list"),
        invoke(url, "jobs", "show", str(job_id)),
        invoke(url, "jobs", "logs", str(job_id)),
    ]
    for result in printed:
        assert escaped in result.output, result.output
        assert not any(c in result.output for c in "\x1b\x07\x9b\u202e\r"), result.output
    assert f"on w{escaped}" in log_path.read_text().splitlines()[0]  # the log's own header line
    change_job(url, job_id, log_path=str(in_tmp / f"gone{hostile}.log"))
    missing = invoke(url, "jobs", "logs", str(job_id))
    assert missing.exit_code == 1 and escaped in missing.output and "\x1b" not in missing.output


def test_jobs_logs_tells_a_missing_log_here_from_a_log_on_another_machine(in_tmp: Path) -> None:
    url = f"sqlite:///{in_tmp / 'gen.db'}"
    job_id = submit(url, "models list")
    gone = in_tmp / "logs" / "job-1.log"
    change_job(url, job_id, status="done", host=socket.gethostname(), log_path=str(gone))
    here = invoke(url, "jobs", "logs", str(job_id))
    assert here.exit_code == 1 and "not on this machine" not in here.output
    assert here.output == f"Error: job {job_id}'s log {gone} is missing; it was written on this machine.\n"

    change_job(url, job_id, host="gpu-7")
    elsewhere = invoke(url, "jobs", "logs", str(job_id))
    assert elsewhere.output == f"Error: job {job_id}'s log {gone} is on gpu-7, not on this machine.\n"

    gone.mkdir(parents=True)  # something that is not a readable file: one sentence too
    unreadable = invoke(url, "jobs", "logs", str(job_id))
    assert unreadable.exit_code == 1 and unreadable.output.startswith(
        f"Error: cannot read job {job_id}'s log"
    )
    assert len(unreadable.output.splitlines()) == 1


def test_worker_log_dir_that_is_not_a_folder_is_one_sentence_before_a_job_is_claimed(in_tmp: Path) -> None:
    url = f"sqlite:///{in_tmp / 'gen.db'}"
    job_id = submit(url, "models list")
    (in_tmp / "a-file").write_text("not a folder")
    for log_dir in ("a-file", "a-file/logs"):
        refused = invoke(url, "worker", "--once", "--log-dir", log_dir)
        assert refused.exit_code == 1 and len(refused.output.splitlines()) == 1, refused.output
        assert refused.output.startswith(f"Error: --log-dir {log_dir} ")
        waiting = job(url, job_id)
        assert (waiting.status, waiting.attempts, waiting.worker) == ("queued", 0, None)

    # A log that cannot be written once the job is claimed: the job goes back to the queue.
    (in_tmp / "logs" / f"job-{job_id}.log").mkdir(parents=True)
    refused = invoke(url, "worker", "--once", "--log-dir", "logs")
    assert refused.exit_code == 1 and len(refused.output.splitlines()) == 2, refused.output
    assert refused.output.splitlines()[1].startswith(f"Error: cannot write job {job_id}'s log ")
    handed_back = job(url, job_id)
    assert (handed_back.status, handed_back.worker) == ("queued", None)


def test_submit_refuses_what_a_job_cannot_run_before_a_database_is_made(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    for command, sentence in (
        ("serve --port 8001", "not 'serve'"),
        ("worker --once", "not 'worker'"),
        ("nonsense", "not 'nonsense'"),
        (f"models list --db {url}", "leave --db out"),
    ):
        result = CliRunner().invoke(cli, ["jobs", "submit", "--db", url, "--", *command.split()])
        assert result.exit_code == 1 and sentence in result.output, result.output
    assert not (tmp_path / "gen.db").exists()
