"""Running a search: each candidate trained briefly and scored, in this process or on Ray.

A candidate's evaluation is an ordinary short ``gen.train.train`` run of ``budget_iters``
iterations (or ``budget_minutes``) in ``OUT/candidates/step-NNNNN``, starting from its parent's
weights wherever a tensor keeps its name and shape (weight inheritance: the source lets the
best candidate's weights carry over to the next cycle; here every child inherits from its
parent, which is what the source's reading needs once workers run asynchronously). Its fitness
is the normalised domain FID of its EMA generator at the end, computed by the evaluation the
training loop uses for ``--eval-every`` (``gen.evaluation``: the domain CNN of ``gen report``,
z-scored with the real training images); lower is better. A candidate that raises or scores
NaN gets no fitness and never joins the population.

Only this process (the driver) writes rows: every finished candidate becomes a model
(gan_architectures and its training rows) and a search_candidates row, the moment it is
done. ``resume`` rebuilds the evolution from those rows (gen.search.evolution), so no finished
candidate is trained again; a half-trained candidate's folder has no row and is started over.

Workers: with ``workers=1`` and no cluster, candidates are evaluated here, one after another
(no Ray: quick to start, deterministic). Otherwise Ray (imported only then) runs ``workers``
candidates at a time, handing each finished worker the next child at once; by default a local
Ray with ``num_cpus=workers``, each task with its share of the machine's cores as torch
threads, or an existing cluster with ``RAY_ADDRESS``/``ray_address``, where ``device="cuda"``
asks one GPU per candidate. A worker that dies costs its candidate one retry; a second death
records it as failed; the search goes on. On a cluster, the data, the search folder and
``$GEN_CACHE_DIR`` must be paths every node sees (a shared filesystem): candidates write their
checkpoints there and children read their parents' weights from there.

``stage="classifier"`` searches a classifier instead (gen.search.classifier_runner): the same
settings, engine, workers, folders and resume, with classifiers rows instead of models.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from tqdm import tqdm

from gen.architecture import DiscriminatorSpec, GeneratorSpec, from_json, preset, to_json
from gen.errors import GenError
from gen.search.evolution import AgingEvolution, Candidate, Evaluated
from gen.search.space import ClassifierSpace, Genome, from_spec, space_for, stage_one_discriminator, to_spec

STAGES = ("generator", "discriminator", "classifier")
FITNESS_PLOT = "fitness.png"
CANDIDATES_FOLDER = "candidates"
NEVER = 10**9  # iterations when the budget is in minutes


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

    def budget(self) -> dict[str, Any]:
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


@dataclass(frozen=True)
class CandidateJob:
    """What a worker needs to evaluate one candidate (plain data: it travels to Ray workers)."""

    step: int
    config: Any  # gen.train.TrainConfig
    generator: dict[str, Any]
    discriminator: dict[str, Any]
    inherit_from: str | None  # the parent's checkpoint file
    threads: int


@dataclass(frozen=True)
class CandidateResult:
    step: int
    checkpoint: tuple[str, int, str] | None  # path, iteration, sha256
    fitness: float | None
    seconds: float
    worker: str
    class_names: tuple[str, ...] = ()
    data_fingerprint: str = ""
    num_images: int = 0
    device: str = ""
    config: dict[str, Any] | None = None
    error: str | None = None
    interrupted: bool = False


def evaluate_candidate(job: CandidateJob) -> CandidateResult:
    """Train one candidate for its budget and score it (runs in a worker, writes no rows)."""
    import torch

    from gen.checkpoint import load_checkpoint
    from gen.train import train
    from gen.train_config import RunStart

    torch.set_num_threads(job.threads)
    started = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    facts: dict[str, Any] = {}
    ends: list[tuple[str, int, str, float | None]] = []

    def on_start(start: RunStart) -> None:
        facts.update(
            class_names=start.class_names,
            data_fingerprint=start.data_fingerprint,
            num_images=start.num_images,
            device=start.device,
            config=dataclasses.asdict(start.config),
        )

    def on_checkpoint(path: Path, iteration: int, sha256: str, evaluation: float | None) -> None:
        ends.append((str(path), iteration, sha256, evaluation))

    try:
        inherit = load_checkpoint(Path(job.inherit_from)) if job.inherit_from else None
        result = train(
            job.config,
            progress=False,
            on_start=on_start,
            on_checkpoint=on_checkpoint,
            architecture=(from_json(job.generator), from_json(job.discriminator)),
            inherit=inherit,
        )
    except Exception as error:  # any failure of one candidate must not end the search
        return CandidateResult(
            job.step, None, None, time.perf_counter() - started, worker, error=str(error), **facts
        )
    seconds = time.perf_counter() - started
    if result.interrupted:
        return CandidateResult(job.step, None, None, seconds, worker, interrupted=True, **facts)
    path, iteration, sha256, fitness = ends[-1]
    if fitness is None or not math.isfinite(fitness):
        fitness = None
    return CandidateResult(job.step, (path, iteration, sha256), fitness, seconds, worker, **facts)


class InProcessWorkers:
    """Evaluates candidates here, one at a time, in the order they were submitted."""

    slots = 1

    def __init__(self, threads: int, evaluate: Callable[[Any], Any] = evaluate_candidate):
        self.threads = threads
        self.evaluate = evaluate
        self._queue: list[CandidateJob] = []

    def submit(self, job: CandidateJob) -> None:
        self._queue.append(job)

    def busy(self) -> int:
        return len(self._queue)

    def wait(self) -> tuple[CandidateJob, CandidateResult | None]:
        job = self._queue.pop(0)
        return job, self.evaluate(job)

    def close(self) -> None:
        pass


class RayWorkers:
    """Ray tasks, at most ``slots`` at once; ``wait`` returns whichever finishes first.

    A result of None means the worker died (the process was killed, the node was lost)."""

    def __init__(
        self,
        slots: int,
        threads: int,
        device: str,
        address: str | None,
        evaluate: Callable[[Any], Any] = evaluate_candidate,
    ):
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
        self._running: dict[Any, CandidateJob] = {}

    def submit(self, job: CandidateJob) -> None:
        self._running[self._remote.remote(job)] = job

    def busy(self) -> int:
        return len(self._running)

    def wait(self) -> tuple[CandidateJob, CandidateResult | None]:
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


def _genome(stage: str, generator: dict[str, Any], discriminator: dict[str, Any]) -> Genome:
    return from_spec(from_json(generator if stage == "generator" else discriminator))


@dataclass
class SearchRun:
    """A search ready to go on: its row, its settings, the fixed network and the engine."""

    search_id: int
    settings: SearchSettings
    base: GeneratorSpec | DiscriminatorSpec | None  # the searched network (None: classifier search)
    fixed: GeneratorSpec | DiscriminatorSpec | None  # the other network
    evolution: AgingEvolution[Any]
    fitness_by_step: dict[int, float | None]
    class_names: tuple[str, ...]
    data_fingerprint: str
    num_images: int


@dataclass(frozen=True)
class SearchResult:
    search_id: int
    finished: int
    total: int
    best: Evaluated[Genome] | None
    best_model: int | None
    plot: Path
    interrupted: bool
    best_classifier: int | None = None  # a classifier search's best, a classifiers row


def _networks(settings: SearchSettings, num_classes: int, engine: Engine) -> tuple[Any, Any]:
    """(the searched network's base spec, the fixed other network)."""
    from db import queries

    base_generator, base_discriminator = preset(settings.preset, num_classes)
    if base_generator.cell is None:
        raise GenError(f"preset {settings.preset!r} has no cells to search; use paper, small or tiny.")
    if settings.stage == "generator":
        fixed = to_spec(stage_one_discriminator(space_for(base_discriminator)), base_discriminator)
        return base_generator, fixed
    with Session(engine) as session:
        model = queries.get_model(session, settings.generator_from)
    fixed = from_json(model.generator)
    if fixed.num_classes != num_classes:
        raise GenError(
            f"model {settings.generator_from}'s generator is for {fixed.num_classes} classes; "
            f"the data has {num_classes}."
        )
    return base_discriminator, fixed


def prepare_search(
    settings: SearchSettings | None, engine: Engine, *, resume_folder: str | Path | None = None
) -> SearchRun:
    """Record a new search, or (``resume_folder``) read back the one recorded for that folder."""
    from db import queries
    from db.recording import stored_path
    from gen.data import load_image_folder

    with Session(engine) as session:
        if resume_folder is not None:
            info = queries.search_in_folder(session, stored_path(resume_folder))
            if info is None:
                raise GenError(
                    f"no search was recorded for {resume_folder} in this database; nothing to resume."
                )
            stored = {
                k: v
                for k, v in info.settings.items()
                if k in {f.name for f in dataclasses.fields(SearchSettings)}
            }
            settings = SearchSettings(**stored)
            candidates = queries.search_candidates(session, info.id)
            search_id = info.id
        else:
            assert settings is not None
            settings.validate()
            out = Path(settings.out)
            if out.exists() and any(out.iterdir()):
                raise GenError(
                    f"{out} is not empty; use --resume to continue the search there or another --out."
                )
            if queries.search_in_folder(session, stored_path(out)) is not None:
                raise GenError(f"a search was already recorded for {out}; continue it with --resume.")
            search_id = None
            candidates = []
    data = load_image_folder(settings.data)
    if resume_folder is not None and data.fingerprint != info.dataset_fingerprint:
        raise GenError(
            f"the images in {settings.data} changed since this search started; resume needs the same data."
        )
    if settings.stage == "classifier":
        from gen.search.classifier_runner import stratified_split

        stratified_split(data.labels, settings.validation, settings.seed)  # a sentence, before any row
        base = fixed = None
    else:
        base, fixed = _networks(settings, len(data.class_names), engine)
    if search_id is None:
        settings = dataclasses.replace(
            settings, out=stored_path(settings.out), data=stored_path(settings.data)
        )
        Path(settings.out).mkdir(parents=True, exist_ok=True)
        with Session(engine) as session:
            search_id = queries.create_search(
                session,
                stage=settings.stage,
                dataset_path=settings.data,
                dataset_fingerprint=data.fingerprint,
                settings={**dataclasses.asdict(settings), "total": settings.total},
                seed=settings.seed,
            )
    if settings.stage == "classifier":
        from gen.search.classifier_runner import history_of

        space: Any = ClassifierSpace()
        history = history_of(candidates)
    else:
        space = space_for(base)
        history = [
            Evaluated(c.step, _genome(settings.stage, c.generator, c.discriminator), c.parent_step, c.fitness)
            for c in candidates
        ]
    evolution = AgingEvolution(
        population_size=settings.population,
        sample_size=settings.sample,
        total=settings.total,
        seed=settings.seed,
        random_architecture=space.sample,
        mutate=lambda genome, rng: space.mutate(genome, settings.mutation, rng),
        history=history,
    )
    return SearchRun(
        search_id,
        settings,
        base,
        fixed,
        evolution,
        {c.step: c.fitness for c in candidates},
        data.class_names,
        data.fingerprint,
        len(data.labels),
    )


def candidate_folder(settings: SearchSettings, step: int) -> Path:
    return Path(settings.out) / CANDIDATES_FOLDER / f"step-{step:05d}"


def _job(run: SearchRun, candidate: Candidate[Genome], device: str, threads: int) -> CandidateJob:
    from gen.checkpoint import checkpoints_in
    from gen.train_config import TrainConfig

    settings = run.settings
    folder = candidate_folder(settings, candidate.step)
    if folder.exists():  # a candidate that was running when the search stopped: it has no row
        shutil.rmtree(folder)
    iterations = settings.budget_iters or NEVER
    config = TrainConfig(
        data=settings.data,
        out=str(folder),
        preset=settings.preset,
        iterations=iterations,
        batch_size=settings.batch_size,
        max_minutes=settings.budget_minutes,
        checkpoint_every=iterations,
        keep_checkpoints=1,
        eval_every=iterations,
        eval_images=settings.eval_images,
        seed=settings.seed,  # every candidate sees the same batches and noise: equal terms
        device=device,
    )
    searched = to_spec(candidate.architecture, run.base)
    generator, discriminator = (
        (searched, run.fixed) if settings.stage == "generator" else (run.fixed, searched)
    )
    inherit_from = None
    if candidate.parent is not None:
        parent_checkpoints = checkpoints_in(candidate_folder(settings, candidate.parent))
        inherit_from = str(parent_checkpoints[-1]) if parent_checkpoints else None
    return CandidateJob(
        candidate.step, config, to_json(generator), to_json(discriminator), inherit_from, threads
    )


def write_fitness_plot(
    fitness_by_step: dict[int, float | None],
    path: Path,
    title: str,
    ylabel: str = "normalised domain FID (lower is better)",
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


@dataclass(frozen=True)
class Stage:
    """What differs between searching GAN cells and classifiers; the loop (``evolve``) is one."""

    job: Callable[[Any], Any]  # a candidate the engine asked for -> the job a worker runs
    folder: Callable[[Any], str | Path]  # a job's folder, cleared before its retry
    failed: Callable[[int], Any]  # the result of a step whose worker died twice
    record: Callable[[Session, Any, Any, Any], int]  # (session, job, candidate, result) -> row id
    shown: Callable[[float], str]  # the best fitness as the progress bar shows it


def evolve(
    run: Any,
    engine: Engine,
    backend: Any,
    stage: Stage,
    *,
    progress: bool,
    on_candidate: Callable[[Any, int], None] | None,
) -> tuple[Any, bool]:
    """Keep every worker busy with the engine's next child, record each candidate as it
    finishes (a worker that dies costs its candidate one retry), until the search is done or
    interrupted. Returns (the best candidate, whether it was interrupted)."""
    evolution = run.evolution
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
                backend.submit(stage.job(candidate))
            if backend.busy() == 0:
                raise RuntimeError("the search has nothing to evaluate yet is not done")
            job, result = backend.wait()
            pending = {c.step: c for c in evolution.pending}
            if result is None:  # the worker died
                deaths[job.step] = deaths.get(job.step, 0) + 1
                if deaths[job.step] < 2:
                    shutil.rmtree(stage.folder(job), ignore_errors=True)  # whatever it half wrote
                    backend.submit(job)
                    continue
                result = stage.failed(job.step)
            if result.interrupted:
                raise KeyboardInterrupt
            with Session(engine) as session:
                row_id = stage.record(session, job, pending[job.step], result)
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


def run_search(
    run: SearchRun,
    engine: Engine,
    *,
    workers: int = 1,
    device: str = "cpu",
    ray_address: str | None = None,
    progress: bool = True,
    on_candidate: Callable[[Evaluated[Genome], int], None] | None = None,
    backend: InProcessWorkers | RayWorkers | None = None,
) -> SearchResult:
    """Evaluate candidates until the search is done (or Ctrl-C), recording each as it finishes.

    ``backend`` replaces the workers chosen from ``workers`` and ``ray_address``."""
    if run.settings.stage == "classifier":
        from gen.search.classifier_runner import run_classifier_search

        return run_classifier_search(
            run,
            engine,
            workers=workers,
            device=device,
            ray_address=ray_address,
            progress=progress,
            on_candidate=on_candidate,
            backend=backend,
        )
    import torch

    from db import recording
    from gen.data import load_image_folder
    from gen.evaluation import TrainingEvaluator

    settings, evolution = run.settings, run.evolution
    ray_address = ray_address or os.environ.get("RAY_ADDRESS")
    threads = max(1, (os.cpu_count() or 1) // workers)
    plot = Path(settings.out) / FITNESS_PLOT
    if not evolution.done:
        # Train (or load) the cached domain classifier once, before workers race to make it.
        TrainingEvaluator(load_image_folder(settings.data), torch.device("cpu"), 1, settings.seed)
    if backend is not None:
        pass
    elif workers == 1 and ray_address is None:
        backend = InProcessWorkers(threads)
    else:
        backend = RayWorkers(workers, threads, device, ray_address)

    def record(session: Session, job: CandidateJob, candidate: Any, result: CandidateResult) -> int:
        gan_id, _ = recording.record_candidate(
            session,
            search_id=run.search_id,
            step=job.step,
            parent_step=candidate.parent,
            config=result.config or dataclasses.asdict(job.config.resolved()),
            generator=job.generator,
            discriminator=job.discriminator,
            class_names=run.class_names,
            data_fingerprint=run.data_fingerprint,
            num_images=run.num_images,
            device=result.device or device,
            checkpoint=result.checkpoint,
            fitness=result.fitness,
            budget={**settings.budget(), "trained": result.checkpoint[1] if result.checkpoint else 0},
            seconds=result.seconds,
            worker=result.worker,
        )
        return gan_id

    stage = Stage(
        job=lambda candidate: _job(run, candidate, device, threads),
        folder=lambda job: job.config.out,
        failed=lambda step: CandidateResult(step, None, None, 0.0, "", error="its worker died twice"),
        record=record,
        shown=lambda fitness: f"best={fitness:.3f}",
    )
    best, interrupted = evolve(run, engine, backend, stage, progress=progress, on_candidate=on_candidate)
    if any(value is not None for value in run.fitness_by_step.values()):
        write_fitness_plot(run.fitness_by_step, plot, f"search {run.search_id}: {settings.stage}")
    from db import queries

    if evolution.done:
        with Session(engine) as session:
            queries.set_search_status(session, run.search_id, "done")
    best_model = None
    if best is not None:
        with Session(engine) as session:
            by_step = {c.step: c.gan_id for c in queries.search_candidates(session, run.search_id)}
        best_model = by_step.get(best.step)
    return SearchResult(
        run.search_id, evolution.finished, settings.total, best, best_model, plot, interrupted
    )
