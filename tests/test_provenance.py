"""gen.provenance: a Python caller of gen.train.train and gen.sample.sample gets the rows the
CLI writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import generators as generator_rows
from db import open_database
from db.models import Checkpoint, Image
from gen.phantoms import write_phantoms
from gen.provenance import model_checkpoint
from gen.sample import sample
from gen.train import train
from gen.train_config import RunStart, TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]


def test_python_callers_get_the_rows_of_the_cli(database_url: str, tmp_path: Path) -> None:
    data = tmp_path / "cells"
    write_phantoms(data, per_class=4)
    config = TrainConfig(
        data=str(data),
        out=str(tmp_path / "run"),
        preset="tiny",
        iterations=2,
        batch_size=4,
        checkpoint_every=1,
        device="cpu",
    )
    started: list[RunStart] = []
    trained = train(config, progress=False, database=database_url, on_start=started.append)
    assert trained.model_id is not None and [s.model_id for s in started] == [trained.model_id]

    engine = open_database(database_url)
    info = generator_rows.get_model(Session(engine), trained.model_id)
    assert [c.iteration for c in info.checkpoints] == [1, 2]
    assert info.training["epochs"] == round(2 * 4 / 16)  # images seen / training images
    assert model_checkpoint(info)[0] == trained.checkpoint

    resumed = train(dataclasses.replace(config, iterations=3), resume=True, progress=False, database=engine)
    assert resumed.model_id == trained.model_id  # a resumed run continues its model

    made = sample(
        trained.checkpoint, tmp_path / "samples", 2, seed=5, device="cpu", progress=False, database=engine
    )
    with Session(engine) as session:
        rows = session.execute(select(Image.file_path, Image.md5, Image.seed, Image.checkpoint_id)).all()
        sampled_from = session.scalar(select(Checkpoint.iteration).where(Checkpoint.id == rows[0][3]))
        checkpoints = session.scalar(select(func.count()).select_from(Checkpoint))
    assert sorted((str(p), m, s) for p, m, s, _ in rows) == sorted(
        (str(image.path.resolve()), image.md5, 5) for image in made.images
    )
    assert len(rows) == 2 * len(info.class_names) and sampled_from == 2
    assert checkpoints == 3  # sampling a recorded checkpoint adds no row for it


def test_a_database_or_a_recorder_not_both(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        sample({"path": "x"}, tmp_path, 1, database="sqlite://", recorder=object())  # type: ignore[arg-type]
