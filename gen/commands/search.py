"""``gen search`` and ``gen searches``: the architecture search's thin click wrappers."""

from __future__ import annotations

from pathlib import Path

import click

from gen.architecture import PRESETS
from gen.commands.options import (
    RECORD_ID,
    batch_size_option,
    data_option,
    database_option,
    device_option,
    eval_images_option,
    open_db,
    out_option,
    preset_option,
    quiet_option,
    resume_option,
    seed_option,
    validation_option,
)
from gen.errors import GenError


@click.command("search")
@data_option("Image folder laid out DATA/<class>/<images>.")
@out_option("Search folder (candidates, fitness plot).", required=True)
@click.option(
    "--stage",
    type=click.Choice(["generator", "discriminator", "classifier"]),
    default="generator",
    show_default=True,
    help="Search the generator's cell against the source's fixed discriminator, the "
    "discriminator's against --generator-from, or a classifier (cell, number of cells, pooling; "
    "fitness: validation accuracy).",
)
@click.option(
    "--population",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Candidates alive at once (the aging evolution's population).",
)
@click.option(
    "--cycles",
    type=click.IntRange(0),
    default=25,
    show_default=True,
    help="Turnovers of the population after the random one: population x (1 + cycles) candidates.",
)
@click.option(
    "--sample", type=click.IntRange(1), default=25, show_default=True, help="Members sampled per step."
)
@click.option(
    "--mutation",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.05,
    show_default=True,
    help="Probability that each code digit, N and each attention flag mutates.",
)
@click.option("--budget-iters", type=click.IntRange(1), help="Training iterations per candidate.")
@click.option(
    "--budget-minutes", type=click.FloatRange(0, min_open=True), help="Training minutes per candidate."
)
@preset_option(
    [p for p in PRESETS if p in ("paper", "small", "tiny")],
    "Topology, widths and training recipe around the searched cells.",
    default="tiny",
)
@batch_size_option("Training batch per candidate [default: the preset's].")
@eval_images_option("Images per class per fitness.")
@validation_option("Stage classifier: share of each class held out (seeded) to measure accuracy on.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Candidates at once.")
@click.option(
    "--generator-from", type=RECORD_ID, help="Stage discriminator: the model whose generator is kept."
)
@click.option(
    "--ray-address",
    help="Join this Ray cluster [default: $RAY_ADDRESS, else a local Ray when --workers > 1].",
)
@resume_option("Continue the search recorded for --out where it stopped.")
@quiet_option()
@seed_option
@device_option
@database_option
def search(
    data: Path | None,
    out: Path,
    resume: bool,
    workers: int,
    device: str,
    ray_address: str | None,
    quiet: bool,
    database_url: str | None,
    **settings: object,
) -> None:
    """Search cell architectures by aging evolution; every candidate is recorded as a model
    (stage classifier: as a classifier).

    Each candidate trains for the budget and is scored by normalised domain FID (lower is
    better; stage classifier: accuracy on held-out images of --data, higher is better). Ctrl-C
    or a crash loses at most the candidates being trained: --resume continues.
    """
    from gen.checkpoint import run_folder_lock
    from gen.runtime import resolve_device
    from gen.search.engine import SearchSettings, run_search
    from gen.search.start import prepare_search

    device = resolve_device(device).type  # the workers get cpu, cuda or mps, never auto
    if not resume and data is None:
        raise GenError("--data is required (except with --resume, which reuses the search's data folder).")
    engine = open_db(database_url)
    # One search per folder at a time: a second one would record the same steps twice.
    with run_folder_lock(out):
        if resume:
            run = prepare_search(None, engine, resume_folder=out)
        else:
            run = prepare_search(SearchSettings(data=str(data), out=str(out), **settings), engine)
        click.echo(
            f"search {run.search_id}: {run.evolution.finished} of {run.settings.total} candidates done"
        )
        result = run_search(
            run, engine, workers=workers, device=device, ray_address=ray_address, progress=not quiet
        )
    if result.best is None:
        best = ""
    elif run.settings.stage == "classifier":
        best = (
            f"; best {result.best.architecture.notation()} accuracy {1 - result.best.fitness:.4f} "
            f"(classifier {result.best_id})"
        )
    else:
        best = (
            f"; best {result.best.architecture.notation()} fitness {result.best.fitness:.4f} "
            f"(model {result.best_id})"
        )
    if result.interrupted:
        click.secho(
            f"interrupted after {result.finished} of {result.total} candidates{best}; continue with --resume",
            err=True,
            fg="yellow",
        )
        raise SystemExit(130)
    click.echo(f"search {result.search_id} done: {result.finished} candidates{best}; plot {result.plot}")


@click.group("searches")
def searches() -> None:
    """List and show recorded architecture searches."""


@searches.command("list")
@database_option
def searches_list(database_url: str | None) -> None:
    """Id, stage, status, candidates done and best fitness of every search."""
    from sqlalchemy.orm import Session

    from db import searches as search_rows

    engine = open_db(database_url, create=False, read_only=True)
    with Session(engine) as session:
        rows = search_rows.list_searches(session)
    if not rows:
        click.echo("no searches yet; run gen search")
        return
    click.echo(f"{'id':>4}  {'stage':<13}  {'status':<8}  {'candidates':>10}  {'best':>9}  created")
    for row in rows:
        best = f"{row.best_fitness:.4f}" if row.best_fitness is not None else "-"
        if row.stage == "classifier" and row.best_fitness is not None:
            best = f"acc {1 - row.best_fitness:.4f}"
        done = f"{row.candidates}/{row.total}" if row.total else str(row.candidates)
        click.echo(
            f"{row.id:>4}  {row.stage:<13}  {row.status:<8}  {done:>10}  {best:>9}  "
            f"{row.created_at:%Y-%m-%d %H:%M}"
        )


@searches.command("show")
@click.argument("search_id", type=RECORD_ID)
@click.option("--top", type=click.IntRange(1), default=10, show_default=True, help="Best candidates listed.")
@database_option
def searches_show(search_id: int, top: int, database_url: str | None) -> None:
    """The best candidates of a search in the source's {N, C, [ATTN]} notation (classifiers:
    {N, C, cells=K, pool=[...]})."""
    from sqlalchemy.orm import Session

    from db import searches as search_rows
    from gen.architecture import from_json
    from gen.search.engine import FITNESS_PLOT, write_fitness_plot
    from gen.search.space import from_spec

    engine = open_db(database_url, create=False, read_only=True)
    with Session(engine) as session:
        info = search_rows.get_search(session, search_id)
        candidates = search_rows.search_candidates(session, search_id)
    settings = info.settings
    click.echo(
        f"search {info.id}: {info.stage} cells on {info.dataset_path}, {info.status}, "
        f"{len(candidates)} of {settings.get('total')} candidates, seed {info.seed}"
    )
    scored = sorted((c for c in candidates if c.fitness is not None), key=lambda c: (c.fitness, c.step))
    if info.stage == "classifier":
        _show_classifiers(info, candidates, scored, top)
        return
    click.echo(f"{'rank':>4}  {'model':>5}  {'step':>5}  {'parent':>6}  {'fitness':>9}  architecture")
    for rank, candidate in enumerate(scored[:top], start=1):
        spec = from_json(candidate.generator if info.stage == "generator" else candidate.discriminator)
        parent = str(candidate.parent_step) if candidate.parent_step is not None else "-"
        click.echo(
            f"{rank:>4}  {candidate.gan_id:>5}  {candidate.step:>5}  {parent:>6}  {candidate.fitness:>9.4f}  "
            f"{from_spec(spec).notation()}"
        )
    failed = sum(c.fitness is None for c in candidates)
    if failed:
        click.echo(f"{failed} candidates failed")
    plot = Path(settings.get("out", "")) / FITNESS_PLOT
    if scored and plot.parent.is_dir():
        try:
            write_fitness_plot(
                {c.step: c.fitness for c in candidates}, plot, f"search {info.id}: {info.stage}"
            )
            click.echo(f"fitness plot: {plot}")
        except OSError:
            pass
    if scored:
        click.echo(f"train the best: gen train --data DATA --out DIR --architecture {scored[0].gan_id}")


def _show_classifiers(info, candidates, scored, top: int) -> None:  # noqa: ANN001 - query rows
    from gen.search.engine import FITNESS_PLOT, write_fitness_plot
    from gen.search.space import ClassifierGenome

    click.echo(f"{'rank':>4}  {'classifier':>10}  {'step':>5}  {'parent':>6}  {'accuracy':>8}  architecture")
    for rank, candidate in enumerate(scored[:top], start=1):
        parent = str(candidate.parent_step) if candidate.parent_step is not None else "-"
        notation = ClassifierGenome.from_dict(candidate.classifier_architecture).notation()
        click.echo(
            f"{rank:>4}  {candidate.classifier_id:>10}  {candidate.step:>5}  {parent:>6}  "
            f"{candidate.accuracy:>8.4f}  {notation}"
        )
    failed = sum(c.fitness is None for c in candidates)
    if failed:
        click.echo(f"{failed} candidates failed")
    plot = Path(info.settings.get("out", "")) / FITNESS_PLOT
    if scored and plot.parent.is_dir():
        try:
            write_fitness_plot(
                {c.step: c.fitness for c in candidates},
                plot,
                f"search {info.id}: classifier",
                ylabel="validation error, 1 - accuracy (lower is better)",
            )
            click.echo(f"fitness plot: {plot}")
        except OSError:
            pass
    if scored:
        click.echo(
            "use the best for the utility figures: "
            f"gen report MODEL --real DIR --classifier {scored[0].classifier_id}"
        )
