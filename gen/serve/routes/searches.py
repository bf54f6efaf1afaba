"""Searches: each architecture search's fitness over time, its candidates in the source's
notation, and training the best (queued as gen train --architecture, or gen classifiers train
--arch searched:ID for a classifier search)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from db import datasets as dataset_rows
from db import searches as search_rows
from gen.architecture import PRESETS
from gen.errors import GenError
from gen.serve.charts import line_chart
from gen.serve.context import engine_of, queue_job, render, settings_of
from gen.serve.routes.generators import RUN_NAME

router = APIRouter()
Text = Annotated[str, Form()]


def notation(search: search_rows.SearchInfo, candidate: search_rows.CandidateInfo) -> str:
    """The candidate's searched network in the source's notation."""
    from gen.architecture import from_json
    from gen.search.space import ClassifierGenome, from_spec

    try:
        if search.stage == "classifier":
            return ClassifierGenome.from_dict(candidate.classifier_architecture or {}).notation()
        network = candidate.generator if search.stage == "generator" else candidate.discriminator
        return from_spec(from_json(network or {})).notation()
    except (KeyError, TypeError, ValueError):
        return "-"


def ranked(candidates: list[search_rows.CandidateInfo]) -> list[search_rows.CandidateInfo]:
    return sorted((c for c in candidates if c.fitness is not None), key=lambda c: (c.fitness, c.step))


@router.get("/searches", include_in_schema=False)
def searches_page(request: Request) -> Response:
    with Session(engine_of(request)) as session:
        rows = search_rows.list_searches(session)
    return render(request, "searches.html", searches=rows)


@router.get("/searches/{search_id}", include_in_schema=False)
def search_page(request: Request, search_id: int) -> Response:
    with Session(engine_of(request)) as session:
        search = search_rows.get_search(session, search_id)
        candidates = search_rows.search_candidates(session, search_id)
        data_sets = dataset_rows.list_datasets(session)
    scored = [(c.step, c.fitness) for c in candidates if c.fitness is not None]
    best, best_so_far = float("inf"), []
    for step, fitness in scored:
        best = min(best, fitness)
        best_so_far.append((step, best))
    chart = line_chart(
        {"fitness": scored, "best so far": best_so_far},
        "fitness (lower is better)",
        x_label="step",
        markers=True,
    )
    return render(
        request,
        "search.html",
        search=search,
        candidates=candidates,
        ranked=ranked(candidates),
        notation={c.id: notation(search, c) for c in candidates},
        chart=chart,
        datasets=data_sets,
        presets=PRESETS,
    )


@router.post("/searches/{search_id}/train-best", include_in_schema=False)
def train_best(
    request: Request,
    search_id: int,
    dataset: Text,
    run_name: Annotated[str, Form()] = "",
    preset: Annotated[str, Form()] = "tiny",
    iterations: Annotated[int, Form()] = 1000,
) -> Response:
    with Session(engine_of(request)) as session:
        search = search_rows.get_search(session, search_id)
        best = ranked(search_rows.search_candidates(session, search_id))
        data_set = dataset_rows.get_dataset(session, dataset).name
    if not best:
        raise GenError(f"search {search_id} has no evaluated candidate yet.")
    if iterations < 1:
        raise GenError("train for at least 1 iteration (epoch).")
    if search.stage == "classifier":
        arguments = [
            "classifiers",
            "train",
            "--data",
            data_set,
            "--arch",
            f"searched:{best[0].classifier_id}",
        ]
        return queue_job(request, [*arguments, "--epochs", str(iterations)])
    run_name = run_name.strip() or f"search-{search_id}-best"
    if not RUN_NAME.fullmatch(run_name):
        raise GenError("a run name is letters, digits, dots, dashes and underscores (up to 64).")
    if preset not in PRESETS:
        raise GenError(f"preset {preset!r} is not one of {', '.join(PRESETS)}.")
    out = Path("runs") / run_name
    if (settings_of(request).work_dir / out).exists():
        raise GenError(f"{out} exists already; pick another run name (nothing is overwritten).")
    arguments = ["train", "--data", data_set, "--out", str(out), "--preset", preset]
    arguments += ["--iters", str(iterations), "--architecture", str(best[0].gan_id), "--quiet"]
    return queue_job(request, arguments)


@router.get("/api/searches", tags=["searches"])
def api_searches(request: Request) -> list[dict]:
    with Session(engine_of(request)) as session:
        return [dataclasses.asdict(row) for row in search_rows.list_searches(session)]


@router.get("/api/searches/{search_id}", tags=["searches"])
def api_search(request: Request, search_id: int) -> dict:
    """A search's settings and every candidate, with its notation."""
    with Session(engine_of(request)) as session:
        search = search_rows.get_search(session, search_id)
        candidates = search_rows.search_candidates(session, search_id)
    return {
        **dataclasses.asdict(search),
        "candidates": [{**dataclasses.asdict(c), "notation": notation(search, c)} for c in candidates],
    }
