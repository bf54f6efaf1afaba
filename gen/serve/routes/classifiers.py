"""Classifiers: the classifiers rows with their history and confusion matrix where recorded;
training one is queued as `gen classifiers train ...`, and classifying an uploaded image as
`gen classify FILE --classifier ID` (both jobs, run by gen worker)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from db import classifiers as classifier_rows
from db import datasets as dataset_rows
from db.names import check_name
from gen.checkpoint import atomic_write
from gen.errors import GenError
from gen.jobs import check_job_command
from gen.serve.context import engine_of, queue_job, render, settings_of
from gen.serve.safety import MAX_UPLOAD_BYTES, check_image_upload

router = APIRouter()
ARCHITECTURE = re.compile(r"resnet18|simple|searched:\d+")
OPTIMIZERS = ("adam", "sgd")
UPLOADS = "uploads"  # under the server's folder: where uploaded images wait for their job
Text = Annotated[str, Form()]


@router.get("/classifiers", include_in_schema=False)
def classifiers_page(request: Request) -> Response:
    with Session(engine_of(request)) as session:
        rows = classifier_rows.list_classifiers(session)
        data_sets = dataset_rows.list_datasets(session)
    return render(request, "classifiers.html", classifiers=rows, datasets=data_sets, optimizers=OPTIMIZERS)


@router.post("/classifiers/train", include_in_schema=False)
def train(
    request: Request,
    dataset: Text,
    architecture: Text,
    learning_rate: Annotated[float, Form()],
    optimizer: Text,
    epochs: Annotated[int, Form()],
    name: Annotated[str, Form()] = "",
) -> Response:
    """Queue gen classifiers train on a registered data set."""
    architecture = architecture.strip()
    if not ARCHITECTURE.fullmatch(architecture):
        raise GenError(f"the architecture is resnet18, simple or searched:ID, not {architecture!r}.")
    if optimizer not in OPTIMIZERS:
        raise GenError(f"the optimiser is {' or '.join(OPTIMIZERS)}, not {optimizer!r}.")
    if not 0 < learning_rate < 10 or epochs < 1:
        raise GenError("the learning rate must lie between 0 and 10 and the epochs be at least 1.")
    with Session(engine_of(request)) as session:
        data_set = dataset_rows.get_dataset(session, dataset).name
    arguments = ["classifiers", "train", "--data", data_set, "--arch", architecture]
    arguments += ["--lr", f"{learning_rate:g}", "--optimizer", optimizer, "--epochs", str(epochs)]
    if name.strip():
        check_name(name.strip(), "classifier")
        arguments += ["--name", name.strip()]
    return queue_job(request, arguments)


@router.get("/classifiers/{classifier_id}", include_in_schema=False)
def classifier_page(request: Request, classifier_id: int) -> Response:
    with Session(engine_of(request)) as session:
        row = classifier_rows.get_classifier(session, classifier_id)
    # Recorded by gen classifiers train (where this database's schema has them).
    history = getattr(row, "history", None) or []
    confusion = getattr(row, "confusion_matrix", None)
    return render(
        request,
        "classifier.html",
        classifier=row,
        history=history,
        confusion=confusion,
        class_names=getattr(row, "class_names", None),
        max_upload_mib=MAX_UPLOAD_BYTES // (1024 * 1024),
    )


@router.post("/classifiers/{classifier_id}/classify", include_in_schema=False)
async def classify(request: Request, classifier_id: int) -> Response:
    """Store the uploaded image (checked: size before reading, type and pixel count from its
    header before decoding) and queue gen classify on it."""
    with Session(engine_of(request)) as session:
        classifier_rows.get_classifier(session, classifier_id)
    arguments = ["classify", "UPLOAD", "--classifier", str(classifier_id)]
    check_job_command(arguments)  # before anything is stored
    form = await request.form(max_files=1, max_fields=4)
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise GenError("choose an image file to classify.")
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    suffix = check_image_upload(data)
    folder = settings_of(request).work_dir / UPLOADS
    # Named after its contents: the same image twice is one file, and no upload replaces another.
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    if not path.is_file():
        atomic_write(path, lambda file: file.write(data))
    return queue_job(
        request,
        [
            "classify",
            str(path.relative_to(settings_of(request).work_dir)),
            "--classifier",
            str(classifier_id),
        ],
    )


@router.get("/api/classifiers", tags=["classifiers"])
def api_classifiers(request: Request) -> list[dict]:
    """Every classifiers row: data set, accuracy, architecture, file."""
    with Session(engine_of(request)) as session:
        return [dataclasses.asdict(row) for row in classifier_rows.list_classifiers(session)]


@router.get("/api/classifiers/{classifier_id}", tags=["classifiers"])
def api_classifier(request: Request, classifier_id: int) -> dict:
    with Session(engine_of(request)) as session:
        return dataclasses.asdict(classifier_rows.get_classifier(session, classifier_id))
