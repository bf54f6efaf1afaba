"""How each preset trains: objective, optimiser, learning rates, critic steps, augmentation, EMA.

The networks of a preset are in ``gen.architecture.preset``; this table is the rest of what
makes a preset, and ``gen train`` takes any of it from the command line instead. Each baseline
follows its own paper, adapted in two ways shared by all of them (and said here once): every
preset is class-conditional the same way (class-conditional batch norm in G, a projection
head in D, a class code in BEGAN's autoencoder), and every preset samples through the same
EMA/standing-statistics path (the baselines with EMA decay 0, i.e. the live generator).

- ``paper``, ``small``, ``tiny``: the source method (docs/source-method.md section 2): hinge,
  Adam 1e-4 / 4e-4 with betas (0.5, 0.999), DiffAugment colour + translation, EMA 0.999.
- ``cpu``: ours for a CPU (docs/benchmarks.md): hinge, Adam 2e-4 / 2e-4 with betas (0, 0.9),
  DiffAugment translation only (its colour transforms showed D every real cell in a random
  colour, hiding the generator's colour errors), EMA 0.999, weight decay 1e-5 on D
  (PyTorch-StudioGAN's advice for small sets).
- ``reference``: the quality issue's plain CPU reference: hinge, Adam 2e-4 / 2e-4 with betas
  (0, 0.9), DiffAugment colour + translation, no EMA or decay.
- ``dcgan`` (Radford et al. 2015): BCE with the non-saturating G loss, batch norm in G and D,
  Adam 2e-4 with beta1 0.5.
- ``wgan`` (Arjovsky et al. 2017): Wasserstein critic, weights clipped to 0.01, RMSprop 5e-5,
  5 critic steps per generator step.
- ``wgan-gp`` (Gulrajani et al. 2017): gradient penalty 10, Adam 1e-4 with betas (0, 0.9),
  5 critic steps, no batch norm in the critic.
- ``bgan`` (Hjelm et al. 2017): boundary-seeking G loss, otherwise as DCGAN.
- ``began`` (Berthelot et al. 2017): autoencoder D, L1 reconstruction, k_t balance with gamma
  0.5 and lambda_k 0.001, Adam 1e-4 with beta1 0.5.

None of the baselines uses DiffAugment, which came later (2020); their batch is the source's
(64, docs/source-method.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Named here rather than taken from gen.losses so that the CLI can list them without torch.
LOSS_NAMES = ("hinge", "bce", "wasserstein", "boundary-seeking", "began")
OPTIMIZERS = ("adam", "rmsprop")


@dataclass(frozen=True)
class Recipe:
    """A preset's training settings (what TrainConfig leaves as None takes these)."""

    batch_size: int
    loss: str = "hinge"
    optimizer: str = "adam"
    g_lr: float = 1e-4
    d_lr: float = 4e-4
    betas: tuple[float, float] = (0.5, 0.999)
    critic_steps: int = 1
    diffaugment: str = "color,translation"
    ema_decay: float = 0.999
    d_weight_decay: float = 0.0
    lecam: float = 0.0
    classifier_weight: float = 0.0
    reconstruction_weight: float = 0.0
    minibatch_std: int = 0
    ada_target: float = 0.0
    mode_seeking: float = 0.0
    colour_condition: float = 0.0
    histogram_matching: float = 0.0
    oversample_rare: float = 0.0
    oversample_rare_fade: int = 0
    balanced_batches: bool = False
    transition: tuple[int, int] | None = None
    loss_options: dict[str, Any] = field(default_factory=dict)


_SOURCE = {"loss": "hinge", "g_lr": 1e-4, "d_lr": 4e-4, "betas": (0.5, 0.999)}
_PLAIN = {"loss": "hinge", "g_lr": 2e-4, "d_lr": 2e-4, "betas": (0.0, 0.9)}
_BASELINE = {"diffaugment": "", "ema_decay": 0.0, "batch_size": 64}

RECIPES: dict[str, Recipe] = {
    "paper": Recipe(batch_size=128, **_SOURCE),
    "small": Recipe(batch_size=64, **_SOURCE),
    "tiny": Recipe(batch_size=16, **_SOURCE),
    "cpu": Recipe(batch_size=32, d_weight_decay=1e-5, diffaugment="translation", **_PLAIN),
    "reference": Recipe(batch_size=32, ema_decay=0.0, **_PLAIN),
    "dcgan": Recipe(loss="bce", g_lr=2e-4, d_lr=2e-4, betas=(0.5, 0.999), **_BASELINE),
    "wgan": Recipe(
        loss="wasserstein",
        optimizer="rmsprop",
        g_lr=5e-5,
        d_lr=5e-5,
        critic_steps=5,
        loss_options={"clip": 0.01},
        **_BASELINE,
    ),
    "wgan-gp": Recipe(
        loss="wasserstein",
        g_lr=1e-4,
        d_lr=1e-4,
        betas=(0.0, 0.9),
        critic_steps=5,
        loss_options={"penalty": 10.0},
        **_BASELINE,
    ),
    "bgan": Recipe(loss="boundary-seeking", g_lr=2e-4, d_lr=2e-4, betas=(0.5, 0.999), **_BASELINE),
    "began": Recipe(
        loss="began",
        g_lr=1e-4,
        d_lr=1e-4,
        betas=(0.5, 0.999),
        loss_options={"gamma": 0.5, "lambda_k": 0.001},
        **_BASELINE,
    ),
}


def default_preset(device_type: str) -> str:
    """What `gen train` trains without --preset: ``cpu`` on a CPU (the recipe docs/benchmarks.md
    measured best at CPU budgets), ``small`` on a GPU (the source method at half width; not yet
    measured against ``cpu`` on a GPU). ``tiny`` is for tests only."""
    return "cpu" if device_type == "cpu" else "small"
