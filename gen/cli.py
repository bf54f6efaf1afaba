"""The ``gen`` command line: thin click wrappers over functions that are useful on their own.

Success is quiet (a line saying what was made and where); failure is loud (one sentence on
stderr and a non-zero exit). Long work shows a progress bar on stderr.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from db.errors import UserError
from gen import __version__
from gen.architecture import PRESETS
from gen.errors import GenError
from gen.presets import LOSS_NAMES, OPTIMIZERS


class GenGroup(click.Group):
    """Turns a GenError anywhere below into click's one-line ``Error: ...`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import OperationalError

        try:
            return super().invoke(ctx)
        except UserError as error:  # gen.errors.GenError and db's own
            raise click.ClickException(str(error)) from None
        except OperationalError as error:
            from db.errors import disk_full

            if disk_full(error):
                raise click.ClickException(
                    "the database's disk is full; what this command wrote before is whole, free some space "
                    "and run it again to complete the rest."
                ) from None
            if "locked" not in str(error.orig):
                raise
            # SQLite waits DATABASE_BUSY_TIMEOUT_S for another writer first (db.session); what
            # this command wrote before is whole, and rerunning it completes the rest.
            raise click.ClickException(
                "the database stayed locked by another gen process; nothing half-written was left, "
                "run the command again once the other one has finished."
            ) from None


@click.group(cls=GenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gen")
def cli() -> None:
    """Turn a small labelled folder of microscopy images into a large, labelled, verified
    synthetic data set.

    \b
    Typical session:
      gen demo-data --out data/phantoms
      gen train --data data/phantoms --out runs/demo --preset cpu --iters 200
      gen sample --checkpoint runs/demo --n 100 --all-classes --out samples/
    """


def echo_error(message: str) -> None:
    click.secho(message, err=True, fg="yellow")


database_option = click.option(
    "--db",
    "database_url",
    envvar="GEN_DATABASE_URL",
    metavar="URL",
    help="Database URL [default: $GEN_DATABASE_URL, else sqlite:///gen.db here]; "
    "e.g. postgresql://user@127.0.0.1:5432/gen.",
)


# Seeds go to torch.Generator.manual_seed and numpy, are mixed into other streams and stored in
# INTEGER columns: one range that all of them accept, checked where the seed enters.
MAX_SEED = 2**31 - 1
seed_option = click.option(
    "--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Random seed."
)


def check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--device checked by gen.runtime.resolve_device as the command starts, before it reads or
    writes anything: a device this machine lacks is one sentence, not a failure halfway."""
    if value not in ("auto", "cpu"):
        from gen.runtime import resolve_device

        resolve_device(value)
    return value


device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda", "mps"]),
    default="auto",
    show_default=True,
    callback=check_device,
    help="Where the networks run; auto means CUDA when torch sees a GPU, else Apple's MPS, else the CPU.",
)


class RecordId(click.ParamType):
    """An id of a row (model, image, classifier, search, job): a whole number from 1 to 2**63-1,
    read by db.catalog.as_id like the ids in ID|NAME arguments."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from db.catalog import MAX_ID, as_id

        try:
            number = as_id(value)
        except UserError as error:
            self.fail(str(error), param, ctx)
        if number is None:
            self.fail(f"{value!r} is not an id: ids are whole numbers from 1 to {MAX_ID}.", param, ctx)
        return number


RECORD_ID = RecordId()


def open_db(url: str | None, *, create: bool = True, read_only: bool = False) -> Any:
    from db import open_database

    return open_database(url, create=create, read_only=read_only)


@cli.command("demo-data")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder to create (one sub-folder per class).",
)
@click.option("--per-class", default=100, show_default=True, type=click.IntRange(1), help="Images per class.")
@seed_option
def demo_data(out: Path, per_class: int, seed: int) -> None:
    """Write procedural cytology-like phantom images (4 classes), so that no download is needed."""
    from gen.phantoms import write_phantoms

    counts = write_phantoms(out, per_class=per_class, seed=seed)
    click.echo(f"wrote {sum(counts.values())} phantom images in {len(counts)} classes to {out}/")


SKIPPED_SHOWN = 10
SKIPPED_LOG = "skipped-images.txt"


def report_skipped_files(skipped: Sequence[str], run_dir: Path) -> None:
    """Each skipped training file with why; past SKIPPED_SHOWN, in a file in the run folder."""
    echo_error(f"warning: skipped {len(skipped)} files that are not readable images:")
    for line in skipped[:SKIPPED_SHOWN]:
        echo_error(f"  {line}")
    if len(skipped) > SKIPPED_SHOWN:
        log = run_dir / SKIPPED_LOG
        log.write_text("".join(f"{line}\n" for line in skipped), encoding="utf-8")
        echo_error(f"  ... and {len(skipped) - SKIPPED_SHOWN} more, all listed in {log}")


@cli.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Image folder DATA/<class>/<images> (it registers itself), or a data set's name (gen data).",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Run folder for checkpoints and grids."
)
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    default=None,
    envvar="GEN_PRESET",
    help="Networks and training recipe: the source's paper/small, cpu (ours for a CPU), reference, "
    "the source's baselines dcgan, wgan, wgan-gp, bgan, began, and tiny (for tests) (see "
    "gen/presets.py)  [default: $GEN_PRESET, else the best for the device: cpu on a CPU, small on a GPU].",
)
@click.option(
    "--iters",
    "iterations",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Iterations to train to (with --resume: the total, counting those already done).",
)
@click.option(
    "--minutes",
    "max_minutes",
    type=click.FloatRange(0, min_open=True),
    help="Stop (with a checkpoint) after this many minutes of training.",
)
@click.option("--batch-size", type=click.IntRange(1), help="Images per step [default: the preset's].")
@click.option("--loss", type=click.Choice(LOSS_NAMES), help="Objective [default: the preset's].")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Optimiser [default: the preset's].")
@click.option("--g-lr", type=click.FloatRange(0), help="Generator learning rate [default: the preset's].")
@click.option("--d-lr", type=click.FloatRange(0), help="Discriminator learning rate [default: the preset's].")
@click.option(
    "--betas", type=(float, float), default=None, help="Adam's beta1 beta2 [default: the preset's]."
)
@click.option("--critic-steps", type=click.IntRange(1), help="D steps per G step [default: the preset's].")
@click.option("--d-weight-decay", type=click.FloatRange(0), help="Weight decay on D [default: the preset's].")
@click.option("--ema-decay", type=click.FloatRange(0, 1), help="Generator EMA decay [default: the preset's].")
@click.option(
    "--diffaugment",
    help="DiffAugment policy, e.g. color,translation or '', NAME@P to apply NAME to a share P of the "
    "images (color@0.5) [default: the preset's].",
)
@click.option(
    "--lecam",
    type=click.FloatRange(0),
    help="LeCam regularisation weight on D, 0: off [default: the preset's].",
)
@click.option(
    "--classifier-weight",
    type=click.FloatRange(0),
    help="Weight of an auxiliary class head on D (trained on real images; G is scored by it too), "
    "0: off [default: the preset's].",
)
@click.option(
    "--transition",
    type=(click.IntRange(0), click.IntRange(1)),
    default=None,
    help="Transitional conditioning: the class signal ramps from 0 at iteration START to full at END "
    "[default: the preset's].",
)
@click.option(
    "--balanced-batches/--no-balanced-batches",
    default=None,
    help="Draw every class equally often in a batch [default: the preset's].",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Write a checkpoint (and a progress grid) every N iterations.",
)
@click.option(
    "--keep-checkpoints",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Newest checkpoints kept; the best one (--eval-every) is kept too.",
)
@click.option(
    "--eval-every",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Every N iterations, checkpoint and measure normalised domain FID; the best is kept (0: never).",
)
@click.option(
    "--eval-images",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Images per class per evaluation.",
)
@click.option(
    "--balance", type=click.IntRange(1), help="Top every class up to N images with affine augmentation."
)
@seed_option
@device_option
@click.option(
    "--precision",
    type=click.Choice(["bf16", "fp32"]),
    default="bf16",
    show_default=True,
    help="bf16 autocast on CUDA (the CPU always trains in fp32).",
)
@click.option(
    "--architecture",
    "architecture_id",
    type=RECORD_ID,
    help="Train the networks of this model's gan_architectures row (e.g. a search's best); "
    "the preset gives the training recipe.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@database_option
def train(
    resume: bool,
    quiet: bool,
    architecture_id: int | None,
    data: Path | None,
    out: Path,
    iterations: int,
    precision: str,
    database_url: str | None,
    **settings: Any,
) -> None:
    """Train a class-conditional self-attention GAN on an image folder.

    The model, its classes, settings and every checkpoint are recorded in the database;
    the first line printed is the model's id. Checkpoints are written atomically every
    --checkpoint-every iterations and at the end; Ctrl-C saves one and stops. Under
    `torchrun --nproc_per_node=K` the same command trains on K processes with
    DistributedDataParallel.
    """
    from gen.train import train as run_training
    from gen.train_config import RunStart, TrainConfig

    if data is None and not resume:
        raise GenError("--data is required (except with --resume, which reuses the run's data folder).")
    from gen.datasets import training_folder

    if resume:
        # Left out, these keep the run's own values; given, the resumed run uses them.
        context = click.get_current_context()
        for name in ("checkpoint_every", "keep_checkpoints"):
            if context.get_parameter_source(name) in (None, click.core.ParameterSource.DEFAULT):
                settings[name] = None
    data_set = None  # a registered data set's name, when --data named one
    if data is not None:
        data, data_set = training_folder(database_url, data)
    if settings["preset"] is None:  # a resume keeps its run's preset whatever this says
        from gen.presets import default_preset
        from gen.runtime import resolve_device

        settings["preset"] = default_preset(resolve_device(settings["device"]).type)
    config = TrainConfig(
        data=str(data) if data else "",
        out=str(out),
        iterations=iterations,
        mixed_precision=precision == "bf16",
        **settings,
    )
    if not resume:
        config.validate()  # before a database or run folder is made for a run that cannot start
    # Opened (and so checked) before the data is read. Under torchrun only rank 0 records (its
    # callbacks are the only ones called); the others must not race it to create the schema.
    engine = open_db(database_url) if os.environ.get("RANK", "0") == "0" else None

    def on_start(start: RunStart) -> None:
        if start.skipped_files:
            report_skipped_files(start.skipped_files, Path(start.config.out))
        for note in start.notes:
            echo_error(note)
        click.echo(f"model {start.model_id}")

    architecture = None
    if architecture_id is not None and engine is not None:
        from gen.architecture import from_json
        from gen.provenance import recorded_model

        recorded = recorded_model(engine, architecture_id)
        architecture = (from_json(recorded.generator), from_json(recorded.discriminator))
    result = run_training(
        config,
        resume=resume,
        progress=not quiet,
        database=engine,
        data_set=data_set,
        on_start=on_start,
        architecture=architecture,
    )
    if result.interrupted:
        echo_error(
            f"interrupted at iteration {result.iteration}; saved {result.checkpoint}; continue with --resume"
        )
        sys.exit(130)
    budget = f" (--minutes {config.max_minutes:g} reached)" if result.out_of_time else ""
    best = f"; best {result.best}" if result.best is not None else ""
    click.echo(
        f"trained model {result.model_id} to iteration {result.iteration}{budget}: {result.checkpoint} "
        f"({result.images_per_second:.0f} images/s){best}"
    )


@cli.command()
@click.option("--model", "model_id", metavar="ID|NAME", help="Model id or name [default: the latest model].")
@click.option(
    "--checkpoint",
    help="best, latest or an iteration of the model (best: the lowest domain FID measured while "
    "training with --eval-every), or a checkpoint file or run folder (its latest).  [default: latest]",
)
@click.option("--n", "count", type=click.IntRange(1), required=True, help="Images per class.")
@click.option("--class", "class_names", multiple=True, help="A class to sample (repeatable).")
@click.option("--all-classes", is_flag=True, help="Sample every class of the model.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("samples"),
    show_default=True,
    help="Folder the images go to, one sub-folder per class.",
)
@seed_option
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Images generated per forward pass (recorded: reproduce uses the same).",
)
@device_option
@click.option("--no-record", is_flag=True, help="Do not record the images in the database.")
@click.option(
    "--keep-best",
    type=float,
    metavar="FRACTION",
    help="Curate: draw ceil(N / FRACTION) candidates per class and keep the N best (gen.curation).",
)
@click.option(
    "--min-class-confidence",
    type=float,
    metavar="P",
    help="Curate: keep only images the curating classifier gives at least P for their class.",
)
@click.option(
    "--min-near-copy-distance",
    type=float,
    metavar="D",
    help="Curate: keep only images at least D (pixels in [0, 1]) from every training image of their class.",
)
@click.option(
    "--train",
    "train_dir",
    type=click.Path(path_type=Path),
    help="Curate: the real training images [default: the folder the checkpoint was trained on].",
)
@click.option(
    "--curation-epochs",
    type=click.IntRange(1),
    default=15,
    show_default=True,
    help="Curate: epochs of the curating classifier (trained once per data set, then cached).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
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
    from gen.checkpoint import load_checkpoint, resolve_checkpoint
    from gen.provenance import model_checkpoint, recorded_model
    from gen.sample import sample as run_sampling

    if bool(class_names) == all_classes:
        raise GenError(
            "name the classes with --class (repeatable) or ask for --all-classes, not both or neither."
        )
    curation = None
    if keep_best is not None or min_class_confidence is not None or min_near_copy_distance is not None:
        from gen.curation import CurationSettings

        curation = CurationSettings(keep_best, min_class_confidence, min_near_copy_distance, curation_epochs)
    elif train_dir is not None:
        raise GenError("--train is for curation; add --keep-best or a --min-* threshold.")
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


@cli.command()
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

    from db import queries
    from gen.reproduce import DIFFERS, EXACT, ImageRecord, reproduce

    engine = open_db(database_url, create=False, read_only=True)
    with Session(engine) as session:
        records = [ImageRecord(**row) for row in queries.image_records(session, list(image_ids))]
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


@cli.group()
def models() -> None:
    """List, show, rename, retrain and delete the models in the database."""


@models.command("list")
@database_option
def models_list(database_url: str | None) -> None:
    """One line per model: id, preset, classes, iterations, images, created."""
    from sqlalchemy.orm import Session

    from db import queries

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        rows = queries.list_models(session)
    if not rows:
        click.echo("no models yet; train one with gen train")
        return
    click.echo(f"{'id':>4}  {'preset':<7} {'iterations':>10} {'images':>8}  {'created':<16}  classes")
    for row in rows:
        created = row.created_at.strftime("%Y-%m-%d %H:%M")
        # A model without a checkpoint is training towards its first, or its run was killed
        # before it (a new run in that folder removes it; so does gen models delete).
        unfinished = "" if row.checkpoints else "  (no checkpoint)"
        click.echo(
            f"{row.id:>4}  {row.preset or '-':<7} {row.iterations:>10} {row.image_count:>8}  {created:<16}  "
            f"{', '.join(row.class_names)}{unfinished}"
        )


@models.command("show")
@click.argument("model_id", metavar="ID|NAME")
@database_option
def models_show(model_id: str, database_url: str | None) -> None:
    """Architecture, training parameters, checkpoints and image counts of one model."""
    import json

    from sqlalchemy.orm import Session

    from db import catalog, queries
    from gen.architecture import from_json

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        model_id = catalog.resolve_model(session, model_id)
        info = queries.get_model(session, model_id)
        report = queries.latest_report(session, model_id)
        name, dataset = catalog.model_name(session, model_id), catalog.model_dataset(session, model_id)
    generator, discriminator = from_json(info.generator), from_json(info.discriminator)
    called = f" {name}" if name else ""
    click.echo(
        f"model {info.id}{called} ({info.preset or 'custom'}), created {info.created_at:%Y-%m-%d %H:%M} UTC"
    )
    if dataset:
        click.echo(f"  data set       {dataset}")
    click.echo(f"  generator      {generator.encoding()}  channels {list(generator.channels)}")
    click.echo(f"  discriminator  {discriminator.encoding()}  channels {list(discriminator.channels)}")
    click.echo(
        "  classes        "
        + ", ".join(f"{name} ({info.image_counts[name]} images)" for name in info.class_names)
    )
    click.echo("  training")
    for key, value in info.training.items():
        if key != "settings":
            # Sorted keys: PostgreSQL's jsonb hands objects back in an order of its own.
            shown = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
            click.echo(f"    {key:<20} {shown}")
    click.echo("  checkpoints")
    for c in info.checkpoints:
        try:
            state = "" if Path(c.path).is_file() else "  (file gone)"
        except PermissionError:  # Python 3.11's is_file lets EACCES through
            state = "  (not readable by you)"
        click.echo(f"    {c.iteration:>8}  {c.path}  sha256 {c.sha256[:12]}{state}")
    if report:
        click.echo("  latest report")
        for row in report:
            click.echo(f"    {row.metric:<24} {row.class_name or 'overall':<20} {row.value:.4f}")


@models.command("delete")
@click.argument("model_id", metavar="ID|NAME")
@click.option("--cascade", is_flag=True, help="Also delete the rows of the images it made (files are kept).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--delete-files", is_flag=True, help="With --cascade, also delete the image files.")
@database_option
def models_delete(
    model_id: str, cascade: bool, yes: bool, delete_files: bool, database_url: str | None
) -> None:
    """Delete a model's rows; refuses while images reference it unless --cascade. Shows what goes
    with it and asks (--yes: do not ask). Image files are kept unless --delete-files."""
    from sqlalchemy.orm import Session

    from db import catalog, queries
    from gen.commands.confirm import confirm_deletion
    from gen.deleting import carry_out, plan_deletion

    with Session(open_db(database_url, create=False)) as session:
        model_id = catalog.resolve_model(session, model_id)
        counts = catalog.model_dependents(session, model_id)
        files = plan_deletion(catalog.model_image_files(session, model_id) if delete_files else (), "md5")
        if cascade or not counts["images"]:  # else delete_model says --cascade is needed
            if delete_files and counts["images"]:
                counts = {**counts, "image files": len(files.files)}
            notes = [f"left in place, changed since they were made: {files.describe_changed()}"]
            confirm_deletion(f"model {model_id}", counts, yes, notes if files.changed else ())
        deleted = queries.delete_model(session, model_id, cascade=cascade)
    removed = carry_out(files, "md5")
    kept = f"{removed.files} files deleted" if delete_files else "files kept"
    click.echo(f"deleted model {model_id}" + (f" and {deleted} image rows ({kept})" if deleted else ""))
    if files.changed or removed.changed:
        changed = files.changed + removed.changed
        echo_error(f"left in place, changed since they were made: {', '.join(map(str, changed))}")


@cli.group("db")
def database() -> None:
    """Manage the database schema: upgrade applies the migrations this gen knows."""


@database.command("upgrade")
@database_option
def database_upgrade(database_url: str | None) -> None:
    """Apply the schema migrations this gen knows to an existing (or new) database."""
    from db import mask_url, resolve_database_url, upgrade_database

    before, after = upgrade_database(database_url)
    where = mask_url(resolve_database_url(database_url))
    if before == after:
        click.echo(f"{where} is already at schema revision {after}")
    else:
        click.echo(f"upgraded {where} from schema revision {before or 'empty'} to {after}")


@cli.command()
@click.option("--model", "model_id", metavar="ID|NAME", help="Model id or name [default: the latest model].")
@click.option(
    "--real",
    "real_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Held-out real images, REAL/<class>/<images> (never the training folder).",
)
@click.option(
    "--train",
    "train_dir",
    type=click.Path(path_type=Path),
    help="Real training images [default: the folder the model was trained on, if it still exists].",
)
@click.option(
    "--fid-weights",
    type=click.Path(path_type=Path),
    help="pt_inception-2015-12-05-6726825d.pth [default: the torch hub cache].",
)
@click.option("--utility", is_flag=True, help="Also train classifiers on real, synthetic and both (slower).")
@click.option(
    "--classifier",
    "classifier_id",
    metavar="ID|NAME",
    help="Utility figures with this recorded classifier's architecture and weights (gen classifiers "
    "train, or gen search --stage classifier); implies --utility.",
)
@click.option(
    "--gradcam", is_flag=True, help="Also write Grad-CAM grids of the real-only utility classifier per class."
)
@click.option(
    "--curated",
    "curated_keep_best",
    type=float,
    metavar="FRACTION",
    help="Also measure a set curated as gen sample --keep-best FRACTION curates, beside the uncurated one.",
)
@click.option(
    "--n",
    "n_per_class",
    type=click.IntRange(2),
    default=300,
    show_default=True,
    help="Synthetic images generated per class.",
)
@click.option(
    "--histogram-n",
    type=click.IntRange(1),
    default=150,
    show_default=True,
    help="Images per side for the colour-histogram KL.",
)
@seed_option
@click.option("--out", type=click.Path(path_type=Path), help="Report folder [default: reports/model-<id>].")
@click.option("--force", is_flag=True, help="Replace an existing report folder.")
@device_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@database_option
def report(
    model_id: str | None,
    real_dir: Path,
    train_dir: Path | None,
    fid_weights: Path | None,
    utility: bool,
    classifier_id: str | None,
    gradcam: bool,
    curated_keep_best: float | None,
    n_per_class: int,
    histogram_n: int,
    seed: int,
    out: Path | None,
    force: bool,
    device: str,
    quiet: bool,
    database_url: str | None,
) -> None:
    """Measure a model against held-out real images: FID, domain FID/KID/IS, near copies, two-sample
    AUC, histogram KL, utility, Grad-CAM.

    Figures go to the database (reports table) and to OUT/report.json, OUT/report.md and
    plots; a compact table is printed.
    """
    from gen.metrics.figures import ReportSettings
    from gen.provenance import (
        classifier_recorder,
        model_checkpoint,
        record_report,
        recorded_classifier,
        recorded_model,
    )
    from gen.report import UtilityClassifier, make_report, table_rows

    engine = open_db(database_url, create=False)
    info = recorded_model(engine, model_id)
    chosen = UtilityClassifier(*recorded_classifier(engine, classifier_id)) if classifier_id else None
    checkpoint_path, _ = model_checkpoint(info)
    if (
        train_dir is None
        and info.training.get("dataset_path")
        and Path(info.training["dataset_path"]).is_dir()
    ):
        train_dir = Path(info.training["dataset_path"])
    if curated_keep_best is not None:
        from gen.curation import CurationSettings

        CurationSettings(keep_best=curated_keep_best)  # a fraction out of range is said before any work
    settings = ReportSettings(
        n_per_class=n_per_class,
        histogram_n=histogram_n,
        seed=seed,
        utility=utility,
        gradcam=gradcam,
        curated_keep_best=curated_keep_best,
    )

    result = make_report(
        checkpoint_path,
        real_dir,
        train_dir,
        out or Path("reports") / f"model-{info.id}",
        model_id=info.id,
        settings=settings,
        fid_weights=fid_weights,
        device=device,
        force=force,
        progress=not quiet,
        on_classifier=classifier_recorder(engine),
        utility_classifier=chosen,
    )
    record_report(engine, info.id, result)
    for metric, where, value in table_rows(result):
        click.echo(f"{metric:<40} {where:<22} {value:>10}")
    for note in result.notes:
        echo_error(f"note: {note}")
    click.echo(f"report for model {info.id}: {out or Path('reports') / f'model-{info.id}'}/report.md")


class CsvRows(click.ParamType):
    """A number of rows, or "all" (None)."""

    name = "N|all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "all":
            return None
        try:
            rows = int(value)
        except ValueError:
            rows = -1
        if rows < 0:
            self.fail(f"{value!r} is not a number of rows or 'all'.", param, ctx)
        return rows


def checkpoint_choice(value: str) -> str | int | None:
    """best, latest or an iteration, as --checkpoint names a checkpoint of a model; else None."""
    from db.catalog import MAX_ID
    from db.recording import CHECKPOINT_CHOICES

    if value in CHECKPOINT_CHOICES:
        return value
    iteration = int(value) if value.isascii() and value.isdigit() else None
    return iteration if iteration is not None and iteration <= MAX_ID else None


MAX_CITATION_BYTES = 64 * 1024
# What a citation file is usually called; a value ending so, without spaces, is meant as a file.
CITATION_FILE_SUFFIXES = (".bib", ".bibtex", ".cff", ".txt", ".md", ".rst", ".ris", ".enw", ".nbib", ".tex")


def _looks_like_a_file_name(value: str) -> bool:
    """Whether --citation's value is a path rather than text: one word, no URL, and a citation
    file's suffix or a start that only paths have."""
    if not value or any(c.isspace() for c in value) or "://" in value:
        return False
    return value.lower().endswith(CITATION_FILE_SUFFIXES) or value.startswith(("/", "./", "../", "~"))


def read_citation(value: str) -> str:
    """--citation's text, or the text of the file it names.

    A value that names something is read only if it is a regular file (a pipe would hang, a
    device never end); one that looks like a file name but names nothing is a mistyped path,
    not a citation to publish."""
    try:
        found = os.stat(value)
    except (OSError, ValueError):  # no such file, a name too long to be one, a NUL in it
        if _looks_like_a_file_name(value):
            raise GenError(
                f"--citation {value} looks like a file name but there is no such file; give the path "
                "of a readable file, or the citation's text."
            ) from None
        return value
    if not stat.S_ISREG(found.st_mode):
        raise GenError(
            f"--citation {value} is not a regular file; give a citation file or the citation's text."
        )
    if found.st_size > MAX_CITATION_BYTES:
        raise GenError(f"--citation {value} is larger than {MAX_CITATION_BYTES // 1024} KiB.")
    try:
        # O_NONBLOCK: a file swapped for a pipe since the check opens without waiting, and is refused.
        descriptor = os.open(value, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise GenError(f"--citation {value} is not a regular file.")
            data = file.read(MAX_CITATION_BYTES + 1)
    except OSError as error:
        raise GenError(f"--citation {value} cannot be read: {error.strerror or error}.") from None
    if len(data) > MAX_CITATION_BYTES:
        raise GenError(f"--citation {value} is larger than {MAX_CITATION_BYTES // 1024} KiB.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise GenError(f"--citation {value} is not UTF-8 text.") from None


@cli.command("export")
@click.option("--model", "model_id", metavar="ID|NAME", help="Model id or name [default: the latest model].")
@click.option(
    "--out", type=click.Path(path_type=Path), help="Data set folder to create [default: exports/model-<id>]."
)
@click.option(
    "--classes",
    "class_names",
    multiple=True,
    metavar="NAMES",
    help="Export only these classes (repeatable, or comma-separated).",
)
@click.option("--limit-per-class", type=click.IntRange(1), help="At most N images per class (the oldest).")
@click.option(
    "--checkpoint",
    "which_checkpoint",
    metavar="ITER|best|latest",
    help="Only the images made from this checkpoint of the model [default: every image].",
)
@click.option("--seed", "image_seed", type=click.IntRange(0), help="Only the images sampled with this seed.")
@click.option(
    "--folder",
    type=click.Path(path_type=Path),
    help="Only the images sampled into this folder (gen sample --out).",
)
@click.option("--curated", is_flag=True, help="Only the images a curation kept (gen sample --keep-best).")
@click.option(
    "--min-class-confidence",
    type=float,
    metavar="P",
    help="Only images whose class_confidence is at least P.",
)
@click.option("--min-realism", type=float, metavar="R", help="Only images whose realism is at least R.")
@click.option(
    "--min-near-copy-distance",
    type=float,
    metavar="D",
    help="Only images whose near_copy_distance is at least D.",
)
@click.option("--sql-dump", is_flag=True, help="Write database.sql: the rows behind the images.")
@click.option(
    "--dialect",
    type=click.Choice(["postgresql", "sqlite"]),
    default="postgresql",
    show_default=True,
    help="SQL dialect of database.sql (psql -f, or sqlite3 db < database.sql).",
)
@click.option(
    "--csv", "write_csv", is_flag=True, help="Write settings.csv: the GAN settings behind each image."
)
@click.option(
    "--csv-rows", type=CsvRows(), default="100", show_default=True, help="Rows of settings.csv, or all."
)
@click.option(
    "--archive", is_flag=True, help="Also write OUT.tar.gz and OUT.tar.gz.sha256 beside the folder."
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path),
    help="A report folder whose report.json and plots go into the data set "
    "[default: reports/model-<id> when it exists].",
)
@click.option("--skip-missing", is_flag=True, help="Leave out images whose file is gone instead of refusing.")
@click.option(
    "--license",
    "license_id",
    required=True,
    metavar="SPDX",
    help="The data set's licence as an SPDX identifier (CC-BY-4.0, CC0-1.0, ...), or 'none' to "
    "grant none. Required: a data set without one cannot be reused.",
)
@click.option(
    "--training-license",
    metavar="SPDX",
    help="The licence of the real images the generator was trained on (stated in the card).",
)
@click.option(
    "--citation", metavar="TEXT|FILE", help="How to cite the data set (e.g. a BibTeX entry or file)."
)
@click.option("--title", help="The data set's title [default: OUT: synthetic images from gen model N].")
@click.option("--description", help="A paragraph for the card: what the images are and what they are for.")
@click.option("--force", is_flag=True, help="Replace an existing data set at OUT.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@database_option
def export(
    model_id: str | None,
    out: Path | None,
    class_names: tuple[str, ...],
    limit_per_class: int | None,
    which_checkpoint: str | None,
    image_seed: int | None,
    folder: Path | None,
    curated: bool,
    min_class_confidence: float | None,
    min_realism: float | None,
    min_near_copy_distance: float | None,
    sql_dump: bool,
    dialect: str,
    write_csv: bool,
    csv_rows: int | None,
    archive: bool,
    report_dir: Path | None,
    skip_missing: bool,
    license_id: str,
    training_license: str | None,
    citation: str | None,
    title: str | None,
    description: str | None,
    force: bool,
    quiet: bool,
    database_url: str | None,
) -> None:
    """Pack a model's images into a data set folder that anyone can verify.

    OUT gets <class>/*.png with an MD5SUMS per class, report.json, a card (README.md,
    index.html with a sample grid per class) and manifest.json; --sql-dump and --csv add the
    provenance rows and the settings table. The folder is built beside OUT and renamed into
    place, so a failure leaves nothing behind. Check it with gen verify OUT.
    """
    from sqlalchemy.orm import Session

    from db import catalog
    from gen.export import Publication, check_license, export_dataset
    from gen.export.choosing import ScoreFilter

    publication = Publication(
        license=check_license(license_id),
        training_license=check_license(training_license, "--training-license") if training_license else None,
        citation=read_citation(citation) if citation else None,
        title=title,
        description=description,
    )
    scores = None
    if curated or any(m is not None for m in (min_class_confidence, min_realism, min_near_copy_distance)):
        scores = ScoreFilter(curated, min_class_confidence, min_realism, min_near_copy_distance)
    which = checkpoint_choice(which_checkpoint) if which_checkpoint else None
    if which_checkpoint and which is None:
        raise GenError(f"--checkpoint {which_checkpoint!r} must be best, latest or an iteration number.")
    classes = [name.strip() for value in class_names for name in value.split(",") if name.strip()]
    engine = open_db(database_url, create=False, read_only=True)
    with Session(engine) as session:
        model_id = catalog.model_or_latest(session, model_id)
    out = out or Path("exports") / f"model-{model_id}"
    default_report = Path("reports") / f"model-{model_id}"
    if report_dir is None and (default_report / "report.json").is_file():
        report_dir = default_report  # what `gen report` wrote for this model, plots included
    result = export_dataset(
        engine,
        model_id,
        out,
        classes=classes or None,
        limit_per_class=limit_per_class,
        sql_dump=sql_dump,
        dialect=dialect,
        csv=write_csv,
        csv_rows=csv_rows,
        archive=archive,
        force=force,
        report_dir=report_dir,
        skip_missing=skip_missing,
        progress=not quiet,
        publication=publication,
        checkpoint=which,
        seed=image_seed,
        folder=folder,
        scores=scores,
    )
    extras = [name for name in ("database.sql", "settings.csv") if name in result.files]
    click.echo(
        f"exported {result.images} images in {len(result.classes)} classes of model {result.model_id} "
        f"to {result.out}/ ({', '.join([*extras, 'card'])}) in {result.seconds:.1f} s "
        f"({result.images_per_second:.0f} images/s)"
    )
    if result.missing:
        echo_error(
            f"left out {len(result.missing)} recorded images whose file is gone (first: {result.missing[0]})"
        )
    if result.archive is not None:
        click.echo(f"archive {result.archive} (SHA-256 in {result.archive.name}.sha256)")


@cli.command("verify")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option(
    "--regenerate", is_flag=True, help="Also make every image again from its row (needs --checkpoint)."
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The checkpoint the images came from.",
)
@device_option
def verify(directory: Path, quiet: bool, regenerate: bool, checkpoint: Path | None, device: str) -> None:
    """Check an exported data set: every MD5, every row, every count and the SQL dump.

    Prints "OK: ..." and exits 0, or lists every problem found and exits 1. With --regenerate
    and the checkpoint the images were made from, each image is also made again from its row
    and compared: exact, within one intensity level (another machine), or differs (exit 1).
    """
    from gen.verify import read_manifest, verify_dataset

    if regenerate and checkpoint is None:
        raise GenError("--regenerate needs --checkpoint FILE: the checkpoint the images were made from.")

    problems = verify_dataset(directory, progress=not quiet)
    if problems:
        for problem in problems:
            click.echo(f"- {problem}")
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise GenError(f"{directory} does not verify: {count} (listed above).")
    manifest = read_manifest(directory)
    click.echo(f"OK: {manifest['images']} images in {len(manifest['classes'])} classes verified")
    if regenerate:
        from gen.reproduce import DIFFERS, EXACT, regenerate_dataset

        results = regenerate_dataset(directory, checkpoint, device=device)
        exact = sum(result.verdict == EXACT for result in results)
        differ = [result for result in results if result.verdict == DIFFERS]
        summary = (
            f"regenerated {len(results)} images: {exact} exact, {len(results) - exact - len(differ)} "
            f"within one level, {len(differ)} differ"
        )
        if differ:
            for result in differ:
                click.echo(f"- {Path(result.record.file_path).relative_to(directory)}: {result.describe()}")
            raise GenError(summary + " (listed above).")
        click.echo(summary)


def main() -> None:
    cli(prog_name="gen")


# Data sets, classifiers, model names and retraining, background jobs (gen/commands).
from gen.commands.catalog import classifiers, data, models_rename, models_retrain  # noqa: E402

cli.add_command(data)
cli.add_command(classifiers)
models.add_command(models_rename)
models.add_command(models_retrain)
from gen.commands.jobs import jobs, worker  # noqa: E402

cli.add_command(jobs)
cli.add_command(worker)
from gen.commands.search import search, searches  # noqa: E402 - they import the helpers above

cli.add_command(search)
cli.add_command(searches)
from gen.commands.classify import classifiers_train, classify  # noqa: E402

classifiers.add_command(classifiers_train)
cli.add_command(classify)

from gen.commands.serve import serve  # noqa: E402

cli.add_command(serve)
