"""gen classifiers train and gen classify: thin click wrappers over gen.classifiers."""

from __future__ import annotations

from pathlib import Path

import click

from gen.cli import SKIPPED_SHOWN, database_option, device_option, echo_error, open_db, seed_option
from gen.errors import GenError


@click.command("train")
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Image folder DATA/<class>/<images> (it registers itself), or a data set's name (gen data).",
)
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
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True, help="Images per step.")
@click.option(
    "--validation",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of each class held out (seeded) for the validation figures.",
)
@click.option("--name", help="A name for the classifier, accepted wherever its id is.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("classifiers"),
    show_default=True,
    help="Folder for the weights file (NAME.pt, else classifier-N.pt; never overwritten).",
)
@seed_option
@device_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
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
    from gen.datasets import training_folder

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
        echo_error(f"warning: skipped {len(trained.skipped)} files that are not readable images:")
        for line in trained.skipped[:SKIPPED_SHOWN]:
            echo_error(f"  {line}")
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
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
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
            echo_error(f"warning: skipped {len(skipped)} files that are not readable images:")
            for line in skipped[:SKIPPED_SHOWN]:
                echo_error(f"  {line}")
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
