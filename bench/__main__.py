"""`make bench`: every benchmark, one table, one JSON file.

    .venv/bin/python -m bench [--only train_sample,db,...]

Each module under bench/ exposes ``run() -> list[dict]`` (figure, preset, device, value,
unit, note) and takes medians itself; ratios a figure needs are computed inside one run.
Results go to bench/results/<machine>-<date>.json (not committed); docs/benchmarks.md keeps
the latest figures by hand. Asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import time
import traceback
from datetime import date
from pathlib import Path

import torch

MODULES = (
    "bench_train_sample",
    "bench_db",
    "bench_record",
    "bench_metrics",
    "bench_export",
    "bench_jobs",
    "bench_search",
    "bench_serve",
)
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "torch": torch.__version__,
        "commit": commit,
        "date": str(date.today()),
    }


def format_value(row: dict) -> str:
    value = row.get("value")
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated module names, e.g. bench_db,bench_export")
    args = parser.parse_args()
    modules = args.only.split(",") if args.only else MODULES
    info = machine()
    print("  ".join(f"{key}: {value}" for key, value in info.items()))
    rows: list[dict] = []
    for name in modules:
        started = time.perf_counter()
        try:
            module_rows = importlib.import_module(f"bench.{name}").run()
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            module_rows = [
                {"figure": f"{name} failed", "value": None, "unit": "", "note": "see traceback above"}
            ]
        for row in module_rows:
            row.setdefault("module", name)
        rows.extend(module_rows)
        print(f"[{name}: {time.perf_counter() - started:.0f} s]", flush=True)

    print(f"\n{'figure':<44} {'preset':<7} {'device':<24} {'value':>12} {'unit':<10} note")
    for row in rows:
        print(
            f"{row.get('figure', ''):<44} {row.get('preset', '-') or '-':<7} {row.get('device', '-'):<24} "
            f"{format_value(row):>12} {row.get('unit', ''):<10} {row.get('note', '')}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{info['host']}-{info['date']}.json"
    out.write_text(json.dumps({"machine": info, "rows": rows}, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
