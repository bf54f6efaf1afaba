"""gen data, gen classifiers, and gen models rename/retrain: thin wrappers over gen.datasets and
db.catalog."""

from __future__ import annotations

from pathlib import Path

import click

from gen.cli import database_option, device_option, open_db
from gen.commands.confirm import confirm_deletion
from gen.errors import GenError


def _classes(classes: dict[str, int] | None) -> str:
    if classes is None:
        return "-"
    return ", ".join(f"{name} ({count})" for name, count in classes.items())


@click.group("data")
def data() -> None:
    """Add (register), list, show, rename, move and delete data sets (named image folders)."""


@data.command("add")
@click.argument("name")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@database_option
def data_add(name: str, folder: Path, quiet: bool, database_url: str | None) -> None:
    """Register FOLDER (FOLDER/<class>/<images>) as data set NAME: its classes, counts and fingerprint."""
    from gen.datasets import register

    info = register(open_db(database_url), name, folder, progress=not quiet)
    click.echo(
        f"data set {info.name}: {info.images} images in {len(info.classes or {})} classes at {info.folder} "
        f"(fingerprint {info.fingerprint[:12]})"
    )


@data.command("list")
@database_option
def data_list(database_url: str | None) -> None:
    """One line per data set: id, name, images, models and classifiers using it, folder."""
    from sqlalchemy.orm import Session

    from db import catalog

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        rows = catalog.list_datasets(session)
    if not rows:
        click.echo("no data sets yet; register one with gen data add NAME FOLDER")
        return
    click.echo(
        f"{'id':>4}  {'name':<16} {'classes':>7} {'images':>7} {'models':>6} {'classifiers':>11}  folder"
    )
    for row in rows:
        images = "-" if row.images is None else str(row.images)
        classes = "-" if row.classes is None else str(len(row.classes))
        click.echo(
            f"{row.id:>4}  {row.name:<16} {classes:>7} {images:>7} {row.models:>6} {row.classifiers:>11}  "
            f"{row.folder}"
        )


@data.command("show")
@click.argument("name")
@click.option("--no-check", is_flag=True, help="Do not read the folder to check its files are unchanged.")
@database_option
def data_show(name: str, no_check: bool, database_url: str | None) -> None:
    """A data set's folder, classes and counts, users, and whether its files changed since."""
    from sqlalchemy.orm import Session

    from db import catalog
    from gen.datasets import CHANGED, MISSING, check

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        info = catalog.get_dataset(session, name)
    click.echo(f"data set {info.id} {info.name}, registered {info.created_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  folder       {info.folder}")
    click.echo(f"  fingerprint  {info.fingerprint}")
    click.echo(f"  classes      {_classes(info.classes)}")
    click.echo(f"  used by      {info.models} models, {info.classifiers} classifiers")
    if not no_check:
        state = check(info)
        notes = {
            CHANGED: "CHANGED since registration: training on it by name is refused",
            MISSING: "MISSING: the folder is gone",
        }
        click.echo(f"  files        {notes.get(state, 'unchanged since registration')}")


@data.command("rename")
@click.argument("name")
@click.argument("new_name")
@database_option
def data_rename(name: str, new_name: str, database_url: str | None) -> None:
    """Rename a data set."""
    from sqlalchemy.orm import Session

    from db import catalog

    with Session(open_db(database_url, create=False)) as session:
        old, new = catalog.rename_dataset(session, name, new_name)
    click.echo(f"renamed data set {old} to {new}")


@data.command("move")
@click.argument("name")
@click.argument("folder", type=click.Path(path_type=Path))
@database_option
def data_move(name: str, folder: Path, database_url: str | None) -> None:
    """Point a data set at FOLDER, which must hold the same files; refused while models or
    classifiers use it."""
    from gen.datasets import move

    info = move(open_db(database_url, create=False), name, folder)
    click.echo(f"data set {info.name} now at {info.folder}")


@data.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--delete-files", is_flag=True, help="Also delete the folder and its images (never by default)."
)
@database_option
def data_delete(name: str, yes: bool, delete_files: bool, database_url: str | None) -> None:
    """Delete a data set's record; the models and classifiers trained on it keep theirs. Its image
    files are kept unless --delete-files."""
    from sqlalchemy.orm import Session

    from db import catalog
    from gen.datasets import delete

    engine = open_db(database_url, create=False)
    with Session(engine) as session:
        info = catalog.get_dataset(session, name)
    counts = {"models (unlinked)": info.models, "classifiers (unlinked)": info.classifiers}
    if delete_files:
        counts[f"image files in {info.folder}"] = info.images or 1
    confirm_deletion(f"data set {info.name}", counts, yes)
    delete(engine, name, delete_files=delete_files)
    kept = "deleted its folder" if delete_files else "files kept"
    click.echo(f"deleted data set {info.name} ({kept})")


@click.group("classifiers")
def classifiers() -> None:
    """List, show and delete the domain classifiers that reports train."""


@classifiers.command("list")
@database_option
def classifiers_list(database_url: str | None) -> None:
    """One line per classifier: id, data set, accuracy, created, file."""
    from sqlalchemy.orm import Session

    from db import catalog

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        rows = catalog.list_classifiers(session)
    if not rows:
        click.echo("no classifiers yet; gen report trains one per data set")
        return
    click.echo(f"{'id':>4}  {'data set':<16} {'accuracy':>8}  {'created':<16}  file")
    for row in rows:
        dataset = row.dataset or row.dataset_fingerprint[:12]
        click.echo(
            f"{row.id:>4}  {dataset:<16} {row.accuracy:>8.4f}  {row.created_at:%Y-%m-%d %H:%M}  {row.path}"
        )


@classifiers.command("show")
@click.argument("classifier_id", type=int)
@database_option
def classifiers_show(classifier_id: int, database_url: str | None) -> None:
    """Everything recorded about one classifier."""
    import json

    from sqlalchemy.orm import Session

    from db import catalog

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        row = catalog.get_classifier(session, classifier_id)
    click.echo(f"classifier {row.id}, created {row.created_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  data set      {row.dataset or '(not registered)'}  fingerprint {row.dataset_fingerprint}")
    click.echo(f"  accuracy      {row.accuracy:.4f} on held-out images")
    state = "" if Path(row.path).is_file() else "  (file gone)"
    click.echo(f"  file          {row.path}  sha256 {row.sha256[:12]}{state}")
    click.echo(f"  architecture  {json.dumps(row.architecture, sort_keys=True)}")


@classifiers.command("delete")
@click.argument("classifier_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--delete-files", is_flag=True, help="Also delete the classifier's weights file.")
@database_option
def classifiers_delete(classifier_id: int, yes: bool, delete_files: bool, database_url: str | None) -> None:
    """Delete a classifier's row (a later report trains a new one); its file is kept unless
    --delete-files."""
    from sqlalchemy.orm import Session

    from db import catalog

    with Session(open_db(database_url, create=False)) as session:
        row = catalog.get_classifier(session, classifier_id)
        confirm_deletion(f"classifier {classifier_id}", {"weights file": int(delete_files)}, yes)
        catalog.delete_classifier(session, classifier_id)
    if delete_files:
        Path(row.path).unlink(missing_ok=True)
    click.echo(f"deleted classifier {classifier_id}" + (" and its file" if delete_files else " (file kept)"))


@click.command("rename")
@click.argument("model")
@click.argument("new_name")
@database_option
def models_rename(model: str, new_name: str, database_url: str | None) -> None:
    """Name a model (an id or its current name); the name then works wherever an id does."""
    from sqlalchemy.orm import Session

    from db import catalog

    with Session(open_db(database_url, create=False)) as session:
        gan_id = catalog.rename_model(session, model, new_name)
    click.echo(f"model {gan_id} is now called {new_name}")


# TrainConfig fields that gen train takes as options of the same name.
RETRAIN_SETTINGS = (
    "preset",
    "batch_size",
    "loss",
    "optimizer",
    "g_lr",
    "d_lr",
    "betas",
    "critic_steps",
    "d_weight_decay",
    "ema_decay",
    "diffaugment",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_every",
    "eval_images",
    "balance",
    "seed",
)


@click.command("retrain")
@click.argument("model")
@click.option("--iters", "iterations", type=click.IntRange(1), required=True, help="Iterations to train to.")
@click.option(
    "--from-scratch",
    is_flag=True,
    help="Train a new model with the same settings and data, linked to this one.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Run folder of the new model (--from-scratch) [default: the old one's name + -retrain-<id>].",
)
@device_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@database_option
@click.pass_context
def models_retrain(
    ctx: click.Context,
    model: str,
    iterations: int,
    from_scratch: bool,
    out: Path | None,
    device: str,
    quiet: bool,
    database_url: str | None,
) -> None:
    """Train a model further (as gen train --resume in its run folder), or --from-scratch again
    with the same settings and data as a new model that records which one it retrains."""
    from sqlalchemy.orm import Session

    from db import catalog, queries, recording
    from gen.cli import train

    with Session(open_db(database_url, create=False)) as session:
        gan_id = catalog.resolve_model(session, model)
        info = queries.get_model(session, gan_id)
        dataset = catalog.model_dataset(session, gan_id)
    settings = info.training.get("settings") or {}
    run_dir = settings.get("run_dir")
    if not run_dir:
        raise GenError(f"model {gan_id} has no recorded run folder (it was adopted from a checkpoint).")
    common = {"iterations": iterations, "device": device, "quiet": quiet, "database_url": database_url}
    if not from_scratch:
        if out is not None:
            raise GenError("--out is only for --from-scratch; a retrain continues in the model's run folder.")
        ctx.invoke(train, resume=True, out=Path(run_dir), data=None, **common)
        return
    out = out or Path(f"{run_dir}-retrain-{gan_id}")
    options = {key: settings[key] for key in RETRAIN_SETTINGS if settings.get(key) is not None}
    if options.get("betas") is not None:
        options["betas"] = tuple(options["betas"])
    options["precision"] = "bf16" if settings.get("mixed_precision", True) else "fp32"
    data_folder = dataset or settings.get("data") or info.training.get("dataset_path")
    ctx.invoke(train, resume=False, out=out, data=data_folder, **common, **options)
    with Session(open_db(database_url, create=False)) as session:
        new_id = recording.model_for_run_folder(session, out)
        if new_id is not None:
            catalog.set_retrained_from(session, new_id, gan_id)
    click.echo(f"model {new_id} retrains model {gan_id} from scratch")
