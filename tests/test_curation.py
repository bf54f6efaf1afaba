"""gen.curation: scored candidates, the best kept, the rest counted and never written; the
records on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from db import open_database
from db.dump import dump_sql
from db.models import Curation, Image
from gen.checkpoint import load_checkpoint, load_for_sampling
from gen.cli import cli
from gen.curation import (
    BELOW_CONFIDENCE,
    CLASSIFIER_SEED,
    NEAR_COPY,
    NOT_AMONG_BEST,
    CurationSettings,
    Curator,
    combined_rank,
    curated_class,
    held_out_split,
)
from gen.errors import GenError
from gen.phantoms import PHANTOM_CLASSES, write_phantoms
from gen.sample import generate, load_generator, sample
from gen.train import train
from gen.train_config import TrainConfig

CLASS_NAMES = tuple(sorted(PHANTOM_CLASSES))
FAST = CurationSettings(keep_best=0.5, classifier_epochs=1)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny model after 2 iterations on 8 phantoms per class; one classifier cache for the module."""
    root = tmp_path_factory.mktemp("curation")
    write_phantoms(root / "data", per_class=8)
    config = TrainConfig(
        data=str(root / "data"),
        out=str(root / "run"),
        preset="tiny",
        iterations=2,
        batch_size=8,
        checkpoint_every=1000,
        device="cpu",
    )
    checkpoint = train(config, progress=False).checkpoint
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEN_CACHE_DIR", str(root / "cache"))
        yield checkpoint


def curate(checkpoint: Path, out: Path, n: int, settings: CurationSettings = FAST, **options):
    return sample(checkpoint, out, n, device="cpu", progress=False, curation=settings, **options)


def candidate_scores(checkpoint: Path, label: int, count: int, seed: int = 0, batch_size: int = 256):
    """Every candidate's scores, computed here in one batch, as the curator would."""
    state = load_checkpoint(checkpoint)
    curator = Curator(state, FAST, torch.device("cpu"), progress=False)
    generator = load_generator(load_for_sampling(state), torch.device("cpu"))
    pixels = generate(generator, seed, label, list(range(count)), torch.device("cpu"))
    return curator.score(pixels, label), pixels


def file_pixels(path: Path) -> torch.Tensor:
    with PILImage.open(path) as opened:
        return torch.from_numpy(np.array(opened.convert("RGB"))).permute(2, 0, 1)


def test_keep_best_keeps_the_best_ranked_and_records_why_the_rest_went(
    trained: Path, tmp_path: Path, database_url: str
) -> None:
    engine = open_database(database_url)
    result = curate(trained, tmp_path / "out", 3, database=engine, seed=4)
    # ceil(3 / 0.5) = 6 candidates per class; 3 kept, 3 rejected as not among the best.
    for name in CLASS_NAMES:
        record = result.curation[name]
        assert (record.candidates, record.kept, record.rejected) == (6, 3, {NOT_AMONG_BEST: 3})
        assert len(list((tmp_path / "out" / name).glob("*.png"))) == 3  # no rejected image written

    label = 1
    name = CLASS_NAMES[label]
    scores, pixels = candidate_scores(trained, label, 6, seed=4)
    rank = combined_rank(scores)
    best = sorted(sorted(range(6), key=lambda i: (-rank[i], i))[:3])
    kept = sorted((image for image in result.images if image.class_name == name), key=lambda i: i.index)
    assert [image.index for image in kept] == best
    for image in kept:
        # The file holds the candidate that was scored: the same (seed, class, index) pixels.
        assert int((file_pixels(image.path).short() - pixels[image.index].short()).abs().max()) <= 1
        assert image.scores.class_confidence == pytest.approx(scores[image.index].class_confidence, abs=1e-4)
    rejected = {hashlib.md5(pixels[i].numpy().tobytes()).hexdigest() for i in set(range(6)) - set(best)}
    written = {
        hashlib.md5(file_pixels(p).numpy().tobytes()).hexdigest()
        for p in (tmp_path / "out" / name).glob("*.png")
    }
    assert not rejected & written

    with Session(engine) as session:
        rows = session.execute(
            select(
                Image.sample_index,
                Image.class_confidence,
                Image.realism,
                Image.near_copy_distance,
                Image.curation_id,
            )
        ).all()
        curations = session.scalars(select(Curation)).all()
    assert len(rows) == 3 * len(CLASS_NAMES)
    assert all(None not in row for row in rows)
    assert all(0 <= row.class_confidence <= 1 and row.near_copy_distance > 0 for row in rows)
    [curation] = curations
    assert {row.curation_id for row in rows} == {curation.id}
    assert curation.seed == 4 and curation.settings["keep_best"] == 0.5 and curation.settings["n"] == 3
    assert curation.settings["classifier"]["seed"] == CLASSIFIER_SEED
    assert "/" not in curation.settings["classifier"]["file"]  # a file name, no local path
    assert curation.classes == {
        name: {"asked": 3, "candidates": 6, "kept": 3, "resumed": 0, "rejected": {NOT_AMONG_BEST: 3}}
        for name in CLASS_NAMES
    }
    assert curation.seconds > 0
    engine.dispose()


def test_a_rerun_completes_the_request_without_writing_twice(
    trained: Path, tmp_path: Path, database_url: str
) -> None:
    engine = open_database(database_url)
    name = CLASS_NAMES[0]
    first = curate(trained, tmp_path, 2, database=engine, classes=[name])
    again = curate(trained, tmp_path, 2, database=engine, classes=[name])
    assert len(first.images) == 2 and again.images == [] and again.skipped == 2
    assert len(list((tmp_path / name).glob("*.png"))) == 2
    assert again.curation[name].resumed == 2
    # Other settings are another request: its kept images are chosen afresh, and one the folder
    # holds already (same index, same bytes) is not written a second time.
    other = curate(
        trained,
        tmp_path,
        2,
        CurationSettings(keep_best=0.25, classifier_epochs=1),
        database=engine,
        classes=[name],
    )
    indices = {image.index for image in first.images}
    new = {image.index for image in other.images}
    assert other.curation[name].kept == 2 and len(new) + other.skipped == 2
    assert not indices & new
    assert len(list((tmp_path / name).glob("*.png"))) == 2 + len(new)
    engine.dispose()


def test_thresholds_draw_until_enough_pass_and_count_the_rejected(trained: Path, tmp_path: Path) -> None:
    label = 2
    name = CLASS_NAMES[label]
    scores, _ = candidate_scores(trained, label, 40)
    confidences = sorted(s.class_confidence for s in scores)
    threshold = confidences[len(confidences) // 2]  # about half pass
    settings = CurationSettings(min_class_confidence=threshold, classifier_epochs=1)
    result = curate(trained, tmp_path, 3, settings, classes=[name], batch_size=4)
    kept = sorted(image.index for image in result.images)
    passing = [i for i, s in enumerate(scores) if s.class_confidence >= threshold]
    assert kept == passing[:3]
    record = result.curation[name]
    assert record.candidates == kept[-1] + 1  # drawn up to the third that passed
    assert record.rejected == ({BELOW_CONFIDENCE: record.candidates - 3} if record.candidates > 3 else {})

    # Nothing passes: nothing is written, and the counts say why.
    impossible = CurationSettings(min_near_copy_distance=1e9, classifier_epochs=1)
    none = curate(trained, tmp_path / "none", 1, impossible, classes=[name])
    assert none.images == [] and list((tmp_path / "none" / name).glob("*.png")) == []
    assert none.curation[name].candidates == 20 and none.curation[name].rejected == {NEAR_COPY: 20}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"keep_best": 0.0}, "--keep-best must be a fraction"),
        ({"keep_best": 1.5}, "--keep-best must be a fraction"),
        ({"min_class_confidence": 2.0}, "--min-class-confidence must lie"),
        ({}, "curation needs --keep-best"),
    ],
)
def test_settings_out_of_range_are_one_sentence(options: dict, message: str) -> None:
    with pytest.raises(GenError, match=message):
        CurationSettings(**options)


def test_the_training_folder_must_be_the_checkpoints(trained: Path, tmp_path: Path) -> None:
    write_phantoms(tmp_path / "other", per_class=2, seed=3)
    with pytest.raises(GenError, match="does not hold the images this checkpoint was trained on"):
        curate(trained, tmp_path / "out", 1, train_dir=tmp_path / "other")
    with pytest.raises(GenError, match="is not a folder; pass --train"):
        curate(trained, tmp_path / "out", 1, train_dir=tmp_path / "gone")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.png"))


def test_held_out_split_is_stratified_and_seeded() -> None:
    labels = torch.tensor([0] * 10 + [1] * 5 + [2])
    kept, held = held_out_split(labels, 0.2, 1)
    assert sorted(torch.cat([kept, held]).tolist()) == list(range(16))
    assert [int((labels[held] == c).sum()) for c in range(3)] == [2, 1, 0]
    assert torch.equal(held, held_out_split(labels, 0.2, 1)[1])


def test_the_dump_carries_the_curation_rows(trained: Path, tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    curate(trained, tmp_path / "out", 1, database=engine, classes=[CLASS_NAMES[0]])
    with Session(engine) as session:
        gan_id = session.scalar(select(Curation.gan_id))
        sql = dump_sql(session, gan_id, dialect="sqlite")
    loaded = sqlite3.connect(":memory:")
    loaded.executescript(sql)
    [(classes,)] = loaded.execute("SELECT classes FROM curations").fetchall()
    assert '"kept": 1' in classes
    assert loaded.execute("SELECT count(*) FROM images WHERE curation IS NOT NULL").fetchone() == (1,)
    engine.dispose()


def test_cli_sample_keep_best_and_export_by_score(trained: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    runner = CliRunner()
    name = CLASS_NAMES[3]
    made = runner.invoke(
        cli,
        ["sample", "--checkpoint", str(trained), "--n", "2", "--class", name, "--out", str(tmp_path / "s"),
         "--keep-best", "0.5", "--curation-epochs", "1", "--device", "cpu", "--quiet", "--db", url],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert f"{name}: kept 2 of 4 candidates (rejected: 2 {NOT_AMONG_BEST})" in made.output
    plain = runner.invoke(
        cli,
        ["sample", "--checkpoint", str(trained), "--n", "2", "--class", name, "--out", str(tmp_path / "p"),
         "--device", "cpu", "--quiet", "--db", url],
    )  # fmt: skip
    assert plain.exit_code == 0, plain.output

    exported = runner.invoke(
        cli,
        ["export", "--out", str(tmp_path / "e"), "--curated", "--license", "CC0-1.0", "--quiet", "--db", url],
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert len(list((tmp_path / "e" / name).glob("*.png"))) == 2
    assert {p.name for p in (tmp_path / "e" / name).glob("*.png")} == {
        p.name for p in (tmp_path / "s" / name).glob("*.png")
    }

    refused = runner.invoke(
        cli,
        ["export", "--out", str(tmp_path / "f"), "--min-class-confidence", "1.5", "--license", "CC0-1.0",
         "--db", url],
    )  # fmt: skip
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "--min-class-confidence" in refused.output
    bad = runner.invoke(
        cli,
        ["sample", "--checkpoint", str(trained), "--n", "1", "--all-classes", "--out", str(tmp_path / "b"),
         "--keep-best", "2", "--device", "cpu", "--quiet", "--db", url],
    )  # fmt: skip
    assert bad.exit_code != 0 and "--keep-best" in bad.output and "Traceback" not in bad.output


def test_the_report_puts_curated_beside_uncurated_and_never_grades_with_the_curator(
    trained: Path, tmp_path: Path
) -> None:
    from gen.checkpoint import file_sha256
    from gen.metrics.figures import ReportSettings
    from gen.report import make_report

    write_phantoms(tmp_path / "real", per_class=8, seed=5)
    settings = ReportSettings(
        n_per_class=8,
        histogram_n=5,
        classifier_epochs=1,
        kid_subsets=2,
        two_sample_folds=2,
        two_sample_epochs=1,
        curated_keep_best=0.5,
    )
    out = tmp_path / "report"
    report = make_report(
        trained, tmp_path / "real", trained.parent.parent / "data", out, settings=settings, progress=False
    )
    figures = {(f.metric, f.class_name): f for f in report.figures}
    for metric in ("domain_classifier_accuracy_on_synthetic", "two_sample_auc"):
        curated = figures[(f"curated_{metric}", None)]
        assert 0 <= curated.value <= 1 and curated.settings["keep_best"] == 0.5
        assert (metric, None) in figures
    markdown = (out / "report.md").read_text()
    assert "## Curated against uncurated (keep the best 0.5)" in markdown
    assert "| two_sample_auc | overall |" in markdown.split("## Curated against uncurated")[1]
    reporting = file_sha256(Path(figures[("domain_classifier_accuracy", None)].settings["classifier"]))
    assert figures[("curated_two_sample_auc", None)].settings["curating_classifier"]["sha256"] != reporting


def test_curated_class_returns_the_best_ranked_candidates(trained: Path) -> None:
    """curated_class (the report's and the quality bench's curated set): the n best of n / F
    candidates by combined rank, in index order, as generated."""
    scores, pixels = candidate_scores(trained, label=2, count=8)
    state = load_checkpoint(trained)
    curator = Curator(state, FAST, torch.device("cpu"), progress=False)
    generator = load_generator(load_for_sampling(state), torch.device("cpu"))
    kept = curated_class(curator, generate, generator, 2, 0, 4, torch.device("cpu"))
    best = sorted(np.argsort(-combined_rank(scores), kind="stable")[:4].tolist())
    assert kept.shape == (4, 3, 64, 64) and kept.dtype == torch.uint8
    # Near equal, not equal: the same images generated in another batch (floating point).
    assert (kept.int() - pixels[best].int()).abs().max() <= 1


def test_realism_is_d_s_score_alone_when_d_has_more_heads(trained: Path) -> None:
    """A discriminator trained with --classifier-weight or --reconstruction-weight returns logits
    and a reconstruction after its score; realism is that score, one number per image."""
    import dataclasses
    import json

    from gen.architecture import from_json, to_json
    from gen.networks import build

    state = load_checkpoint(trained)
    spec = from_json(json.loads(state["discriminator_spec"]))
    spec = dataclasses.replace(spec, classifier_head=True, reconstruction_head=True)
    torch.manual_seed(0)
    discriminator = build(spec).eval()
    state["discriminator_spec"] = json.dumps(to_json(spec))
    state["discriminator"] = discriminator.state_dict()
    curator = Curator(state, FAST, torch.device("cpu"), progress=False)
    generator = load_generator(load_for_sampling(state), torch.device("cpu"))
    pixels = generate(generator, 0, 1, list(range(4)), torch.device("cpu"))
    realism = [scores.realism for scores in curator.score(pixels, 1)]
    inputs = pixels.float() / 127.5 - 1
    with torch.no_grad():
        expected = curator.discriminator(inputs, torch.ones(4, dtype=torch.long))[:, 0]
    assert realism == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-6)
