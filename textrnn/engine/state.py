"""Where a training run stands: `TrainState`, saved in every checkpoint under "training"
and read back, checked, when a run resumes from its last checkpoint."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from textrnn.errors import CheckpointError

# Fields that describe how a run ended, not where it stands: a resumed run starts without them.
_ENDING = ("history", "stopped", "signal")


@dataclass
class TrainState:
    """Everything besides weights and optimizer moments that an exact resume needs."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed: float = 0.0  # seconds of training so far (time budgets continue across resumes)
    tokens: int = 0
    best_val_loss: float = float("inf")  # val_loss of the best checkpoint
    # the monitored metric of the best checkpoint, negated if higher is better
    best_score: float = float("inf")
    best_step: int = 0
    bad_evals: int = 0  # validations since the last improvement (early stopping)
    lr_scale: float = 1.0  # lowered after non-finite losses
    history: list = field(default_factory=list)  # one dict per validation
    # why training ended: "epochs", "max_steps", "time_budget", "early_stopping", "interrupted"
    stopped: str = ""
    signal: int = 0  # the signal that interrupted it (2 SIGINT, 15 SIGTERM, 1 SIGHUP); 0 if none

    def to_meta(self) -> dict:
        """The checkpoint's "training" record (the history is saved beside it)."""
        return {k: v for k, v in asdict(self).items() if k != "history"}

    @classmethod
    def from_meta(cls, training: dict, history: Any) -> TrainState:
        """The state saved in a checkpoint's `training`, its types checked (it comes from a file)."""
        state = cls()
        for f in fields(cls):
            if f.name in _ENDING or f.name not in training:
                continue
            value, default = training[f.name], getattr(state, f.name)
            if value is None and f.name in ("best_val_loss", "best_score"):
                value = float("inf")  # JSON keeps inf as null
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and not math.isnan(value)
            )
            if ok and isinstance(default, int):  # counters
                ok = isinstance(value, int) and value >= 0
            elif ok and f.name in ("elapsed", "lr_scale"):
                ok = math.isfinite(value) and value >= 0 and (value > 0 or f.name == "elapsed")
            if not ok:
                raise CheckpointError(f"checkpoint is corrupt: training.{f.name} is {value!r}")
            setattr(state, f.name, value)
        if "best_score" not in training:  # written before `monitor` existed: it was val_loss
            state.best_score = state.best_val_loss
        if not (
            isinstance(history, list)
            and all(isinstance(h, dict) and isinstance(h.get("step"), int) for h in history)
        ):
            raise CheckpointError(
                "checkpoint is corrupt: its validation history is not a list of records"
            )
        state.history = list(history)
        return state
