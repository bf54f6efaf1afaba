"""The GAN stages of a search (``generator`` and ``discriminator``): cells of one network, the
other kept fixed, each candidate a short GAN training run.

A candidate's evaluation is an ordinary short ``gen.train.train`` run of ``budget_iters``
iterations (or ``budget_minutes``) in ``OUT/candidates/step-NNNNN``, starting from its parent's
weights wherever a tensor keeps its name and shape (weight inheritance: the source lets the
best candidate's weights carry over to the next cycle; here every child inherits from its
parent, which is what the source's reading needs once workers run asynchronously). Its fitness
is the normalised domain FID of its EMA generator at the end, computed by the evaluation the
training loop uses for ``--eval-every`` (``gen.evaluation``: the domain CNN of ``gen report``,
z-scored with the real training images); lower is better. A candidate that raises or scores
NaN gets no fitness and never joins the population.

Stage ``generator`` keeps the source's stage-1 discriminator fixed; stage ``discriminator``
keeps the generator of the model ``generator_from``. Every finished candidate becomes a model
(gan_architectures and its training rows) and a search_candidates row.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db import generators as generator_rows
from db import searches as search_rows
from gen.architecture import DiscriminatorSpec, GeneratorSpec, from_json, preset, to_json
from gen.errors import GenError
from gen.search.engine import FID_LABEL, SearchRun, SearchSettings, candidate_folder
from gen.search.evolution import Candidate, Evaluated
from gen.search.space import Genome, SearchSpace, from_spec, space_for, stage_one_discriminator, to_spec

if TYPE_CHECKING:
    from gen.train_config import TrainConfig

NEVER = 10**9  # iterations when the budget is in minutes


@dataclass(frozen=True)
class CandidateJob:
    """What a worker needs to evaluate one candidate (plain data: it travels to Ray workers)."""

    step: int
    config: TrainConfig
    generator: dict[str, Any]  # the network's JSON (gen.architecture.to_json)
    discriminator: dict[str, Any]
    inherit_from: str | None  # the parent's checkpoint file
    threads: int

    @property
    def folder(self) -> str:
        return self.config.out

    def evaluate(self) -> CandidateResult:
        return evaluate_candidate(self)


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


@dataclass(frozen=True)
class GanStage:
    """Searching the cells of ``name`` (generator or discriminator), the other network fixed."""

    name: str
    base: GeneratorSpec | DiscriminatorSpec  # the searched network as the preset builds it
    fixed: GeneratorSpec | DiscriminatorSpec  # the other network
    fitness_label: str = FID_LABEL

    @classmethod
    def prepare(cls, settings: SearchSettings, num_classes: int, engine: Engine) -> GanStage:
        """The stage of ``settings`` for data of ``num_classes`` classes (a sentence when the
        preset has no cells or the kept generator is for other classes)."""
        base_generator, base_discriminator = preset(settings.preset, num_classes)
        if base_generator.cell is None:
            raise GenError(f"preset {settings.preset!r} has no cells to search; use paper, small or tiny.")
        if settings.stage == "generator":
            fixed = to_spec(stage_one_discriminator(space_for(base_discriminator)), base_discriminator)
            return cls(settings.stage, base_generator, fixed)
        with Session(engine) as session:
            model = generator_rows.get_model(session, settings.generator_from)
        fixed = from_json(model.generator)
        if fixed.num_classes != num_classes:
            raise GenError(
                f"model {settings.generator_from}'s generator is for {fixed.num_classes} classes; "
                f"the data has {num_classes}."
            )
        return cls(settings.stage, base_discriminator, fixed)

    @property
    def space(self) -> SearchSpace:
        return space_for(self.base)

    def history(self, candidates: list[search_rows.CandidateInfo]) -> list[Evaluated[Genome]]:
        return [
            Evaluated(c.step, self._genome(c.generator, c.discriminator), c.parent_step, c.fitness)
            for c in candidates
        ]

    def _genome(self, generator: dict[str, Any], discriminator: dict[str, Any]) -> Genome:
        return from_spec(from_json(generator if self.name == "generator" else discriminator))

    def warm_up(self, settings: SearchSettings) -> None:
        import torch

        from gen.evaluation import TrainingEvaluator
        from gen.image_folder import load_image_folder

        # Train (or load) the cached domain classifier once, before workers race to make it.
        TrainingEvaluator(load_image_folder(settings.data), torch.device("cpu"), 1, settings.seed)

    def job(
        self, run: SearchRun[Genome], candidate: Candidate[Genome], device: str, threads: int
    ) -> CandidateJob:
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
        searched = to_spec(candidate.architecture, self.base)
        generator, discriminator = (
            (searched, self.fixed) if self.name == "generator" else (self.fixed, searched)
        )
        inherit_from = None
        if candidate.parent is not None:
            parent_checkpoints = checkpoints_in(candidate_folder(settings, candidate.parent))
            inherit_from = str(parent_checkpoints[-1]) if parent_checkpoints else None
        return CandidateJob(
            candidate.step, config, to_json(generator), to_json(discriminator), inherit_from, threads
        )

    def failed(self, step: int) -> CandidateResult:
        return CandidateResult(step, None, None, 0.0, "", error="its worker died twice")

    def record(
        self,
        session: Session,
        run: SearchRun[Genome],
        job: CandidateJob,
        candidate: Candidate[Genome],
        result: CandidateResult,
    ) -> int:
        from db import searches as search_rows

        model_id, _ = search_rows.record_candidate(
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
            device=result.device or job.config.device,
            checkpoint=result.checkpoint,
            fitness=result.fitness,
            budget={**run.settings.budget(), "trained": result.checkpoint[1] if result.checkpoint else 0},
            seconds=result.seconds,
            worker=result.worker,
        )
        return model_id

    def row_id(self, candidate: search_rows.CandidateInfo) -> int | None:
        return candidate.gan_id

    def shown(self, fitness: float) -> str:
        return f"best={fitness:.3f}"
