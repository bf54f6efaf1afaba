"""gen.losses: each objective against a hand computation, and D as one function in both phases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gen.architecture import preset
from gen.losses import (
    LOSSES,
    AdaptiveAugment,
    BEGANLoss,
    BoundarySeekingLoss,
    HingeLoss,
    NonSaturatingLoss,
    WassersteinLoss,
    colour_condition_term,
    histogram_matching_term,
    make_loss,
    mode_seeking_term,
)
from gen.networks import build, colour_statistics
from gen.presets import LOSS_NAMES, RECIPES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-2.0, 0.0, 1.5])


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


class FixedGenerator(nn.Module):
    """Returns the same images whatever the noise: lets a test hand D a fixed fake batch."""

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.images = images
        self.weight = nn.Parameter(torch.zeros(()))  # so that a G loss has something to reach

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.images[: len(labels)] + self.weight


class ScoreIs(nn.Module):
    """A "discriminator" whose score is the image's first pixel: scores are set by the input."""

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return images[:, 0, 0, 0]


def images_scoring(scores: torch.Tensor) -> torch.Tensor:
    images = torch.zeros(len(scores), 3, 4, 4)
    images[:, 0, 0, 0] = scores
    return images


def phases(loss_class: type, **options: float) -> tuple[float, float]:
    """(D loss, G loss) of a loss whose D scores REAL and FAKE exactly (no augmentation)."""
    rng = torch.Generator().manual_seed(0)
    loss = loss_class(FixedGenerator(images_scoring(FAKE)), ScoreIs(), "", rng, **options)
    labels = torch.zeros(3, dtype=torch.long)
    noise = torch.zeros(3, 8)
    d = loss.d_phase(images_scoring(REAL), labels, noise)
    g = loss.g_phase(images_scoring(REAL), labels, noise)
    return float(d.loss.detach()), float(g.loss.detach())


def test_every_loss_is_named_where_the_cli_lists_them() -> None:
    assert tuple(LOSSES) == LOSS_NAMES
    assert {recipe.loss for recipe in RECIPES.values()} <= set(LOSSES)


def test_hinge_against_a_hand_computation() -> None:
    d, g = phases(HingeLoss)
    expected_d = sum(max(0, 1 - r) for r in REAL.tolist()) / 3 + sum(max(0, 1 + f) for f in FAKE.tolist()) / 3
    assert d == pytest.approx(expected_d)
    assert g == pytest.approx(-sum(FAKE.tolist()) / 3)


def test_non_saturating_bce_against_a_hand_computation() -> None:
    d, g = phases(NonSaturatingLoss)
    expected_d = (
        -sum(math.log(sigmoid(r)) for r in REAL.tolist()) / 3
        - sum(math.log(1 - sigmoid(f)) for f in FAKE.tolist()) / 3
    )
    assert d == pytest.approx(expected_d, rel=1e-5)
    assert g == pytest.approx(-sum(math.log(sigmoid(f)) for f in FAKE.tolist()) / 3, rel=1e-5)


def test_boundary_seeking_against_a_hand_computation() -> None:
    d, g = phases(BoundarySeekingLoss)
    assert d == pytest.approx(phases(NonSaturatingLoss)[0])  # D as in the standard GAN
    # 0.5 (log D - log(1 - D))^2 with D = sigmoid(f)
    expected_g = sum(0.5 * (math.log(sigmoid(f)) - math.log(1 - sigmoid(f))) ** 2 for f in FAKE.tolist()) / 3
    assert g == pytest.approx(expected_g, rel=1e-5)


def test_wasserstein_against_a_hand_computation() -> None:
    d, g = phases(WassersteinLoss)
    assert d == pytest.approx(sum(FAKE.tolist()) / 3 - sum(REAL.tolist()) / 3)
    assert g == pytest.approx(-sum(FAKE.tolist()) / 3)


def test_lecam_against_a_hand_computation() -> None:
    """LeCam on hinge, two D steps: the anchors start at the first batch's means, then move by
    (1 - decay) towards each new mean; the term is mean(relu(r - a_fake)^2) + mean(relu(a_real - f)^2)."""
    weight, decay = 0.3, 0.9
    rng = torch.Generator().manual_seed(0)
    loss = HingeLoss(
        FixedGenerator(images_scoring(FAKE)), ScoreIs(), "", rng, lecam=weight, lecam_decay=decay
    )
    labels, noise = torch.zeros(3, dtype=torch.long), torch.zeros(3, 8)
    hinge = sum(max(0, 1 - r) for r in REAL.tolist()) / 3 + sum(max(0, 1 + f) for f in FAKE.tolist()) / 3

    def term(a_real: float, a_fake: float, real: list[float], fake: list[float]) -> float:
        return sum(max(0, r - a_fake) ** 2 for r in real) / 3 + sum(max(0, a_real - f) ** 2 for f in fake) / 3

    first = float(loss.d_phase(images_scoring(REAL), labels, noise).loss)
    a_real, a_fake = sum(REAL.tolist()) / 3, sum(FAKE.tolist()) / 3
    assert first == pytest.approx(hinge + weight * term(a_real, a_fake, REAL.tolist(), FAKE.tolist()))
    moved = REAL + 1.0  # a second batch whose real scores are one higher
    second = float(loss.d_phase(images_scoring(moved), labels, noise).loss)
    a_real = decay * a_real + (1 - decay) * sum(moved.tolist()) / 3
    hinge_moved = (
        sum(max(0, 1 - r) for r in moved.tolist()) / 3 + sum(max(0, 1 + f) for f in FAKE.tolist()) / 3
    )
    assert second == pytest.approx(hinge_moved + weight * term(a_real, a_fake, moved.tolist(), FAKE.tolist()))
    # The anchors survive a resume.
    restored = HingeLoss(FixedGenerator(images_scoring(FAKE)), ScoreIs(), "", rng, lecam=weight)
    restored.load_state_dict(loss.state_dict())
    assert restored.anchors == pytest.approx({"real": a_real, "fake": a_fake})
    assert phases(HingeLoss, lecam=0.0) == phases(HingeLoss)  # off by default


def test_mode_seeking_against_a_hand_computation() -> None:
    """MSGAN's term over the pairs that share a label: 1 / (eps + mean of mean|dG| / mean|dz|)."""
    fake = torch.zeros(4, 1, 1, 2)
    fake[1] = torch.tensor([1.0, 3.0]).view(1, 1, 2)  # label 0 with image 0: mean|dG| = 2
    fake[3] = torch.tensor([0.5, 0.5]).view(1, 1, 2)  # label 1 with image 2: mean|dG| = 0.5
    noise = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 2.0], [5.0, 5.0, 5.0], [5.0, 5.0, 6.0]])
    labels = torch.tensor([0, 0, 1, 1])  # mean|dz|: 4/3 for the first pair, 1/3 for the second
    ratios = [2 / (4 / 3), 0.5 / (1 / 3)]
    assert float(mode_seeking_term(fake, noise, labels)) == pytest.approx(1 / (sum(ratios) / 2 + 1e-5))
    assert float(mode_seeking_term(fake, noise, torch.tensor([0, 1, 2, 3]))) == 0.0  # no pair
    # In G's phase, weighted, and it pushes images of one class apart.
    generator = FixedGenerator(fake.clone())
    loss = HingeLoss(generator, ScoreIs(), "", torch.Generator().manual_seed(0), mode_seeking=0.5)
    plain = HingeLoss(generator, ScoreIs(), "", torch.Generator().manual_seed(0))
    with_term = loss.g_phase(fake, labels, noise).loss.detach()
    assert float(with_term) == pytest.approx(
        float(plain.g_phase(fake, labels, noise).loss.detach())
        + 0.5 * float(mode_seeking_term(fake, noise, labels))
    )
    apart = fake.clone().requires_grad_(True)
    mode_seeking_term(apart, noise, labels).backward()
    assert float(apart.grad[1, 0, 0, 1]) < 0 < float(apart.grad[0, 0, 0, 1])  # descent moves them apart


def test_colour_condition_against_a_hand_computation() -> None:
    """The term holding G to its images' requested colours: the mean over images and the six
    numbers of ((colour of the image - requested colour) / scale)^2, weighted in G's phase."""
    fake = torch.zeros(2, 3, 2, 2)
    fake[0, 0] = torch.tensor([[1.0, -1.0], [1.0, -1.0]])  # red mean 0, spread 1; the rest 0
    fake[1] += 0.5  # every channel 0.5, spread 0
    generator = FixedGenerator(fake.clone())
    generator.colour_scale = torch.tensor([1.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    generator.colours_of = colour_statistics
    wanted = torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.0, 0.0], [0.5, 0.5, 1.0, 0.0, 0.0, 0.25]])
    generator.requested_colours = lambda noise, labels: wanted[: len(labels)]
    # image 0: red spread 1 against 0.5 -> (0.5 / 0.5)^2 = 1; image 1: blue 0.5 against 1 -> 0.25,
    # blue spread 0 against 0.25 -> (0.25 / 0.5)^2 = 0.25; twelve numbers in all.
    expected = (1.0 + 0.25 + 0.25) / 12
    noise, labels = torch.zeros(2, 8), torch.tensor([0, 1])
    assert float(colour_condition_term(fake, generator, noise, labels)) == pytest.approx(expected)
    loss = HingeLoss(generator, ScoreIs(), "", torch.Generator().manual_seed(0), colour_condition=2.0)
    plain = HingeLoss(generator, ScoreIs(), "", torch.Generator().manual_seed(0))
    with_term = float(loss.g_phase(fake, labels, noise).loss.detach())
    assert with_term == pytest.approx(float(plain.g_phase(fake, labels, noise).loss.detach()) + 2 * expected)
    assert phases(HingeLoss, colour_condition=0.0) == phases(HingeLoss)  # off by default


def test_histogram_matching_against_a_hand_computation() -> None:
    """The term matching each class's pixel values to the real batch's, channel by channel: both
    sorted, the mean |k-th fake - k-th real| per class and channel, averaged over them; weighted
    in G's phase; its gradient moves each fake pixel toward the real value of its rank."""
    fake = torch.zeros(4, 2, 1, 2)
    real = torch.zeros(4, 2, 1, 2)
    labels = torch.tensor([0, 1, 0, 1])
    # Class 0 (images 0 and 2), channel 0: fake values 3, 0, 1, 2 (sorted 0 1 2 3) against real
    # 0, 0, 2, 6 (sorted 0 0 2 6): |0| + |1| + |0| + |3| = 4 over 4 values -> 1. Channel 1: all 0.
    fake[0, 0, 0] = torch.tensor([3.0, 0.0])
    fake[2, 0, 0] = torch.tensor([1.0, 2.0])
    real[0, 0, 0] = torch.tensor([6.0, 0.0])
    real[2, 0, 0] = torch.tensor([0.0, 2.0])
    # Class 1 (images 1 and 3), channel 1: fake 1, 1, 1, 1 against real 1, 1, 1, 5 -> 4 / 4 = 1;
    # channel 0: all 0. The same values in another order cost nothing: only how often counts.
    fake[1, 1, 0] = torch.tensor([1.0, 1.0])
    fake[3, 1, 0] = torch.tensor([1.0, 1.0])
    real[1, 1, 0] = torch.tensor([1.0, 5.0])
    real[3, 1, 0] = torch.tensor([1.0, 1.0])
    expected = (1.0 + 0.0 + 0.0 + 1.0) / 4
    assert float(histogram_matching_term(fake, real, labels)) == pytest.approx(expected)
    shuffled = fake.clone()
    shuffled[0, 0, 0], shuffled[2, 0, 0] = fake[2, 0, 0].flip(0), fake[0, 0, 0]
    assert float(histogram_matching_term(shuffled, real, labels)) == pytest.approx(expected)
    assert float(histogram_matching_term(real, real, labels)) == 0.0
    pulled = fake.clone().requires_grad_(True)
    histogram_matching_term(pulled, real, labels).backward()
    assert float(pulled.grad[0, 0, 0, 0]) < 0  # the largest (3) is pulled up toward real's 6
    assert float(pulled.grad[2, 0, 0, 0]) > 0  # 1, ranked second, is pulled down toward real's 0
    generator = FixedGenerator(fake.clone())
    loss = HingeLoss(generator, ScoreIs(), "", torch.Generator().manual_seed(0), histogram_matching=3.0)
    plain = HingeLoss(generator, ScoreIs(), "", torch.Generator().manual_seed(0))
    noise = torch.zeros(4, 8)
    with_term = float(loss.g_phase(real, labels, noise).loss.detach())
    assert with_term == pytest.approx(float(plain.g_phase(real, labels, noise).loss.detach()) + 3 * expected)
    assert phases(HingeLoss, histogram_matching=0.0) == phases(HingeLoss)  # off by default


def test_d_is_told_each_image_s_colour_a_real_one_its_own_a_fake_the_one_it_was_asked_for() -> None:
    """With D's colour projection, both phases hand D the standardised colours the batch claims:
    each real image's own colour_statistics, each fake's requested colour, both as
    (colour - centre) / scale; without the projection D is told nothing."""
    import dataclasses

    g_spec, d_spec = preset("cpu", 4)
    torch.manual_seed(0)
    generator = build(dataclasses.replace(g_spec, colour_bank=2))
    discriminator = build(dataclasses.replace(d_spec, colour_projection=True))
    bank = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [-0.5, 0.0, 0.5, 0.1, 0.1, 0.1]])
    generator.fill_colour_bank(bank, torch.tensor([1, 1]))
    real = torch.zeros(2, 3, 64, 64)
    real[0] = 0.5  # every channel 0.5, spread 0
    real[1, 2, :32] = 1.0  # blue half 1, half 0: mean 0.5, spread 0.5
    labels, noise = torch.tensor([1, 1]), torch.zeros(2, g_spec.noise_dim)
    noise[:, 0] = torch.tensor([-1.0, 1.0])  # slots 0 and 1 of class 1
    told = []
    forward = discriminator.forward
    discriminator.forward = lambda images, labels, colours=None: (
        told.append(colours) or forward(images, labels, colours)
    )
    for both in (False, True):  # G's phase scores the fakes alone, or real and fake together
        rng = torch.Generator().manual_seed(0)
        loss = HingeLoss(generator, discriminator, "", rng, same_batch_both_phases=both)
        loss.d_phase(real, labels, noise)
        loss.g_phase(real, labels, noise)
    own = torch.tensor([[0.5, 0.5, 0.5, 0, 0, 0], [0, 0, 0.5, 0, 0, 0.5]])
    expected = (torch.cat([own, bank]) - bank.mean(0)) / bank.std(0, correction=0)
    assert len(told) == 4
    for colours, want in zip(told, (expected, expected[2:], expected, expected), strict=True):
        torch.testing.assert_close(colours, want)
    plain = HingeLoss(generator, build(d_spec), "", torch.Generator().manual_seed(0))
    assert plain.claimed_colours(real, noise, labels) is None


def test_weight_clipping_after_the_critic_step() -> None:
    critic = nn.Linear(4, 1)
    with torch.no_grad():
        critic.weight.fill_(0.5)
        critic.bias.fill_(-0.3)
    loss = WassersteinLoss(FixedGenerator(torch.zeros(1)), critic, "", torch.Generator(), clip=0.01)
    loss.after_d_step(None)
    assert float(critic.weight.detach().max()) == pytest.approx(0.01)
    assert float(critic.bias.detach().min()) == pytest.approx(-0.01)


def test_gradient_penalty_against_a_hand_computation() -> None:
    """A linear critic D(x) = w . x has gradient w everywhere: the penalty is lambda (|w| - 1)^2."""

    class Linear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.full((3, 4, 4), 0.1))

        def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return (images * self.w).flatten(1).sum(1)

    critic = Linear()
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    loss = WassersteinLoss(FixedGenerator(fake), critic, "", torch.Generator().manual_seed(0), penalty=10.0)
    labels = torch.zeros(5, dtype=torch.long)
    penalty = loss.d_penalty(real, fake, labels)
    norm = float(critic.w.detach().norm())
    assert float(penalty.detach()) == pytest.approx(10.0 * (norm - 1) ** 2, rel=1e-5)
    penalty.backward()  # the penalty trains the critic: it needs a second-order graph
    assert critic.w.grad is not None and critic.w.grad.abs().sum() > 0


def test_began_against_a_hand_computation_and_its_k_balance() -> None:
    class Reconstructs(nn.Module):
        """An "autoencoder" that outputs zeros: the L1 error is the mean absolute pixel."""

        def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(images)

    real, fake = torch.full((2, 3, 4, 4), 0.4), torch.full((2, 3, 4, 4), -0.1)
    loss = BEGANLoss(FixedGenerator(fake), Reconstructs(), "", torch.Generator(), gamma=0.5, lambda_k=0.001)
    loss.k = 0.2
    labels = torch.zeros(2, dtype=torch.long)
    d = loss.d_phase(real, labels, torch.zeros(2, 8))
    assert float(d.loss) == pytest.approx(0.4 - 0.2 * 0.1)
    assert float(loss.g_phase(real, labels, torch.zeros(2, 8)).loss.detach()) == pytest.approx(0.1)
    loss.after_d_step(d)
    assert loss.k == pytest.approx(0.2 + 0.001 * (0.5 * 0.4 - 0.1))
    assert loss.summary()["began_convergence"] == pytest.approx(0.4 + abs(0.5 * 0.4 - 0.1))
    # k lives in [0, 1] and survives a resume through the checkpoint.
    loss.k = 0.99995
    loss.after_d_step(loss.d_phase(torch.full((2, 3, 4, 4), 0.9), labels, torch.zeros(2, 8)))
    assert loss.k == 1.0
    restored = BEGANLoss(FixedGenerator(fake), Reconstructs(), "", torch.Generator())
    restored.load_state_dict(loss.state_dict())
    assert restored.k == 1.0


@pytest.mark.parametrize("name", ["tiny", "dcgan", "wgan", "bgan"])
def test_a_batch_norm_discriminator_is_one_function_in_both_phases(name: str) -> None:
    """D with batch norm in training mode scores a fixed fake batch identically in the D and the
    G phase: both score the same real + fake composition."""
    generator_spec, discriminator_spec = preset(name, 4)
    discriminator = build(discriminator_spec).train()
    assert any(isinstance(m, nn.BatchNorm2d) for m in discriminator.modules())
    fake = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    real = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    labels = torch.tensor([0, 1, 2, 3])
    recipe = RECIPES[name]
    loss = make_loss(
        recipe.loss, FixedGenerator(fake), discriminator, "", torch.Generator(), **recipe.loss_options
    )
    assert loss.same_batch_both_phases
    noise = torch.zeros(4, 8)
    # Spectral norm moves its power-iteration vectors on every training-mode forward; cached()
    # holds the normalised weights still, so that only the batch composition could differ.
    with parametrize.cached():
        d_phase = loss.d_phase(real, labels, noise)
        g_phase = loss.g_phase(real, labels, noise)
    assert torch.equal(d_phase.fake_scores, g_phase.fake_scores)
    assert torch.equal(d_phase.real_scores, g_phase.real_scores)

    # The control: scoring the fakes alone, as before, gives D another function.
    with parametrize.cached():
        alone = discriminator(fake, labels)
    assert not torch.allclose(alone, d_phase.fake_scores)


def test_without_batch_norm_the_g_phase_scores_fakes_alone() -> None:
    discriminator = build(preset("cpu", 4)[1]).train()
    loss = make_loss("hinge", FixedGenerator(torch.zeros(2, 3, 64, 64)), discriminator, "", torch.Generator())
    assert not loss.same_batch_both_phases
    phase = loss.g_phase(torch.zeros(2, 3, 64, 64), torch.tensor([0, 1]), torch.zeros(2, 8))
    assert phase.real_scores is None


class ScoreAndLogits(nn.Module):
    """A D with a class head: the score is the first pixel, the logits the next two."""

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.stack([images[:, 0, 0, 0], images[:, 0, 0, 1], images[:, 0, 0, 2]], dim=1)


def test_auxiliary_classifier_against_a_hand_computation() -> None:
    """D's class head learns from real images only; G is scored by it on its fakes."""
    real, fake = images_scoring(REAL), images_scoring(FAKE)
    real[:, 0, 0, 1:3] = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    fake[:, 0, 0, 1:3] = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    loss = HingeLoss(FixedGenerator(fake), ScoreAndLogits(), "", torch.Generator(), classifier_weight=0.5)
    d = float(loss.d_phase(real, labels, torch.zeros(3, 8)).loss.detach())
    g = float(loss.g_phase(real, labels, torch.zeros(3, 8)).loss.detach())

    def cross_entropy(logits: list[list[float]]) -> float:
        return (
            sum(
                math.log(sum(math.exp(v) for v in row)) - row[y]
                for row, y in zip(logits, [0, 1, 1], strict=True)
            )
            / 3
        )

    hinge_d = sum(max(0, 1 - r) for r in REAL.tolist()) / 3 + sum(max(0, 1 + f) for f in FAKE.tolist()) / 3
    assert d == pytest.approx(hinge_d + 0.5 * cross_entropy([[2, 0], [0, 1], [0.5, 0.5]]), rel=1e-5)
    assert g == pytest.approx(
        -sum(FAKE.tolist()) / 3 + 0.5 * cross_entropy([[1, 0], [0, 0], [3, 0]]), rel=1e-5
    )


def test_adaptive_augmentation_probability_against_a_hand_computation() -> None:
    """ADA: every ``interval`` D steps, p += sign(r_t - target) * N / ramp, N the real images of
    those steps and r_t their mean sign(D(real)), clipped to [0, 1]."""
    ada = AdaptiveAugment(target=0.6, ramp_images=40, interval=2)
    sure = torch.tensor([2.0, 0.5, 1.0, -1.0])  # r = (1 + 1 + 1 - 1) / 4 = 0.5 per step
    ada.observe(sure)
    assert ada.p == 0.0  # one step of two: p has not moved
    ada.observe(torch.tensor([1.0, 1.0, 1.0, 1.0]))  # r_t over both steps = (2 + 4) / 8 = 0.75 > 0.6
    assert ada.last_r == pytest.approx(0.75)
    assert ada.p == pytest.approx(8 / 40)
    for _ in range(2):  # r_t = 0.5 < 0.6: p falls by 8 / 40
        ada.observe(sure)
    assert ada.p == pytest.approx(0.0)
    for _ in range(2):  # already at 0: clipped
        ada.observe(sure)
    assert ada.p == 0.0
    for _ in range(20):  # ten moves up of 0.2 each: clipped at 1
        ada.observe(torch.ones(4))
    assert ada.p == 1.0
    ada.observe(torch.ones(4))  # half an interval counted, then resumed: the count survives
    restored = AdaptiveAugment(target=0.6, ramp_images=40, interval=2)
    restored.load_state_dict(ada.state_dict())
    restored.observe(-torch.ones(4))
    assert restored.p == pytest.approx(1 - 8 / 40)  # r_t = 0 over the two steps


def test_the_loss_adapts_p_from_d_s_real_scores_and_augments_at_it() -> None:
    """Through the D phase: REAL's signs are (+, +, -), r_t = 1/3 < 0.6, so p stays at 0 and D
    sees the images unaugmented; with every real score positive p rises by 3 / ramp per step."""
    rng = torch.Generator().manual_seed(0)
    options = {"ada_target": 0.6, "ada_ramp_images": 30}
    loss = HingeLoss(FixedGenerator(images_scoring(FAKE)), ScoreIs(), "color", rng, **options)
    labels, noise = torch.zeros(3, dtype=torch.long), torch.zeros(3, 8)
    loss.ada.interval = 1
    loss.d_phase(images_scoring(REAL), labels, noise)
    assert loss.ada.p == 0.0
    assert phases(HingeLoss) == phases(HingeLoss, ada_target=0.6)  # at p = 0 colour is not applied
    loss.d_phase(images_scoring(REAL.abs() + 1), labels, noise)
    assert loss.ada.p == pytest.approx(0.1)
    assert loss.summary() == {"ada_p": pytest.approx(0.1), "ada_r": 1.0}
    resumed = HingeLoss(FixedGenerator(images_scoring(FAKE)), ScoreIs(), "color", rng, **options)
    resumed.load_state_dict(loss.state_dict())
    assert resumed.ada.p == pytest.approx(0.1)
    assert HingeLoss(FixedGenerator(FAKE), ScoreIs(), "", rng).summary() == {}  # off by default


class ScoreAndReconstruction(nn.Module):
    """Scores the first pixel, and "reconstructs" every image as a constant 0.25 at 32x32."""

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        reconstruction = torch.full((len(images), 3 * 32 * 32), 0.25)
        return torch.cat([images[:, 0, 0, 0, None], reconstruction], dim=1)


def test_reconstruction_loss_against_a_hand_computation() -> None:
    """FastGAN's L1 on real images only: D's 32x32 reconstruction against the image D saw,
    area-downsampled. Real images of 0.75 everywhere (but the score pixel) against a
    reconstruction of 0.25: |0.75 - 0.25| = 0.5, less the score pixel's share of its 2x2 area."""
    real = torch.full((3, 3, 64, 64), 0.75)
    real[:, 0, 0, 0] = REAL
    fake = torch.nn.functional.interpolate(images_scoring(FAKE), size=64)  # fakes do not count
    labels, noise = torch.zeros(3, dtype=torch.long), torch.zeros(3, 8)
    loss = HingeLoss(
        FixedGenerator(fake), ScoreAndReconstruction(), "", torch.Generator(), reconstruction_weight=2.0
    )
    d = float(loss.d_phase(real, labels, noise).loss)
    hinge = sum(max(0, 1 - r) for r in REAL.tolist()) / 3 + sum(max(0, 1 + f) for f in FAKE.tolist()) / 3
    corner = [abs((v + 3 * 0.75) / 4 - 0.25) for v in REAL.tolist()]  # the 2x2 area with the score pixel
    l1 = (sum(corner) + 3 * (3 * 32 * 32 - 1) * 0.5) / (3 * 3 * 32 * 32)
    assert d == pytest.approx(hinge + 2.0 * l1, rel=1e-5)
    g = loss.g_phase(real, labels, noise)  # G is not scored by the reconstruction
    assert float(g.loss.detach()) == pytest.approx(-sum(FAKE.tolist()) / 3, rel=1e-5)
