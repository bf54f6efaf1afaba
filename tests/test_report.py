"""gen report end to end: figures in the database, report.json/report.md/plots on disk."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sqlalchemy.orm import Session

from db import classifiers as classifier_rows
from db import generators as generator_rows
from db import open_database
from db import reports as report_rows
from gen.cli import cli
from gen.image_folder import load_image_folder
from gen.metrics import domain, inception, normalised
from gen.metrics.figures import ReportSettings
from gen.phantoms import write_phantoms
from gen.report import make_report, report_steps, table_rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    root = tmp_path_factory.mktemp("report")
    write_phantoms(root / "train", per_class=12, seed=1)
    write_phantoms(root / "test", per_class=10, seed=2)
    url = f"sqlite:///{root / 'gen.db'}"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--data",
            str(root / "train"),
            "--out",
            str(root / "run"),
            "--iters",
            "2",
            "--batch-size",
            "4",
            "--db",
            url,
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    return {"root": root, "url": url}


def run_report(trained: dict, *args: str, env: dict[str, str] | None = None) -> object:
    root = trained["root"]
    return CliRunner(env={"GEN_CACHE_DIR": str(root / "cache"), **(env or {})}).invoke(
        cli,
        [
            "report",
            "--real",
            str(root / "test"),
            "--n",
            "12",
            "--histogram-n",
            "10",
            "--db",
            trained["url"],
            "-q",
            *args,
        ],
    )


def test_report_writes_rows_files_and_a_table(trained: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))  # Inception weights absent
    out = tmp_path / "report"
    result = run_report(trained, "--out", str(out), "--utility", "--gradcam")
    assert result.exit_code == 0, result.output
    assert "histogram_kl" in result.output and "accuracy_real_plus_synthetic" in result.output
    # No weights: said in one line, no FID figure, everything else still there.
    assert "pt_inception-2015-12-05-6726825d.pth" in result.output
    data = json.loads((out / "report.json").read_text())
    metrics = {(f["metric"], f["class_name"]) for f in data["figures"]}
    assert ("fid", None) not in metrics
    classes = data["classes"]
    for name in classes:
        assert ("histogram_kl", name) in metrics and ("histogram_kl_floor", name) in metrics
        assert ("colour_spread", name) in metrics and ("colour_spread_floor", name) in metrics
        assert (out / f"histogram-{name}.png").stat().st_size > 1000
    assert {("domain_kid", None), ("domain_is", None), ("accuracy_real_only", None)} <= metrics
    # Domain KID beside its real-vs-real floor, overall and per class, both on z-scored features.
    for where in (None, *classes):
        assert ("domain_kid", where) in metrics and ("domain_kid_floor", where) in metrics
    for figure in data["figures"]:
        if figure["metric"] in ("domain_kid", "domain_kid_floor"):
            assert figure["settings"]["features"] == "z-scored with real training statistics"
    # 12 synthetic images per class cannot give a stable 128-dimensional FID: said, not printed.
    assert ("domain_fid", classes[0]) not in metrics
    assert any("too few for a stable estimate" in note for note in data["notes"])
    assert (out / "confusion-real_plus_synthetic.png").is_file()
    assert "| histogram_kl |" in (out / "report.md").read_text()
    # Near copies, per class and overall, each class with its grid of closest pairs.
    for where in (None, *classes):
        assert ("near_copy_share", where) in metrics
    shares = [f for f in data["figures"] if f["metric"] == "near_copy_share"]
    assert all(0 <= f["value"] <= 1 for f in shares)
    for name in classes:
        assert (out / f"near-copies-{name}.png").is_file()
    # The two-sample test, per class and overall, each class with its grid of extremes.
    for where in (None, *classes):
        assert ("two_sample_auc", where) in metrics
    assert all(0 <= f["value"] <= 1 for f in data["figures"] if f["metric"] == "two_sample_auc")
    assert "two_sample_auc" in result.output
    for name in classes:
        assert (out / f"two-sample-{name}.png").is_file()
    # Grad-CAM of the real-only utility classifier: a grid per class, the mean maps, similarity rows.
    for name in classes:
        assert (out / f"gradcam-{name}.png").is_file()
    assert (out / "gradcam-mean-maps.png").is_file()
    similarities = [f for f in data["figures"] if f["metric"] == "gradcam_similarity"]
    assert similarities and all(-1 <= f["value"] <= 1 for f in similarities)

    engine = open_database(trained["url"])
    with Session(engine) as session:
        model_id = generator_rows.latest_model_id(session)
        rows = report_rows.latest_report(session, model_id)
        accuracy = next(f for f in data["figures"] if f["metric"] == "domain_classifier_accuracy")
        classifier = classifier_rows.latest_classifier(session, accuracy["settings"]["fingerprint"])
    stored = {(row.metric, row.class_name): row.value for row in rows}
    for figure in data["figures"]:
        assert stored[(figure["metric"], figure["class_name"])] == pytest.approx(figure["value"])
    # The domain classifier is cached on disk and recorded once, with its accuracy.
    assert classifier is not None and classifier.accuracy == pytest.approx(accuracy["value"])
    assert Path(classifier.path).is_file()

    shown = CliRunner().invoke(cli, ["models", "show", str(model_id), "--db", trained["url"]])
    assert shown.exit_code == 0 and "latest report" in shown.output and "histogram_kl" in shown.output


def test_domain_fid_and_kid_come_beside_their_floors(trained: dict, tmp_path: Path, monkeypatch) -> None:
    # More than 128 images (the domain feature dimension) per side overall, so FIDs get numbers;
    # through the Python API, to train the domain classifier for one epoch only.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.setenv("GEN_CACHE_DIR", str(tmp_path / "cache"))
    write_phantoms(tmp_path / "train", per_class=33, seed=3)
    write_phantoms(tmp_path / "test", per_class=33, seed=4)
    settings = ReportSettings(n_per_class=33, histogram_n=10, classifier_epochs=1, kid_subsets=10)
    out = tmp_path / "report"
    report = make_report(
        trained["root"] / "run", tmp_path / "test", tmp_path / "train", out, settings=settings, progress=False
    )
    data = json.loads((out / "report.json").read_text())
    assert data["figures"] == [asdict(figure) for figure in report.figures]
    figures = {(f["metric"], f["class_name"]): f for f in data["figures"]}
    rows = [(metric, where) for metric, where, _ in table_rows(report)]
    markdown = (out / "report.md").read_text()
    for metric in ("domain_fid", "domain_kid"):
        figure, floor = figures[(metric, None)], figures[(f"{metric}_floor", None)]
        assert np.isfinite(figure["value"]) and np.isfinite(floor["value"])
        assert figure["settings"]["features"] == "z-scored with real training statistics"
        assert floor["settings"]["features"] == figure["settings"]["features"]
        assert floor["settings"]["between"] == "real train and real test"
        # Beside each other: in the printed table and in report.md.
        assert rows.index((f"{metric}_floor", "overall")) == rows.index((metric, "overall")) + 1
        assert f"| {metric} | overall | {figure['value']:.4f} |\n| {metric}_floor | overall |" in markdown
    assert figures[("domain_fid_floor", None)]["value"] > 0
    # Per class there are 33 images a side: too few for a 128-dimensional FID, floor included.
    assert ("domain_fid_floor", data["classes"][0]) not in figures
    assert any(
        note.startswith(f"domain_fid_floor {data['classes'][0]}: not computed") for note in data["notes"]
    )

    # The floor is the training images against the held-out ones, z-scored with the training
    # images' statistics, measured with the report's own (cached) domain classifier.
    classifier_path = figures[("domain_classifier_accuracy", None)]["settings"]["classifier"]
    classifier = domain.load_classifier(classifier_path)
    standardiser, train_features = normalised.domain_reference(
        classifier, load_image_folder(tmp_path / "train").images, "cpu"
    )
    test_features, _ = domain.domain_features_and_probabilities(
        classifier, load_image_folder(tmp_path / "test").images
    )
    fid_floor = normalised.normalised_fid(train_features, test_features, standardiser)
    assert figures[("domain_fid_floor", None)]["value"] == pytest.approx(fid_floor, rel=1e-6)
    kid_floor, _ = normalised.normalised_kid(train_features, test_features, standardiser, 10, 1000, 0)
    assert figures[("domain_kid_floor", None)]["value"] == pytest.approx(kid_floor, rel=1e-6, abs=1e-9)


def test_report_refuses_to_replace_without_force(trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = run_report(trained, "--out", str(out))
    assert result.exit_code == 1 and "--force" in result.output
    assert (out / "mine.txt").read_text() == "keep me"


def test_report_uses_given_inception_weights(trained: dict, tmp_path: Path) -> None:
    # A randomly initialised Inception, named as such: the real code path, not the real weights.
    weights = tmp_path / "random_inception_for_tests.pth"
    torch.save(inception.random_inception_for_tests().state_dict(), weights)
    out = tmp_path / "with-fid"
    result = run_report(trained, "--out", str(out), "--fid-weights", str(weights))
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "report.json").read_text())["figures"]
    fid = [f for f in figures if f["metric"] == "fid"]
    assert len(fid) == 1 and fid[0]["value"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "99"], "no model 99"),
        (["--fid-weights", "/nonexistent/weights.pth"], "does not exist"),
        (["--train", "REAL"], "same images"),
    ],
)
def test_report_bad_input(trained: dict, tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(trained["root"] / "test") if a == "REAL" else a for a in args]
    result = run_report(trained, "--out", str(tmp_path / "r"), *args)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_report_on_a_folder_missing_a_class(trained: dict, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    write_phantoms(partial, per_class=3, seed=9)
    victim = sorted(partial.iterdir())[0]
    for file in victim.iterdir():
        file.unlink()
    victim.rmdir()
    result = CliRunner().invoke(
        cli, ["report", "--real", str(partial), "--db", trained["url"], "--out", str(tmp_path / "r"), "-q"]
    )
    assert result.exit_code == 1 and "has no class" in result.output


def test_every_step_shows_progress_on_stderr_unless_quiet(trained: dict, tmp_path: Path) -> None:
    """`gen report` names each step as it runs (stderr, so stdout stays the table); -q hides it."""
    root = trained["root"]
    arguments = ["report", "--real", str(root / "test"), "--n", "12", "--histogram-n", "10"]
    arguments += ["--db", trained["url"], "--device", "cpu"]
    runner = CliRunner(env={"GEN_CACHE_DIR": str(root / "cache"), "TORCH_HOME": str(tmp_path / "none")})
    shown = runner.invoke(cli, [*arguments, "--out", str(tmp_path / "shown")])
    assert shown.exit_code == 0, shown.output
    for step in report_steps(ReportSettings(), has_train=True, has_weights=False):
        assert f"report: {step}" in shown.stderr, step
        assert f"report: {step}" not in shown.stdout
    quiet = runner.invoke(cli, [*arguments, "--out", str(tmp_path / "quiet"), "-q"])
    assert quiet.exit_code == 0, quiet.output
    assert "report:" not in quiet.stderr and "it/s" not in quiet.stderr
