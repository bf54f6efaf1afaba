"""gen.runtime: the one place that turns --device into a torch device, and every command that
takes --device going through it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gen.cli import cli
from gen.errors import GenError
from gen.runtime import resolve_device

NO_MPS = not torch.backends.mps.is_available()
needs_no_mps = pytest.mark.skipif(not NO_MPS, reason="this machine has an Apple GPU (MPS)")


def test_auto_picks_the_cpu_without_a_gpu() -> None:
    if torch.cuda.is_available() or not NO_MPS:
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@needs_no_mps
def test_mps_without_mps_is_a_sentence() -> None:
    with pytest.raises(GenError, match=r"^--device mps was asked for, but this torch sees no Apple GPU"):
        resolve_device("mps")


@needs_no_mps
@pytest.mark.parametrize(
    "arguments",
    [
        ["train", "--data", "{data}", "--out", "{tmp}/run"],
        ["sample", "--n", "1", "--all-classes"],
        ["report", "--real", "{data}"],
        ["search", "--data", "{data}", "--out", "{tmp}/search"],
        ["classifiers", "train", "--data", "{data}", "--arch", "simple"],
        ["classify", "{data}", "--classifier", "1"],
    ],
    ids=lambda arguments: " ".join(a for a in arguments if not a.startswith(("-", "{")))[:24],
)
def test_device_mps_without_mps_stops_every_command_before_it_starts(
    arguments: list[str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    filled = [a.format(data=data, tmp=tmp_path) for a in arguments]
    result = CliRunner().invoke(cli, [*filled, "--device", "mps", "--db", url])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert lines == [
        "Error: --device mps was asked for, but this torch sees no Apple GPU (MPS); use --device cpu or auto."
    ], result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]  # no database, no run folder
