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

Read top to bottom: ``train`` (the run folder, recording, distributed setup) calls ``_train``
(data, architecture, networks, evaluator), which hands a ``Checkpointer`` to ``_loop``. The
run's settings live in gen.train_config, what records it in gen.provenance: both below this
module, which nothing of the pipeline imports back.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parametrize
from tqdm import tqdm

from gen.architecture import MAX_COLOUR_BANK, DiscriminatorSpec, GeneratorSpec, from_json, preset, to_json
from gen.checkpoint import (
    atomic_write,
    check_resumable,
    checkpoint_name,
    checkpoints_in,
    load_checkpoint,
    load_matching_weights,
    load_weights,
    remove_stale_temporaries,
    run_folder_lock,
    save_checkpoint,
)
from gen.errors import GenError
from gen.history import History
from gen.image_folder import LabelledImages, load_image_folder
from gen.images import to_uint8, write_grid
from gen.losses import GANLoss, make_loss
from gen.metrics.domain import to_model_input
from gen.networks import Discriminator, Generator, build, colour_statistics, set_conditioning
from gen.runtime import Distributed, start_distributed, stop_distributed
from gen.train_config import RunStart, TrainConfig

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

BEST_FILE = "best.json"


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

    def _handle(self, signum: int, frame: FrameType | None) -> None:
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


RARE_NEIGHBOUR = 5  # rarity is the distance to an image's 5th nearest neighbour in its class


def rarity_weights(
    images: torch.Tensor, labels: torch.Tensor, power: float, neighbour: int = RARE_NEIGHBOUR
) -> torch.Tensor:
    """Each image's weight in the draw (float64, mean 1 within each class): how far its colour
    lies from its class's other images, to ``power``.

    An image's colour is its per-channel mean and standard deviation (six numbers), standardised
    within its class (a number that does not vary in the class is left out); its rarity is the
    Euclidean distance to its ``neighbour``-th nearest other image of the class (the farthest, in
    a class of ``neighbour`` images or fewer). A slide with a stain or background that few images
    of its class share is far from all of them, whatever the colours are; a class of one image,
    or of images that all look alike, keeps weight 1. Because each class's weights sum to its
    size, the classes are drawn as often as without weights.
    """
    weights = torch.ones(len(labels), dtype=torch.float64)
    for label in labels.unique():
        members = torch.nonzero(labels == label).flatten()
        if len(members) < 2:
            continue
        features = colour_statistics(images[members].double())  # one class at a time: memory stays small
        spread = features.std(0, correction=0)
        varying = spread > 0
        standard = (features[:, varying] - features[:, varying].mean(0)) / spread[varying]
        distances = torch.cdist(standard, standard).sort(1).values  # column 0: the image itself
        rarity = distances[:, min(neighbour, len(members) - 1)]
        if rarity.mean() > 0:
            rarity = rarity**power
            weights[members] = rarity / rarity.mean()
    return weights


def weighted_chances(labels: torch.Tensor, weights: torch.Tensor, balanced: bool) -> torch.Tensor:
    """Each image's chance in a weighted draw (rarity_weights): its weight, and, ``balanced``,
    divided by its class's total, so that every class is drawn equally often. Computed once per
    run, for draw_batch."""
    chances = weights.double().clone()
    if balanced:
        totals = torch.zeros(int(labels.max()) + 1, dtype=torch.float64).index_add_(0, labels, chances)
        chances /= totals[labels]
    return chances


def faded_chances(weighted: torch.Tensor, plain: torch.Tensor, iteration: int, fade: int) -> torch.Tensor:
    """The chances of a weighted draw that fades out (``--oversample-rare-fade``): at
    ``iteration`` a mixture of ``weighted`` (rarity_weights, as weighted_chances gives them) and
    ``plain`` (every image's chance without weights), the weighted share falling linearly from 1
    at iteration 0 to 0 at ``fade``. A rare kind of image is learnt early, and the classes'
    true proportions are what training ends on. ``fade`` 0: the weights never fade."""
    if not fade:
        return weighted
    share = 1.0 - transition_strength(iteration, (0, fade))  # the same linear ramp, downwards
    return share * weighted / weighted.sum() + (1.0 - share) * plain / plain.sum()


def draw_batch(
    labels: torch.Tensor,
    size: int,
    rng: torch.Generator,
    balanced: bool,
    chances: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices of one training batch, drawn with replacement from ``rng``: uniformly over the
    images, or, ``balanced``, a uniform class first and then a uniform image of that class, so
    that a class of 50 images is seen as often as one of 500. With ``chances`` (one per image,
    weighted_chances, which has already taken ``balanced`` into account), an image is drawn in
    proportion to its chance instead."""
    if chances is not None:
        return torch.multinomial(chances, size, replacement=True, generator=rng)
    if not balanced:
        return torch.randint(len(labels), (size,), generator=rng)
    counts = torch.bincount(labels)
    order = torch.argsort(labels, stable=True)  # the images grouped by class
    starts = torch.cumsum(counts, 0) - counts
    present = torch.nonzero(counts).flatten()  # a class with no image is never drawn
    classes = present[torch.randint(len(present), (size,), generator=rng)]
    within = (torch.rand(size, generator=rng, dtype=torch.float64) * counts[classes]).long()
    return order[starts[classes] + torch.minimum(within, counts[classes] - 1)]


def _gradient_norm(parameters: Iterable[nn.Parameter]) -> float:
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


def make_optimizer(
    name: str,
    parameters: Iterable[nn.Parameter],
    lr: float,
    betas: tuple[float, float],
    weight_decay: float = 0.0,
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
    database: Engine | str | None = None,
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
    changed), else to the data set of its folder, registered on the way (gen.dataset_registry).

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
        from gen.provenance import TrainingRecord

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
    """Setup (data, architecture, networks, the recording's on_start, evaluation), then the loop."""
    if config.batch_size % context.world_size:
        raise GenError(
            f"batch size {config.batch_size} does not split evenly over {context.world_size} processes."
        )
    data = load_image_folder(config.data, balance=config.balance, seed=config.seed)
    specs = _network_specs(config, state, data, architecture)
    group, local_batch = specs[1].minibatch_std, config.batch_size // context.world_size
    if group and local_batch % group:  # a group would hold real and fake images (see with_minibatch_std)
        raise GenError(
            f"the discriminator's minibatch_std group of {group} images must divide the batch of "
            f"{local_batch} per process."
        )
    start_iteration = state["iteration"] if state is not None else 0
    if start_iteration >= config.iterations:
        raise GenError(f"this run already reached iteration {start_iteration}; ask for more with --iters.")
    networks = _build_networks(config, state, specs, context, inherit, data)
    if context.is_main and on_start is not None:
        on_start(
            RunStart(
                config=config,
                generator=to_json(specs[0]),
                discriminator=to_json(specs[1]),
                class_names=data.class_names,
                num_images=len(data.labels),
                data_fingerprint=data.fingerprint,
                skipped_files=data.skipped,
                start_iteration=start_iteration,
                resumed_from=Path(state["path"]) if state is not None else None,
                device=str(context.device),
            )
        )
    history = History(Path(config.out), start_iteration) if context.is_main else None
    evaluator = None
    if config.eval_every and context.is_main:
        from gen.evaluation import TrainingEvaluator  # the domain network: only when asked for

        evaluator = TrainingEvaluator(
            data, context.device, config.eval_images, config.seed, progress=progress
        )
    checkpointer = Checkpointer(
        config,
        context,
        data,
        specs,
        networks,
        history,
        evaluator,
        protected=protected,
        on_checkpoint=on_checkpoint,
        resumed_from=Path(state["path"]) if state is not None else None,
    )
    return _loop(config, context, data, networks, history, checkpointer, start_iteration, progress)


def _network_specs(
    config: TrainConfig,
    state: dict[str, Any] | None,
    data: LabelledImages,
    architecture: tuple[GeneratorSpec, DiscriminatorSpec] | None,
) -> tuple[GeneratorSpec, DiscriminatorSpec]:
    """The networks' architecture: a resumed run's own, the one given, or the preset's."""
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
    # D's levers that change its spec (a resumed run's spec already holds them): option, change.
    levers = (
        ("--classifier-weight", {"classifier_head": True} if config.classifier_weight else {}),
        ("--reconstruction-weight", {"reconstruction_head": True} if config.reconstruction_weight else {}),
        ("--minibatch-std", {"minibatch_std": config.minibatch_std} if config.minibatch_std else {}),
    )
    for option, change in levers:
        if state is None and change:
            if discriminator_spec.head != "projection":
                raise GenError(f"{option} needs a discriminator with a projection head (not BEGAN's).")
            discriminator_spec = dataclasses.replace(discriminator_spec, **change)
    # A slot for every image of the largest class (a given architecture's bank is sized here too).
    wants_bank = config.colour_condition or generator_spec.colour_bank or discriminator_spec.colour_projection
    if state is None and wants_bank:
        largest = int(torch.bincount(data.labels).max())
        if largest * generator_spec.num_classes > MAX_COLOUR_BANK:
            raise GenError(
                f"--colour-condition keeps a colour for each of {generator_spec.num_classes} classes x "
                f"{largest} images (the largest class), more than the {MAX_COLOUR_BANK:,} it allows."
            )
        generator_spec = dataclasses.replace(generator_spec, colour_bank=largest)
    return generator_spec, discriminator_spec


# channels_last on every device: on two CPU cores it made a training step ~1.4x faster.
MEMORY_FORMAT = torch.channels_last


@dataclass
class _Networks:
    """What the loop trains and a checkpoint saves: the networks and the EMA generator, their
    optimisers, the objective, and the random streams of the batches and of the noise."""

    generator: Generator
    discriminator: Discriminator
    generator_ema: Generator
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    loss: GANLoss
    data_rng: torch.Generator  # the same on every process: one global batch
    noise_rng: torch.Generator  # one per process
    d_model: nn.Module  # the discriminator as the loss calls it (DistributedDataParallel under torchrun)

    def step(
        self,
        real_batches: list[tuple[torch.Tensor, torch.Tensor]],
        autocast: torch.autocast,
        discriminator_no_sync: Callable[[], contextlib.AbstractContextManager],
        measure_gradients: bool,
    ) -> StepFigures:
        return training_step(
            self.loss,
            self.d_optimizer,
            self.g_optimizer,
            real_batches,
            self.generator.spec.noise_dim,
            autocast,
            discriminator_no_sync,
            measure_gradients=measure_gradients,
        )

    def learning_rates(self) -> tuple[float, float]:
        return self.g_optimizer.param_groups[0]["lr"], self.d_optimizer.param_groups[0]["lr"]


def _build_networks(
    config: TrainConfig,
    state: dict[str, Any] | None,
    specs: tuple[GeneratorSpec, DiscriminatorSpec],
    context: Distributed,
    inherit: dict[str, Any] | None,
    data: LabelledImages,
) -> _Networks:
    """Fresh networks (from ``inherit``'s matching weights, when given), or a checkpoint's, on the device."""
    device = context.device
    torch.manual_seed(config.seed)  # weight initialisation; everything later has its own stream
    generator, discriminator = build(specs[0]), build(specs[1])
    if inherit is not None and state is None:
        load_matching_weights(generator, inherit["generator"])
        load_matching_weights(discriminator, inherit["discriminator"])
    if specs[0].colour_bank and state is None:  # a resumed run's bank comes with its weights
        colours = [generator.colours_of(to_model_input(chunk)) for chunk in data.images.split(1024)]
        generator.fill_colour_bank(torch.cat(colours), data.labels)
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    if inherit is not None and state is None and "generator_ema" in inherit:
        load_matching_weights(generator_ema, inherit["generator_ema"])
    g_optimizer = make_optimizer(config.optimizer, generator.parameters(), config.g_lr, config.betas)
    d_optimizer = make_optimizer(
        config.optimizer, discriminator.parameters(), config.d_lr, config.betas, config.d_weight_decay
    )
    data_rng = torch.Generator().manual_seed(config.seed)
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
    for network in (generator, discriminator, generator_ema):
        network.to(device, memory_format=MEMORY_FORMAT)
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
        reconstruction_weight=config.reconstruction_weight or 0.0,
        ada_target=config.ada_target or 0.0,
        mode_seeking=config.mode_seeking or 0.0,
        colour_condition=config.colour_condition or 0.0,
        histogram_matching=config.histogram_matching or 0.0,
        **(config.loss_options or {}),
    )
    if state is not None:
        loss.load_state_dict(state.get("loss", {}))
    return _Networks(
        generator, discriminator, generator_ema, g_optimizer, d_optimizer, loss, data_rng, noise_rng, d_model
    )


class Checkpointer:
    """Writes the run's checkpoints, each with everything a resume needs, its progress grid and
    the history rows up to it; evaluates one when asked (``eval_every``), names the best in
    best.json and prunes the oldest (never the best, nor one that recorded images came from).

    Its state: ``best``, the best evaluated checkpoint and its figure (best.json's contents, read
    back when a run resumes); ``last``, the newest checkpoint; ``last_evaluation``, the newest
    figure. Only the main process writes; every process takes part in gathering the noise streams.
    """

    def __init__(
        self,
        config: TrainConfig,
        context: Distributed,
        data: LabelledImages,
        specs: tuple[GeneratorSpec, DiscriminatorSpec],
        networks: _Networks,
        history: History | None,
        evaluator: Callable[[Generator], float] | None,
        *,
        protected: Callable[[], Collection[Path]] | None,
        on_checkpoint: Callable[..., None] | None,
        resumed_from: Path | None,
    ):
        self.config, self.context, self.data, self.specs, self.networks = (
            config,
            context,
            data,
            specs,
            networks,
        )
        self.history, self.evaluator = history, evaluator
        self.protected, self.on_checkpoint = protected, on_checkpoint
        self.run_dir = Path(config.out)
        self.best = _read_best(self.run_dir) if resumed_from is not None else None
        self.last = resumed_from if resumed_from is not None else self.run_dir
        self.last_evaluation: float | None = None

    @property
    def best_checkpoint(self) -> Path | None:
        return self.run_dir / self.best["checkpoint"] if self.best is not None else None

    def save(self, iteration: int, evaluate: bool) -> Path:
        noise_states = self._noise_states()
        path = self.run_dir / checkpoint_name(iteration)
        if self.context.is_main:
            generator_ema = self.networks.generator_ema
            standing_statistics(generator_ema, self.config.seed)
            evaluation = self.evaluator(generator_ema) if self.evaluator is not None and evaluate else None
            sha256 = save_checkpoint(path, self._contents(iteration, noise_states, evaluation))
            write_progress_grid(
                generator_ema,
                len(self.data.class_names),
                self.run_dir / f"grid-{iteration:07d}.png",
                self.config.seed,
            )
            self.history.flush(evaluation=(iteration, evaluation) if evaluation is not None else None)
            if evaluation is not None:
                self.last_evaluation = evaluation
                self._mark_if_best(iteration, path, evaluation)
            self._prune()
            if self.on_checkpoint is not None:
                self.on_checkpoint(path, iteration, sha256, evaluation)
        self.last = path
        return path

    def _noise_states(self) -> list[torch.Tensor]:
        """Every process's noise stream, in rank order."""
        if not self.context.enabled:
            return [self.networks.noise_rng.get_state()]
        noise_states = [None] * self.context.world_size
        dist.all_gather_object(noise_states, self.networks.noise_rng.get_state())
        return noise_states

    def _contents(
        self, iteration: int, noise_states: list[torch.Tensor], evaluation: float | None
    ) -> dict[str, Any]:
        networks, data = self.networks, self.data
        return {
            "iteration": iteration,
            "config": self.config.to_json(),
            "generator_spec": json.dumps(to_json(self.specs[0])),
            "discriminator_spec": json.dumps(to_json(self.specs[1])),
            "class_names": list(data.class_names),
            "data_fingerprint": data.fingerprint,
            "num_images": len(data.labels),
            "generator": networks.generator.state_dict(),
            "discriminator": networks.discriminator.state_dict(),
            "generator_ema": networks.generator_ema.state_dict(),
            "g_optimizer": networks.g_optimizer.state_dict(),
            "d_optimizer": networks.d_optimizer.state_dict(),
            "loss": networks.loss.state_dict(),
            "rng": {"data": networks.data_rng.get_state(), "noise": [s.cpu() for s in noise_states]},
            "evaluation": evaluation,
        }

    def _mark_if_best(self, iteration: int, path: Path, evaluation: float) -> None:
        if self.best is None or evaluation < self.best["domain_fid"]:
            self.best = {"iteration": iteration, "checkpoint": path.name, "domain_fid": evaluation}
            text = json.dumps(self.best, indent=2) + "\n"
            atomic_write(self.run_dir / BEST_FILE, lambda file: file.write(text.encode()))

    def _prune(self) -> None:
        """Keeps the newest, the best, and any that recorded images were made from."""
        keep = {self.best_checkpoint.resolve()} if self.best is not None else set()
        if self.protected is not None:
            keep |= {Path(kept).resolve() for kept in self.protected()}
        prunable = [old for old in checkpoints_in(self.run_dir) if old.resolve() not in keep]
        for old in prunable[: -self.config.keep_checkpoints]:
            old.unlink()


class _Clock:
    """Training time: what images/s and ``max_minutes`` count, checkpoints and evaluations left out."""

    def __init__(self, max_minutes: float | None):
        self.images = 0
        self._budget = max_minutes * 60 if max_minutes is not None else math.inf
        self._banked = 0.0
        self._started = time.perf_counter()

    def seconds(self) -> float:
        return self._banked + time.perf_counter() - self._started

    def out_of_time(self) -> bool:
        return self.seconds() >= self._budget

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self._banked += time.perf_counter() - self._started
        yield
        self._started = time.perf_counter()


def _agreed(stop: bool, out_of_time: bool, context: Distributed) -> tuple[bool, bool]:
    """Whether to stop and whether time ran out, as every process sees it (one process's is enough)."""
    if not context.enabled:
        return stop, out_of_time
    flags = torch.tensor([float(stop), float(out_of_time)], device=context.device)
    dist.all_reduce(flags)
    return bool(flags[0].item()), bool(flags[1].item())


def _loop(
    config: TrainConfig,
    context: Distributed,
    data: LabelledImages,
    networks: _Networks,
    history: History | None,
    checkpointer: Checkpointer,
    iteration: int,
    progress: bool,
) -> TrainResult:
    """Iterations from ``iteration`` to the goal: a training step, the EMA, a history row, and
    a checkpoint every ``checkpoint_every`` (and at the goal, on evaluation, on a stop, or when
    time is out)."""
    real_batches = _RealBatches(config, context, data, networks.data_rng)
    autocast = torch.autocast(
        "cuda", dtype=torch.bfloat16, enabled=context.device.type == "cuda" and config.mixed_precision
    )
    no_sync = networks.d_model.no_sync if context.enabled else contextlib.nullcontext
    bar = tqdm(
        total=config.iterations,
        initial=iteration,
        disable=not (progress and context.is_main),
        unit="it",
        dynamic_ncols=True,
    )
    clock = _Clock(config.max_minutes)
    stop_now = out_of_time = False
    with _StopRequest() as stop:
        while iteration < config.iterations:
            log_now = (iteration + 1) % config.log_every == 0
            _condition(networks, iteration, config.transition)
            batches = [real_batches.draw(iteration) for _ in range(config.critic_steps)]
            figures = networks.step(batches, autocast, no_sync, measure_gradients=log_now)
            decay = min(config.ema_decay, (1 + iteration) / (10 + iteration))
            update_ema(networks.generator_ema, networks.generator, decay)
            iteration += 1
            clock.images += config.batch_size * config.critic_steps

            stop_now, out_of_time = _agreed(stop.requested, clock.out_of_time(), context)
            seconds = clock.seconds()
            evaluate, checkpoint_now = _due(config, iteration, stop_now, out_of_time)
            if history is not None:
                history.add(
                    iteration,
                    figures,
                    networks.loss.summary(),
                    lrs=networks.learning_rates(),
                    images_per_second=clock.images / max(seconds, 1e-9),
                    seconds=seconds,
                    row=log_now or checkpoint_now,  # a checkpoint's iteration always has its row
                )
            if checkpoint_now:
                with clock.paused():  # checkpoint and evaluation time are kept out of images/s and the budget
                    checkpointer.save(iteration, evaluate)
            if bar.disable is False:
                _show(bar, figures, clock.images / max(seconds, 1e-9))
            if stop_now or out_of_time:
                break
    bar.close()
    return TrainResult(
        run_dir=checkpointer.run_dir,
        checkpoint=checkpointer.last,
        iteration=iteration,
        class_names=data.class_names,
        images_per_second=clock.images / max(clock.seconds(), 1e-9),
        interrupted=stop_now,
        out_of_time=out_of_time and not stop_now,
        best=checkpointer.best_checkpoint,
    )


def _show(bar: tqdm, figures: StepFigures, images_per_second: float) -> None:
    bar.set_postfix(
        d_loss=f"{figures.d_loss.item():.3f}",
        g_loss=f"{figures.g_loss.item():.3f}",
        img_s=f"{images_per_second:.0f}",
        refresh=False,
    )
    bar.update(1)


class _RealBatches:
    """This process's share of each global batch (drawn from the data stream, the same on every
    process), as float images in [-1, 1] on the device."""

    def __init__(
        self, config: TrainConfig, context: Distributed, data: LabelledImages, data_rng: torch.Generator
    ):
        self.config, self.device, self.data_rng = config, context.device, data_rng
        self.labels = data.labels
        self.chances = None  # per image, computed once: a weighted draw (--oversample-rare)
        if config.oversample_rare:
            weights = rarity_weights(data.images, data.labels, config.oversample_rare)
            balanced = bool(config.balanced_batches)
            self.chances = weighted_chances(data.labels, weights, balanced)
            if config.oversample_rare_fade:  # what the weighted draw fades into
                self.plain = weighted_chances(data.labels, torch.ones(len(data.labels)), balanced)
        self.images_on_device, self.labels_on_device = (
            data.images.to(self.device),
            data.labels.to(self.device),
        )
        local_batch = config.batch_size // context.world_size
        self.mine = slice(context.rank * local_batch, (context.rank + 1) * local_batch)

    def draw(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        chances = self.chances
        fade = self.config.oversample_rare_fade
        if chances is not None and fade:
            chances = None if iteration >= fade else faded_chances(chances, self.plain, iteration, fade)
        batch_indices = draw_batch(
            self.labels,
            self.config.batch_size,
            self.data_rng,
            bool(self.config.balanced_batches),
            chances,
        )
        batch_indices = batch_indices[self.mine].to(self.device)
        real = to_model_input(self.images_on_device[batch_indices], self.device)
        return real.contiguous(memory_format=MEMORY_FORMAT), self.labels_on_device[batch_indices]


def _due(config: TrainConfig, iteration: int, stop_now: bool, out_of_time: bool) -> tuple[bool, bool]:
    """(evaluate, checkpoint) after ``iteration``: an evaluation every ``eval_every``, at the
    goal and when time is out; a checkpoint then too, every ``checkpoint_every`` and on a stop."""
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
    return evaluate, checkpoint_now


def _condition(networks: _Networks, iteration: int, transition: tuple[int, int] | None) -> None:
    """Transitional conditioning: how much class signal both networks get at this iteration."""
    if transition is not None and transition != (0, 0):
        strength = transition_strength(iteration, transition)
        set_conditioning(networks.generator, strength)
        set_conditioning(networks.discriminator, strength)
