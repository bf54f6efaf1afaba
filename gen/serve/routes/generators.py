"""Generators (models): settings, architecture in the source's notation, loss and quality curves
from history.csv, progress grids over iterations, checkpoints with their quality, reports with
their plots, and a browser over the images each model made; sampling, reports, exports,
retraining and reproducing are queued as jobs; rename and delete as gen models does."""

from __future__ import annotations

import dataclasses
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session

from db import datasets as dataset_rows
from db import generators as generator_rows
from db import images as image_rows
from db import reports as report_rows
from gen.architecture import PRESETS
from gen.errors import GenError
from gen.serve.charts import line_chart
from gen.serve.context import engine_of, queue_job, redirect, render, settings_of
from gen.serve.safety import allowed_folder
from gen.serve.thumbnails import thumbnail

router = APIRouter()
PAGE_SIZE = 48
GRID = re.compile(r"grid-(\d{7})\.png")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CACHE_A_DAY = {"Cache-Control": "private, max-age=86400"}
Text = Annotated[str, Form()]
Number = Annotated[int, Form()]


def _model(session: Session, reference: str) -> generator_rows.ModelInfo:
    return generator_rows.get_model(session, generator_rows.resolve_model(session, reference))


def run_folder(info: generator_rows.ModelInfo) -> Path | None:
    run_dir = (info.training.get("settings") or {}).get("run_dir")
    return Path(run_dir) if run_dir else None


@lru_cache(maxsize=64)
def _history(path: str, modified_ns: int) -> list[dict[str, float]]:
    from gen.history import read_history

    return read_history(path)


def history(run_dir: Path | None) -> list[dict[str, float]]:
    """The run's history.csv rows (cached until the file changes); [] when there is none."""
    if run_dir is None:
        return []
    path = run_dir / "history.csv"
    try:
        return _history(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError, KeyError):
        return []


def grid_iterations(run_dir: Path | None) -> list[int]:
    if run_dir is None or not run_dir.is_dir():
        return []
    return sorted(int(match.group(1)) for path in run_dir.iterdir() if (match := GRID.fullmatch(path.name)))


def report_folder(request: Request, model_id: int) -> Path:
    """Where gen report writes a model's report by default (in the folder jobs run in)."""
    return settings_of(request).work_dir / "reports" / f"model-{model_id}"


def series(rows: list[dict[str, float]], *names: str) -> dict[str, list[tuple[float, float]]]:
    return {name: [(row["iteration"], row[name]) for row in rows if name in row] for name in names}


def architecture(info: generator_rows.ModelInfo) -> dict[str, str]:
    """The networks in the source's {N, C, [ATTN]} notation (a custom row's JSON otherwise)."""
    from gen.architecture import from_json

    shown = {}
    for name, data in (("generator", info.generator), ("discriminator", info.discriminator)):
        try:
            spec = from_json(data)
            shown[name] = f"{spec.encoding()}  channels {list(spec.channels)}"
        except (KeyError, TypeError, ValueError):
            shown[name] = json.dumps(data, sort_keys=True)
    return shown


@router.get("/generators", include_in_schema=False)
def generators_page(request: Request) -> Response:
    with Session(engine_of(request)) as session:
        models = generator_rows.list_models(session)
        names = generator_rows.model_names(session)
        data_sets = dataset_rows.list_datasets(session)
    return render(request, "generators.html", models=models, names=names, datasets=data_sets, presets=PRESETS)


@router.post("/generators/train", include_in_schema=False)
def train(
    request: Request,
    dataset: Text,
    run_name: Text,
    preset: Text,
    iterations: Number,
    checkpoint_every: Number,
    seed: Annotated[int, Form()] = 0,
    batch_size: Annotated[str, Form()] = "",
) -> Response:
    """Queue gen train on a registered data set into runs/RUN_NAME (a new folder)."""
    run_name = run_name.strip()
    if not RUN_NAME.fullmatch(run_name):
        raise GenError("a run name is letters, digits, dots, dashes and underscores (up to 64).")
    if preset not in PRESETS:
        raise GenError(f"preset {preset!r} is not one of {', '.join(PRESETS)}.")
    if iterations < 1 or checkpoint_every < 1 or seed < 0:
        raise GenError("iterations and checkpoint interval must be at least 1, the seed at least 0.")
    out = Path("runs") / run_name
    if (settings_of(request).work_dir / out).exists():
        raise GenError(f"{out} exists already; pick another run name (nothing is overwritten).")
    with Session(engine_of(request)) as session:
        name = dataset_rows.get_dataset(session, dataset).name
    arguments = ["train", "--data", name, "--out", str(out), "--preset", preset, "--iters", str(iterations)]
    arguments += ["--checkpoint-every", str(checkpoint_every), "--seed", str(seed), "--quiet"]
    if batch_size.strip():
        if not batch_size.strip().isdigit() or int(batch_size) < 1:
            raise GenError("the batch size is a whole number of at least 1, or empty for the preset's.")
        arguments += ["--batch-size", batch_size.strip()]
    return queue_job(request, arguments)


@router.get("/generators/{reference}", include_in_schema=False)
def generator_page(request: Request, reference: str) -> Response:
    with Session(engine_of(request)) as session:
        info = _model(session, reference)
        report = report_rows.latest_report(session, info.id)
        name, dataset = (
            generator_rows.model_name(session, info.id),
            dataset_rows.model_dataset(session, info.id),
        )
        dependents = generator_rows.model_dependents(session, info.id)
    run_dir = run_folder(info)
    rows = history(run_dir)
    fid = series(rows, "domain_fid")["domain_fid"] or [
        (c.iteration, c.domain_fid) for c in info.checkpoints if c.domain_fid is not None
    ]
    plots_folder = report_folder(request, info.id)
    plots = sorted(path.stem for path in plots_folder.glob("*.png")) if plots_folder.is_dir() else []
    settings = {key: value for key, value in info.training.items() if key != "settings"}
    return render(
        request,
        "generator.html",
        model=info,
        name=name,
        dataset=dataset,
        dependents=dependents,
        architecture=architecture(info),
        settings=settings,
        run_settings=info.training.get("settings") or {},
        loss_chart=line_chart(series(rows, "d_loss", "g_loss"), "loss"),
        quality_chart=line_chart(
            {"domain FID": fid}, "normalised domain FID (lower is better)", markers=True
        ),
        grids=grid_iterations(run_dir),
        report=report,
        plots=plots,
        run_dir=run_dir,
    )


@router.get("/generators/{reference}/grids/{iteration}.png", include_in_schema=False)
def grid(request: Request, reference: str, iteration: int) -> Response:
    """A progress grid of the model's run folder (only grid-NNNNNNN.png files are served)."""
    with Session(engine_of(request)) as session:
        run_dir = run_folder(_model(session, reference))
    path = run_dir / f"grid-{iteration:07d}.png" if run_dir is not None else None
    if path is None or not path.is_file():
        raise GenError(f"model {reference} has no progress grid of iteration {iteration}.")
    return FileResponse(path, headers=CACHE_A_DAY)


@router.get("/generators/{reference}/plots/{name}.png", include_in_schema=False)
def report_plot(request: Request, reference: str, name: str) -> Response:
    with Session(engine_of(request)) as session:
        model_id = generator_rows.resolve_model(session, reference)
    folder = report_folder(request, model_id)
    plots = {path.stem: path for path in folder.glob("*.png")} if folder.is_dir() else {}
    if name not in plots:
        raise GenError(f"model {model_id}'s report has no plot {name!r}.")
    return FileResponse(plots[name])


def _filters(class_name: str, iteration: str, seed: str) -> dict[str, Any]:
    def number(text: str, what: str) -> int | None:
        if not text.strip():
            return None
        if not text.strip().isdigit():
            raise GenError(f"the {what} filter must be a whole number, not {text!r}.")
        return int(text)

    return {
        "class_name": class_name or None,
        "iteration": number(iteration, "checkpoint"),
        "seed": number(seed, "seed"),
    }


@router.get("/generators/{reference}/images", include_in_schema=False)
def images_page(
    request: Request,
    reference: str,
    class_name: str = "",
    checkpoint: str = "",
    seed: str = "",
    page: int = 1,
) -> Response:
    filters = _filters(class_name, checkpoint, seed)
    page = max(page, 1)
    with Session(engine_of(request)) as session:
        model_id = generator_rows.resolve_model(session, reference)
        choices = image_rows.image_filters(session, model_id)
        if filters["class_name"] is not None and filters["class_name"] not in choices.class_names:
            raise GenError(
                f"model {model_id} has no class {class_name!r}; "
                f"its classes: {', '.join(choices.class_names)}."
            )
        total, rows = image_rows.image_page(
            session, model_id, **filters, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
        pages = max(1, -(-total // PAGE_SIZE))
        if page > pages:  # past the end (the filter changed): the last page
            page = pages
            total, rows = image_rows.image_page(
                session, model_id, **filters, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
            )
    return render(
        request,
        "images.html",
        model_id=model_id,
        images=rows,
        total=total,
        page=page,
        pages=pages,
        choices=choices,
        chosen={"class_name": class_name, "checkpoint": checkpoint, "seed": seed},
    )


@router.get("/images/{image_id}", include_in_schema=False)
def image_panel(request: Request, image_id: int, panel: int = 0) -> Response:
    """One image's row: seed, checkpoint, MD5, how it was made, and the reproduce action."""
    with Session(engine_of(request)) as session:
        model_id, row = image_rows.image_row(session, image_id)
        record = image_rows.image_records(session, [image_id])[0]
        info = generator_rows.get_model(session, model_id)
    return render(
        request,
        "image_panel.html" if panel else "image.html",
        model_id=model_id,
        image=row,
        record=record,
        run_settings=info.training.get("settings") or {},
    )


def _image_file(request: Request, image_id: int) -> image_rows.ImageRow:
    with Session(engine_of(request)) as session:
        return image_rows.image_row(session, image_id)[1]


@router.get("/images/{image_id}/thumbnail", include_in_schema=False)
def image_thumbnail(request: Request, image_id: int) -> Response:
    row = _image_file(request, image_id)
    path = thumbnail(row.file_path, settings_of(request).cache, (row.width, row.height))
    return FileResponse(path, headers=CACHE_A_DAY)


@router.get("/images/{image_id}/file", include_in_schema=False)
def image_file(request: Request, image_id: int) -> Response:
    row = _image_file(request, image_id)
    if not Path(row.file_path).is_file():
        raise GenError(f"the image file {row.file_path} is gone.")
    return FileResponse(row.file_path)


@router.post("/images/{image_id}/reproduce", include_in_schema=False)
def reproduce(request: Request, image_id: int) -> Response:
    _image_file(request, image_id)  # one sentence for an unknown image, before anything is queued
    return queue_job(request, ["reproduce", str(image_id)])


@router.post("/generators/{reference}/sample", include_in_schema=False)
def sample(request: Request, reference: str, count: Number, seed: Annotated[int, Form()] = 0) -> Response:
    if count < 1 or seed < 0:
        raise GenError("sample at least 1 image per class, with a seed of at least 0.")
    with Session(engine_of(request)) as session:
        model_id = generator_rows.resolve_model(session, reference)
    out = f"samples/model-{model_id}"
    return queue_job(
        request,
        [
            "sample",
            "--model",
            str(model_id),
            "--n",
            str(count),
            "--all-classes",
            "--seed",
            str(seed),
            "--out",
            out,
            "--quiet",
        ],
    )


@router.post("/generators/{reference}/report", include_in_schema=False)
def report(request: Request, reference: str, real: Text) -> Response:
    settings = settings_of(request)
    folder = allowed_folder(real, settings.roots, settings.work_dir)
    with Session(engine_of(request)) as session:
        model_id = generator_rows.resolve_model(session, reference)
    return queue_job(
        request, ["report", "--model", str(model_id), "--real", str(folder), "--force", "--quiet"]
    )


@router.post("/generators/{reference}/export", include_in_schema=False)
def export(request: Request, reference: str, license: Text) -> Response:  # noqa: A002 - the form's field
    from gen.export import check_license

    spdx = check_license(license.strip())
    with Session(engine_of(request)) as session:
        model_id = generator_rows.resolve_model(session, reference)
    out = Path("exports") / f"model-{model_id}"
    if (settings_of(request).work_dir / out).exists():
        raise GenError(f"{out} exists already; it is not replaced from here (gen export --force does).")
    return queue_job(
        request, ["export", "--model", str(model_id), "--license", spdx, "--out", str(out), "--quiet"]
    )


@router.post("/generators/{reference}/retrain", include_in_schema=False)
def retrain(request: Request, reference: str, iterations: Number) -> Response:
    if iterations < 1:
        raise GenError("train to at least iteration 1.")
    with Session(engine_of(request)) as session:
        model_id = generator_rows.resolve_model(session, reference)
    return queue_job(request, ["models", "retrain", str(model_id), "--iters", str(iterations), "--quiet"])


@router.post("/generators/{reference}/rename", include_in_schema=False)
def rename(request: Request, reference: str, new_name: Text) -> Response:
    with Session(engine_of(request)) as session:
        model_id = generator_rows.rename_model(session, reference, new_name.strip())
    return redirect(f"/generators/{model_id}")


@router.get("/generators/{reference}/delete", include_in_schema=False)
def confirm_delete(request: Request, reference: str) -> Response:
    with Session(engine_of(request)) as session:
        model_id = generator_rows.resolve_model(session, reference)
        counts = generator_rows.model_dependents(session, model_id)
    return render(
        request,
        "confirm.html",
        what=f"model {model_id}",
        affected={what: count for what, count in counts.items() if count},
        note="Its rows go (image rows included); every file (checkpoints, images) is kept.",
        action=f"/generators/{model_id}/delete",
        back=f"/generators/{model_id}",
    )


@router.post("/generators/{reference}/delete", include_in_schema=False)
def delete(request: Request, reference: str) -> Response:
    with Session(engine_of(request)) as session:
        model_id = generator_rows.resolve_model(session, reference)
        generator_rows.delete_model(session, model_id, cascade=True)  # as gen models delete --cascade --yes
    return redirect("/generators")


# JSON API


@router.get("/api/models", tags=["generators"])
def api_models(request: Request) -> list[dict]:
    """Every model: preset, classes, iterations, images made."""
    with Session(engine_of(request)) as session:
        names = generator_rows.model_names(session)
        return [
            {**dataclasses.asdict(row), "name": names.get(row.id)}
            for row in generator_rows.list_models(session)
        ]


@router.get("/api/models/{reference}", tags=["generators"])
def api_model(request: Request, reference: str) -> dict:
    """Everything recorded about one model (id or name), with its latest report."""
    with Session(engine_of(request)) as session:
        info = _model(session, reference)
        report = report_rows.latest_report(session, info.id)
    return {**dataclasses.asdict(info), "report": [dataclasses.asdict(row) for row in report]}


@router.get("/api/models/{reference}/history", tags=["generators"])
def api_history(request: Request, reference: str) -> list[dict[str, float]]:
    """The rows of the model's history.csv (losses, scores, domain FID by iteration)."""
    with Session(engine_of(request)) as session:
        return history(run_folder(_model(session, reference)))


@router.get("/api/models/{reference}/images", tags=["generators"])
def api_images(
    request: Request,
    reference: str,
    class_name: str = "",
    checkpoint: str = "",
    seed: str = "",
    offset: int = 0,
    limit: int = PAGE_SIZE,
) -> dict:
    """A page of the model's images, filtered by class, checkpoint iteration and seed."""
    with Session(engine_of(request)) as session:
        model_id = generator_rows.resolve_model(session, reference)
        total, rows = image_rows.image_page(
            session,
            model_id,
            **_filters(class_name, checkpoint, seed),
            offset=max(offset, 0),
            limit=min(max(limit, 1), 500),
        )
    return {"total": total, "images": [dataclasses.asdict(row) for row in rows]}


@router.get("/api/images/{image_id}", tags=["generators"])
def api_image(request: Request, image_id: int) -> dict:
    """One image's row and what making it again needs."""
    with Session(engine_of(request)) as session:
        return image_rows.image_records(session, [image_id])[0]
