"""gen search end to end on tiny budgets: recording, resume, weight inheritance, the CLI.

Candidates train the tiny preset for one to three iterations on a few phantom images and are
scored on a handful of images per class; one cached domain classifier serves every test.
Only test_the_bar starts Ray (slow to start on two cores); the rest use the in-process runner.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_support import kill_gen_when
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import generators as generator_rows
from db import open_database
from db import searches as search_rows
from db.errors import UserError
from db.models import GanArchitecture, SearchCandidate
from gen.architecture import preset
from gen.checkpoint import load_matching_weights
from gen.cli import cli
from gen.errors import GenError
from gen.networks import build
from gen.phantoms import write_phantoms
from gen.search.engine import InProcessWorkers, SearchSettings, candidate_folder, run_search
from gen.search.gan_stage import CandidateJob, CandidateResult
from gen.search.space import Genome, to_spec
from gen.search.start import prepare_search

pytestmark = pytest.mark.usefixtures("one_torch_thread", "shared_cache")

TINY = ["--budget-iters", "1", "--batch-size", "4", "--eval-images", "2", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One domain-classifier cache for the module (and its child processes)."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEN_CACHE_DIR", str(cache))
        patch.setenv("OMP_NUM_THREADS", "1")
        yield cache


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("search") / "phantoms"
    write_phantoms(root, per_class=6)
    return root


def settings(data_dir: Path, out: Path, **changes: object) -> SearchSettings:
    values = dict(population=1, cycles=1, sample=1, budget_iters=1, batch_size=4, eval_images=2, seed=3)
    return SearchSettings(data=str(data_dir), out=str(out), **{**values, **changes})


def candidate_rows(
    url: str, search_id: int, *, while_written: bool = False
) -> list[search_rows.CandidateInfo]:
    """The search's candidates; ``while_written``: read only, none while the schema is being made."""
    try:
        engine = open_database(url, create=not while_written, read_only=while_written)
    except UserError:
        if while_written:
            return []
        raise
    try:
        with Session(engine) as session:
            return search_rows.search_candidates(session, search_id)
    finally:
        engine.dispose()


def test_weights_are_inherited_where_names_and_shapes_match() -> None:
    base, _ = preset("tiny", 2)
    parent = build(to_spec(Genome("generator", 3, "22-6", ()), base))
    child = build(to_spec(Genome("generator", 3, "21-6", (1,)), base))
    copied = load_matching_weights(child, parent.state_dict())
    parent_weights, child_weights = parent.state_dict(), child.state_dict()
    assert 0 < copied < len(child_weights)
    # The edge that kept its conv3x3 (node 0 -> 1) is inherited; the one that became conv1x1 is not.
    same = [
        n for n in child_weights if n in parent_weights and parent_weights[n].shape == child_weights[n].shape
    ]
    assert all(torch.equal(child_weights[n], parent_weights[n]) for n in same)
    assert any(".0_1." in n for n in same)
    assert any(".0_2." in n and n not in same for n in child_weights)  # the 3x3 kernel is not a 1x1


def test_search_records_every_candidate_and_its_model(
    database_url: str, data_dir: Path, tmp_path: Path
) -> None:
    engine = open_database(database_url)
    try:
        run = prepare_search(settings(data_dir, tmp_path / "search"), engine)
        result = run_search(run, engine, progress=False)
        assert result.finished == result.total == 2 and not result.interrupted
        with Session(engine) as session:
            info = search_rows.get_search(session, run.search_id)
            candidates = search_rows.search_candidates(session, run.search_id)
            models = session.scalar(select(func.count()).select_from(GanArchitecture))
            summary = search_rows.list_searches(session)
        assert info.status == "done" and info.stage == "generator"
        assert [c.step for c in candidates] == [0, 1]
        assert candidates[1].parent_step == 0
        assert all(c.status == "done" and c.fitness is not None for c in candidates)
        assert candidates[0].budget == {"iterations": 1, "trained": 1}
        assert models == 2 and {c.gan_id for c in candidates} == {1, 2}
        # The fixed discriminator is the source's stage-1 one; the generator cells differ.
        assert candidates[0].discriminator["cell"] == {"nodes": 4, "code": "235-66-7"}
        assert candidates[0].generator["cell"] != candidates[1].generator["cell"]
        assert result.plot.is_file()
        assert summary[0].candidates == 2 and summary[0].best_fitness == min(c.fitness for c in candidates)
        with Session(engine) as session, pytest.raises(UserError, match="candidate of search"):
            generator_rows.delete_model(session, candidates[0].gan_id)
        # Nothing is left to do: resuming a finished search trains nothing.
        again = run_search(
            prepare_search(None, engine, resume_folder=tmp_path / "search"), engine, progress=False
        )
        assert again.finished == 2
        assert len(candidate_rows(database_url, run.search_id)) == 2
    finally:
        engine.dispose()


def test_discriminator_stage_keeps_the_chosen_generator(data_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    engine = open_database(url)
    first = prepare_search(settings(data_dir, tmp_path / "g", cycles=0), engine)
    run_search(first, engine, progress=False)
    generator = candidate_rows(url, first.search_id)[0]
    with pytest.raises(GenError, match="--generator-from"):
        prepare_search(settings(data_dir, tmp_path / "d", stage="discriminator"), engine)
    second = prepare_search(
        settings(data_dir, tmp_path / "d", stage="discriminator", cycles=0, generator_from=generator.gan_id),
        engine,
    )
    run_search(second, engine, progress=False)
    engine.dispose()
    [candidate] = candidate_rows(url, second.search_id)
    assert candidate.generator == generator.generator and candidate.fitness is not None
    shown = CliRunner().invoke(cli, ["searches", "show", str(second.search_id), "--db", url])
    assert shown.exit_code == 0 and "discriminator cells" in shown.output, shown.output
    missing = CliRunner().invoke(cli, ["searches", "show", "99", "--db", url])
    assert missing.exit_code == 1 and "no search 99; searches in the database: 1, 2" in missing.output


def test_a_new_search_refuses_a_used_folder(data_dir: Path, tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    out = tmp_path / "search"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(GenError, match="not empty"):
        prepare_search(settings(data_dir, out), engine)
    with pytest.raises(GenError, match="budget"):
        prepare_search(settings(data_dir, tmp_path / "other", budget_iters=None), engine)
    with pytest.raises(GenError, match="nothing to resume"):
        prepare_search(None, engine, resume_folder=tmp_path / "nowhere")
    assert (out / "mine.txt").read_text() == "keep"
    engine.dispose()


def test_resume_after_an_interruption_continues_the_same_sequence(data_dir: Path, tmp_path: Path) -> None:
    """One worker: a search stopped after the first of two candidates and resumed hands out exactly the
    candidates of an uninterrupted one with the same seed, and trains none of them twice."""
    whole_url, split_url = (f"sqlite:///{tmp_path / name}.db" for name in ("whole", "split"))
    changes = dict(population=1, cycles=1, sample=1)  # a random candidate, then its child
    engine = open_database(whole_url)
    run_search(
        prepare_search(settings(data_dir, tmp_path / "whole", **changes), engine), engine, progress=False
    )
    engine.dispose()

    engine = open_database(split_url)
    run = prepare_search(settings(data_dir, tmp_path / "split", **changes), engine)

    def stop_after_one(evaluated: object, gan_id: int) -> None:
        if run.evolution.finished == 1:
            raise KeyboardInterrupt

    first = run_search(run, engine, progress=False, on_candidate=stop_after_one)
    assert first.interrupted and first.finished == 1
    checkpoints = {0: sorted(candidate_folder(run.settings, 0).glob("*.pt"))}
    assert checkpoints[0]
    times = {step: [p.stat().st_mtime_ns for p in paths] for step, paths in checkpoints.items()}
    resumed = run_search(
        prepare_search(None, engine, resume_folder=tmp_path / "split"), engine, progress=False
    )
    engine.dispose()
    assert resumed.finished == 2 and not resumed.interrupted
    assert {step: [p.stat().st_mtime_ns for p in paths] for step, paths in checkpoints.items()} == times

    def sequence(url: str) -> list[tuple]:
        return [
            (c.step, c.parent_step, c.generator["cell"], c.generator["attention"])
            for c in candidate_rows(url, 1)
        ]

    assert sequence(split_url) == sequence(whole_url)


class DyingWorkers(InProcessWorkers):
    """In-process workers whose worker 'dies' (a None result, as RayWorkers reports a lost
    worker) on the listed steps, once per listed occurrence."""

    def __init__(self, deaths: list[int]):
        super().__init__(threads=1)
        self.deaths = deaths
        self.evaluated: list[int] = []

    def wait(self) -> tuple[CandidateJob, CandidateResult | None]:
        if self._queue[0].step in self.deaths:
            self.deaths.remove(self._queue[0].step)
            return self._queue.pop(0), None
        job, result = super().wait()
        self.evaluated.append(job.step)
        return job, result


def test_a_dead_worker_costs_one_retry_and_a_second_death_fails_the_candidate(
    data_dir: Path, tmp_path: Path
) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    run = prepare_search(settings(data_dir, tmp_path / "search", population=2, cycles=0), engine)
    workers = DyingWorkers(deaths=[0, 1, 1])
    result = run_search(run, engine, progress=False, backend=workers)
    assert result.finished == 2 and not result.interrupted
    assert workers.evaluated == [0]  # step 0 retried once and evaluated; step 1 died twice
    rows = {c.step: c for c in candidate_rows(f"sqlite:///{tmp_path / 'gen.db'}", run.search_id)}
    assert rows[0].status == "done" and rows[1].status == "failed" and rows[1].fitness is None
    assert run.evolution.best().step == 0
    engine.dispose()


@pytest.mark.slow
def test_kill_9_then_resume_trains_no_finished_candidate_again(data_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    out = tmp_path / "search"
    command = ["search", "--db", url, "--data", str(data_dir), "--out", str(out), "--population", "1",
               "--cycles", "2", "--sample", "1", *TINY]  # fmt: skip
    kill_gen_when(
        command,
        lambda: (tmp_path / "gen.db").exists() and len(candidate_rows(url, 1, while_written=True)) >= 1,
        cwd=tmp_path,
        within_s=300,
        poll_s=0.2,
    )
    before = candidate_rows(url, 1)
    assert 1 <= len(before) < 3

    result = CliRunner().invoke(cli, ["search", "--db", url, "--out", str(out), "--resume", "--quiet"])
    assert result.exit_code == 0, result.output
    after = candidate_rows(url, 1)
    assert [c.id for c in after[: len(before)]] == [c.id for c in before]
    assert sorted(c.step for c in after) == [0, 1, 2]  # each step once: none trained again
    listed = CliRunner().invoke(cli, ["searches", "list", "--db", url])
    assert "3/3" in listed.output and "done" in listed.output


@pytest.mark.slow
def test_the_bar(data_dir: Path, tmp_path: Path) -> None:
    """The issue's bar: two Ray workers, population 4, two cycles; then train the best."""
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    command = ["search", "--db", url, "--data", str(data_dir), "--out", str(tmp_path / "search"),
               "--stage", "generator", "--population", "4", "--cycles", "2", "--sample", "2",
               "--budget-iters", "3", "--batch-size", "4", "--eval-images", "2", "--workers", "2",
               "--device", "cpu", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    rows = candidate_rows(url, 1)
    assert sorted(c.step for c in rows) == list(range(12))
    assert len({c.worker for c in rows}) >= 2  # two Ray worker processes evaluated them
    engine = open_database(url)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(SearchCandidate)) == 12
        assert session.scalar(select(func.count()).select_from(GanArchitecture)) == 12
    engine.dispose()
    shown = CliRunner().invoke(cli, ["searches", "show", "1", "--db", url])
    assert shown.exit_code == 0 and "{" in shown.output, shown.output
    best = min((c for c in rows if c.fitness is not None), key=lambda c: c.fitness)
    trained = CliRunner().invoke(
        cli,
        ["train", "--db", url, "--data", str(data_dir), "--out", str(tmp_path / "best"), "--architecture",
         str(best.gan_id), "--iters", "2", "--batch-size", "4", "--device", "cpu", "--quiet"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    engine = open_database(url)
    with Session(engine) as session:
        model = generator_rows.get_model(session, generator_rows.latest_model_id(session))
    engine.dispose()
    assert model.generator == best.generator and model.latest_checkpoint.iteration == 2


def test_a_second_search_into_a_busy_folder_is_one_sentence(data_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gen.checkpoint import run_folder_lock
    from gen.cli import cli

    out = tmp_path / "search"
    with run_folder_lock(out):  # as a running gen search (or gen train) holds it
        result = CliRunner().invoke(
            cli,
            [
                "search",
                "--data",
                str(data_dir),
                "--out",
                str(out),
                "--population",
                "2",
                "--cycles",
                "0",
                "--budget-iters",
                "1",
                "--db",
                f"sqlite:///{tmp_path / 'gen.db'}",
            ],
        )
        assert list(out.iterdir()) == []  # nothing written by the refused search
    assert result.exit_code == 1 and "is in use by another gen train or gen search" in result.output
    assert not out.exists()  # and the folder the lock made is gone with it
