"""The cheap quality figure a run computes every ``--eval-every`` iterations.

Normalised domain FID: ``eval_images`` synthetic images per class from the EMA generator
(the same noise every time, so successive checkpoints are compared on equal terms) against
the run's real training images, both through the domain CNN of ``gen report`` (trained once
per data set and cached) and z-scored with the real images' statistics
(``gen.metrics.normalised``). Lower is better; it picks the best checkpoint.

The reference is the whole training folder rather than a slice held back from training: with
a few hundred images per class, holding back enough images for a stable FID on 128-dimensional
features would cost the generator a large share of its data. The figure therefore rewards
closeness to the training images; ``gen report`` (held-out images, floors, near copies) is
what judges the final model.

It takes the domain CNN and its cache from gen.metrics.domain, with the settings of
``gen report`` (gen.metrics.figures.ReportSettings), and imports nothing of gen.report.
"""

from __future__ import annotations

import torch

from gen.image_folder import LabelledImages
from gen.images import to_uint8
from gen.metrics import domain
from gen.metrics.figures import ReportSettings
from gen.metrics.normalised import domain_reference, normalised_fid
from gen.networks import Generator


class TrainingEvaluator:
    def __init__(
        self, data: LabelledImages, device: torch.device, per_class: int, seed: int, progress: bool = False
    ):
        self.device = device
        self.per_class = per_class
        self.seed = seed
        settings = ReportSettings(seed=seed)
        self.classifier, _, _ = domain.domain_classifier(
            data.images, data.labels, len(data.class_names), data.fingerprint, settings, device, progress
        )
        self.standardiser, self.real_features = domain_reference(self.classifier, data.images, device)

    @torch.no_grad()
    def __call__(self, generator: Generator) -> float:
        """The generator's normalised domain FID (it must be in eval mode, standing statistics)."""
        rng = torch.Generator().manual_seed(self.seed + 7919)
        num_classes = generator.spec.num_classes
        images = []
        for label in range(num_classes):
            noise = torch.randn(self.per_class, generator.spec.noise_dim, generator=rng).to(self.device)
            labels = torch.full((self.per_class,), label, device=self.device)
            images.append(to_uint8(generator(noise, labels)).cpu())
        fake_features, _ = domain.domain_features_and_probabilities(
            self.classifier, torch.cat(images), device=self.device
        )
        return normalised_fid(self.real_features, fake_features, self.standardiser)
