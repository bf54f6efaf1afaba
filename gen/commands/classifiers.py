"""gen classifiers and gen classify: train, list, show and delete recorded classifiers, and label
images with one (thin wrappers over gen.classifiers and db.classifiers)."""

from __future__ import annotations

from pathlib import Path

import click

from gen.commands.confirm import confirm_deletion
from gen.commands.options import (
    DATA_HELP,
    RECORD_ID,
    SKIPPED_SHOWN,
    batch_size_option,
    data_option,
    database_option,
    delete_files_option,
    device_option,
    echo_error,
    echo_skipped,
    name_option,
    open_db,
    out_option,
    quiet_option,
    seed_option,
    validation_option,
    yes_option,
)
from gen.errors import GenError


@click.group("classifiers")
def classifiers() -> None:
    """List, show and delete the domain classifiers that reports train."""


@classifiers.command("list")
@database_option
def classifiers_list(database_url: str | None) -> None:
    """One line per classifier: id, name, architecture, data set, accuracy, created, file."""
    from sqlalchemy.orm import Session

    from db import classifiers as classifier_rows
    from gen.classifiers import describe_architecture

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        rows = classifier_rows.list_classifiers(session)
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

    from db import classifiers as classifier_rows
    from gen.classifiers import describe_architecture

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        row = classifier_rows.get_classifier(session, classifier_id)
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
@yes_option
@delete_files_option("Also delete the classifier's weights file.")
@database_option
def classifiers_delete(classifier_id: int, yes: bool, delete_files: bool, database_url: str | None) -> None:
    """Delete a classifier's row (a later report trains a new one); its file is kept unless
    --delete-files."""
    from sqlalchemy.orm import Session

    from db import classifiers as classifier_rows
    from gen.deleting import carry_out, plan_deletion

    with Session(open_db(database_url, create=False)) as session:
        row = classifier_rows.get_classifier(session, classifier_id)
        shared = [other.id for other in classifier_rows.list_classifiers(session) if other.path == row.path]
        recorded = [(row.path, row.sha256)] if delete_files and shared == [row.id] else []
        files = plan_deletion(recorded, "sha256")
        confirm_deletion(f"classifier {classifier_id}", {"weights file": len(files.files)}, yes)
        classifier_rows.delete_classifier(session, classifier_id)
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


@classifiers.command("train")
@data_option(DATA_HELP, required=True)
@click.option(
    "--arch",
    default="simple",
    show_default=True,
    metavar="simple|resnet18|searched:ID",
    help="The project's small CNN, a torchvision ResNet (resnet18, resnet34, resnet50; built without "
    "downloaded weights), or the architecture of classifier ID found by gen search --stage classifier.",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    help="Start from this local state dict (e.g. torchvision's resnet18-f37072fd.pth); a head for "
    "another number of classes starts afresh.",
)
@click.option(
    "--lr",
    "learning_rate",
    type=click.FloatRange(0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Learning rate.",
)
@click.option(
    "--optimizer",
    type=click.Choice(["adam", "sgd"]),
    default="adam",
    show_default=True,
    help="Optimiser (sgd: momentum 0.9).",
)
@click.option(
    "--epochs", type=click.IntRange(1), default=20, show_default=True, help="Passes over the images."
)
@batch_size_option("Images per step.", default=64)
@validation_option("Share of each class held out (seeded) for the validation figures.")
@name_option("A name for the classifier, accepted wherever its id is.")
@out_option(
    "Folder for the weights file (NAME.pt, else classifier-N.pt; never overwritten).",
    default=Path("classifiers"),
)
@seed_option
@device_option
@quiet_option()
@database_option
def classifiers_train(
    data: Path,
    arch: str,
    weights: Path | None,
    learning_rate: float,
    optimizer: str,
    epochs: int,
    batch_size: int,
    validation: float,
    name: str | None,
    out: Path,
    seed: int,
    device: str,
    quiet: bool,
    database_url: str | None,
) -> None:
    """Train an image classifier on a data set and record it: settings, history per epoch,
    validation accuracy, per-class F1 and confusion matrix, weights file and its SHA-256.

    The first line printed is the classifier's id. Label images with it: gen classify.
    """
    from gen.classifiers import ClassifierSettings, parse_arch, train_classifier
    from gen.dataset_registry import training_folder

    parse_arch(arch)  # a mistyped --arch is refused before a database is opened
    folder, data_set = training_folder(database_url, data)
    settings = ClassifierSettings(
        arch=arch,
        epochs=epochs,
        learning_rate=learning_rate,
        optimizer=optimizer,
        batch_size=batch_size,
        validation=validation,
        seed=seed,
        weights=str(weights) if weights is not None else None,
    )
    trained = train_classifier(
        folder,
        settings,
        name=name,
        out=out,
        data_set=data_set,
        database=open_db(database_url),
        device=device,
        progress=not quiet,
    )
    if trained.skipped:
        echo_skipped(trained.skipped)
    for note in trained.notes:
        echo_error(f"note: {note}")
    called = f" {trained.name}" if trained.name else ""
    click.echo(f"classifier {trained.id}{called}")
    click.echo(
        f"trained classifier {trained.id} ({arch}, {epochs} epoch{'s' if epochs > 1 else ''}): "
        f"validation accuracy {trained.accuracy:.4f}, macro F1 {trained.macro_f1:.4f} on "
        f"{trained.settings['validation_images']} held-out images; {trained.path} "
        f"({trained.images_per_second:.0f} images/s)"
    )


@click.command("classify")
@click.argument(
    "inputs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="IMAGE_OR_FOLDER..."
)
@click.option(
    "--classifier", required=True, metavar="NAME_OR_ID", help="A classifier (gen classifiers list)."
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write file,label,probability rows to this new file instead of printing them.",
)
@device_option
@quiet_option()
@database_option
def classify(
    inputs: tuple[Path, ...],
    classifier: str,
    csv_path: Path | None,
    device: str,
    quiet: bool,
    database_url: str | None,
) -> None:
    """Label images with a recorded classifier: each file's label and its probability.

    Folders are read below them (hidden files left out) and streamed in batches; files that are
    not readable images are skipped with a warning. Without --csv one line per image is printed:
    file, label, probability, separated by tabs.
    """
    import time

    from gen.classifiers import classify_images, write_predictions_csv

    skipped: list[str] = []
    started = time.perf_counter()
    predictions = classify_images(
        inputs,
        classifier,
        database=open_db(database_url, create=False, read_only=True),
        device=device,
        progress=not quiet,
        on_skipped=skipped.append,
    )
    try:
        if csv_path is not None:
            count = write_predictions_csv(predictions, csv_path)
        else:
            count = 0
            for prediction in predictions:
                click.echo(f"{prediction.file}\t{prediction.label}\t{prediction.probability:.4f}")
                count += 1
    finally:  # said also when nothing could be labelled
        if skipped:
            echo_skipped(skipped)
            if len(skipped) > SKIPPED_SHOWN:
                echo_error(f"  ... and {len(skipped) - SKIPPED_SHOWN} more")
    if count == 0:
        raise GenError("no readable image to label.")
    rate = count / max(time.perf_counter() - started, 1e-9)
    where = f" into {csv_path}" if csv_path is not None else ""
    message = f"labelled {count} images with classifier {classifier}{where} ({rate:.0f} images/s)"
    if csv_path is not None:
        click.echo(message)
    else:
        echo_error(message)
