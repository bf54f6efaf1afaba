"""What the tests of the `gen` commands share (tests/test_commands_*.py, tests/test_cli.py):
running a command through click's CliRunner, reading the rows it wrote, and one tiny model
(train_tiny_model) trained once for the whole run by conftest's `tiny_model` fixture. Each test
gets its own copy of it (conftest's `trained` fixture, from copy_trained) and adopts its
checkpoints into its database with `gen sample --checkpoint RUN`, as a user sampling a run
trained elsewhere would.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image as PILImage
from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from db import generators as generator_rows
from db.models import Base, Checkpoint, ClassName, Image
from db.session import make_engine
from gen.cli import cli
from gen.phantoms import write_phantoms

TRAIN = "--preset tiny --batch-size 4 --checkpoint-every 1 --device cpu --quiet"
SAMPLE = "--batch-size 4 --device cpu --quiet"
UNREACHABLE_URL = "postgresql://nobody@127.0.0.1:1/x"


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


def kill_gen_when(
    command: Sequence[str],
    ready: Callable[[], bool],
    *,
    cwd: Path,
    within_s: float,
    poll_s: float,
    env: dict[str, str] | None = None,
) -> None:
    """`gen COMMAND` in a process of its own, killed with SIGKILL (no chance to clean up) as soon
    as ready() holds; fails if it ends before, or if ready() does not hold within `within_s`."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from gen.cli import main; main()", *command],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline, name = time.monotonic() + within_s, command[0]
        while not ready():
            assert process.poll() is None, f"gen {name} ended before it was killed: {process.stderr.read()}"
            assert time.monotonic() < deadline, f"gen {name} did not get there in {within_s:g} s"
            time.sleep(poll_s)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


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
        return [model.id for model in generator_rows.list_models(session)]


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


def train_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Phantoms (8 per class) and a tiny model trained for 2 iterations, a checkpoint each:
    conftest's `tiny_model`, made once for the whole run."""
    root = tmp_path_factory.mktemp("trained")
    data, run = root / "data", root / "run"
    write_phantoms(data, per_class=8)
    ok(gen(f"sqlite:///{root / 'train.db'}", f"train --data {data} --out {run} --iters 2 {TRAIN}"))
    checkpoints = (run / "checkpoint-0000001.pt", run / "checkpoint-0000002.pt")
    assert all(path.is_file() for path in checkpoints)
    classes = tuple(sorted(path.name for path in data.iterdir()))
    return Trained(data=data, run=run, checkpoints=checkpoints, classes=classes)


def copy_trained(trained: Trained, folder: Path) -> Trained:
    """The same data and run folder copied into `folder` (the same files, so the same fingerprint
    and checkpoints' SHA-256, at other paths): what a test does to its copy no other test sees."""
    data, run = folder / "data", folder / "run"
    shutil.copytree(trained.data, data)
    shutil.copytree(trained.run, run)
    checkpoints = tuple(run / checkpoint.name for checkpoint in trained.checkpoints)
    return Trained(data=data, run=run, checkpoints=checkpoints, classes=trained.classes)


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
