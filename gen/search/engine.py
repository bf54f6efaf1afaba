"""The search engine: settings, a run, its result, the loop (``evolve``), the workers and the plot.

What a search searches is a stage (:class:`Stage`): gen.search.gan_stage trains GAN cells
(``generator`` and ``discriminator``), gen.search.classifier_stage classifiers. A stage gives
its space, its history read back from the recorded candidates, the job that evaluates one
candidate, and the rows a finished candidate becomes; the engine knows no stage (stages import
the engine; gen.search.start picks the stage by the name in the settings).

Only this process (the driver) writes rows: every finished candidate is recorded the moment it
is done. ``resume`` rebuilds the evolution from those rows (gen.search.evolution), so no
finished candidate is trained again; a half-trained candidate's folder
(``OUT/candidates/step-NNNNN``) has no row and is started over.

Workers: with ``workers=1`` and no cluster, candidates are evaluated here, one after another
(no Ray: quick to start, deterministic). Otherwise Ray (imported only then) runs ``workers``
candidates at a time, handing each finished worker the next child at once; by default a local
Ray with ``num_cpus=workers``, each task with its share of the machine's cores as torch
threads, or an existing cluster with ``RAY_ADDRESS``/``ray_address``, where ``device="cuda"``
asks one GPU per candidate. A worker that dies costs its candidate one retry; a second death
records it as failed; the search goes on. On a cluster, the data, the search folder and
``$GEN_CACHE_DIR`` must be paths every node sees (a shared filesystem): candidates write their
checkpoints there and children read their parents' weights from there.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from tqdm import tqdm

from db import searches as search_rows
from gen.errors import GenError
from gen.search.evolution import AgingEvolution, Candidate, Evaluated

STAGES = ("generator", "discriminator", "classifier")
FITNESS_PLOT = "fitness.png"
CANDIDATES_FOLDER = "candidates"
FID_LABEL = "normalised domain FID (lower is better)"


@dataclass(frozen=True)
class SearchSettings:
    """Everything a search needs; stored in searches.settings, and what --resume reads back."""

    data: str
    out: str
    stage: str = "generator"
    population: int = 100
    cycles: int = 25
    sample: int = 25
    mutation: float = 0.05
    budget_iters: int | None = None
    budget_minutes: float | None = None
    preset: str = "tiny"  # the topology, widths and training recipe around the searched cells
    batch_size: int | None = None  # None: the preset's
    eval_images: int = 64  # synthetic images per class for the fitness
    generator_from: int | None = None  # stage discriminator: the model whose generator is kept
    seed: int = 0
    validation: float = 0.2  # stage classifier: share of each class held out for the fitness

    @property
    def total(self) -> int:
        """Candidates evaluated: the initial population and ``cycles`` turnovers of it."""
        return self.population * (1 + self.cycles)

    def budget(self) -> dict[str, int | float | None]:
        if self.budget_iters is not None:
            return {"iterations": self.budget_iters}
        return {"minutes": self.budget_minutes}

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise GenError(f"unknown stage {self.stage!r}; choose one of {', '.join(STAGES)}.")
        if (self.budget_iters is None) == (self.budget_minutes is None):
            raise GenError("give the training budget of a candidate as --budget-iters or --budget-minutes.")
        if min(self.population, self.sample, self.eval_images) < 1 or self.cycles < 0:
            raise GenError(
                "--population, --sample and evaluation images must be at least 1, --cycles at least 0."
            )
        if not 0 < self.validation < 1:
            raise GenError("the validation share must be above 0 and below 1.")
        if self.sample > self.population:
            raise GenError("--sample cannot be larger than --population.")
        if not 0 < self.mutation <= 1:
            raise GenError("--mutation must be a probability above 0 and at most 1.")
        if self.stage == "discriminator" and self.generator_from is None:
            raise GenError(
                "a discriminator search needs the generator to train against: --generator-from ID."
            )


def candidate_folder(settings: SearchSettings, step: int) -> Path:
    return Path(settings.out) / CANDIDATES_FOLDER / f"step-{step:05d}"


# What a stage gives


Genome = TypeVar("Genome")


class Result(Protocol):
    """What a worker hands back for one candidate."""

    @property
    def step(self) -> int: ...
    @property
    def fitness(self) -> float | None: ...  # lower is better; None: failed
    @property
    def error(self) -> str | None: ...
    @property
    def interrupted(self) -> bool: ...


class Job(Protocol):
    """One candidate's evaluation as plain data (it travels to Ray workers) that runs itself."""

    @property
    def step(self) -> int: ...
    @property
    def folder(self) -> str: ...  # where it writes; cleared before a retry

    def evaluate(self) -> Result: ...


class Space(Protocol[Genome]):
    def sample(self, rng: random.Random) -> Genome: ...
    def mutate(self, parent: Genome, probability: float, rng: random.Random) -> Genome: ...


class Stage(Protocol[Genome]):
    """What differs between searching GAN cells and classifiers; the loop (``evolve``) is one.

    A stage is handed back only the jobs it made and their results, so its methods name its own
    job and result classes."""

    space: Space[Genome]
    fitness_label: str  # the fitness plot's vertical axis

    def history(self, candidates: list[search_rows.CandidateInfo]) -> list[Evaluated[Genome]]:
        """The engine's history from the recorded candidates (``--resume``)."""

    def warm_up(self, settings: SearchSettings) -> None:
        """Whatever every worker needs made once, before they start."""

    def job(self, run: SearchRun[Genome], candidate: Candidate[Genome], device: str, threads: int) -> Job:
        """The job a worker runs for a candidate the engine asked for."""

    def failed(self, step: int) -> Result:
        """The result of a step whose worker died twice."""

    def record(
        self,
        session: Session,
        run: SearchRun[Genome],
        job: Job,
        candidate: Candidate[Genome],
        result: Result,
    ) -> int | None:
        """Record a finished candidate; returns its row's id (a model or a classifier; a failed
        classifier candidate has none)."""

    def row_id(self, candidate: search_rows.CandidateInfo) -> int | None:
        """The model or classifier a recorded candidate became."""

    def shown(self, fitness: float) -> str:
        """The best fitness as the progress bar shows it."""


@dataclass
class SearchRun(Generic[Genome]):
    """A search ready to go on: its row, its settings, its stage and the evolution."""

    search_id: int
    settings: SearchSettings
    stage: Stage[Genome]
    evolution: AgingEvolution[Genome]
    fitness_by_step: dict[int, float | None]
    class_names: tuple[str, ...]
    data_fingerprint: str
    num_images: int


@dataclass(frozen=True)
class SearchResult(Generic[Genome]):
    search_id: int
    finished: int
    total: int
    best: Evaluated[Genome] | None
    best_id: int | None  # the best candidate's row: a model (GAN stages) or a classifier
    plot: Path
    interrupted: bool


# Preparing a search (gen.search.start puts these steps together with the stage)


def recorded_search(
    session: Session, folder: str | Path
) -> tuple[SearchSettings, search_rows.SearchInfo, list[search_rows.CandidateInfo]]:
    """The settings, row and candidates of the search recorded for ``folder`` (``--resume``)."""
    from db.names import stored_path

    info = search_rows.search_in_folder(session, stored_path(folder))
    if info is None:
        raise GenError(f"no search was recorded for {folder} in this database; nothing to resume.")
    names = {f.name for f in dataclasses.fields(SearchSettings)}
    settings = SearchSettings(**{k: v for k, v in info.settings.items() if k in names})
    return settings, info, search_rows.search_candidates(session, info.id)


def check_new_search(session: Session, settings: SearchSettings) -> None:
    """A new search's settings are valid and its folder is free."""
    from db.names import stored_path

    settings.validate()
    out = Path(settings.out)
    if out.exists() and any(out.iterdir()):
        raise GenError(f"{out} is not empty; use --resume to continue the search there or another --out.")
    if search_rows.search_in_folder(session, stored_path(out)) is not None:
        raise GenError(f"a search was already recorded for {out}; continue it with --resume.")


def record_search(
    engine: Engine, settings: SearchSettings, data_fingerprint: str
) -> tuple[int, SearchSettings]:
    """The searches row of a new search, and its settings with the paths as stored."""
    from db.names import stored_path

    settings = dataclasses.replace(settings, out=stored_path(settings.out), data=stored_path(settings.data))
    Path(settings.out).mkdir(parents=True, exist_ok=True)
    with Session(engine) as session:
        search_id = search_rows.create_search(
            session,
            stage=settings.stage,
            dataset_path=settings.data,
            dataset_fingerprint=data_fingerprint,
            settings={**dataclasses.asdict(settings), "total": settings.total},
            seed=settings.seed,
        )
    return search_id, settings


def new_evolution(
    settings: SearchSettings, space: Space[Genome], history: list[Evaluated[Genome]]
) -> AgingEvolution[Genome]:
    return AgingEvolution(
        population_size=settings.population,
        sample_size=settings.sample,
        total=settings.total,
        seed=settings.seed,
        random_architecture=space.sample,
        mutate=lambda genome, rng: space.mutate(genome, settings.mutation, rng),
        history=history,
    )


# Workers


def evaluate(job: Job) -> Result:
    """Runs in a worker (this process or a Ray task): train and score one candidate, no rows."""
    return job.evaluate()


class InProcessWorkers:
    """Evaluates candidates here, one at a time, in the order they were submitted."""

    slots = 1

    def __init__(self, threads: int):
        self.threads = threads
        self._queue: list[Job] = []

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def busy(self) -> int:
        return len(self._queue)

    def wait(self) -> tuple[Job, Result | None]:
        job = self._queue.pop(0)
        return job, evaluate(job)

    def close(self) -> None:
        pass


class RayWorkers:
    """Ray tasks, at most ``slots`` at once; ``wait`` returns whichever finishes first.

    A result of None means the worker died (the process was killed, the node was lost)."""

    def __init__(self, slots: int, threads: int, device: str, address: str | None):
        import ray

        self.ray = ray
        self.slots = slots
        self.threads = threads
        if address is None:
            ray.init(
                num_cpus=slots * threads,
                num_gpus=0 if device != "cuda" else None,
                include_dashboard=False,  # no web server nobody asked for
                log_to_driver=False,  # workers' logs stay in Ray's session folder, not in the bar
                object_store_memory=200 * 1024**2,  # jobs and results are small
                configure_logging=False,
            )
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        self._remote = ray.remote(evaluate).options(
            num_cpus=threads, num_gpus=1 if device == "cuda" else 0, max_retries=0
        )
        self._running: dict[ray.ObjectRef, Job] = {}

    def submit(self, job: Job) -> None:
        self._running[self._remote.remote(job)] = job

    def busy(self) -> int:
        return len(self._running)

    def wait(self) -> tuple[Job, Result | None]:
        [ready], _ = self.ray.wait(list(self._running), num_returns=1)
        job = self._running.pop(ready)
        try:
            return job, self.ray.get(ready)
        except self.ray.exceptions.RayError:
            return job, None

    def close(self) -> None:
        for reference in self._running:
            self.ray.cancel(reference, force=True)
        self.ray.shutdown()


def workers_for(
    workers: int, threads: int, device: str, ray_address: str | None
) -> InProcessWorkers | RayWorkers:
    if workers == 1 and ray_address is None:
        return InProcessWorkers(threads)
    return RayWorkers(workers, threads, device, ray_address)


# Running a search


def run_search(
    run: SearchRun[Genome],
    engine: Engine,
    *,
    workers: int = 1,
    device: str = "cpu",
    ray_address: str | None = None,
    progress: bool = True,
    on_candidate: Callable[[Evaluated[Genome], int | None], None] | None = None,
    backend: InProcessWorkers | RayWorkers | None = None,
) -> SearchResult[Genome]:
    """Evaluate candidates until the search is done (or Ctrl-C), recording each as it finishes.

    ``backend`` replaces the workers chosen from ``workers`` and ``ray_address``."""
    ray_address = ray_address or os.environ.get("RAY_ADDRESS")
    threads = max(1, (os.cpu_count() or 1) // workers)
    if not run.evolution.done:
        run.stage.warm_up(run.settings)
    if backend is None:
        backend = workers_for(workers, threads, device, ray_address)
    best, interrupted = evolve(
        run, engine, backend, device=device, threads=threads, progress=progress, on_candidate=on_candidate
    )
    return finish(run, engine, best, interrupted)


def evolve(
    run: SearchRun[Genome],
    engine: Engine,
    backend: InProcessWorkers | RayWorkers,
    *,
    device: str,
    threads: int,
    progress: bool,
    on_candidate: Callable[[Evaluated[Genome], int | None], None] | None,
) -> tuple[Evaluated[Genome] | None, bool]:
    """Keep every worker busy with the engine's next child, record each candidate as it
    finishes (a worker that dies costs its candidate one retry), until the search is done or
    interrupted. Returns (the best candidate, whether it was interrupted)."""
    evolution, stage = run.evolution, run.stage
    deaths: dict[int, int] = {}
    best = evolution.best()
    started, finished_here = time.perf_counter(), 0
    bar = tqdm(
        total=run.settings.total,
        initial=evolution.finished,
        disable=not progress,
        unit="candidate",
        dynamic_ncols=True,
    )
    interrupted = False
    try:
        while not evolution.done:
            while backend.busy() < backend.slots:
                candidate = evolution.ask()
                if candidate is None:
                    break
                backend.submit(stage.job(run, candidate, device, threads))
            if backend.busy() == 0:
                raise RuntimeError("the search has nothing to evaluate yet is not done")
            job, result = backend.wait()
            pending = {c.step: c for c in evolution.pending}
            if result is None:  # the worker died
                deaths[job.step] = deaths.get(job.step, 0) + 1
                if deaths[job.step] < 2:
                    shutil.rmtree(job.folder, ignore_errors=True)  # whatever it half wrote
                    backend.submit(job)
                    continue
                result = stage.failed(job.step)
            if result.interrupted:
                raise KeyboardInterrupt
            with Session(engine) as session:
                row_id = stage.record(session, run, job, pending[job.step], result)
            evaluated = evolution.tell(job.step, result.fitness)
            run.fitness_by_step[job.step] = result.fitness
            finished_here += 1
            if result.error:
                tqdm.write(f"candidate {job.step} failed: {result.error}")
            best = evolution.best()
            if on_candidate is not None:
                on_candidate(evaluated, row_id)
            per_hour = finished_here / max(time.perf_counter() - started, 1e-9) * 3600
            bar.set_postfix_str(
                f"{stage.shown(best.fitness) if best is not None else 'best=-'}, per_hour={per_hour:.0f}",
                refresh=False,
            )
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        backend.close()
    return best, interrupted


def finish(
    run: SearchRun[Genome], engine: Engine, best: Evaluated[Genome] | None, interrupted: bool
) -> SearchResult[Genome]:
    """The fitness plot, the search marked done when it is, and the best candidate's row."""
    settings = run.settings
    plot = Path(settings.out) / FITNESS_PLOT
    if any(value is not None for value in run.fitness_by_step.values()):
        write_fitness_plot(
            run.fitness_by_step, plot, f"search {run.search_id}: {settings.stage}", run.stage.fitness_label
        )
    if run.evolution.done:
        with Session(engine) as session:
            search_rows.set_search_status(session, run.search_id, "done")
    best_id = None
    if best is not None:
        with Session(engine) as session:
            by_step = {
                c.step: run.stage.row_id(c) for c in search_rows.search_candidates(session, run.search_id)
            }
        best_id = by_step.get(best.step)
    return SearchResult(
        run.search_id, run.evolution.finished, settings.total, best, best_id, plot, interrupted
    )


def write_fitness_plot(
    fitness_by_step: dict[int, float | None],
    path: Path,
    title: str,
    ylabel: str = FID_LABEL,
) -> Path:
    """Every candidate's fitness against its step, with the running best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(step for step, value in fitness_by_step.items() if value is not None)
    values = [fitness_by_step[step] for step in steps]
    running, best = [], math.inf
    for value in values:
        best = min(best, value)
        running.append(best)
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.scatter(steps, values, s=12, alpha=0.6, label="candidate")
    axes.step(steps, running, where="post", color="black", label="running best")
    axes.set_xlabel("step")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    temporary = path.with_name(path.name + ".tmp.png")
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    os.replace(temporary, path)
    return path
