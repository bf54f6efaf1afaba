"""How fast image rows are recorded: 16,000 rows (4 classes x 4,000), batches of 256, one
transaction per batch, as `gen sample` records them.

    .venv/bin/python bench/bench_db.py [--url postgresql://user@host:5432/gen]

Measures a SQLite file and throwaway PostgreSQL servers started like the test suite's
(tests/pg_server.py), with fsync off (as in the tests) and on (as in real use); --url adds a database
of your own (its rows are deleted again afterwards). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db import generators as generator_rows
from db import images as image_rows
from db.session import mask_url, open_database
from tests.pg_server import PostgresUnavailable, running_postgres

CLASSES = ["cyt_kist_mast", "cyt_mast", "cyt_nep_fib_mast", "cyt_nep_mast"]
PER_CLASS = 4000
BATCH = 256
TRAINING = {
    "g_optimizer": "adam",
    "d_optimizer": "adam",
    "loss": "hinge",
    "batch_size": 128,
    "g_lr": 1e-4,
    "d_lr": 4e-4,
}


def bench(url: str) -> dict[str, float]:
    engine = open_database(url)
    try:
        with Session(engine) as session:
            model_id = generator_rows.record_model(
                session,
                preset="bench",
                generator={},
                discriminator={},
                class_names=CLASSES,
                training=TRAINING,
            )
            checkpoint = generator_rows.record_checkpoint(session, model_id, "bench.pt", 100_000, "0" * 64)
            batches: list[list[dict[str, Any]]] = []
            class_ids = {}
            for name in CLASSES:
                class_ids[name] = generator_rows.resolve_class(session, model_id, name)
                rows = [
                    {
                        "file_path": f"samples/{name}/{index:05d}.png",
                        "class_id": class_ids[name],
                        "md5": hashlib.md5(f"{name}{index}".encode()).hexdigest(),
                        "width": 64,
                        "height": 64,
                        "seed": 0,
                        "sample_index": index,
                        "checkpoint_id": checkpoint,
                        "iteration": 100_000,
                    }
                    for index in range(PER_CLASS)
                ]
                batches += [rows[start : start + BATCH] for start in range(0, len(rows), BATCH)]

            started = time.perf_counter()
            for batch in batches:
                image_rows.record_images(session, batch)
            insert_s = time.perf_counter() - started

            # What a rerun of an interrupted request reads first.
            started = time.perf_counter()
            done = image_rows.recorded_samples(
                session, checkpoint, class_ids[CLASSES[0]], 0, f"samples/{CLASSES[0]}"
            )
            lookup_s = time.perf_counter() - started
            assert len(done) == PER_CLASS
            generator_rows.delete_model(session, model_id, cascade=True)
    finally:
        engine.dispose()
    rows = len(CLASSES) * PER_CLASS
    return {
        "rows": rows,
        "batches": len(batches),
        "seconds": insert_s,
        "rows_per_s": rows / insert_s,
        "lookup_s": lookup_s,
    }


def report(label: str, measure: Callable[[], dict[str, float]]) -> None:
    try:
        figures = measure()
    except PostgresUnavailable as exc:
        print(f"{label:<38} skipped: {exc}")
        return
    rate, seconds, lookup_ms = figures["rows_per_s"], figures["seconds"], figures["lookup_s"] * 1000
    print(
        f"{label:<38} {rate:>9,.0f} rows/s  ({figures['rows']:,.0f} rows in {figures['batches']:.0f} "
        f"transactions, {seconds:.2f} s; rerun lookup of {PER_CLASS:,} rows {lookup_ms:.0f} ms)"
    )


def on_postgres(fsync: bool) -> dict[str, float]:
    with running_postgres(fsync=fsync) as server:
        return bench(server.create_database("bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="also measure this database (rows are deleted afterwards)")
    arguments = parser.parse_args()
    total = len(CLASSES) * PER_CLASS
    print(f"python {sys.version.split()[0]}; recording {total:,} image rows, {BATCH} per transaction")
    with tempfile.TemporaryDirectory() as folder:
        report(
            "sqlite file (WAL, synchronous=NORMAL)", lambda: bench(f"sqlite:///{Path(folder) / 'bench.db'}")
        )
    report("postgresql 127.0.0.1 (fsync=off)", lambda: on_postgres(fsync=False))
    report("postgresql 127.0.0.1 (fsync=on)", lambda: on_postgres(fsync=True))
    if arguments.url:
        report(mask_url(arguments.url), lambda: bench(arguments.url))


def run() -> list[dict]:
    """Rows for `make bench`: median rows/s of 3 runs per database."""
    import statistics

    rows = []
    measures = {
        "sqlite (WAL)": lambda folder: bench(f"sqlite:///{Path(folder) / f'bench-{time.monotonic_ns()}.db'}"),
        "postgresql (fsync=off)": lambda folder: on_postgres(fsync=False),
        "postgresql (fsync=on)": lambda folder: on_postgres(fsync=True),
    }
    for label, measure in measures.items():
        with tempfile.TemporaryDirectory() as folder:
            try:
                rates = [measure(folder)["rows_per_s"] for _ in range(3)]
            except PostgresUnavailable as exc:
                rows.append(
                    {
                        "figure": "record image rows",
                        "device": label,
                        "value": None,
                        "unit": "rows/s",
                        "note": f"skipped: {exc}",
                    }
                )
                continue
        rows.append(
            {
                "figure": "record 16,000 image rows",
                "preset": "-",
                "device": label,
                "value": statistics.median(rates),
                "unit": "rows/s",
                "note": f"batches of {BATCH}, median of 3",
            }
        )
    return rows


if __name__ == "__main__":
    main()
