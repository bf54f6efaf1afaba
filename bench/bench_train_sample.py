"""Training and sampling throughput of every preset on this machine. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_train_sample.py [--threads N] [--device cpu|cuda]

Training: one iteration of gen.train's loop body (a discriminator step and a generator step with
the hinge loss and DiffAugment, Adam, the EMA update) on random images, timed a few iterations
after a warm-up; the figure is the median of 3 timings (2 for the paper preset on the CPU), in
training images per second. The CPU uses small batches (paper 4, the others 16); CUDA uses each
preset's own batch size, bf16 autocast and channels_last, as ``gen train`` does there, and for
the paper preset also times the plain fp32 step (default memory format, no autocast) so that the
speed-up is measured in one run.

On a shared machine the CPU figures move with the other work (the load average is noted); with
other processes busy, torch's default of one thread per core can be several times slower than
``--threads 1``, which the figures then show.

Sampling: ``gen.sample.sample`` end to end into a temporary folder (noise, forward pass, PNG
encoding, file writing; loading the checkpoint is not counted), and the generator's forward pass
alone at the same batch size (eval mode, no_grad) in the same run. Their ratio says how much of
the generator's speed reaches the disk: the target is at least 0.80.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gen import train
from gen.architecture import preset, to_json
from gen.checkpoint import save_checkpoint
from gen.losses import make_loss
from gen.networks import build
from gen.presets import RECIPES
from gen.sample import sample

PRESET_ORDER = ("cpu", "reference", "tiny", "small", "dcgan", "paper")
NUM_CLASSES = 4
CPU_TRAIN_BATCH = {"cpu": 32, "reference": 32, "tiny": 16, "small": 16, "dcgan": 16, "paper": 4}
# Sampling on the CPU: images and batch size per preset (paper: too slow to be worth the minutes).
CPU_SAMPLING = {
    "cpu": (128, 64),
    "reference": (128, 64),
    "tiny": (128, 64),
    "small": (32, 32),
    "dcgan": (128, 64),
    "paper": None,
}
CUDA_SAMPLING = (2048, 256)  # images, batch size (gen sample's default batch)


@dataclass(frozen=True)
class Plan:
    """How much work one preset gets on one device."""

    train_batch: int
    steps_per_timing: int
    timings: int
    sampling: tuple[int, int] | None  # (images, batch size), None to skip


def plan(preset_name: str, device: torch.device) -> Plan:
    if device.type == "cuda":
        return Plan(RECIPES[preset_name].batch_size, 5, 3, CUDA_SAMPLING)
    # The CPU: a few steps where a step is cheap, one where it takes many seconds, and for the
    # paper preset (~20 s a step on two cores) two timings only.
    steps = {"cpu": 2, "reference": 2, "tiny": 2, "dcgan": 2, "small": 1, "paper": 1}[preset_name]
    timings = 2 if preset_name == "paper" else 3
    return Plan(CPU_TRAIN_BATCH[preset_name], steps, timings, CPU_SAMPLING[preset_name])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(work: Callable[[], None], timings: int, device: torch.device) -> float:
    """Median wall time of ``work`` over ``timings`` runs, after one warm-up run."""
    work()  # warm-up: kernel selection, allocator, lazy initialisation
    synchronize(device)
    seconds = []
    for _ in range(timings):
        started = time.perf_counter()
        work()
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def make_training_step(
    preset_name: str, device: torch.device, batch: int, mixed_precision: bool, channels_last: bool
) -> Callable[[], None]:
    """One iteration of gen.train's loop (its training_step and EMA update) on fixed random images."""
    settings = train.TrainConfig(data="", out="", preset=preset_name).resolved()  # the preset's recipe
    generator_spec, discriminator_spec = preset(preset_name, NUM_CLASSES)
    torch.manual_seed(0)
    generator, discriminator = build(generator_spec), build(discriminator_spec)
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for network in (generator, discriminator, generator_ema):
        network.to(device, memory_format=memory_format)
    generator.train()
    discriminator.train()
    optimizer = settings.optimizer
    g_optimizer = train.make_optimizer(optimizer, generator.parameters(), settings.g_lr, settings.betas)
    d_optimizer = train.make_optimizer(
        optimizer, discriminator.parameters(), settings.d_lr, settings.betas, settings.d_weight_decay
    )
    rng = torch.Generator(device).manual_seed(0)
    loss = make_loss(
        settings.loss, generator, discriminator, settings.diffaugment, rng, **settings.loss_options
    )
    batches = []
    for _ in range(settings.critic_steps):
        real = torch.rand(batch, 3, 64, 64, device=device, generator=rng).mul_(2).sub_(1)
        labels = torch.randint(NUM_CLASSES, (batch,), device=device, generator=rng)
        batches.append((real.contiguous(memory_format=memory_format), labels))
    enabled = mixed_precision and device.type == "cuda"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def step() -> None:
        train.training_step(loss, d_optimizer, g_optimizer, batches, generator_spec.noise_dim, autocast)
        train.update_ema(generator_ema, generator, settings.ema_decay)

    return step


def training_rate(
    preset_name: str, device: torch.device, work: Plan, mixed_precision: bool, channels_last: bool
) -> float:
    step = make_training_step(preset_name, device, work.train_batch, mixed_precision, channels_last)

    def steps() -> None:
        for _ in range(work.steps_per_timing):
            step()

    seconds = median_seconds(steps, work.timings, device)
    return work.train_batch * work.steps_per_timing / seconds


def sampling_rates(preset_name: str, device: torch.device, images: int, batch: int) -> tuple[float, float]:
    """(end-to-end images/s of gen.sample.sample, forward-only images/s), same generator and batch.

    The two are timed alternately, 3 times each after a warm-up of each, and the medians kept,
    so that a machine busy with other work weighs on both alike.
    """
    generator_spec, _ = preset(preset_name, NUM_CLASSES)
    torch.manual_seed(0)
    generator = build(generator_spec)
    with torch.no_grad():  # a training-mode pass gives batch norm running statistics, as training does
        generator(torch.randn(8, generator_spec.noise_dim), torch.arange(8) % NUM_CLASSES)
    class_names = [f"class_{label}" for label in range(NUM_CLASSES)]
    forward_generator = copy.deepcopy(generator).to(device).eval().requires_grad_(False)
    noise = torch.randn(images, generator_spec.noise_dim, device=device)
    labels = torch.zeros(images, dtype=torch.long, device=device)

    @torch.no_grad()
    def forward_only(count: int) -> float:
        started = time.perf_counter()
        for first in range(0, count, batch):
            forward_generator(
                noise[first : min(first + batch, count)], labels[first : min(first + batch, count)]
            )
        synchronize(device)
        return count / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory(prefix="bench-sample-") as folder:
        checkpoint = Path(folder) / "checkpoint-0000000.pt"
        save_checkpoint(
            checkpoint,
            {
                "iteration": 0,
                "generator_spec": json.dumps(to_json(generator_spec)),
                "class_names": class_names,
                "generator_ema": generator.state_dict(),
            },
        )

        def end_to_end(name: str, count: int) -> float:
            result = sample(
                checkpoint,
                Path(folder) / name,
                count,
                [class_names[0]],
                batch_size=batch,
                device=device.type,
                progress=False,
            )
            return result.images_per_second  # from the first noise vector to the last file written

        end_to_end("warm-up", batch)
        forward_only(batch)
        rates = [(end_to_end(f"timed-{repeat}", images), forward_only(images)) for repeat in range(3)]
    return statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates)


def row(figure: str, preset_name: str, device: str, value: float | None, unit: str, note: str) -> dict:
    return {
        "figure": figure,
        "preset": preset_name,
        "device": device,
        "value": value,
        "unit": unit,
        "note": note,
    }


def run(devices: list[str] | None = None, threads: int | None = None, log: bool = True) -> list[dict]:
    """Rows (figure, preset, device, value, unit, note) for every preset on the CPU and on CUDA."""
    if threads:
        torch.set_num_threads(threads)
    if devices is None:
        devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    rows: list[dict] = []

    def say(message: str) -> None:
        if log:
            print(message, file=sys.stderr, flush=True)

    for device_name in devices:
        device = torch.device(device_name)
        label = (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"cpu ({torch.get_num_threads()} thr)"
        )
        for preset_name in PRESET_ORDER:
            work = plan(preset_name, device)
            precision = "bf16 autocast + channels_last" if device.type == "cuda" else "fp32 + channels_last"
            say(f"{preset_name} on {label}: training, batch {work.train_batch}")
            started = time.perf_counter()
            rate = training_rate(preset_name, device, work, True, True)
            timing = f"median of {work.timings} x {work.steps_per_timing} step(s) after 1 warm-up"
            if device.type == "cpu":
                timing += f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            rows.append(
                row(
                    "train",
                    preset_name,
                    label,
                    rate,
                    "images/s",
                    f"batch {work.train_batch}, {precision}, {timing}",
                )
            )
            if device.type == "cpu" and preset_name == "cpu":
                # The ablation behind channels_last on the CPU (gen.train uses it everywhere).
                say(f"{preset_name} on {label}: training in the default memory format")
                plain = training_rate(preset_name, device, work, True, False)
                rows.append(
                    row(
                        "train NCHW", preset_name, label, plain, "images/s", f"batch {work.train_batch}, fp32"
                    )
                )
            if device.type == "cuda" and preset_name == "paper":
                say(f"{preset_name} on {label}: fp32 eager training step")
                fp32 = training_rate(preset_name, device, work, False, False)
                rows.append(
                    row("train fp32 eager", preset_name, label, fp32, "images/s", f"batch {work.train_batch}")
                )
                rows.append(
                    row(
                        "train speed-up bf16+channels_last / fp32",
                        preset_name,
                        label,
                        rate / fp32,
                        "x",
                        "same batch, same run",
                    )
                )
            say(f"  {rate:.1f} images/s ({time.perf_counter() - started:.0f} s)")

            if work.sampling is None:
                rows.append(
                    row("sample end to end", preset_name, label, None, "images/s", "skipped: too slow here")
                )
                continue
            images, batch = work.sampling
            say(f"{preset_name} on {label}: sampling {images} images, batch {batch}")
            end_to_end, forward_only = sampling_rates(preset_name, device, images, batch)
            note = f"{images} images, batch {batch}"
            rows.append(
                row("sample end to end", preset_name, label, end_to_end, "images/s", f"{note}, PNGs on disk")
            )
            rows.append(row("generator forward only", preset_name, label, forward_only, "images/s", note))
            rows.append(
                row(
                    "sample / forward ratio",
                    preset_name,
                    label,
                    end_to_end / forward_only,
                    "ratio",
                    "target >= 0.80",
                )
            )
    return rows


def format_table(rows: list[dict]) -> str:
    header = f"{'figure':<42} {'preset':<6} {'device':<22} {'value':>10} {'unit':<9} note"
    lines = [header, "-" * len(header)]
    for entry in rows:
        value = entry["value"]
        shown = "-" if value is None else (f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}")
        lines.append(
            f"{entry['figure']:<42} {entry['preset']:<6} {entry['device']:<22} {shown:>10} "
            f"{entry['unit']:<9} {entry['note']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", action="append", choices=["cpu", "cuda"], help="repeatable")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = run(args.device, args.threads)
    print(f"torch {torch.__version__}; {time.perf_counter() - started:.0f} s in all")
    print(format_table(rows))


if __name__ == "__main__":
    main()
