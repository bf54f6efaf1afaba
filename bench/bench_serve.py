"""How fast gen serve's pages are: every page family on a database of 50 models and 16,000 images
(50 x 4 classes x 80), with 40 data set images, 5 classifiers, a 20-candidate search and 200 jobs.

    .venv/bin/python -m bench.bench_serve

Server-side time per page, from the application's Server-Timing header (the guard middleware
measures each request), through the test client: median of 5 requests after one warm-up, on a
SQLite file and a throwaway PostgreSQL server (tests/pg_server.py). Beside it, the CPU time this
process spent per request (server and test client together; PostgreSQL's own work not
included): on a machine busy with other work the wall time mostly measures waiting for a core,
the CPU time does not. The image rows point at files that
do not exist: pages only link to images, and thumbnails are made once and cached (not measured
here). Prints figures; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy.orm import Session

from db import classifiers as classifier_rows
from db import generators as generator_rows
from db import images as image_rows
from db import jobs as job_rows
from db import reports as report_rows
from db import searches as search_rows
from db.session import open_database
from tests.pg_server import PostgresUnavailable, running_postgres

MODELS, CLASSES, PER_CLASS = 50, ("basophil", "eosinophil", "lymphocyte", "monocyte"), 80
HISTORY_ROWS, GRIDS = 200, 10
REPEATS = 5
BUDGET_MS = 300
TRAINING = {
    "g_optimizer": "adam",
    "d_optimizer": "adam",
    "loss": "hinge",
    "batch_size": 64,
    "g_lr": 1e-4,
    "d_lr": 4e-4,
}


def fill(url: str, folder: Path) -> None:
    """The database and files the pages read: models with run folders, images, the rest."""
    from gen.architecture import preset, to_json
    from gen.dataset_registry import register
    from gen.phantoms import write_phantoms

    engine = open_database(url)
    generator, discriminator = (to_json(spec) for spec in preset("tiny", len(CLASSES)))
    grid = _png()
    with Session(engine) as session:
        for model in range(MODELS):
            run = folder / "runs" / f"model-{model}"
            run.mkdir(parents=True)
            lines = ["iteration,seconds,d_loss,g_loss,domain_fid"]
            lines += [
                f"{i * 50},{i},{1 / (i + 1)},{0.5 + 1 / (i + 2)},{'' if i % 20 else 3 / (i + 1)}"
                for i in range(HISTORY_ROWS)
            ]
            (run / "history.csv").write_text("\n".join(lines) + "\n")
            for i in range(GRIDS):
                (run / f"grid-{i * 1000:07d}.png").write_bytes(grid)
            model_id = generator_rows.record_model(
                session,
                preset="tiny",
                generator=generator,
                discriminator=discriminator,
                class_names=CLASSES,
                training={
                    **TRAINING,
                    "iterations": 10_000,
                    "settings": {"preset": "tiny", "run_dir": str(run)},
                },
            )
            checkpoint = generator_rows.record_checkpoint(
                session, model_id, str(run / "checkpoint-0010000.pt"), 10_000, "0" * 64, 1.5
            )
            rows = []
            for name in CLASSES:
                class_id = generator_rows.resolve_class(session, model_id, name)
                rows += [
                    {
                        "file_path": f"{folder}/samples/model-{model_id}/{name}/{index:05d}.png",
                        "class_id": class_id,
                        "md5": "0" * 32,
                        "width": 64,
                        "height": 64,
                        "seed": index % 4,
                        "sample_index": index,
                        "checkpoint_id": checkpoint,
                        "iteration": 10_000,
                    }
                    for index in range(PER_CLASS)
                ]
            image_rows.record_images(session, rows)
            report_rows.record_report(session, model_id, [{"metric": "fid", "value": 30.0 + model}])
        for index in range(5):
            classifier_rows.record_classifier(
                session,
                dataset_fingerprint="f" * 64,
                path=f"classifier-{index}.pt",
                sha256="0" * 64,
                architecture={"nodes": 4, "code": "235-66-7", "cells": 2, "pool": [1]},
                accuracy=0.9,
            )
        search_id = search_rows.create_search(
            session,
            stage="generator",
            dataset_path=str(folder),
            dataset_fingerprint="f" * 64,
            settings={"total": 20},
            seed=0,
        )
        for step in range(20):
            search_rows.record_search_candidate(
                session,
                search_id=search_id,
                model_id=step + 1,
                step=step,
                parent_step=None,
                fitness=5.0 - step / 10,
                budget={"iterations": 100},
                seconds=60.0,
                worker=None,
                status="done",
            )
        for index in range(200):
            job_rows.submit(
                session,
                ["sample", "--model", str(index % MODELS + 1), "--n", "10", "--all-classes"],
                str(folder),
            )
    write_phantoms(folder / "phantoms", per_class=10)
    register(engine, "phantoms", folder / "phantoms")
    engine.dispose()


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8 * 66 + 2, 4 * 66 + 2), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def pages() -> list[str]:
    middle = MODELS // 2
    return [
        "/",
        "/datasets",
        "/datasets/1",
        "/generators",
        f"/generators/{middle}",
        f"/generators/{middle}/images",
        f"/generators/{middle}/images?class_name={CLASSES[2]}&checkpoint=10000&seed=1&page=2",
        f"/images/{middle * PER_CLASS * len(CLASSES)}",
        "/compare?" + "&".join(f"model={i}" for i in range(1, 7)),
        "/classifiers",
        "/classifiers/1",
        "/searches",
        "/searches/1",
        "/jobs",
        "/jobs/1",
        "/api/models",
        f"/api/models/{middle}/images",
    ]


def measure(url: str, folder: Path) -> dict[str, tuple[float, float]]:
    """Median server-side milliseconds per page, and CPU milliseconds per request."""
    from fastapi.testclient import TestClient

    from gen.serve import ServeSettings, create_app

    fill(url, folder)
    settings = ServeSettings(url, (folder,), None, folder, folder / "cache")
    times = {}
    with TestClient(create_app(settings)) as client:
        for page in pages():
            client.get(page)  # warm-up: caches, the connection pool, compiled statements
            samples = []
            cpu = time.process_time()
            for _ in range(REPEATS):
                response = client.get(page)
                if response.status_code != 200:
                    raise RuntimeError(f"{page} answered {response.status_code}")
                samples.append(float(response.headers["server-timing"].split("dur=")[1]))
            times[page] = (statistics.median(samples), (time.process_time() - cpu) * 1000 / REPEATS)
    return times


def run() -> list[dict]:
    rows = []
    databases = {"sqlite": lambda folder: f"sqlite:///{folder / 'gen.db'}", "postgresql": None}
    for label in databases:
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            started = time.perf_counter()
            try:
                if label == "sqlite":
                    times = measure(databases[label](folder), folder)
                else:
                    with running_postgres() as server:
                        times = measure(server.create_database(), folder)
            except PostgresUnavailable as exc:
                rows.append(
                    {
                        "figure": "serve pages",
                        "device": label,
                        "value": None,
                        "unit": "ms",
                        "note": f"skipped: {exc}",
                    }
                )
                continue
            print(
                f"[serve on {label}: filled and measured in {time.perf_counter() - started:.0f} s]",
                file=sys.stderr,
            )
        load = os.getloadavg()[0]
        for page, (milliseconds, cpu) in times.items():
            rows.append(
                {
                    "figure": f"serve {page[:38]}",
                    "preset": "-",
                    "device": label,
                    "value": milliseconds,
                    "unit": "ms",
                    "note": f"server-side, median of 5; CPU {cpu:.1f} ms",
                }
            )
        slowest = max(times, key=lambda page: times[page][0])
        rows.append(
            {
                "figure": "serve slowest page",
                "preset": "-",
                "device": label,
                "value": times[slowest][0],
                "unit": "ms",
                "note": f"{slowest} (CPU {times[slowest][1]:.1f} ms; budget {BUDGET_MS} ms; 50 models, "
                f"16,000 images; load average {load:.1f})",
            }
        )
    return rows


def main() -> None:
    for row in run():
        value = "-" if row["value"] is None else f"{row['value']:.1f}"
        print(f"{row['figure']:<46} {row['device']:<11} {value:>8} {row['unit']:<3} {row['note']}")


if __name__ == "__main__":
    main()
