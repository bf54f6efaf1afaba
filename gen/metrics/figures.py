"""What a quality report is made of: its settings (``ReportSettings``) and what its steps add to
it (``Report``: figures, notes and plots).

Below every metric module: each metric's report step (``near_copies.near_copy_figures``,
``histogram.histogram_figures`` ...) adds its rows to a ``Report``, gen.report runs the steps
in turn and writes the result, and gen.provenance records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Figure:
    metric: str
    value: float
    class_name: str | None = None  # None: all classes
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    model_id: int | None
    checkpoint: str
    iteration: int
    class_names: tuple[str, ...]
    settings: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    utility: dict[str, Any] | None = None

    def add(self, metric: str, value: float, class_name: str | None = None, **settings: Any) -> None:
        self.figures.append(Figure(metric, float(value), class_name, settings))


@dataclass(frozen=True)
class ReportSettings:
    n_per_class: int = 300  # synthetic images generated per class
    histogram_n: int = 150  # the source's 150 real against 150 synthetic
    seed: int = 0
    classifier_epochs: int = 15
    utility: bool = False
    utility_epochs: int = 15
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    two_sample_folds: int = 5
    two_sample_epochs: int = 8
    gradcam: bool = False
    utility_classifier: int | None = None  # the classifiers row the utility figures use, if any
    curated_keep_best: float | None = None  # also measure a set curated by gen sample --keep-best
