"""gen train: the model and its checkpoints recorded, resumed, pruned and adopted.

End to end through click's CliRunner; each test that takes `database_url` runs on SQLite and
on PostgreSQL (see conftest).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_support import (
    SAMPLE,
    TRAIN,
    Trained,
    arguments,
    gen,
    image_rows,
    model_ids,
    ok,
    row_counts,
    session_on,
    sha256_of,
)
from sqlalchemy import delete, select

from db import generators as generator_rows
from db.models import Checkpoint, Image
from gen.architecture import preset, to_json
from gen.image_folder import load_image_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_records_the_model_and_resume_extends_it(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = ok(gen(database_url, f"train --data {trained.data} --out {run} --iters 1 --g-lr 0.0002 {TRAIN}"))
    match = re.fullmatch(r"model (\d+)", result.stdout.splitlines()[0])
    assert match, result.stdout
    gan_id = int(match[1])

    with session_on(database_url) as session:
        info = generator_rows.get_model(session, gan_id)
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
        info = generator_rows.get_model(session, gan_id)
    assert model_ids(database_url) == [gan_id]
    assert [(c.iteration, c.path) for c in info.checkpoints] == [
        (1, str(first.resolve())),
        (2, str((run / "checkpoint-0000002.pt").resolve())),
    ]
    assert all(c.sha256 == sha256_of(c.path) for c in info.checkpoints)
    assert info.training["iterations"] == 2
    assert info.training["g_lr"] == 2e-4  # resuming keeps the stored settings
    assert row_counts(database_url)["training_parameters"] == 1


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
