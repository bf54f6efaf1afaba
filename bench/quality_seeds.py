"""Mean ± std over seeds of several `python -m bench.quality --seed S` results.

    .venv/bin/python -m bench.quality_seeds bench/results/seed-*/quality-*.json

Each JSON is one seed's run of the same --models; the table takes every model's last point
(the figures, the minutes and the iterations) and gives mean ± std (n - 1) per cell, with the
floor of the first seed. Prints the markdown table and writes it beside the first JSON as
quality-seeds.md. Asserts nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

METRICS = (
    ("domain_fid", "normalised domain FID", "domain_fid_floor"),
    ("histogram_kl", "histogram KL", "histogram_kl_floor"),
    ("colour_spread", "colour spread (synthetic / real)", "colour_spread_floor"),
    ("domain_classifier_accuracy_on_synthetic", "domain accuracy on synthetic", "domain_classifier_accuracy"),
    ("two_sample_auc", "two-sample AUC", None),
    ("curated_domain_fid", "curated: normalised domain FID", "domain_fid_floor"),
    ("curated_domain_classifier_accuracy_on_synthetic", "curated: domain accuracy on synthetic", None),
    ("curated_two_sample_auc", "curated: two-sample AUC", None),
)


def last_figures(path: Path) -> tuple[dict[str, dict], list[str]]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"{path}: not a readable bench.quality result ({error}).") from None
    finals = {}
    for model, points in record["runs"].items():
        point = points[-1]
        figures = {(metric, name): value for metric, name, value in point["figures"]}
        figures["minutes", None], figures["iterations", None] = point["minutes"], point["iteration"]
        for regime, values in point["utility"].items():
            figures[f"utility {regime}", None] = float(np.mean(values))
        finals[model] = figures
    classes = sorted({name for figures in finals.values() for (_, name) in figures if name})
    return finals, classes


def cell(values: list[float]) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "-"
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.3g} ± {std:.2g}"


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        raise SystemExit(__doc__ if argv else "give the JSON files of one bench.quality run per seed.")
    paths = [Path(arg) for arg in argv]
    seeds = [last_figures(path) for path in paths]
    models, classes = list(seeds[0][0]), seeds[0][1]
    floors = seeds[0][0][models[0]]
    rows = [["training minutes", ""], ["iterations", ""]]
    keys = [("minutes", None), ("iterations", None)]
    for metric, title, floor in METRICS:
        names = (None, *classes)
        for name in names:
            rows.append([title, name or "overall", *[], floors.get((floor, name)) if floor else None])
            keys.append((metric, name))
    utilities = sorted(k for k in floors if k[0].startswith("utility "))
    for key in utilities:
        rows.append([key[0], ""])
        keys.append(key)
    lines = [["metric", "class", *models, "floor"], ["---", "---", *["---:"] * (len(models) + 1)]]
    for row, key in zip(rows, keys, strict=True):
        floor = row[2] if len(row) > 2 else None
        values = [cell([seed[0][model].get(key) for seed in seeds]) for model in models]
        if set(values) == {"-"}:  # a figure the runs do not give per class (curated ones)
            continue
        lines.append([row[0], row[1], *values, "-" if floor is None else f"{floor:.3g}"])
    table = "\n".join("| " + " | ".join(line) + " |" for line in lines)
    header = f"Mean ± std over {len(seeds)} seeds ({', '.join(p.parent.name for p in paths)})."
    text = f"{header}\n\n{table}\n"
    print(text)
    (paths[0].parent / "quality-seeds.md").write_text(text)


if __name__ == "__main__":
    main(sys.argv[1:])
