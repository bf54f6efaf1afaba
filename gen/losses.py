"""The GAN objectives, one class each, with a discriminator phase and a generator phase
(cf. stylegan2-ada's training/loss.py): the training loop calls ``d_phase`` and ``g_phase``
and never knows what a hinge is.

Every loss scores what D sees through DiffAugment (an empty policy is the identity). One rule
holds for all of them: D is one function in both phases. A discriminator that holds batch
norm in training mode normalises each batch by its own statistics, so scoring real and fake
together in the D phase and fakes alone in the G phase would make D two different functions
(and undo spectral norm's Lipschitz bound). Here, when D holds batch norm, both phases score
the same composition, real and fake concatenated; without batch norm each image's score
depends on that image alone and the G phase scores fakes only.

- HingeLoss: hinge (Lim & Ye 2017; SN-GAN, SAGAN and the source method use it);
- NonSaturatingLoss: binary cross-entropy with the non-saturating G loss (Goodfellow et al.
  2014; DCGAN, Radford et al. 2015);
- WassersteinLoss: the critic's E[D(fake)] - E[D(real)], with weight clipping (WGAN, Arjovsky
  et al. 2017) or a gradient penalty (WGAN-GP, Gulrajani et al. 2017);
- BoundarySeekingLoss: BCE for D, G pulls D(G(z)) to the decision boundary (BGAN, Hjelm et
  al. 2017);
- BEGANLoss: an autoencoder D, L1 reconstruction, the k_t balance (Berthelot et al. 2017).

Regularisers any of them can take: LeCam (``lecam``), an auxiliary class head
(``classifier_weight``), FastGAN's reconstruction of real images by D (``reconstruction_weight``),
ADA's adaptive augmentation probability (``ada_target``, AdaptiveAugment), MSGAN's mode
seeking term on G (``mode_seeking``, mode_seeking_term) and, for a generator that draws each
image in a training image's colour, a term that holds it to that colour (``colour_condition``,
colour_condition_term), and a term that holds each class's pixel values to the real batch's
(``histogram_matching``, histogram_matching_term). A discriminator with a colour projection is
told the colour each image claims in both phases (claimed_colours).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gen.diffaugment import diff_augment
from gen.networks import RECONSTRUCTION_SIZE, split_discriminator_output

MODE_SEEKING_EPS = 1e-5  # MSGAN's


@dataclass
class Phase:
    """What one phase computed: the loss to back-propagate and the scores behind it (detached),
    for the history (mean D(real), mean D(fake))."""

    loss: torch.Tensor
    real_scores: torch.Tensor | None
    fake_scores: torch.Tensor


@dataclass
class AdaptiveAugment:
    """ADA's augmentation probability p (Karras et al., NeurIPS 2020, section 3).

    D overfits when it grows sure of every real image; r_t = E[sign(D(real))] measures that
    (0: no better than chance, 1: every real image scored real). Every ``interval`` D steps,
    p moves by sign(r_t - target) * N / ``ramp_images``, N the real images seen since the last
    move, clipped to [0, 1]; p scales every augmentation's probability (gen.diffaugment's
    ``strength``). So p rises while D overfits and falls while it does not, instead of a fixed
    probability that hides colour from D all the time. ADA lets p cross 0..1 in 500k images;
    ``ramp_images`` defaults to 100k because a 20-minute CPU run sees about that many.
    """

    target: float
    ramp_images: int = 100_000
    interval: int = 4
    p: float = 0.0
    signs: float = 0.0  # sum of sign(D(real)) since the last move
    images: int = 0  # real images since the last move
    steps: int = 0  # D steps since the last move
    last_r: float = 0.0  # the r_t of the last move, for the history

    def observe(self, real_scores: torch.Tensor) -> None:
        """Count one D step's real scores, and move p when ``interval`` steps are counted."""
        self.signs += float(torch.sign(real_scores.detach()).sum())
        self.images += real_scores.numel()
        self.steps += 1
        if self.steps < self.interval:
            return
        signs, images = self.signs, self.images
        if dist.is_available() and dist.is_initialized():  # one p for every process
            totals = torch.tensor([signs, float(images)], device=real_scores.device)
            dist.all_reduce(totals)
            signs, images = float(totals[0]), int(totals[1])
        self.last_r = signs / images
        step = images / self.ramp_images
        self.p = min(max(self.p + (step if self.last_r > self.target else -step), 0.0), 1.0)
        self.signs, self.images, self.steps = 0.0, 0, 0

    def state_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in ("p", "signs", "images", "steps", "last_r")}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.p, self.signs, self.last_r = float(state["p"]), float(state["signs"]), float(state["last_r"])
        self.images, self.steps = int(state["images"]), int(state["steps"])


def holds_batch_norm(network: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in network.modules())


class GANLoss:
    """The two phases around an objective; subclasses give ``d_objective`` and ``g_objective``."""

    name = "gan"

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        policy: str,
        rng: torch.Generator,
        *,
        same_batch_both_phases: bool | None = None,
        lecam: float = 0.0,
        lecam_decay: float = 0.99,
        classifier_weight: float = 0.0,
        reconstruction_weight: float = 0.0,
        ada_target: float = 0.0,
        ada_ramp_images: int = 100_000,
        mode_seeking: float = 0.0,
        colour_condition: float = 0.0,
        histogram_matching: float = 0.0,
    ):
        self.generator = generator
        self.discriminator = discriminator
        self.policy = policy
        self.rng = rng
        # None: decided by whether D holds batch norm (see the module docstring).
        self.same_batch_both_phases = (
            holds_batch_norm(discriminator) if same_batch_both_phases is None else same_batch_both_phases
        )
        self.lecam = lecam
        self.lecam_decay = lecam_decay
        self.anchors: dict[str, float] = {}  # LeCam's moving averages of D(real) and D(fake)
        self.classifier_weight = classifier_weight
        self.logits: torch.Tensor | None = None  # the class head's logits of the last scoring
        self.reconstruction_weight = reconstruction_weight
        # D's reconstruction of the last scoring and what it reconstructed (the augmented images)
        self.reconstruction: tuple[torch.Tensor, torch.Tensor] | None = None
        self.ada = AdaptiveAugment(ada_target, ada_ramp_images) if ada_target else None
        self.mode_seeking = mode_seeking
        self.colour_condition = colour_condition
        self.histogram_matching = histogram_matching
        spec = getattr(getattr(discriminator, "module", discriminator), "spec", None)  # DDP: in .module
        self.colour_projection = bool(getattr(spec, "colour_projection", False))

    # -- scoring -------------------------------------------------------------------------------

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """What D sees: DiffAugment's policy, at ADA's strength when p adapts."""
        return diff_augment(images, self.policy, self.rng, self.ada.p if self.ada else 1.0)

    def score(
        self, images: torch.Tensor, labels: torch.Tensor, colours: torch.Tensor | None = None
    ) -> torch.Tensor:
        """D's score for each augmented image (``colours``: what each claims, for D's colour
        projection). A D with a class head or a reconstruction head returns more after the
        score; they are kept in ``logits`` and ``reconstruction``."""
        augmented = self.augment(images)
        out = (
            self.discriminator(augmented, labels)
            if colours is None
            else self.discriminator(augmented, labels, colours)
        )
        score, logits, reconstruction = split_discriminator_output(out, self.reconstruction_weight > 0)
        if logits is not None and self.classifier_weight:
            self.logits = logits.float()
        if reconstruction is not None:
            self.reconstruction = (reconstruction, augmented)
        return score

    def claimed_colours(
        self, real: torch.Tensor | None, noise: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor | None:
        """For D's colour projection, the standardised colours a batch of real images (their
        own; none when ``real`` is None) and then the fakes drawn from ``noise`` (the requested
        ones) claim, in the order D scores them. None when D has no colour projection."""
        if not self.colour_projection:
            return None
        generator = getattr(self.generator, "module", self.generator)
        colours = generator.requested_colours(noise, labels)
        if real is not None:
            colours = torch.cat([generator.colours_of(real), colours])
        return generator.standardised(colours)

    def _score_pair(
        self,
        real: torch.Tensor,
        fake: torch.Tensor,
        labels: torch.Tensor,
        fake_labels: torch.Tensor,
        colours: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(real scores, fake scores) from one forward over both, so batch norm sees both."""
        scores = self.score(torch.cat([real, fake.to(real.dtype)]), torch.cat([labels, fake_labels]), colours)
        real_scores, fake_scores = scores.float().split([real.size(0), fake.size(0)])
        return real_scores, fake_scores

    # -- the phases ----------------------------------------------------------------------------

    def d_phase(self, real: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor) -> Phase:
        """D's loss on a real batch and fakes of the same labels (G is not differentiated)."""
        with torch.no_grad():
            fake = self.generator(noise, labels)
        colours = self.claimed_colours(real, noise, labels)
        real_scores, fake_scores = self._score_pair(real, fake, labels, labels, colours)
        logits, reconstruction = self.logits, self.reconstruction  # before the penalty scores again
        if self.ada is not None:
            self.ada.observe(real_scores)
        loss = self.d_objective(real_scores, fake_scores)
        penalty = self.d_penalty(real, fake, labels, colours)
        if penalty is not None:
            loss = loss + penalty
        if self.lecam:
            loss = loss + self.lecam * self.lecam_term(real_scores, fake_scores)
        if self.classifier_weight:  # D's class head learns from real images only
            loss = loss + self.classifier_weight * F.cross_entropy(logits[: real.size(0)], labels)
        if self.reconstruction_weight:
            loss = loss + self.reconstruction_weight * reconstruction_loss(*reconstruction, real.size(0))
        return Phase(loss, real_scores.detach(), fake_scores.detach())

    def lecam_term(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        """LeCam regularisation (Tseng et al., CVPR 2021), as the authors' code writes it:
        mean(relu(D(real) - a_fake)^2) + mean(relu(a_real - D(fake))^2), where a_real and a_fake
        are moving averages (decay ``lecam_decay``) of the mean scores, updated with this batch
        first and starting at its means. It keeps D's scores on real and fake images from
        drifting apart, which on a few hundred images per class is how D overfits."""
        for name, scores in (("real", real_scores), ("fake", fake_scores)):
            mean = float(scores.detach().mean())
            previous = self.anchors.get(name)
            self.anchors[name] = (
                mean if previous is None else self.lecam_decay * previous + (1 - self.lecam_decay) * mean
            )
        return (F.relu(real_scores - self.anchors["fake"]) ** 2).mean() + (
            F.relu(self.anchors["real"] - fake_scores) ** 2
        ).mean()

    def g_phase(self, real: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor) -> Phase:
        """G's loss on fakes of ``labels``; ``real`` joins D's batch only when D holds batch norm
        (the histogram term compares the fakes with it either way)."""
        fake = self.generator(noise, labels)
        colours = self.claimed_colours(real if self.same_batch_both_phases else None, noise, labels)
        if self.same_batch_both_phases:
            real_scores, fake_scores = self._score_pair(real, fake, labels, labels, colours)
        else:
            real_scores, fake_scores = None, self.score(fake, labels, colours).float()
        real_scores = real_scores.detach() if real_scores is not None else None
        loss = self.g_objective(fake_scores, fake)
        if self.classifier_weight:  # G makes images D's class head files under their label
            loss = loss + self.classifier_weight * F.cross_entropy(self.logits[-fake.size(0) :], labels)
        if self.mode_seeking:
            loss = loss + self.mode_seeking * mode_seeking_term(fake, noise, labels)
        if self.colour_condition:
            generator = getattr(self.generator, "module", self.generator)  # under DistributedDataParallel
            loss = loss + self.colour_condition * colour_condition_term(fake, generator, noise, labels)
        if self.histogram_matching:
            loss = loss + self.histogram_matching * histogram_matching_term(fake, real, labels)
        return Phase(loss, real_scores, fake_scores.detach())

    def d_objective(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_objective(self, fake_scores: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_penalty(
        self,
        real: torch.Tensor,
        fake: torch.Tensor,
        labels: torch.Tensor,
        colours: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """A regulariser added to D's loss (the gradient penalty); None when there is none.
        ``colours``: what the real and fake images claim (claimed_colours), or None."""
        return None

    @torch.no_grad()
    def after_d_step(self, phase: Phase) -> None:
        """Called once the D optimiser stepped (weight clipping, BEGAN's k_t update)."""

    # -- state that must survive a resume ------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"lecam_anchors": dict(self.anchors)} if self.anchors else {}
        if self.ada is not None:
            state["ada"] = self.ada.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchors = {name: float(value) for name, value in state.get("lecam_anchors", {}).items()}
        if self.ada is not None and "ada" in state:
            self.ada.load_state_dict(state["ada"])

    def summary(self) -> dict[str, float]:
        """Extra figures for the history (ADA's p and r_t; BEGAN's k_t and convergence measure)."""
        return {"ada_p": self.ada.p, "ada_r": self.ada.last_r} if self.ada is not None else {}


def mode_seeking_term(fake: torch.Tensor, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MSGAN's mode seeking term (Mao et al., CVPR 2019), over every pair of fakes that share a
    label: 1 / (eps + mean over pairs of mean|G(z1) - G(z2)| / mean|z1 - z2|). G lowers it by
    drawing images of one class that differ as much as their noise does, where a collapsed G
    draws every smear of a class in much the same colour. 0 when no two fakes share a label."""
    i, j = torch.triu(labels[:, None] == labels[None, :], diagonal=1).nonzero(as_tuple=True)
    if len(i) == 0:
        return fake.new_zeros((), dtype=torch.float32)
    images, latents = fake.flatten(1).float(), noise.flatten(1).float()
    image_distance = torch.cdist(images, images, p=1)[i, j] / images.size(1)
    noise_distance = torch.cdist(latents, latents, p=1)[i, j] / latents.size(1)
    return 1 / ((image_distance / noise_distance).mean() + MODE_SEEKING_EPS)


def colour_condition_term(
    fake: torch.Tensor, generator: nn.Module, noise: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """How far each fake's colour (``generator.colours_of``) lies from the training image colour it was
    asked for (``generator.requested_colours``): the mean squared difference over the six
    numbers, each in units of its spread over the training images (``colour_scale``)."""
    wanted = generator.requested_colours(noise, labels)
    return (((generator.colours_of(fake) - wanted) / generator.colour_scale) ** 2).mean()


def histogram_matching_term(fake: torch.Tensor, real: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The 1-D earth mover's distance between the pixel values of the fakes and of the real images
    of each class, channel by channel (fakes and real images share ``labels``, so each class has
    as many of both): both sets of values sorted, the mean absolute difference of the k-th
    smallest to the k-th smallest, averaged over classes and channels (cf. Risser et al. 2017's
    histogram loss). Each fake pixel is pulled, with the same force however near, to the real
    value of its rank, so a background drawn a few levels too widely narrows to the real one;
    the adversarial loss says where in the image a value goes, this term how often it occurs."""
    channels, distances = fake.size(1), []
    for label in labels.unique():
        members = labels == label
        fake_values = fake[members].float().transpose(0, 1).reshape(channels, -1).sort(1).values
        real_values = real[members].float().transpose(0, 1).reshape(channels, -1).sort(1).values
        distances.append((fake_values - real_values).abs().mean())
    return torch.stack(distances).mean()


def reconstruction_loss(
    reconstruction: torch.Tensor, augmented: torch.Tensor, real_count: int
) -> torch.Tensor:
    """L1 between D's reconstructions of the first ``real_count`` (real) images and those images
    as D saw them, area-downsampled to the reconstruction's size (FastGAN scores real images only)."""
    target = F.interpolate(augmented[:real_count].float(), size=RECONSTRUCTION_SIZE, mode="area")
    return F.l1_loss(reconstruction[:real_count].float(), target)


class HingeLoss(GANLoss):
    """Hinge loss: D pushes real scores above +1 and fake scores below -1; G raises fake scores."""

    name = "hinge"

    def d_objective(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()

    def g_objective(self, fake_scores: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return -fake_scores.mean()


class NonSaturatingLoss(GANLoss):
    """Binary cross-entropy on D's logits; G maximises log D(G(z)) (the non-saturating form)."""

    name = "bce"

    def d_objective(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        # -log sigmoid(r) - log(1 - sigmoid(f)), written with softplus for stability.
        return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()

    def g_objective(self, fake_scores: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_scores).mean()


class BoundarySeekingLoss(NonSaturatingLoss):
    """BGAN for continuous data: D as in the standard GAN; G minimises
    0.5 * (log D(G(z)) - log(1 - D(G(z))))^2, which on logits is 0.5 * logit^2."""

    name = "boundary-seeking"

    def g_objective(self, fake_scores: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (fake_scores**2).mean()


class WassersteinLoss(GANLoss):
    """The critic estimates E[D(real)] - E[D(fake)]; its Lipschitz bound comes from clipping
    every weight to [-clip, clip] after each step (WGAN) or from a gradient penalty of weight
    ``penalty`` at random interpolates between real and fake images (WGAN-GP)."""

    name = "wasserstein"

    def __init__(self, *args: Any, clip: float | None = None, penalty: float = 0.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.clip = clip
        self.penalty = penalty

    def d_objective(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        return fake_scores.mean() - real_scores.mean()

    def g_objective(self, fake_scores: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return -fake_scores.mean()

    def d_penalty(
        self,
        real: torch.Tensor,
        fake: torch.Tensor,
        labels: torch.Tensor,
        colours: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        if not self.penalty:
            return None
        weight = torch.rand(real.size(0), 1, 1, 1, generator=self.rng, device=real.device, dtype=real.dtype)
        between = (weight * real + (1 - weight) * fake.to(real.dtype)).requires_grad_(True)
        if colours is not None:  # an image between a real and a fake claims the colour between theirs
            real_colours, fake_colours = colours.split(real.size(0))
            colours = weight.flatten(1) * real_colours + (1 - weight.flatten(1)) * fake_colours
        scores = self.score(between, labels, colours).float()
        (gradient,) = torch.autograd.grad(scores.sum(), between, create_graph=True)
        return self.penalty * ((gradient.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    @torch.no_grad()
    def after_d_step(self, phase: Phase) -> None:
        if self.clip is not None:
            for parameter in self.discriminator.parameters():
                parameter.clamp_(-self.clip, self.clip)


class BEGANLoss(GANLoss):
    """D is an autoencoder; L(x) = mean |x - D(x)|. D minimises L(real) - k_t L(fake), G
    minimises L(fake), and k_t in [0, 1] keeps E[L(fake)] = gamma E[L(real)]:
    k_{t+1} = k_t + lambda_k (gamma L(real) - L(fake)). The "scores" are the per-image L1
    errors; the convergence measure M = L(real) + |gamma L(real) - L(fake)| goes to the history."""

    name = "began"

    def __init__(self, *args: Any, gamma: float = 0.5, lambda_k: float = 0.001, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.gamma = gamma
        self.lambda_k = lambda_k
        self.k = 0.0
        self.convergence = 0.0

    def score(
        self, images: torch.Tensor, labels: torch.Tensor, colours: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The L1 error of D's reconstruction; an autoencoder has no colour projection."""
        augmented = self.augment(images)
        reconstruction = self.discriminator(augmented, labels)
        return (augmented - reconstruction.to(augmented.dtype)).abs().flatten(1).mean(1)

    def d_objective(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        return real_scores.mean() - self.k * fake_scores.mean()

    def g_objective(self, fake_scores: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return fake_scores.mean()

    @torch.no_grad()
    def after_d_step(self, phase: Phase) -> None:
        real_error, fake_error = float(phase.real_scores.mean()), float(phase.fake_scores.mean())
        balance = self.gamma * real_error - fake_error
        self.k = min(max(self.k + self.lambda_k * balance, 0.0), 1.0)
        self.convergence = real_error + abs(balance)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "k": self.k}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.k = float(state.get("k", 0.0))

    def summary(self) -> dict[str, float]:
        return {**super().summary(), "began_k": self.k, "began_convergence": self.convergence}


LOSSES: dict[str, type[GANLoss]] = {
    loss.name: loss
    for loss in (HingeLoss, NonSaturatingLoss, WassersteinLoss, BoundarySeekingLoss, BEGANLoss)
}


def make_loss(
    name: str,
    generator: nn.Module,
    discriminator: nn.Module,
    policy: str,
    rng: torch.Generator,
    **options: Any,
) -> GANLoss:
    """The loss called ``name`` (a key of LOSSES) with its own options (clip, penalty, gamma...)."""
    return LOSSES[name](generator, discriminator, policy, rng, **options)
