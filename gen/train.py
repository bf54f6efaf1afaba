"""The one training loop, whatever the objective.

Each iteration takes ``critic_steps`` discriminator steps (each on a fresh real batch) and one
generator step; the objective (hinge, BCE, Wasserstein with clipping or penalty,
boundary-seeking, BEGAN) is a ``gen.losses`` object the loop only calls. It keeps an
exponential moving average of the generator for sampling, whose batch-norm statistics and
spectral-norm vectors are recomputed from its own weights ("standing statistics") before
every checkpoint and grid. It writes atomic checkpoints from which training resumes bit for
bit (every random stream it draws from is its own ``torch.Generator``, saved with the
weights), a loss history (``history.csv``, ``history.png``), and, with ``eval_every``, a
cheap quality figure per evaluated checkpoint (normalised domain FID, ``gen.evaluation``)
that marks the best checkpoint (``best.json``), which pruning never removes. Under
``torchrun`` the same loop runs on K processes with DistributedDataParallel; the global batch
is split between them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parametrize
from tqdm import tqdm

from gen.architecture import PRESETS, DiscriminatorSpec, GeneratorSpec, from_json, preset, to_json
from gen.checkpoint import (
    atomic_write,
    check_resumable,
    checkpoint_name,
    checkpoints_in,
    load_checkpoint,
    load_weights,
    remove_stale_temporaries,
    save_checkpoint,
)
from gen.data import MAX_BALANCE, load_image_folder
from gen.diffaugment import parse_policy
from gen.errors import GenError
from gen.history import History
from gen.images import to_uint8, write_grid
from gen.losses import LOSSES, GANLoss, make_loss
from gen.networks import Generator, build, set_conditioning
from gen.presets import OPTIMIZERS, RECIPES
from gen.runtime import Distributed, start_distributed, stop_distributed
from gen.seeds import check_seed

BEST_FILE = "best.json"


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; stored in its checkpoints and in the database.

    Settings left as None take the preset's (``gen.presets.RECIPES``); the stored config
    always holds the values the run used.
    """

    data: str
    out: str
    preset: str = "tiny"
    iterations: int = 10_000
    batch_size: int | None = None
    loss: str | None = None
    optimizer: str | None = None
    g_lr: float | None = None
    d_lr: float | None = None
    betas: tuple[float, float] | None = None
    critic_steps: int | None = None
    ema_decay: float | None = None
    diffaugment: str | None = None
    d_weight_decay: float | None = None
    lecam: float | None = None  # LeCam regularisation weight (gen.losses), 0: off
    classifier_weight: float | None = None  # D's auxiliary class head and its loss weight, 0: off
    balanced_batches: bool | None = None  # every class equally likely in a batch
    transition: tuple[int, int] | None = None  # class conditioning ramps 0 -> 1 over these iterations
    loss_options: dict[str, float] | None = None
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 0  # 0: no evaluation during training
    eval_images: int = 64  # synthetic images per class for each evaluation
    max_minutes: float | None = None  # stop (with a checkpoint) after this much training time
    log_every: int = 10  # iterations per history row
    seed: int = 0
    balance: int | None = None
    device: str = "auto"
    mixed_precision: bool = True  # bf16 autocast, CUDA only

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        fields = json.loads(text)
        if "loss" not in fields:  # stored before objectives were settings: all hinge + Adam
            fields.update(loss="hinge", optimizer="adam", critic_steps=1, d_weight_decay=0.0, loss_options={})
        # Stored before these levers existed: off, whatever the preset's recipe says today.
        fields.setdefault("lecam", 0.0)
        fields.setdefault("classifier_weight", 0.0)
        fields.setdefault("balanced_batches", False)
        fields.setdefault("transition", (0, 0))  # no ramp: full conditioning from the start
        for name in ("betas", "transition"):
            if fields.get(name) is not None:
                fields[name] = tuple(fields[name])
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in fields.items() if name in known})

    def resolved(self) -> TrainConfig:
        """This config with every None the preset fills in replaced by the preset's value."""
        recipe = RECIPES[self.preset]
        defaults = dataclasses.asdict(recipe)
        changes = {name: defaults[name] for name in defaults if getattr(self, name) is None}
        for name in ("betas", "transition"):
            if changes.get(name) is not None:
                changes[name] = tuple(changes[name])
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise GenError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}.")
        if self.iterations < 1 or (self.batch_size or 1) < 1 or self.checkpoint_every < 1:
            raise GenError("iterations, batch size and checkpoint interval must all be at least 1.")
        if self.keep_checkpoints < 1:
            raise GenError("--keep-checkpoints must be at least 1.")
        if self.loss is not None and self.loss not in LOSSES:
            raise GenError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}.")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise GenError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        if (self.critic_steps or 1) < 1 or self.eval_every < 0 or self.eval_images < 1 or self.log_every < 1:
            raise GenError("critic steps, evaluation images and the history interval must be at least 1.")
        check_seed(self.seed)
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise GenError("--minutes must be more than 0.")
        for name in ("g_lr", "d_lr", "d_weight_decay", "lecam", "classifier_weight"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise GenError(f"--{name.replace('_', '-')} must be a finite number of at least 0.")
        if self.transition is not None and not 0 <= self.transition[0] <= self.transition[1]:
            raise GenError("--transition START END needs 0 <= START <= END.")
        if self.ema_decay is not None and not 0 <= self.ema_decay <= 1:
            raise GenError("--ema-decay must be between 0 and 1.")
        if self.diffaugment is not None:
            parse_policy(self.diffaugment)
        if self.balance is not None and not 1 <= self.balance <= MAX_BALANCE:
            raise GenError(f"--balance must be 1 to {MAX_BALANCE} images per class, not {self.balance}.")


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
    model_id: int | None = None  # the recording model, when train() was given a database
    notes: tuple[str, ...] = ()  # what recording found worth saying (e.g. a data set's files changed)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    checkpoint: Path
    iteration: int
    class_names: tuple[str, ...]
    images_per_second: float
    interrupted: bool  # stopped by a signal (Ctrl-C, SIGTERM), not by reaching its goal
    out_of_time: bool = False  # stopped by max_minutes
    best: Path | None = None  # the best evaluated checkpoint, with eval_every
    model_id: int | None = None  # the recording model, when train() was given a database


class _StopRequest:
    """Turns Ctrl-C and SIGTERM (what ``kill`` and job runners send) into a flag checked between
    iterations, so the saved state is whole."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C means "now"
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Move the EMA's parameters towards the model's. Buffers are not copied: the model's
    batch-norm statistics and spectral-norm vectors belong to other weights
    (``standing_statistics`` recomputes the EMA's own)."""
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param, 1 - decay)


@torch.no_grad()
def standing_statistics(
    generator: Generator, seed: int, batches: int = 16, batch_size: int = 64, power_iterations: int = 100
) -> None:
    """Make the generator's buffers fit its own weights, then leave it in eval mode: what the
    EMA needs before every checkpoint and grid, since no forward pass trained its weights.

    1. Spectral norm: ``power_iterations`` power iterations on each normalised weight, from the
       vectors it holds. The EMA's vectors belong to much older weights (they move only here),
       and a handful of iterations left its sigma 4-8% low in some layers after 400 training
       iterations, more later.
    2. Batch norm: the running statistics become an exact average over ``batches`` batches of
       random noise and labels (BigGAN's "standing statistics"), with every sigma held fixed,
       so that each batch passes through the very network that sampling will use. (Before,
       each of these forward passes also moved the spectral-norm vectors, so the statistics
       mixed several scales of every layer and no longer fitted the sampled network: a pale,
       washed-out field with a faint or missing white cell.)

    Seeded by ``seed`` alone, so the result depends on the weights and vectors only (resume
    stays exact).
    """
    device = next(generator.parameters()).device
    spectral = [m for m in generator.modules() if parametrize.is_parametrized(m, "weight")]
    for module in spectral:
        module.parametrizations.weight.train()  # reading the weight runs one power iteration
        for _ in range(power_iterations):
            module.weight  # noqa: B018 (the read is the iteration)
    rng = torch.Generator().manual_seed(seed)
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    generator.train()
    for module in spectral:
        module.parametrizations.weight.eval()  # sigma fixed while the statistics gather
    try:
        for _ in range(batches):
            noise = torch.randn(batch_size, generator.spec.noise_dim, generator=rng).to(device)
            labels = torch.randint(generator.spec.num_classes, (batch_size,), generator=rng).to(device)
            generator(noise, labels)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        generator.eval()


def transition_strength(iteration: int, transition: tuple[int, int] | None) -> float:
    """How much of the class signal the networks get at ``iteration`` (transitional
    conditioning, Shahbazi et al. 2022): 0 until START, rising linearly to 1 at END. None or
    (0, 0): full conditioning throughout."""
    if transition is None:
        return 1.0
    start, end = transition
    if iteration >= end:
        return 1.0
    return min(max((iteration - start) / (end - start), 0.0), 1.0)


def draw_batch(labels: torch.Tensor, size: int, rng: torch.Generator, balanced: bool) -> torch.Tensor:
    """Indices of one training batch, drawn with replacement from ``rng``: uniformly over the
    images, or, ``balanced``, a uniform class first and then a uniform image of that class, so
    that a class of 50 images is seen as often as one of 500."""
    if not balanced:
        return torch.randint(len(labels), (size,), generator=rng)
    counts = torch.bincount(labels)
    order = torch.argsort(labels, stable=True)  # the images grouped by class
    starts = torch.cumsum(counts, 0) - counts
    present = torch.nonzero(counts).flatten()  # a class with no image is never drawn
    classes = present[torch.randint(len(present), (size,), generator=rng)]
    within = (torch.rand(size, generator=rng, dtype=torch.float64) * counts[classes]).long()
    return order[starts[classes] + torch.minimum(within, counts[classes] - 1)]


def _gradient_norm(parameters: Any) -> float:
    norms = [p.grad.detach().norm() for p in parameters if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


@dataclass
class StepFigures:
    """What one training iteration measured (losses and scores as tensors, not yet synced)."""

    d_loss: torch.Tensor
    g_loss: torch.Tensor
    d_real: torch.Tensor
    d_fake: torch.Tensor
    d_grad_norm: float | None = None
    g_grad_norm: float | None = None


def training_step(
    loss: GANLoss,
    d_optimizer: torch.optim.Optimizer,
    g_optimizer: torch.optim.Optimizer,
    real_batches: list[tuple[torch.Tensor, torch.Tensor]],
    noise_dim: int,
    autocast: torch.autocast,
    discriminator_no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    measure_gradients: bool = False,
) -> StepFigures:
    """One iteration: a discriminator step per real batch (the critic steps), then one
    generator step on the last batch's labels.

    Noise comes from ``loss.rng``, so a resumed run draws exactly what it would have drawn.
    """
    d_grad_norm = g_grad_norm = None
    for real, labels in real_batches:
        noise = torch.randn(len(labels), noise_dim, generator=loss.rng, device=real.device)
        with autocast:
            d_phase = loss.d_phase(real, labels, noise)
        d_optimizer.zero_grad(set_to_none=True)
        d_phase.loss.backward()
        if measure_gradients:
            d_grad_norm = _gradient_norm(loss.discriminator.parameters())
        d_optimizer.step()
        loss.after_d_step(d_phase)

    real, labels = real_batches[-1]
    noise = torch.randn(len(labels), noise_dim, generator=loss.rng, device=real.device)
    # The generator step needs gradients through D but must not all-reduce D's.
    with discriminator_no_sync(), autocast:
        g_phase = loss.g_phase(real, labels, noise)
    g_optimizer.zero_grad(set_to_none=True)
    g_phase.loss.backward()
    if measure_gradients:
        g_grad_norm = _gradient_norm(loss.generator.parameters())
    g_optimizer.step()
    return StepFigures(
        d_loss=d_phase.loss.detach(),
        g_loss=g_phase.loss.detach(),
        d_real=d_phase.real_scores.mean(),
        d_fake=d_phase.fake_scores.mean(),
        d_grad_norm=d_grad_norm,
        g_grad_norm=g_grad_norm,
    )


def load_matching_weights(network: nn.Module, weights: dict[str, torch.Tensor]) -> int:
    """Copy every tensor of ``weights`` whose name and shape the network also has; returns how
    many were copied. Between two cells of one search space the stems, up/downsampling blocks,
    attention layers and every edge that kept its operation match; the rest starts fresh."""
    own = network.state_dict()
    matching = {
        name: tensor for name, tensor in weights.items() if name in own and own[name].shape == tensor.shape
    }
    network.load_state_dict(matching, strict=False)
    return len(matching)


def make_optimizer(
    name: str, parameters: Any, lr: float, betas: tuple[float, float], weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(parameters, lr=lr, betas=betas, weight_decay=weight_decay)


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
        return config.resolved(), None
    if not existing:
        raise GenError(f"nothing to resume in {out}: it holds no checkpoint.")
    state = load_checkpoint(existing[-1])
    check_resumable(state, existing[-1])
    stored = TrainConfig.from_json(state["config"])
    # Resuming keeps every stored setting; only the goal, the budget, the machine and how often
    # checkpoints are written and how many are kept may change (None: the run's own), as they
    # decide which files are kept, not what is trained.
    changes = {
        "iterations": config.iterations,
        "device": config.device,
        "out": config.out,
        "max_minutes": config.max_minutes,
    }
    for name in ("checkpoint_every", "keep_checkpoints"):
        if getattr(config, name) is not None:
            changes[name] = getattr(config, name)
    if config.data:
        changes["data"] = config.data
    merged = dataclasses.replace(stored, **changes)
    merged.validate()
    return merged.resolved(), state


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    database: Any = None,
    data_set: str | None = None,
    on_start: Callable[[RunStart], None] | None = None,
    on_checkpoint: Callable[..., None] | None = None,
    protected: Callable[[], Collection[Path]] | None = None,
    architecture: tuple[GeneratorSpec, DiscriminatorSpec] | None = None,
    inherit: dict[str, Any] | None = None,
) -> TrainResult:
    """Train (or resume) a run; returns where its last checkpoint is.

    ``database`` (a URL or a SQLAlchemy Engine) records the run as ``gen train`` does: its
    model (``RunStart.model_id``, ``TrainResult.model_id``; a resumed run continues its model),
    every checkpoint, and pruning keeps the checkpoints that recorded images came from. A new
    model is linked to the registered data set ``data_set`` (whose files must not have
    changed), else to the data set of its folder, registered on the way (gen.datasets).

    ``architecture`` replaces the preset's networks (a searched or recorded architecture; the
    preset still gives the training recipe). ``inherit`` is a checkpoint whose weights a new
    run starts from wherever a tensor has the same name and shape (the search's weight
    inheritance, ``load_matching_weights``).

    ``on_start`` is called once data and networks are ready, ``on_checkpoint(path, iteration,
    sha256, evaluation)`` after each checkpoint is safely on disk (``evaluation``: its
    normalised domain FID, or None when it was not evaluated); both on the main process only.
    ``protected()`` names more checkpoints that pruning must keep.
    """
    record = None
    if database is not None:
        from gen.recording import TrainingRecord

        record = TrainingRecord(database, data_set=data_set)
        on_start = _recorded_first(record.on_start, on_start)
        on_checkpoint = _called_in_turn(record.on_checkpoint, on_checkpoint)
        protected = _kept_by_both(record.protected, protected)
    config, state = _prepare_config(config, resume)
    context = start_distributed(config.device)
    try:
        with run_folder_lock(Path(config.out), enabled=context.is_main):
            if state is None and checkpoints_in(Path(config.out)):  # another run got there first
                raise GenError(f"{config.out} already holds a training run; use --resume or another --out.")
            if context.is_main:
                remove_stale_temporaries(Path(config.out))  # a killed run's half-written files
            result = _train(
                config, state, context, progress, on_start, on_checkpoint, protected, architecture, inherit
            )
    finally:
        stop_distributed(context)
    return dataclasses.replace(result, model_id=record.model_id) if record is not None else result


def _recorded_first(
    record: Callable[[RunStart], RunStart], then: Callable[[RunStart], None] | None
) -> Callable[[RunStart], None]:
    def on_start(start: RunStart) -> None:
        recorded = record(start)
        if then is not None:
            then(recorded)

    return on_start


def _called_in_turn(first: Callable[..., None], then: Callable[..., None] | None) -> Callable[..., None]:
    def both(*arguments: Any) -> None:
        first(*arguments)
        if then is not None:
            then(*arguments)

    return both


def _kept_by_both(
    first: Callable[[], Collection[Path]], then: Callable[[], Collection[Path]] | None
) -> Callable[[], Collection[Path]]:
    return lambda: {*first(), *(then() if then is not None else ())}


@contextlib.contextmanager
def run_folder_lock(run_dir: Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on the run folder for the life of the run, so that a second
    ``gen train`` (or ``gen search``) into it stops with a sentence instead of overwriting the
    first one's files. An flock on the folder itself: no lock file to leave behind, and the kernel
    releases it when the process dies, however it dies. A folder made here and left empty (the
    run was refused) is removed again."""
    if not enabled:
        yield
        return
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise GenError(f"cannot use {run_dir} as a run folder: {error.strerror}.") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GenError(
                f"{run_dir} is in use by another gen train or gen search; wait for it to finish or "
                "choose another --out."
            ) from None
        yield
    finally:
        os.close(descriptor)
        if created:
            with contextlib.suppress(OSError):  # not empty: the run wrote something, keep it
                run_dir.rmdir()


def _read_best(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / BEST_FILE).read_text())
    except (OSError, ValueError):
        return None


def _train(
    config: TrainConfig,
    state: dict[str, Any] | None,
    context: Distributed,
    progress: bool,
    on_start: Callable[[RunStart], None] | None,
    on_checkpoint: Callable[..., None] | None,
    protected: Callable[[], Collection[Path]] | None,
    architecture: tuple[GeneratorSpec, DiscriminatorSpec] | None = None,
    inherit: dict[str, Any] | None = None,
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
    elif architecture is not None:
        generator_spec, discriminator_spec = architecture
        if {generator_spec.num_classes, discriminator_spec.num_classes} != {len(data.class_names)}:
            raise GenError(
                f"the architecture is for {generator_spec.num_classes} classes; "
                f"{config.data} has {len(data.class_names)}."
            )
    else:
        generator_spec, discriminator_spec = preset(config.preset, len(data.class_names))
    if state is None and config.classifier_weight:  # a resumed run's spec already says so
        if discriminator_spec.head != "projection":
            raise GenError("--classifier-weight needs a discriminator with a projection head (not BEGAN's).")
        discriminator_spec = dataclasses.replace(discriminator_spec, classifier_head=True)
    start_iteration = state["iteration"] if state is not None else 0
    if start_iteration >= config.iterations:
        raise GenError(f"this run already reached iteration {start_iteration}; ask for more with --iters.")

    torch.manual_seed(config.seed)  # weight initialisation; everything later has its own stream
    generator, discriminator = build(generator_spec), build(discriminator_spec)
    if inherit is not None and state is None:
        load_matching_weights(generator, inherit["generator"])
        load_matching_weights(discriminator, inherit["discriminator"])
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    if inherit is not None and state is None and "generator_ema" in inherit:
        load_matching_weights(generator_ema, inherit["generator_ema"])
    g_optimizer = make_optimizer(config.optimizer, generator.parameters(), config.g_lr, config.betas)
    d_optimizer = make_optimizer(
        config.optimizer, discriminator.parameters(), config.d_lr, config.betas, config.d_weight_decay
    )
    data_rng = torch.Generator().manual_seed(config.seed)  # same on every process: one global batch
    noise_rng = torch.Generator(device).manual_seed(config.seed * 1_000_003 + context.rank + 1)
    if state is not None:
        load_weights(generator, state["generator"], state["path"], "generator")
        load_weights(discriminator, state["discriminator"], state["path"], "discriminator")
        load_weights(generator_ema, state["generator_ema"], state["path"], "generator_ema")
        data_rng.set_state(state["rng"]["data"])
        noise_states = state["rng"]["noise"]
        if len(noise_states) != context.world_size:
            raise GenError(f"this run was trained on {len(noise_states)} processes; resume it on as many.")
        noise_rng.set_state(noise_states[context.rank])

    # channels_last on every device: on two CPU cores it made a training step ~1.4x faster.
    memory_format = torch.channels_last
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
    loss = make_loss(
        config.loss,
        g_model,
        d_model,
        config.diffaugment,
        noise_rng,
        lecam=config.lecam or 0.0,
        classifier_weight=config.classifier_weight or 0.0,
        **(config.loss_options or {}),
    )
    if state is not None:
        loss.load_state_dict(state.get("loss", {}))
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
    history = History(run_dir, start_iteration) if context.is_main else None
    evaluator = None
    if config.eval_every and context.is_main:
        from gen.evaluation import TrainingEvaluator  # the domain network: only when asked for

        evaluator = TrainingEvaluator(data, device, config.eval_images, config.seed, progress=progress)
    best = _read_best(run_dir) if state is not None else None
    bar = tqdm(
        total=config.iterations,
        initial=start_iteration,
        disable=not (progress and context.is_main),
        unit="it",
        dynamic_ncols=True,
    )

    def checkpoint(iteration: int, evaluate: bool) -> Path:
        nonlocal best
        if context.enabled:
            noise_states = [None] * context.world_size
            dist.all_gather_object(noise_states, noise_rng.get_state())
        else:
            noise_states = [noise_rng.get_state()]
        path = run_dir / checkpoint_name(iteration)
        if context.is_main:
            standing_statistics(generator_ema, config.seed)
            evaluation = evaluator(generator_ema) if evaluator is not None and evaluate else None
            sha256 = save_checkpoint(
                path,
                {
                    "iteration": iteration,
                    "config": config.to_json(),
                    "generator_spec": json.dumps(to_json(generator_spec)),
                    "discriminator_spec": json.dumps(to_json(discriminator_spec)),
                    "class_names": list(data.class_names),
                    "data_fingerprint": data.fingerprint,
                    "num_images": len(data.labels),
                    "generator": generator.state_dict(),
                    "discriminator": discriminator.state_dict(),
                    "generator_ema": generator_ema.state_dict(),
                    "g_optimizer": g_optimizer.state_dict(),
                    "d_optimizer": d_optimizer.state_dict(),
                    "loss": loss.state_dict(),
                    "rng": {"data": data_rng.get_state(), "noise": [s.cpu() for s in noise_states]},
                    "evaluation": evaluation,
                },
            )
            write_progress_grid(
                generator_ema, len(data.class_names), run_dir / f"grid-{iteration:07d}.png", config.seed
            )
            history.flush(evaluation=(iteration, evaluation) if evaluation is not None else None)
            if evaluation is not None and (best is None or evaluation < best["domain_fid"]):
                best = {"iteration": iteration, "checkpoint": path.name, "domain_fid": evaluation}
                text = json.dumps(best, indent=2) + "\n"
                atomic_write(run_dir / BEST_FILE, lambda file: file.write(text.encode()))
            # Pruning keeps the newest, the best, and any that recorded images were made from.
            keep = {(run_dir / best["checkpoint"]).resolve()} if best is not None else set()
            if protected is not None:
                keep |= {Path(kept).resolve() for kept in protected()}
            prunable = [old for old in checkpoints_in(run_dir) if old.resolve() not in keep]
            for old in prunable[: -config.keep_checkpoints]:
                old.unlink()
            if on_checkpoint is not None:
                on_checkpoint(path, iteration, sha256, evaluation)
        return path

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        batch_indices = draw_batch(data.labels, config.batch_size, data_rng, bool(config.balanced_batches))
        batch_indices = batch_indices[my_slice].to(device)
        real = images[batch_indices].float().div_(127.5).sub_(1)
        return real.contiguous(memory_format=memory_format), labels[batch_indices]

    iteration = start_iteration
    out_of_time = False
    timed_images, timed_seconds, started = 0, 0.0, time.perf_counter()
    budget_seconds = config.max_minutes * 60 if config.max_minutes is not None else math.inf
    with _StopRequest() as stop:
        while iteration < config.iterations:
            log_now = (iteration + 1) % config.log_every == 0
            if config.transition is not None and config.transition != (0, 0):
                strength = transition_strength(iteration, config.transition)
                set_conditioning(generator, strength)
                set_conditioning(discriminator, strength)
            figures = training_step(
                loss,
                d_optimizer,
                g_optimizer,
                [next_batch() for _ in range(config.critic_steps)],
                generator_spec.noise_dim,
                autocast,
                d_model.no_sync if context.enabled else contextlib.nullcontext,
                measure_gradients=log_now,
            )
            update_ema(generator_ema, generator, min(config.ema_decay, (1 + iteration) / (10 + iteration)))
            iteration += 1
            timed_images += config.batch_size * config.critic_steps

            stop_now = stop.requested
            out_of_time = timed_seconds + time.perf_counter() - started >= budget_seconds
            if context.enabled:
                flags = torch.tensor([float(stop_now), float(out_of_time)], device=device)
                dist.all_reduce(flags)
                stop_now, out_of_time = bool(flags[0].item()), bool(flags[1].item())
            seconds = timed_seconds + time.perf_counter() - started
            evaluate = bool(config.eval_every) and (
                iteration % config.eval_every == 0 or iteration == config.iterations or out_of_time
            )
            checkpoint_now = (
                iteration % config.checkpoint_every == 0
                or evaluate
                or iteration == config.iterations
                or stop_now
                or out_of_time
            )
            if history is not None:
                history.add(
                    iteration,
                    figures,
                    loss.summary(),
                    lrs=(g_optimizer.param_groups[0]["lr"], d_optimizer.param_groups[0]["lr"]),
                    images_per_second=timed_images / max(seconds, 1e-9),
                    seconds=seconds,
                    row=log_now or checkpoint_now,  # a checkpoint's iteration always has its row
                )
            if checkpoint_now:
                # Checkpoint and evaluation time are kept out of the images/s figure and the budget.
                timed_seconds += time.perf_counter() - started
                last_checkpoint = checkpoint(iteration, evaluate)
                started = time.perf_counter()
            if bar.disable is False:
                bar.set_postfix(
                    d_loss=f"{figures.d_loss.item():.3f}",
                    g_loss=f"{figures.g_loss.item():.3f}",
                    img_s=f"{timed_images / max(seconds, 1e-9):.0f}",
                    refresh=False,
                )
                bar.update(1)
            if stop_now or out_of_time:
                break
    bar.close()
    timed_seconds += time.perf_counter() - started
    return TrainResult(
        run_dir=run_dir,
        checkpoint=last_checkpoint,
        iteration=iteration,
        class_names=data.class_names,
        images_per_second=timed_images / max(timed_seconds, 1e-9),
        interrupted=stop_now,
        out_of_time=out_of_time and not stop_now,
        best=run_dir / best["checkpoint"] if best is not None else None,
    )
