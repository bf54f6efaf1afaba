"""The classifier search (``gen search --stage classifier``) on the aging-evolution engine.

A candidate (gen.search.space.ClassifierGenome, built by gen.search.classifier_net) trains on
a seeded, stratified training part of the data folder (``validation`` of each class held out,
at least one image) for ``budget_iters`` iterations (or ``budget_minutes``), Adam at 2e-3,
batches of 64 (``batch_size``), random flips and quarter turns as the domain CNN trains, then
batch-norm statistics recomputed for the final weights. Its fitness is its accuracy on the held
-out part; the engine minimises, so the search records and minimises the validation error
``1 - accuracy`` (ties: the earlier step wins, as everywhere in the engine). Every candidate
sees the same split, initialisation seed and batch order: equal terms. No weights are
inherited (a child's cells change shape with N and the number of cells; the budget is short).

Only this process (the driver) writes rows: a finished candidate's weights are saved in
``OUT/candidates/step-NNNNN/classifier.pt`` and recorded as a ``classifiers`` row (path,
SHA-256, architecture, accuracy, data fingerprint, the registered data set if one matches)
and a search_candidates row pointing at it, the moment it is done. A failed candidate gets a
search_candidates row without a classifier. ``--resume`` rebuilds the engine from those rows;
a failed candidate's architecture is not kept, which the engine never needs (it never joins
the population).
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from gen.errors import GenError
from gen.search.evolution import Candidate, Evaluated
from gen.search.space import ClassifierGenome

WEIGHTS_FILE = "classifier.pt"
DEFAULT_BATCH = 64
LEARNING_RATE = 2e-3
FITNESS_LABEL = "validation error, 1 - accuracy (lower is better)"


@dataclass(frozen=True)
class ClassifierJob:
    """What a worker needs to evaluate one classifier candidate (plain data: it travels to Ray)."""

    step: int
    data: str
    folder: str
    genome: dict[str, Any]
    budget_iters: int | None
    budget_minutes: float | None
    batch_size: int
    validation: float
    seed: int
    device: str
    threads: int


@dataclass(frozen=True)
class ClassifierResult:
    step: int
    weights: tuple[str, str] | None  # path, sha256
    accuracy: float | None
    iterations: int
    seconds: float
    worker: str
    architecture: dict[str, Any] | None = None
    error: str | None = None
    interrupted: bool = False

    @property
    def fitness(self) -> float | None:
        return None if self.accuracy is None else 1.0 - self.accuracy


def stratified_split(labels: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(training indices, validation indices): ``fraction`` of every class held out (at least
    one image, at least one left to train on), drawn with ``seed``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    train, validation = [], []
    for label in sorted(set(labels.tolist())):
        members = (labels == label).nonzero().flatten()
        if len(members) < 2:
            raise GenError("a classifier needs at least 2 images of every class (train and validation).")
        members = members[torch.randperm(len(members), generator=generator)]
        held_out = min(len(members) - 1, max(1, round(fraction * len(members))))
        validation.append(members[:held_out])
        train.append(members[held_out:])
    return torch.cat(train).sort().values, torch.cat(validation).sort().values


def train_candidate(job: ClassifierJob, data: Any) -> tuple[Any, float, int]:
    """(trained network in eval mode, validation accuracy, iterations trained)."""
    import torch
    import torch.nn.functional as F

    from gen.metrics import domain
    from gen.search import classifier_net

    device = torch.device(job.device)
    train_index, validation_index = stratified_split(data.labels, job.validation, job.seed)
    images, labels = data.images[train_index], data.labels[train_index]
    genome = ClassifierGenome.from_dict(job.genome)
    model = classifier_net.build(genome, len(data.class_names), job.seed).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(job.seed)
    deadline = time.monotonic() + job.budget_minutes * 60 if job.budget_minutes else math.inf
    limit = job.budget_iters or 10**9
    iteration = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(job.seed)  # dropout
        model.train()
        order = torch.randperm(len(images), generator=generator)
        position = 0
        while iteration < limit and time.monotonic() < deadline:
            if position >= len(order):
                order, position = torch.randperm(len(images), generator=generator), 0
            index = order[position : position + job.batch_size]
            position += job.batch_size
            batch = domain.to_model_input(domain.random_dihedral(images[index], generator), device)
            loss = F.cross_entropy(model(batch), labels[index].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            iteration += 1
    domain._recalibrate_batch_norm(model, images, job.batch_size, device)
    _, probabilities = domain.domain_features_and_probabilities(
        model.eval(), data.images[validation_index], device=device
    )
    accuracy = float((probabilities.argmax(1) == data.labels[validation_index].numpy()).mean())
    return model, accuracy, iteration


def evaluate_classifier(job: ClassifierJob) -> ClassifierResult:
    """Train one candidate for its budget, save it and score it (runs in a worker, writes no rows)."""
    import torch

    from gen.checkpoint import file_sha256
    from gen.data import load_image_folder
    from gen.search import classifier_net

    torch.set_num_threads(job.threads)
    started = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        data = load_image_folder(job.data)
        model, accuracy, iterations = train_candidate(job, data)
        path = Path(job.folder) / WEIGHTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        classifier_net.save(model, path)
        architecture = model.config.to_dict() | {"classes": list(data.class_names)}
    except KeyboardInterrupt:
        return ClassifierResult(
            job.step, None, None, 0, time.perf_counter() - started, worker, interrupted=True
        )
    except Exception as error:  # any failure of one candidate must not end the search
        return ClassifierResult(
            job.step, None, None, 0, time.perf_counter() - started, worker, error=str(error)
        )
    return ClassifierResult(
        job.step,
        (str(path), file_sha256(path)),
        accuracy,
        iterations,
        time.perf_counter() - started,
        worker,
        architecture,
    )


def classifier_job(
    run: Any, candidate: Candidate[ClassifierGenome], device: str, threads: int
) -> ClassifierJob:
    from gen.search.runner import candidate_folder

    settings = run.settings
    folder = candidate_folder(settings, candidate.step)
    if folder.exists():  # a candidate that was running when the search stopped: it has no row
        shutil.rmtree(folder)
    return ClassifierJob(
        step=candidate.step,
        data=settings.data,
        folder=str(folder),
        genome=candidate.architecture.to_dict(),
        budget_iters=settings.budget_iters,
        budget_minutes=settings.budget_minutes,
        batch_size=settings.batch_size or DEFAULT_BATCH,
        validation=settings.validation,
        seed=settings.seed,
        device=device,
        threads=threads,
    )


def run_classifier_search(
    run: Any,
    engine: Engine,
    *,
    workers: int = 1,
    device: str = "cpu",
    ray_address: str | None = None,
    progress: bool = True,
    on_candidate: Any = None,
    backend: Any = None,
) -> Any:
    """gen.search.runner.run_search for ``stage == "classifier"``: the same loop, classifier rows."""
    from db import queries, recording
    from gen.search.runner import (
        FITNESS_PLOT,
        InProcessWorkers,
        RayWorkers,
        SearchResult,
        Stage,
        evolve,
        write_fitness_plot,
    )

    settings, evolution = run.settings, run.evolution
    ray_address = ray_address or os.environ.get("RAY_ADDRESS")
    threads = max(1, (os.cpu_count() or 1) // workers)
    plot = Path(settings.out) / FITNESS_PLOT
    if backend is None:
        if workers == 1 and ray_address is None:
            backend = InProcessWorkers(threads, evaluate=evaluate_classifier)
        else:
            backend = RayWorkers(workers, threads, device, ray_address, evaluate=evaluate_classifier)

    def record(session: Any, job: Any, candidate: Any, result: ClassifierResult) -> int:
        classifier_id, _ = recording.record_classifier_candidate(
            session,
            search_id=run.search_id,
            step=job.step,
            parent_step=candidate.parent,
            weights=result.weights,
            architecture=result.architecture,
            accuracy=result.accuracy,
            data_path=settings.data,
            data_fingerprint=run.data_fingerprint,
            budget={**settings.budget(), "trained": result.iterations},
            seconds=result.seconds,
            worker=result.worker,
        )
        return classifier_id

    stage = Stage(
        job=lambda candidate: classifier_job(run, candidate, device, threads),
        folder=lambda job: job.folder,
        failed=lambda step: ClassifierResult(step, None, None, 0, 0.0, "", error="its worker died twice"),
        record=record,
        shown=lambda fitness: f"best_accuracy={1 - fitness:.3f}",
    )
    best, interrupted = evolve(run, engine, backend, stage, progress=progress, on_candidate=on_candidate)
    if any(value is not None for value in run.fitness_by_step.values()):
        write_fitness_plot(
            run.fitness_by_step, plot, f"search {run.search_id}: classifier", ylabel=FITNESS_LABEL
        )
    if evolution.done:
        with Session(engine) as session:
            queries.set_search_status(session, run.search_id, "done")
    best_classifier = None
    if best is not None:
        with Session(engine) as session:
            by_step = {c.step: c.classifier_id for c in queries.search_candidates(session, run.search_id)}
        best_classifier = by_step.get(best.step)
    return SearchResult(
        run.search_id,
        evolution.finished,
        settings.total,
        best,
        None,
        plot,
        interrupted,
        best_classifier=best_classifier,
    )


def history_of(candidates: list[Any]) -> list[Evaluated[ClassifierGenome | None]]:
    """The engine's history from recorded candidates (a failed one has no architecture left)."""
    return [
        Evaluated(
            c.step,
            ClassifierGenome.from_dict(c.classifier_architecture) if c.classifier_architecture else None,
            c.parent_step,
            c.fitness,
        )
        for c in candidates
    ]
