"""The GAN objective and its two phases, in one small class (cf. stylegan2-ada's loss.py).

The training loop asks for a discriminator loss and a generator loss; only this file knows
that they are hinge losses on differentiably augmented images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gen.diffaugment import diff_augment


class HingeLoss:
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018) with DiffAugment on everything D sees."""

    name = "hinge"

    def __init__(self, generator: nn.Module, discriminator: nn.Module, policy: str, rng: torch.Generator):
        self.generator = generator
        self.discriminator = discriminator
        self.policy = policy
        self.rng = rng

    def _score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.discriminator(diff_augment(images, self.policy, self.rng), labels)

    def discriminator_loss(
        self, real: torch.Tensor, real_labels: torch.Tensor, noise: torch.Tensor, fake_labels: torch.Tensor
    ) -> torch.Tensor:
        with torch.no_grad():
            fake = self.generator(noise, fake_labels)
        # One forward over real and fake together: batch-norm statistics see both, as they
        # would at any other time the discriminator runs.
        scores = self._score(torch.cat([real, fake.to(real.dtype)]), torch.cat([real_labels, fake_labels]))
        real_scores, fake_scores = scores.float().split([real.size(0), fake.size(0)])
        return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()

    def generator_loss(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return -self._score(self.generator(noise, labels), labels).float().mean()
