"""Feature-extraction throughput of the metric networks on this machine. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_metrics.py [--threads 2] [--device cpu] [--frechet]

The domain network is timed untrained (speed does not depend on the weights). Inception uses
the published FID weights when find_fid_weights() finds them, else random weights, and says so.
Each figure is the best of a few repeats, so a briefly busy machine does not drag it down.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gen.metrics.domain import build_classifier, domain_features_and_probabilities
from gen.metrics.frechet import frechet_distance, gaussian_statistics
from gen.metrics.inception import (
    find_fid_weights,
    inception_features,
    load_fid_inception,
    random_inception_for_tests,
)


def best_rate(work, count: int, repeats: int) -> float:
    work()  # warm-up: first calls pick kernels and allocate
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--domain-images", type=int, default=2048)
    parser.add_argument("--inception-images", type=int, default=50)
    parser.add_argument("--frechet", action="store_true", help="also time one 2048-d Fréchet distance")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    images = torch.randint(0, 256, (args.domain_images, 3, 64, 64), dtype=torch.uint8)
    domain = build_classifier(4, seed=0).to(device, memory_format=torch.channels_last).eval()
    rate = best_rate(lambda: domain_features_and_probabilities(domain, images, 256, device), len(images), 3)
    print(f"domain network features: {rate:8.0f} images/s  ({len(images)} images, batch 256)")

    weights = find_fid_weights(None)
    with tempfile.TemporaryDirectory() as folder:
        if weights is None:
            weights = Path(folder) / "random_inception_for_tests.pth"
            torch.save(random_inception_for_tests().state_dict(), weights)
            which = "RANDOM weights (published FID weights not found; same speed, meaningless features)"
        else:
            which = f"FID weights {weights}"
        inception = load_fid_inception(weights, device)
    count = args.inception_images
    few = images[:count]
    rate = best_rate(lambda: inception_features(inception, few, batch_size=count, device=device), count, 2)
    print(f"Inception features:      {rate:8.1f} images/s  ({count} images at 299x299, {which})")

    if args.frechet:
        features = np.random.default_rng(0).random((4096, 2048))
        statistics = gaussian_statistics(features[:2048]), gaussian_statistics(features[2048:])
        started = time.perf_counter()
        frechet_distance(*statistics[0], *statistics[1])
        print(f"Fréchet distance, 2048-d: {time.perf_counter() - started:6.1f} s (scipy sqrtm, full rank)")


def median_rate(work, count: int, repeats: int) -> float:
    work()  # warm-up: first calls pick kernels and allocate
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return count / sorted(times)[len(times) // 2]


def run() -> list[dict]:
    """Rows for `make bench`: feature throughput and the time of a full report (4 x 150)."""
    from gen.metrics.figures import ReportSettings
    from gen.report import make_report
    from gen.train import train
    from gen.train_config import TrainConfig

    rows = []
    images = torch.randint(0, 256, (2048, 3, 64, 64), dtype=torch.uint8)
    domain = build_classifier(4, seed=0).to(memory_format=torch.channels_last).eval()
    rate = median_rate(lambda: domain_features_and_probabilities(domain, images, 256), len(images), 3)
    rows.append(
        {
            "figure": "domain features",
            "preset": "-",
            "device": "cpu",
            "value": rate,
            "unit": "images/s",
            "note": "target >= 1000; batch 256, median of 3",
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        weights = find_fid_weights(None)
        note = "published FID weights"
        if weights is None:
            weights = Path(folder) / "random_inception_for_tests.pth"
            torch.save(random_inception_for_tests().state_dict(), weights)
            note = "random weights (published ones absent): same speed"
        network = load_fid_inception(weights, "cpu")
        few = images[:50]
        rate = median_rate(lambda: inception_features(network, few, batch_size=50), len(few), 3)
        rows.append(
            {
                "figure": "Inception features",
                "preset": "-",
                "device": "cpu",
                "value": rate,
                "unit": "images/s",
                "note": note,
            }
        )

        pbc4 = Path(__file__).resolve().parents[2] / "shared" / "data" / "pbc4"
        if pbc4.is_dir():
            import os

            os.environ["GEN_CACHE_DIR"] = str(Path(folder) / "cache")  # time a cold report
            result = train(
                TrainConfig(
                    data=str(pbc4 / "train"), out=str(Path(folder) / "run"), iterations=1, batch_size=4
                ),
                progress=False,
            )
            started = time.perf_counter()
            make_report(
                result.checkpoint,
                pbc4 / "test",
                pbc4 / "train",
                Path(folder) / "report",
                settings=ReportSettings(n_per_class=150),
                progress=False,
            )
            rows.append(
                {
                    "figure": "full report, 4 classes x 150",
                    "preset": "tiny",
                    "device": "cpu",
                    "value": time.perf_counter() - started,
                    "unit": "s",
                    "note": "cold: includes training the domain classifier (15 epochs); no Inception FID",
                }
            )
    return rows


if __name__ == "__main__":
    main()
