"""gen.networks and gen.diffaugment: shapes, conditioning, spectral norm, attention, augmentation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gen.architecture import BASELINES, PRESETS, CellSpec, from_json, preset, to_json
from gen.diffaugment import POLICIES, diff_augment, parse_policy
from gen.errors import GenError
from gen.networks import (
    BatchNorm,
    Cell,
    ClassConditionalBatchNorm,
    Discriminator,
    Generator,
    SelfAttention,
    build,
    colour_statistics,
)

NUM_CLASSES = 4


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """On a shared 2-core machine one torch thread is several times faster than two fighting
    other processes for the cores (the paper networks are ~100M parameters)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def networks() -> dict[str, tuple[Generator, Discriminator]]:
    """Every preset's networks, built once (the paper pair takes a while)."""
    torch.manual_seed(0)
    return {name: tuple(build(spec) for spec in preset(name, NUM_CLASSES)) for name in PRESETS}


def _randomise_class_conditioning(generator: Generator, seed: int = 0) -> None:
    """A fresh generator's conditional batch norm is the identity for every class (gain 1, bias 0);
    training moves it. Random per-class gains and biases stand in for that training."""
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, ClassConditionalBatchNorm):
                module.gain.weight.copy_(1 + 0.3 * torch.randn(module.gain.weight.shape, generator=rng))
                module.bias.weight.copy_(0.3 * torch.randn(module.bias.weight.shape, generator=rng))


# ---------------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("name", PRESETS)
def test_output_shapes(name: str, networks: dict) -> None:
    generator, discriminator = networks[name]
    batch = 2 if name == "paper" else 4
    noise = torch.randn(batch, generator.spec.noise_dim, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(batch) % NUM_CLASSES
    generator.train()
    discriminator.train()
    with torch.no_grad():
        images = generator(noise, labels)
    assert images.shape == (batch, 3, 64, 64)
    assert images.dtype == torch.float32
    assert torch.isfinite(images).all()
    if generator.spec.output != "linear":  # tanh and clamp bound it; sampling clamps a linear one
        assert images.min() >= -1 and images.max() <= 1
    assert images.std() > 0  # not a constant picture

    scores = discriminator(images, labels)
    if discriminator.spec.head == "autoencoder":  # BEGAN: D reconstructs the image
        assert scores.shape == images.shape
    else:
        assert scores.shape == (batch,)
    assert torch.isfinite(scores).all()


# ---------------------------------------------------------------------------------------------
# Conditioning


@pytest.mark.parametrize("name", ["tiny", "dcgan"])
def test_generator_output_depends_on_the_class(name: str) -> None:
    torch.manual_seed(0)
    generator = build(preset(name, NUM_CLASSES)[0])
    _randomise_class_conditioning(generator)
    noise = torch.randn(4, generator.spec.noise_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        generator.train()
        generator(noise, torch.arange(4))  # gives batch norm running statistics to use in eval
        generator.eval()
        as_class_0 = generator(noise, torch.zeros(4, dtype=torch.long))
        as_class_1 = generator(noise, torch.ones(4, dtype=torch.long))
        again_class_0 = generator(noise, torch.zeros(4, dtype=torch.long))
    assert torch.equal(as_class_0, again_class_0)  # eval mode: a pure function of (noise, label)
    difference = (as_class_0 - as_class_1).abs().amax(dim=(1, 2, 3))
    assert (difference > 1e-3).all(), difference


@pytest.mark.parametrize("name", ["tiny", "dcgan"])
def test_discriminator_output_depends_on_the_label(name: str) -> None:
    torch.manual_seed(0)
    discriminator = build(preset(name, NUM_CLASSES)[1])
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        discriminator.train()
        discriminator(images, torch.arange(4))
        discriminator.eval()
        scores = torch.stack([discriminator(images, torch.full((4,), label)) for label in range(NUM_CLASSES)])
    # For every image, the four labels give four different scores.
    for image in range(4):
        assert len(set(scores[:, image].tolist())) == NUM_CLASSES, scores[:, image]


# ---------------------------------------------------------------------------------------------
# Spectral norm


def _is_spectrally_normalised(module: nn.Module) -> bool:
    if not parametrize.is_parametrized(module, "weight"):
        return False
    return any(type(p).__name__ == "_SpectralNorm" for p in module.parametrizations.weight)


@pytest.mark.parametrize("name", [name for name in PRESETS if name not in BASELINES])
def test_every_weight_layer_is_spectrally_normalised(name: str, networks: dict) -> None:
    for network in networks[name]:
        # The conditional batch norm's per-class gain and bias are a lookup of affine
        # parameters, not a weight layer: the one exception.
        conditional_norm_embeddings = {
            id(embedding)
            for module in network.modules()
            if isinstance(module, ClassConditionalBatchNorm)
            for embedding in (module.gain, module.bias)
        }
        checked = {"Conv2d": 0, "ConvTranspose2d": 0, "Linear": 0, "Embedding": 0}
        for module_name, module in network.named_modules():
            if isinstance(module, nn.Embedding) and id(module) in conditional_norm_embeddings:
                continue
            for kind in (nn.ConvTranspose2d, nn.Conv2d, nn.Linear, nn.Embedding):
                if isinstance(module, kind):
                    assert _is_spectrally_normalised(module), f"{name} {module_name} lacks spectral norm"
                    checked[kind.__name__] += 1
                    break
        assert checked["Conv2d"] > 0
        if isinstance(network, Generator):
            assert checked["ConvTranspose2d"] >= 1  # the stem (and DCGAN's upsampling)
            assert checked["Embedding"] == 0
            assert len(conditional_norm_embeddings) > 0
        else:
            assert checked["Linear"] == 1 and checked["Embedding"] == 1  # score and projection


@pytest.mark.parametrize("name", BASELINES)
def test_the_baselines_have_no_spectral_norm(name: str, networks: dict) -> None:
    """None of the five baseline papers uses it (it came in 2018)."""
    for network in networks[name]:
        assert not any(_is_spectrally_normalised(module) for module in network.modules())


def test_batch_norm_in_the_discriminator_only_where_its_paper_has_it(networks: dict) -> None:
    def has_batch_norm(network: nn.Module) -> bool:
        return any(isinstance(module, nn.BatchNorm2d) for module in network.modules())

    for name in ("dcgan", "wgan", "bgan", "tiny"):
        assert has_batch_norm(networks[name][1]), name
    for name in ("wgan-gp", "began", "cpu", "reference"):
        assert not has_batch_norm(networks[name][1]), name


# ---------------------------------------------------------------------------------------------
# Self-attention and cells


@pytest.mark.parametrize("name", PRESETS)
def test_self_attention_where_the_spec_asks_and_gamma_starts_at_zero(name: str, networks: dict) -> None:
    for network in networks[name]:
        attention = [module for module in network.modules() if isinstance(module, SelfAttention)]
        assert len(attention) == len(network.spec.attention)
        for module in attention:
            assert module.gamma.item() == 0.0
            assert module.gamma.requires_grad


def test_self_attention_output_is_zero_until_gamma_moves() -> None:
    torch.manual_seed(0)
    attention = SelfAttention(16)
    x = torch.randn(2, 16, 32, 32)
    assert torch.equal(attention(x), torch.zeros_like(x))
    with torch.no_grad():
        attention.gamma.fill_(0.5)
    out = attention(x)
    assert out.shape == x.shape
    assert out.abs().max() > 0


def test_a_cell_whose_output_has_only_zero_edges_yields_zeros() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 16, 16)
    labels = torch.tensor([0, 1])

    # Every edge zero.
    def conditional(channels: int) -> nn.Module:
        return ClassConditionalBatchNorm(channels, NUM_CLASSES)

    assert torch.equal(Cell(CellSpec(3, "55-5"), 8, "elu", conditional, True)(x, labels), torch.zeros_like(x))
    # Convolutions into node 1 but nothing from anywhere into the output node.
    cell = Cell(CellSpec(4, "225-25-5"), 8, "elu", BatchNorm, True)
    out = cell(x, labels)
    assert torch.equal(out, torch.zeros_like(x))
    # The control: one skip into the output node passes the input through.
    assert torch.equal(Cell(CellSpec(3, "56-5"), 8, "elu", BatchNorm, True)(x, labels), x)


# ---------------------------------------------------------------------------------------------
# DiffAugment


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1


@pytest.mark.parametrize("policy", ["color", "translation", "color,translation", " color , translation "])
def test_diffaugment_keeps_the_shape_and_is_deterministic(policy: str, images: torch.Tensor) -> None:
    first = diff_augment(images, policy, torch.Generator().manual_seed(7))
    second = diff_augment(images, policy, torch.Generator().manual_seed(7))
    other_seed = diff_augment(images, policy, torch.Generator().manual_seed(8))
    assert first.shape == images.shape
    assert torch.equal(first, second)
    assert not torch.equal(first, images)
    assert not torch.equal(first, other_seed)


def test_diffaugment_draws_from_the_generator_it_is_given(images: torch.Tensor) -> None:
    rng = torch.Generator().manual_seed(7)
    first = diff_augment(images, "color,translation", rng)
    second = diff_augment(images, "color,translation", rng)  # the stream moved on
    assert not torch.equal(first, second)


def test_translation_shifts_pixels_and_fills_with_zeros() -> None:
    ones = torch.ones(64, 3, 16, 16)
    shifted = diff_augment(ones, "translation", torch.Generator().manual_seed(0))
    assert set(shifted.unique().tolist()) <= {0.0, 1.0}
    assert (shifted == 0).any()  # some image was moved and its border filled


def test_empty_policy_is_identity(images: torch.Tensor) -> None:
    rng = torch.Generator().manual_seed(7)
    state = rng.get_state()
    assert torch.equal(diff_augment(images, "", rng), images)
    assert torch.equal(rng.get_state(), state)  # nothing was drawn


@pytest.mark.parametrize("policy", ["blur", "color,blur", "Color"])
def test_unknown_policy_is_a_gen_error(policy: str, images: torch.Tensor) -> None:
    with pytest.raises(GenError, match="unknown DiffAugment policy"):
        diff_augment(images, policy, torch.Generator().manual_seed(0))


def test_policies_are_the_documented_ones() -> None:
    assert set(POLICIES) == {"color", "translation", "cutout"}


def test_cutout_blanks_one_square_of_half_the_side_per_image(images: torch.Tensor) -> None:
    out = diff_augment(images, "cutout", torch.Generator().manual_seed(3))
    blanked = (out == 0) & (images != 0)
    for index in range(len(images)):
        rows = blanked[index, 0].any(dim=1).nonzero()
        columns = blanked[index, 0].any(dim=0).nonzero()
        assert len(rows) <= 32 and len(columns) <= 32  # one square, at most 32x32, cut at the edges
        assert 0 < blanked[index, 0].sum() <= 32 * 32
    kept = ~(out == 0).all(dim=1, keepdim=True)
    assert torch.equal(out[kept.expand_as(out)], images[kept.expand_as(images)])


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_gradients_flow_through_diffaugment(policy: str, images: torch.Tensor) -> None:
    x = images.clone().requires_grad_(True)
    weights = torch.rand(x.shape, generator=torch.Generator().manual_seed(9))
    (diff_augment(x, policy, torch.Generator().manual_seed(0)) * weights).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    for image in range(len(x)):  # every image of the batch gets a gradient
        assert x.grad[image].abs().sum() > 0


def test_an_augmentation_with_a_probability_changes_that_share_of_images() -> None:
    images = torch.rand(2000, 3, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    out = diff_augment(images, "color@0.3", torch.Generator().manual_seed(0))
    changed = (out != images).flatten(1).any(dim=1).float().mean()
    assert 0.27 < float(changed) < 0.33  # 0.3 +- 4.6 standard deviations of a binomial share
    unchanged = (out == images).flatten(1).all(dim=1)
    assert torch.equal(out[unchanged], images[unchanged])  # the others are untouched
    assert torch.equal(diff_augment(images, "color@0", torch.Generator().manual_seed(0)), images)
    everything = diff_augment(images, "color@1", torch.Generator().manual_seed(0))
    assert torch.equal(everything, diff_augment(images, "color", torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("policy", ["color@1.5", "color@-0.1", "color@x", "color@nan", "translation@"])
def test_a_probability_outside_0_to_1_is_a_gen_error(policy: str, images: torch.Tensor) -> None:
    if policy == "translation@":  # an empty probability means always, as without @
        assert parse_policy(policy) == [("translation", 1.0)]
        return
    with pytest.raises(GenError, match="between 0 and 1"):
        diff_augment(images, policy, torch.Generator().manual_seed(0))


def test_a_discriminator_with_a_class_head_returns_score_and_logits() -> None:
    import dataclasses

    from gen.architecture import preset

    _, spec = preset("reference", 4)
    discriminator = build(dataclasses.replace(spec, classifier_head=True))
    out = discriminator(torch.rand(3, 3, 64, 64) * 2 - 1, torch.tensor([0, 1, 3]))
    assert out.shape == (3, 5)
    assert build(spec)(torch.rand(3, 3, 64, 64), torch.tensor([0, 1, 3])).shape == (3,)


def test_diffaugment_strength_scales_every_probability() -> None:
    """ADA's p: color@0.6 at strength 0.5 changes 30% of the images; strength 0 is the identity."""
    images = torch.rand(2000, 3, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    out = diff_augment(images, "color@0.6", torch.Generator().manual_seed(0), strength=0.5)
    changed = (out != images).flatten(1).any(dim=1).float().mean()
    assert 0.27 < float(changed) < 0.33  # 0.3 +- 4.6 standard deviations of a binomial share
    assert torch.equal(diff_augment(images, "color,translation", torch.Generator(), strength=0.0), images)


def test_skip_layer_excitation_gates_the_large_maps_by_the_small_ones() -> None:
    """With skip_excitation the 4x4 map gates the 32x32 one and the 8x8 map the 64x64 one (the
    cpu preset's widths), each by a sigmoid per channel; without it there is no gate."""
    import dataclasses

    from gen.networks import SkipLayerExcitation

    spec, _ = preset("cpu", 4)
    generator = build(dataclasses.replace(spec, skip_excitation=True))
    assert sorted(generator.excitations) == ["3", "4"]
    assert [generator.excitations[k].gate[1].in_channels for k in ("3", "4")] == [256, 128]
    assert len(build(spec).excitations) == 0
    assert generator(torch.randn(2, spec.noise_dim), torch.tensor([0, 3])).shape == (2, 3, 64, 64)
    gate = SkipLayerExcitation(4, 2, spectral=False)
    large = torch.ones(1, 2, 16, 16)
    out = gate(torch.randn(1, 4, 4, 4), large)
    per_channel = out[0, :, 0, 0]
    assert torch.equal(out, per_channel[None, :, None, None].expand_as(out))  # one factor per channel
    assert ((per_channel > 0) & (per_channel < 1)).all()


def test_a_discriminator_with_a_reconstruction_head_returns_score_logits_and_image() -> None:
    import dataclasses

    from gen.architecture import preset
    from gen.networks import split_discriminator_output

    _, spec = preset("reference", 4)
    discriminator = build(dataclasses.replace(spec, classifier_head=True, reconstruction_head=True))
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    out = discriminator(images, torch.tensor([0, 1, 3]))
    assert out.shape == (3, 1 + 4 + 3 * 32 * 32)
    score, logits, image = split_discriminator_output(out, reconstruction=True)
    assert score.shape == (3,) and logits.shape == (3, 4) and image.shape == (3, 3, 32, 32)
    assert image.abs().max() <= 1  # tanh
    alone = build(dataclasses.replace(spec, reconstruction_head=True))(images, torch.tensor([0, 1, 3]))
    score, logits, image = split_discriminator_output(alone, reconstruction=True)
    assert logits is None and image.shape == (3, 3, 32, 32)


def test_minibatch_std_is_the_spread_of_each_group_of_consecutive_images_by_hand() -> None:
    """Images whose every feature is one number a_i: a group's channel is the population std of
    its a_i (sqrt(var + 1e-8)). Groups are consecutive; a last short group is the last ``group``
    images; a batch smaller than the group is one group."""
    from gen.networks import with_minibatch_std

    values = torch.tensor([0.0, 2.0, 5.0, 5.0, 9.0])
    features = values[:, None, None, None].expand(5, 3, 2, 2).contiguous()
    out = with_minibatch_std(features, 2)
    assert out.shape == (5, 4, 2, 2) and torch.equal(out[:, :3], features)
    assert (out[:, 3] == out[:, 3, :1, :1]).all()  # one number per image, over every position
    # groups (0, 2), (5, 5), and for the fifth image the last two, (5, 9)
    expected = torch.tensor([1.0, 1.0, 1e-4, 1e-4, 2.0])
    torch.testing.assert_close(out[:, 3, 0, 0], expected)
    whole = with_minibatch_std(features[:3], 4)[:, 3, 0, 0]  # one group of (0, 2, 5): std sqrt(38/9)
    torch.testing.assert_close(whole, torch.full((3,), (38 / 9) ** 0.5))


def test_a_minibatch_std_discriminator_scores_real_images_whatever_the_fakes_beside_them() -> None:
    """gen.losses scores real and fake images in one batch, reals first: with groups that divide
    the half, changing the fakes changes no real image's score, while changing one real image
    changes the scores of its own group only."""
    import dataclasses

    from gen.architecture import preset

    _, spec = preset("cpu", 4)
    discriminator = build(dataclasses.replace(spec, minibatch_std=4)).eval()
    torch.manual_seed(0)
    images, labels = torch.rand(16, 3, 64, 64) * 2 - 1, torch.arange(16) % 4
    with torch.no_grad():
        scores = discriminator(images, labels)
        other_fakes = images.clone()
        other_fakes[8:] = torch.rand(8, 3, 64, 64) * 2 - 1
        torch.testing.assert_close(discriminator(other_fakes, labels)[:8], scores[:8], rtol=0, atol=0)
        one_real = images.clone()
        one_real[5] = 0
        changed = (discriminator(one_real, labels) - scores).abs() > 0
    assert changed[4:8].all() and not changed[:4].any() and not changed[8:].any()


def test_a_linear_output_is_the_tanh_output_before_its_tanh_and_samples_reach_255() -> None:
    """``output="linear"`` drops the last tanh and nothing else: with the same weights, the tanh
    generator's images are tanh of the linear one's. Sampling clamps, so a linear generator puts
    pixels at 255 exactly (the clipped background of a bright-field smear), which tanh reaches
    only as its input grows without bound."""
    import dataclasses

    from gen.images import to_uint8

    spec, _ = preset("reference", NUM_CLASSES)
    assert spec.output == "tanh"  # the default, so older checkpoints' specs load unchanged
    assert preset("cpu", NUM_CLASSES)[0].output == "linear"  # ours, docs/benchmarks.md
    torch.manual_seed(0)
    tanh_generator = build(spec).eval()
    linear_generator = build(dataclasses.replace(spec, output="linear")).eval()
    linear_generator.load_state_dict(tanh_generator.state_dict())  # no tanh parameters to differ
    noise, labels = torch.randn(3, spec.noise_dim), torch.tensor([0, 1, 3])
    with torch.no_grad():
        linear = linear_generator(noise, labels)
        torch.testing.assert_close(tanh_generator(noise, labels), torch.tanh(linear))
        assert isinstance(linear_generator.output, nn.Identity)
        assert to_uint8(torch.tensor([[[[1.3]], [[0.99999]], [[-1.2]]]])).flatten().tolist() == [255, 255, 0]
        # tanh needs an input of about 3.1 for 255 (tanh(x) >= 254.5 / 127.5 - 1)
        near_white = torch.tanh(torch.tensor([[[[3.0]], [[3.2]], [[0.0]]]]))
        assert to_uint8(near_white).flatten().tolist() == [254, 255, 128]


def test_colour_style_starts_as_the_plain_generator_and_shifts_each_image_by_its_noise() -> None:
    """Zero-initialised, a colour-style generator draws what the same weights draw without it;
    with a(z) and b(z) set by hand, each image's channel c is (1 + a_c) x + b_c before the
    output layer, a different colour per image, the same map within it."""
    import dataclasses

    spec, _ = preset("cpu", NUM_CLASSES)  # linear output: the transform is visible as it is
    torch.manual_seed(0)
    plain = build(spec).eval()
    styled = build(dataclasses.replace(spec, colour_style=True)).eval()
    missing = styled.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["colour_style.bias", "colour_style.weight"]
    noise, labels = torch.randn(2, spec.noise_dim), torch.tensor([0, 3])
    with torch.no_grad():
        base = plain(noise, labels)
        torch.testing.assert_close(styled(noise, labels), base, rtol=0, atol=0)
        styled.colour_style.weight[:, 0] = torch.tensor([0.5, 0.0, 0.0, 0.0, 0.2, 0.0])
        got = styled(noise, labels)
    scale = 1 + 0.5 * noise[:, 0]  # red's scale; green and blue keep 1
    shift = 0.2 * noise[:, 0]  # green's shift
    torch.testing.assert_close(got[:, 0], base[:, 0] * scale[:, None, None])
    torch.testing.assert_close(got[:, 1], base[:, 1] + shift[:, None, None])
    torch.testing.assert_close(got[:, 2], base[:, 2])


def test_colour_statistics_against_a_hand_computation() -> None:
    image = torch.zeros(1, 3, 2, 2)
    image[0, 0] = torch.tensor([[1.0, -1.0], [1.0, -1.0]])  # red: mean 0, spread 1
    image[0, 1] = 0.5  # green: 0.5, spread 0
    image[0, 2] = torch.tensor([[0.0, 0.0], [0.0, 1.0]])  # blue: mean 0.25, spread sqrt(3) / 4
    expected = torch.tensor([[0.0, 0.5, 0.25, 1.0, 0.0, math.sqrt(3) / 4]])
    torch.testing.assert_close(colour_statistics(image), expected)


def test_a_border_colour_is_measured_on_the_frame_of_an_eighth_of_each_side_alone() -> None:
    """colour_region "border": the 28 pixels of an 8x8 image's one-pixel frame, not the 36 inside
    it; a generator whose spec asks for it measures (and banks) colours there."""
    image = torch.zeros(1, 3, 8, 8)
    image[0, :, 1:-1, 1:-1] = 1.0  # the inside: ignored
    image[0, 0, 0, :] = 1.0  # red: 8 of the 28 frame pixels at 1 -> mean 2/7, spread sqrt(10)/7
    image[0, 1] = -1.0  # green: -1 everywhere -> mean -1, spread 0
    expected = torch.tensor([[2 / 7, -1.0, 0.0, math.sqrt(10) / 7, 0.0, 0.0]])
    torch.testing.assert_close(colour_statistics(image, "border"), expected)
    assert float(colour_statistics(image)[0, 2]) == pytest.approx(36 / 64)  # the whole image's blue
    g_spec, _ = preset("cpu", 4)
    generator = build(dataclasses.replace(g_spec, colour_bank=1, colour_region="border"))
    torch.testing.assert_close(generator.colours_of(image), expected)
    with pytest.raises(GenError, match="colour_region"):
        from_json(to_json(dataclasses.replace(g_spec, colour_region="middle")))


def test_a_colour_bank_draws_every_training_colour_of_a_class_equally_often() -> None:
    """``colour_bank``: a class of n images fills n slots; the noise's first number picks slot
    floor(n * Phi(z_0)), so over many draws each of the class's colours is drawn 1 / n of the time,
    a class of 3 as much as a class of 1; the bank is saved with the weights; and what G draws
    depends on the colour it was given."""
    import dataclasses

    spec, _ = preset("cpu", NUM_CLASSES)
    spec = dataclasses.replace(spec, colour_bank=3)
    torch.manual_seed(0)
    generator = build(spec).eval()
    colours = torch.arange(4 * 6, dtype=torch.float32).view(4, 6)  # image i's colour: 6i .. 6i + 5
    labels = torch.tensor([2, 0, 2, 2])  # class 2: images 0, 2, 3; class 0: image 1; 1 and 3: none
    generator.fill_colour_bank(colours, labels)
    assert generator.colour_counts.tolist() == [1, 1, 3, 1]
    torch.testing.assert_close(generator.colour_bank[2], colours[[0, 2, 3]])
    torch.testing.assert_close(generator.colour_bank[0, 0], colours[1])
    torch.testing.assert_close(generator.colour_centre, colours.mean(0))
    # Slots by hand: Phi(-1) = 0.159 -> slot 0 of 3; Phi(0) = 0.5 -> 1; Phi(1) = 0.841 -> 2.
    noise = torch.zeros(3, spec.noise_dim)
    noise[:, 0] = torch.tensor([-1.0, 0.0, 1.0])
    got = generator.requested_colours(noise, torch.tensor([2, 2, 2]))
    torch.testing.assert_close(got, colours[[0, 2, 3]])
    only = generator.requested_colours(noise, torch.tensor([0, 0, 0]))  # a class of one image
    torch.testing.assert_close(only, colours[[1, 1, 1]])
    # Frequencies: 30,000 draws of class 2, each image a third within five binomial deviations.
    many = torch.randn(30_000, spec.noise_dim, generator=torch.Generator().manual_seed(1))
    drawn = generator.requested_colours(many, torch.full((30_000,), 2))[:, 0]
    shares = torch.stack([(drawn == colours[i, 0]).double().mean() for i in (0, 2, 3)])
    assert (shares - 1 / 3).abs().max() < 5 * math.sqrt(2 / 9 / 30_000)
    # Saved with the weights: a fresh generator loaded from them draws the same colours.
    restored = build(spec).eval()
    restored.load_state_dict(generator.state_dict())
    torch.testing.assert_close(restored.requested_colours(noise, torch.tensor([2, 2, 2])), got)
    # G's image depends on the colour it is given: the same noise with class 2's slots reversed
    # changes the first and last images (slots 0 and 2 swapped), not the middle one.
    with torch.no_grad():
        before = generator(noise, torch.tensor([2, 2, 2]))
        generator.colour_bank[2] = generator.colour_bank[2].flip(0)
        after = generator(noise, torch.tensor([2, 2, 2]))
    torch.testing.assert_close(after[1], before[1])
    assert (after[[0, 2]] - before[[0, 2]]).abs().amax() > 1e-3


def test_a_colour_projection_adds_the_features_inner_product_with_the_claimed_colour() -> None:
    """``colour_projection``: D's score gains <W c, pooled features> for the colour c an image
    claims (W a spectrally normalised linear map, no bias), on top of the class projection;
    without colours (curation's realism score) the term is left out, as it is at c = 0."""
    import dataclasses

    _, spec = preset("cpu", NUM_CLASSES)
    torch.manual_seed(0)
    discriminator = build(dataclasses.replace(spec, colour_projection=True)).eval()
    images, labels = torch.rand(3, 3, 64, 64) * 2 - 1, torch.tensor([0, 2, 3])
    colours = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = discriminator(images, labels)
        claimed = discriminator(images, labels, colours)
        pooled = discriminator.feature_maps(images, labels)[-1].sum(dim=(2, 3))
        weight = discriminator.colour_projection.weight  # (features, 6), spectral norm applied
        torch.testing.assert_close(discriminator(images, labels, torch.zeros(3, 6)), plain)
    expected = plain + ((colours @ weight.T) * pooled).sum(1)
    torch.testing.assert_close(claimed, expected, rtol=1e-4, atol=1e-3)
    assert (claimed - plain).abs().min() > 1e-3  # the colour moves every score
    assert parametrize.is_parametrized(discriminator.colour_projection, "weight")  # spectral norm
    with pytest.raises(GenError, match="colour_projection needs a projection head"):
        build(to_json(dataclasses.replace(spec, colour_projection=True, head="autoencoder")))


def test_a_clamp_output_clips_the_linear_output_in_training_too() -> None:
    """``output="clamp"`` is the linear generator's image clipped to [-1, 1] in the forward pass
    itself (as the camera clips), so D never sees a value real images cannot have; a pixel past
    the ceiling gets no gradient, one inside gets the linear one's."""
    import dataclasses

    spec, _ = preset("cpu", NUM_CLASSES)
    torch.manual_seed(0)
    linear_generator = build(dataclasses.replace(spec, output="linear")).train()
    clamp_generator = build(dataclasses.replace(spec, output="clamp")).train()
    clamp_generator.load_state_dict(linear_generator.state_dict())
    noise, labels = torch.randn(4, spec.noise_dim), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        # Push the last convolution's bias so some pixels land past each bound.
        for generator in (linear_generator, clamp_generator):
            generator.to_image[-1].bias.copy_(torch.tensor([1.5, 0.0, -1.5]))
    torch.manual_seed(1)
    linear = linear_generator(noise, labels)
    torch.manual_seed(1)
    clamped = clamp_generator(noise, labels)
    assert (linear > 1).any() and (linear < -1).any()
    torch.testing.assert_close(clamped, linear.clamp(-1, 1))
    assert clamped.max() == 1 and clamped.min() == -1
    clamped.sum().backward()
    bias_gradient = clamp_generator.to_image[-1].bias.grad
    # d(sum)/d(bias_c) counts channel c's pixels strictly inside the bounds.
    inside = ((linear > -1) & (linear < 1)).sum(dim=(0, 2, 3)).to(bias_gradient.dtype)
    torch.testing.assert_close(bias_gradient, inside)


def test_a_stem_label_feeds_the_one_hot_class_to_the_stem_scaled_by_the_conditioning() -> None:
    """``stem_label``: the stem's input is [noise, one-hot label], so its 4x4 map is the plain
    stem's map of the noise plus the weight's column of the image's class; set_conditioning
    scales the one-hot with the batch norms' class signal (0 leaves the class out)."""
    import dataclasses

    from gen.networks import set_conditioning

    spec, _ = preset("tiny", NUM_CLASSES)
    torch.manual_seed(0)
    generator = build(dataclasses.replace(spec, stem_label=True)).eval()
    weight = generator.stem.weight  # (noise + classes, width, 4, 4), spectral norm applied
    assert weight.shape[0] == spec.noise_dim + NUM_CLASSES
    maps = []
    generator.stem.register_forward_hook(lambda module, inputs, output: maps.append(output))
    noise, labels = torch.randn(3, spec.noise_dim), torch.tensor([0, 2, 3])
    from_noise = (
        torch.einsum("ni,iohw->nohw", noise, weight[: spec.noise_dim]) + generator.stem.bias[:, None, None]
    )
    with torch.no_grad():
        generator(noise, labels)
        set_conditioning(generator, 0.5)
        generator(noise, labels)
        set_conditioning(generator, 0.0)
        generator(noise, labels)
    class_columns = weight[spec.noise_dim + labels]
    torch.testing.assert_close(maps[0], from_noise + class_columns, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maps[1], from_noise + 0.5 * class_columns, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maps[2], from_noise, rtol=1e-4, atol=1e-4)
    with pytest.raises(GenError, match="stem_label must be true or false"):
        build({**to_json(spec), "stem_label": "yes"})
