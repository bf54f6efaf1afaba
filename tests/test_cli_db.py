"""The `gen` commands that touch the database, end to end through click's CliRunner; each test
that takes `database_url` runs on SQLite and on PostgreSQL (see conftest).

One tiny model is trained once for the module (into a SQLite file of its own); tests that only
sample adopt its checkpoint into their database with `gen sample --checkpoint RUN`, as a user
sampling a run trained elsewhere would.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image as PILImage
from sqlalchemy import delete, func, inspect, select, text, update
from sqlalchemy.orm import Session

from db import queries
from db.errors import UserError
from db.models import Base, Checkpoint, ClassName, GanArchitecture, Image
from db.session import head_revision, make_engine, migrate
from gen.architecture import preset, to_json
from gen.checkpoint import load_checkpoint
from gen.cli import cli
from gen.commands import confirm
from gen.data import load_image_folder
from gen.networks import build
from gen.phantoms import write_phantoms
from gen.sample import generate
from tests.pg_server import PostgresServer

TRAIN = "--preset tiny --batch-size 4 --checkpoint-every 1 --device cpu --quiet"
SAMPLE = "--batch-size 4 --device cpu --quiet"
UNREACHABLE_URL = "postgresql://nobody@127.0.0.1:1/x"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass(frozen=True)
class Trained:
    data: Path
    run: Path
    checkpoints: tuple[Path, ...]  # oldest first: iterations 1 and 2
    classes: tuple[str, ...]  # in label order


@dataclass(frozen=True)
class ImageRow:
    id: int
    file_path: str
    class_name: str
    label: int
    gan_id: int
    md5: str
    width: int
    height: int
    seed: int
    sample_index: int
    iteration: int
    checkpoint_path: str


def arguments(url: str | None, command: str) -> list[str]:
    """`COMMAND --db URL` as a list of arguments (no --db when url is None)."""
    return [*shlex.split(command), *(["--db", url] if url else [])]


def gen(
    url: str | None, command: str, *, env: dict[str, str | None] | None = None, input: str | None = None
) -> Result:
    """`gen COMMAND --db URL` in this process."""
    return CliRunner(env=env).invoke(cli, arguments(url, command), input=input)


def ok(result: Result) -> Result:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def assert_user_error(result: Result, *fragments: str) -> str:
    """One line `Error: ...` holding every fragment, exit status 1, no traceback; returns the line."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@contextmanager
def session_on(url: str) -> Iterator[Session]:
    """A session straight on the database, without open_database's checks."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def image_rows(url: str, under: Path | None = None) -> list[ImageRow]:
    """The images table (with each row's class and checkpoint), oldest first; only files under
    the folder `under` when given."""
    with session_on(url) as session:
        rows = session.execute(
            select(Image, ClassName, Checkpoint.path)
            .join(ClassName, ClassName.id == Image.class_id)
            .join(Checkpoint, Checkpoint.id == Image.checkpoint_id)
            .order_by(Image.id)
        ).all()
        found = [
            ImageRow(
                id=image.id,
                file_path=image.file_path,
                class_name=class_name.name,
                label=class_name.label,
                gan_id=class_name.gan_id,
                md5=image.md5,
                width=image.width,
                height=image.height,
                seed=image.seed,
                sample_index=image.sample_index,
                iteration=image.iteration,
                checkpoint_path=checkpoint_path,
            )
            for image, class_name, checkpoint_path in rows
        ]
    prefix = str(under.resolve()) + os.sep if under is not None else ""
    return [row for row in found if row.file_path.startswith(prefix)]


def row_counts(url: str) -> dict[str, int]:
    """Rows per gen table; an empty dict for a database without them (a new SQLite file is made)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            return {
                table.name: connection.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables
                if table.name in present
            }
    finally:
        engine.dispose()


def model_ids(url: str) -> list[int]:
    with session_on(url) as session:
        return [model.id for model in queries.list_models(session)]


def files_under(folder: Path) -> list[Path]:
    """Every file under folder but a SQLite database's (its -wal and -shm come and go)."""
    if not folder.exists():
        return []
    return sorted(path for path in folder.rglob("*") if path.is_file() and not path.name.startswith("gen.db"))


def md5_of(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_rows(rows: Sequence[ImageRow], out: Path, n: int, classes: Sequence[str], seed: int) -> None:
    """One row per PNG under out, each true to its file, sample indices 0..n-1 per class."""
    pngs = sorted(out.rglob("*.png"))
    assert sorted(row.file_path for row in rows) == sorted(str(path.resolve()) for path in pngs)
    assert len(rows) == n * len(classes)
    indices: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        path = Path(row.file_path)
        assert path.is_absolute() and path.is_file()
        assert path.parent == (out / row.class_name).resolve()
        assert row.md5 == md5_of(path)
        assert (row.width, row.height, row.seed) == (64, 64, seed)
        with PILImage.open(path) as image:
            assert (image.size, image.mode) == ((64, 64), "RGB")
        indices[row.class_name].append(row.sample_index)
    assert {name: sorted(found) for name, found in indices.items()} == {
        name: list(range(n)) for name in classes
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Phantoms (8 per class) and a tiny model trained for 2 iterations, a checkpoint each."""
    root = tmp_path_factory.mktemp("trained")
    data, run = root / "data", root / "run"
    write_phantoms(data, per_class=8)
    ok(gen(f"sqlite:///{root / 'train.db'}", f"train --data {data} --out {run} --iters 2 {TRAIN}"))
    checkpoints = (run / "checkpoint-0000001.pt", run / "checkpoint-0000002.pt")
    assert all(path.is_file() for path in checkpoints)
    classes = tuple(sorted(path.name for path in data.iterdir()))
    return Trained(data=data, run=run, checkpoints=checkpoints, classes=classes)


def adopt(url: str, trained: Trained, out: Path, checkpoint: Path | None = None, n: int = 1) -> int:
    """Sample n images of the first class from a checkpoint (the run's latest by default), which
    records its model in the database; returns the model's id."""
    checkpoint = checkpoint or trained.run
    ok(
        gen(
            url, f"sample --checkpoint {checkpoint} --n {n} --class {trained.classes[0]} --out {out} {SAMPLE}"
        )
    )
    return max(model_ids(url))


# Training


def test_train_records_the_model_and_resume_extends_it(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = ok(gen(database_url, f"train --data {trained.data} --out {run} --iters 1 --g-lr 0.0002 {TRAIN}"))
    match = re.fullmatch(r"model (\d+)", result.stdout.splitlines()[0])
    assert match, result.stdout
    gan_id = int(match[1])

    with session_on(database_url) as session:
        info = queries.get_model(session, gan_id)
    generator, discriminator = preset("tiny", 4)
    assert info.generator == to_json(generator)
    assert info.discriminator == to_json(discriminator)
    assert info.preset == "tiny"
    assert info.class_names == trained.classes  # label order: the sorted folder names
    training = info.training
    assert (training["g_lr"], training["d_lr"]) == (2e-4, 4e-4)
    assert training["betas"] == {"g": [0.5, 0.999], "d": [0.5, 0.999]}
    assert (training["batch_size"], training["iterations"], training["seed"]) == (4, 1, 0)
    assert (training["loss"], training["g_optimizer"], training["d_optimizer"]) == ("hinge", "adam", "adam")
    assert (training["ema_decay"], training["diffaugment"]) == (0.999, "color,translation")
    assert training["dataset_fingerprint"] == load_image_folder(trained.data).fingerprint
    assert training["dataset_path"] == str(trained.data.resolve())
    first = run / "checkpoint-0000001.pt"
    assert [(c.iteration, c.path, c.sha256) for c in info.checkpoints] == [
        (1, str(first.resolve()), sha256_of(first))
    ]

    result = ok(gen(database_url, f"train --out {run} --resume --iters 2 --device cpu --quiet"))
    assert result.stdout.splitlines()[0] == f"model {gan_id}"
    with session_on(database_url) as session:
        info = queries.get_model(session, gan_id)
    assert model_ids(database_url) == [gan_id]
    assert [(c.iteration, c.path) for c in info.checkpoints] == [
        (1, str(first.resolve())),
        (2, str((run / "checkpoint-0000002.pt").resolve())),
    ]
    assert all(c.sha256 == sha256_of(c.path) for c in info.checkpoints)
    assert info.training["iterations"] == 2
    assert info.training["g_lr"] == 2e-4  # resuming keeps the stored settings
    assert row_counts(database_url)["training_parameters"] == 1


# Sampling


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
    real_record_images, batches = queries.record_images, []

    def disk_fills_at_the_second_batch(session: Session, rows: Sequence[dict[str, Any]]) -> None:
        batches.append(len(rows))
        if len(batches) == 2:  # what SQLite (SQLITE_FULL) or PostgreSQL (53100) says, as SQLAlchemy raises it
            full = sqlite3.OperationalError("database or disk is full")
            raise OperationalError("INSERT INTO images ...", {}, full)
        real_record_images(session, rows)

    monkeypatch.setattr(queries, "record_images", disk_fills_at_the_second_batch)
    line = assert_user_error(
        gen(database_url, request), "the database's disk is full: 2 images of this batch"
    )
    assert "run the same gen sample again, which records them." in line
    assert len(image_rows(database_url, out)) == 4 and len(files_under(out)) == 6  # batches of 4

    monkeypatch.setattr(queries, "record_images", real_record_images)
    result = ok(gen(database_url, request))
    assert "4 were already there" in result.stdout
    check_rows(image_rows(database_url, out), out, 6, [name], seed=0)  # adopted, nothing written twice


def test_killed_sample_is_completed_by_a_rerun(database_url: str, trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "samples"
    n = 40
    command = arguments(
        database_url, f"sample --checkpoint {trained.run} --n {n} --all-classes --out {out} {SAMPLE}"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", "from gen.cli import main; main()", *command],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # as this process (one_torch_thread)
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(out.rglob("*.png"))) < 6:
            assert process.poll() is None, f"gen sample ended before it was killed: {process.stderr.read()}"
            assert time.monotonic() < deadline, "gen sample wrote no images in 120 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
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


# Managing models


def test_models_list_show_and_delete(
    database_url: str, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "samples"
    gan_id = adopt(database_url, trained, out, n=2)

    lines = ok(gen(database_url, "models list")).stdout.splitlines()
    assert lines[0].split() == ["id", "preset", "iterations", "images", "created", "classes"]
    assert len(lines) == 2
    assert lines[1].split()[:4] == [str(gan_id), "tiny", "2", "2"]
    assert lines[1].endswith(", ".join(trained.classes))

    shown = ok(gen(database_url, f"models show {gan_id}")).stdout
    assert shown.startswith(f"model {gan_id} (tiny), created ")
    assert f"{trained.classes[0]} (2 images)" in shown
    assert all(f"{name} (0 images)" in shown for name in trained.classes[1:])
    checkpoint = trained.checkpoints[-1]
    line = rf"^\s+2\s+{re.escape(str(checkpoint.resolve()))}\s+sha256 {sha256_of(checkpoint)[:12]}$"
    assert re.search(line, shown, re.M)
    for key, value in [
        ("g_lr", "0.0001"),
        ("d_lr", "0.0004"),
        ("batch_size", "4"),
        ("iterations", "2"),
        ("betas", '{"d": [0.5, 0.999], "g": [0.5, 0.999]}'),
        ("dataset_fingerprint", load_image_folder(trained.data).fingerprint),
    ]:
        assert re.search(rf"^\s+{key}\s+{re.escape(value)}$", shown, re.M), key

    counts = row_counts(database_url)
    assert_user_error(
        gen(database_url, f"models delete {gan_id}"),
        f"model {gan_id} still has 2 recorded images",
        "--cascade",
    )
    # Without a terminal there is nobody to ask; on one, the question is asked.
    assert_user_error(gen(database_url, f"models delete {gan_id} --cascade"), "pass --yes")
    monkeypatch.setattr(confirm, "stdin_is_terminal", lambda: True)
    declined = gen(database_url, f"models delete {gan_id} --cascade", input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert row_counts(database_url) == counts

    deleted = ok(gen(database_url, f"models delete {gan_id} --cascade --yes"))
    assert deleted.stdout.strip() == f"deleted model {gan_id} and 2 image rows (files kept)"
    assert set(row_counts(database_url).values()) == {0}
    assert len(list(out.rglob("*.png"))) == 2
    assert ok(gen(database_url, "models list")).stdout.strip() == "no models yet; train one with gen train"


def test_models_delete_files_deletes_only_unchanged_images_it_made(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    out = tmp_path / "samples"
    gan_id = adopt(database_url, trained, out, n=3)
    made = sorted(out.rglob("*.png"))
    edited = made[1]
    edited.write_bytes(b"the user's retouched image")
    notes = out / trained.classes[0] / "notes.txt"
    notes.write_text("keep me")

    deleted = ok(gen(database_url, f"models delete {gan_id} --cascade --delete-files --yes"))
    assert deleted.stdout.strip() == f"deleted model {gan_id} and 3 image rows (2 files deleted)"
    assert f"left in place, changed since they were made: {edited.resolve()}" in deleted.stderr
    assert sorted(out.rglob("*")) == sorted([out / trained.classes[0], edited, notes])
    assert edited.read_bytes() == b"the user's retouched image"


# Bad input: one sentence, exit status 1, nothing written


def test_unknown_model_id_names_the_models_that_exist(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    gan_id = adopt(database_url, trained, tmp_path / "first")
    counts, files = row_counts(database_url), files_under(tmp_path)
    for command in [
        f"sample --model 99 --n 2 --all-classes --out {tmp_path / 'new'} {SAMPLE}",
        "models show 99",
        "models delete 99 --cascade --yes",
    ]:
        assert_user_error(gen(database_url, command), f"no model 99; models in the database: {gan_id}")
    assert row_counts(database_url) == counts
    assert files_under(tmp_path) == files


ID_COMMANDS = [
    "models show {id}",
    "models delete {id} --cascade --yes",
    "models rename {id} newname",
    "models retrain {id} --iters 3",
    "sample --model {id} --n 1 --all-classes --out {out} " + SAMPLE,
    "sample --checkpoint {id} --n 1 --all-classes --out {out} " + SAMPLE,
    "export --model {id} --license CC0-1.0 --out {out} --quiet",
    "export --checkpoint {id} --license CC0-1.0 --out {out} --quiet",
    "data show {id}",
    "data delete {id} --delete-files --yes",
    "classifiers show {id}",
    "classifiers delete {id} --yes",
    "reproduce {id}",
    "searches show {id}",
    "jobs show {id}",
    "jobs cancel {id}",
    "train --architecture {id} --data {data} --out {out} --iters 1 " + TRAIN,
    "report --classifier {id} --real {data} --out {out} --quiet",
]


@pytest.mark.parametrize("reference", ["99999999999999999999", str(2**63), "0", "1e3", "\u00b2"])
def test_ids_out_of_range_or_malformed_are_one_sentence_everywhere(
    database_url: str, trained: Trained, tmp_path: Path, reference: str
) -> None:
    adopt(database_url, trained, tmp_path / "first")
    counts, files = row_counts(database_url), files_under(tmp_path)
    for command in ID_COMMANDS:
        line = command.format(id="ID", out=tmp_path / "out", data=trained.data)
        result = CliRunner().invoke(
            cli, [reference if word == "ID" else word for word in arguments(database_url, line)]
        )
        assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit), (line, result.output)
        assert "Traceback" not in result.output and result.output.strip().splitlines()[-1].startswith(
            "Error: "
        )
        if reference.isdigit() and len(reference) > 18:
            assert "is not an id: ids are whole numbers from 1 to 9223372036854775807." in result.output or (
                "--checkpoint" in line
            ), (line, result.output)
    assert row_counts(database_url) == counts
    assert files_under(tmp_path) == files


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


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (UNREACHABLE_URL, f"cannot connect to the database {UNREACHABLE_URL}: "),
        (
            "postgresql://nobody:secret@127.0.0.1:1/x",
            "cannot connect to the database postgresql://nobody:***@",
        ),
        ("not a database url", "malformed database URL 'not a database url'"),
        ("mysql://me:secret@db/gen", "unsupported database URL mysql://me:***@db/gen"),
    ],
)
def test_unusable_database_url(
    url: str, message: str, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for command in [
        "models list",
        f"sample --checkpoint {trained.run} --n 2 --all-classes --out new {SAMPLE}",
        f"train --data {trained.data} --out run --iters 1 {TRAIN}",
        "db upgrade",
    ]:
        line = assert_user_error(gen(url, command), message)
        assert "secret" not in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_database_missing_from_the_server(
    postgres_server: PostgresServer, trained: Trained, tmp_path: Path
) -> None:
    url = postgres_server.url("no_such_database")
    assert_user_error(
        gen(url, f"sample --checkpoint {trained.run} --n 1 --all-classes --out {tmp_path / 'new'} {SAMPLE}"),
        f"cannot connect to the database {url}: ",
        'database "no_such_database" does not exist',
    )
    assert list(tmp_path.iterdir()) == []


def test_database_from_a_newer_gen_is_refused(database_url: str, trained: Trained, tmp_path: Path) -> None:
    gan_id = adopt(database_url, trained, tmp_path / "first")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    counts, files = row_counts(database_url), files_under(tmp_path)
    new = tmp_path / "new"
    for command in [
        "models list",
        f"models show {gan_id}",
        f"sample --model {gan_id} --n 2 --all-classes --out {new} {SAMPLE}",
        f"sample --checkpoint {trained.run} --n 2 --all-classes --out {new} {SAMPLE}",
        f"train --data {trained.data} --out {tmp_path / 'run'} --iters 1 {TRAIN}",
        "db upgrade",
    ]:
        assert_user_error(
            gen(database_url, command),
            "was made by a newer version of gen (schema revision 9999_from_the_future)",
        )
    assert row_counts(database_url) == counts
    assert files_under(tmp_path) == files


def test_a_database_that_lost_a_column_is_one_sentence(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    gan_id = adopt(database_url, trained, tmp_path / "first")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE images DROP COLUMN torch_version"))
    engine.dispose()
    counts, files = row_counts(database_url), files_under(tmp_path)
    for command in [
        f"export --model {gan_id} --license CC0-1.0 --out {tmp_path / 'export'} --quiet",
        "models list",
        f"sample --model {gan_id} --n 2 --all-classes --out {tmp_path / 'new'} {SAMPLE}",
    ]:
        line = assert_user_error(gen(database_url, command), "lacks column images.torch_version")
        assert "changed outside gen" in line and "restore it from a backup" in line
    assert row_counts(database_url) == counts
    assert files_under(tmp_path) == files


def test_a_sqlite_file_name_too_long_is_one_sentence(tmp_path: Path, trained: Trained) -> None:
    too_long = f"sqlite:///{tmp_path / ('a' * 300 + '.db')}"
    for command in ("models list", f"data add cells {trained.data} -q"):
        assert_user_error(gen(too_long, command), "cannot use the database", "File name too long")
    no_room_for_its_journal = f"sqlite:///{tmp_path / ('b' * 250 + '.db')}"
    assert_user_error(
        gen(no_room_for_its_journal, f"data add cells {trained.data} -q"), "its file name is longer than"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_run_killed_before_its_first_checkpoint_leaves_no_model_pointing_at_nothing(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    command = f"train --data {trained.data} --out {run} --iters 100000 {TRAIN} --checkpoint-every 100000"
    process = subprocess.Popen(
        [sys.executable, "-c", "from gen.cli import main; main()", *arguments(database_url, command)],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline()  # printed once the model is recorded
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    killed = re.fullmatch(r"model (\d+)\n", first_line)
    assert killed, first_line + process.stderr.read()
    assert not any(run.glob("checkpoint-*.pt"))
    listed = ok(gen(database_url, "models list")).stdout.splitlines()
    assert listed[1].startswith(f"{killed[1]:>4}") and listed[1].endswith("(no checkpoint)")

    # Run again in the same folder: the new model replaces the one that points at nothing.
    rerun = ok(gen(database_url, f"train --data {trained.data} --out {run} --iters 1 {TRAIN}"))
    new = int(rerun.stdout.split()[1])
    assert model_ids(database_url) == [new] and new != int(killed[1])
    assert not ok(gen(database_url, "models list")).stdout.strip().endswith("(no checkpoint)")


def invoke_as_unprivileged_user(command: Sequence[str]) -> tuple[int, str]:
    """(exit status, output) of `gen COMMAND` as a user who is not root (root may write to any
    file), in a forked child when this process is root."""
    if os.geteuid() != 0:
        result = CliRunner().invoke(cli, list(command))
        return result.exit_code, result.output
    user = pwd.getpwnam("nobody")
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        report = {"exit_code": -1, "output": ""}
        try:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            result = CliRunner().invoke(cli, list(command))
            report = {"exit_code": result.exit_code, "output": result.output}
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                report["output"] += f"\nTraceback: unexpected {result.exception!r}"
        except BaseException as error:
            report["output"] = f"Traceback: unexpected {error!r}"
        finally:
            os.write(write, json.dumps(report).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read())
    os.waitpid(child, 0)
    return report["exit_code"], report["output"]


def test_a_read_only_sqlite_file_is_read_but_never_written(trained: Trained) -> None:
    # A folder of its own, which the unprivileged user can reach, unlike pytest's tmp_path.
    folder = Path(tempfile.mkdtemp(prefix="gen-cli-read-only-"))
    try:
        path = folder / "gen.db"
        url = f"sqlite:///{path}"
        gan_id = adopt(url, trained, folder / "first")
        counts, files = row_counts(url), files_under(folder)
        folder.chmod(0o777)
        path.chmod(0o444)
        # Reading works on a read-only file (it is opened read-only); writing is refused.
        exit_code, output = invoke_as_unprivileged_user(arguments(url, "models list"))
        assert exit_code == 0 and "phantom_binucleate" in output, output
        exit_code, output = invoke_as_unprivileged_user(arguments(url, f"models show {gan_id}"))
        assert exit_code == 0, output
        command = f"sample --model {gan_id} --n 2 --all-classes --out {folder / 'new'} -q"
        exit_code, output = invoke_as_unprivileged_user(arguments(url, command))
        assert exit_code == 1, output
        assert output.strip() == f"Error: cannot use the database {url}: the file {path} is read-only"
        assert row_counts(url) == counts
        assert files_under(folder) == files
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_missing_or_empty_database_is_not_created_by_reading_it(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    new = tmp_path / "new"
    for command in [
        "models list",
        "models show 1",
        "models delete 1 --yes",
        f"sample --n 2 --all-classes --out {new} {SAMPLE}",
    ]:
        assert_user_error(
            gen(database_url, command), "there is no gen database at", "yet; run gen train first"
        )
    if database_url.startswith("sqlite"):
        assert list(tmp_path.iterdir()) == []  # no database file, no output folder
    else:
        assert row_counts(database_url) == {}  # no tables
        assert not new.exists()

    ok(gen(database_url, "db upgrade"))
    assert ok(gen(database_url, "models list")).stdout.strip() == "no models yet; train one with gen train"
    assert_user_error(
        gen(database_url, f"sample --n 2 --all-classes --out {new} {SAMPLE}"),
        "no model in the database yet; run gen train first",
    )
    assert not new.exists()


# The schema and the database URL


def test_db_upgrade_brings_an_older_database_to_head(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    gan_id = adopt(database_url, trained, tmp_path / "first")
    engine = make_engine(database_url)
    migrate(engine, "0001", downgrade=True)
    engine.dispose()
    head = head_revision()
    assert head != "0001"

    assert_user_error(
        gen(database_url, "models list"),
        f"has schema revision 0001 but this gen needs {head}",
        "gen db upgrade",
    )
    upgraded = ok(gen(database_url, "db upgrade"))
    assert upgraded.stdout.strip() == f"upgraded {database_url} from schema revision 0001 to {head}"
    lines = ok(gen(database_url, "models list")).stdout.splitlines()
    assert lines[1].split()[:4] == [str(gan_id), "tiny", "2", "1"]  # the rows came through
    again = ok(gen(database_url, "db upgrade"))
    assert again.stdout.strip() == f"{database_url} is already at schema revision {head}"


def test_gen_database_url_environment_variable_is_honoured(
    database_url: str, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    env = {"GEN_DATABASE_URL": database_url}
    request = f"sample --checkpoint {trained.run} --n 1 --class {trained.classes[0]} --out samples {SAMPLE}"
    ok(gen(None, request, env=env))
    assert len(image_rows(database_url)) == 1
    lines = ok(gen(None, "models list", env=env)).stdout.splitlines()
    assert lines[1].split()[:4] == [str(model_ids(database_url)[0]), "tiny", "2", "1"]
    # --db wins over the variable.
    ok(gen(database_url, "models list", env={"GEN_DATABASE_URL": UNREACHABLE_URL}))
    # Neither: gen.db here, which reading does not create.
    assert_user_error(
        gen(None, "models list", env={"GEN_DATABASE_URL": None}),
        "there is no gen database at sqlite:///gen.db",
    )
    assert sorted(path.name for path in here.iterdir()) == ["samples"]


def test_pruning_keeps_the_checkpoints_that_images_came_from(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    ok(gen(database_url, f"train --data {trained.data} --out {run} --iters 2 --keep-checkpoints 1 {TRAIN}"))
    ok(gen(database_url, f"sample --checkpoint {run} --n 1 --all-classes --out {tmp_path / 's'} {SAMPLE}"))
    ok(gen(database_url, f"train --out {run} --resume --iters 4 --keep-checkpoints 1 {TRAIN}"))
    # Iteration 2 made recorded images: kept beside the newest; 1 and 3 were pruned.
    assert sorted(path.name for path in run.glob("checkpoint-*.pt")) == [
        "checkpoint-0000002.pt",
        "checkpoint-0000004.pt",
    ]
    # ... so they can still be made again, here byte for byte (same machine and settings).
    ids = [str(row.id) for row in image_rows(database_url, tmp_path / "s")]
    assert len(ids) == len(trained.classes)
    result = ok(gen(database_url, f"reproduce {' '.join(ids)} --device cpu"))
    assert result.output.count(": exact\n") == len(ids)
    assert result.output.strip().endswith(f"{len(ids)} exact, 0 within one level, 0 differ")
    with session_on(database_url) as session:
        computed = session.execute(
            select(Image.batch_size, Image.threads, Image.device, Image.torch_version)
        ).all()
    assert set(computed) == {(4, torch.get_num_threads(), "cpu", torch.__version__)}


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


def test_a_resume_adopts_checkpoints_that_never_got_their_row(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    """kill -9 (or a locked database) between writing a checkpoint and recording it: the resume
    continues the same model and records what is on disk, not a second model."""
    run = tmp_path / "run"
    first = ok(gen(database_url, f"train --data {trained.data} --out {run} --iters 2 {TRAIN}"))
    model_id = int(first.output.split()[1])

    def checkpoint_iterations() -> list[int]:
        with session_on(database_url) as session:
            return sorted(session.scalars(select(Checkpoint.iteration).where(Checkpoint.gan_id == model_id)))

    with session_on(database_url) as session:
        session.execute(delete(Checkpoint).where(Checkpoint.iteration == 2))
        session.commit()
    resumed = ok(gen(database_url, f"train --out {run} --resume --iters 3 {TRAIN}"))
    assert resumed.output.startswith(f"model {model_id}\n")
    assert model_ids(database_url) == [model_id] and checkpoint_iterations() == [1, 2, 3]

    # Killed before even the first checkpoint was recorded: found by its run folder.
    with session_on(database_url) as session:
        session.execute(delete(Checkpoint))
        session.commit()
    resumed = ok(gen(database_url, f"train --out {run} --resume --iters 4 {TRAIN}"))
    assert resumed.output.startswith(f"model {model_id}\n")
    assert model_ids(database_url) == [model_id] and checkpoint_iterations() == [3, 4]


def test_a_read_only_database_can_still_be_read(trained: Trained, tmp_path: Path) -> None:
    path = tmp_path / "gen.db"
    ok(gen(f"sqlite:///{path}", f"train --data {trained.data} --out {tmp_path / 'run'} --iters 1 {TRAIN}"))
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    listed = ok(gen(read_only, "models list"))
    assert "tiny" in listed.output
    ok(gen(read_only, "models show 1"))
    assert_user_error(
        gen(read_only, f"train --data {trained.data} --out {tmp_path / 'run2'} --iters 1 {TRAIN}"),
        "opens it read-only",
    )
    # A read-only folder (what root cannot be shown: it may write anyway) reads through the same
    # read-only connection; what must not happen is a write through it.
    from db.session import open_database

    engine = open_database(read_only, create=False, read_only=True)
    with pytest.raises(Exception, match="readonly|read-only"), engine.begin() as connection:
        connection.execute(delete(Image))
    engine.dispose()


def test_a_model_deleted_while_sampling_stops_the_sampler_with_a_sentence(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    from db import recording
    from gen.sample import sample as run_sampling

    engine = make_engine(database_url)
    migrate(engine)
    state = load_checkpoint(trained.checkpoints[-1])
    with Session(engine) as session:
        gan_id, checkpoint_id = recording.adopt_checkpoint(session, state, sha256_of(trained.checkpoints[-1]))
    recorder = recording.ImageRecorder(engine, gan_id, checkpoint_id, state["iteration"], 0)
    real_record = recorder.record
    calls = []

    def delete_the_model_after_the_first_batch(images: Any) -> None:
        if calls:
            with Session(engine) as session:
                queries.delete_model(session, gan_id, cascade=True)  # gen models delete --cascade
        calls.append(len(images))
        real_record(images)

    recorder.record = delete_the_model_after_the_first_batch
    with pytest.raises(UserError, match="the model was deleted from the database while sampling"):
        run_sampling(state, tmp_path / "s", 4, [trained.classes[0]], batch_size=2, device="cpu",
                     recorder=recorder, progress=False)  # fmt: skip
    engine.dispose()


def test_a_locked_sqlite_database_is_waited_for_then_said(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holding the write lock longer than sqlite3's 5 s default: gen waits; past
    its own limit it says so in one sentence, and a rerun completes the request."""
    import sqlite3
    import threading

    import db.session

    url = f"sqlite:///{tmp_path / 'gen.db'}"
    out = tmp_path / "samples"
    checkpoint, name = trained.checkpoints[-1], trained.classes[0]
    request = f"sample --checkpoint {checkpoint} --n 2 --class {name} --out {out} {SAMPLE}"
    ok(gen(url, request.replace("--n 2", "--n 1")))

    def hold_the_lock(seconds: float) -> threading.Thread:
        locked = threading.Event()

        def hold() -> None:
            connection = sqlite3.connect(tmp_path / "gen.db", timeout=0)
            connection.execute("BEGIN EXCLUSIVE")
            locked.set()
            time.sleep(seconds)
            connection.rollback()
            connection.close()

        thread = threading.Thread(target=hold)
        thread.start()
        locked.wait(5)
        return thread

    holder = hold_the_lock(6.5)  # past sqlite3's default 5 s
    ok(gen(url, request))
    holder.join()
    assert len(image_rows(url, out)) == 2

    monkeypatch.setattr(db.session, "DATABASE_BUSY_TIMEOUT_S", 0.5)
    holder = hold_the_lock(3)
    result = gen(url, request.replace("--n 2", "--n 3"))
    holder.join()
    assert_user_error(result, "the database stayed locked by another gen process")
    monkeypatch.undo()
    ok(gen(url, request.replace("--n 2", "--n 3")))
    assert len(image_rows(url, out)) == 3
