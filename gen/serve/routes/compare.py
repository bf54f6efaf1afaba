"""Compare: two to six models side by side: their curves on one plot, their samples per class,
their latest report figures in one table."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from db import generators as generator_rows
from db import images as image_rows
from db import reports as report_rows
from gen.errors import GenError
from gen.serve.charts import line_chart
from gen.serve.context import engine_of, render
from gen.serve.routes.generators import history, run_folder, series

router = APIRouter()
MIN_MODELS, MAX_MODELS = 2, 6
SAMPLES_PER_CLASS = 6
CURVES = ("g_loss", "d_loss", "domain_fid")


@router.get("/compare", include_in_schema=False)
def compare(
    request: Request, model: Annotated[list[str] | None, Query()] = None, curve: str = "g_loss"
) -> Response:
    chosen = list(dict.fromkeys(m.strip() for m in model or () if m.strip()))
    with Session(engine_of(request)) as session:
        available = generator_rows.list_models(session)
        names = generator_rows.model_names(session)
        if not chosen:
            return render(request, "compare.html", available=available, names=names, models=[], curves=CURVES)
        if not MIN_MODELS <= len(chosen) <= MAX_MODELS:
            raise GenError(f"compare {MIN_MODELS} to {MAX_MODELS} models; {len(chosen)} were chosen.")
        if curve not in CURVES:
            raise GenError(f"the curve is one of {', '.join(CURVES)}, not {curve!r}.")
        models = [generator_rows.get_model(session, generator_rows.resolve_model(session, m)) for m in chosen]
        samples = {
            info.id: image_rows.images_per_class(session, info.id, SAMPLES_PER_CLASS) for info in models
        }
        reports = {info.id: report_rows.latest_report(session, info.id) for info in models}
    curves = {f"model {info.id}": series(history(run_folder(info)), curve)[curve] for info in models}
    figures: dict[tuple[str, str], dict[int, float]] = {}
    for model_id, rows in reports.items():
        for row in rows:
            figures.setdefault((row.metric, row.class_name or "overall"), {})[model_id] = row.value
    class_names = list(dict.fromkeys(name for info in models for name in info.class_names))
    return render(
        request,
        "compare.html",
        available=available,
        names=names,
        models=models,
        curves=CURVES,
        curve=curve,
        chart=line_chart(curves, curve.replace("_", " "), width=720, height=300),
        samples=samples,
        class_names=class_names,
        figures=dict(sorted(figures.items())),
    )
