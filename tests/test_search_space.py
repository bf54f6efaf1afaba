"""The search space: valid genomes, seeded sampling, mutation rates, specs and notation."""

from __future__ import annotations

import random

import pytest

from gen.architecture import from_json, preset, to_json
from gen.errors import GenError
from gen.networks import build
from gen.search.space import (
    NODES,
    Genome,
    SearchSpace,
    alphabet,
    from_spec,
    genome_from_notation,
    space_for,
    stage_one_discriminator,
    to_spec,
)

GENERATOR = SearchSpace("generator", stages=4)
DISCRIMINATOR = SearchSpace("discriminator", stages=4)


def test_alphabets_are_the_sources() -> None:
    assert alphabet("generator") == tuple("123456")
    assert alphabet("discriminator") == tuple("12345678")


@pytest.mark.parametrize("space", [GENERATOR, DISCRIMINATOR], ids=lambda s: s.kind)
def test_sampled_genomes_are_valid_and_cover_the_space(space: SearchSpace) -> None:
    rng = random.Random(0)
    genomes = [space.sample(rng) for _ in range(500)]
    assert all(space.is_valid(g) for g in genomes)
    assert {g.nodes for g in genomes} == set(NODES)
    assert {d for g in genomes for d in g.code.replace("-", "")} == set(alphabet(space.kind))
    assert {s for g in genomes for s in g.attention} == {1, 2, 3, 4}


def test_sampling_is_seeded() -> None:
    first = [GENERATOR.sample(random.Random(7)) for _ in range(3)]
    again = [GENERATOR.sample(random.Random(7)) for _ in range(3)]
    assert first == again
    other = [GENERATOR.sample(random.Random(s)) for s in range(20)]
    assert len(set(other)) > 10


def test_validity() -> None:
    assert GENERATOR.is_valid(Genome("generator", 4, "262-42-6", (3, 4)))
    assert not GENERATOR.is_valid(Genome("generator", 3, "55-5", ()))  # output never reached
    assert not GENERATOR.is_valid(Genome("generator", 3, "65-5", ()))  # node 1 is a dead end
    assert GENERATOR.is_valid(Genome("generator", 3, "56-5", ()))  # input straight to the output
    assert not GENERATOR.is_valid(Genome("generator", 3, "27-6", ()))  # pooling: D only
    assert DISCRIMINATOR.is_valid(Genome("discriminator", 3, "27-6", ()))
    assert not GENERATOR.is_valid(Genome("generator", 3, "22-6", (5,)))  # no stage 5
    assert not GENERATOR.is_valid(Genome("generator", 3, "226", ()))  # wrong groups


def test_mutation_rates_match_the_probability() -> None:
    """Each digit changes with probability p, N with p and each attention flag with p.

    Measured over many draws of one mutation (no redrawing); the bounds are six binomial
    standard deviations, and the streams are seeded, so the test cannot flake."""
    p = 0.3
    rng = random.Random(1)
    parent = Genome("discriminator", 4, "235-66-7", (4,))
    draws = 20_000
    digit_changes = node_changes = attention_flips = same_size = 0
    for _ in range(draws):
        child = DISCRIMINATOR.mutate_once(parent, p, rng)
        if child.nodes != parent.nodes:
            node_changes += 1
        else:
            same_size += 1
            digit_changes += sum(a != b for a, b in zip(child.code, parent.code, strict=True) if a != "-")
        attention_flips += len(set(child.attention) ^ set(parent.attention))

    def within(count: int, trials: int) -> bool:
        sigma = (p * (1 - p) / trials) ** 0.5
        return abs(count / trials - p) < 6 * sigma

    assert within(node_changes, draws)
    assert within(digit_changes, same_size * 6)
    assert within(attention_flips, draws * 4)


def test_changing_the_node_count_keeps_shared_edges() -> None:
    rng = random.Random(3)
    parent = Genome("generator", 4, "123-45-6", ())
    children = [GENERATOR.mutate_once(parent, 1e-9, rng) for _ in range(10)]  # nothing mutates
    assert all(c == parent for c in children)
    grown = GENERATOR._renumber((0, 4), 5, 4)
    assert grown == (0, 3)  # the new output inherits the old output's edge


def test_mutate_gives_a_valid_different_child_deterministically() -> None:
    parent = Genome("generator", 4, "262-42-6", (3, 4))
    children = [GENERATOR.mutate(parent, 0.05, random.Random(s)) for s in range(200)]
    assert all(c != parent and GENERATOR.is_valid(c) for c in children)
    assert children[:5] == [GENERATOR.mutate(parent, 0.05, random.Random(s)) for s in range(5)]
    with pytest.raises(GenError):
        GENERATOR.mutate(parent, 0, random.Random(0))


def test_specs_round_trip_and_build() -> None:
    base_g, base_d = preset("tiny", 2)
    genome = Genome("generator", 5, "1234-564-12-3", (1, 4))
    spec = to_spec(genome, base_g)
    assert from_json(to_json(spec)) == spec
    assert from_spec(spec) == genome
    build(spec)
    d_genome = stage_one_discriminator(space_for(base_d))
    assert d_genome.notation() == "{4, 235-66-7, [4]}"
    build(to_spec(d_genome, base_d))
    with pytest.raises(GenError):
        to_spec(genome, base_d)
    with pytest.raises(GenError):
        from_spec(preset("cpu", 2)[0])


def test_notation_round_trips() -> None:
    genome = Genome("generator", 3, "12-6", (1, 2))
    assert genome.notation() == "{3, 12-6, [1, 2]}"
    assert genome_from_notation("generator", genome.notation()) == genome
    assert genome_from_notation("generator", "{3, 12-6, []}").attention == ()
    with pytest.raises(GenError):
        genome_from_notation("generator", "{three}")
