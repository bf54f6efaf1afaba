"""The job queue end to end: gen jobs submit, gen worker (as real processes), the claim on
SQLite and PostgreSQL, a worker killed mid-job, cancel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from db import jobs as job_rows
from db.jobs import JobInfo
from db.models import GanArchitecture
from db.recording import model_for_run_folder
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


def submit(url: str, command: str) -> int:
    result = CliRunner().invoke(cli, ["jobs", "submit", "--db", url, "--", *command.split()])
    assert result.exit_code == 0, result.output
    return int(result.stdout.split()[1])


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


def start_worker(url: str, folder: Path, name: str, *options: str) -> subprocess.Popen:
    """A worker process in a process group of its own (so that it can be killed with its job)."""
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
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its training, as a machine dying would
    first.communicate(timeout=60)
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
