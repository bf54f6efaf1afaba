"""Export and verify throughput: 16,000 recorded images (4 classes x 4,000), exported with MD5s,
the SQL dump, settings.csv and the card, then checked with gen verify.

    .venv/bin/python bench/bench_export.py [--per-class 4000] [--repeats 3]

The images are 64x64 noise PNGs (about 12 kB each, a little larger than a GAN's) written and
recorded directly through db.generators and db.images, as gen sample would leave them: an export does not care
how the pixels were made, and sampling 16,000 images on a CPU would take most of the run. The
source is a SQLite file, and also a throwaway PostgreSQL server when one can be started. Files
are in the page cache (just written), as they are right after sampling. Each figure is the
median of --repeats runs. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db import generators as generator_rows
from db import images as image_rows
from db.names import stored_path
from db.session import open_database
from gen.export import export_dataset
from gen.verify import verify_dataset
from tests.pg_server import PostgresUnavailable, running_postgres

CLASSES = ["cyt_kist_mast", "cyt_mast", "cyt_nep_fib_mast", "cyt_nep_mast"]
PER_CLASS = 4000
REPEATS = 3
BATCH = 1000
TRAINING = {"g_optimizer": "adam", "d_optimizer": "adam", "loss": "hinge", "batch_size": 64}
TRAINING |= {"g_lr": 1e-4, "d_lr": 4e-4, "iterations": 10_000, "epochs": 1}


def write_images(folder: Path, per_class: int) -> dict[str, list[tuple[str, str]]]:
    """per_class noise PNGs per class; class -> [(absolute path, md5)]."""
    rng = np.random.default_rng(0)
    made: dict[str, list[tuple[str, str]]] = {}
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        made[name] = []
        for index in range(per_class):
            buffer = io.BytesIO()
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
            data = buffer.getvalue()
            path = folder / name / f"{name}_{index + 1:06d}.png"
            path.write_bytes(data)
            made[name].append((stored_path(path), hashlib.md5(data).hexdigest()))
    return made


def record(engine: Engine, images: dict[str, list[tuple[str, str]]]) -> int:
    with Session(engine) as session:
        model_id = generator_rows.record_model(
            session, preset="tiny", generator={}, discriminator={}, class_names=CLASSES, training=TRAINING
        )
        checkpoint = generator_rows.record_checkpoint(session, model_id, "/runs/bench.pt", 10_000, "0" * 64)
        for name, files in images.items():
            class_id = generator_rows.resolve_class(session, model_id, name)
            rows = [
                {
                    "file_path": path,
                    "class_id": class_id,
                    "md5": md5,
                    "width": 64,
                    "height": 64,
                    "seed": 0,
                    "sample_index": index,
                    "checkpoint_id": checkpoint,
                    "iteration": 10_000,
                }
                for index, (path, md5) in enumerate(files)
            ]
            for start in range(0, len(rows), BATCH):
                image_rows.record_images(session, rows[start : start + BATCH])
    return model_id


def median_seconds(work: Callable[[int], Any], cleanup: Callable[[int], Any], repeats: int) -> float:
    times = []
    for attempt in range(repeats):
        started = time.perf_counter()
        work(attempt)
        times.append(time.perf_counter() - started)
        cleanup(attempt)
    return statistics.median(times)


def bench_source(engine: Engine, model_id: int, folder: Path, label: str, repeats: int) -> tuple[float, Path]:
    """Median export seconds; leaves the last export in place for verify."""
    target = folder / f"export-{label}"

    def export(attempt: int) -> None:
        export_dataset(engine, model_id, target, sql_dump=True, csv=True)

    def cleanup(attempt: int) -> None:
        if attempt < repeats - 1:
            shutil.rmtree(target)

    return median_seconds(export, cleanup, repeats), target


def run(per_class: int = PER_CLASS, repeats: int = REPEATS) -> list[dict]:
    total = per_class * len(CLASSES)
    device = f"cpu ({os.cpu_count()} cores)"
    what = f"{len(CLASSES)} x {per_class:,} images"
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        images = write_images(folder / "samples", per_class)
        setup = time.perf_counter() - started
        engine = open_database(f"sqlite:///{folder / 'gen.db'}")
        model_id = record(engine, images)
        seconds, exported = bench_source(engine, model_id, folder, "sqlite", repeats)
        engine.dispose()
        note = f"MD5s, database.sql, settings.csv, card; {what}; setup {setup:.0f} s"
        rows += [
            {"figure": "export (SQLite source)", "value": seconds, "unit": "s", "note": note},
            {"figure": "export (SQLite source)", "value": total / seconds, "unit": "images/s", "note": what},
        ]
        try:
            with running_postgres() as server:
                engine = open_database(server.create_database())
                model_id = record(engine, images)
                seconds, _ = bench_source(engine, model_id, folder, "postgresql", repeats)
                engine.dispose()
            rows += [
                {"figure": "export (PostgreSQL source)", "value": seconds, "unit": "s", "note": note},
                {
                    "figure": "export (PostgreSQL source)",
                    "value": total / seconds,
                    "unit": "images/s",
                    "note": what,
                },
            ]
        except PostgresUnavailable as error:
            rows.append(
                {"figure": "export (PostgreSQL source)", "value": None, "unit": "", "note": str(error)}
            )

        problems: list[str] = []

        def verify(attempt: int) -> None:
            problems[:] = verify_dataset(exported)

        seconds = median_seconds(verify, lambda attempt: None, repeats)
        state = "verified OK" if not problems else f"{len(problems)} problems!"
        rows += [
            {"figure": "gen verify", "value": seconds, "unit": "s", "note": f"{what}, dump loaded; {state}"},
            {"figure": "gen verify", "value": total / seconds, "unit": "images/s", "note": what},
        ]
    for row in rows:
        row.setdefault("preset", None)
        row.setdefault("device", device)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    for row in run(args.per_class, args.repeats):
        value = "-" if row["value"] is None else f"{row['value']:,.1f}"
        print(f"{row['figure']:<28} {value:>10} {row['unit']:<9} {row['device']:<16} {row['note']}")


if __name__ == "__main__":
    main()
