"""Image quality on real cytology data: our conditional self-attention GAN against DCGAN.

    make bench-quality                     # CPU: tiny preset, small budget
    .venv/bin/python -m bench.quality --preset small --iters 10000 --device cuda

Both models train on ../shared/data/pbc4/train with the same seed, batch size and iteration
budget; each then samples 150 images per class and is measured against the test split with
`gen.report.make_report` (domain FID/KID per class, histogram KL per class beside its
real-vs-real floor, classifier utility; Inception FID when its weights are present). Prints a
side-by-side table, writes bench/results/quality-<machine>-<date>.json and a sample grid
(real | ours | dcgan, one row per class) to docs/. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

from gen.checkpoint import load_for_sampling
from gen.data import load_image_folder
from gen.images import write_grid
from gen.report import ReportSettings, make_report
from gen.runtime import resolve_device
from gen.sample import generate, load_generator
from gen.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
PBC4 = ROOT.parent / "shared" / "data" / "pbc4"
RESULTS = ROOT / "bench" / "results"
TARGETS = {
    "domain_fid": "ours <= 1/3 of dcgan",
    "histogram_kl": "<= 1.5 x floor (real train vs real test)",
    "accuracy": "real+synthetic > real only",
}


def train_and_report(preset: str, args: argparse.Namespace, work: Path) -> dict:
    started = time.perf_counter()
    result = train(
        TrainConfig(
            data=str(PBC4 / "train"),
            out=str(work / preset),
            preset=preset,
            iterations=args.iters,
            batch_size=args.batch_size,
            checkpoint_every=max(args.iters // 4, 1),
            seed=args.seed,
            device=args.device,
        ),
        progress=True,
    )
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = make_report(
        result.checkpoint,
        PBC4 / "test",
        PBC4 / "train",
        work / f"report-{preset}",
        settings=ReportSettings(n_per_class=args.n, histogram_n=150, seed=args.seed, utility=True),
        device=args.device,
        force=True,
        progress=False,
    )
    return {
        "preset": preset,
        "checkpoint": str(result.checkpoint),
        "train_seconds": train_seconds,
        "train_images_per_second": result.images_per_second,
        "report_seconds": time.perf_counter() - started,
        "figures": [(f.metric, f.class_name, f.value) for f in report.figures],
        "notes": report.notes,
    }


def value(run: dict, metric: str, class_name: str | None = None) -> float | None:
    return next((v for m, c, v in run["figures"] if m == metric and c == class_name), None)


def comparison_rows(
    ours: dict, baseline: dict, class_names: list[str]
) -> list[tuple[str, str, str, str, str]]:
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    rows = []
    for metric in ("fid", "domain_fid", "domain_kid"):
        for where in (None, *class_names):
            a, b = value(ours, metric, where), value(baseline, metric, where)
            if a is None and b is None:
                continue
            ratio = f"{a / b:.2f}" if a is not None and b else "-"
            rows.append((metric, where or "overall", fmt(a), fmt(b), f"ours/dcgan {ratio}"))
    for where in class_names:
        floor = value(ours, "histogram_kl_floor", where)
        a, b = value(ours, "histogram_kl", where), value(baseline, "histogram_kl", where)
        ratio = f"{a / floor:.2f}" if a is not None and floor else "-"
        rows.append(("histogram_kl", where, fmt(a), fmt(b), f"floor {fmt(floor)}, ours/floor {ratio}"))
    for regime in ("real_only", "synthetic_only", "real_plus_synthetic"):
        a, b = value(ours, f"accuracy_{regime}"), value(baseline, f"accuracy_{regime}")
        rows.append((f"accuracy_{regime}", "overall", fmt(a), fmt(b), ""))
    return rows


@torch.no_grad()
def write_comparison_grid(runs: list[dict], path: Path, device: torch.device, per_row: int = 6) -> None:
    """One row per class: real test images, then ours, then dcgan."""
    real = load_image_folder(PBC4 / "test")
    rows = []
    generators = [load_generator(load_for_sampling(run["checkpoint"]), device) for run in runs]
    for label in range(len(real.class_names)):
        row = [real.images[real.labels == label][:per_row]]
        for generator in generators:
            row.append(generate(generator, 1, label, list(range(per_row)), device))
        rows.append(torch.cat(row))
    write_grid(torch.cat(rows), per_row * (1 + len(runs)), path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default=None, help="ours: tiny on CPU, small on CUDA by default")
    parser.add_argument(
        "--iters", type=int, default=None, help="budget: 800 on CPU, 10000 on CUDA by default"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="16 on CPU, 64 on CUDA by default")
    parser.add_argument("--n", type=int, default=150, help="synthetic images per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=RESULTS / "quality-work")
    args = parser.parse_args()
    if not (PBC4 / "train").is_dir():
        raise SystemExit(f"bench-quality needs the pbc4 images at {PBC4}; they are not there.")
    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    args.preset = args.preset or ("small" if on_gpu else "tiny")
    args.iters = args.iters or (10_000 if on_gpu else 800)
    args.batch_size = args.batch_size or (64 if on_gpu else 16)
    machine = f"{platform.node()}-{device.type}"
    print(f"budget: {args.iters} iterations at batch {args.batch_size}, seed {args.seed}, on {device}")

    started = time.perf_counter()
    runs = [train_and_report(preset, args, args.work) for preset in (args.preset, "dcgan")]
    class_names = sorted(p.name for p in (PBC4 / "test").iterdir() if p.is_dir())
    rows = comparison_rows(runs[0], runs[1], class_names)
    print(f"\n{'metric':<30} {'class':<12} {args.preset:>10} {'dcgan':>10}  note")
    for metric, where, ours, baseline, note in rows:
        print(f"{metric:<30} {where:<12} {ours:>10} {baseline:>10}  {note}")
    for run in runs:
        print(
            f"{run['preset']}: trained {run['train_seconds']:.0f} s "
            f"({run['train_images_per_second']:.1f} images/s), "
            f"report {run['report_seconds']:.0f} s"
        )
    total = time.perf_counter() - started
    print(f"total {total / 60:.1f} min; targets: {TARGETS}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    grid = ROOT / "docs" / f"quality-grid-{device.type}.png"
    write_comparison_grid(runs, grid, device)
    out = RESULTS / f"quality-{machine}-{date.today()}.json"
    out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "runs": runs,
                "rows": rows,
                "total_seconds": total,
            },
            indent=2,
        )
    )
    print(f"wrote {out} and {grid}")


if __name__ == "__main__":
    main()
