"""What a training run is, as data: every setting (``TrainConfig``, stored in its checkpoints and
in the database) and what is known once its data and networks are ready (``RunStart``).

Below both the training loop (gen.train) and what records a run (gen.provenance): each reads
these, neither imports the other for them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen.architecture import MAX_MINIBATCH_GROUP, PRESETS, minibatch_group_allowed
from gen.diffaugment import parse_policy
from gen.errors import GenError
from gen.image_folder import MAX_BALANCE
from gen.losses import LOSSES
from gen.presets import OPTIMIZERS, RECIPES
from gen.seeds import check_seed


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
    reconstruction_weight: float | None = None  # D's FastGAN decoder and its L1 loss weight, 0: off
    minibatch_std: int | None = None  # D's minibatch standard deviation group size, 0: off
    ada_target: float | None = None  # ADA's target for E[sign(D(real))], 0: a fixed policy
    mode_seeking: float | None = None  # MSGAN's mode seeking weight on G (gen.losses), 0: off
    colour_condition: float | None = None  # G draws in training images' colours (gen.losses), 0: off
    histogram_matching: float | None = None  # G's per-class pixel distributions (gen.losses), 0: off
    oversample_rare: float | None = None  # draw images by colour rarity to this power (gen.train), 0: off
    oversample_rare_fade: int | None = None  # the rarity weighting fades out over these iterations, 0: never
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
        fields.setdefault("reconstruction_weight", 0.0)
        fields.setdefault("minibatch_std", 0)
        fields.setdefault("ada_target", 0.0)
        fields.setdefault("mode_seeking", 0.0)
        fields.setdefault("colour_condition", 0.0)
        fields.setdefault("histogram_matching", 0.0)
        fields.setdefault("oversample_rare", 0.0)
        fields.setdefault("oversample_rare_fade", 0)
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
        for name in (
            "g_lr",
            "d_lr",
            "d_weight_decay",
            "lecam",
            "classifier_weight",
            "reconstruction_weight",
            "mode_seeking",
            "colour_condition",
            "histogram_matching",
            "oversample_rare",
        ):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise GenError(f"--{name.replace('_', '-')} must be a finite number of at least 0.")
        if self.minibatch_std is not None and not minibatch_group_allowed(self.minibatch_std):
            raise GenError(
                f"--minibatch-std must be 0 (off) or a group of 2 to {MAX_MINIBATCH_GROUP} images."
            )
        if self.oversample_rare_fade is not None and self.oversample_rare_fade < 0:
            raise GenError("--oversample-rare-fade must be 0 (never) or a number of iterations.")
        rare = RECIPES[self.preset].oversample_rare if self.oversample_rare is None else self.oversample_rare
        if self.oversample_rare_fade and not rare:  # nothing to fade: the flag would do nothing
            raise GenError("--oversample-rare-fade needs --oversample-rare (a weighting to fade out).")
        if self.transition is not None and not 0 <= self.transition[0] <= self.transition[1]:
            raise GenError("--transition START END needs 0 <= START <= END.")
        if self.ada_target is not None and not 0 <= self.ada_target < 1:
            raise GenError("--ada-target must be at least 0 (off) and below 1.")
        if self.ada_target and (self.loss or RECIPES[self.preset].loss) == "began":  # the preset's too
            raise GenError("--ada-target needs a discriminator that scores realness (not BEGAN's).")
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
