"""The one training loop.

Alternates a discriminator step and a generator step (two time-scale learning rates), keeps
an exponential moving average of the generator for sampling, and writes atomic checkpoints
from which training resumes bit for bit: every random stream it draws from is its own
``torch.Generator`` and is saved with the weights. Under ``torchrun`` the same loop runs on
K processes with DistributedDataParallel; the global batch is split between them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from gen.architecture import PRESET_BATCH_SIZES, PRESETS, from_json, preset, to_json
from gen.checkpoint import checkpoint_name, checkpoints_in, load_checkpoint, save_checkpoint
from gen.data import load_image_folder
from gen.diffaugment import parse_policy
from gen.errors import GenError
from gen.images import to_uint8, write_grid
from gen.losses import HingeLoss
from gen.networks import Generator, build
from gen.runtime import Distributed, start_distributed, stop_distributed


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; stored in its checkpoints and in the database."""

    data: str
    out: str
    preset: str = "tiny"
    iterations: int = 10_000
    batch_size: int | None = None  # None: the preset's (PRESET_BATCH_SIZES)
    g_lr: float = 1e-4
    d_lr: float = 4e-4
    betas: tuple[float, float] = (0.5, 0.999)
    ema_decay: float = 0.999
    diffaugment: str = "color,translation"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    seed: int = 0
    balance: int | None = None
    device: str = "auto"
    mixed_precision: bool = True  # bf16 autocast, CUDA only

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        fields = json.loads(text)
        fields["betas"] = tuple(fields["betas"])
        return cls(**fields)

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise GenError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}.")
        if self.iterations < 1 or (self.batch_size or 1) < 1 or self.checkpoint_every < 1:
            raise GenError("iterations, batch size and checkpoint interval must all be at least 1.")
        if self.keep_checkpoints < 1:
            raise GenError("--keep-checkpoints must be at least 1.")
        parse_policy(self.diffaugment)


@dataclass(frozen=True)
class RunStart:
    """What is known once data and networks are ready (handed to ``on_start``)."""

    config: TrainConfig
    generator: dict[str, Any]
    discriminator: dict[str, Any]
    class_names: tuple[str, ...]
    num_images: int
    data_fingerprint: str
    skipped_files: tuple[str, ...]
    start_iteration: int
    resumed_from: Path | None
    device: str


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    checkpoint: Path
    iteration: int
    class_names: tuple[str, ...]
    images_per_second: float
    interrupted: bool


class _StopRequest:
    """Turns Ctrl-C into a flag checked between iterations, so the saved state is whole."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C means "now"
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param, 1 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)


def training_step(
    loss: HingeLoss,
    d_optimizer: torch.optim.Optimizer,
    g_optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    labels: torch.Tensor,
    noise_dim: int,
    autocast: torch.autocast,
    discriminator_no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One discriminator step, then one generator step (fakes share the real batch's labels).

    Noise comes from ``loss.rng``, so a resumed run draws exactly what it would have drawn.
    Returns the two losses (detach them before keeping them).
    """
    noise = torch.randn(len(labels), noise_dim, generator=loss.rng, device=real.device)
    with autocast:
        d_loss = loss.discriminator_loss(real, labels, noise, labels)
    d_optimizer.zero_grad(set_to_none=True)
    d_loss.backward()
    d_optimizer.step()

    noise = torch.randn(len(labels), noise_dim, generator=loss.rng, device=real.device)
    # The generator step needs gradients through D but must not all-reduce D's.
    with discriminator_no_sync(), autocast:
        g_loss = loss.generator_loss(noise, labels)
    g_optimizer.zero_grad(set_to_none=True)
    g_loss.backward()
    g_optimizer.step()
    return d_loss, g_loss


@torch.no_grad()
def write_progress_grid(
    generator: Generator, num_classes: int, path: Path, seed: int, columns: int = 8
) -> None:
    """One row per class from fixed noise, so grids of successive checkpoints compare."""
    device = next(generator.parameters()).device
    noise_rng = torch.Generator().manual_seed(seed)
    noise = torch.randn(num_classes * columns, generator.spec.noise_dim, generator=noise_rng).to(device)
    labels = torch.arange(num_classes, device=device).repeat_interleave(columns)
    write_grid(to_uint8(generator(noise, labels)), columns, path)


def _prepare_config(config: TrainConfig, resume: bool) -> tuple[TrainConfig, dict[str, Any] | None]:
    out = Path(config.out)
    existing = checkpoints_in(out) if out.is_dir() else []
    if not resume:
        if existing:
            raise GenError(
                f"{out} already holds a training run; use --resume to continue it or another --out."
            )
        config.validate()
        if config.batch_size is None:
            config = dataclasses.replace(config, batch_size=PRESET_BATCH_SIZES[config.preset])
        return config, None
    if not existing:
        raise GenError(f"nothing to resume in {out}: it holds no checkpoint.")
    state = load_checkpoint(existing[-1])
    stored = TrainConfig.from_json(state["config"])
    # Resuming keeps every stored setting; only the goal and the machine may change.
    changes = {"iterations": config.iterations, "device": config.device, "out": config.out}
    if config.data:
        changes["data"] = config.data
    merged = dataclasses.replace(stored, **changes)
    merged.validate()
    return merged, state


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    on_start: Callable[[RunStart], None] | None = None,
    on_checkpoint: Callable[[Path, int, str], None] | None = None,
) -> TrainResult:
    """Train (or resume) a run; returns where its last checkpoint is.

    ``on_start`` is called once data and networks are ready, ``on_checkpoint(path, iteration,
    sha256)`` after each checkpoint is safely on disk; both on the main process only.
    """
    config, state = _prepare_config(config, resume)
    context = start_distributed(config.device)
    try:
        return _train(config, state, context, progress, on_start, on_checkpoint)
    finally:
        stop_distributed(context)


def _train(
    config: TrainConfig,
    state: dict[str, Any] | None,
    context: Distributed,
    progress: bool,
    on_start: Callable[[RunStart], None] | None,
    on_checkpoint: Callable[[Path, int, str], None] | None,
) -> TrainResult:
    device = context.device
    if config.batch_size % context.world_size:
        raise GenError(
            f"batch size {config.batch_size} does not split evenly over {context.world_size} processes."
        )
    data = load_image_folder(config.data, balance=config.balance, seed=config.seed)
    if state is not None:
        if data.fingerprint != state["data_fingerprint"]:
            raise GenError(
                f"the images in {config.data} changed since this run started; resume needs the same data."
            )
        generator_spec = from_json(json.loads(state["generator_spec"]))
        discriminator_spec = from_json(json.loads(state["discriminator_spec"]))
    else:
        generator_spec, discriminator_spec = preset(config.preset, len(data.class_names))
    start_iteration = state["iteration"] if state is not None else 0
    if start_iteration >= config.iterations:
        raise GenError(f"this run already reached iteration {start_iteration}; ask for more with --iters.")

    torch.manual_seed(config.seed)  # weight initialisation; everything later has its own stream
    generator, discriminator = build(generator_spec), build(discriminator_spec)
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=config.g_lr, betas=config.betas)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=config.d_lr, betas=config.betas)
    data_rng = torch.Generator().manual_seed(config.seed)  # same on every process: one global batch
    noise_rng = torch.Generator(device).manual_seed(config.seed * 1_000_003 + context.rank + 1)
    if state is not None:
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        generator_ema.load_state_dict(state["generator_ema"])
        data_rng.set_state(state["rng"]["data"])
        noise_states = state["rng"]["noise"]
        if len(noise_states) != context.world_size:
            raise GenError(f"this run was trained on {len(noise_states)} processes; resume it on as many.")
        noise_rng.set_state(noise_states[context.rank])

    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    for network in (generator, discriminator, generator_ema):
        network.to(device, memory_format=memory_format)
    if state is not None:  # optimiser state must be loaded after the parameters moved
        g_optimizer.load_state_dict(state["g_optimizer"])
        d_optimizer.load_state_dict(state["d_optimizer"])
    generator.train()
    discriminator.train()
    g_model: nn.Module = generator
    d_model: nn.Module = discriminator
    if context.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        g_model = DistributedDataParallel(generator, device_ids=device_ids)
        d_model = DistributedDataParallel(discriminator, device_ids=device_ids)
    loss = HingeLoss(g_model, d_model, config.diffaugment, noise_rng)
    autocast = torch.autocast(
        "cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and config.mixed_precision
    )

    if context.is_main and on_start is not None:
        on_start(
            RunStart(
                config=config,
                generator=to_json(generator_spec),
                discriminator=to_json(discriminator_spec),
                class_names=data.class_names,
                num_images=len(data.labels),
                data_fingerprint=data.fingerprint,
                skipped_files=data.skipped,
                start_iteration=start_iteration,
                resumed_from=Path(state["path"]) if state is not None else None,
                device=str(device),
            )
        )

    images = data.images.to(device)
    labels = data.labels.to(device)
    local_batch = config.batch_size // context.world_size
    my_slice = slice(context.rank * local_batch, (context.rank + 1) * local_batch)
    run_dir = Path(config.out)
    last_checkpoint = Path(state["path"]) if state is not None else run_dir
    bar = tqdm(
        total=config.iterations,
        initial=start_iteration,
        disable=not (progress and context.is_main),
        unit="it",
        dynamic_ncols=True,
    )

    def checkpoint(iteration: int) -> Path:
        if context.enabled:
            noise_states = [None] * context.world_size
            dist.all_gather_object(noise_states, noise_rng.get_state())
        else:
            noise_states = [noise_rng.get_state()]
        path = run_dir / checkpoint_name(iteration)
        if context.is_main:
            sha256 = save_checkpoint(
                path,
                {
                    "iteration": iteration,
                    "config": config.to_json(),
                    "generator_spec": json.dumps(to_json(generator_spec)),
                    "discriminator_spec": json.dumps(to_json(discriminator_spec)),
                    "class_names": list(data.class_names),
                    "data_fingerprint": data.fingerprint,
                    "generator": generator.state_dict(),
                    "discriminator": discriminator.state_dict(),
                    "generator_ema": generator_ema.state_dict(),
                    "g_optimizer": g_optimizer.state_dict(),
                    "d_optimizer": d_optimizer.state_dict(),
                    "rng": {"data": data_rng.get_state(), "noise": [s.cpu() for s in noise_states]},
                },
            )
            write_progress_grid(
                generator_ema, len(data.class_names), run_dir / f"grid-{iteration:07d}.png", config.seed
            )
            for old in checkpoints_in(run_dir)[: -config.keep_checkpoints]:
                old.unlink()
            if on_checkpoint is not None:
                on_checkpoint(path, iteration, sha256)
        return path

    iteration = start_iteration
    timed_images, timed_seconds, started = 0, 0.0, time.perf_counter()
    with _StopRequest() as stop:
        while iteration < config.iterations:
            batch_indices = torch.randint(len(images), (config.batch_size,), generator=data_rng)[my_slice]
            batch_indices = batch_indices.to(device)
            real = images[batch_indices].float().div_(127.5).sub_(1)
            real = real.contiguous(memory_format=memory_format)
            real_labels = labels[batch_indices]

            d_loss, g_loss = training_step(
                loss,
                d_optimizer,
                g_optimizer,
                real,
                real_labels,
                generator_spec.noise_dim,
                autocast,
                d_model.no_sync if context.enabled else contextlib.nullcontext,
            )
            update_ema(generator_ema, generator, min(config.ema_decay, (1 + iteration) / (10 + iteration)))
            iteration += 1

            stop_now = stop.requested
            if context.enabled:
                flag = torch.tensor([float(stop_now)], device=device)
                dist.all_reduce(flag)
                stop_now = bool(flag.item())
            if iteration % config.checkpoint_every == 0 or iteration == config.iterations or stop_now:
                # Checkpoint time is kept out of the images/s figure.
                timed_seconds += time.perf_counter() - started
                last_checkpoint = checkpoint(iteration)
                started = time.perf_counter()
            timed_images += config.batch_size
            if bar.disable is False:
                seconds = timed_seconds + time.perf_counter() - started
                bar.set_postfix(
                    d_loss=f"{d_loss.item():.3f}",
                    g_loss=f"{g_loss.item():.3f}",
                    img_s=f"{timed_images / max(seconds, 1e-9):.0f}",
                    refresh=False,
                )
                bar.update(1)
            if stop_now:
                break
    bar.close()
    timed_seconds += time.perf_counter() - started
    return TrainResult(
        run_dir=run_dir,
        checkpoint=last_checkpoint,
        iteration=iteration,
        class_names=data.class_names,
        images_per_second=timed_images / max(timed_seconds, 1e-9),
        interrupted=iteration < config.iterations,
    )
