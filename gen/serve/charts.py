"""Line charts as inline SVG, drawn on the server: no plotting script in the browser, and a page
with a chart costs a few hundred points of text."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MAX_POINTS = 400  # per series: a long history is thinned to this many points


def _thin(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    step = max(1, math.ceil(len(points) / MAX_POINTS))
    thinned = list(points[::step])
    if points and thinned[-1] != points[-1]:
        thinned.append(points[-1])
    return thinned


def _label(value: float) -> str:
    return f"{value:.4g}"


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    title: str,
    *,
    x_label: str = "iteration",
    width: int = 480,
    height: int = 240,
    markers: bool = False,
) -> Markup:
    """One SVG plot of named (x, y) series, non-finite points left out; a note when empty."""
    clean = {
        name: _thin([(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)])
        for name, points in series.items()
    }
    clean = {name: points for name, points in clean.items() if points}
    if not clean:
        return Markup(f'<p class="empty">{escape(title)}: nothing recorded yet.</p>')
    xs = [x for points in clean.values() for x, _ in points]
    ys = [y for points in clean.values() for _, y in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    left, right, top, bottom = 52, 10, 24, 30
    plot_w, plot_h = width - left - right, height - top - bottom

    def position(x: float, y: float) -> str:
        return f"{left + (x - x0) / (x1 - x0) * plot_w:.1f},{top + (1 - (y - y0) / (y1 - y0)) * plot_h:.1f}"

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="{left}" y="15" class="chart-title">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="chart-frame"/>',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{_label(y1)}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">{_label(y0)}</text>',
        f'<text x="{left}" y="{height - 8}">{_label(x0)}</text>',
        f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end">{_label(x1)}</text>',
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>',
    ]
    for index, (name, points) in enumerate(clean.items()):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(position(x, y) for x, y in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5">'
            f"<title>{escape(name)}</title></polyline>"
        )
        if markers or len(points) == 1:
            parts += [
                f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{colour}"/>'
                for p in path.split()
            ]
        parts.append(
            f'<text x="{left + plot_w - 4}" y="{top + 14 + 13 * index}" text-anchor="end" fill="{colour}">'
            f"{escape(name)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
