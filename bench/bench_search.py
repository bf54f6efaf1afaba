"""gen search: candidates per hour with 1 and 2 workers (and their ratio, from one run), and a
short real search on pbc4: does the best candidate found beat the best of the random initial
population?

    .venv/bin/python bench/bench_search.py [--candidates 8] [--budget-iters 20] [--population 10 --cycles 3]

Throughput is measured on phantom images (gen demo-data) with the tiny preset; the pbc4 search
(skipped when ../shared/data/pbc4/train is absent) writes its fitness plot to
bench/results/search-pbc4/. Each search uses a throwaway SQLite database. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from db import open_database
from gen.evaluation import TrainingEvaluator
from gen.image_folder import load_image_folder
from gen.phantoms import write_phantoms
from gen.search.engine import SearchSettings, run_search
from gen.search.start import prepare_search

PBC4 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pbc4" / "train"
RESULTS = Path(__file__).resolve().parent / "results"


def _search(settings: SearchSettings, workers: int) -> tuple[Any, float]:
    engine = open_database(f"sqlite:///{Path(settings.out).parent / (Path(settings.out).name + '.db')}")
    try:
        run = prepare_search(settings, engine)
        started = time.perf_counter()
        run_search(run, engine, workers=workers, device="cpu", progress=False)
        return run, time.perf_counter() - started
    finally:
        engine.dispose()


def throughput(candidates: int, budget_iters: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_phantoms(root / "data", per_class=16)
        previous_cache = os.environ.get("GEN_CACHE_DIR")
        os.environ["GEN_CACHE_DIR"] = str(root / "cache")  # the phantoms' classifier: thrown away
        # The domain classifier the fitness needs, trained before the clocks start.
        TrainingEvaluator(load_image_folder(root / "data"), torch.device("cpu"), 1, 0)
        per_hour = {}
        for workers in (1, 2):
            # population x (1 + 0 cycles) = candidates, all random: the same work for both.
            settings = SearchSettings(
                data=str(root / "data"),
                out=str(root / f"w{workers}"),
                population=candidates,
                cycles=0,
                sample=1,
                budget_iters=budget_iters,
                eval_images=8,
                batch_size=8,
            )
            _, seconds = _search(settings, workers)
            per_hour[workers] = candidates / seconds * 3600
            rows.append(
                {
                    "figure": f"search candidates/hour, {workers} worker{'s' * (workers > 1)}",
                    "preset": "tiny",
                    "device": "cpu",
                    "value": per_hour[workers],
                    "unit": "cand/h",
                    "note": f"{candidates} candidates x {budget_iters} iterations, phantoms",
                }
            )
        rows.append(
            {
                "figure": "search speed-up, 2 workers / 1",
                "preset": "tiny",
                "device": "cpu",
                "value": per_hour[2] / per_hour[1],
                "unit": "x",
                "note": "one run; workers=2 starts a local Ray",
            }
        )
        if previous_cache is None:
            os.environ.pop("GEN_CACHE_DIR")
        else:
            os.environ["GEN_CACHE_DIR"] = previous_cache
    return rows


def pbc4_search(population: int, cycles: int, budget_iters: int, workers: int) -> list[dict]:
    if not PBC4.is_dir():
        return [{"figure": "pbc4 search", "value": None, "unit": "", "note": f"skipped: no {PBC4}"}]
    out = RESULTS / "search-pbc4"
    if out.exists():
        import shutil

        shutil.rmtree(out)
        (RESULTS / "search-pbc4.db").unlink(missing_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = SearchSettings(
        data=str(PBC4.resolve()),
        out=str(out),
        population=population,
        cycles=cycles,
        sample=max(1, population // 4),
        budget_iters=budget_iters,
        eval_images=32,
    )
    run, seconds = _search(settings, workers)
    history = run.evolution.history
    initial = [e.fitness for e in history if e.step < population and e.fitness is not None]
    found = [e.fitness for e in history if e.fitness is not None]
    best = run.evolution.best()
    note = f"{len(history)} candidates x {budget_iters} it, {seconds / 60:.0f} min"
    note += f"; best {best.architecture.notation()}"
    return [
        {
            "figure": "pbc4 search: best of random population",
            "value": min(initial),
            "unit": "nFID",
            "note": note,
        },
        {
            "figure": "pbc4 search: best found",
            "value": min(found),
            "unit": "nFID",
            "note": str(out / "fitness.png"),
        },
    ]


def run(candidates: int = 8, budget_iters: int = 20, population: int = 10, cycles: int = 3) -> list[dict]:
    return throughput(candidates, budget_iters) + pbc4_search(population, cycles, budget_iters, workers=2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--budget-iters", type=int, default=20)
    parser.add_argument("--population", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--skip-pbc4", action="store_true")
    args = parser.parse_args()
    rows = throughput(args.candidates, args.budget_iters)
    if not args.skip_pbc4:
        rows += pbc4_search(args.population, args.cycles, args.budget_iters, workers=2)
    for row in rows:
        value = "-" if row["value"] is None else f"{row['value']:.3f}"
        print(f"{row['figure']:<44} {value:>10} {row['unit']:<7} {row['note']}")


if __name__ == "__main__":
    main()
