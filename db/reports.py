"""Quality reports: the figures gen report measured for a model, per class or overall."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.errors import UserError
from db.generators import model_classes, require_model
from db.models import Report, utc_now
from db.session import transaction


@dataclass(frozen=True)
class ReportRow:
    metric: str
    class_name: str | None  # None: the figure covers all classes
    value: float
    settings: dict[str, Any] | None
    created_at: datetime


def record_report(session: Session, model_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record one quality report: rows of {"metric", "value", "class_name" (a name, or None for
    all classes), "settings" (optional)}. All rows share one created_at, which is what groups
    them into a report."""
    require_model(session, model_id)
    class_ids = {c.name: c.id for c in model_classes(session, model_id)}
    created_at = utc_now()
    values = []
    for row in rows:
        name = row.get("class_name")
        if name is not None and name not in class_ids:
            raise UserError(f"model {model_id} has no class {name!r}; its classes: {', '.join(class_ids)}")
        values.append(
            {
                "gan_id": model_id,
                "metric": row["metric"],
                "class_id": None if name is None else class_ids[name],
                "value": float(row["value"]),
                "settings": row.get("settings"),
                "created_at": created_at,
            }
        )
    if not values:
        return
    with transaction(session):
        session.execute(insert(Report), values)


def latest_report(session: Session, model_id: int) -> list[ReportRow]:
    """The newest figure of each (metric, class) recorded for the model, overall figures first.

    Per (metric, class) rather than the newest report as a whole, so that a report that measured
    only some metrics does not hide the others.
    """
    require_model(session, model_id)
    names = {c.id: c.name for c in model_classes(session, model_id)}
    reports = session.scalars(
        select(Report).where(Report.gan_id == model_id).order_by(Report.created_at.desc(), Report.id.desc())
    )
    newest: dict[tuple[str, int | None], Report] = {}
    for report in reports:
        newest.setdefault((report.metric, report.class_id), report)
    labels = {class_id: label for label, class_id in enumerate(names)}
    ordered = sorted(
        newest.values(), key=lambda r: (r.metric, -1 if r.class_id is None else labels[r.class_id])
    )
    return [
        ReportRow(
            metric=r.metric,
            class_name=None if r.class_id is None else names[r.class_id],
            value=r.value,
            settings=r.settings,
            created_at=r.created_at,
        )
        for r in ordered
    ]
