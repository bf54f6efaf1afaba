"""gen.classifiers: gen classifiers train (simple, resnet18, searched:ID, --weights), gen classify,
gen classifiers list/show, gen report --classifier NAME and a classifiers train job, on phantom
images from gen demo-data; recording on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.classifiers import get_classifier, record_classifier
from db.jobs import JobInfo
from db.models import Classifier
from db.session import make_engine, open_database
from gen.checkpoint import file_sha256
from gen.classifiers import Prediction, csv_cell, write_predictions_csv
from gen.cli import cli
from gen.jobs import WorkerSettings, child_arguments
from gen.search.classifier_net import SearchedClassifierConfig
from gen.search.space import ClassifierGenome

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = ["phantom_binucleate", "phantom_granular", "phantom_large_lobed", "phantom_small_round"]
FAST = ["--epochs", "1", "--batch-size", "8", "--device", "cpu", "-q"]


def gen(url: str, *arguments: str) -> Result:
    return CliRunner().invoke(cli, [*arguments, "--db", url])


def ok(result: Result) -> str:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def user_error(result: Result) -> str:
    """One line `Error: ...`, exit status 1, no traceback; returns the line."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.strip().splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and result.output.strip().endswith(errors[0]), result.output
    return errors[0]


def classifier_rows(url: str) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(Classifier)) or 0
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gen demo-data's output, 4 images per class (3 to train on, 1 held out)."""
    folder = tmp_path_factory.mktemp("classifiers") / "phantoms"
    result = CliRunner().invoke(cli, ["demo-data", "--out", str(folder), "--per-class", "4"])
    assert result.exit_code == 0, result.output
    return folder


def test_train_and_classify_demo_data(database_url: str, phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "weights"
    trained = ok(
        gen(database_url, "classifiers", "train", "--data", str(phantoms), "--arch", "simple",
            "--name", "cells", "--out", str(out), *FAST)
    )  # fmt: skip
    lines = trained.splitlines()
    assert lines[0] == "classifier 1 cells"
    assert lines[1].startswith("trained classifier 1 (simple, 1 epoch): validation accuracy ")
    assert "on 4 held-out images" in lines[1]

    engine = open_database(database_url)
    try:
        with Session(engine) as session:
            row = get_classifier(session, "cells")
    finally:
        engine.dispose()
    assert (row.id, row.name, row.dataset) == (1, "cells", "phantoms")
    assert Path(row.path) == (out / "cells.pt").resolve() and row.sha256 == file_sha256(Path(row.path))
    assert row.architecture["kind"] == "simple" and row.architecture["classes"] == CLASSES
    assert {key: row.settings[key] for key in ("arch", "epochs", "optimizer", "learning_rate")} == {
        "arch": "simple",
        "epochs": 1,
        "optimizer": "adam",
        "learning_rate": 1e-3,
    }
    assert (row.settings["train_images"], row.settings["validation_images"]) == (12, 4)
    assert [sorted(epoch) for epoch in row.history] == [
        ["epoch", "loss", "train_accuracy", "validation_accuracy"]
    ]
    assert sorted(row.per_class_f1) == CLASSES and all(0 <= f1 <= 1 for f1 in row.per_class_f1.values())
    assert len(row.confusion_matrix) == 4 and sum(map(sum, row.confusion_matrix)) == 4
    assert row.accuracy == sum(row.confusion_matrix[i][i] for i in range(4)) / 4

    listed = ok(gen(database_url, "classifiers", "list")).splitlines()[1].split()
    assert (listed[0], listed[1], listed[5], listed[6]) == ("1", "phantoms", "cells", "simple")
    shown = ok(gen(database_url, "classifiers", "show", "cells"))
    for part in ("classifier 1 cells", "history per epoch", "F1 per class", "confusion matrix", "optimizer"):
        assert part in shown

    table = tmp_path / "labels.csv"
    labelled = ok(
        gen(database_url, "classify", str(phantoms), "--classifier", "cells", "--csv", str(table), "-q")
    )
    assert labelled.startswith(f"labelled 16 images with classifier cells into {table}")
    with open(table, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["file", "label", "probability"] and len(rows) == 17
    assert {Path(file).parent.name for file, _, _ in rows[1:]} == set(CLASSES)
    assert all(label in CLASSES and 0.25 <= float(p) <= 1 for _, label, p in rows[1:])

    one = next((phantoms / CLASSES[0]).iterdir())
    printed = ok(gen(database_url, "classify", str(one), "--classifier", "1", "--device", "cpu", "-q"))
    file, label, probability = printed.strip().split("\t")
    assert (file, label) == (str(one), next(r[1] for r in rows if r[0] == str(one)))
    assert abs(float(probability) - float(next(r[2] for r in rows if r[0] == str(one)))) < 1e-3


def test_mistakes_are_one_sentence_and_leave_nothing(phantoms: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    out = tmp_path / "weights"
    train = ["classifiers", "train", "--data", str(phantoms), "--out", str(out), *FAST]
    assert "--arch 'vgg' must be simple" in user_error(gen(url, *train, "--arch", "vgg"))
    assert "all digits" in user_error(gen(url, *train, "--name", "12"))
    assert "neither a folder nor a registered data set" in user_error(
        gen(url, "classifiers", "train", "--data", "nowhere", *FAST)
    )
    assert "not a PyTorch weights file" in user_error(
        gen(
            url,
            *train,
            "--arch",
            "resnet18",
            "--weights",
            str(phantoms / CLASSES[0] / "phantom_binucleate_0001.png"),
        )
    )
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    assert "does not hold weights for this resnet18" in user_error(
        gen(url, *train, "--arch", "resnet18", "--weights", str(tmp_path / "other.pt"))
    )
    assert classifier_rows(url) == 0 and not any(out.glob("*.pt"))

    ok(gen(url, *train, "--name", "cells"))
    assert "already called 'cells'" in user_error(gen(url, *train, "--name", "cells"))
    assert sorted(p.name for p in out.iterdir()) == ["cells.pt"] and classifier_rows(url) == 1

    table = tmp_path / "labels.csv"
    table.write_text("mine\n")
    assert "exists already" in user_error(
        gen(url, "classify", str(phantoms), "--classifier", "cells", "--csv", str(table))
    )
    assert table.read_text() == "mine\n"
    assert "no classifier 'dogs'" in user_error(gen(url, "classify", str(phantoms), "--classifier", "dogs"))
    assert "does not exist" in user_error(
        gen(url, "classify", str(tmp_path / "gone.png"), "--classifier", "cells")
    )
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    fresh = tmp_path / "fresh.csv"
    result = gen(url, "classify", str(junk), "--classifier", "cells", "--csv", str(fresh), "-q")
    assert "no readable image to label" in user_error(result) and "notes.txt" in result.output
    assert not fresh.exists() and not list(tmp_path.glob(".fresh.csv*"))


def test_csv_cells_that_look_like_formulas_are_quoted(tmp_path: Path) -> None:
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert csv_cell(f"{start}1+1") == f"'{start}1+1"
    assert csv_cell("cells/a.png") == "cells/a.png" and csv_cell("") == ""
    path = tmp_path / "out.csv"
    written = write_predictions_csv(
        [Prediction('=HYPERLINK("x").png', "@class", 0.5), Prediction("-1.png", "plain", 1.0)], path
    )
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert written == 2
    assert rows[1:] == [['\'=HYPERLINK("x").png', "'@class", "0.500000"], ["'-1.png", "plain", "1.000000"]]


def test_resnet18_trains_from_nothing_or_local_weights(phantoms: Path, tmp_path: Path) -> None:
    from gen._torchvision import torchvision

    url = f"sqlite:///{tmp_path / 'gen.db'}"
    out = tmp_path / "weights"
    ok(
        gen(
            url,
            "classifiers",
            "train",
            "--data",
            str(phantoms),
            "--arch",
            "resnet18",
            "--out",
            str(out),
            *FAST,
        )
    )
    # An ImageNet-shaped state dict (1000 classes), as torchvision's resnet18-f37072fd.pth is.
    imagenet = torchvision.models.resnet18(weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")
    result = gen(
        url, "classifiers", "train", "--data", str(phantoms), "--arch", "resnet18", "--optimizer", "sgd",
        "--lr", "0.01", "--weights", str(tmp_path / "resnet18.pth"), "--out", str(out), *FAST,
    )  # fmt: skip
    ok(result)
    assert "head in" in result.output and "another number of classes" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["classifier-1.pt", "classifier-2.pt"]
    engine = open_database(url)
    with Session(engine) as session:
        first, second = get_classifier(session, 1), get_classifier(session, 2)
    engine.dispose()
    assert first.architecture == {
        "kind": "torchvision", "name": "resnet18", "num_classes": 4, "feature_dim": 512, "classes": CLASSES,
    }  # fmt: skip
    assert second.settings["weights"]["sha256"] == file_sha256(tmp_path / "resnet18.pth")
    assert second.settings["optimizer"] == "sgd"
    # The backbone started from the file: its first convolution moved only one step of SGD away.
    trained = torch.load(second.path, weights_only=True)["state_dict"]["body.conv1.weight"]
    assert torch.allclose(trained, imagenet.conv1.weight, atol=0.05)
    labelled = ok(gen(url, "classify", str(phantoms), "--classifier", "2", "-q"))
    assert len(labelled.splitlines()) == 16


def test_searched_architecture_trains_afresh(phantoms: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    engine = open_database(url)
    genome = ClassifierGenome(3, "26-6", 1, (1,))
    with Session(engine) as session:
        searched = record_classifier(
            session,
            dataset_fingerprint="f" * 64,
            path=str(tmp_path / "candidate.pt"),
            sha256="0" * 64,
            architecture=SearchedClassifierConfig(4, genome).to_dict(),
            accuracy=0.5,
        )
        simple = record_classifier(
            session,
            dataset_fingerprint="f" * 64,
            path=str(tmp_path / "domain.pt"),
            sha256="0" * 64,
            architecture={"num_classes": 4, "channels": [32, 32, 64, 128], "dropout": 0.2},
            accuracy=0.5,
        )
    engine.dispose()
    train = ["classifiers", "train", "--data", str(phantoms), "--out", str(tmp_path / "w"), *FAST]
    ok(gen(url, *train, "--arch", f"searched:{searched}", "--name", "found"))
    engine = open_database(url)
    with Session(engine) as session:
        row = get_classifier(session, "found")
    engine.dispose()
    assert row.architecture["kind"] == "searched_classifier"
    assert row.architecture["notation"] == genome.notation() and row.settings["searched_from"] == searched
    assert "searched {3, 26-6, cells=1, pool=[1]}" in ok(gen(url, "classifiers", "list"))
    assert (
        f"classifier {simple} is a simple one; --arch searched:ID takes a classifier found by"
        in user_error(gen(url, *train, "--arch", f"searched:{simple}"))
    )
    assert "no classifier 9" in user_error(gen(url, *train, "--arch", "searched:9"))


@pytest.mark.slow
def test_report_accepts_a_trained_classifier_by_name(
    phantoms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))  # no Inception: not needed here
    monkeypatch.setenv("GEN_CACHE_DIR", str(tmp_path / "cache"))
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    ok(gen(url, "train", "--data", str(phantoms), "--out", str(tmp_path / "run"), "--iters", "2",
           "--batch-size", "4", "--device", "cpu", "-q"))  # fmt: skip
    ok(
        gen(
            url,
            "classifiers",
            "train",
            "--data",
            "phantoms",
            "--name",
            "cells",
            "--out",
            str(tmp_path / "w"),
            *FAST,
        )
    )
    held_out = tmp_path / "held-out"
    ok(CliRunner().invoke(cli, ["demo-data", "--out", str(held_out), "--per-class", "2", "--seed", "5"]))
    result = gen(
        url, "report", "--real", str(held_out), "--n", "4", "--histogram-n", "4",
        "--out", str(tmp_path / "r"), "--classifier", "cells", "--device", "cpu", "-q",
    )  # fmt: skip
    assert "accuracy_recorded_classifier" in ok(result)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["settings"]["utility_classifier"] == 1


@pytest.mark.slow
def test_a_classifiers_train_job_gets_the_workers_device(phantoms: Path, tmp_path: Path, monkeypatch) -> None:
    arguments = ["classifiers", "train", "--data", str(phantoms), "--epochs", "1"]
    job = JobInfo(
        **{field: None for field in JobInfo.__dataclass_fields__} | {"arguments": arguments, "attempts": 1}
    )
    argv, _ = child_arguments(job, WorkerSettings(device="cpu"), tmp_path)
    assert argv == [*arguments, "--device", "cpu"]

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    command = ["classifiers", "train", "--data", str(phantoms), "--epochs", "1", "--name", "queued", "-q"]
    submitted = ok(CliRunner().invoke(cli, ["jobs", "submit", "--db", url, "--", *command]))
    assert submitted.startswith("job 1 queued: gen classifiers train")
    worked = ok(gen(url, "worker", "--once", "--device", "cpu", "--heartbeat", "1", "--stale-after", "30"))
    assert worked.splitlines()[-1] == "worker ran 1 job"
    log = ok(gen(url, "jobs", "logs", "1"))
    assert "--device cpu" in log.splitlines()[0] and "classifier 1 queued" in log
    assert (tmp_path / "classifiers" / "queued.pt").is_file() and classifier_rows(url) == 1


def test_a_class_of_one_image_is_one_sentence(tmp_path: Path) -> None:
    CliRunner().invoke(cli, ["demo-data", "--out", str(tmp_path / "data"), "--per-class", "2"])
    lonely = sorted((tmp_path / "data").iterdir())[0]
    sorted(lonely.iterdir())[0].unlink()
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    result = gen(
        url, "classifiers", "train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "w"), *FAST
    )
    assert user_error(result) == (
        "Error: a classifier needs at least 2 images of every class (train and validation)."
    )
    assert classifier_rows(url) == 0 and not (tmp_path / "w").exists()
