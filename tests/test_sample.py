"""gen.sample: deterministic, batch-size-independent, never-overwriting PNG sampling."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import resource
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from gen.cli import cli
from gen.errors import GenError
from gen.phantoms import PHANTOM_CLASSES, write_phantoms
from gen.sample import SampleResult, sample
from gen.train import train
from gen.train_config import TrainConfig

CLASS_NAMES = tuple(sorted(PHANTOM_CLASSES))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model after a few iterations: enough for every class to have its own conditioning."""
    root = tmp_path_factory.mktemp("sample")
    write_phantoms(root / "data", per_class=8)
    config = TrainConfig(
        data=str(root / "data"),
        out=str(root / "run"),
        preset="tiny",
        iterations=3,
        batch_size=8,
        checkpoint_every=1000,
        device="cpu",
    )
    return train(config, progress=False).checkpoint


def run_sample(checkpoint: Path, out: Path, n: int, classes: list[str] | None, **options) -> SampleResult:
    return sample(checkpoint, out, n, classes, device="cpu", progress=False, **options)


def md5s_in_index_order(result: SampleResult, class_name: str) -> list[str]:
    images = [image for image in result.images if image.class_name == class_name]
    images.sort(key=lambda image: image.index)
    # The MD5 recorded is the file's.
    for image in images:
        assert hashlib.md5(image.path.read_bytes()).hexdigest() == image.md5
    return [image.md5 for image in images]


def pixels_in_index_order(result: SampleResult, class_name: str) -> torch.Tensor:
    """The class's images as one int16 tensor (index, height, width, channel), index order."""
    images = sorted((i for i in result.images if i.class_name == class_name), key=lambda i: i.index)
    decoded = []
    for image in images:
        with Image.open(image.path) as opened:
            decoded.append(torch.from_numpy(np.array(opened.convert("RGB"))).short())
    return torch.stack(decoded)


def assert_within_one_level(left: torch.Tensor, right: torch.Tensor, what: str) -> None:
    """What holds on any CPU: convolution kernels chosen by batch size, thread count and
    instruction set round differently in the last bit, which can move a pixel by one level."""
    assert left.shape == right.shape, what
    worst = int((left - right).abs().max())
    assert worst <= 1, f"{what}: a pixel differs by {worst} intensity levels"


def test_same_settings_give_identical_files(checkpoint: Path, tmp_path: Path) -> None:
    """Exact: same machine, torch version, device, batch size and thread count."""
    name = CLASS_NAMES[1]
    first = run_sample(checkpoint, tmp_path / "first", 8, [name], seed=5, batch_size=3)
    again = run_sample(checkpoint, tmp_path / "again", 8, [name], seed=5, batch_size=3)
    reference = md5s_in_index_order(first, name)
    assert len(set(reference)) == 8  # eight different images
    assert md5s_in_index_order(again, name) == reference


def test_same_request_gives_the_same_images_at_any_batch_size(checkpoint: Path, tmp_path: Path) -> None:
    name = CLASS_NAMES[1]
    by_batch_size = {
        batch_size: run_sample(
            checkpoint, tmp_path / f"batch{batch_size}", 8, [name], seed=5, batch_size=batch_size
        )
        for batch_size in (1, 3, 7, 64)
    }
    reference = pixels_in_index_order(by_batch_size[64], name)
    assert len(reference) == 8
    for batch_size, result in by_batch_size.items():
        assert_within_one_level(pixels_in_index_order(result, name), reference, f"batch size {batch_size}")


def test_same_images_whatever_the_thread_count(checkpoint: Path, tmp_path: Path) -> None:
    name = CLASS_NAMES[0]
    one_thread = run_sample(checkpoint, tmp_path / "one", 3, [name], batch_size=2)
    torch.set_num_threads(2)
    try:
        two_threads = run_sample(checkpoint, tmp_path / "two", 3, [name], batch_size=3)
    finally:
        torch.set_num_threads(1)
    assert_within_one_level(
        pixels_in_index_order(one_thread, name), pixels_in_index_order(two_threads, name), "two threads"
    )


def test_seeds_and_classes_give_different_images(checkpoint: Path, tmp_path: Path) -> None:
    seed0 = run_sample(checkpoint, tmp_path / "seed0", 4, None, seed=0)
    seed1 = run_sample(checkpoint, tmp_path / "seed1", 4, None, seed=1)
    per_class_seed0 = {name: md5s_in_index_order(seed0, name) for name in CLASS_NAMES}
    per_class_seed1 = {name: md5s_in_index_order(seed1, name) for name in CLASS_NAMES}
    for name in CLASS_NAMES:
        assert not set(per_class_seed0[name]) & set(per_class_seed1[name]), name
    every_file = [md5 for md5s in per_class_seed0.values() for md5 in md5s]
    assert len(set(every_file)) == len(every_file) == 4 * len(CLASS_NAMES)

    # The same noise through different classes: the class changes the picture.
    pixels = {}
    for image in seed0.images:
        if image.index == 0:
            with Image.open(image.path) as opened:
                pixels[image.class_name] = torch.from_numpy(np.array(opened.convert("RGB"))).short()
    for first in CLASS_NAMES:
        for second in CLASS_NAMES:
            if first < second:
                assert (pixels[first] - pixels[second]).abs().max() > 0, (first, second)


def test_never_overwrites_and_continues_the_numbering(checkpoint: Path, tmp_path: Path) -> None:
    name = CLASS_NAMES[0]
    directory = tmp_path / name
    directory.mkdir()
    (directory / "notes.txt").write_text("my notes, not an image")
    (directory / "my picture.png").write_bytes(b"someone's own file")

    first = run_sample(checkpoint, tmp_path, 5, [name], seed=0)
    first_names = [image.path.name for image in first.images]
    assert first_names == [f"{name}_{number:06d}.png" for number in range(1, 6)]
    first_bytes = {path: path.read_bytes() for path in directory.glob(f"{name}_*.png")}

    # The same request again: new files with new numbers, even though the pixels are the same.
    second = run_sample(checkpoint, tmp_path, 5, [name], seed=0)
    second_names = [image.path.name for image in second.images]
    assert second_names == [f"{name}_{number:06d}.png" for number in range(6, 11)]
    assert [image.md5 for image in second.images] == [image.md5 for image in first.images]
    for path, data in first_bytes.items():
        assert path.read_bytes() == data
    assert (directory / "notes.txt").read_text() == "my notes, not an image"
    assert (directory / "my picture.png").read_bytes() == b"someone's own file"
    assert sorted(path.name for path in directory.iterdir()) == sorted(
        ["notes.txt", "my picture.png", *(f"{name}_{number:06d}.png" for number in range(1, 11))]
    )  # and nothing temporary left behind


def test_numbering_continues_after_the_highest_number(checkpoint: Path, tmp_path: Path) -> None:
    name = CLASS_NAMES[2]
    directory = tmp_path / name
    directory.mkdir()
    (directory / f"{name}_000041.png").write_bytes(b"an older sample")
    result = run_sample(checkpoint, tmp_path, 2, [name])
    assert [image.path.name for image in result.images] == [f"{name}_000042.png", f"{name}_000043.png"]
    assert (directory / f"{name}_000041.png").read_bytes() == b"an older sample"


def test_unknown_class_names_the_classes(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(GenError) as error:
        run_sample(checkpoint, tmp_path / "out", 1, [CLASS_NAMES[0], "phantom_square"])
    message = str(error.value)
    assert "'phantom_square'" in message
    for name in CLASS_NAMES:
        assert name in message
    assert not (tmp_path / "out").exists()  # nothing half-made


@pytest.mark.parametrize("n", [0, -3])
def test_n_below_one_is_refused(checkpoint: Path, tmp_path: Path, n: int) -> None:
    with pytest.raises(GenError, match="at least 1"):
        run_sample(checkpoint, tmp_path / "out", n, None)
    assert not (tmp_path / "out").exists()


def test_batch_size_below_one_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(GenError, match="at least 1"):
        run_sample(checkpoint, tmp_path / "out", 1, None, batch_size=0)


def test_missing_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GenError, match="does not exist"):
        run_sample(tmp_path / "nowhere.pt", tmp_path / "out", 1, None)
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(GenError, match="no checkpoint in"):
        run_sample(tmp_path / "empty-run", tmp_path / "out", 1, None)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01garbage bytes\xff" * 100, b"", b"PK\x03\x04 not really a zip"],
    ids=["garbage", "empty", "fake-zip"],
)
def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "checkpoint-0000001.pt"
    path.write_bytes(content)
    with pytest.raises(GenError, match="not a readable gen checkpoint"):
        run_sample(path, tmp_path / "out", 1, None)


def test_a_torch_file_that_is_not_a_gen_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(GenError, match="not a gen checkpoint"):
        run_sample(path, tmp_path / "out", 1, None)


def test_output_is_64x64_rgb_png_and_the_result_lists_it(checkpoint: Path, tmp_path: Path) -> None:
    # A run folder stands for its latest checkpoint.
    result = run_sample(checkpoint.parent, tmp_path, 3, [CLASS_NAMES[3], CLASS_NAMES[0]], seed=2)
    assert result.checkpoint == checkpoint
    assert result.iteration == 3
    assert result.out == tmp_path
    assert result.skipped == 0
    assert result.images_per_second > 0
    assert [(image.class_name, image.index) for image in result.images] == [
        (CLASS_NAMES[3], 0), (CLASS_NAMES[3], 1), (CLASS_NAMES[3], 2),
        (CLASS_NAMES[0], 0), (CLASS_NAMES[0], 1), (CLASS_NAMES[0], 2),
    ]  # fmt: skip
    for image in result.images:
        assert image.path.is_file()
        assert image.path.parent == tmp_path / image.class_name
        assert image.label == CLASS_NAMES.index(image.class_name)
        assert image.seed == 2
        assert (image.width, image.height) == (64, 64)
        with Image.open(image.path) as opened:
            assert (opened.format, opened.mode, opened.size) == ("PNG", "RGB", (64, 64))
    # Only the classes asked for got a folder.
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([CLASS_NAMES[3], CLASS_NAMES[0]])


# A checkpoint comes from anyone: class names that are not folder names must never become paths.
PATH_LIKE_CLASS_NAMES = {
    "parent": "../../x",
    "absolute": "/abs/x",
    "nested": "a/b",
    "backslash": "a\\b",
    "dot-dot": "..",
    "dot": ".",
    "hidden": ".hidden",
    "empty": "",
    "nul": "x\x00y",
    "control": "x\ny",
    "escape": "\x1b[2J",
    # A spreadsheet would run these as formulas from metadata.csv and settings.csv.
    "formula": "=HYPERLINK(1)",
    "at": "@SUM(1)",
    "minus": "-2+3",
    "plus": "+1",
    # Too long for <class>_NNNNNN.png to be a file name: refused before a row or folder is made.
    "300 characters": "x" * 300,
}


def craft(checkpoint: Path, folder: Path, class_names: object) -> Path:
    """A copy of a real checkpoint whose class names are replaced, as an attacker would."""
    state = torch.load(checkpoint, weights_only=True)
    state["class_names"] = class_names
    folder.mkdir(parents=True)
    torch.save(state, folder / checkpoint.name)
    return folder / checkpoint.name


def files_under(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


@pytest.mark.parametrize("name", list(PATH_LIKE_CLASS_NAMES.values()), ids=list(PATH_LIKE_CLASS_NAMES))
def test_a_class_name_that_is_not_a_folder_name_is_refused(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    crafted = craft(checkpoint, tmp_path / "crafted", [name, *CLASS_NAMES[1:]])
    work = tmp_path / "work" / "deeper"  # room for ../../x to land inside tmp_path if it escaped
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv("GEN_DATABASE_URL", raising=False)
    out = work / "out"
    before = files_under(tmp_path)

    with pytest.raises(GenError, match=r"^checkpoint .* names a class .* that cannot be a folder name: "):
        run_sample(crafted, out, 1, None)
    result = CliRunner().invoke(
        cli,
        [
            "sample",
            "--checkpoint",
            str(crafted),
            "--out",
            str(out),
            "--n",
            "1",
            "--all-classes",
            "--device",
            "cpu",
        ],
    )

    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: checkpoint {crafted} names a class "), (
        result.output
    )
    assert files_under(tmp_path) == before  # nothing written: no images, no folder, no gen.db


@pytest.mark.parametrize(
    "class_names", ["cyt_a", [1, 2, 3, 4], None, list(CLASS_NAMES[:3]) + [CLASS_NAMES[0]]]
)
def test_class_names_must_be_distinct_names(checkpoint: Path, tmp_path: Path, class_names: object) -> None:
    crafted = craft(checkpoint, tmp_path / "crafted", class_names)
    with pytest.raises(GenError, match=rf"^checkpoint {crafted} is damaged: "):
        run_sample(crafted, tmp_path / "out", 1, None)
    assert not (tmp_path / "out").exists()


def _spec_with(state: dict, key: str, **changes: object) -> str:
    return json.dumps({**json.loads(state[key]), **changes})


# What a damaged or crafted checkpoint may hold instead of what gen writes; each must be one
# sentence before any network is built (200,000 channels would take the machine's memory first).
DAMAGED_STATES = {
    "huge channels": lambda s: {
        "generator_spec": _spec_with(s, "generator_spec", channels=[200_000, 64, 32, 16, 16])
    },
    "negative noise": lambda s: {"generator_spec": _spec_with(s, "generator_spec", noise_dim=-5)},
    "too many classes": lambda s: {"generator_spec": _spec_with(s, "generator_spec", num_classes=10**9)},
    "unknown upsampling": lambda s: {"generator_spec": _spec_with(s, "generator_spec", upsample="magic")},
    "spec not json": lambda s: {"generator_spec": "{not json"},
    "spec a list": lambda s: {"generator_spec": "[1, 2]"},
    "cell not a cell": lambda s: {
        "generator_spec": _spec_with(s, "generator_spec", cell={"nodes": "x", "code": 4})
    },
    "classes differ": lambda s: {"generator_spec": _spec_with(s, "generator_spec", num_classes=3)},
    "empty weights": lambda s: {"generator_ema": {}},
    "weights not tensors": lambda s: {"generator_ema": {"stem.weight": [1.0]}},
    "weights unlike the generator's": lambda s: {"generator_ema": {"stem.weight": torch.zeros(2, 2)}},
    "iteration not a number": lambda s: {"iteration": "many"},
    "negative iteration": lambda s: {"iteration": -1},
}


@pytest.mark.parametrize("damage", list(DAMAGED_STATES.values()), ids=list(DAMAGED_STATES))
def test_a_damaged_checkpoint_is_one_sentence_and_writes_nothing(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage
) -> None:
    state = torch.load(checkpoint, weights_only=True)
    state.update(damage(state))
    (tmp_path / "crafted").mkdir()
    crafted = tmp_path / "crafted" / checkpoint.name
    torch.save(state, crafted)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GEN_DATABASE_URL", raising=False)
    before = files_under(tmp_path)

    with pytest.raises(GenError, match=rf"^checkpoint {crafted} is damaged: "):
        run_sample(crafted, tmp_path / "out", 1, None)
    arguments = ["sample", "--checkpoint", str(crafted), "--n", "1", "--all-classes", "--device", "cpu"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.startswith(f"Error: checkpoint {crafted} is damaged: "), result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert files_under(tmp_path) == before  # no images, no folder, no gen.db


@pytest.mark.parametrize(
    "pair", [("Mono", "mono"), ("caf\u00e9", "cafe\u0301")], ids=["case", "composed-decomposed"]
)
def test_class_names_that_would_be_one_folder_are_refused(
    checkpoint: Path, tmp_path: Path, pair: tuple[str, str]
) -> None:
    crafted = craft(checkpoint, tmp_path / "crafted", [*pair, *CLASS_NAMES[2:]])
    with pytest.raises(GenError, match=rf"^checkpoint {crafted} names classes .* differ only in case"):
        run_sample(crafted, tmp_path / "out", 1, None)
    assert not (tmp_path / "out").exists()


# An output folder may hold what sampling must never open: it reads a class folder's PNGs to
# adopt those a killed run left, and a pipe there would hang it, /dev/zero fill the memory.


def make_fifo(out: Path) -> Path:
    os.mkfifo(out / CLASS_NAMES[0] / f"{CLASS_NAMES[0]}_000001.png")
    return out / CLASS_NAMES[0] / f"{CLASS_NAMES[0]}_000001.png"


def link_to_zero(out: Path) -> Path:
    (out / CLASS_NAMES[0] / f"{CLASS_NAMES[0]}_000001.png").symlink_to("/dev/zero")
    return out / CLASS_NAMES[0] / f"{CLASS_NAMES[0]}_000001.png"


def link_class_folder(out: Path) -> Path:
    (out / CLASS_NAMES[0]).rmdir()
    (out.parent / "elsewhere").mkdir()
    (out / CLASS_NAMES[0]).symlink_to(out.parent / "elsewhere")
    return out / CLASS_NAMES[0]


def make_socket(out: Path) -> Path:
    with socket.socket(socket.AF_UNIX) as server:
        here = os.getcwd()
        os.chdir(out)  # a relative name: a socket's path may have only about 100 bytes
        try:
            server.bind("gen.sock")
        finally:
            os.chdir(here)
    return out / "gen.sock"


def fifo_in_out(out: Path) -> Path:
    os.mkfifo(out / "pipe")
    return out / "pipe"


SPECIAL_ENTRIES = {
    "a named pipe in a class folder": (make_fifo, "a named pipe (FIFO)"),
    "a link to /dev/zero in a class folder": (link_to_zero, "a symbolic link"),
    "a linked class folder": (link_class_folder, "a symbolic link"),
    "a socket in the output folder": (make_socket, "a socket"),
    "a named pipe in the output folder": (fifo_in_out, "a named pipe (FIFO)"),
}
# Those that the code before this check read: a regression hangs or fills memory, so they run in
# a child with a deadline and a memory cap.
READ_BEFORE = ("a named pipe in a class folder", "a link to /dev/zero in a class folder")


def models_in(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT count(*) FROM gan_architectures").fetchone()[0]


@pytest.mark.parametrize("case", list(SPECIAL_ENTRIES))
def test_special_files_in_the_output_folder_are_refused_before_sampling(
    checkpoint: Path, tmp_path: Path, case: str
) -> None:
    make, kind = SPECIAL_ENTRIES[case]
    out = tmp_path / "out"
    (out / CLASS_NAMES[0]).mkdir(parents=True)
    special = make(out)
    database = tmp_path / "gen.db"
    sentence = (
        f"{special} is {kind}; gen sample writes only where there are regular files and folders, "
        f"so move it out of {out}."
    )
    if case in READ_BEFORE:

        def cap_memory() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

        result = subprocess.run(
            [sys.executable, "-c", "from gen.cli import main; main()", "sample", "--checkpoint",
             str(checkpoint), "--out", str(out), "--n", "2", "--class", CLASS_NAMES[0], "--device", "cpu",
             "-q", "--db", f"sqlite:///{database}"],
            capture_output=True, text=True, timeout=600, preexec_fn=cap_memory,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().splitlines() == [f"Error: {sentence}"]
    else:
        with pytest.raises(GenError) as refused:
            run_sample(checkpoint, out, 2, [CLASS_NAMES[0]], database=f"sqlite:///{database}")
        assert str(refused.value) == sentence
    assert not list(out.rglob("*_000002.png"))
    assert models_in(database) == 0  # not even the model's row was made


# ---------------------------------------------------------------------------------------------
# Concurrency, huge requests, full disks, bad seeds


def test_a_number_taken_by_another_sampler_is_skipped_not_overwritten(
    checkpoint: Path, tmp_path: Path
) -> None:
    from gen import sample as sampling

    name = CLASS_NAMES[0]
    real_write_new = sampling._write_new
    taken = tmp_path / name / f"{name}_000002.png"

    def another_sampler_writes_first(path: Path, data: bytes) -> None:
        if path.name.endswith("_000002.png") and not taken.exists():
            taken.write_bytes(b"the other sampler's image")
        real_write_new(path, data)

    sampling._write_new = another_sampler_writes_first
    try:
        result = run_sample(checkpoint, tmp_path, 3, [name])
    finally:
        sampling._write_new = real_write_new
    assert sorted(image.path.name for image in result.images) == [
        f"{name}_000001.png",
        f"{name}_000003.png",
        f"{name}_000004.png",
    ]
    assert taken.read_bytes() == b"the other sampler's image"


def test_a_huge_request_is_refused_before_any_work(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(GenError, match="free some space or ask for fewer with --n"):
        run_sample(checkpoint, tmp_path, 10**9, None)
    assert not any(tmp_path.rglob("*.png"))


def test_a_full_disk_is_one_sentence(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("gen.sample._write_new", full)
    with pytest.raises(GenError, match="cannot write images to .*: No space left on device"):
        run_sample(checkpoint, tmp_path, 2, [CLASS_NAMES[0]])


@pytest.mark.parametrize("seed", [-1, 2**31, 2**64])
def test_seeds_outside_the_range_are_refused_at_the_option(
    checkpoint: Path, tmp_path: Path, seed: int
) -> None:
    from click.testing import CliRunner

    from gen.cli import cli

    for arguments in (
        ["sample", "--checkpoint", str(checkpoint), "--n", "1", "--all-classes", "--no-record"],
        ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")],
        ["demo-data", "--out", str(tmp_path / "phantoms")],
    ):
        result = CliRunner().invoke(cli, [*arguments, "--seed", str(seed)])
        assert result.exit_code == 2 and "Invalid value for '--seed'" in result.output, result.output
        assert "Traceback" not in result.output
    with pytest.raises(GenError, match="--seed must be between 0 and"):
        run_sample(checkpoint, tmp_path, 1, None, seed=seed)


def test_a_killed_samplers_temporary_is_removed(checkpoint: Path, tmp_path: Path) -> None:
    name = CLASS_NAMES[0]
    (tmp_path / name).mkdir()
    stale = tmp_path / name / f".{name}_000001.png.999999999.tmp"  # no such process
    stale.write_bytes(b"half an image")
    run_sample(checkpoint, tmp_path, 1, [name])
    assert not stale.exists()


def test_ema_weights_that_do_not_fit_their_spec_are_one_sentence(checkpoint: Path) -> None:
    from gen.checkpoint import load_for_sampling
    from gen.sample import load_generator

    state = load_for_sampling(checkpoint)
    crafted = dataclasses.replace(state, generator_ema={"stem.weight": torch.zeros(1)})
    with pytest.raises(GenError, match="generator_ema weights do not fit its architecture"):
        load_generator(crafted, torch.device("cpu"))
