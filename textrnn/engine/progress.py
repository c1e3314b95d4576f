"""Progress events of a training run: the `Progress` snapshot handed to the caller's
callback (the CLI draws it), and the records of the metrics log (`x.metrics.jsonl`, one
JSON object per line: {"event": "start", ...} where a run or a resumed run begins,
{"event": "train", ...} every `log_every` steps, {"event": "eval", ...} per validation;
train and eval records carry the tokens seen so far)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from textrnn.engine.state import TrainState
from textrnn.errors import TextrnnError

# How far a long evaluation has come: called with (done, total) in the task's own units
# (tokens, sentences, words), so that the CLI can show it.
Tick = Callable[[int, int], None]


@dataclass
class Progress:
    """A snapshot of training, passed to the progress callback."""

    event: str  # "start" | "step" | "eval" | "log" | "done"
    step: int
    total_steps: int
    epoch: int
    train_loss: float = float("nan")
    val: dict = field(default_factory=dict)
    best_val_loss: float = float("inf")
    best_step: int = 0
    tokens_per_s: float = 0.0
    elapsed: float = 0.0
    eta: float = float("nan")
    lr: float = 0.0
    message: str = ""
    # "start" only: step (where a resumed run starts), params, device, threads, processes,
    # precision, epochs, max_steps, time_budget, total_steps
    setup: dict = field(default_factory=dict)


def snapshot(
    event: str,
    state: TrainState,
    *,
    total_steps: int,
    time_budget: float,
    lr: float,
    **kw: Any,
) -> Progress:
    """A `Progress` of `state`; the ETA extrapolates the time per step so far, capped by
    what is left of a time budget."""
    eta = float("nan")
    if state.step:
        per_step = state.elapsed / state.step
        eta = (total_steps - state.step) * per_step
        if time_budget:
            eta = min(eta, max(0.0, time_budget - state.elapsed))
    return Progress(
        event=event,
        step=state.step,
        total_steps=total_steps,
        epoch=state.epoch,
        best_val_loss=state.best_val_loss,
        best_step=state.best_step,
        elapsed=state.elapsed,
        eta=eta,
        lr=lr,
        **kw,
    )


def train_record(p: Progress) -> dict:
    """The metrics-log record of a "step" report."""
    return {
        "event": "train",
        "step": p.step,
        "epoch": p.epoch,
        "train_loss": round(p.train_loss, 5),
        "lr": p.lr,
        "tokens_per_s": round(p.tokens_per_s, 1),
        "elapsed": round(p.elapsed, 2),
    }


class MetricsLog:
    """The metrics log of rank 0 (`file` None elsewhere: the other ranks write nothing)."""

    def __init__(self, file: BinaryIO | None) -> None:
        self.file = file  # unbuffered: a failed write leaves nothing behind to fail again

    def write(self, record: dict) -> None:
        if self.file is None:
            return
        data = (json.dumps(record) + "\n").encode("utf-8")
        try:
            while data:
                data = data[self.file.write(data) :]
        except OSError as err:  # a full disk: say so in one line, like a failed checkpoint save
            raise TextrnnError(
                f"cannot write the metrics log {self.file.name}: {err.strerror or err}"
            ) from None


class Throughput:
    """Tokens per second over the steps since the last report, validations left out."""

    def __init__(self) -> None:
        self.mark: float | None = None

    def rate(self, tokens: int) -> float:
        """`tokens` processed since the last call (or `restart`); 0 on the first call."""
        now, last = time.perf_counter(), self.mark
        self.mark = now
        return tokens / (now - last) if last is not None and now > last else 0.0

    def restart(self) -> None:
        """Start timing again from now (after a validation, whose time is not training's)."""
        self.mark = time.perf_counter()
