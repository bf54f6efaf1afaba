"""Data sets: the registered image folders, their classes and a thumbnail grid per class;
register, rename, move (refused while used) and delete (after a confirmation listing what uses
it). The same functions as gen data (gen.dataset_registry, db.datasets)."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session

from db import datasets as dataset_rows
from gen import dataset_registry
from gen.errors import GenError
from gen.serve.context import engine_of, redirect, render, settings_of
from gen.serve.safety import allowed_folder
from gen.serve.thumbnails import thumbnail

router = APIRouter()
THUMBNAILS_PER_CLASS = 12
Text = Annotated[str, Form()]


@lru_cache(maxsize=256)
def _class_files(folder: str, modified_ns: int) -> tuple[str, ...]:
    """A class folder's image files as training lists them; cached until the folder changes."""
    from gen.image_folder import _files_in

    return tuple(str(path) for path in _files_in(Path(folder)))


def class_files(folder: Path) -> tuple[str, ...]:
    try:
        return _class_files(str(folder), folder.stat().st_mtime_ns)
    except OSError:
        return ()


def _dataset(request: Request, reference: str) -> dataset_rows.DatasetInfo:
    with Session(engine_of(request)) as session:
        return dataset_rows.get_dataset(session, reference)


@router.get("/datasets", include_in_schema=False)
def datasets_page(request: Request) -> Response:
    with Session(engine_of(request)) as session:
        rows = dataset_rows.list_datasets(session)
    return render(request, "datasets.html", datasets=rows, roots=settings_of(request).roots)


@router.post("/datasets", include_in_schema=False)
def register(request: Request, name: Text, folder: Text) -> Response:
    settings = settings_of(request)
    path = allowed_folder(folder, settings.roots, settings.work_dir)
    info = dataset_registry.register(engine_of(request), name.strip(), path)
    return redirect(f"/datasets/{info.id}")


@router.get("/datasets/{reference}", include_in_schema=False)
def dataset_page(request: Request, reference: str) -> Response:
    info = _dataset(request, reference)
    folder = Path(info.folder)
    thumbnails = {
        name: range(min(THUMBNAILS_PER_CLASS, len(class_files(folder / name))))
        for name in (info.classes or {})
    }
    return render(request, "dataset.html", dataset=info, thumbnails=thumbnails, present=folder.is_dir())


@router.get("/datasets/{reference}/thumbnails/{class_name}/{index}", include_in_schema=False)
def dataset_thumbnail(request: Request, reference: str, class_name: str, index: int) -> Response:
    """The index-th file of a class of a registered data set: only files of its folder are served."""
    info = _dataset(request, reference)
    if class_name not in (info.classes or {}):
        raise GenError(f"data set {info.name} has no class {class_name!r}.")
    files = class_files(Path(info.folder) / class_name)
    if not 0 <= index < len(files):
        raise GenError(f"class {class_name} of data set {info.name} has no image {index}.")
    return FileResponse(thumbnail(files[index], settings_of(request).cache), headers=CACHE_A_DAY)


CACHE_A_DAY = {"Cache-Control": "private, max-age=86400"}


@router.post("/datasets/{reference}/rename", include_in_schema=False)
def rename(request: Request, reference: str, new_name: Text) -> Response:
    with Session(engine_of(request)) as session:
        dataset_rows.rename_dataset(session, reference, new_name.strip())
        info = dataset_rows.get_dataset(session, new_name.strip())
    return redirect(f"/datasets/{info.id}")


@router.post("/datasets/{reference}/move", include_in_schema=False)
def move(request: Request, reference: str, folder: Text) -> Response:
    settings = settings_of(request)
    path = allowed_folder(folder, settings.roots, settings.work_dir)
    info = dataset_registry.move(engine_of(request), reference, path)
    return redirect(f"/datasets/{info.id}")


@router.get("/datasets/{reference}/delete", include_in_schema=False)
def confirm_delete(request: Request, reference: str) -> Response:
    info = _dataset(request, reference)
    affected = {"models (unlinked, kept)": info.models, "classifiers (unlinked, kept)": info.classifiers}
    return render(
        request,
        "confirm.html",
        what=f"data set {info.name}",
        affected={k: v for k, v in affected.items() if v},
        note=f"The image files in {info.folder} are kept.",
        action=f"/datasets/{info.id}/delete",
        back=f"/datasets/{info.id}",
    )


@router.post("/datasets/{reference}/delete", include_in_schema=False)
def delete(request: Request, reference: str) -> Response:
    dataset_registry.delete(engine_of(request), reference)  # the rows only: files are never deleted here
    return redirect("/datasets")


# JSON API


@router.get("/api/datasets", tags=["data sets"])
def api_datasets(request: Request) -> list[dict]:
    """Every registered data set: folder, fingerprint, classes with counts, what uses it."""
    with Session(engine_of(request)) as session:
        return [dataclasses.asdict(row) for row in dataset_rows.list_datasets(session)]


@router.get("/api/datasets/{reference}", tags=["data sets"])
def api_dataset(request: Request, reference: str) -> dict:
    """One data set by name or id."""
    return dataclasses.asdict(_dataset(request, reference))
