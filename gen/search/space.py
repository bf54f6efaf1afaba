"""The search space of the source's architecture search: cells in the {N, C, [ATTN]} encoding.

An architecture (a :class:`Genome`) is one cell, used at every stage of a network, plus the
stages followed by self-attention (docs/source-method.md section 3):

- ``N``, the nodes of the cell, is 3, 4 or 5;
- ``C`` holds one operation digit per edge, grouped by source node (``"235-66-7"`` for N = 4);
  the generator's alphabet is 1-6 (conv1x1, conv3x3, conv5x5, separable conv3x3, zero, skip),
  the discriminator's adds 7 (max-pool 3x3) and 8 (average-pool 3x3), as in gen.architecture;
- ``ATTN`` lists the 1-based stages followed by self-attention (any subset of the network's
  stages; the topology, widths and number of stages are the preset's).

How the source's ambiguities are resolved here:

- Valid: a cell is valid when its output node is reachable from its input through non-zero
  edges (a cell whose output is always zero only adds a constant and wastes an evaluation).
  A child must also differ from its parent; a mutation that changes nothing is redrawn.
- Mutation: every operation digit is redrawn with probability ``p`` (always to a different
  operation), ``N`` changes with probability ``p`` to another value (edges that exist at both
  sizes keep their operation, new edges are drawn uniformly), and every stage's attention flag
  flips with probability ``p``. A result that is invalid or equal to the parent is drawn again
  from the same random stream, so a seed still gives one child.
- Weight inheritance and what a "cycle" is belong to the evolution and the GAN stage
  (gen.search.evolution, gen.search.gan_stage).

The classifier search's space (:class:`ClassifierGenome`, :class:`ClassifierSpace`, at the end
of this module) adds a macro level to the cell: the number of cells (1..6) and the cells
followed by pooling, written ``{N, C, cells=5, pool=[1]}``; its network is
gen.search.classifier_net and its stage gen.search.classifier_stage.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Literal

from gen.architecture import (
    DISCRIMINATOR_OPERATIONS,
    GENERATOR_OPERATIONS,
    CellSpec,
    DiscriminatorSpec,
    GeneratorSpec,
)
from gen.errors import GenError

NODES = (3, 4, 5)
ZERO = "5"
MAX_REDRAWS = 10_000  # a valid, different child exists for every genome; this only bounds a bug
Kind = Literal["generator", "discriminator"]


@dataclass(frozen=True)
class Genome:
    """One point of the search space: a cell and the stages followed by self-attention."""

    kind: Kind
    nodes: int
    code: str
    attention: tuple[int, ...]

    @property
    def cell(self) -> CellSpec:
        return CellSpec(nodes=self.nodes, code=self.code)

    def notation(self) -> str:
        """The source's notation, e.g. ``{3, 12-6, [1, 2]}``."""
        return f"{{{self.nodes}, {self.code}, [{', '.join(map(str, self.attention))}]}}"


def alphabet(kind: Kind) -> tuple[str, ...]:
    return tuple(sorted(GENERATOR_OPERATIONS if kind == "generator" else DISCRIMINATOR_OPERATIONS))


def _edges(nodes: int) -> list[tuple[int, int]]:
    """(source, target) per digit, in the order the code writes them."""
    return [(source, target) for source in range(nodes - 1) for target in range(source + 1, nodes)]


def _code(nodes: int, digits: dict[tuple[int, int], str]) -> str:
    groups = [
        "".join(digits[(source, target)] for target in range(source + 1, nodes))
        for source in range(nodes - 1)
    ]
    return "-".join(groups)


def _digits(genome: Genome) -> dict[tuple[int, int], str]:
    return dict(zip(_edges(genome.nodes), genome.code.replace("-", ""), strict=True))


@dataclass(frozen=True)
class SearchSpace:
    """The cells of one network kind on a topology of ``stages`` stages."""

    kind: Kind
    stages: int

    def is_valid(self, genome: Genome) -> bool:
        if genome.kind != self.kind or genome.nodes not in NODES:
            return False
        digits = genome.code.replace("-", "")
        if len(digits) != len(_edges(genome.nodes)) or not set(digits) <= set(alphabet(self.kind)):
            return False
        try:
            genome.cell  # noqa: B018 - CellSpec checks the digit groups
        except GenError:
            return False
        if list(genome.attention) != sorted(set(genome.attention)):
            return False
        if any(not 1 <= stage <= self.stages for stage in genome.attention):
            return False
        reachable = {0}
        for (source, target), digit in _digits(genome).items():  # sources come in increasing order
            if source in reachable and digit != ZERO:
                reachable.add(target)
        return genome.nodes - 1 in reachable

    def sample(self, rng: random.Random) -> Genome:
        """A uniformly drawn valid genome (rejection sampling)."""
        operations = alphabet(self.kind)
        for _ in range(MAX_REDRAWS):
            nodes = rng.choice(NODES)
            digits = {edge: rng.choice(operations) for edge in _edges(nodes)}
            attention = tuple(stage for stage in range(1, self.stages + 1) if rng.random() < 0.5)
            genome = Genome(self.kind, nodes, _code(nodes, digits), attention)
            if self.is_valid(genome):
                return genome
        raise RuntimeError("no valid genome drawn")  # pragma: no cover - probability ~0

    def mutate_once(self, parent: Genome, probability: float, rng: random.Random) -> Genome:
        """One mutation draw, valid or not (what :meth:`mutate` redraws; tests measure its rates)."""
        operations = alphabet(self.kind)
        nodes = parent.nodes
        if rng.random() < probability:
            nodes = rng.choice([n for n in NODES if n != parent.nodes])
        old = _digits(parent)
        digits = {}
        for edge in _edges(nodes):
            # An edge keeps its operation when the cell had it: (source, target) with the
            # output renumbered as the last node, so the output stays the output.
            digit = old.get(self._renumber(edge, nodes, parent.nodes))
            if digit is None:
                digit = rng.choice(operations)
            elif rng.random() < probability:
                digit = rng.choice([op for op in operations if op != digit])
            digits[edge] = digit
        attention = set(parent.attention)
        for stage in range(1, self.stages + 1):
            if rng.random() < probability:
                attention ^= {stage}
        return Genome(self.kind, nodes, _code(nodes, digits), tuple(sorted(attention)))

    @staticmethod
    def _renumber(edge: tuple[int, int], nodes: int, old_nodes: int) -> tuple[int, int]:
        source, target = edge
        if target == nodes - 1:
            target = old_nodes - 1
        return source, target

    def mutate(self, parent: Genome, probability: float, rng: random.Random) -> Genome:
        """A valid child that differs from ``parent``: :meth:`mutate_once` drawn until it is."""
        if not 0 < probability <= 1:
            raise GenError("--mutation must be a probability above 0 and at most 1.")
        for _ in range(MAX_REDRAWS):
            child = self.mutate_once(parent, probability, rng)
            if child != parent and self.is_valid(child):
                return child
        raise RuntimeError(f"no valid child of {parent.notation()} drawn")  # pragma: no cover


def space_for(spec: GeneratorSpec | DiscriminatorSpec) -> SearchSpace:
    """The search space over cells of ``spec``'s topology."""
    return SearchSpace(kind=spec.kind, stages=len(spec.channels) - 1)


def to_spec(genome: Genome, base: GeneratorSpec | DiscriminatorSpec) -> GeneratorSpec | DiscriminatorSpec:
    """``base`` (a preset's network) with the genome's cell and attention."""
    if genome.kind != base.kind:
        raise GenError(f"a {genome.kind} cell cannot go into a {base.kind}.")
    return dataclasses.replace(base, cell=genome.cell, attention=genome.attention)


def from_spec(spec: GeneratorSpec | DiscriminatorSpec) -> Genome:
    """The genome of a network built from cells (GenError for the plain, cell-less presets)."""
    if spec.cell is None:
        raise GenError(f"this {spec.kind} has no cells, so it is not a point of the search space.")
    return Genome(spec.kind, spec.cell.nodes, spec.cell.code, tuple(spec.attention))


def genome_from_notation(kind: Kind, text: str) -> Genome:
    """Parse ``{4, 235-66-7, [4]}`` (the source's notation)."""
    body = text.strip().removeprefix("{").removesuffix("}")
    try:
        nodes_text, code, attention_text = (part.strip() for part in body.split(",", 2))
        inner = attention_text.strip().removeprefix("[").removesuffix("]")
        attention = tuple(int(value) for value in inner.split(",") if value.strip())
        return Genome(kind, int(nodes_text), code, attention)
    except ValueError:
        raise GenError(f"{text!r} is not an architecture in the {{N, C, [ATTN]}} notation.") from None


def stage_one_discriminator(space: SearchSpace) -> Genome:
    """The source's fixed discriminator of stage 1: 4 nodes, cell 235-66-7, attention after the
    last cell."""
    return Genome("discriminator", 4, "235-66-7", (space.stages,))


# ---------------------------------------------------------------------------------------------
# The classifier search (docs/source-method.md section 3: "micro (cell) and macro (number of cells,
# where to pool) stages"; the source's best: 5 cells with pooling after cell 1, 32 channels).
#
# Micro: one cell in the {N, C} notation with the discriminator's alphabet (1-8: convolutions,
# separable convolution, zero, skip, max- and average-pool), used for every cell. Macro: the
# number of cells (1..6) and the cells followed by a 2x2 pooling (any subset of 1..cells, at
# most MAX_POOLS so a 64x64 input keeps at least 4x4). The source ran micro and macro as two
# stages; here both are one genome searched together by the same engine, which needs no second
# command and reaches the same points. Written ``{N, C, cells=5, pool=[1]}``.

CLASSIFIER_CELLS = (1, 2, 3, 4, 5, 6)
MAX_POOLS = 4


@dataclass(frozen=True)
class ClassifierGenome:
    """A classifier architecture: the cell (micro) and the cells and pooling positions (macro)."""

    nodes: int
    code: str
    cells: int
    pool: tuple[int, ...]
    kind: str = "classifier"

    @property
    def cell(self) -> CellSpec:
        return CellSpec(nodes=self.nodes, code=self.code)

    def notation(self) -> str:
        """E.g. ``{4, 235-66-7, cells=5, pool=[1]}``."""
        return f"{{{self.nodes}, {self.code}, cells={self.cells}, pool=[{', '.join(map(str, self.pool))}]}}"

    def to_dict(self) -> dict:
        return {"nodes": self.nodes, "code": self.code, "cells": self.cells, "pool": list(self.pool)}

    @classmethod
    def from_dict(cls, data: dict) -> ClassifierGenome:
        return cls(
            int(data["nodes"]), str(data["code"]), int(data["cells"]), tuple(int(p) for p in data["pool"])
        )


@dataclass(frozen=True)
class ClassifierSpace:
    """Classifier genomes: a discriminator-alphabet cell, 1..6 cells, pooling positions."""

    def is_valid(self, genome: ClassifierGenome) -> bool:
        cell = Genome("discriminator", genome.nodes, genome.code, ())
        if not SearchSpace("discriminator", 1).is_valid(cell):
            return False
        if genome.cells not in CLASSIFIER_CELLS or len(genome.pool) > MAX_POOLS:
            return False
        if list(genome.pool) != sorted(set(genome.pool)):
            return False
        return all(1 <= cell_index <= genome.cells for cell_index in genome.pool)

    def sample(self, rng: random.Random) -> ClassifierGenome:
        """A uniformly drawn valid genome (rejection sampling)."""
        cells_space = SearchSpace("discriminator", 1)
        for _ in range(MAX_REDRAWS):
            cell = cells_space.sample(rng)
            cells = rng.choice(CLASSIFIER_CELLS)
            pool = tuple(index for index in range(1, cells + 1) if rng.random() < 0.5)
            genome = ClassifierGenome(cell.nodes, cell.code, cells, pool)
            if self.is_valid(genome):
                return genome
        raise RuntimeError("no valid classifier genome drawn")  # pragma: no cover

    def mutate_once(
        self, parent: ClassifierGenome, probability: float, rng: random.Random
    ) -> ClassifierGenome:
        """One mutation draw, valid or not: the cell as :meth:`SearchSpace.mutate_once` (each
        digit and N with probability p), the number of cells with probability p (to another
        value; pooling positions past the new last cell are dropped), each pooling flag
        (cells 1..cells) flips with probability p."""
        cell = SearchSpace("discriminator", 1).mutate_once(
            Genome("discriminator", parent.nodes, parent.code, ()), probability, rng
        )
        cells = parent.cells
        if rng.random() < probability:
            cells = rng.choice([n for n in CLASSIFIER_CELLS if n != parent.cells])
        pool = {index for index in parent.pool if index <= cells}
        for index in range(1, cells + 1):
            if rng.random() < probability:
                pool ^= {index}
        return ClassifierGenome(cell.nodes, cell.code, cells, tuple(sorted(pool)))

    def mutate(self, parent: ClassifierGenome, probability: float, rng: random.Random) -> ClassifierGenome:
        """A valid child that differs from ``parent``: :meth:`mutate_once` drawn until it is."""
        if not 0 < probability <= 1:
            raise GenError("--mutation must be a probability above 0 and at most 1.")
        for _ in range(MAX_REDRAWS):
            child = self.mutate_once(parent, probability, rng)
            if child != parent and self.is_valid(child):
                return child
        raise RuntimeError(f"no valid child of {parent.notation()} drawn")  # pragma: no cover
