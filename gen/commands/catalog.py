"""gen data, gen classifiers, and gen models rename/retrain: thin wrappers over gen.datasets and
db.catalog."""

from __future__ import annotations

from pathlib import Path

import click

from gen.cli import RECORD_ID, database_option, device_option, echo_error, open_db
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
    "--delete-files",
    is_flag=True,
    help="Also delete the image files it counted, if unchanged since (never other files; never by default).",
)
@database_option
def data_delete(name: str, yes: bool, delete_files: bool, database_url: str | None) -> None:
    """Delete a data set's record; the models and classifiers trained on it keep theirs. Its image
    files are kept unless --delete-files, which deletes only the images counted at registration
    (read again to prove they are unchanged) and the folders that leaves empty."""
    from sqlalchemy.orm import Session

    from db import catalog
    from gen.datasets import delete, files_to_delete

    engine = open_db(database_url, create=False)
    with Session(engine) as session:
        info = catalog.get_dataset(session, name)
    counts = {"models (unlinked)": info.models, "classifiers (unlinked)": info.classifiers}
    files, notes = None, []
    if delete_files:
        files = files_to_delete(info)
        counts[f"image files in {info.folder}"] = len(files.files)
        if files.kept:
            notes.append(f"these folders stay, holding other files: {files.describe_kept()}")
    confirm_deletion(f"data set {info.name}", counts, yes, notes)
    info, deleted = delete(engine, name, delete_files=delete_files, files=files)
    if deleted is None:
        click.echo(f"deleted data set {info.name} (files kept)")
        return
    if not files.files and not Path(info.folder).is_dir():
        click.echo(f"deleted data set {info.name}; its folder {info.folder} was gone already")
        return
    click.echo(f"deleted data set {info.name} and its {deleted.files} image files")
    if files.kept:
        click.echo(f"kept, as they hold other files: {files.describe_kept()}")
    if deleted.changed:
        echo_error(f"left in place, changed while deleting: {', '.join(map(str, deleted.changed))}")


@click.group("classifiers")
def classifiers() -> None:
    """List, show and delete the domain classifiers that reports train."""


@classifiers.command("list")
@database_option
def classifiers_list(database_url: str | None) -> None:
    """One line per classifier: id, name, architecture, data set, accuracy, created, file."""
    from sqlalchemy.orm import Session

    from db import catalog
    from gen.classifiers import describe_architecture

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        rows = catalog.list_classifiers(session)
    if not rows:
        click.echo(
            "no classifiers yet; train one with gen classifiers train (gen report trains one per data set)"
        )
        return
    click.echo(
        f"{'id':>4}  {'data set':<16} {'accuracy':>8}  {'created':<16}  {'name':<16} "
        f"{'architecture':<20} file"
    )
    for row in rows:
        dataset = row.dataset or row.dataset_fingerprint[:12]
        click.echo(
            f"{row.id:>4}  {dataset:<16} {row.accuracy:>8.4f}  {row.created_at:%Y-%m-%d %H:%M}  "
            f"{row.name or '-':<16} {describe_architecture(row.architecture):<20} {row.path}"
        )


@classifiers.command("show")
@click.argument("classifier_id", metavar="ID|NAME")
@database_option
def classifiers_show(classifier_id: str, database_url: str | None) -> None:
    """Everything recorded about one classifier: settings, history per epoch, per-class F1 and
    confusion matrix (for those trained by gen classifiers train)."""
    import json

    from sqlalchemy.orm import Session

    from db import catalog
    from gen.classifiers import describe_architecture

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        row = catalog.get_classifier(session, classifier_id)
    called = f" {row.name}" if row.name else ""
    click.echo(f"classifier {row.id}{called}, created {row.created_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  data set      {row.dataset or '(not registered)'}  fingerprint {row.dataset_fingerprint}")
    click.echo(f"  accuracy      {row.accuracy:.4f} on held-out images")
    state = "" if Path(row.path).is_file() else "  (file gone)"
    click.echo(f"  file          {row.path}  sha256 {row.sha256[:12]}{state}")
    click.echo(f"  kind          {describe_architecture(row.architecture)}")
    click.echo(f"  architecture  {json.dumps(row.architecture, sort_keys=True)}")
    if row.settings:
        click.echo("  settings")
        for key in sorted(row.settings):
            value = row.settings[key]
            # Sorted keys: PostgreSQL's jsonb hands objects back in an order of its own.
            shown = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
            click.echo(f"    {key:<18} {shown}")
    if row.history:
        click.echo("  history per epoch")
        click.echo("    epoch       loss  train accuracy  validation accuracy")
        for epoch in row.history:
            click.echo(
                f"    {epoch['epoch']:>5} {epoch['loss']:>10.4f} {epoch['train_accuracy']:>15.4f} "
                f"{epoch['validation_accuracy']:>20.4f}"
            )
    classes = row.architecture.get("classes") or []
    if row.per_class_f1:
        click.echo("  F1 per class")
        for name in classes or sorted(row.per_class_f1):
            click.echo(f"    {name:<24} {row.per_class_f1[name]:.4f}")
    if row.confusion_matrix:
        click.echo("  confusion matrix (rows: true class, columns: predicted, in the order above)")
        for name, counts in zip(classes, row.confusion_matrix, strict=False):
            click.echo(f"    {name:<24} " + " ".join(f"{count:>5}" for count in counts))


@classifiers.command("delete")
@click.argument("classifier_id", type=RECORD_ID)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--delete-files", is_flag=True, help="Also delete the classifier's weights file.")
@database_option
def classifiers_delete(classifier_id: int, yes: bool, delete_files: bool, database_url: str | None) -> None:
    """Delete a classifier's row (a later report trains a new one); its file is kept unless
    --delete-files."""
    from sqlalchemy.orm import Session

    from db import catalog
    from gen.deleting import carry_out, plan_deletion

    with Session(open_db(database_url, create=False)) as session:
        row = catalog.get_classifier(session, classifier_id)
        shared = [other.id for other in catalog.list_classifiers(session) if other.path == row.path]
        recorded = [(row.path, row.sha256)] if delete_files and shared == [row.id] else []
        files = plan_deletion(recorded, "sha256")
        confirm_deletion(f"classifier {classifier_id}", {"weights file": len(files.files)}, yes)
        catalog.delete_classifier(session, classifier_id)
    removed = carry_out(files, "sha256")
    if not delete_files:
        click.echo(f"deleted classifier {classifier_id} (file kept)")
    elif removed.files:
        click.echo(f"deleted classifier {classifier_id} and its file")
    elif len(shared) > 1:
        others = ", ".join(str(other) for other in shared if other != row.id)
        click.echo(
            f"deleted classifier {classifier_id}; its file {row.path} stays, classifier {others} uses it"
        )
    elif files.changed or removed.changed:
        click.echo(
            f"deleted classifier {classifier_id}; its file {row.path} stays, it changed since recorded"
        )
    else:
        click.echo(f"deleted classifier {classifier_id}; its file {row.path} was gone already")


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
    "lecam",
    "classifier_weight",
    "balanced_batches",
    "transition",
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
