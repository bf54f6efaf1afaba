"""Can curation by a real-vs-synthetic classifier hide the synthetic images from the two-sample test?

    .venv/bin/python -m bench.realism_curation CHECKPOINT [--keep 0.5] [--classes 0,3]

``gen sample --keep-best`` ranks candidates by the domain classifier's confidence and by the
checkpoint's own discriminator; the report's two-sample AUC of that curated set stays at 1.00
(docs/benchmarks.md). The issue allows a realism score from a real-vs-synthetic classifier
instead. This measures, per class, whether such a score could bring the AUC down before any of
it is built into ``gen.curation``:

1. a *realism classifier* (the two-sample test's own small CNN, ``gen.metrics.two_sample``, with
   another seed) is trained on the class's real *training* images against as many synthetic
   images of a pool that is never scored;
2. ``n / keep`` further candidates are sampled (``n``: the class's real held-out images) and the
   ``n`` it finds least synthetic are kept;
3. the report's test (5 folds, out-of-fold ROC AUC, real held-out images only) is run on the
   first ``n`` candidates (plain) and on the kept ones (curated).

So the classifier that curates never sees the held-out images the test uses. Prints a line per
class and the mean. Asserts nothing; a class takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench.quality import PBC4
from gen.checkpoint import load_for_sampling
from gen.errors import GenError
from gen.image_folder import load_image_folder
from gen.metrics.domain import domain_features_and_probabilities
from gen.metrics.two_sample import real_vs_synthetic_network, two_sample_class
from gen.sample import generate, load_generator

REALISM_SEED = 1000  # the realism classifier's seed: never the test's (0..4)


def realism_scores(
    real_train: torch.Tensor, pool: torch.Tensor, candidates: torch.Tensor, device: torch.device
) -> np.ndarray:
    """P(synthetic) of each candidate, from the test's network trained on real training images
    against the pool."""
    images = torch.cat([real_train, pool])
    is_synthetic = torch.cat([torch.zeros(len(real_train)), torch.ones(len(pool))]).long()
    model = real_vs_synthetic_network(images, is_synthetic, seed=REALISM_SEED, device=device)
    return domain_features_and_probabilities(model, candidates, device=device)[1][:, 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument(
        "--train", type=Path, default=PBC4 / "train", help="real training images (default: pbc4)"
    )
    parser.add_argument(
        "--real", type=Path, default=PBC4 / "test", help="held-out real images (default: pbc4)"
    )
    parser.add_argument("--keep", type=float, default=0.5, help="share of candidates kept (default 0.5)")
    parser.add_argument("--classes", help="comma-separated class indices (default: all)")
    args = parser.parse_args()
    if not 0 < args.keep <= 1:
        raise SystemExit("--keep must be in (0, 1].")
    device = torch.device("cpu")
    try:
        train, test = load_image_folder(args.train), load_image_folder(args.real)
        generator = load_generator(load_for_sampling(args.checkpoint), device)
    except GenError as error:
        raise SystemExit(f"error: {error}") from None
    labels = range(len(test.class_names)) if args.classes is None else map(int, args.classes.split(","))
    plain_aucs, curated_aucs = [], []
    for label in labels:
        name = test.class_names[label]
        real_test = test.images[test.labels == label]
        real_train = train.images[train.labels == train.class_names.index(name)]
        n, pool_size = len(real_test), len(real_train)
        wanted = round(n / args.keep)
        with torch.no_grad():
            # stream positions: candidates first (the first n are the plain set), then the pool
            candidates = generate(generator, 0, label, range(wanted), device)
            pool = generate(generator, 0, label, range(wanted, wanted + pool_size), device)
        scores = realism_scores(real_train, pool, candidates, device)
        kept = candidates[torch.from_numpy(np.sort(np.argsort(scores, kind="stable")[:n]))]
        plain = two_sample_class(real_test, candidates[:n], name, seed=0)
        curated = two_sample_class(real_test, kept, name, seed=0)
        if plain is None or curated is None:
            print(f"{name}: too few held-out images for the test's 5 folds; left out.", flush=True)
            continue
        plain_aucs.append(plain.auc)
        curated_aucs.append(curated.auc)
        print(
            f"{name}: two-sample AUC plain {plain.auc:.3f}, curated by a realism classifier "
            f"{curated.auc:.3f} (kept {n} of {wanted}; their P(synthetic) from the realism "
            f"classifier: {scores.min():.3f} to {np.sort(scores)[n - 1]:.3f}, all candidates' median "
            f"{np.median(scores):.3f}, {np.mean(scores < 0.5):.1%} under 0.5)",
            flush=True,
        )
    if not plain_aucs:
        raise SystemExit("no class had enough held-out images for the test.")
    print(f"mean: plain {np.mean(plain_aucs):.3f}, curated {np.mean(curated_aucs):.3f}")


if __name__ == "__main__":
    main()
