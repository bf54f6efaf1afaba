"""Aging evolution with a fake fitness: order, aging, asynchrony and rebuilding from history."""

from __future__ import annotations

import random

from gen.search.evolution import AgingEvolution, Evaluated


def engine(history=(), population=4, sample=2, total=12, seed=0) -> AgingEvolution[int]:
    # Architectures are integers; a mutation adds a small random step; fitness is |x - 50|.
    return AgingEvolution(
        population_size=population,
        sample_size=sample,
        total=total,
        seed=seed,
        random_architecture=lambda rng: rng.randrange(100),
        mutate=lambda x, rng: x + rng.choice([-3, -2, -1, 1, 2, 3]),
        history=history,
    )


def fitness(x: int) -> float:
    return float(abs(x - 50))


def run_serially(evolution: AgingEvolution[int], stop_after: int | None = None) -> list[tuple]:
    asked = []
    while not evolution.done and (stop_after is None or evolution.finished < stop_after):
        candidate = evolution.ask()
        asked.append((candidate.step, candidate.architecture, candidate.parent))
        evolution.tell(candidate.step, fitness(candidate.architecture))
    return asked


def test_initial_population_then_children_of_the_fittest_of_a_sample() -> None:
    evolution = engine()
    asked = run_serially(evolution)
    assert [step for step, _, _ in asked] == list(range(12))
    assert all(parent is None for _, _, parent in asked[:4])
    assert all(parent is not None and parent < step for step, _, parent in asked[4:])
    # Replay the engine's own rule: the parent is the fittest of a sample of the population then.
    population: list[tuple[int, int]] = []
    for step, architecture, parent in asked:
        if parent is not None:
            members = {s: a for s, a in population}
            assert parent in members
            rng = random.Random(f"gen-search-0-{step}")
            sample = rng.sample(population, 2)
            assert parent == min(sample, key=lambda m: (fitness(m[1]), m[0]))[0]
        population.append((step, architecture))
        population = population[-4:]


def test_aging_retires_the_oldest_even_when_it_is_the_fittest() -> None:
    evolution = AgingEvolution(
        population_size=2,
        sample_size=2,
        total=5,
        seed=0,
        random_architecture=lambda rng: 0,
        mutate=lambda x, rng: x + 1,
    )
    for fitness_value in (0.0, 5.0, 6.0, 7.0):
        candidate = evolution.ask()
        evolution.tell(candidate.step, fitness_value)
    assert [m.step for m in evolution.population] == [2, 3]
    assert evolution.best().step == 0  # still the best ever, though retired


def test_ties_break_towards_the_older_member() -> None:
    evolution = AgingEvolution(
        population_size=3,
        sample_size=3,
        total=4,
        seed=0,
        random_architecture=lambda rng: 0,
        mutate=lambda x, rng: x + 1,
    )
    for _ in range(3):
        evolution.tell(evolution.ask().step, 1.0)
    assert evolution.ask().parent == 0


def test_children_wait_for_the_initial_population_and_workers_run_asynchronously() -> None:
    evolution = engine(population=3, total=6)
    first = [evolution.ask() for _ in range(3)]
    assert evolution.ask() is None  # a child needs the whole initial population evaluated
    for candidate in first[:2]:
        evolution.tell(candidate.step, fitness(candidate.architecture))
    assert evolution.ask() is None
    evolution.tell(first[2].step, fitness(first[2].architecture))
    a, b = evolution.ask(), evolution.ask()  # two workers busy at once
    evolution.tell(b.step, 1.0)  # the later one finishes first
    c = evolution.ask()
    assert c.step == 5 and evolution.ask() is None
    evolution.tell(a.step, 2.0)
    evolution.tell(c.step, 3.0)
    assert evolution.done
    assert [e.step for e in evolution.history] == [0, 1, 2, 4, 3, 5]


def test_failed_candidates_never_join_the_population() -> None:
    evolution = engine(population=2, total=4)
    evolution.tell(evolution.ask().step, None)
    evolution.tell(evolution.ask().step, 3.0)
    child = evolution.ask()
    assert child.parent == 1
    assert [m.step for m in evolution.population] == [1]


def test_rebuilt_engine_continues_the_same_sequence() -> None:
    whole = run_serially(engine(seed=5))
    first = engine(seed=5)
    asked = run_serially(first, stop_after=7)
    interrupted = first.ask()  # asked, then the process died before it was told
    assert interrupted.step == 7
    resumed = engine(history=first.history, seed=5)
    assert resumed.finished == 7
    rest = run_serially(resumed)
    assert asked + rest == whole
    assert resumed.done


def test_rebuild_asks_again_only_the_unfinished_steps() -> None:
    history = [Evaluated(0, 10, None, 1.0), Evaluated(2, 30, None, 2.0), Evaluated(1, 20, None, None)]
    evolution = engine(history=history, population=4, total=6)
    assert evolution.ask().step == 3
    assert evolution.ask() is None
    assert [m.step for m in evolution.population] == [0, 2]
