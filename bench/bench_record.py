"""What recording costs end to end: `gen sample --n N --all-classes` on the 4 phantom classes,
recording every image in SQLite or PostgreSQL, against the same command with --no-record.
The issue's target: recording adds under 10%.

    .venv/bin/python bench/bench_record.py [--n 4000] [--repeats 3] [--threads 1]

Each figure is the median of --repeats runs of the real command in a fresh process, into a fresh
output folder; the variants take turns, so a briefly busy machine slows them alike. The
checkpoint is a tiny model trained for one iteration (speed does not depend on the weights).
The databases are created before timing starts and keep their rows from run to run, as a real
one does. PostgreSQL is a throwaway local server with fsync on, as in real use. N defaults to
the issue's 4,000 per class on a GPU and to 1,000 on a CPU, where 16,000 images take minutes
per run. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import torch

from db import open_database
from gen.phantoms import PHANTOM_CLASSES, write_phantoms
from gen.train import train
from gen.train_config import TrainConfig
from tests.pg_server import PostgresUnavailable, running_postgres

PRESET = "tiny"
GPU_PER_CLASS = 4000
CPU_PER_CLASS = 1000
BATCH_SIZE = 256
NO_RECORD = "no recording"


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def tiny_checkpoint(folder: Path) -> Path:
    write_phantoms(folder / "data", per_class=8)
    config = TrainConfig(
        data=str(folder / "data"),
        out=str(folder / "run"),
        preset=PRESET,
        iterations=1,
        batch_size=4,
        device="cuda" if torch.cuda.is_available() else "cpu",
    )
    return train(config, progress=False).checkpoint


def time_sample(checkpoint: Path, out: Path, n: int, database: str | None, threads: int | None) -> float:
    """Seconds for one `gen sample` in a fresh process (imports and model loading included)."""
    command = [sys.executable, "-c", "from gen.cli import main; main()", "sample"]
    command += ["--checkpoint", str(checkpoint), "--n", str(n), "--all-classes", "--out", str(out)]
    command += ["--batch-size", str(BATCH_SIZE), "--quiet"]
    command += ["--no-record"] if database is None else ["--db", database]
    environment = dict(os.environ)
    if threads:
        environment["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise RuntimeError(f"gen sample failed ({finished.returncode}): {finished.stderr.strip()[-2000:]}")
    return seconds


def measure(
    n: int | None = None,
    repeats: int = 3,
    threads: int | None = None,
    report: Callable[[str], None] = lambda line: None,
) -> list[dict]:
    per_class = n or (GPU_PER_CLASS if torch.cuda.is_available() else CPU_PER_CLASS)
    images = per_class * len(PHANTOM_CLASSES)
    device = device_name()
    shrunk = (
        "" if per_class >= GPU_PER_CLASS else f"; n={per_class:,} per class, not the issue's 4,000, on a CPU"
    )
    setting = (
        f"{images:,} images ({per_class:,} x {len(PHANTOM_CLASSES)} classes), batch {BATCH_SIZE}, "
        f"median of {repeats}{shrunk}" + (f", {threads} CPU thread(s)" if threads else "")
    )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gen-bench-record-") as folder, ExitStack() as stack:
        root = Path(folder)
        checkpoint = tiny_checkpoint(root)
        databases: dict[str, str | None] = {NO_RECORD: None, "SQLite": f"sqlite:///{root / 'gen.db'}"}
        try:
            server = stack.enter_context(running_postgres(fsync=True))
            databases["PostgreSQL"] = server.create_database("bench_record")
        except PostgresUnavailable as exc:
            report(f"PostgreSQL skipped: {exc}")
            rows.append(
                {
                    "figure": "gen sample, recording to PostgreSQL",
                    "preset": PRESET,
                    "device": device,
                    "value": None,
                    "unit": "s",
                    "note": f"skipped: {exc}",
                }
            )
        for url in databases.values():
            if url is not None:
                open_database(url).dispose()  # the schema exists before timing starts

        seconds: dict[str, list[float]] = {name: [] for name in databases}
        for repeat in range(repeats):
            for name, url in databases.items():
                out = root / "samples" / f"{name}-{repeat}"
                seconds[name].append(time_sample(checkpoint, out, per_class, url, threads))
                report(f"run {repeat + 1}/{repeats} {name:<13} {seconds[name][-1]:7.1f} s")

        medians = {name: statistics.median(times) for name, times in seconds.items()}
        for name, median in medians.items():
            figure = "gen sample, " + (NO_RECORD if name == NO_RECORD else f"recording to {name}")
            note = setting + ("; PostgreSQL with fsync on" if name == "PostgreSQL" else "")
            rows.append(
                {
                    "figure": figure,
                    "preset": PRESET,
                    "device": device,
                    "value": median,
                    "unit": "s",
                    "note": note,
                }
            )
            rows.append(
                {
                    "figure": figure,
                    "preset": PRESET,
                    "device": device,
                    "value": images / median,
                    "unit": "images/s",
                    "note": "end to end, process start included",
                }
            )
        for name, median in medians.items():
            if name == NO_RECORD:
                continue
            rows.append(
                {
                    "figure": f"recording overhead, {name}",
                    "preset": PRESET,
                    "device": device,
                    "value": 100 * (median / medians[NO_RECORD] - 1),
                    "unit": "%",
                    "note": "target < 10%; medians against --no-record (fastest runs: "
                    f"{100 * (min(seconds[name]) / min(seconds[NO_RECORD]) - 1):+.1f}%)",
                }
            )
    return rows


def run() -> list[dict]:
    """Rows for `make bench`."""
    return measure()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, help=f"images per class (default {GPU_PER_CLASS} on a GPU, else {CPU_PER_CLASS})"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, help="OMP_NUM_THREADS for gen sample (default: torch's choice)"
    )
    arguments = parser.parse_args()
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, device {device_name()}", flush=True)
    rows = measure(
        arguments.n, arguments.repeats, arguments.threads, report=lambda line: print(line, flush=True)
    )
    print(f"\n{'figure':<38} {'preset':<7} {'device':<10} {'value':>10} {'unit':<9} note")
    for row in rows:
        value = "-" if row["value"] is None else f"{row['value']:,.1f}"
        figure, device, unit = row["figure"], row["device"], row["unit"]
        print(f"{figure:<38} {row['preset']:<7} {device:<10} {value:>10} {unit:<9} {row['note']}")


if __name__ == "__main__":
    main()
