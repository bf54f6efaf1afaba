"""Aging (regularised) evolution, Real et al. 2019, as a pure engine with ``ask``/``tell``.

The population starts as ``population_size`` random architectures; then every step samples
``sample_size`` members at random, mutates the fittest of the sample (lowest fitness; on a tie
the older, lower step), evaluates the child, adds it and retires the oldest member. The engine
never evaluates anything: ``ask()`` hands out the next candidate, ``tell()`` takes its fitness.
With several workers this is the paper's asynchronous variant: a worker that finishes asks for
the next child at once and the child is mutated from whoever is in the population then.

A "cycle" (the source's "25 cycles" next to a population of 100) is read as one turnover of the
population: ``population_size`` children, so a search evaluates
``population_size * (1 + cycles)`` candidates (Real et al.'s own ``C`` counts every model, which
cannot be meant when it is smaller than the population).

Every step's randomness comes from its own stream, seeded by (seed, step): the engine's state
is just the list of told candidates in the order they were told, so it can be rebuilt from the
database after a crash (``history``), and a step that was asked but never told is asked again.
With one worker the rebuilt engine hands out exactly the candidates the first one would have.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

Architecture = TypeVar("Architecture")


@dataclass(frozen=True)
class Candidate(Generic[Architecture]):
    step: int
    architecture: Architecture
    parent: int | None  # the parent's step; None for the random initial population


@dataclass(frozen=True)
class Evaluated(Generic[Architecture]):
    step: int
    architecture: Architecture
    parent: int | None
    fitness: float | None  # None: the candidate failed; it never joins the population


def step_random(seed: int, step: int) -> random.Random:
    """The random stream of one step (string seeds are hashed with SHA-512: stable everywhere)."""
    return random.Random(f"gen-search-{seed}-{step}")


class AgingEvolution(Generic[Architecture]):
    def __init__(
        self,
        *,
        population_size: int,
        sample_size: int,
        total: int,
        seed: int,
        random_architecture: Callable[[random.Random], Architecture],
        mutate: Callable[[Architecture, random.Random], Architecture],
        history: Iterable[Evaluated[Architecture]] = (),
    ):
        if population_size < 1 or sample_size < 1 or total < 1:
            raise ValueError("population, sample and total must be at least 1")
        self.population_size = population_size
        self.sample_size = sample_size
        self.total = total
        self.seed = seed
        self._random_architecture = random_architecture
        self._mutate = mutate
        self.history: list[Evaluated[Architecture]] = []
        self.population: deque[Evaluated[Architecture]] = deque()
        self._pending: dict[int, Candidate[Architecture]] = {}
        self._told: set[int] = set()
        self._next_step = 0
        for evaluated in history:
            self._record(evaluated)
        self._next_step = max(self._told, default=-1) + 1
        # Steps asked before a crash and never told are asked again, lowest first.
        self._reissue = sorted(set(range(self._next_step)) - self._told)

    @property
    def done(self) -> bool:
        return len(self._told) >= self.total

    @property
    def finished(self) -> int:
        return len(self._told)

    @property
    def pending(self) -> list[Candidate[Architecture]]:
        return list(self._pending.values())

    def best(self) -> Evaluated[Architecture] | None:
        """The fittest candidate ever evaluated (not only in the current population)."""
        scored = [e for e in self.history if e.fitness is not None]
        return min(scored, key=lambda e: (e.fitness, e.step)) if scored else None

    def _initial_phase(self) -> bool:
        """Whether some initial member is still unevaluated: children must wait for all of them."""
        return any(step not in self._told for step in range(min(self.population_size, self.total)))

    def ask(self) -> Candidate[Architecture] | None:
        """The next candidate to evaluate, or None when there is none to hand out now (all
        steps are handed out, or children must wait for the initial population)."""
        if self._reissue:
            step = self._reissue[0]
        elif self._next_step < self.total:
            step = self._next_step
        else:
            return None
        rng = step_random(self.seed, step)
        if step < self.population_size:
            candidate = Candidate(step, self._random_architecture(rng), None)
        else:
            if self._initial_phase():
                return None
            if not self.population:
                raise RuntimeError("every candidate of the initial population failed")
            sample = rng.sample(list(self.population), min(self.sample_size, len(self.population)))
            parent = min(sample, key=lambda e: (e.fitness, e.step))
            candidate = Candidate(step, self._mutate(parent.architecture, rng), parent.step)
        if self._reissue:
            self._reissue.pop(0)
        else:
            self._next_step += 1
        self._pending[step] = candidate
        return candidate

    def tell(self, step: int, fitness: float | None) -> Evaluated[Architecture]:
        """Record a pending candidate's fitness (None when it failed); returns the record."""
        candidate = self._pending.pop(step)
        evaluated = Evaluated(candidate.step, candidate.architecture, candidate.parent, fitness)
        self._record(evaluated)
        return evaluated

    def _record(self, evaluated: Evaluated[Architecture]) -> None:
        if evaluated.step in self._told:
            raise ValueError(f"step {evaluated.step} was already told")
        self._told.add(evaluated.step)
        self.history.append(evaluated)
        if evaluated.fitness is not None:
            self.population.append(evaluated)
            if len(self.population) > self.population_size:
                self.population.popleft()  # aging: the oldest goes, however fit
