"""Validation, the best checkpoint and early stopping.

A task's `evaluate()` returns its held-out numbers ({"val_loss": ..., "val_accuracy":
...}). The best checkpoint follows one of them, the task's `monitor` (default
"val_loss"), minimised unless the task sets `higher_is_better = True`. Early stopping
ends the run after `patience` validations in a row without a better one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textrnn.engine import distributed
from textrnn.engine.state import TrainState


@dataclass(frozen=True)
class Monitor:
    """The validation number that picks the best checkpoint."""

    metric: str = "val_loss"  # a key of the task's evaluate() result
    higher_is_better: bool = False  # accuracy: True; a loss: False

    @classmethod
    def of(cls, task: Any) -> Monitor:
        """The task's `monitor` and `higher_is_better` class attributes, where it sets them."""
        return cls(getattr(task, "monitor", "val_loss"), getattr(task, "higher_is_better", False))

    def score(self, metrics: dict[str, float]) -> float:
        """What the best checkpoint minimises: the metric, negated when higher is better;
        NaN when the metric is missing (such a validation never improves)."""
        sign = -1.0 if self.higher_is_better else 1.0
        return sign * metrics.get(self.metric, float("nan"))


def evaluate_everywhere(
    evaluate: Callable[[], dict[str, float]], *, main: bool
) -> dict[str, float]:
    """Rank 0 (`main`) validates and sends its numbers to every rank, so that all keep the
    same state; a single process just validates."""
    return distributed.broadcast_object(evaluate() if main else None)


def record(state: TrainState, metrics: dict[str, float], monitor: Monitor) -> bool:
    """Add a validation at the current step to `state`: its history, the best so far, the
    count of validations without improvement. True when this one is the new best."""
    score = monitor.score(metrics)
    improved = math.isfinite(score) and score < state.best_score
    if improved:
        state.best_score, state.best_val_loss = score, metrics["val_loss"]
        state.best_step, state.bad_evals = state.step, 0
    else:
        state.bad_evals += 1
    state.history.append(
        {"step": state.step, "epoch": state.epoch, "elapsed": round(state.elapsed, 2), **metrics}
    )
    return improved


def out_of_patience(state: TrainState, patience: int) -> bool:
    """Early stopping: `patience` validations in a row brought no improvement (0 = never)."""
    return bool(patience) and state.bad_evals >= patience


def best_record(state: TrainState) -> dict | None:
    """The validation of the best checkpoint's step, if there was one."""
    return next((h for h in state.history if h["step"] == state.best_step), None)
