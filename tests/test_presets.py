"""gen.presets through `gen train`: every preset, the source's five baselines among them, trains
two CPU iterations on `gen demo-data` output and leaves its history; --checkpoint best."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Checkpoint, Image, TrainingParameters
from db.session import make_engine
from gen.architecture import BASELINES, PRESETS
from gen.cli import cli
from gen.errors import GenError
from gen.history import COLUMNS
from gen.image_folder import load_image_folder
from gen.networks import colour_statistics
from gen.presets import RECIPES
from gen.train_config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("presets") / "phantoms"
    result = CliRunner().invoke(cli, ["demo-data", "--out", str(root), "--per-class", "6"])
    assert result.exit_code == 0, result.output
    return root


def run_gen(*arguments: str) -> str:
    result = CliRunner().invoke(cli, list(arguments))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_train_help_lists_the_baselines() -> None:
    text = run_gen("train", "--help")
    for name in BASELINES:
        assert name in text


@pytest.mark.parametrize("name", [name for name in PRESETS if name not in ("paper", "small")])
def test_every_preset_trains_two_iterations_and_keeps_a_history(
    name: str, demo_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    database = f"sqlite:///{tmp_path / 'gen.db'}"
    run_gen(
        "train", "--data", str(demo_data), "--out", str(out), "--preset", name, "--iters", "2",
        "--batch-size", "4", "--device", "cpu", "--quiet", "--db", database,
    )  # fmt: skip
    assert (out / "checkpoint-0000002.pt").is_file()
    with open(out / "history.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows and tuple(rows[0])[: len(COLUMNS)] == COLUMNS
    assert (out / "history.png").is_file()
    for row in rows:
        assert all(float(row[column]) == float(row[column]) for column in ("d_loss", "g_loss"))  # not NaN

    recipe = RECIPES[name]
    state = torch.load(out / "checkpoint-0000002.pt", weights_only=True)
    config = TrainConfig.from_json(state["config"])
    assert (config.loss, config.optimizer, config.critic_steps) == (
        recipe.loss,
        recipe.optimizer,
        recipe.critic_steps,
    )
    engine = make_engine(database)
    with Session(engine) as session:
        parameters = session.scalars(select(TrainingParameters)).one()
        assert (parameters.loss, parameters.g_optimizer, parameters.d_optimizer) == (
            recipe.loss,
            recipe.optimizer,
            recipe.optimizer,
        )
        # Epochs: real images seen over training images (24 phantoms), after the 2 iterations done.
        assert parameters.epochs == round(2 * 4 * recipe.critic_steps / 24)
    engine.dispose()


def test_command_line_settings_override_the_preset(demo_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_gen(
        "train", "--data", str(demo_data), "--out", str(out), "--preset", "wgan-gp", "--iters", "1",
        "--batch-size", "4", "--critic-steps", "2", "--g-lr", "0.0003", "--betas", "0.5", "0.99",
        "--diffaugment", "translation", "--device", "cpu", "--quiet",
        "--db", f"sqlite:///{tmp_path / 'g.db'}",
    )  # fmt: skip
    config = TrainConfig.from_json(torch.load(out / "checkpoint-0000001.pt", weights_only=True)["config"])
    assert (config.critic_steps, config.g_lr, config.betas, config.diffaugment) == (
        2,
        0.0003,
        (0.5, 0.99),
        "translation",
    )
    assert config.d_lr == RECIPES["wgan-gp"].d_lr and config.loss == "wasserstein"  # the rest: the preset's


def test_every_quality_lever_trains_and_resumes(demo_data: Path, tmp_path: Path) -> None:
    out, db = tmp_path / "run", f"sqlite:///{tmp_path / 'g.db'}"
    run_gen(
        "train", "--data", str(demo_data), "--out", str(out), "--preset", "tiny", "--iters", "2",
        "--batch-size", "4", "--lecam", "0.3", "--classifier-weight", "0.5", "--transition", "0", "2",
        "--balanced-batches", "--diffaugment", "color@0.5,translation", "--checkpoint-every", "1",
        "--reconstruction-weight", "1", "--ada-target", "0.6", "--minibatch-std", "2", "--mode-seeking", "1",
        "--oversample-rare", "1", "--oversample-rare-fade", "2", "--colour-condition", "1",
        "--histogram-matching", "2", "--device", "cpu",
        "--quiet", "--db", db,
    )  # fmt: skip
    run_gen("train", "--out", str(out), "--iters", "3", "--resume", "--quiet", "--db", db)
    state = torch.load(out / "checkpoint-0000003.pt", weights_only=True)
    config = TrainConfig.from_json(state["config"])
    assert (config.lecam, config.classifier_weight, config.transition, config.balanced_batches) == (
        0.3,
        0.5,
        (0, 2),
        True,
    )
    assert (config.reconstruction_weight, config.ada_target, config.mode_seeking) == (1.0, 0.6, 1.0)
    assert config.oversample_rare == 1.0 and config.oversample_rare_fade == 2
    # The colour bank: a slot per image of the largest class, each class's images' colours in
    # order (the EMA holds the same bank), kept through the resume.
    data = load_image_folder(demo_data)
    counts = torch.bincount(data.labels)
    assert config.colour_condition == 1.0 and config.histogram_matching == 2.0
    assert json.loads(state["generator_spec"])["colour_bank"] == int(counts.max())
    colours = colour_statistics(data.images.float().div(127.5).sub(1))
    for name in ("generator", "generator_ema"):
        weights = state[name]
        assert weights["colour_counts"].tolist() == counts.tolist()
        for label in range(len(counts)):
            torch.testing.assert_close(
                weights["colour_bank"][label, : counts[label]], colours[data.labels == label]
            )
    spec = json.loads(state["discriminator_spec"])
    assert spec["classifier_head"] is True and spec["reconstruction_head"] is True
    assert config.minibatch_std == 2 and spec["minibatch_std"] == 2
    assert "lecam_anchors" in state["loss"]
    assert state["loss"]["ada"]["images"] > 0  # ADA's count since its last move survives a resume


def test_a_minibatch_std_group_that_does_not_divide_the_batch_is_refused(
    demo_data: Path, tmp_path: Path
) -> None:
    """A group must not hold real and fake images (gen.losses scores them in one batch)."""
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "--data", str(demo_data), "--out", str(out), "--preset", "tiny", "--iters", "1",
        "--batch-size", "6", "--minibatch-std", "4", "--device", "cpu", "--quiet",
        "--db", f"sqlite:///{tmp_path / 'g.db'}",
    ])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "minibatch_std group of 4 images must divide the batch of 6 per process" in result.output
    assert "Traceback" not in result.output and not list(out.glob("checkpoint-*.pt"))
    arguments = ["train", "--data", str(demo_data), "--out", str(out), "--minibatch-std", "1"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1 and "--minibatch-std must be 0 (off) or a group of 2 to 64" in result.output
    began = ["train", "--data", str(demo_data), "--out", str(out), "--preset", "began"]
    database = f"sqlite:///{tmp_path / 'g.db'}"
    result = CliRunner().invoke(cli, [*began, "--minibatch-std", "2", "--db", database])
    assert result.exit_code == 1
    assert "--minibatch-std needs a discriminator with a projection head" in result.output


def test_without_a_preset_gen_train_takes_the_best_for_the_device(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not tiny (the test preset): on a CPU, the cpu recipe; the suite sets GEN_PRESET=tiny."""
    monkeypatch.delenv("GEN_PRESET")
    out = tmp_path / "run"
    run_gen(
        "train", "--data", str(demo_data), "--out", str(out), "--iters", "1", "--batch-size", "4",
        "--device", "cpu", "--quiet", "--db", f"sqlite:///{tmp_path / 'g.db'}",
    )  # fmt: skip
    config = TrainConfig.from_json(torch.load(out / "checkpoint-0000001.pt", weights_only=True)["config"])
    assert config.preset == "cpu"
    assert "tiny (for tests)" in " ".join(run_gen("train", "--help").split())


def test_eval_every_marks_the_best_checkpoint_and_sample_takes_it(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEN_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    database = f"sqlite:///{tmp_path / 'gen.db'}"
    output = run_gen(
        "train", "--data", str(demo_data), "--out", str(out), "--preset", "cpu", "--iters", "4",
        "--batch-size", "4", "--eval-every", "1", "--eval-images", "4", "--keep-checkpoints", "1",
        "--device", "cpu", "--quiet", "--db", database,
    )  # fmt: skip
    best = json.loads((out / "best.json").read_text())
    assert "; best " in output and best["checkpoint"] in output

    engine = make_engine(database)
    with Session(engine) as session:
        recorded = {c.iteration: c.domain_fid for c in session.scalars(select(Checkpoint))}
    assert sorted(recorded) == [1, 2, 3, 4] and all(v is not None for v in recorded.values())
    assert best["iteration"] == min(recorded, key=lambda iteration: (recorded[iteration], -iteration))
    assert best["domain_fid"] == pytest.approx(recorded[best["iteration"]])
    # Pruning keeps the newest (--keep-checkpoints 1) and the best.
    kept = sorted(path.name for path in out.glob("checkpoint-*.pt"))
    assert kept == sorted({"checkpoint-0000004.pt", best["checkpoint"]})
    with open(out / "history.csv", newline="") as file:
        evaluated = [row for row in csv.DictReader(file) if row["domain_fid"]]
    assert [int(row["iteration"]) for row in evaluated] == [1, 2, 3, 4]

    run_gen(
        "sample", "--checkpoint", "best", "--n", "1", "--all-classes", "--out", str(tmp_path / "s"),
        "--device", "cpu", "--quiet", "--db", database,
    )  # fmt: skip
    with Session(engine) as session:
        iterations = set(session.scalars(select(Image.iteration)))
    engine.dispose()
    assert iterations == {best["iteration"]}

    result = CliRunner().invoke(
        cli, ["sample", "--checkpoint", "2" if best["iteration"] != 2 else "3", "--n", "1", "--all-classes",
              "--out", str(tmp_path / "t"), "--db", database]
    )  # fmt: skip
    assert result.exit_code == 1 and "no checkpoint of iteration" in result.output


def test_skipped_training_files_are_each_named_with_why(tmp_path: Path) -> None:
    from gen.phantoms import write_phantoms

    classes = write_phantoms(tmp_path / "data", per_class=4)
    first = tmp_path / "data" / sorted(classes)[0]
    for number in range(12):
        (first / f"notes-{number:02d}.txt").write_text("not an image")
    result = CliRunner().invoke(
        cli,
        ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--iters", "1",
         "--batch-size", "4", "--device", "cpu", "--quiet", "--db", f"sqlite:///{tmp_path / 'gen.db'}"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "skipped 12 files that are not readable images" in result.output
    assert "notes-00.txt: not a PNG, JPEG, BMP, TIFF image" in result.output
    log = tmp_path / "run" / "skipped-images.txt"
    assert f"all listed in {log}" in result.output
    assert len(log.read_text().splitlines()) == 12


def test_a_fade_needs_a_rarity_weighting_to_fade() -> None:
    with pytest.raises(GenError, match="--oversample-rare-fade needs --oversample-rare"):
        TrainConfig(data="d", out="o", preset="cpu", oversample_rare_fade=100).validate()
    with pytest.raises(GenError, match="--oversample-rare-fade must be"):
        TrainConfig(data="d", out="o", oversample_rare=1.0, oversample_rare_fade=-1).validate()
    TrainConfig(data="d", out="o", oversample_rare=1.0, oversample_rare_fade=100).validate()
    TrainConfig(data="d", out="o", oversample_rare=1.0, oversample_rare_fade=0).validate()  # never fades


def test_ada_needs_a_discriminator_that_scores_realness() -> None:
    with pytest.raises(GenError, match="--ada-target needs"):
        TrainConfig(data="d", out="o", loss="began", ada_target=0.6).validate()
    with pytest.raises(GenError, match="--ada-target needs"):  # BEGAN as the preset's objective
        TrainConfig(data="d", out="o", preset="began", ada_target=0.6).validate()
    with pytest.raises(GenError, match="--ada-target must be"):
        TrainConfig(data="d", out="o", ada_target=1.0).validate()
    TrainConfig(data="d", out="o", ada_target=0.6).validate()  # hinge takes it
