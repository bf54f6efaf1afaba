"""gen sample and gen reproduce: every image recorded, reruns completing a request, images
made again from their rows.

End to end through click's CliRunner; each test that takes `database_url` runs on SQLite and
on PostgreSQL (see conftest).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_support import (
    SAMPLE,
    Trained,
    adopt,
    arguments,
    assert_user_error,
    check_rows,
    files_under,
    gen,
    image_rows,
    kill_gen_when,
    md5_of,
    model_ids,
    ok,
    row_counts,
    session_on,
    sha256_of,
)
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

import db.images
from db.errors import UserError
from db.models import Checkpoint, ClassName, GanArchitecture, Image
from db.session import make_engine, migrate
from gen.checkpoint import load_checkpoint
from gen.cli import cli
from gen.networks import build
from gen.sample import generate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sample_uses_the_latest_model_unless_told_and_records_every_image(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    first_checkpoint, latest_checkpoint = trained.checkpoints
    first = adopt(database_url, trained, tmp_path / "adopt-first", first_checkpoint)
    latest = adopt(database_url, trained, tmp_path / "adopt-latest", latest_checkpoint)
    assert model_ids(database_url) == [first, latest]

    out = tmp_path / "latest"
    picked = [trained.classes[1], trained.classes[3]]
    ok(
        gen(
            database_url,
            f"sample --n 3 --class {picked[0]} --class {picked[1]} --seed 5 --out {out} {SAMPLE}",
        )
    )
    rows = image_rows(database_url, out)
    check_rows(rows, out, 3, picked, seed=5)
    assert {(row.gan_id, row.checkpoint_path, row.iteration) for row in rows} == {
        (latest, str(latest_checkpoint.resolve()), 2)
    }

    out = tmp_path / "chosen"
    ok(gen(database_url, f"sample --model {first} --n 2 --all-classes --out {out} {SAMPLE}"))
    rows = image_rows(database_url, out)
    check_rows(rows, out, 2, trained.classes, seed=0)
    assert {(row.gan_id, row.checkpoint_path, row.iteration) for row in rows} == {
        (first, str(first_checkpoint.resolve()), 1)
    }
    assert [row.label for row in rows] == [trained.classes.index(row.class_name) for row in rows]


def test_recorded_images_are_made_again_from_the_database_alone(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    # 5 per class in batches of 4: the last image of each class is computed on its own.
    out = tmp_path / "samples"
    ok(
        gen(
            database_url,
            f"sample --checkpoint {trained.run} --n 5 --all-classes --seed 11 --out {out} {SAMPLE}",
        )
    )

    with session_on(database_url) as session:
        recorded = session.execute(
            select(
                GanArchitecture.generator,
                Checkpoint.path,
                Checkpoint.sha256,
                ClassName.label,
                Image.seed,
                Image.sample_index,
                Image.md5,
                Image.file_path,
            )
            .join(ClassName, ClassName.id == Image.class_id)
            .join(GanArchitecture, GanArchitecture.id == ClassName.gan_id)
            .join(Checkpoint, Checkpoint.id == Image.checkpoint_id)
        ).all()
    assert len(recorded) == 5 * len(trained.classes)
    streams: dict[tuple[str, str, str, int, int], dict[int, tuple[str, str]]] = defaultdict(dict)
    for generator_json, path, sha256, label, seed, index, md5, file_path in recorded:
        key = (json.dumps(generator_json, sort_keys=True), path, sha256, label, seed)
        streams[key][index] = (md5, file_path)

    for (generator_json, path, sha256, label, seed), files in streams.items():
        assert sha256_of(path) == sha256
        generator = build(json.loads(generator_json))
        generator.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["generator_ema"])
        generator.eval()
        indices = sorted(files)
        pixels = generate(generator, seed, label, indices, torch.device("cpu"))
        for index, image in zip(indices, pixels, strict=True):
            md5, file_path = files[index]
            assert md5_of(file_path) == md5
            # Another batch size than the sampler's: equal within one level on any CPU (gen.sample).
            with PILImage.open(file_path) as opened:
                on_disk = torch.from_numpy(np.array(opened.convert("RGB"))).permute(2, 0, 1).short()
            assert int((on_disk - image.short()).abs().max()) <= 1, (file_path, index)


def test_rerun_adds_nothing_and_a_larger_request_completes_it(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    out = tmp_path / "samples"
    request = f"sample --checkpoint {trained.run} --all-classes --out {out} {SAMPLE}"
    ok(gen(database_url, f"{request} --n 3"))
    rows, files = image_rows(database_url, out), files_under(out)
    check_rows(rows, out, 3, trained.classes, seed=0)

    result = ok(gen(database_url, f"{request} --n 3"))
    assert "wrote 0 images" in result.stdout and "12 were already there" in result.stdout
    assert image_rows(database_url, out) == rows
    assert files_under(out) == files

    result = ok(gen(database_url, f"{request} --n 5"))
    assert "wrote 8 images" in result.stdout and "12 were already there" in result.stdout
    completed = image_rows(database_url, out)
    check_rows(completed, out, 5, trained.classes, seed=0)
    assert completed[: len(rows)] == rows
    counts = row_counts(database_url)
    assert (counts["gan_architectures"], counts["checkpoints"]) == (1, 1)  # adopted once


def test_files_written_but_not_recorded_are_adopted_by_a_rerun(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    out = tmp_path / "samples"
    name = trained.classes[2]
    request = f"sample --checkpoint {trained.run} --class {name} --n 6 --out {out} {SAMPLE}"
    ok(gen(database_url, request))
    recorded = {(row.file_path, row.md5, row.sample_index) for row in image_rows(database_url, out)}
    files = files_under(out)
    # As if killed after the second batch's files were linked but before its rows were
    # committed, and inside the write of the file after them.
    with session_on(database_url) as session:
        session.execute(delete(Image).where(Image.sample_index >= 4))
        session.commit()
    (out / name / f".{name}_000007.png.tmp").write_bytes(b"half a png")

    result = ok(gen(database_url, request))
    assert "wrote 2 images" in result.stdout and "4 were already there" in result.stdout
    assert {(row.file_path, row.md5, row.sample_index) for row in image_rows(database_url, out)} == recorded
    assert files_under(out) == files


def test_a_full_database_disk_while_sampling_is_one_sentence_and_a_rerun_completes(
    database_url: str, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    out = tmp_path / "samples"
    name = trained.classes[1]
    request = f"sample --checkpoint {trained.run} --class {name} --n 6 --out {out} {SAMPLE}"
    real_record_images, batches = db.images.record_images, []

    def disk_fills_at_the_second_batch(session: Session, rows: Sequence[dict[str, Any]]) -> None:
        batches.append(len(rows))
        if len(batches) == 2:  # what SQLite (SQLITE_FULL) or PostgreSQL (53100) says, as SQLAlchemy raises it
            full = sqlite3.OperationalError("database or disk is full")
            raise OperationalError("INSERT INTO images ...", {}, full)
        real_record_images(session, rows)

    monkeypatch.setattr(db.images, "record_images", disk_fills_at_the_second_batch)
    line = assert_user_error(
        gen(database_url, request), "the database's disk is full: 2 images of this batch"
    )
    assert "run the same gen sample again, which records them." in line
    assert len(image_rows(database_url, out)) == 4 and len(files_under(out)) == 6  # batches of 4

    monkeypatch.setattr(db.images, "record_images", real_record_images)
    result = ok(gen(database_url, request))
    assert "4 were already there" in result.stdout
    check_rows(image_rows(database_url, out), out, 6, [name], seed=0)  # adopted, nothing written twice


def test_killed_sample_is_completed_by_a_rerun(database_url: str, trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "samples"
    n = 40
    command = arguments(
        database_url, f"sample --checkpoint {trained.run} --n {n} --all-classes --out {out} {SAMPLE}"
    )
    kill_gen_when(
        command,
        lambda: len(list(out.rglob("*.png"))) >= 6,
        cwd=tmp_path,
        within_s=120,
        poll_s=0.02,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # as this process (one_torch_thread)
    )
    recorded_before = image_rows(database_url, out)
    assert len(list(out.rglob("*.png"))) < n * len(trained.classes)
    assert all(md5_of(row.file_path) == row.md5 for row in recorded_before)  # no row without its file

    ok(CliRunner().invoke(cli, command))
    for name in trained.classes:
        assert len(list((out / name).glob("*.png"))) == n
    assert [path for path in out.rglob("*") if path.name.endswith(".tmp")] == []
    rows = image_rows(database_url, out)
    check_rows(rows, out, n, trained.classes, seed=0)
    assert rows[: len(recorded_before)] == recorded_before


def test_unknown_class_names_the_classes(database_url: str, trained: Trained, tmp_path: Path) -> None:
    message = f"unknown class 'lymphocyte'; this model has: {', '.join(trained.classes)}"
    classes = f"--class {trained.classes[0]} --class lymphocyte"
    # A checkpoint new to the database: the mistake must not record its model either.
    request = f"sample --checkpoint {trained.run} --n 2 {classes} --out {tmp_path / 'new'} {SAMPLE}"
    assert_user_error(gen(database_url, request), message)
    assert set(row_counts(database_url).values()) <= {0}
    assert not (tmp_path / "new").exists()

    gan_id = adopt(database_url, trained, tmp_path / "first")
    counts, files = row_counts(database_url), files_under(tmp_path)
    assert_user_error(
        gen(database_url, f"sample --model {gan_id} --n 2 {classes} --out {tmp_path / 'new'} {SAMPLE}"),
        message,
    )
    assert row_counts(database_url) == counts
    assert files_under(tmp_path) == files


def test_reproduce_says_within_tolerance_and_differs(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    out = tmp_path / "s"
    ok(
        gen(
            database_url,
            f"sample --checkpoint {trained.run} --n 2 --class {trained.classes[0]} --out {out} {SAMPLE}",
        )
    )
    rows = image_rows(database_url, out)
    first, second = (Path(row.file_path) for row in rows)
    # A pixel one level off, as another CPU may compute it, recorded as such.
    with PILImage.open(first) as image:
        pixels = np.array(image.convert("RGB"))
    pixels[0, 0, 0] = pixels[0, 0, 0] + 1 if pixels[0, 0, 0] < 255 else 254
    PILImage.fromarray(pixels).save(first)
    # And a picture that is not what the row says at all.
    PILImage.fromarray(255 - np.array(PILImage.open(second).convert("RGB"))).save(second)
    with session_on(database_url) as session:
        for row, path in zip(rows, (first, second), strict=True):
            session.execute(update(Image).where(Image.id == row.id).values(md5=md5_of(path)))
        session.commit()
    result = gen(database_url, f"reproduce {rows[0].id} {rows[1].id} --device cpu")
    assert result.exit_code == 1, result.output
    assert (
        f"image {rows[0].id} " in result.output
        and "within tolerance (pixels up to 1 level apart" in result.output
    )
    assert "differs (pixels up to" in result.output
    assert "Error: 0 exact, 1 within one level, 1 differ" in result.output
    unknown = gen(database_url, "reproduce 99999")
    assert_user_error(unknown, "no image 99999")


def test_a_model_deleted_while_sampling_stops_the_sampler_with_a_sentence(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    from db import generators as generator_rows
    from gen.sample import sample as run_sampling

    engine = make_engine(database_url)
    migrate(engine)
    state = load_checkpoint(trained.checkpoints[-1])
    with Session(engine) as session:
        gan_id, checkpoint_id = generator_rows.adopt_checkpoint(
            session, state, sha256_of(trained.checkpoints[-1])
        )
    recorder = db.images.ImageRecorder(engine, gan_id, checkpoint_id, state["iteration"], 0)
    real_record = recorder.record
    calls = []

    def delete_the_model_after_the_first_batch(images: Any) -> None:
        if calls:
            with Session(engine) as session:
                generator_rows.delete_model(session, gan_id, cascade=True)  # gen models delete --cascade
        calls.append(len(images))
        real_record(images)

    recorder.record = delete_the_model_after_the_first_batch
    with pytest.raises(UserError, match="the model was deleted from the database while sampling"):
        run_sampling(state, tmp_path / "s", 4, [trained.classes[0]], batch_size=2, device="cpu",
                     recorder=recorder, progress=False)  # fmt: skip
    engine.dispose()
