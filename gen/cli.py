"""The ``gen`` command line: thin click wrappers over functions that are useful on their own.

Success is quiet (a line saying what was made and where); failure is loud (one sentence on
stderr and a non-zero exit). Long work shows a progress bar on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from gen import __version__
from gen.errors import GenError


class GenGroup(click.Group):
    """Turns a GenError anywhere below into click's one-line ``Error: ...`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GenError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=GenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gen")
def cli() -> None:
    """Turn a small labelled folder of microscopy images into a large, labelled, verified
    synthetic data set.

    \b
    Typical session:
      gen demo-data --out data/phantoms
      gen train --data data/phantoms --out runs/demo --preset tiny --iters 200
      gen sample --checkpoint runs/demo --n 100 --all-classes --out samples/
    """


def echo_error(message: str) -> None:
    click.secho(message, err=True, fg="yellow")


@cli.command("demo-data")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder to create (one sub-folder per class).",
)
@click.option("--per-class", default=100, show_default=True, type=click.IntRange(1), help="Images per class.")
@click.option("--seed", default=0, show_default=True, type=int)
def demo_data(out: Path, per_class: int, seed: int) -> None:
    """Write procedural cytology-like phantom images (4 classes), so that no download is needed."""
    from gen.phantoms import write_phantoms

    counts = write_phantoms(out, per_class=per_class, seed=seed)
    click.echo(f"wrote {sum(counts.values())} phantom images in {len(counts)} classes to {out}/")


@cli.command()
@click.option("--data", type=click.Path(path_type=Path), help="Image folder laid out DATA/<class>/<images>.")
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Run folder for checkpoints and grids."
)
@click.option(
    "--preset", type=click.Choice(["paper", "small", "tiny", "dcgan"]), default="tiny", show_default=True
)
@click.option("--iters", "iterations", type=click.IntRange(1), default=10_000, show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    help="Images per step [default: the preset's: paper 128, small 64, tiny 16, dcgan 64].",
)
@click.option("--g-lr", type=float, default=1e-4, show_default=True, help="Generator learning rate.")
@click.option("--d-lr", type=float, default=4e-4, show_default=True, help="Discriminator learning rate.")
@click.option("--ema-decay", type=click.FloatRange(0, 1), default=0.999, show_default=True)
@click.option("--diffaugment", default="color,translation", show_default=True, help="DiffAugment policy.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--keep-checkpoints", type=click.IntRange(1), default=3, show_default=True)
@click.option(
    "--balance", type=click.IntRange(1), help="Top every class up to N images with affine augmentation."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["bf16", "fp32"]),
    default="bf16",
    show_default=True,
    help="bf16 autocast on CUDA (the CPU always trains in fp32).",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train(
    resume: bool, quiet: bool, data: Path | None, out: Path, iterations: int, precision: str, **settings: Any
) -> None:
    """Train a class-conditional self-attention GAN on an image folder.

    Checkpoints are written atomically every --checkpoint-every iterations and at the end;
    Ctrl-C saves one and stops. Under `torchrun --nproc_per_node=K` the same command trains
    on K processes with DistributedDataParallel.
    """
    from gen.train import TrainConfig
    from gen.train import train as run_training

    if data is None and not resume:
        raise GenError("--data is required (except with --resume, which reuses the run's data folder).")
    config = TrainConfig(
        data=str(data) if data else "",
        out=str(out),
        iterations=iterations,
        mixed_precision=precision == "bf16",
        **settings,
    )

    def on_start(start: Any) -> None:
        if start.skipped_files:
            echo_error(
                f"warning: skipped {len(start.skipped_files)} unreadable or non-image files "
                f"(first: {start.skipped_files[0]})"
            )

    result = run_training(config, resume=resume, progress=not quiet, on_start=on_start)
    if result.interrupted:
        echo_error(
            f"interrupted at iteration {result.iteration}; saved {result.checkpoint}; continue with --resume"
        )
        sys.exit(130)
    click.echo(
        f"trained to iteration {result.iteration}: {result.checkpoint} "
        f"({result.images_per_second:.0f} images/s)"
    )


@cli.command()
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    required=True,
    help="A checkpoint file, or a run folder (its latest checkpoint).",
)
@click.option("--n", "count", type=click.IntRange(1), required=True, help="Images per class.")
@click.option("--class", "class_names", multiple=True, help="A class to sample (repeatable).")
@click.option("--all-classes", is_flag=True, help="Sample every class of the model.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("samples"), show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def sample(
    checkpoint: Path,
    count: int,
    class_names: tuple[str, ...],
    all_classes: bool,
    out: Path,
    seed: int,
    batch_size: int,
    device: str,
    quiet: bool,
) -> None:
    """Sample labelled 64x64 PNGs into OUT/<class>/ (never overwriting a file)."""
    from gen.sample import sample as run_sampling

    if bool(class_names) == all_classes:
        raise GenError(
            "name the classes with --class (repeatable) or ask for --all-classes, not both or neither."
        )
    result = run_sampling(
        checkpoint,
        out,
        count,
        None if all_classes else class_names,
        seed=seed,
        batch_size=batch_size,
        device=device,
        progress=not quiet,
    )
    click.echo(
        f"wrote {len(result.images)} images to {out}/ from {result.checkpoint} "
        f"({result.images_per_second:.0f} images/s)"
    )


def main() -> None:
    cli(prog_name="gen")
