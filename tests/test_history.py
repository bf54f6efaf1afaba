"""gen.history: history.png's panels, and what an empty one says."""

from __future__ import annotations

from pathlib import Path

from gen.history import history_figure, plot_history

ROWS = [
    {"iteration": i, "d_loss": 1.0, "g_loss": 2.0, "d_real": 0.5, "d_fake": -0.5, "d_grad_norm": 1.0}
    | {"g_grad_norm": 2.0}
    for i in (1, 2, 3)
]


def panel_texts(rows: list[dict[str, float]]) -> dict[str, list[str]]:
    return {axis.get_title(): [text.get_text() for text in axis.texts] for axis in history_figure(rows).axes}


def test_without_evaluations_the_fid_panel_says_why_it_is_empty(tmp_path: Path) -> None:
    texts = panel_texts(ROWS)
    assert texts["normalised domain FID"] == ["no evaluation:\ntrain with --eval-every N"]
    assert texts["loss"] == [] and texts["gradient norm"] == []
    assert plot_history(ROWS, tmp_path / "history.png").stat().st_size > 1000


def test_with_evaluations_the_fid_panel_draws_them() -> None:
    evaluated = [*ROWS, {"iteration": 3, "domain_fid": 12.5}]
    assert panel_texts(evaluated)["normalised domain FID"] == []
    figure = history_figure(evaluated)
    fid = next(axis for axis in figure.axes if axis.get_title() == "normalised domain FID")
    assert list(fid.lines[0].get_ydata()) == [12.5]
