"""A load test of the job queue: N short jobs, K workers (gen worker processes) on one database.

    .venv/bin/python -m bench.bench_jobs [--jobs 50] [--workers 3] [--postgres | --url URL]

Each job is `gen models list` (no training), so the figure is the queue's own throughput:
claiming, starting a gen child process, logging, heartbeating, finishing. Reports jobs per
minute and checks that no job was lost (every one done) and none ran twice (each claimed once,
one attempt in its log). SQLite by default; --postgres starts a throwaway server as the tests
do. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db import jobs as job_rows
from db.session import mask_url, open_database

REPOSITORY = Path(__file__).resolve().parents[1]
GEN = [sys.executable, "-c", "from gen.cli import main; main()"]
JOB = ["models", "list"]
GIVE_UP_S = 3600


def load_test(url: str, jobs: int, workers: int, folder: Path) -> dict[str, Any]:
    engine = open_database(url)
    with Session(engine) as session:
        job_ids = [job_rows.submit(session, JOB, str(folder)) for _ in range(jobs)]
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [*GEN, "worker", "--db", url, "--name", f"bench-{i}", "--poll", "0.2", "--heartbeat", "2"]
            + ["--log-dir", str(folder / "logs")],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(workers)
    ]
    try:
        while True:
            with Session(engine) as session:
                rows = [row for row in job_rows.list_jobs(session) if row.id in set(job_ids)]
            if all(row.status in job_rows.FINISHED for row in rows):
                break
            if time.monotonic() - started > GIVE_UP_S:
                break
            time.sleep(0.2)
        seconds = time.monotonic() - started
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=120)[0] for process in processes]
    engine.dispose()
    claimed = [
        int(line.split()[1].rstrip(":"))
        for output in outputs
        for line in output.splitlines()
        if line.startswith("job ") and "(attempt" in line
    ]
    twice = [row.id for row in rows if row.attempts != 1 or claimed.count(row.id) != 1]
    twice += [
        row.id
        for row in rows
        if row.log_path and Path(row.log_path).read_text(encoding="utf-8").count("== attempt") != 1
    ]
    return {
        "jobs": jobs,
        "workers": workers,
        "seconds": seconds,
        "jobs_per_minute": 60 * sum(row.status == "done" for row in rows) / seconds,
        "done": sum(row.status == "done" for row in rows),
        "lost": sum(row.status != "done" for row in rows),
        "run_twice": len(set(twice)),
        "per_worker": [sum(1 for line in o.splitlines() if "(attempt" in line) for o in outputs],
    }


@contextlib.contextmanager
def database(postgres: bool, url: str | None, folder: Path) -> Iterator[str]:
    if url:
        yield url
    elif postgres:
        from tests.pg_server import running_postgres

        with running_postgres() as server:
            yield server.create_database()
    else:
        yield f"sqlite:///{folder / 'gen.db'}"


def run(jobs: int = 50, workers: int = 3) -> list[dict]:
    """For python -m bench: SQLite, N jobs, K workers."""
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        result = load_test(f"sqlite:///{folder / 'gen.db'}", jobs, workers, folder)
    note = (
        f"{result['jobs']} jobs, {result['workers']} workers, "
        f"lost {result['lost']}, run twice {result['run_twice']}"
    )
    return [
        {
            "figure": "queue throughput (gen models list jobs)",
            "preset": "-",
            "device": "cpu",
            "value": round(result["jobs_per_minute"], 1),
            "unit": "jobs/min",
            "note": note,
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL server")
    parser.add_argument("--url", help="a database of your own (jobs are added to it)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        with database(arguments.postgres, arguments.url, folder) as url:
            result = load_test(url, arguments.jobs, arguments.workers, folder)
    print(f"database        {mask_url(url)}")
    for key, value in result.items():
        print(f"{key:<15} {value:.1f}" if isinstance(value, float) else f"{key:<15} {value}")


if __name__ == "__main__":
    main()
