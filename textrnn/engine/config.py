"""Training settings shared by every task: `TrainConfig`, and how a task's defaults and a
user's options combine into one."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from textrnn.config import config_from_dict
from textrnn.errors import CheckpointError, UsageError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# The optimisers and the settings that go with each. "sgd" is plain SGD without momentum,
# as the PyTorch word-language-model example and AWD-LSTM train word models (its weight
# decay is then an L2 penalty added to the gradient, not AdamW's decoupled decay). When a
# run names an optimiser other than its defaults', the settings it does not give come
# from here, not from the other optimiser's defaults.
OPTIMIZERS = {
    "adamw": {"lr": 3e-3, "weight_decay": 0.01, "clip": 1.0},
    "sgd": {"lr": 20.0, "weight_decay": 0.0, "clip": 0.25},
}


@dataclass(frozen=True)
class TrainConfig:
    # Sequences (LM) or examples per optimizer step, all processes together (the global
    # batch). 32 rather than 64 for LMs: on tiny-shakespeare in 600 s, twice the updates
    # for 5% fewer tokens gave 1.451 held-out nats/char against 1.467 (16: 1.454).
    batch_size: int = 32
    seq_len: int = 128  # tokens per sequence (truncated back-propagation length for LMs)
    optimizer: str = "adamw"  # adamw | sgd (OPTIMIZERS)
    lr: float = OPTIMIZERS["adamw"]["lr"]  # peak learning rate
    weight_decay: float = OPTIMIZERS["adamw"]["weight_decay"]  # on matrices only: AdamW's decoupled decay, SGD's L2 penalty
    warmup_steps: int = 100  # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.02  # floor of the cosine schedule, as a fraction of lr
    clip: float = OPTIMIZERS["adamw"]["clip"]  # clip the global gradient norm (0 = off)
    epochs: int = 20  # passes over the training data (an upper bound with early stopping)
    max_steps: int = 0  # stop after this many optimizer steps (0 = no limit)
    time_budget: float = 0.0  # stop after this many seconds of training (0 = no limit)
    val_fraction: float = 0.05  # held out for validation when no dev set is given
    eval_every: int = 0  # validate every N steps (0 = once per epoch, at most every 1000)
    patience: int = 5  # stop after this many validations without improvement (0 = never)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (CUDA): see engine.devices
    seed: int = 1234  # seeds parameters, batch order and dropout
    log_every: int = 20  # steps between progress reports and metric-log lines

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "epochs"):
            if getattr(self, name) < 1:
                raise UsageError(f"{_option(name)} must be at least 1, got {getattr(self, name)}")
        non_negative = ("weight_decay", "warmup_steps", "clip", "max_steps", "time_budget", "eval_every", "patience")
        for name in non_negative:
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):  # NaN fails every comparison
                raise UsageError(f"{_option(name)} must be a finite number >= 0, got {value}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"--lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UsageError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.log_every < 1:
            raise UsageError(f"log_every must be at least 1, got {self.log_every}")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def saved_train_config(meta: dict, *, source: str) -> TrainConfig:
    """The training settings a checkpoint was trained with; CheckpointError when they are
    missing or malformed (`source` names the file)."""
    try:
        return config_from_dict(TrainConfig, meta["train_config"], what="training config")
    except KeyError:
        raise CheckpointError(f"{source}: checkpoint metadata is incomplete (no train_config)") from None
    except ValueError as err:
        raise CheckpointError(f"{source}: checkpoint metadata is invalid ({err})") from None


def config_from_defaults(defaults: dict, **overrides: Any) -> TrainConfig:
    """A TrainConfig with a task's `defaults` (DEFAULT_TRAIN; their optimizer's OPTIMIZERS
    settings where they give none), then `overrides`, skipping None."""
    optimizer = defaults.get("optimizer", "adamw")
    given = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig(**{**OPTIMIZERS[optimizer], **defaults, **_optimizer_settings(optimizer, given)})


def config_with_overrides(cfg: TrainConfig, **overrides: Any) -> TrainConfig:
    """`cfg` with the given fields replaced, skipping None (options the user did not pass).

    A time budget given without a patience turns early stopping off: the run uses the time
    it was given, its learning rate decays to the end, and the best checkpoint is kept
    anyway. (Stopping on a noisy dev figure while the rate was still high ended 1800 s
    transliteration runs after 1125 s, short of what the rest of the schedule brings.)

    A different --optimizer brings its own learning rate, weight decay and clipping
    (OPTIMIZERS) where those are not given too.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("time_budget") and overrides.get("patience") is None:
        overrides = {**overrides, "patience": 0}
    return replace(cfg, **_optimizer_settings(cfg.optimizer, overrides))


def _optimizer_settings(current: str, overrides: dict) -> dict:
    """`overrides`, plus the OPTIMIZERS settings of an --optimizer other than `current`
    that `overrides` do not give."""
    optimizer = overrides.get("optimizer", current)
    if optimizer == current or optimizer not in OPTIMIZERS:
        return overrides
    return {**OPTIMIZERS[optimizer], **overrides}
