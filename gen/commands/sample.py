"""gen sample and gen reproduce: thin click wrappers over gen.sample and gen.reproduce."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gen.commands.options import (
    RECORD_ID,
    batch_size_option,
    checkpoint_choice,
    database_option,
    device_option,
    echo_error,
    min_class_confidence_option,
    min_near_copy_distance_option,
    model_option,
    open_db,
    out_option,
    quiet_option,
    seed_option,
    train_dir_option,
)
from gen.errors import GenError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from gen.curation import CurationSettings
    from gen.sample import SampleResult


@click.command()
@model_option
@click.option(
    "--checkpoint",
    help="best, latest or an iteration of the model (best: the lowest domain FID measured while "
    "training with --eval-every), or a checkpoint file or run folder (its latest).  [default: latest]",
)
@click.option("--n", "count", type=click.IntRange(1), required=True, help="Images per class.")
@click.option("--class", "class_names", multiple=True, help="A class to sample (repeatable).")
@click.option("--all-classes", is_flag=True, help="Sample every class of the model.")
@out_option("Folder the images go to, one sub-folder per class.", default=Path("samples"))
@seed_option
@batch_size_option("Images generated per forward pass (recorded: reproduce uses the same).", default=256)
@device_option
@click.option("--no-record", is_flag=True, help="Do not record the images in the database.")
@click.option(
    "--keep-best",
    type=float,
    metavar="FRACTION",
    help="Curate: draw ceil(N / FRACTION) candidates per class and keep the N best (gen.curation).",
)
@min_class_confidence_option(
    "Curate: keep only images the curating classifier gives at least P for their class."
)
@min_near_copy_distance_option(
    "Curate: keep only images at least D (pixels in [0, 1]) from every training image of their class."
)
@train_dir_option("Curate: the real training images [default: the folder the checkpoint was trained on].")
@click.option(
    "--curation-epochs",
    type=click.IntRange(1),
    default=15,
    show_default=True,
    help="Curate: epochs of the curating classifier (trained once per data set, then cached).",
)
@quiet_option()
@database_option
def sample(
    model_id: str | None,
    checkpoint: str | None,
    count: int,
    class_names: tuple[str, ...],
    all_classes: bool,
    out: Path,
    seed: int,
    batch_size: int,
    device: str,
    no_record: bool,
    keep_best: float | None,
    min_class_confidence: float | None,
    min_near_copy_distance: float | None,
    train_dir: Path | None,
    curation_epochs: int,
    quiet: bool,
    database_url: str | None,
) -> None:
    """Sample labelled 64x64 PNGs into OUT/<class>/, one database row per image.

    Files are never overwritten: new names continue the numbering. The same checkpoint, class,
    count and --seed give byte-identical files on the same machine and settings, and every
    pixel within one level on any other; rerunning an interrupted request completes it
    without duplicates.

    With --keep-best or a --min-* threshold, more candidates are drawn and scored (the
    curating classifier's confidence in the class, the discriminator's realism, the distance to
    the nearest training image) and only the kept ones are written; a line per class says how
    many were drawn, kept and rejected and why.
    """
    from gen.sample import sample as run_sampling

    if bool(class_names) == all_classes:
        raise GenError(
            "name the classes with --class (repeatable) or ask for --all-classes, not both or neither."
        )
    curation = curation_settings(
        keep_best, min_class_confidence, min_near_copy_distance, curation_epochs, train_dir
    )
    checkpoint_path, state, engine = checkpoint_to_sample(model_id, checkpoint, no_record, database_url)
    result = run_sampling(
        state,
        out,
        count,
        None if all_classes else class_names,
        seed=seed,
        batch_size=batch_size,
        device=device,
        database=None if no_record else engine,
        progress=not quiet,
        curation=curation,
        train_dir=train_dir,
    )
    echo_sampled(result, out, checkpoint_path, count)


def curation_settings(
    keep_best: float | None,
    min_class_confidence: float | None,
    min_near_copy_distance: float | None,
    curation_epochs: int,
    train_dir: Path | None,
) -> CurationSettings | None:
    """The curation asked for by --keep-best or a --min-* threshold; None when none is."""
    if keep_best is not None or min_class_confidence is not None or min_near_copy_distance is not None:
        from gen.curation import CurationSettings

        return CurationSettings(keep_best, min_class_confidence, min_near_copy_distance, curation_epochs)
    if train_dir is not None:
        raise GenError("--train is for curation; add --keep-best or a --min-* threshold.")
    return None


def checkpoint_to_sample(
    model_id: str | None, checkpoint: str | None, no_record: bool, database_url: str | None
) -> tuple[Path, dict[str, Any], Engine | None]:
    """The checkpoint --model and --checkpoint name, read, and the database to record in (None
    with --no-record and a checkpoint file)."""
    from gen.checkpoint import load_checkpoint, resolve_checkpoint
    from gen.provenance import model_checkpoint, recorded_model

    which: str | int | None = "latest"
    if checkpoint is not None and not Path(checkpoint).exists():
        which = checkpoint_choice(checkpoint)
        if which is None:
            raise GenError(f"checkpoint {checkpoint} does not exist (nor is it best, latest or a number).")
        checkpoint = None
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if model_id is not None and checkpoint is not None:
        raise GenError("give --model or a checkpoint file, not both.")
    if checkpoint is not None:
        # Read (and so check) a given checkpoint before a database is opened or created for it.
        checkpoint_path = resolve_checkpoint(checkpoint)
        state = load_checkpoint(checkpoint_path)
    engine = None
    if not (no_record and checkpoint is not None):
        # Sampling a recorded model needs a database that exists; only a checkpoint can start one.
        engine = open_db(database_url, create=checkpoint is not None)
    if checkpoint is None:
        checkpoint_path, _ = model_checkpoint(recorded_model(engine, model_id), which)
        state = load_checkpoint(checkpoint_path)
    return checkpoint_path, state, engine


def echo_sampled(result: SampleResult, out: Path, checkpoint_path: Path, count: int) -> None:
    """What was written, and for a curated request a line per class: kept, rejected and why."""
    done = f"; {result.skipped} were already there" if result.skipped else ""
    click.echo(
        f"wrote {len(result.images)} images to {out}/ from {checkpoint_path} "
        f"({result.images_per_second:.0f} images/s){done}"
    )
    for name, record in (result.curation or {}).items():
        reasons = ", ".join(f"{count} {reason}" for reason, count in record.rejected.items()) or "none"
        resumed = f", {record.resumed} kept by an earlier run" if record.resumed else ""
        click.echo(
            f"{name}: kept {record.kept} of {record.candidates} candidates (rejected: {reasons}){resumed}"
        )
        if record.kept + record.resumed < count:
            echo_error(f"note: {name}: only {record.kept + record.resumed} of {count} candidates passed.")


@click.command()
@click.argument("image_ids", nargs=-1, required=True, type=RECORD_ID, metavar="IMAGE_ID...")
@device_option
@database_option
def reproduce(image_ids: tuple[int, ...], device: str, database_url: str | None) -> None:
    """Make recorded images again from their rows and compare them with their records.

    Each image is regenerated from its checkpoint, class, seed and index, in a batch of the size
    it was made in, and reported as exact (the recorded MD5: expected on the machine that made
    it, with the same torch, device, batch size and threads), within tolerance (every pixel
    within one level of the file: expected on any other machine) or differs. Exits 1 if any
    image differs.
    """
    from sqlalchemy.orm import Session

    from db import images as image_rows
    from gen.reproduce import DIFFERS, EXACT, ImageRecord, reproduce

    engine = open_db(database_url, create=False, read_only=True)
    with Session(engine) as session:
        records = [ImageRecord(**row) for row in image_rows.image_records(session, list(image_ids))]
    results = reproduce(records, device=device)
    for result in results:
        record = result.record
        click.echo(
            f"image {record.id} ({record.class_name}, seed {record.seed}, index {record.sample_index}): "
            f"{result.describe()}"
        )
    counts = {verdict: sum(r.verdict == verdict for r in results) for verdict in (EXACT, DIFFERS)}
    within = len(results) - counts[EXACT] - counts[DIFFERS]
    summary = f"{counts[EXACT]} exact, {within} within one level, {counts[DIFFERS]} differ"
    if counts[DIFFERS]:
        raise GenError(f"{summary}: some images could not be made again.")
    click.echo(summary)
