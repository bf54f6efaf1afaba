"""gen.architecture: cell encodings, presets, and the JSON the database stores."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from gen.architecture import (
    PAPER_DISCRIMINATOR_CELL,
    PAPER_GENERATOR_CELL,
    PRESETS,
    CellSpec,
    DiscriminatorSpec,
    GeneratorSpec,
    from_json,
    preset,
    to_json,
)
from gen.errors import GenError
from gen.networks import architecture_json, build


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Building the paper networks is a lot of arithmetic; on a shared 2-core machine one thread
    is several times faster than two fighting other processes for the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize(
    ("nodes", "code"),
    [
        (4, "26-42-6"),  # first group one digit short
        (4, "262-42"),  # a group missing
        (4, "262-42-6-6"),  # a group too many
        (3, "262-42-6"),  # a 4-node code for 3 nodes
        (2, "2"),  # too few nodes
        (6, "22222-2222-222-22-2"),  # too many nodes
        (4, "262426"),  # no dashes
    ],
)
def test_cell_code_must_fit_its_node_count(nodes: int, code: str) -> None:
    with pytest.raises(GenError, match="does not fit"):
        CellSpec(nodes=nodes, code=code)


@pytest.mark.parametrize("code", ["292-42-6", "062-42-6", "2a2-42-6"])
def test_unknown_operation_digits_are_refused(code: str) -> None:
    with pytest.raises(GenError, match="unknown operation digits"):
        CellSpec(nodes=4, code=code)


def test_paper_generator_cell_edges() -> None:
    assert PAPER_GENERATOR_CELL.edges() == [
        (0, 1, "conv3x3"),
        (0, 2, "skip"),
        (0, 3, "conv3x3"),
        (1, 2, "separable_conv3x3"),
        (1, 3, "conv3x3"),
        (2, 3, "skip"),
    ]


def test_paper_discriminator_cell_edges() -> None:
    assert PAPER_DISCRIMINATOR_CELL.edges() == [
        (0, 1, "conv3x3"),
        (0, 2, "skip"),
        (0, 3, "zero"),
        (0, 4, "skip"),
        (1, 2, "separable_conv3x3"),
        (1, 3, "zero"),
        (1, 4, "zero"),
        (2, 3, "avg_pool3x3"),
        (2, 4, "avg_pool3x3"),
        (3, 4, "skip"),
    ]


def test_edges_cover_every_pair_of_nodes_once() -> None:
    cell = CellSpec(nodes=5, code="1234-567-81-2")
    pairs = [(source, target) for source, target, _ in cell.edges()]
    assert pairs == [(s, t) for s in range(5) for t in range(s + 1, 5)]


def test_encoding_strings() -> None:
    generator, discriminator = preset("paper", 4)
    assert generator.encoding() == "{4, 262-42-6, [3, 4]}"
    assert discriminator.encoding() == "{5, 2656-455-88-6, [1, 2]}"
    dcgan_generator, dcgan_discriminator = preset("dcgan", 4)
    assert dcgan_generator.encoding() == dcgan_discriminator.encoding() == "no cells"
    no_attention = GeneratorSpec(3, (8, 8), CellSpec(3, "26-6"))
    assert no_attention.encoding() == "{3, 26-6, []}"


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_round_trips_through_json(name: str) -> None:
    for spec in preset(name, 5):
        stored = to_json(spec)
        assert json.loads(json.dumps(stored)) == stored  # plain JSON values only
        assert from_json(stored) == spec
        assert from_json(json.dumps(stored)) == spec  # the JSON text is accepted too
        assert stored["num_classes"] == 5
        assert stored["kind"] in ("generator", "discriminator")


@pytest.mark.parametrize("name", PRESETS)
def test_network_built_from_json_reports_the_same_json(name: str) -> None:
    for spec in preset(name, 3):
        stored = to_json(spec)
        assert architecture_json(build(stored)) == stored


def test_presets_have_a_64_pixel_generator_and_refuse_unknown_names() -> None:
    for name in PRESETS:
        generator, discriminator = preset(name, 2)
        assert generator.image_size == 64
        assert isinstance(discriminator, DiscriminatorSpec)
    with pytest.raises(GenError, match="unknown preset 'huge'"):
        preset("huge", 4)


def test_from_json_refuses_an_unknown_kind() -> None:
    stored = to_json(preset("tiny", 4)[0])
    stored["kind"] = "critic"
    with pytest.raises(GenError, match="unknown kind 'critic'"):
        from_json(stored)
    del stored["kind"]
    with pytest.raises(GenError, match="unknown kind None"):
        from_json(stored)


@pytest.mark.parametrize("attention", [[0], [5], [1, 9], [-1]])
def test_from_json_refuses_attention_outside_the_stages(attention: list[int]) -> None:
    stored = to_json(preset("tiny", 4)[0])  # five channel widths: stages 1..4
    stored["attention"] = attention
    with pytest.raises(GenError, match="must name stages 1..4"):
        from_json(stored)


def test_attention_without_cells_is_a_residual_stage() -> None:
    generator, discriminator = preset("cpu", 4)
    assert generator.cell is None and generator.attention == (3,)
    assert generator.encoding() == "no cells, attention [3]"
    network = build(generator)
    assert network.stages[2].attention is not None and network.stages[2].cell is None
    assert all(stage.attention is None for index, stage in enumerate(network.stages) if index != 2)
    stored = to_json(discriminator)
    stored["attention"] = [5]  # four downsamplings: stages 1..4
    with pytest.raises(GenError, match="must name stages 1..4"):
        from_json(stored)


def test_specs_stored_before_the_new_fields_read_as_before() -> None:
    """JSON written before spectral_norm, norm, head and output existed builds the same networks."""
    for spec in preset("tiny", 4):
        stored = to_json(spec)
        for name in ("spectral_norm", "norm", "head", "output"):
            stored.pop(name, None)
        assert from_json(stored) == spec


def test_the_generator_output_is_part_of_the_spec() -> None:
    generator_spec, _ = preset("cpu", 4)
    for output in ("tanh", "linear", "clamp"):
        changed = dataclasses.replace(generator_spec, output=output)
        assert from_json(to_json(changed)) == changed
    stored = to_json(generator_spec)
    stored["output"] = "sigmoid"
    with pytest.raises(GenError, match="output must be one of tanh, linear, clamp, not 'sigmoid'"):
        from_json(stored)


def test_the_minibatch_std_group_is_part_of_the_discriminator_spec() -> None:
    _, discriminator_spec = preset("cpu", 4)
    changed = dataclasses.replace(discriminator_spec, minibatch_std=4)
    assert from_json(to_json(changed)) == changed
    stored = to_json(discriminator_spec)
    del stored["minibatch_std"]  # JSON written before the field existed: off
    assert from_json(stored).minibatch_std == 0
    for group in (1, 65, -4, 2.5, True):
        stored["minibatch_std"] = group
        with pytest.raises(GenError, match="minibatch_std must be 0 .off. or a group of 2 to 64 images"):
            from_json(stored)
    stored = to_json(preset("began", 4)[1])
    stored["minibatch_std"] = 4
    with pytest.raises(GenError, match="minibatch_std needs a projection head"):
        from_json(stored)


@pytest.mark.parametrize("code", ["272-42-6", "262-82-6"])
def test_from_json_refuses_pooling_in_a_generator_cell(code: str) -> None:
    stored = to_json(preset("tiny", 4)[0])
    stored["cell"] = {"nodes": 4, "code": code}
    with pytest.raises(GenError, match="operations a generator cannot have"):
        from_json(stored)
    # The same cell is fine in a discriminator.
    discriminator = to_json(preset("tiny", 4)[1])
    discriminator["cell"] = {"nodes": 4, "code": code}
    assert from_json(discriminator).cell == CellSpec(4, code)


def test_from_json_refuses_a_bad_cell_code() -> None:
    stored = to_json(preset("tiny", 4)[0])
    stored["cell"] = {"nodes": 4, "code": "26-42-6"}
    with pytest.raises(GenError, match="does not fit"):
        from_json(stored)


@pytest.mark.parametrize(
    "change",
    [
        {"num_classes": 1},
        {"channels": [64]},
        {"channels": [64, 0, 32, 16, 16]},
        {"unexpected": 1},
        {"upsample": None, "noise_dim": 128, "extra": True},
    ],
)
def test_from_json_refuses_what_is_not_a_generator(change: dict) -> None:
    stored = {**to_json(preset("tiny", 4)[0]), **change}
    with pytest.raises(GenError):
        from_json(stored)


@pytest.mark.parametrize("missing", ["num_classes", "channels"])
def test_from_json_refuses_a_missing_field_with_a_gen_error(missing: str) -> None:
    stored = to_json(preset("tiny", 4)[0])
    del stored[missing]
    with pytest.raises(GenError, match="does not describe a generator"):
        from_json(stored)


def test_from_json_without_a_cell_means_no_cells() -> None:
    stored = to_json(preset("tiny", 4)[0])
    del stored["cell"]
    spec = from_json(stored)  # attention stays, as residual stages without a cell
    assert spec.cell is None and spec.attention == (3, 4)
    stored["attention"] = []
    assert from_json(stored).cell is None


def test_generator_padding_is_part_of_the_spec_and_old_specs_pad_with_zeros() -> None:
    from gen.networks import build

    generator_spec, _ = preset("reference", 4)
    reflect = dataclasses.replace(generator_spec, padding="reflect")
    assert from_json(to_json(reflect)) == reflect
    old = to_json(generator_spec)
    del old["padding"]
    assert from_json(old).padding == "zeros"
    modes = {
        m.padding_mode
        for m in build(reflect).modules()
        if isinstance(m, torch.nn.Conv2d) and m.padding != (0, 0)
    }
    assert modes == {"reflect"}
    image = build(reflect)(torch.randn(2, reflect.noise_dim), torch.tensor([0, 1]))
    assert image.shape == (2, 3, 64, 64)
