"""gen models: list, show, rename, retrain and delete the models in the database (thin wrappers
over db.generators and gen.deleting; retrain calls what gen train calls)."""

from __future__ import annotations

from pathlib import Path

import click

from gen.commands.confirm import confirm_deletion
from gen.commands.options import (
    database_option,
    delete_files_option,
    device_option,
    echo_error,
    iterations_option,
    open_db,
    out_option,
    quiet_option,
    yes_option,
)
from gen.commands.train import train_model
from gen.errors import GenError


@click.group()
def models() -> None:
    """List, show, rename, retrain and delete the models in the database."""


@models.command("list")
@database_option
def models_list(database_url: str | None) -> None:
    """One line per model: id, preset, classes, iterations, images, created."""
    from sqlalchemy.orm import Session

    from db import generators as generator_rows

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        rows = generator_rows.list_models(session)
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

    from db import datasets as dataset_rows
    from db import generators as generator_rows
    from db import reports as report_rows
    from gen.architecture import from_json

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        model_id = generator_rows.resolve_model(session, model_id)
        info = generator_rows.get_model(session, model_id)
        report = report_rows.latest_report(session, model_id)
        name, dataset = (
            generator_rows.model_name(session, model_id),
            dataset_rows.model_dataset(session, model_id),
        )
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
@yes_option
@delete_files_option("With --cascade, also delete the image files.")
@database_option
def models_delete(
    model_id: str, cascade: bool, yes: bool, delete_files: bool, database_url: str | None
) -> None:
    """Delete a model's rows; refuses while images reference it unless --cascade. Shows what goes
    with it and asks (--yes: do not ask). Image files are kept unless --delete-files."""
    from sqlalchemy.orm import Session

    from db import generators as generator_rows
    from db import images as image_rows
    from gen.deleting import carry_out, plan_deletion

    with Session(open_db(database_url, create=False)) as session:
        model_id = generator_rows.resolve_model(session, model_id)
        counts = generator_rows.model_dependents(session, model_id)
        files = plan_deletion(image_rows.model_image_files(session, model_id) if delete_files else (), "md5")
        if cascade or not counts["images"]:  # else delete_model says --cascade is needed
            if delete_files and counts["images"]:
                counts = {**counts, "image files": len(files.files)}
            notes = [f"left in place, changed since they were made: {files.describe_changed()}"]
            confirm_deletion(f"model {model_id}", counts, yes, notes if files.changed else ())
        deleted = generator_rows.delete_model(session, model_id, cascade=cascade)
    removed = carry_out(files, "md5")
    kept = f"{removed.files} files deleted" if delete_files else "files kept"
    click.echo(f"deleted model {model_id}" + (f" and {deleted} image rows ({kept})" if deleted else ""))
    if files.changed or removed.changed:
        changed = files.changed + removed.changed
        echo_error(f"left in place, changed since they were made: {', '.join(map(str, changed))}")


@models.command("rename")
@click.argument("model")
@click.argument("new_name")
@database_option
def models_rename(model: str, new_name: str, database_url: str | None) -> None:
    """Name a model (an id or its current name); the name then works wherever an id does."""
    from sqlalchemy.orm import Session

    from db import generators as generator_rows

    with Session(open_db(database_url, create=False)) as session:
        model_id = generator_rows.rename_model(session, model, new_name)
    click.echo(f"model {model_id} is now called {new_name}")


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
    "reconstruction_weight",
    "minibatch_std",
    "ada_target",
    "mode_seeking",
    "colour_condition",
    "histogram_matching",
    "oversample_rare",
    "oversample_rare_fade",
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


@models.command("retrain")
@click.argument("model")
@iterations_option("Iterations to train to.", required=True)
@click.option(
    "--from-scratch",
    is_flag=True,
    help="Train a new model with the same settings and data, linked to this one.",
)
@out_option("Run folder of the new model (--from-scratch) [default: the old one's name + -retrain-<id>].")
@device_option
@quiet_option()
@database_option
def models_retrain(
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

    from db import datasets as dataset_rows
    from db import generators as generator_rows

    with Session(open_db(database_url, create=False)) as session:
        model_id = generator_rows.resolve_model(session, model)
        info = generator_rows.get_model(session, model_id)
        dataset = dataset_rows.model_dataset(session, model_id)
    settings = info.training.get("settings") or {}
    run_dir = settings.get("run_dir")
    if not run_dir:
        raise GenError(f"model {model_id} has no recorded run folder (it was adopted from a checkpoint).")
    common = {"iterations": iterations, "device": device, "quiet": quiet, "database_url": database_url}
    if not from_scratch:
        if out is not None:
            raise GenError("--out is only for --from-scratch; a retrain continues in the model's run folder.")
        # As gen train --resume with only --iters given: the run keeps its own checkpoint settings.
        train_model(Path(run_dir), None, resume=True, checkpoint_every=None, keep_checkpoints=None, **common)
        return
    out = out or Path(f"{run_dir}-retrain-{model_id}")
    options = {key: settings[key] for key in RETRAIN_SETTINGS if settings.get(key) is not None}
    if options.get("betas") is not None:
        options["betas"] = tuple(options["betas"])
    options["precision"] = "bf16" if settings.get("mixed_precision", True) else "fp32"
    data_folder = dataset or settings.get("data") or info.training.get("dataset_path")
    train_model(out, data_folder, resume=False, **common, **options)
    with Session(open_db(database_url, create=False)) as session:
        new_id = generator_rows.model_for_run_folder(session, out)
        if new_id is not None:
            generator_rows.set_retrained_from(session, new_id, model_id)
    click.echo(f"model {new_id} retrains model {model_id} from scratch")
