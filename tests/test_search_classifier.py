"""gen search --stage classifier: the space, the network, the search end to end (recording,
resume, gen searches show) and gen report --classifier, on tiny budgets and phantom images."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import generators as generator_rows
from db import open_database
from db import reports as report_rows
from db import searches as search_rows
from db.models import Classifier, GanArchitecture, SearchCandidate
from gen.checkpoint import file_sha256
from gen.classifiers import stratified_split
from gen.cli import cli
from gen.image_folder import load_image_folder
from gen.phantoms import write_phantoms
from gen.search import classifier_net
from gen.search.classifier_stage import ClassifierJob, train_candidate
from gen.search.engine import SearchSettings, run_search
from gen.search.space import CLASSIFIER_CELLS, ClassifierGenome, ClassifierSpace
from gen.search.start import prepare_search

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NOTATION = re.compile(r"\{[345], [1-8-]+, cells=[1-6], pool=\[[\d, ]*\]\}")
SMALL = ClassifierGenome(3, "26-6", 1, (1,))
TINY = ["--budget-iters", "2", "--batch-size", "4", "--workers", "1", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classifier-search")
    write_phantoms(root / "train", per_class=5, seed=1, image_size=64)
    return root / "train"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEN_CACHE_DIR", str(folder))
        yield folder


def test_space_samples_valid_genomes_and_rejects_invalid_ones() -> None:
    space, rng = ClassifierSpace(), random.Random(0)
    genomes = [space.sample(rng) for _ in range(300)]
    assert all(space.is_valid(g) for g in genomes)
    assert {g.cells for g in genomes} == set(CLASSIFIER_CELLS)
    assert {g.nodes for g in genomes} == {3, 4, 5}
    assert any(g.pool == () for g in genomes) and any(len(g.pool) > 1 for g in genomes)
    assert all(NOTATION.fullmatch(g.notation()) for g in genomes)
    assert ClassifierGenome(4, "235-66-7", 5, (1,)).notation() == "{4, 235-66-7, cells=5, pool=[1]}"
    for genome in genomes[:20]:
        assert ClassifierGenome.from_dict(json.loads(json.dumps(genome.to_dict()))) == genome
    for bad in (
        ClassifierGenome(4, "235-66-7", 7, ()),  # too many cells
        ClassifierGenome(4, "235-66-7", 2, (3,)),  # pooling after a cell that is not there
        ClassifierGenome(4, "235-66-7", 5, (1, 2, 3, 4, 5)),  # 64 -> 2: more than MAX_POOLS
        ClassifierGenome(4, "235-66-7", 3, (2, 1)),  # unsorted
        ClassifierGenome(3, "55-5", 3, ()),  # the output is never reached
        ClassifierGenome(3, "29-2", 3, ()),  # no such operation
    ):
        assert not space.is_valid(bad), bad


def test_mutation_changes_each_part_at_its_rate_and_always_gives_a_valid_child() -> None:
    space, rng, p = ClassifierSpace(), random.Random(1), 0.2
    parent = ClassifierGenome(4, "235-66-7", 3, (1,))
    draws = [space.mutate_once(parent, p, rng) for _ in range(4000)]
    cells_changed = sum(d.cells != parent.cells for d in draws) / len(draws)
    assert abs(cells_changed - p) < 0.03
    # Pool flag of cell 2 (kept by every cell count >= 2): flips with p, or vanishes/appears
    # only through a change of the number of cells.
    same_cells = [d for d in draws if d.cells == parent.cells]
    flag_changed = sum((2 in d.pool) != (2 in parent.pool) for d in same_cells) / len(same_cells)
    assert abs(flag_changed - p) < 0.03
    same_nodes = [d for d in draws if d.nodes == parent.nodes]
    first_digit = sum(d.code[0] != parent.code[0] for d in same_nodes) / len(same_nodes)
    assert abs(first_digit - p) < 0.03
    children = [space.mutate(parent, 0.05, rng) for _ in range(200)]
    assert all(space.is_valid(c) and c != parent for c in children)


def test_network_classifies_64x64_images_and_pools_where_the_genome_says() -> None:
    genome = ClassifierGenome(4, "235-66-7", 5, (1,))
    model = classifier_net.build(genome, 3, seed=0).eval()
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert model(images).shape == (2, 3)
    assert model.body(images).shape == (2, 32, 32, 32)  # one pooling, 32 channels
    pooled = classifier_net.build(ClassifierGenome(4, "235-66-7", 5, (1, 2, 5)), 3, seed=0).eval()
    assert pooled.body(images).shape == (2, 32, 8, 8)
    again = classifier_net.build(genome, 3, seed=0)
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    rebuilt = classifier_net.SearchedClassifierConfig.from_dict(model.config.to_dict())
    assert rebuilt == model.config


def test_stratified_split_holds_out_every_class() -> None:
    labels = torch.tensor([0] * 5 + [1] * 10 + [2] * 2)
    train, validation = stratified_split(labels, 0.2, seed=3)
    assert sorted(train.tolist() + validation.tolist()) == list(range(len(labels)))
    assert torch.bincount(labels[validation]).tolist() == [1, 2, 1]
    again = stratified_split(labels, 0.2, seed=3)
    assert torch.equal(again[1], validation)


def test_a_class_of_one_image_is_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    write_phantoms(tmp_path / "data", per_class=2, seed=1, image_size=64)
    lonely = sorted((tmp_path / "data").iterdir())[0]
    sorted(lonely.iterdir())[0].unlink()
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    result = CliRunner().invoke(
        cli,
        ["search", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "s"), "--stage", "classifier",
         "--population", "2", "--cycles", "0", "--sample", "1", "--db", url, *TINY],
    )  # fmt: skip
    assert result.exit_code == 1 and "at least 2 images of every class" in result.output
    assert _counts(url) == (0, 0, 0) and not (tmp_path / "s").exists()


def _counts(url: str) -> tuple[int, int, int]:
    engine = open_database(url)
    with Session(engine) as session:
        return tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (SearchCandidate, Classifier, GanArchitecture)
        )


def test_classifier_search_records_candidates_as_classifiers_and_resumes(
    data_dir: Path, tmp_path: Path, cache: Path
) -> None:
    url, out = f"sqlite:///{tmp_path / 'gen.db'}", tmp_path / "search"
    engine = open_database(url)
    settings = SearchSettings(
        data=str(data_dir),
        out=str(out),
        stage="classifier",
        population=3,
        cycles=1,
        sample=2,
        budget_iters=2,
        batch_size=4,
    )
    run = prepare_search(settings, engine)

    def stop_after_four(evaluated: object, classifier_id: int | None) -> None:
        if run.evolution.finished == 4:
            raise KeyboardInterrupt  # as Ctrl-C: the fourth candidate is recorded, no more

    first = run_search(run, engine, workers=1, progress=False, on_candidate=stop_after_four)
    assert first.interrupted and first.finished == 4
    with Session(engine) as session:
        before = {c.step: c for c in search_rows.search_candidates(session, first.search_id)}
    assert sorted(before) == [0, 1, 2, 3]
    files = {step: Path(queries_path(engine, c.classifier_id)) for step, c in before.items()}
    stamps = {step: path.stat().st_mtime_ns for step, path in files.items()}

    resumed = CliRunner().invoke(cli, ["search", "--out", str(out), "--resume", "--db", url, *TINY])
    assert resumed.exit_code == 0, resumed.output
    assert "search 1: 4 of 6 candidates done" in resumed.output
    assert re.search(
        r"search 1 done: 6 candidates; best \{.*\} accuracy [01]\.\d{4} \(classifier \d+\)", resumed.output
    )
    assert _counts(url) == (6, 6, 0)  # no finished candidate ran again; no model rows
    with Session(engine) as session:
        after = {c.step: c for c in search_rows.search_candidates(session, first.search_id)}
    for step, candidate in before.items():
        assert after[step].classifier_id == candidate.classifier_id
        assert files[step].stat().st_mtime_ns == stamps[step]
    for candidate in after.values():
        assert candidate.gan_id is None and candidate.classifier_id is not None
        assert candidate.fitness == pytest.approx(1 - candidate.accuracy)
        assert candidate.classifier_architecture["kind"] == "searched_classifier"
    assert (out / "fitness.png").is_file()

    shown = CliRunner().invoke(cli, ["searches", "show", "1", "--db", url])
    assert shown.exit_code == 0, shown.output
    assert len(NOTATION.findall(shown.output)) == 6
    assert "--classifier" in shown.output
    listed = CliRunner().invoke(cli, ["searches", "list", "--db", url])
    assert "classifier" in listed.output and "6/6" in listed.output
    models = CliRunner().invoke(cli, ["models", "list", "--db", url])
    assert models.exit_code == 0 and "no models yet" in models.output
    kept = CliRunner().invoke(
        cli, ["classifiers", "delete", str(after[0].classifier_id), "--yes", "--db", url]
    )
    assert kept.exit_code == 1 and "is a candidate of search 1" in kept.output
    assert _counts(url)[1] == 6


def queries_path(engine: object, classifier_id: int) -> str:
    from db import classifiers as classifier_rows

    with Session(engine) as session:
        return classifier_rows.get_classifier(session, classifier_id).path


def test_classifier_search_on_both_databases(data_dir: Path, tmp_path: Path, database_url: str) -> None:
    added = CliRunner().invoke(cli, ["data", "add", "cells", str(data_dir), "-q", "--db", database_url])
    assert added.exit_code == 0, added.output
    result = CliRunner().invoke(
        cli,
        [
            "search", "--data", str(data_dir), "--out", str(tmp_path / "s"), "--stage", "classifier",
            "--population", "2", "--cycles", "0", "--sample", "1", "--db", database_url, *TINY,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _counts(database_url)[:2] == (2, 2)
    shown = CliRunner().invoke(cli, ["searches", "show", "1", "--db", database_url])
    assert len(NOTATION.findall(shown.output)) == 2
    # Each candidate's classifier is linked to the registered data set of its images.
    listed = CliRunner().invoke(cli, ["classifiers", "list", "--db", database_url])
    assert [line.split()[1] for line in listed.output.splitlines()[1:]] == ["cells", "cells"]


def test_report_uses_the_recorded_classifier(
    data_dir: Path, tmp_path: Path, cache: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))  # no Inception: not needed here
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    write_phantoms(tmp_path / "test", per_class=4, seed=2, image_size=64)
    trained = CliRunner().invoke(
        cli,
        ["train", "--data", str(data_dir), "--out", str(tmp_path / "run"), "--iters", "2",
         "--batch-size", "4", "--db", url, "-q"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    engine = open_database(url)
    # A small searched classifier, recorded the way a classifier search records its candidates
    # (a whole search's random genomes can be six full-resolution cells: slow on two cores).
    data = load_image_folder(data_dir)
    weights = tmp_path / "found" / "classifier.pt"
    model, accuracy, iterations = train_candidate(
        ClassifierJob(0, str(data_dir), str(weights.parent), SMALL.to_dict(), 2, None, 4, 0.2, 0, "cpu", 1),
        data,
    )
    weights.parent.mkdir()
    classifier_net.save(model, weights)
    with Session(engine) as session:
        classifier_id, _ = search_rows.record_classifier_candidate(
            session,
            search_id=search_rows.create_search(
                session, stage="classifier", dataset_path=str(data_dir), dataset_fingerprint=data.fingerprint,
                settings={}, seed=0,
            ),
            step=0,
            parent_step=None,
            weights=(weights, file_sha256(weights)),
            architecture=model.config.to_dict() | {"classes": list(data.class_names)},
            accuracy=accuracy,
            data_path=data_dir,
            data_fingerprint=data.fingerprint,
            budget={"iterations": 2, "trained": iterations},
            seconds=0.0,
            worker=None,
        )  # fmt: skip
    candidate = SimpleNamespace(classifier_id=classifier_id)
    report_args = [
        "report",
        "--real",
        str(tmp_path / "test"),
        "--n",
        "4",
        "--histogram-n",
        "4",
        "--db",
        url,
        "-q",
    ]

    result = CliRunner().invoke(
        cli, [*report_args, "--out", str(tmp_path / "report"), "--classifier", str(candidate.classifier_id)]
    )
    assert result.exit_code == 0, result.output
    assert "accuracy_recorded_classifier" in result.output and "accuracy_real_only" in result.output
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["settings"]["utility_classifier"] == candidate.classifier_id
    recorded = next(f for f in data["figures"] if f["metric"] == "accuracy_recorded_classifier")
    assert recorded["settings"]["classifier"] == candidate.classifier_id
    with Session(engine) as session:
        rows = report_rows.latest_report(session, generator_rows.latest_model_id(session))
    utility_rows = [row for row in rows if row.metric.startswith("accuracy_real")]
    assert utility_rows and all(
        row.settings["utility_classifier"] == candidate.classifier_id for row in utility_rows
    )

    weights = Path(queries_path(engine, candidate.classifier_id))
    weights.write_bytes(weights.read_bytes() + b"x")
    changed = CliRunner().invoke(
        cli, [*report_args, "--out", str(tmp_path / "r2"), "--classifier", str(candidate.classifier_id)]
    )
    assert changed.exit_code == 1 and "SHA-256 differs" in changed.output
    assert not (tmp_path / "r2").exists()
