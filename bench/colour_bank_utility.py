"""Why a colour bank's images cost real + synthetic utility: one checkpoint trained with a colour
bank (``colour_condition``, GeneratorSpec.colour_bank), sampled three ways, each scored the way
``bench.quality`` scores a model.

    .venv/bin/python -m bench.colour_bank_utility CHECKPOINT [--per-class 200] [--utility-seeds 2]

The three samplings differ only in the colours G is asked to draw in (the same noise, labels and
weights):
- ``class``: as trained and as ``gen sample`` draws, each image in the colour of one of its
  class's training images;
- ``mean``: every image of a class in its class's mean training colour;
- ``pooled``: each image in the colour of any training image, whatever its class, so that colour
  says nothing about the class.

For each: the histogram KL per class (the report's comparison, against the test split), the domain
classifier's accuracy per class, and classifier utility (synthetic only, real + synthetic) with
the real + synthetic classifier's recall per class on the real test images; real only once.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from gen.checkpoint import load_for_sampling
from gen.errors import GenError
from gen.image_folder import load_image_folder
from gen.metrics.domain import domain_classifier, domain_features_and_probabilities
from gen.metrics.figures import ReportSettings
from gen.metrics.histogram import per_class_histogram_kl
from gen.metrics.utility import LabelledSet, classifier_utility
from gen.sample import generate, load_generator

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "pbc4"
SAMPLINGS = ("class", "mean", "pooled")
CPU = torch.device("cpu")


def ask_for(generator: torch.nn.Module, sampling: str) -> None:
    """Refill the generator's colour bank so that it asks for ``sampling``'s colours."""
    bank, counts = generator.colour_bank, generator.colour_counts
    members = [bank[label, : counts[label]].clone() for label in range(len(counts))]
    if sampling == "mean":
        bank.zero_()
        for label, colours in enumerate(members):
            bank[label, 0] = colours.mean(0)
        counts.fill_(1)
    elif sampling == "pooled":
        every = torch.cat(members)
        generator.colour_bank = every[None].expand(len(counts), -1, -1).clone()
        counts.fill_(len(every))


def sample(generator: torch.nn.Module, classes: int, per_class: int, seed: int) -> LabelledSet:
    images = [generate(generator, seed, label, list(range(per_class)), CPU) for label in range(classes)]
    return torch.cat(images), torch.arange(classes).repeat_interleave(per_class)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser("python -m bench.colour_bank_utility", description=__doc__)
    add = parser.add_argument
    add("checkpoint", type=Path)
    add("--data", type=Path, default=DATA / "train", help="training images (default: pbc4 train)")
    add("--real", type=Path, default=DATA / "test", help="held-out images (default: pbc4 test)")
    add("--per-class", type=int, default=200, help="synthetic images per class (default 200)")
    add("--utility-seeds", type=int, default=2, help="classifier seeds (default 2)")
    add("--seed", type=int, default=0, help="sampling seed (default 0)")
    add("--samplings", default=",".join(SAMPLINGS), help="which, comma-separated (default: all three)")
    args = parser.parse_args(argv)
    samplings = args.samplings.split(",")
    if not set(samplings) <= set(SAMPLINGS):
        raise SystemExit(f"--samplings takes {', '.join(SAMPLINGS)}, not {args.samplings!r}.")
    try:
        train, test = load_image_folder(args.data), load_image_folder(args.real)
        state = load_for_sampling(args.checkpoint)
    except GenError as error:
        raise SystemExit(str(error)) from None
    if train.class_names != test.class_names:
        raise SystemExit("--data and --real must hold the same classes.")
    names, settings = list(train.class_names), ReportSettings()
    classes = len(names)
    judge, _, _ = domain_classifier(
        train.images, train.labels, classes, train.fingerprint, settings, CPU, progress=False
    )
    real_only: list[float] = []
    print(f"{'sampling':>8} | KL per class | domain accuracy per class | synthetic only | real + synthetic"
          " | its recall per class")  # fmt: skip
    for sampling in samplings:
        generator = load_generator(state, CPU)
        if not getattr(generator.spec, "colour_bank", 0):
            raise SystemExit("the checkpoint's generator has no colour bank.")
        ask_for(generator, sampling)
        fake = sample(generator, classes, args.per_class, args.seed)
        comparisons = per_class_histogram_kl(test.images, test.labels, *fake, names, seed=args.seed)
        kl = [comparison.kl["mean"] for comparison in comparisons]
        _, probabilities = domain_features_and_probabilities(judge, fake[0], device=CPU)
        correct = probabilities.argmax(1) == fake[1].numpy()
        accuracy = [float(correct[fake[1].numpy() == label].mean()) for label in range(classes)]
        synthetic, both, recall = [], [], []
        for seed in range(args.utility_seeds):
            results = classifier_utility(
                (train.images, train.labels), fake, (test.images, test.labels), classes, names,
                epochs=settings.utility_epochs, seed=seed, device=CPU,
            )  # fmt: skip
            if len(real_only) < args.utility_seeds:
                real_only.append(results["real_only"]["accuracy"])
            synthetic.append(results["synthetic_only"]["accuracy"])
            both.append(results["real_plus_synthetic"]["accuracy"])
            matrix = np.array(results["real_plus_synthetic"]["confusion_matrix"], dtype=float)
            recall.append(np.diag(matrix) / matrix.sum(1))
        print(
            f"{sampling:>8} | " + " ".join(f"{v:.3f}" for v in kl)
            + " | " + " ".join(f"{v:.3f}" for v in accuracy)
            + f" | {np.mean(synthetic):.3f} ({' '.join(f'{v:.3f}' for v in synthetic)})"
            + f" | {np.mean(both):.3f} ({' '.join(f'{v:.3f}' for v in both)})"
            + " | " + " ".join(f"{v:.3f}" for v in np.mean(recall, 0)),
            flush=True,
        )  # fmt: skip
    print(f"real only: {np.mean(real_only):.3f} ({' '.join(f'{v:.3f}' for v in real_only)})")


if __name__ == "__main__":
    main()
