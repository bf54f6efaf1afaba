"""Figures for reports: matplotlib's object API on the Agg canvas, written atomically.

No pyplot: it keeps global state and picks a GUI backend where one exists; a report writer
must work headless and must not change anyone else's matplotlib setup.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gen.checkpoint import atomic_write


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda file: figure.savefig(file, format="png"))
    return path
