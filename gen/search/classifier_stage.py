"""The classifier stage of a search (``gen search --stage classifier``) on the search engine.

A candidate (gen.search.space.ClassifierGenome, built by gen.search.classifier_net) trains on
a seeded, stratified training part of the data folder (``validation`` of each class held out,
at least one image; gen.classifiers.stratified_split) for ``budget_iters`` iterations (or
``budget_minutes``), Adam at 2e-3, batches of 64 (``batch_size``), random flips and quarter
turns as the domain CNN trains, then batch-norm statistics recomputed for the final weights.
Its fitness is its accuracy on the held-out part; the engine minimises, so the search records
and minimises the validation error ``1 - accuracy`` (ties: the earlier step wins, as everywhere
in the engine). Every candidate sees the same split, initialisation seed and batch order: equal
terms. No weights are inherited (a child's cells change shape with N and the number of cells;
the budget is short).

Only the driver writes rows: a finished candidate's weights are saved in
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from db import searches as search_rows
from gen.search.engine import SearchRun, SearchSettings, candidate_folder
from gen.search.evolution import Candidate, Evaluated
from gen.search.space import ClassifierGenome, ClassifierSpace

if TYPE_CHECKING:
    from gen.image_folder import LabelledImages
    from gen.search.classifier_net import SearchedClassifier

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
    genome: dict[str, Any]  # ClassifierGenome.to_dict()
    budget_iters: int | None
    budget_minutes: float | None
    batch_size: int
    validation: float
    seed: int
    device: str
    threads: int

    def evaluate(self) -> ClassifierResult:
        return evaluate_classifier(self)


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


def train_candidate(job: ClassifierJob, data: LabelledImages) -> tuple[SearchedClassifier, float, int]:
    """(trained network in eval mode, validation accuracy, iterations trained)."""
    import torch
    import torch.nn.functional as F

    from gen.classifiers import stratified_split
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
    from gen.image_folder import load_image_folder
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


@dataclass(frozen=True)
class ClassifierStage:
    """Searching a classifier: genomes of gen.search.space.ClassifierSpace, classifiers rows."""

    space: ClassifierSpace = field(default_factory=ClassifierSpace)
    fitness_label: str = FITNESS_LABEL

    @classmethod
    def prepare(cls, settings: SearchSettings, data: LabelledImages) -> ClassifierStage:
        """The stage, once the data can be split (a sentence before any row when it cannot)."""
        from gen.classifiers import stratified_split

        stratified_split(data.labels, settings.validation, settings.seed)
        return cls()

    def history(
        self, candidates: list[search_rows.CandidateInfo]
    ) -> list[Evaluated[ClassifierGenome | None]]:
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

    def warm_up(self, settings: SearchSettings) -> None:
        pass  # every candidate trains from scratch on its own

    def job(
        self,
        run: SearchRun[ClassifierGenome],
        candidate: Candidate[ClassifierGenome],
        device: str,
        threads: int,
    ) -> ClassifierJob:
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

    def failed(self, step: int) -> ClassifierResult:
        return ClassifierResult(step, None, None, 0, 0.0, "", error="its worker died twice")

    def record(
        self,
        session: Session,
        run: SearchRun[ClassifierGenome],
        job: ClassifierJob,
        candidate: Candidate[ClassifierGenome],
        result: ClassifierResult,
    ) -> int | None:
        from db import searches as search_rows

        classifier_id, _ = search_rows.record_classifier_candidate(
            session,
            search_id=run.search_id,
            step=job.step,
            parent_step=candidate.parent,
            weights=result.weights,
            architecture=result.architecture,
            accuracy=result.accuracy,
            data_path=run.settings.data,
            data_fingerprint=run.data_fingerprint,
            budget={**run.settings.budget(), "trained": result.iterations},
            seconds=result.seconds,
            worker=result.worker,
        )
        return classifier_id

    def row_id(self, candidate: search_rows.CandidateInfo) -> int | None:
        return candidate.classifier_id

    def shown(self, fitness: float) -> str:
        return f"best_accuracy={1 - fitness:.3f}"
