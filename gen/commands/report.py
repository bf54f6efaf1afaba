"""gen report: a thin click wrapper over gen.report, recording what it measured."""

from __future__ import annotations

from pathlib import Path

import click

from gen.commands.options import (
    database_option,
    device_option,
    echo_error,
    force_option,
    model_option,
    open_db,
    out_option,
    quiet_option,
    seed_option,
    train_dir_option,
)


@click.command()
@model_option
@click.option(
    "--real",
    "real_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Held-out real images, REAL/<class>/<images> (never the training folder).",
)
@train_dir_option("Real training images [default: the folder the model was trained on, if it still exists].")
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
@out_option("Report folder [default: reports/model-<id>].")
@force_option("Replace an existing report folder.")
@device_option
@quiet_option("No progress bars.")
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
