"""gen train: a thin click wrapper over gen.train, and train_model, the one function that both
gen train and gen models retrain call."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from gen.architecture import PRESETS
from gen.commands.options import (
    DATA_HELP,
    RECORD_ID,
    SKIPPED_SHOWN,
    batch_size_option,
    data_option,
    database_option,
    device_option,
    echo_error,
    echo_skipped,
    eval_images_option,
    iterations_option,
    open_db,
    out_option,
    preset_option,
    quiet_option,
    resume_option,
    seed_option,
)
from gen.errors import GenError
from gen.presets import LOSS_NAMES, OPTIMIZERS

SKIPPED_LOG = "skipped-images.txt"


def report_skipped_files(skipped: Sequence[str], run_dir: Path) -> None:
    """Each skipped training file with why; past SKIPPED_SHOWN, in a file in the run folder."""
    echo_skipped(skipped)
    if len(skipped) > SKIPPED_SHOWN:
        log = run_dir / SKIPPED_LOG
        log.write_text("".join(f"{line}\n" for line in skipped), encoding="utf-8")
        echo_error(f"  ... and {len(skipped) - SKIPPED_SHOWN} more, all listed in {log}")


@click.command()
@data_option(DATA_HELP)
@out_option("Run folder for checkpoints and grids.", required=True)
@preset_option(
    PRESETS,
    "Networks and training recipe: the source's paper/small, cpu (ours for a CPU), reference, "
    "the source's baselines dcgan, wgan, wgan-gp, bgan, began, and tiny (for tests) (see "
    "gen/presets.py)  [default: $GEN_PRESET, else the best for the device: cpu on a CPU, small on a GPU].",
    envvar="GEN_PRESET",
)
@iterations_option(
    "Iterations to train to (with --resume: the total, counting those already done).", default=10_000
)
@click.option(
    "--minutes",
    "max_minutes",
    type=click.FloatRange(0, min_open=True),
    help="Stop (with a checkpoint) after this many minutes of training.",
)
@batch_size_option("Images per step [default: the preset's].")
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
    "--reconstruction-weight",
    type=click.FloatRange(0),
    help="Weight of FastGAN's L1 loss on D decoding real images from its 8x8 features, 0: off "
    "[default: the preset's].",
)
@click.option(
    "--minibatch-std",
    type=click.IntRange(0),
    metavar="GROUP",
    help="ProGAN's minibatch standard deviation in D over groups of GROUP images, so that D sees "
    "fakes that vary too little between images; must divide the batch, 0: off [default: the preset's].",
)
@click.option(
    "--ada-target",
    type=click.FloatRange(0, 1, max_open=True),
    help="Adapt the augmentation probability (ADA) so that E[sign(D(real))] stays at this target "
    "(ADA: 0.6), 0: the policy's fixed probabilities [default: the preset's].",
)
@click.option(
    "--mode-seeking",
    type=click.FloatRange(0),
    help="Weight of MSGAN's mode seeking term on G (images of one class as different as their "
    "noise), 0: off [default: the preset's].",
)
@click.option(
    "--colour-condition",
    type=click.FloatRange(0),
    metavar="WEIGHT",
    help="Draw each image in the colour of a training image of its class (per-channel mean and "
    "spread, picked by the noise, so every slide's stain is as likely as in training) and hold G to "
    "it with this weight; 0: off [default: the preset's].",
)
@click.option(
    "--histogram-matching",
    type=click.FloatRange(0),
    metavar="WEIGHT",
    help="Hold the pixel values G draws for each class, channel by channel, to those of the real "
    "images of that class in the batch (the 1-D earth mover's distance between the two, by "
    "sorting), with this weight; 0: off [default: the preset's].",
)
@click.option(
    "--oversample-rare",
    type=click.FloatRange(0),
    metavar="POWER",
    help="Draw each training image in proportion to its colour rarity within its class (the "
    "distance to its 5th nearest neighbour in per-channel mean and spread) to this power, so that "
    "rare stains and backgrounds are not dropped; 0: uniformly [default: the preset's].",
)
@click.option(
    "--oversample-rare-fade",
    type=click.IntRange(0),
    metavar="ITERATIONS",
    help="Fade --oversample-rare out linearly over the first ITERATIONS, so that rare images are "
    "learnt early and training ends on the data's true proportions; 0: never [default: the preset's].",
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
@eval_images_option("Images per class per evaluation.")
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
@resume_option("Continue the run in --out exactly where it stopped.")
@quiet_option()
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
    if resume:
        # Left out, these keep the run's own values; given, the resumed run uses them.
        context = click.get_current_context()
        for name in ("checkpoint_every", "keep_checkpoints"):
            if context.get_parameter_source(name) in (None, click.core.ParameterSource.DEFAULT):
                settings[name] = None
    train_model(
        out,
        data,
        resume=resume,
        iterations=iterations,
        precision=precision,
        quiet=quiet,
        database_url=database_url,
        architecture_id=architecture_id,
        **settings,
    )


def train_model(
    out: Path,
    data: Path | str | None,
    *,
    resume: bool,
    iterations: int,
    quiet: bool,
    database_url: str | None,
    precision: str = "bf16",
    architecture_id: int | None = None,
    **settings: Any,
) -> None:
    """What gen train does, for gen train and gen models retrain: ``settings`` are TrainConfig's
    fields (left out: TrainConfig's defaults, which are gen train's; preset None or left out: the
    best for the device). Prints the model's id first and the result last; exits 130 when
    interrupted."""
    from gen.train import train as run_training
    from gen.train_config import RunStart, TrainConfig

    if data is None and not resume:
        raise GenError("--data is required (except with --resume, which reuses the run's data folder).")
    from gen.dataset_registry import training_folder

    data_set = None  # a registered data set's name, when --data named one
    if data is not None:
        data, data_set = training_folder(database_url, data)
    if settings.get("preset") is None:  # a resume keeps its run's preset whatever this says
        from gen.presets import default_preset
        from gen.runtime import resolve_device

        settings["preset"] = default_preset(resolve_device(settings.get("device", "auto")).type)
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
