"""Image quality on real cytology data: ours against every baseline at equal wall-clock.

    make bench-quality    # ours and the reference, 20 minutes, 3 seeds; ablations; ours for 60
    .venv/bin/python -m bench.quality --models cpu,dcgan --minutes 2 --device cuda

Each model in ``--models`` (ours is ``cpu``; ``reference`` is the plain conditional GAN to beat;
``tiny`` is the source method at 1/16 width; dcgan, wgan, wgan-gp, bgan and began are the
source's baselines) trains on ../shared/data/pbc4/train with the same seed for ``--minutes`` of
training time (checkpoints and evaluations not counted), in ``--eval-points`` equal segments;
with ``--iterations-from JSON`` each model instead trains for as many iterations as it reached in
that earlier run (so a run on a shared machine trains as far as a quiet one did), with
``--iterations N`` for N iterations.
After each segment its last checkpoint is measured against the test split by
``gen.report.make_report``: normalised domain FID and KID overall and per class beside their
real-vs-real floors, per-class colour-histogram KL beside its floor, and the domain classifier's
accuracy on the synthetic images (overall and per class). At the last point, classifier utility
(trained on real, synthetic, both; tested on real) over ``--utility-seeds`` classifier seeds.

Writes bench/results/quality-<host>-<date>.json (everything) and .md (a section ready for
docs/benchmarks.md), docs/quality-curves.png (each metric against training minutes, a line per
model, floors dashed) and docs/quality-grid.png (a row per class: real test images, then each
model; with ``--curated F``, the first model's curated images after its own). Prints the table
and whether each of the issue's targets is met. Asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import shlex
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from bench.__main__ import machine
from gen.architecture import BASELINES, PRESETS, DiscriminatorSpec, GeneratorSpec, preset
from gen.checkpoint import atomic_write, load_checkpoint, load_for_sampling
from gen.curation import CurationSettings, Curator, curated_class
from gen.errors import GenError
from gen.history import HISTORY_CSV, read_history
from gen.image_folder import load_image_folder
from gen.images import write_grid
from gen.metrics._plotting import new_figure, save_png
from gen.metrics.domain import domain_classifier, domain_features_and_probabilities
from gen.metrics.figures import ReportSettings
from gen.metrics.utility import REGIMES, classifier_utility
from gen.report import _align, _synthetic, make_report
from gen.runtime import resolve_device
from gen.sample import generate, load_generator
from gen.train import train
from gen.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PBC4 = ROOT.parent / "shared" / "data" / "pbc4"
RESULTS = ROOT / "bench" / "results"
OURS, REFERENCE = "cpu", "reference"
DEFAULT_MODELS = (OURS, REFERENCE, "tiny", *BASELINES)
MEAN = "mean over classes"  # the class name of figures averaged over classes
NEVER = 10**9  # an iteration count no segment reaches: segments end on their time budget
GRID_COLUMNS = 8  # images per model (and real) per class in the sample grid
ON_SYNTHETIC = "domain_classifier_accuracy_on_synthetic"
ON_REAL = "domain_classifier_accuracy"  # on real test images: shown as the floor of ON_SYNTHETIC
# (metric, title, floor metric) of each curve, all overall or averaged over classes.
CURVES = (
    ("domain_fid", "normalised domain FID", "domain_fid_floor"),
    ("domain_kid", "normalised domain KID", "domain_kid_floor"),
    ("histogram_kl", "histogram KL", "histogram_kl_floor"),
    (ON_SYNTHETIC, "domain accuracy on synthetic", ON_REAL),
)
# Figures make_report gives per class only, averaged over classes here (class name None).
AVERAGED = ("histogram_kl", "histogram_kl_floor", "colour_spread", "colour_spread_floor")
Figures = dict[tuple[str, str | None], float]  # (metric, class name or None) -> value
Labelled = tuple[torch.Tensor, torch.Tensor]  # uint8 images (N, 3, 64, 64), labels (N,)


@dataclass
class Point:
    """One evaluation of one model: after ``minutes`` of training in all."""

    minutes: float
    iteration: int
    images_per_second: float
    checkpoint: str
    figures: Figures
    utility: dict[str, list[float]] = field(default_factory=dict)  # regime -> accuracy per seed


@dataclass(frozen=True)
class Sets:
    """The real images, labelled in the training folder's class order."""

    train: Labelled
    test: Labelled
    class_names: tuple[str, ...]
    fingerprint: str


def sets_classes(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())


def model_label(model: str) -> str:
    """How the sample grid names a --models entry: a preset by itself, an ablation by its LABEL."""
    head = model.split(":", 1)[0]
    return head.split("=", 1)[0] if "=" in head else model


def variant(model: str) -> tuple[str, dict[str, Any]]:
    """A --models entry: a preset, or an ablation LABEL=PRESET:SETTING=VALUE:... whose settings
    (TrainConfig fields, ``g.FIELD`` or ``d.FIELD`` for the generator's or discriminator's spec,
    ``padding`` for ``g.padding``; a comma written as +, e.g. ``diffaugment=color@0.3+translation``,
    ``transition=[0+300]`` or ``g.skip_excitation=true``) replace the preset's."""
    if "=" not in model.split(":", 1)[0]:
        return model, {}
    _, spec = model.split("=", 1)
    name, *settings = spec.split(":")
    changes: dict[str, Any] = {}
    for setting in settings:
        key, _, text = setting.partition("=")
        key = "g.padding" if key == "padding" else key
        network, _, field = key.rpartition(".")
        spec_fields = {"g": GeneratorSpec.__dataclass_fields__, "d": DiscriminatorSpec.__dataclass_fields__}
        if field not in spec_fields.get(network, TrainConfig.__dataclass_fields__):
            raise ValueError(f"{model}: {key!r} is not a training or network setting")
        text = text.replace("+", ",")  # a comma would end the --models entry
        try:
            changes[key] = json.loads(text)
        except ValueError:
            changes[key] = text
    return name, changes


def spec_changes(changes: dict[str, Any], network: str) -> dict[str, Any]:
    """``{"g.padding": "reflect", "d.x": 1}`` -> ``{"padding": "reflect"}`` for network ``g``."""
    return {key.split(".", 1)[1]: value for key, value in changes.items() if key.startswith(network + ".")}


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        "python -m bench.quality", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--models", default=",".join(DEFAULT_MODELS), help="comma-separated presets, in table order")
    add("--minutes", type=float, default=8.0, help="training minutes per model (default 8)")
    add("--eval-points", type=int, default=4, help="evaluations along the way (default 4)")
    add("--per-class", type=int, default=200, help="synthetic images per class (default 200)")
    add("--utility-seeds", type=int, default=3, help="classifier seeds for utility (default 3)")
    add("--kid-subsets", type=int, default=50, help="KID subsets per estimate (default 50)")
    add("--seed", type=int, default=0, help="training and evaluation seed (default 0)")
    add(
        "--curated",
        type=float,
        metavar="F",
        help="also measure a set curated as gen sample --keep-best F curates (curated_ figures)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--iterations-from",
        type=Path,
        metavar="JSON",
        help="train each model for the iterations it reached in this earlier result instead of for "
        "--minutes (a run that shares the machine then still trains as far as a quiet one)",
    )
    budget.add_argument(
        "--iterations",
        type=int,
        metavar="N",
        dest="iteration_budget",
        help="train every model for N iterations instead of for --minutes (for a run that must train "
        "as far as a quiet one did, without that run's JSON: e.g. 3 x a quiet 20-minute run's)",
    )
    add(
        "--reuse",
        action="store_true",
        help="with --iterations(-from): a model whose run in --work already reached its iterations is "
        "measured again, not trained again (after an evaluation failed)",
    )
    add("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    add("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    add("--data", type=Path, default=PBC4 / "train", help="training images (default: pbc4 train)")
    add("--real", type=Path, default=PBC4 / "test", help="held-out real images (default: pbc4 test)")
    add("--work", type=Path, default=RESULTS / "quality-work", help="runs, reports; WORK/MODEL emptied first")
    add("--results", type=Path, default=RESULTS, help="where the JSON and .md go (default bench/results)")
    add("--figures", type=Path, default=ROOT / "docs", help="where the two PNGs go (default docs/)")
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    try:
        args.variants = {model: variant(model) for model in args.models}
    except ValueError as error:
        parser.error(str(error))
    unknown = [m for m in args.models if args.variants[m][0] not in PRESETS] or ([] if args.models else [""])
    if unknown:
        parser.error(f"unknown model {unknown[0]!r} in --models; choose from {', '.join(PRESETS)}.")
    if args.minutes <= 0 or min(args.eval_points, args.utility_seeds) < 1 or args.per_class < 2:
        parser.error(
            "--minutes must be above 0; --eval-points, --utility-seeds 1 or more; --per-class 2 or more."
        )
    for folder in (args.data, args.real):
        if not folder.is_dir():
            raise SystemExit(f"bench-quality needs the images at {folder}; that folder does not exist.")
    if args.iteration_budget is not None and args.iteration_budget < 1:
        parser.error("--iterations must be 1 or more.")
    if args.iteration_budget is not None:
        args.iterations = dict.fromkeys(args.variants, args.iteration_budget)
    elif args.iterations_from:
        args.iterations = iterations_reached(args.iterations_from, args.variants)
    else:
        args.iterations = {}
    return args


def iterations_reached(path: Path, variants: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, int]:
    """Each model's last iteration in an earlier result of this benchmark; an ablation absent
    there trains as far as its preset did (the same iterations, whatever each one costs)."""
    try:
        runs = json.loads(path.read_text())["runs"]
        return {
            model: int(runs[model if model in runs else preset_name][-1]["iteration"])
            for model, (preset_name, _) in variants.items()
        }
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise SystemExit(f"--iterations-from {path}: no last iteration for every model ({error}).") from None


def load_sets(args: argparse.Namespace) -> Sets:
    train_set, test_set = load_image_folder(args.data), load_image_folder(args.real)
    classes = train_set.class_names
    test = _align(test_set, classes, "--real")
    return Sets((train_set.images, train_set.labels), test, classes, train_set.fingerprint)


def train_segment(model: str, segment: int, args: argparse.Namespace) -> tuple[Path, int, float, float]:
    """Train (or resume) one segment; (checkpoint, iteration, training seconds, images/s)."""
    out = args.work / model / "run"
    budget = args.minutes / args.eval_points
    if model in args.iterations:  # an iteration budget: this segment's share of the earlier run's
        until, budget = round(args.iterations[model] * (segment + 1) / args.eval_points), None
    else:
        until = NEVER
    trained = out / f"checkpoint-{until:07d}.pt"
    if args.reuse and trained.is_file():  # an earlier benchmark trained this far; measure it again
        row = read_history(out / HISTORY_CSV)[-1]
        return trained, until, row["seconds"], row["images_per_second"]
    if segment == 0 and out.parent.exists():
        shutil.rmtree(out.parent)  # the model's run and reports from an earlier benchmark
    architecture = None
    if segment == 0:
        preset_name, changes = args.variants[model]
        changes = dict(changes)
        networks = {key: changes.pop(key) for key in list(changes) if "." in key}
        if networks:  # the networks' settings, not training ones
            generator_spec, discriminator_spec = preset(preset_name, len(sets_classes(args.data)))
            architecture = (
                dataclasses.replace(generator_spec, **spec_changes(networks, "g")),
                dataclasses.replace(discriminator_spec, **spec_changes(networks, "d")),
            )
        config = TrainConfig(
            str(args.data), str(out), preset_name, until, checkpoint_every=NEVER, max_minutes=budget,
            keep_checkpoints=args.eval_points, seed=args.seed, device=args.device, **changes,
        )  # fmt: skip
    else:  # resuming keeps every stored setting but the budget
        config = TrainConfig("", str(out), iterations=until, max_minutes=budget, device=args.device)
    result = train(config, resume=segment > 0, progress=True, architecture=architecture)
    if result.interrupted:
        raise SystemExit(f"{model} was interrupted; its checkpoint is in {out}.")
    # The last history row's seconds: this segment's training time, checkpoints not counted.
    seconds = read_history(out / HISTORY_CSV)[-1]["seconds"]
    return result.checkpoint, result.iteration, seconds, result.images_per_second


def report_figures(path: Path, out: Path, args: argparse.Namespace) -> Figures:
    """make_report's figures, plus the histogram KL, the colour spread and their floors averaged
    over classes."""
    report = make_report(
        path, args.real, args.data, out, settings=args.settings, device=args.device, force=True
    )
    figures = {(f.metric, f.class_name): f.value for f in report.figures}
    for metric in AVERAGED:
        values = [figures[metric, name] for name in report.class_names if (metric, name) in figures]
        if values:
            figures[metric, None] = float(np.mean(values))
    return figures


def per_class_accuracy(fake: Labelled, sets: Sets, args: argparse.Namespace) -> Figures:
    """The domain classifier's accuracy per class on the report's synthetic images and on the real
    test images (what the synthetic figure is compared with); make_report gives them overall."""
    device, settings, names = resolve_device(args.device), args.settings, sets.class_names
    classifier, _, _ = domain_classifier(
        *sets.train, len(names), sets.fingerprint, settings, device, progress=False
    )  # cached by the first report
    figures: Figures = {}
    for metric, (images, labels) in ((ON_SYNTHETIC, fake), (ON_REAL, sets.test)):
        _, probabilities = domain_features_and_probabilities(classifier, images, device=device)
        correct = probabilities.argmax(1) == labels.numpy()
        for label, name in enumerate(names):
            figures[metric, name] = float(correct[labels.numpy() == label].mean())
    return figures


def utility_over_seeds(fake: Labelled, sets: Sets, args: argparse.Namespace) -> dict[str, list[float]]:
    """Classifier utility's test accuracy per regime, one figure per classifier seed."""
    device, epochs, names = resolve_device(args.device), args.settings.utility_epochs, list(sets.class_names)
    accuracies: dict[str, list[float]] = {regime: [] for regime in REGIMES}
    for seed in range(args.utility_seeds):
        results = classifier_utility(
            sets.train, fake, sets.test, len(names), names, epochs=epochs, seed=seed, device=device
        )
        for regime in REGIMES:
            accuracies[regime].append(results[regime]["accuracy"])
    return accuracies


def run_model(model: str, sets: Sets, args: argparse.Namespace) -> list[Point]:
    """Train in segments; after each, evaluate its checkpoint (utility at the last one only)."""
    points: list[Point] = []
    seconds = 0.0
    device = resolve_device(args.device)
    for segment in range(args.eval_points):
        checkpoint, iteration, segment_seconds, images_per_second = train_segment(model, segment, args)
        seconds += segment_seconds
        figures = report_figures(checkpoint, args.work / model / f"report-{segment + 1}", args)
        # The report's synthetic images again: same checkpoint, count and seed.
        fake = _synthetic(load_for_sampling(checkpoint), args.per_class, args.seed, device)
        figures |= per_class_accuracy(fake, sets, args)
        utility = utility_over_seeds(fake, sets, args) if segment == args.eval_points - 1 else {}
        points.append(Point(seconds / 60, iteration, images_per_second, str(checkpoint), figures, utility))
        fid = fmt(figures.get(("domain_fid", None)))
        print(f"[{model}] {seconds / 60:.2f} min, iteration {iteration}, domain FID {fid}", flush=True)
    return points


def fmt(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4g}"


def mean_std(values: list[float]) -> str:
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.3f} ± {std:.3f}"


def table_rows(runs: dict[str, list[Point]], class_names: tuple[str, ...]) -> list[list[str]]:
    """[metric, class, one value per model, floor]; the floor column of the accuracy rows holds
    the domain classifier's accuracy on real test images."""
    finals = {model: points[-1] for model, points in runs.items()}
    floors = next(iter(finals.values())).figures
    rows = [
        ["training minutes", "", *(f"{p.minutes:.2f}" for p in finals.values()), ""],
        ["iterations", "", *(str(p.iteration) for p in finals.values()), ""],
        ["images/s (last segment)", "", *(f"{p.images_per_second:.1f}" for p in finals.values()), ""],
    ]
    for metric, title, floor in CURVES:
        for name in (None, *class_names):
            label = name or (MEAN if metric in AVERAGED else "overall")
            values = [fmt(p.figures.get((metric, name))) for p in finals.values()]
            rows.append([title, label, *values, fmt(floors.get((floor, name)))])
    for name in (None, *class_names):  # 1 is as varied in colour as real images
        values = [fmt(p.figures.get(("colour_spread", name))) for p in finals.values()]
        floor = fmt(floors.get(("colour_spread_floor", name)))
        rows.append(["colour spread (synthetic / real)", name or MEAN, *values, floor])
    for name in (None, *class_names):  # real against synthetic: 0.5 is indistinguishable
        values = [fmt(p.figures.get(("two_sample_auc", name))) for p in finals.values()]
        rows.append(["two-sample AUC", name or "overall", *values, "0.5"])
    for regime in REGIMES:
        values = [mean_std(p.utility[regime]) for p in finals.values()]
        rows.append([f"utility accuracy, {regime.replace('_', ' ')}", "", *values, ""])
    return rows


def markdown_table(models: list[str], rows: list[list[str]]) -> str:
    header = ["metric", "class", *models, "floor"]
    lines = [header, ["---"] * 2 + ["---:"] * (len(models) + 1), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def target_lines(runs: dict[str, list[Point]], class_names: tuple[str, ...]) -> list[str]:
    """Each of the issue's targets for ours, met or not, with the figures that decide it."""
    if OURS not in runs:
        return [f"targets: not measured; {OURS} (ours) is not among --models."]
    finals = {model: points[-1].figures for model, points in runs.items()}
    ours, lines = finals[OURS], []

    def verdict(target: str, met: bool, values: dict[str, float], form: str = "{:.4g}") -> None:
        shown = ", ".join(f"{name} {form.format(value)}" for name, value in values.items())
        result = ("met" if met else "NOT met") if np.isfinite(list(values.values())).all() else "not measured"
        lines.append(f"{target}: {result} ({shown})")

    baselines = [model for model in runs if model in BASELINES]
    comparisons = (("domain_fid", "normalised domain FID"), ("histogram_kl", "mean histogram KL"))
    for metric, title in comparisons if baselines else ():
        values = {model: finals[model].get((metric, None), np.nan) for model in (OURS, *baselines)}
        met = all(values[OURS] < values[model] for model in baselines)
        verdict(f"(a) ours beats every baseline on {title}", met, values)
    if not baselines:
        lines.append("(a) ours beats every baseline: not measured; no baseline among --models")
    accuracy = {name: ours[ON_SYNTHETIC, name] for name in class_names}
    verdict(
        "(b) domain accuracy on ours' images >= 0.8 in every class", min(accuracy.values()) >= 0.8, accuracy
    )
    ratios = {name: ours["histogram_kl", name] / ours["histogram_kl_floor", name] for name in class_names}
    verdict("(c) histogram KL <= 10x its floor in every class", max(ratios.values()) <= 10, ratios, "{:.1f}x")
    utility = {regime: float(np.mean(runs[OURS][-1].utility[regime])) for regime in REGIMES}
    both, real = utility["real_plus_synthetic"], utility["real_only"]
    verdict("(d) utility accuracy, real + synthetic >= real only", both >= real, utility, "{:.3f}")
    auc = {"overall": ours.get(("two_sample_auc", None), np.nan)}
    verdict("(e) two-sample AUC <= 0.9 (uncurated)", auc["overall"] <= 0.9, auc, "{:.3f}")
    if REFERENCE in runs:
        other = finals[REFERENCE]
        pairs = [f"{t} {fmt(ours.get((m, None)))} vs {fmt(other.get((m, None)))}" for m, t, _ in CURVES]
        lines.append(f"ours against {REFERENCE}: " + ", ".join(pairs))
    return lines


def write_curves(runs: dict[str, list[Point]], path: Path) -> Path:
    figure = new_figure(4.2 * len(CURVES), 3.6)
    floors = next(iter(runs.values()))[-1].figures
    for axis, (metric, title, floor) in zip(figure.subplots(1, len(CURVES)), CURVES, strict=True):
        for model, points in runs.items():
            values = [p.figures.get((metric, None), np.nan) for p in points]
            axis.plot([p.minutes for p in points], values, marker="o", label=model)
        if (floor, None) in floors:
            axis.axhline(floors[floor, None], color="black", linestyle="--", linewidth=1, label="floor")
        values = [p.figures.get((metric, None), 0) for points in runs.values() for p in points]
        values.append(floors.get((floor, None), 1))
        if metric != ON_SYNTHETIC and min(values) > 0:
            axis.set_yscale("log")  # baselines can be orders of magnitude off
        where = MEAN if metric in AVERAGED else "overall"
        axis.set_title(f"{title}, {where}" + ("\n(dashed: on real test images)" if floor == ON_REAL else ""))
        axis.set_xlabel("training minutes")
    figure.axes[0].legend(fontsize="small")
    return save_png(figure, path)


@torch.no_grad()
def write_sample_grid(
    runs: dict[str, list[Point]], sets: Sets, args: argparse.Namespace, path: Path
) -> tuple[Path, list[str]]:
    """One row per class: GRID_COLUMNS real test images, then as many of each model (fixed seed);
    with --curated, the first model's block (ours) is followed by the images gen sample
    --keep-best F would write.
    Returns the PNG and its column blocks' names."""
    device = resolve_device(args.device)
    states = {model: load_checkpoint(p[-1].checkpoint, device) for model, p in runs.items()}
    blocks = {model: load_generator(load_for_sampling(state), device) for model, state in states.items()}
    ours = next(iter(runs))
    curator = None
    if args.curated is not None:
        settings = CurationSettings(keep_best=args.curated, classifier_epochs=args.settings.classifier_epochs)
        curator = Curator(states[ours], settings, device, train_dir=args.data, progress=False)
    names = ["real", *map(model_label, runs)]
    if curator is not None:
        names.insert(2, f"{model_label(ours)} curated")  # ours is the first model
    indices = list(range(GRID_COLUMNS))
    rows = []
    for label in range(len(sets.class_names)):
        real = sets.test[0][sets.test[1] == label][:GRID_COLUMNS]
        blank = torch.full((GRID_COLUMNS - len(real), 3, 64, 64), 255, dtype=torch.uint8)  # too few real
        rows.append(torch.cat([real, blank]))
        for model, generator in blocks.items():
            rows.append(generate(generator, args.seed, label, indices, device))
            if curator is not None and model == ours:
                rows.append(
                    curated_class(curator, generate, generator, label, args.seed, GRID_COLUMNS, device)
                )
    write_grid(torch.cat(rows), GRID_COLUMNS * len(names), path)
    label_grid(path, names, sets.class_names)
    return path, names


def label_grid(path: Path, blocks: list[str], class_names: tuple[str, ...]) -> None:
    """Names above each column block and beside each row of a write_grid PNG."""
    font = ImageFont.load_default(size=15)
    cell, top, left = 66, 22, 12 + int(max(font.getlength(name) for name in class_names))
    grid = Image.open(path).convert("RGB")  # write_grid's cells: 64-pixel images, 2-pixel padding
    canvas = Image.new("RGB", (grid.width + left, grid.height + top), "white")
    canvas.paste(grid, (left, top))
    draw = ImageDraw.Draw(canvas)
    for index, name in enumerate(blocks):
        draw.text((left + 4 + index * GRID_COLUMNS * cell, 3), name, fill="black", font=font)
    for index, name in enumerate(class_names):
        draw.text((4, top + index * cell + 24), name, fill="black", font=font)
    # A 256-colour palette keeps the committed figure under 1 MiB (full colour: 2.3 MB).
    buffer = io.BytesIO()
    canvas.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        buffer, format="PNG", optimize=True
    )
    atomic_write(path, lambda file: file.write(buffer.getvalue()))


def markdown_fragment(
    info: dict, command: str, table: str, targets: list[str], pngs: list[Path], grid_blocks: list[str]
) -> str:
    """A section for docs/benchmarks.md: machine, command, table, targets, the two PNGs."""
    curves, grid = (Path(os.path.relpath(png, ROOT / "docs")).as_posix() for png in pngs)
    blocks = " | ".join(grid_blocks)
    paragraphs = [
        "## Image quality: ours against the baselines on pbc4 (`make bench-quality`)",
        f"Machine: {info['platform']}, {info['cpu']} ({info['cores']} cores, GPU {info['gpu']}), "
        f"torch {info['torch']}, {info['threads']} threads, commit {info['commit']}, {info['date']}.\n"
        f"Command: `{command}`",
        table,
        "Floor: the same figure between real training and real test images; for domain accuracy, the "
        "classifier's accuracy on real test images. Utility: mean ± std over classifier seeds.",
        "\n".join(f"- {line}" for line in targets),
        f"![quality against training minutes, a line per model]({curves})",
        f"Sample grid, a row per class; column blocks: {blocks}.",
        f"![{blocks}]({grid})",
    ]
    return "\n\n".join(paragraphs) + "\n"


def write_results(stem: Path, runs: dict[str, list[Point]], record: dict, fragment: str) -> None:
    """<stem>.json (``record`` and every figure of every point) and <stem>.md (the docs fragment)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    record["runs"] = {
        model: [asdict(p) | {"figures": [[*key, value] for key, value in p.figures.items()]} for p in points]
        for model, points in runs.items()
    }
    Path(f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    Path(f"{stem}.md").write_text(fragment)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_arguments(argv)
    settings = {"n_per_class": args.per_class, "seed": args.seed, "kid_subsets": args.kid_subsets}
    args.settings = ReportSettings(**settings, curated_keep_best=args.curated)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine() | {"platform": platform.platform(), "threads": str(torch.get_num_threads())}
    command = "make bench-quality" if not argv else ".venv/bin/python -m bench.quality " + shlex.join(argv)
    print(f"{command}\n" + "  ".join(f"{key}: {value}" for key, value in info.items()), flush=True)
    try:
        sets = load_sets(args)
        runs = {model: run_model(model, sets, args) for model in args.models}
        rows = table_rows(runs, sets.class_names)
        table, targets = markdown_table(args.models, rows), target_lines(runs, sets.class_names)
        curves = write_curves(runs, args.figures / "quality-curves.png")
        grid, grid_blocks = write_sample_grid(runs, sets, args, args.figures / "quality-grid.png")
    except GenError as error:
        raise SystemExit(str(error)) from None
    print(f"\n{table}\n\n" + "\n".join(targets))
    print(f"\nsample grid {grid}: a row per class; column blocks {' | '.join(grid_blocks)}")
    stem = args.results / f"quality-{info['host']}-{info['date']}"
    arguments = {key: str(value) for key, value in vars(args).items()}
    record = {"machine": info, "command": command, "args": arguments, "table": rows, "targets": targets}
    write_results(
        stem, runs, record, markdown_fragment(info, command, table, targets, [curves, grid], grid_blocks)
    )
    print(f"wrote {stem}.json, {stem}.md, {curves} and {grid}")


if __name__ == "__main__":
    main()
