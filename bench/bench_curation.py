"""What curation costs in sampling speed. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_curation.py [--n 64] [--device cpu|cuda] [--threads N]

A tiny-preset model trained for a few iterations on phantoms (gen.phantoms); then, into fresh
folders, ``gen.sample.sample`` plain and with ``--keep-best 0.5`` (ceil(n / 0.5) candidates per
class, each scored by the curating classifier, the discriminator and the nearest training
image, the kept half made again in its batches and written). The curating classifier is
trained first and cached (as after the first curated run of a data set), so its training is not
counted; what is counted is sampling with scoring. Figures are written images per second, the
median of 3 runs each, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gen.curation import CurationSettings
from gen.phantoms import write_phantoms
from gen.sample import sample
from gen.train import train
from gen.train_config import TrainConfig

KEEP_BEST = 0.5


def run(n: int = 64, device: str = "cpu", repeats: int = 3) -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        previous_cache = os.environ.get("GEN_CACHE_DIR")
        os.environ["GEN_CACHE_DIR"] = str(root / "cache")
        try:
            write_phantoms(root / "data", per_class=32)
            config = TrainConfig(
                data=str(root / "data"),
                out=str(root / "run"),
                preset="tiny",
                iterations=5,
                batch_size=16,
                checkpoint_every=1000,
                device=device,
            )
            checkpoint = train(config, progress=False).checkpoint
            curation = CurationSettings(keep_best=KEEP_BEST, classifier_epochs=5)
            sample(checkpoint, root / "warm", 1, device=device, progress=False, curation=curation)

            def timed(name: str, **options: object) -> float:
                rates = []
                for repeat in range(repeats):
                    started = time.perf_counter()
                    made = sample(
                        checkpoint, root / f"{name}{repeat}", n, device=device, progress=False, **options
                    )
                    rates.append(len(made.images) / (time.perf_counter() - started))
                return statistics.median(rates)

            plain = timed("plain")
            curated = timed("curated", curation=curation)
        finally:
            if previous_cache is None:
                os.environ.pop("GEN_CACHE_DIR")
            else:
                os.environ["GEN_CACHE_DIR"] = previous_cache
    note = (
        f"{n} images per class, 4 classes, load {os.getloadavg()[0]:.1f}, {torch.get_num_threads()} threads"
    )
    return [
        {
            "figure": "sample",
            "preset": "tiny",
            "device": device,
            "value": plain,
            "unit": "images/s",
            "note": note,
        },
        {
            "figure": f"sample --keep-best {KEEP_BEST}",
            "preset": "tiny",
            "device": device,
            "value": curated,
            "unit": "images/s",
            "note": note + " (curating classifier cached)",
        },
        {
            "figure": "curated / plain speed",
            "preset": "tiny",
            "device": device,
            "value": curated / plain,
            "unit": "ratio",
            "note": note,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    for row in run(arguments.n, arguments.device):
        print(f"{row['figure']:<28} {row['value']:>10.2f} {row['unit']:<9} {row['device']}  {row['note']}")


if __name__ == "__main__":
    main()
