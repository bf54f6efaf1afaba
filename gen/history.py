"""A run's loss history: ``history.csv`` (a row every ``--log-every`` iterations and at each
checkpoint) and ``history.png``.

Rows average the losses and mean scores over the iterations since the previous row; gradient
norms and learning rates are those of the row's last iteration. Evaluations (normalised domain
FID, with ``--eval-every``) are rows of their own with only ``iteration`` and ``domain_fid``.
Rows reach the file at each checkpoint, so the file always matches the checkpoints on disk; a
resumed run first drops the rows past the checkpoint it resumes from (they are trained again).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gen.checkpoint import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HISTORY_CSV = "history.csv"
HISTORY_PNG = "history.png"
COLUMNS = (
    "iteration",
    "seconds",
    "d_loss",
    "g_loss",
    "d_real",
    "d_fake",
    "d_grad_norm",
    "g_grad_norm",
    "g_lr",
    "d_lr",
    "images_per_second",
    "domain_fid",
)


def read_history(path: str | Path) -> list[dict[str, float]]:
    """The rows of a history.csv, empty cells left out of each row."""
    with open(path, newline="") as file:
        return [
            {name: float(value) for name, value in row.items() if value not in ("", None)}
            for row in csv.DictReader(file)
        ]


class History:
    def __init__(self, run_dir: Path, start_iteration: int):
        self.path = Path(run_dir) / HISTORY_CSV
        self.columns: list[str] | None = None
        self.pending: list[dict[str, Any]] = []
        self._sums: dict[str, Any] = {}
        self._count = 0
        if self.path.is_file():
            with open(self.path, newline="") as file:
                reader = csv.DictReader(file)
                self.columns = list(reader.fieldnames or COLUMNS)
                kept = [row for row in reader if float(row["iteration"]) <= start_iteration]
            self._write(kept, mode="replace")

    def add(
        self,
        iteration: int,
        figures: Any,
        extras: dict[str, float],
        *,
        lrs: tuple[float, float],
        images_per_second: float,
        seconds: float,
        row: bool,
    ) -> None:
        """One iteration's StepFigures (tensors, summed here and synced once per row); ``row``:
        this iteration ends a row."""
        for name in ("d_loss", "g_loss", "d_real", "d_fake"):
            value = getattr(figures, name).detach().float()
            self._sums[name] = self._sums.get(name, 0) + value
        self._count += 1
        if not row:
            return
        row: dict[str, Any] = {"iteration": iteration, "seconds": round(seconds, 3)}
        row |= {name: float(total) / self._count for name, total in self._sums.items()}
        row |= {
            "d_grad_norm": figures.d_grad_norm,
            "g_grad_norm": figures.g_grad_norm,
            "g_lr": lrs[0],
            "d_lr": lrs[1],
            "images_per_second": round(images_per_second, 2),
        }
        row |= extras
        self.pending.append(row)
        self._sums, self._count = {}, 0

    def flush(self, evaluation: tuple[int, float] | None = None) -> None:
        """Append the rows so far (and an evaluation row) to history.csv; redraw history.png."""
        if evaluation is not None:
            self.pending.append({"iteration": evaluation[0], "domain_fid": evaluation[1]})
        if self.pending:
            self._write(self.pending, mode="append")
            self.pending = []
        if self.path.is_file():
            plot_history(read_history(self.path), self.path.with_name(HISTORY_PNG))

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        if self.columns is None:
            extras = sorted({name for row in rows for name in row} - set(COLUMNS))
            self.columns = [*COLUMNS, *extras]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        existing = self.path.read_text() if mode == "append" and self.path.is_file() else ""
        if not existing:
            writer.writeheader()
        writer.writerows(rows)
        data = (existing + text.getvalue()).encode()
        atomic_write(self.path, lambda file: file.write(data))


# What an empty panel says instead of staying blank.
EMPTY_PANEL = {"domain_fid": "no evaluation:\ntrain with --eval-every N"}
NO_ROWS_YET = "no figures yet"


def plot_history(rows: list[dict[str, float]], path: Path) -> Path:
    """Losses, mean D scores, gradient norms and (when evaluated) domain FID against iteration;
    a panel with nothing to draw says why in its middle."""
    from gen.metrics._plotting import save_png

    return save_png(history_figure(rows), path)


def history_figure(rows: list[dict[str, float]]) -> Figure:
    """The matplotlib Figure plot_history writes: four panels, two by two."""
    from gen.metrics._plotting import new_figure

    panels = [
        ("loss", ("d_loss", "g_loss"), False),
        ("mean D output", ("d_real", "d_fake"), False),
        ("gradient norm", ("d_grad_norm", "g_grad_norm"), True),
        ("normalised domain FID", ("domain_fid",), False),
    ]
    figure = new_figure(10, 6.5)
    axes = figure.subplots(2, 2, sharex=True).flatten()
    for axis, (title, names, logarithmic) in zip(axes, panels, strict=True):
        for name in names:
            points = [(row["iteration"], row[name]) for row in rows if math.isfinite(row.get(name, math.nan))]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, label=name, marker="o" if name == "domain_fid" else None, linewidth=1)
        if logarithmic and axis.lines and all(y > 0 for line in axis.lines for y in line.get_ydata()):
            axis.set_yscale("log")
        axis.set_title(title)
        if axis.lines:
            axis.legend(loc="best", fontsize="small")
        else:
            reason = EMPTY_PANEL.get(names[0], NO_ROWS_YET)
            axis.text(0.5, 0.5, reason, transform=axis.transAxes, ha="center", va="center", color="0.4")
    for axis in axes[2:]:
        axis.set_xlabel("iteration")
    return figure
