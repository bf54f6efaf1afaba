"""gen.train: checkpoints, bit-for-bit resume, refusals, pruning, callbacks, Ctrl-C and DDP.

Every run is the tiny preset at batch 4 for a handful of iterations on 32 phantom images.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch.nn.utils import parametrize

from db import open_database
from gen.architecture import preset, to_json
from gen.checkpoint import checkpoints_in, load_checkpoint
from gen.errors import GenError
from gen.history import read_history
from gen.networks import build
from gen.phantoms import PHANTOM_CLASSES, write_phantoms
from gen.train import TrainResult, standing_statistics, train, update_ema
from gen.train_config import RunStart, TrainConfig

CLASS_NAMES = tuple(sorted(PHANTOM_CLASSES))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def child_env(tmp_path: Path) -> dict[str, str]:
    """The CLI records runs in a database: a throwaway one, never gen.db in the working copy.
    Children get one torch thread too (see one_torch_thread)."""
    return {**os.environ, "GEN_DATABASE_URL": f"sqlite:///{tmp_path / 'gen.db'}", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train") / "phantoms"
    write_phantoms(root, per_class=8)
    return root


def config(data_dir: Path | str, out: Path, **changes: Any) -> TrainConfig:
    settings = {"preset": "tiny", "iterations": 4, "batch_size": 4, "checkpoint_every": 2, "device": "cpu"}
    return TrainConfig(data=str(data_dir), out=str(out), **{**settings, **changes})


@pytest.fixture(scope="module")
def straight_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """Four iterations in one go, a checkpoint every two."""
    return train(config(data_dir, tmp_path_factory.mktemp("straight") / "run"), progress=False)


def assert_identical(left: Any, right: Any, where: str = "") -> None:
    """Equal structure, equal plain values, and bit-identical tensors (dtype and shape included)."""
    if isinstance(left, torch.Tensor):
        assert isinstance(right, torch.Tensor), where
        assert left.dtype == right.dtype and left.shape == right.shape, where
        assert torch.equal(left, right), f"tensors differ at {where}"
    elif isinstance(left, dict):
        assert isinstance(right, dict) and left.keys() == right.keys(), where
        for key in left:
            assert_identical(left[key], right[key], f"{where}/{key}")
    elif isinstance(left, list | tuple):
        assert type(left) is type(right) and len(left) == len(right), where
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_identical(a, b, f"{where}[{index}]")
    else:
        assert left == right, where


# ---------------------------------------------------------------------------------------------
# A run and what it leaves behind


def test_a_run_writes_checkpoints_and_grids(straight_run: TrainResult) -> None:
    run_dir = straight_run.run_dir
    assert isinstance(straight_run, TrainResult)
    assert straight_run.iteration == 4 and not straight_run.interrupted
    assert straight_run.checkpoint == run_dir / "checkpoint-0000004.pt"
    assert straight_run.class_names == CLASS_NAMES
    assert straight_run.images_per_second > 0
    assert sorted(path.name for path in run_dir.iterdir()) == [
        "checkpoint-0000002.pt",
        "checkpoint-0000004.pt",
        "grid-0000002.png",
        "grid-0000004.png",
        "history.csv",
        "history.png",
    ]  # nothing temporary left beside them
    with Image.open(run_dir / "grid-0000004.png") as grid:
        # One row per class, eight 64-pixel images per row, 2 pixels of padding.
        assert (grid.format, grid.mode, grid.size) == ("PNG", "RGB", (8 * 66 + 2, 4 * 66 + 2))


def test_checkpoints_load_with_weights_only(straight_run: TrainResult) -> None:
    state = torch.load(straight_run.checkpoint, weights_only=True)
    assert state["iteration"] == 4
    assert state["class_names"] == list(CLASS_NAMES)
    for key in ("generator", "discriminator", "generator_ema", "g_optimizer", "d_optimizer", "rng"):
        assert key in state
    assert TrainConfig.from_json(state["config"]).iterations == 4
    generator_spec, discriminator_spec = preset("tiny", len(CLASS_NAMES))
    assert json.loads(state["generator_spec"]) == to_json(generator_spec)
    assert json.loads(state["discriminator_spec"]) == to_json(discriminator_spec)
    # Weights moved away from their (seeded) initialisation and stayed finite.
    earlier = torch.load(straight_run.run_dir / "checkpoint-0000002.pt", weights_only=True)
    moved = [not torch.equal(state["generator"][k], earlier["generator"][k]) for k in state["generator"]]
    assert any(moved)
    for network in ("generator", "discriminator", "generator_ema"):
        for name, value in state[network].items():
            assert not value.is_floating_point() or torch.isfinite(value).all(), f"{network}.{name}"


# ---------------------------------------------------------------------------------------------
# Resume


@pytest.fixture(scope="module")
def split_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two iterations, stop, then resume to four; records what the resumed run reports."""
    out = tmp_path_factory.mktemp("split") / "run"
    first = train(config(data_dir, out, iterations=2), progress=False)
    starts: list[RunStart] = []
    # Resume needs no --data: the run's own data folder is used.
    resumed = train(config("", out, iterations=4), resume=True, progress=False, on_start=starts.append)
    return {"first": first, "resumed": resumed, "starts": starts}


def test_resume_is_bit_identical_to_an_uninterrupted_run(
    straight_run: TrainResult, split_run: dict[str, Any]
) -> None:
    straight = torch.load(straight_run.checkpoint, weights_only=True)
    resumed = torch.load(split_run["resumed"].checkpoint, weights_only=True)
    assert split_run["first"].iteration == 2 and split_run["resumed"].iteration == 4
    for key in ("generator", "discriminator", "generator_ema", "g_optimizer", "d_optimizer", "rng"):
        assert_identical(straight[key], resumed[key], key)
    assert straight["iteration"] == resumed["iteration"] == 4
    # The stored settings agree too, but for the run folder.
    straight_config = TrainConfig.from_json(straight["config"])
    resumed_config = TrainConfig.from_json(resumed["config"])
    assert dataclasses.replace(resumed_config, out=straight_config.out) == straight_config
    # The intermediate checkpoints agree as well.
    assert_identical(
        torch.load(straight_run.run_dir / "checkpoint-0000002.pt", weights_only=True)["generator"],
        torch.load(split_run["first"].checkpoint, weights_only=True)["generator"],
    )


def test_resume_reports_where_it_started(split_run: dict[str, Any], data_dir: Path) -> None:
    (start,) = split_run["starts"]
    assert start.start_iteration == 2
    assert start.resumed_from == split_run["first"].checkpoint
    assert start.config.iterations == 4 and start.config.batch_size == 4
    assert start.config.data == str(data_dir)  # the stored data folder, as none was given


def test_refuses_to_train_into_a_folder_holding_a_run(data_dir: Path, straight_run: TrainResult) -> None:
    before = {path.name: path.stat().st_mtime_ns for path in straight_run.run_dir.iterdir()}
    with pytest.raises(GenError, match="already holds a training run; use --resume"):
        train(config(data_dir, straight_run.run_dir, iterations=6), progress=False)
    after = {path.name: path.stat().st_mtime_ns for path in straight_run.run_dir.iterdir()}
    assert after == before


@pytest.mark.parametrize("make_folder", [False, True])
def test_resume_with_nothing_to_resume(data_dir: Path, tmp_path: Path, make_folder: bool) -> None:
    out = tmp_path / "run"
    if make_folder:
        out.mkdir()
    with pytest.raises(GenError, match="nothing to resume"):
        train(config(data_dir, out), resume=True, progress=False)


@pytest.mark.parametrize("iterations", [4, 3])
def test_resume_past_the_end(straight_run: TrainResult, iterations: int) -> None:
    before = sorted(path.name for path in straight_run.run_dir.iterdir())
    with pytest.raises(GenError, match="already reached iteration 4"):
        train(config("", straight_run.run_dir, iterations=iterations), resume=True, progress=False)
    assert sorted(path.name for path in straight_run.run_dir.iterdir()) == before


def test_resume_after_the_data_changed(data_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    out = tmp_path / "run"
    train(config(data, out, iterations=1), progress=False)
    # One image of one class gets one pixel brighter.
    image_path = next((data / CLASS_NAMES[0]).glob("*.png"))
    with Image.open(image_path) as image:
        pixels = image.convert("RGB")
    pixels.putpixel((0, 0), tuple(min(255, value + 1) for value in pixels.getpixel((0, 0))))
    pixels.save(image_path)
    with pytest.raises(GenError, match="changed since this run started"):
        train(config("", out, iterations=2), resume=True, progress=False)
    assert [path.name for path in checkpoints_in(out)] == ["checkpoint-0000001.pt"]


DAMAGED_FOR_RESUME = {
    "generator does not fit": lambda s: {"generator": {"stem.weight": torch.zeros(3)}},
    "discriminator missing": lambda s: {"discriminator": None},
    "no optimiser": lambda s: {"g_optimizer": None},
    "random streams not tensors": lambda s: {"rng": {"data": "x", "noise": [1]}},
    "settings not json": lambda s: {"config": "{"},
    "huge discriminator": lambda s: {
        "discriminator_spec": json.dumps({**json.loads(s["discriminator_spec"]), "channels": [8, 200_000]})
    },
}


@pytest.mark.parametrize("damage", list(DAMAGED_FOR_RESUME.values()), ids=list(DAMAGED_FOR_RESUME))
def test_resuming_a_damaged_checkpoint_is_one_sentence(
    straight_run: TrainResult, tmp_path: Path, damage: Any
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    state = torch.load(straight_run.run_dir / "checkpoint-0000002.pt", weights_only=True)
    state = {key: value for key, value in {**state, **damage(state)}.items() if value is not None}
    torch.save(state, out / "checkpoint-0000002.pt")
    with pytest.raises(GenError, match=rf"^checkpoint {out / 'checkpoint-0000002.pt'} is damaged: "):
        train(config("", out, iterations=4), resume=True, progress=False)
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint-0000002.pt"]


def test_resume_honours_a_new_checkpoint_interval(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(config(data_dir, out, iterations=2, checkpoint_every=2, keep_checkpoints=5), progress=False)
    train(
        config("", out, iterations=5, checkpoint_every=1, keep_checkpoints=None), resume=True, progress=False
    )
    assert [path.name for path in checkpoints_in(out)] == [f"checkpoint-{i:07d}.pt" for i in (2, 3, 4, 5)]
    stored = json.loads(load_checkpoint(out)["config"])
    assert (stored["checkpoint_every"], stored["keep_checkpoints"]) == (1, 5)  # None: the run's own
    # So does the CLI without --checkpoint-every.
    train(
        config("", out, iterations=6, checkpoint_every=None, keep_checkpoints=None),
        resume=True,
        progress=False,
    )
    stored = json.loads(load_checkpoint(out)["config"])
    assert (stored["checkpoint_every"], stored["keep_checkpoints"]) == (1, 5)


def test_a_balance_beyond_memory_is_refused_before_anything_is_made(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from gen.cli import cli
    from gen.image_folder import MAX_BALANCE, load_image_folder

    with pytest.raises(GenError, match=f"--balance must be 1 to {MAX_BALANCE} images per class"):
        config(data_dir, tmp_path / "run", balance=10_000_000).validate()  # first: cheap on any code
    monkeypatch.setenv("GEN_DATABASE_URL", f"sqlite:///{tmp_path / 'gen.db'}")
    arguments = ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--balance", "10000000"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert (
        result.output.strip()
        == f"Error: --balance must be 1 to {MAX_BALANCE} images per class, not 10000000."
    )
    assert list(tmp_path.iterdir()) == []  # no gen.db, no run folder
    with pytest.raises(GenError, match="--balance must be 1 to"):
        load_image_folder(data_dir, balance=MAX_BALANCE + 1)


# ---------------------------------------------------------------------------------------------
# Pruning and callbacks


@pytest.fixture(scope="module")
def pruned_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("pruned") / "run"
    starts: list[RunStart] = []
    checkpoints: list[tuple[Path, int, str, str]] = []

    def on_checkpoint(path: Path, iteration: int, sha256: str, evaluation: float | None) -> None:
        assert evaluation is None  # no --eval-every
        # The file is complete and in place when we hear of it.
        checkpoints.append((path, iteration, sha256, hashlib.sha256(path.read_bytes()).hexdigest()))

    result = train(
        config(data_dir, out, iterations=3, checkpoint_every=1, keep_checkpoints=2, batch_size=None),
        progress=False,
        on_start=starts.append,
        on_checkpoint=on_checkpoint,
    )
    return {"result": result, "starts": starts, "checkpoints": checkpoints}


def test_keep_checkpoints_keeps_the_newest(pruned_run: dict[str, Any]) -> None:
    run_dir = pruned_run["result"].run_dir
    kept = [path.name for path in checkpoints_in(run_dir)]
    assert kept == ["checkpoint-0000002.pt", "checkpoint-0000003.pt"]
    assert len(list(run_dir.glob("grid-*.png"))) == 3  # grids are small and kept


def test_on_checkpoint_hears_of_every_checkpoint_with_its_sha256(pruned_run: dict[str, Any]) -> None:
    run_dir = pruned_run["result"].run_dir
    heard = pruned_run["checkpoints"]
    assert [(path, iteration) for path, iteration, _, _ in heard] == [
        (run_dir / f"checkpoint-{iteration:07d}.pt", iteration) for iteration in range(1, 4)
    ]
    for _, _, reported, actual in heard:
        assert re.fullmatch(r"[0-9a-f]{64}", reported)
        assert reported == actual
    assert len({reported for _, _, reported, _ in heard}) == 3
    final = run_dir / "checkpoint-0000003.pt"
    assert heard[-1][2] == hashlib.sha256(final.read_bytes()).hexdigest()


def test_on_start_is_called_once_with_the_run(pruned_run: dict[str, Any], data_dir: Path) -> None:
    (start,) = pruned_run["starts"]
    generator_spec, discriminator_spec = preset("tiny", len(CLASS_NAMES))
    assert start.config.batch_size == 16  # None became the tiny preset's batch size
    assert start.config.iterations == 3 and start.config.keep_checkpoints == 2
    assert start.generator == to_json(generator_spec)
    assert start.discriminator == to_json(discriminator_spec)
    assert start.class_names == CLASS_NAMES
    assert re.fullmatch(r"[0-9a-f]{64}", start.data_fingerprint)
    assert start.skipped_files == ()
    assert start.start_iteration == 0 and start.resumed_from is None
    assert start.device == "cpu"
    state = load_checkpoint(pruned_run["result"].checkpoint)
    assert state["data_fingerprint"] == start.data_fingerprint


# ---------------------------------------------------------------------------------------------
# Ctrl-C and DDP, in real child processes


def gen_cli(*arguments: str) -> list[str]:
    return [sys.executable, "-c", "from gen.cli import main; main()", *arguments]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_exits_130(
    data_dir: Path, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    """Ctrl-C, and SIGTERM (what kill and job runners send); while the run lives, its folder is
    locked against a second run."""
    out = tmp_path / "run"
    iterations = 100_000
    command = gen_cli(
        "train", "--data", str(data_dir), "--out", str(out), "--preset", "tiny", "--iters", str(iterations),
        "--batch-size", "4", "--checkpoint-every", str(iterations), "--device", "cpu",
    )  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(tmp_path), cwd=tmp_path
    )
    stderr = bytearray()
    # The progress bar counts finished iterations: once it shows one, the loop (and its
    # Ctrl-C handler) is running.
    progress = re.compile(rb"\|\s*([1-9]\d*)/" + str(iterations).encode())
    trained_one = threading.Event()

    def read_stderr() -> None:
        while chunk := process.stderr.read1(4096):
            stderr.extend(chunk)
            if progress.search(stderr):
                trained_one.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 150
        while not trained_one.wait(timeout=0.2):
            assert process.poll() is None, f"exited early: {stderr.decode(errors='replace')}"
            assert time.monotonic() < deadline, f"no iteration finished: {stderr.decode(errors='replace')}"
        if stop_signal == signal.SIGINT:
            with pytest.raises(GenError, match="is in use by another gen train"):
                train(config(data_dir, out, iterations=2), progress=False)
        process.send_signal(stop_signal)
        process.wait(timeout=120)  # not communicate(): the reader thread owns stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    stdout = process.stdout.read()  # a line or two: it cannot have filled the pipe
    process.stdout.close()
    process.stderr.close()
    message = stderr.decode(errors="replace")

    assert process.returncode == 130, message
    assert "Traceback" not in message
    match = re.search(r"interrupted at iteration (\d+); saved (\S+); continue with --resume", message)
    assert match, message
    stopped_at = int(match.group(1))
    assert 1 <= stopped_at < iterations
    checkpoint = out / f"checkpoint-{stopped_at:07d}.pt"
    assert match.group(2) == str(checkpoint)
    assert checkpoints_in(out) == [checkpoint]  # the only one: the regular interval is far away
    assert (out / f"grid-{stopped_at:07d}.png").is_file()
    assert load_checkpoint(checkpoint)["iteration"] == stopped_at
    assert b"trained" not in stdout  # success's line is not printed

    # What Ctrl-C saved resumes.
    resumed = train(config("", out, iterations=stopped_at + 1), resume=True, progress=False)
    assert resumed.iteration == stopped_at + 1 and not resumed.interrupted


DDP_DRIVER = '''
"""Runs the gen CLI under torchrun and saves the networks this process trained."""
import os
import sys

import torch

import gen.losses as losses_module


class RecordingHingeLoss(losses_module.HingeLoss):
    latest = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingHingeLoss.latest = self


losses_module.LOSSES["hinge"] = RecordingHingeLoss
dump_folder = sys.argv.pop(1)

from gen.cli import main  # noqa: E402

try:
    main()
finally:
    loss = RecordingHingeLoss.latest
    if loss is not None:  # None: the run failed before training; its error is above
        generator, discriminator = loss.generator, loss.discriminator

        def parameters(module):
            return {name: value.detach().clone() for name, value in module.named_parameters()}

        torch.save(
            {
                "wrapper": type(generator).__name__,
                "generator": parameters(generator.module),
                "discriminator": parameters(discriminator.module),
            },
            os.path.join(dump_folder, f"rank{os.environ['RANK']}.pt"),
        )
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_process_ddp_on_cpu(data_dir: Path, tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DDP_DRIVER)
    out = tmp_path / "run"
    env = child_env(tmp_path)
    # Known CLI bug (reported): `gen train` opens the database on every rank, so on a fresh
    # database the ranks race to create its tables ("table alembic_version already exists").
    # The database is created here first, so that this test is about training, not that race.
    open_database(env["GEN_DATABASE_URL"]).dispose()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={free_port()}", str(driver), str(tmp_path),
        "train", "--data", str(data_dir), "--out", str(out), "--preset", "tiny", "--iters", "2",
        "--batch-size", "4", "--checkpoint-every", "1", "--device", "cpu", "--quiet",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert re.search(r"trained .*to iteration 2: ", completed.stdout), completed.stdout
    assert [path.name for path in checkpoints_in(out)] == ["checkpoint-0000001.pt", "checkpoint-0000002.pt"]

    after_one = torch.load(out / "checkpoint-0000001.pt", weights_only=True)
    for network in ("generator", "discriminator", "generator_ema"):
        for name, value in after_one[network].items():
            if value.is_floating_point():
                assert torch.isfinite(value).all(), f"{network}.{name}"
    assert len(after_one["rng"]["noise"]) == 2  # one noise stream per process
    assert TrainConfig.from_json(after_one["config"]).batch_size == 4  # the global batch

    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0["wrapper"] == rank1["wrapper"] == "DistributedDataParallel"
    # Gradients were averaged over the processes, so both hold the same weights.
    assert_identical(rank0["generator"], rank1["generator"], "generator")
    assert_identical(rank0["discriminator"], rank1["discriminator"], "discriminator")
    # And they are the weights rank 0 saved.
    final = torch.load(out / "checkpoint-0000002.pt", weights_only=True)
    for name, value in rank0["generator"].items():
        assert torch.equal(value, final["generator"][name]), name


# ---------------------------------------------------------------------------------------------
# The EMA generator's own statistics, and the history


def test_ema_keeps_its_own_buffers() -> None:
    """update_ema moves parameters only: the live generator's batch-norm statistics and
    spectral-norm vectors belong to other weights."""
    generator_spec, _ = preset("tiny", len(CLASS_NAMES))
    torch.manual_seed(0)
    model = build(generator_spec).train()
    ema = copy.deepcopy(model)
    before = {name: buffer.clone() for name, buffer in ema.named_buffers()}
    starting = [parameter.detach().clone() for parameter in ema.parameters()]
    model(torch.randn(4, generator_spec.noise_dim), torch.arange(4))  # moves the model's buffers
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    update_ema(ema, model, 0.75)
    for name, buffer in ema.named_buffers():
        assert torch.equal(buffer, before[name]), name
    for ema_parameter, start in zip(ema.parameters(), starting, strict=True):
        assert torch.allclose(ema_parameter, start + 0.25)  # a quarter of the way to the model


def test_standing_statistics_depend_on_the_weights_alone() -> None:
    generator_spec, _ = preset("tiny", len(CLASS_NAMES))
    torch.manual_seed(0)
    first = build(generator_spec)
    second = copy.deepcopy(first)
    # Stale, different batch-norm statistics in one copy: what the old EMA copied from the model.
    with torch.no_grad():
        for name, buffer in second.named_buffers():
            if "running" in name:
                buffer.add_(torch.rand(buffer.shape))
    standing_statistics(first, seed=3, batches=2, batch_size=16)
    standing_statistics(second, seed=3, batches=2, batch_size=16)
    assert not first.training and not second.training
    for (name, a), (_, b) in zip(first.named_buffers(), second.named_buffers(), strict=True):
        assert torch.equal(a, b), name
    norms = [m for m in first.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(int(norm.num_batches_tracked) == 2 for norm in norms)
    assert all(norm.momentum == 0.1 for norm in norms)  # restored after the cumulative average


def test_standing_statistics_run_spectral_norm_on_the_ema_weights() -> None:
    """After standing statistics each spectrally normalised layer's weight has spectral norm
    close to 1 for the EMA's own weights, although the vectors came from other weights."""
    generator_spec, _ = preset("tiny", len(CLASS_NAMES))
    torch.manual_seed(0)
    generator = build(generator_spec)
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("original"):
                parameter.mul_(torch.rand(parameter.shape) * 3)  # weights the vectors do not fit
    standing_statistics(generator, seed=0, batches=8, batch_size=8)
    checked = 0
    for module in generator.modules():
        if parametrize.is_parametrized(module, "weight") and module.weight.dim() == 4:
            weight = module.weight.detach()  # eval mode: normalised with the stored vectors
            matrix = weight.transpose(0, 1) if isinstance(module, torch.nn.ConvTranspose2d) else weight
            sigma = torch.linalg.matrix_norm(matrix.flatten(1), ord=2)
            assert abs(float(sigma) - 1) < 0.01, module
            checked += 1
    assert checked > 5


def _with_stale_vectors(generator: torch.nn.Module) -> None:
    """Move the weights away from the spectral-norm vectors, as training moves the EMA's."""
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("original"):
                parameter.add_(torch.randn(parameter.shape) * parameter.std())


def test_standing_statistics_fit_the_network_that_samples() -> None:
    """The EMA sampling path (issue "Images worth keeping", item 0): after standing statistics
    the generator's eval-mode images, class by class, are neither paler nor darker nor flatter
    than the same network's own train-mode images (each batch normalised by its own statistics).
    Before, the statistics were gathered while the spectral-norm vectors were still moving, so
    they fitted no network that sampling uses."""
    generator_spec, _ = preset("tiny", len(CLASS_NAMES))
    torch.manual_seed(0)
    generator = build(generator_spec)
    _with_stale_vectors(generator)
    standing_statistics(generator, seed=0)
    noise = torch.randn(256, generator_spec.noise_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for label in range(len(CLASS_NAMES)):
            labels = torch.full((256,), label)
            sampled = generator.eval()(noise, labels)
            generator.train()
            for module in generator.modules():  # the train-mode pass keeps sigma fixed too
                if parametrize.is_parametrized(module, "weight"):
                    module.parametrizations.weight.eval()
            own = generator(noise, labels)
            generator.eval()
            mean_gap = (sampled.mean((0, 2, 3)) - own.mean((0, 2, 3))).abs().max()
            spread = sampled.std() / own.std()
            assert float(mean_gap) < 0.05 and 0.9 < float(spread) < 1.1, (label, mean_gap, spread)


def test_history_rows_match_the_checkpoints_after_a_resume(split_run: dict[str, Any]) -> None:
    run_dir = split_run["resumed"].run_dir
    rows = read_history(run_dir / "history.csv")
    # A row at every checkpoint iteration (batch-size 4 runs are shorter than --log-every).
    assert [int(row["iteration"]) for row in rows] == [2, 4]
    for row in rows:
        for name in ("d_loss", "g_loss", "d_real", "d_fake", "g_lr", "d_lr", "images_per_second"):
            assert math.isfinite(row[name]), name
    assert (run_dir / "history.png").stat().st_size > 0


def test_a_resume_drops_history_rows_past_its_checkpoint(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(config(data_dir, out, iterations=4, checkpoint_every=2, log_every=1), progress=False)
    (out / "checkpoint-0000004.pt").unlink()  # as if killed after the rows reached the file
    train(config("", out, iterations=3, log_every=1), resume=True, progress=False)
    assert [int(row["iteration"]) for row in read_history(out / "history.csv")] == [1, 2, 3]


def test_minutes_stop_the_run_with_a_checkpoint(data_dir: Path, tmp_path: Path) -> None:
    result = train(config(data_dir, tmp_path / "run", iterations=10_000, max_minutes=1e-9), progress=False)
    assert result.out_of_time and not result.interrupted
    assert result.iteration == 1 and result.checkpoint == tmp_path / "run" / "checkpoint-0000001.pt"


def test_a_killed_runs_temporaries_are_removed_and_files_follow_the_umask(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint-0000001.pt.999999999.k2j4_x.tmp"  # its process is gone
    stale.write_bytes(b"half a checkpoint")
    previous = os.umask(0o027)
    try:
        result = train(config(data_dir, out, iterations=1), progress=False)
    finally:
        os.umask(previous)
    assert not stale.exists()
    for path in (result.checkpoint, out / "grid-0000001.png", out / "history.csv"):
        assert path.stat().st_mode & 0o777 == 0o640, path


def test_balanced_batches_draw_every_class_equally_often() -> None:
    from gen.train import draw_batch

    labels = torch.tensor([0] * 90 + [1] * 10 + [3] * 20)  # class 2 has no image
    drawn = draw_batch(labels, 40_000, torch.Generator().manual_seed(0), balanced=True)
    shares = torch.bincount(labels[drawn], minlength=4).float() / len(drawn)
    assert shares[2] == 0
    for label in (0, 1, 3):  # a third each, within 5 standard deviations of a binomial share
        assert abs(float(shares[label]) - 1 / 3) < 5 * math.sqrt(1 / 3 * 2 / 3 / len(drawn))
    rare = torch.bincount(drawn[labels[drawn] == 1] - 90, minlength=10).float()
    assert float(rare.min()) > 0.8 * float(rare.mean())  # every image of the small class is drawn
    # Unbalanced, the draw is the uniform one of before (resumed runs stay exact).
    plain = draw_batch(labels, 64, torch.Generator().manual_seed(5), balanced=False)
    assert torch.equal(plain, torch.randint(len(labels), (64,), generator=torch.Generator().manual_seed(5)))


def test_rarity_weights_against_a_hand_computation() -> None:
    from gen.train import rarity_weights

    # Flat grey images: no spread in any image, so only the three (equal) channel means count,
    # and the distance between two images is proportional to the difference of their levels.
    levels = [0, 10, 30, 100, 50, 7, 7]
    images = torch.stack([torch.full((3, 4, 4), level, dtype=torch.uint8) for level in levels])
    labels = torch.tensor([0, 0, 0, 0, 1, 2, 2])  # class 1: one image; class 2: two alike
    nearest = rarity_weights(images, labels, 1.0, neighbour=1)  # distances 10, 10, 20, 70
    assert nearest.tolist() == pytest.approx([4 / 11, 4 / 11, 8 / 11, 28 / 11, 1, 1, 1])
    squared = rarity_weights(images, labels, 2.0, neighbour=1)  # 100, 100, 400, 4900
    assert squared[:4].tolist() == pytest.approx([4 / 55, 4 / 55, 16 / 55, 196 / 55])
    farthest = rarity_weights(images, labels, 1.0)  # 5th neighbour, so the 3rd in a class of 4
    assert farthest[:4].tolist() == pytest.approx([10 / 9, 1, 7 / 9, 10 / 9])
    # The spread counts too: two images of one mean but speckled, beside three flat ones.
    speckled = images[:1].repeat(5, 1, 1, 1)
    speckled[3:, :, ::2] = 20
    weights = rarity_weights(speckled, torch.zeros(5, dtype=torch.long), 1.0, neighbour=2)
    assert float(weights[3:].mean()) > float(weights[:3].mean())


def test_weighted_batches_draw_each_image_by_its_weight() -> None:
    from gen.train import draw_batch, weighted_chances

    labels = torch.tensor([0, 0, 0, 1, 1])
    weights = torch.tensor([0.5, 0.5, 2.0, 1.0, 1.0], dtype=torch.float64)
    n = 50_000
    for balanced, expected in (
        (False, [0.1, 0.1, 0.4, 0.2, 0.2]),
        (True, [1 / 12, 1 / 12, 1 / 3, 0.25, 0.25]),
    ):
        chances = weighted_chances(labels, weights, balanced)
        drawn = draw_batch(labels, n, torch.Generator().manual_seed(0), balanced, chances)
        shares = torch.bincount(drawn, minlength=5).double() / n
        for share, p in zip(shares.tolist(), expected, strict=True):  # within 5 binomial deviations
            assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_a_fading_weighted_draw_against_a_hand_computation() -> None:
    from gen.train import faded_chances

    weighted = torch.tensor([3.0, 1.0, 4.0], dtype=torch.float64)  # normalised: 3/8, 1/8, 1/2
    plain = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)  # normalised: a third each
    assert torch.equal(faded_chances(weighted, plain, 500, 0), weighted)  # fade 0: never fades
    for iteration, share in ((0, 1.0), (25, 0.75), (50, 0.5), (100, 0.0), (400, 0.0)):
        expected = [share * w + (1 - share) / 3 for w in (3 / 8, 1 / 8, 1 / 2)]
        assert faded_chances(weighted, plain, iteration, 100).tolist() == pytest.approx(expected)


def test_a_faded_draw_ends_on_the_plain_proportions() -> None:
    """Training's real batches with --oversample-rare-fade: weighted at the start, the plain
    draw from the fade's end on (a rare image back to its own share)."""
    from gen.image_folder import LabelledImages
    from gen.runtime import Distributed
    from gen.train import _RealBatches

    levels = [0, 5, 10, 15, 20, 25, 30, 200] * 2  # the last image of each class is far from the others
    data = LabelledImages(
        images=torch.stack([torch.full((3, 4, 4), level, dtype=torch.uint8) for level in levels]),
        labels=torch.tensor([0] * 8 + [1] * 8),
        class_names=("a", "b"),
        fingerprint="",
        skipped=(),
    )
    config = TrainConfig(
        data="d", out="o", batch_size=20_000, oversample_rare=2.0, oversample_rare_fade=100
    ).resolved()
    batches = _RealBatches(
        config, Distributed(0, 1, torch.device("cpu")), data, torch.Generator().manual_seed(0)
    )

    def rare_share(iteration: int) -> float:
        real, _ = batches.draw(iteration)
        return float((real[:, 0, 0, 0] > 0.5).double().mean())  # level 200 is the only one above 0.5

    # 5th-neighbour distances per class 25, 20, 15, 15, 15, 20, 25 and 190: squared, the far
    # image has 36,100 / 38,825 of its class's draw; without weights one of eight.
    weighted, plain = 36_100 / 38_825, 1 / 8
    deviations = 5 * math.sqrt(0.25 / 20_000)  # five binomial standard deviations at most
    for iteration, expected in ((0, weighted), (50, (weighted + plain) / 2), (100, plain), (10_000, plain)):
        assert abs(rare_share(iteration) - expected) < deviations, iteration


def test_a_given_discriminator_with_a_colour_projection_gets_a_colour_bank(
    data_dir: Path, tmp_path: Path
) -> None:
    """D's colour projection needs the colours G was asked for: a given architecture whose D has
    one trains with a generator bank of a slot per image of the largest class, held in G and the
    EMA; the gradient penalty (WGAN-GP) scores its in-between images with in-between colours."""
    generator_spec, discriminator_spec = preset("tiny", len(CLASS_NAMES))
    architecture = (generator_spec, dataclasses.replace(discriminator_spec, colour_projection=True))
    for name in ("tiny", "wgan-gp"):
        out = tmp_path / name
        train(config(data_dir, out, preset=name, iterations=2), progress=False, architecture=architecture)
        state = load_checkpoint(out / "checkpoint-0000002.pt")
        assert json.loads(state["discriminator_spec"])["colour_projection"] is True
        assert json.loads(state["generator_spec"])["colour_bank"] == 8  # 8 phantoms per class
        for network in ("generator", "generator_ema"):
            assert state[network]["colour_counts"].tolist() == [8] * len(CLASS_NAMES)
        assert any(key.startswith("colour_projection") for key in state["discriminator"])
        assert all(math.isfinite(row["d_loss"]) for row in read_history(out / "history.csv"))


def test_old_settings_resume_with_the_new_levers_off() -> None:
    stored = json.loads(TrainConfig(data="d", out="o").to_json())
    del stored["lecam"], stored["balanced_batches"], stored["transition"]
    del stored["reconstruction_weight"], stored["ada_target"], stored["minibatch_std"], stored["mode_seeking"]
    del stored["oversample_rare"], stored["oversample_rare_fade"], stored["colour_condition"]
    del stored["histogram_matching"]
    config = TrainConfig.from_json(json.dumps(stored))
    assert config.lecam == 0.0 and config.balanced_batches is False and config.transition == (0, 0)
    assert config.reconstruction_weight == 0.0 and config.ada_target == 0.0 and config.minibatch_std == 0
    assert config.mode_seeking == 0.0 and config.oversample_rare == 0.0 and config.oversample_rare_fade == 0
    assert config.colour_condition == 0.0 and config.histogram_matching == 0.0


def test_transition_ramp_against_a_hand_computation() -> None:
    from gen.train import transition_strength

    ramp = [transition_strength(i, (100, 300)) for i in (0, 99, 100, 150, 200, 299, 300, 5000)]
    assert ramp == pytest.approx([0, 0, 0, 0.25, 0.5, 0.995, 1, 1])
    assert transition_strength(7, None) == transition_strength(7, (0, 0)) == 1.0


def test_conditioning_strength_scales_the_class_signal_of_both_networks() -> None:
    from gen.networks import set_conditioning

    generator_spec, discriminator_spec = preset("tiny", len(CLASS_NAMES))
    torch.manual_seed(0)
    generator, discriminator = build(generator_spec).eval(), build(discriminator_spec).eval()
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith(("gain.weight", "bias.weight")):
                parameter.normal_()  # classes that differ
    noise = torch.randn(2, generator_spec.noise_dim)
    with torch.no_grad():
        set_conditioning(generator, 0.0)
        unconditional = generator(noise, torch.tensor([0, 0])), generator(noise, torch.tensor([1, 1]))
        assert torch.equal(*unconditional)  # no class signal at all
        set_conditioning(generator, 1.0)
        assert not torch.allclose(
            generator(noise, torch.tensor([0, 0])), generator(noise, torch.tensor([1, 1]))
        )
        images = torch.rand(2, 3, 64, 64) * 2 - 1
        full = discriminator(images, torch.tensor([0, 1]))
        set_conditioning(discriminator, 0.0)
        none = discriminator(images, torch.tensor([0, 1]))
        set_conditioning(discriminator, 0.5)
        half = discriminator(images, torch.tensor([0, 1]))
    assert torch.allclose(half, (full + none) / 2, atol=1e-5)  # the projection term is linear in it
