"""Curation: every sampled image scored, and only the best of more candidates kept.

``gen sample --keep-best F`` draws ``ceil(n / F)`` candidates per class, scores each, and
writes the ``n`` best; ``--min-class-confidence P`` (and ``--min-near-copy-distance D``) keep
only candidates that pass, drawing until ``n`` pass or ``MAX_CANDIDATES_PER_IMAGE * n``
candidates were drawn. No rejected image is written; the counts of what was drawn, kept and
rejected (by reason) go into a ``curations`` row, and each kept image's row holds its scores.

The scores of an image (``ImageScores``):

- ``class_confidence``: the curating classifier's softmax probability of the image's own class.
  The curating classifier is the domain CNN's architecture (gen.metrics.domain) trained on the
  checkpoint's own training images, with its own seed (``CLASSIFIER_SEED``) on a stratified
  ``1 - HELD_OUT_SHARE`` of them; the rest measure its accuracy. The report's domain classifier
  is trained on all the training images with the report's seed, so the two are never one
  network: a curated set cannot grade itself. Cached by data fingerprint under
  ``$GEN_CACHE_DIR/classifiers/curation-*.pt`` like the report's.
- ``realism``: the checkpoint's discriminator D(x, y), as it is (a logit or critic value, no
  sigmoid), higher meaning more real to that discriminator; for BEGAN's autoencoder head, minus
  the mean L1 error of its reconstruction. Comparable only within one checkpoint. A D with
  ``minibatch_std`` scores an image beside its group of consecutive candidates in the scoring
  batch (same class, sampling order), as it scored groups in training; the batches are fixed by
  the seed, so the score is still reproducible.
- ``near_copy_distance``: the Euclidean distance in pixels (scaled to [0, 1]; the pixel space
  of gen.metrics.near_copies) to the nearest training image of the same class. The feature
  space of near_copies needs the report's classifier, which curation must not use.

Ranking (``--keep-best``): each candidate's percentile rank by class_confidence and by realism
among its class's candidates, averaged; the highest are kept, ties to the lower index. Ranks,
not raw values, because confidence crowds near 1 and D's scale depends on its loss.

Reproducibility is sampling's: a candidate's noise is a pure function of (seed, class, index),
and a kept image's row records its index, so gen reproduce makes it again. Candidates are
generated in the batches plain sampling would use (``batch_size`` from index 0), and the kept
ones are made again in those same batches for writing, so the file holds exactly the pixels
that were scored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from gen.architecture import DiscriminatorSpec, from_json
from gen.checkpoint import file_sha256
from gen.errors import GenError
from gen.image_folder import load_image_folder
from gen.metrics import domain, near_copies
from gen.networks import Discriminator, Generator, split_discriminator_output
from gen.runtime import cache_dir

# gen.sample.generate, handed in (sample imports this module): (generator, seed, label, indices,
# device) -> the uint8 images of those stream positions.
Generate = Callable[[Generator, int, int, Sequence[int], torch.device], torch.Tensor]

CLASSIFIER_SEED = 7919  # the report's classifiers take the report's --seed (0 by default)
HELD_OUT_SHARE = 0.2
DEFAULT_CLASSIFIER_EPOCHS = 15
MAX_CANDIDATES_PER_IMAGE = 20  # thresholds alone: at most this many candidates per image asked
RANKING = "mean percentile rank of class_confidence and realism"
BELOW_CONFIDENCE = "below_min_class_confidence"
NEAR_COPY = "below_min_near_copy_distance"
NOT_AMONG_BEST = "not_among_the_best"


@dataclass(frozen=True)
class CurationSettings:
    """What a curating run asks for; at least one of the three criteria."""

    keep_best: float | None = None  # 0 < F <= 1: keep the best n of ceil(n / F) candidates
    min_class_confidence: float | None = None  # 0 <= P <= 1
    min_near_copy_distance: float | None = None  # >= 0, in near_copy_distance's units
    classifier_epochs: int = DEFAULT_CLASSIFIER_EPOCHS

    def __post_init__(self) -> None:
        if (
            self.keep_best is None
            and self.min_class_confidence is None
            and self.min_near_copy_distance is None
        ):
            raise GenError("curation needs --keep-best, --min-class-confidence or --min-near-copy-distance.")
        if self.keep_best is not None and not 0 < self.keep_best <= 1:
            raise GenError(f"--keep-best must be a fraction in (0, 1], not {self.keep_best}.")
        if self.min_class_confidence is not None and not 0 <= self.min_class_confidence <= 1:
            raise GenError(f"--min-class-confidence must lie in [0, 1], not {self.min_class_confidence}.")
        if self.min_near_copy_distance is not None and not self.min_near_copy_distance >= 0:
            raise GenError(f"--min-near-copy-distance must be 0 or more, not {self.min_near_copy_distance}.")
        if self.classifier_epochs < 1:
            raise GenError("the curating classifier needs at least 1 epoch.")

    def candidates(self, n: int) -> int:
        """The most candidates drawn per class for ``n`` kept images."""
        if self.keep_best is not None:
            # The small tolerance keeps 10 / 0.1 at 100 rather than 101 (floating point).
            return math.ceil(n / self.keep_best - 1e-9)
        return MAX_CANDIDATES_PER_IMAGE * n

    def rejection(self, scores: ImageScores) -> str | None:
        """Why a candidate fails the thresholds (the first that fails), or None."""
        if self.min_class_confidence is not None and scores.class_confidence < self.min_class_confidence:
            return BELOW_CONFIDENCE
        if (
            self.min_near_copy_distance is not None
            and scores.near_copy_distance < self.min_near_copy_distance
        ):
            return NEAR_COPY
        return None


@dataclass(frozen=True)
class ImageScores:
    class_confidence: float
    realism: float | None
    near_copy_distance: float


@dataclass(frozen=True)
class ClassCuration:
    """One class of a curating run."""

    class_name: str
    asked: int  # images per class asked for
    candidates: int  # drawn and scored
    kept: int  # kept by this run (written, or already in the folder from another run)
    resumed: int  # kept by an earlier run of the same request, recorded there
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> candidates

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "class_name"}


def held_out_split(labels: torch.Tensor, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, held-out rows): per class a seeded ``share`` held out (none of a lone image)."""
    stream = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for label in range(int(labels.max()) + 1 if len(labels) else 0):
        rows = torch.nonzero(labels == label).flatten()
        rows = rows[torch.randperm(len(rows), generator=stream)]
        count = round(share * len(rows)) if len(rows) > 1 else 0
        held.append(rows[:count])
        kept.append(rows[count:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


@dataclass(frozen=True)
class CuratingClassifier:
    model: domain.DomainClassifier
    path: Path
    held_out_accuracy: float | None

    def identity(self) -> dict[str, Any]:
        """What the curations row says of it (no local path: the cache file's own name)."""
        return {
            "file": self.path.name,
            "sha256": file_sha256(self.path),
            "seed": CLASSIFIER_SEED,
            "held_out_share": HELD_OUT_SHARE,
            "held_out_accuracy": self.held_out_accuracy,
            "architecture": self.model.config.to_dict(),
        }


def curating_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    fingerprint: str,
    epochs: int,
    device: torch.device,
    progress: bool = True,
) -> CuratingClassifier:
    """The curating classifier of a training set, trained once and cached (see the module)."""
    train_rows, held_rows = held_out_split(labels, HELD_OUT_SHARE, CLASSIFIER_SEED)
    name = f"curation-{fingerprint[:16]}-{num_classes}c-{epochs}e-s{CLASSIFIER_SEED}-h{HELD_OUT_SHARE:g}.pt"
    path = cache_dir() / "classifiers" / name
    if path.is_file():
        model = domain.load_classifier(path, device)
    else:
        model = domain.train_domain_classifier(
            images[train_rows],
            labels[train_rows],
            num_classes,
            epochs=epochs,
            seed=CLASSIFIER_SEED,
            device=device,
            progress=progress,
        )
        domain.save_classifier(model, path)
    accuracy = None
    if len(held_rows):
        _, probabilities = domain.domain_features_and_probabilities(model, images[held_rows], device=device)
        accuracy = float((probabilities.argmax(1) == labels[held_rows].numpy()).mean())
    return CuratingClassifier(model, path, accuracy)


def load_discriminator(state: dict[str, Any], device: torch.device) -> Discriminator:
    """The checkpoint's discriminator in eval mode, or a sentence when the checkpoint has none."""
    try:
        spec = from_json(json.loads(state["discriminator_spec"]))
        weights = state["discriminator"]
    except (KeyError, TypeError, ValueError):
        raise GenError(
            f"checkpoint {state.get('path')} holds no discriminator to score realism with."
        ) from None
    if not isinstance(spec, DiscriminatorSpec):
        raise GenError(f"checkpoint {state.get('path')} is damaged: its discriminator_spec is not one.")
    network = Discriminator(spec)
    network.load_state_dict(weights)
    return network.to(device).eval().requires_grad_(False)


class Curator:
    """Scores candidates of one checkpoint (see the module docstring for what each score is).

    ``state`` is the whole checkpoint (gen.checkpoint.load_checkpoint); ``train_dir`` the real
    training images, by default the folder the checkpoint was trained on, which must still
    hold the same files (its fingerprint is checked).
    """

    def __init__(
        self,
        state: dict[str, Any],
        settings: CurationSettings,
        device: torch.device,
        *,
        train_dir: str | Path | None = None,
        progress: bool = True,
    ):
        self.settings = settings
        self.device = device
        self.discriminator = load_discriminator(state, device)
        folder = Path(train_dir) if train_dir is not None else Path(json.loads(state["config"])["data"])
        if not folder.is_dir():
            raise GenError(
                f"curation needs the real training images, and {folder} is not a folder; pass --train DIR."
            )
        data = load_image_folder(folder)
        if data.fingerprint != state.get("data_fingerprint"):
            raise GenError(
                f"{folder} does not hold the images this checkpoint was trained on (its fingerprint "
                "differs); pass --train with the training folder as it was."
            )
        class_names = tuple(state["class_names"])
        if data.class_names != class_names:
            raise GenError(f"{folder}'s classes are not the checkpoint's ({', '.join(class_names)}).")
        self.classifier = curating_classifier(
            data.images,
            data.labels,
            len(class_names),
            data.fingerprint,
            settings.classifier_epochs,
            device,
            progress=progress,
        )
        self.training_pixels = {
            label: near_copies.pixels(data.images[data.labels == label]) for label in range(len(class_names))
        }

    def record(self, n: int) -> dict[str, Any]:
        """The curations row's settings for ``n`` images per class (what a rerun must match)."""
        return {
            "n": n,
            "keep_best": self.settings.keep_best,
            "min_class_confidence": self.settings.min_class_confidence,
            "min_near_copy_distance": self.settings.min_near_copy_distance,
            "candidates_per_class": self.settings.candidates(n),
            "ranking": RANKING if self.settings.keep_best is not None else None,
            "realism": "discriminator score D(x, y), no sigmoid (BEGAN: minus reconstruction L1)",
            "near_copy_distance": "pixels in [0, 1], nearest training image of the class",
            "classifier": self.classifier.identity(),
        }

    @torch.no_grad()
    def score(self, pixels: torch.Tensor, label: int) -> list[ImageScores]:
        """The scores of uint8 images (N, 3, 64, 64) of class ``label``."""
        _, probabilities = domain.domain_features_and_probabilities(
            self.classifier.model, pixels, device=self.device
        )
        inputs = domain.to_model_input(pixels, self.device)
        labels = torch.full((len(pixels),), label, device=self.device)
        spec, output = self.discriminator.spec, self.discriminator(inputs, labels)
        if spec.head == "autoencoder":
            output = -(inputs - output).abs().flatten(1).mean(1)
        else:  # the score alone, not a class head's logits or a reconstruction after it
            output, _, _ = split_discriminator_output(output, spec.reconstruction_head)
        realism = output.double().cpu().tolist()
        distances, _ = near_copies.nearest(near_copies.pixels(pixels), self.training_pixels[label])
        return [
            ImageScores(float(p), r, float(d))
            for p, r, d in zip(probabilities[:, label], realism, distances, strict=True)
        ]


def combined_rank(scores: Sequence[ImageScores]) -> np.ndarray:
    """Each candidate's mean percentile rank (0 worst .. 1 best) by class_confidence and realism."""
    if len(scores) < 2:
        return np.ones(len(scores))
    columns = [np.array([s.class_confidence for s in scores])]
    if all(s.realism is not None for s in scores):
        columns.append(np.array([s.realism for s in scores]))
    ranks = [(rankdata(column) - 1) / (len(scores) - 1) for column in columns]
    return np.mean(ranks, axis=0)


def choose(
    scored: dict[int, ImageScores], wanted: int, settings: CurationSettings, resumed: set[int]
) -> tuple[list[int], dict[str, int]]:
    """(the kept indices in index order, rejected counts by reason) of one class's candidates.

    ``resumed``: indices an earlier run of the same request kept; they are neither kept again
    nor rejected. ``wanted``: how many more to keep.
    """
    rejected: dict[str, int] = {}
    passing = []
    for index in sorted(scored):
        if index in resumed:
            continue
        reason = settings.rejection(scored[index])
        if reason is None:
            passing.append(index)
        else:
            rejected[reason] = rejected.get(reason, 0) + 1
    if settings.keep_best is None:
        kept = passing[:wanted]
    else:
        order = sorted(scored)
        rank = dict(zip(order, combined_rank([scored[i] for i in order]), strict=True))
        kept = sorted(sorted(passing, key=lambda index: (-rank[index], index))[:wanted])
    if len(passing) > len(kept):
        rejected[NOT_AMONG_BEST] = len(passing) - len(kept)
    return kept, rejected


@dataclass
class ClassPlan:
    """One class's curation: scores of every candidate, the kept indices and the batches they
    were scored in (made again in the same batches for writing)."""

    scores: dict[int, ImageScores]
    kept: list[int]
    record: ClassCuration
    batches: list[list[int]]

    def kept_batches(
        self, generate: Generate, generator: Generator, seed: int, label: int, device: torch.device
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(kept indices, their uint8 pixels) batch by batch, from the batches they were scored in."""
        kept = set(self.kept)
        for batch in self.batches:
            chosen = [position for position, index in enumerate(batch) if index in kept]
            if chosen:
                pixels = generate(generator, seed, label, batch, device)
                yield [batch[position] for position in chosen], pixels[chosen]


def plan_class(
    curator: Curator,
    generate: Generate,
    generator: Generator,
    *,
    class_name: str,
    label: int,
    seed: int,
    n: int,
    resumed: set[int],
    batch_size: int,
    device: torch.device,
    on_scored: Callable[[int], None] | None = None,
) -> ClassPlan:
    """Score candidates of one class in sampling's batches and choose the images to keep.

    With --keep-best every candidate is drawn; with thresholds alone, batches are drawn until
    enough pass. ``on_scored(count)`` is called after each batch (for a progress bar).
    """
    settings = curator.settings
    wanted = max(n - len(resumed), 0)
    limit = settings.candidates(n)
    scores: dict[int, ImageScores] = {}
    batches: list[list[int]] = []
    passing = 0
    for start in range(0, limit, batch_size):
        if settings.keep_best is None and passing >= wanted:
            break
        batch = list(range(start, min(start + batch_size, limit)))
        pixels = generate(generator, seed, label, batch, device)
        for index, image_scores in zip(batch, curator.score(pixels, label), strict=True):
            scores[index] = image_scores
            passing += index not in resumed and settings.rejection(image_scores) is None
        batches.append(batch)
        if on_scored is not None:
            on_scored(len(batch))
    if settings.keep_best is None:
        # Thresholds alone: the candidates after the n-th that passes were drawn with its batch
        # but are not part of the run.
        kept, _ = choose(scores, wanted, settings, resumed)
        last = kept[-1] if len(kept) == wanted and kept else max(scores, default=-1)
        scores = {index: value for index, value in scores.items() if index <= last}
    kept, rejected = choose(scores, wanted, settings, resumed)
    record = ClassCuration(class_name, n, len(scores), len(kept), len(resumed), rejected)
    return ClassPlan(scores, kept, record, batches)


def curated_class(
    curator: Curator,
    generate: Generate,
    generator: Generator,
    label: int,
    seed: int,
    n: int,
    device: torch.device,
) -> torch.Tensor:
    """The uint8 images (n, 3, 64, 64) of class ``label`` that gen sample --keep-best would write."""
    plan = plan_class(
        curator, generate, generator, class_name=str(label), label=label, seed=seed, n=n, resumed=set(),
        batch_size=256, device=device,
    )  # fmt: skip
    return torch.cat([pixels for _, pixels in plan.kept_batches(generate, generator, seed, label, device)])
