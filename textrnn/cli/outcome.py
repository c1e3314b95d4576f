"""How a training command ends: the resume hint after an interruption, and the --json summary."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import typer

from textrnn.engine.distributed import Dist
from textrnn.engine.state import TrainState


def exit_if_interrupted(state: TrainState, last: Path, group: Dist, command: str) -> None:
    """After Ctrl-C or SIGTERM: tell how to resume (the main process only) and exit 130.

    `command` is what resumes, e.g. "textrnn tag train".
    """
    if state.stopped != "interrupted":
        return
    launcher = " (launched with torchrun, as this run was)" if group.active else ""
    if group.main:
        print(
            f"textrnn: interrupted at step {state.step}; resume with: {command} --resume {last}{launcher}",
            file=sys.stderr,
        )
    raise typer.Exit(130)


def best_validation(state: TrainState) -> dict:
    """The validation of the best checkpoint's step ({} when there was none)."""
    return next((h for h in state.history if h["step"] == state.best_step), {})


def summary(state: TrainState, best: Path, last: Path, metrics: Iterable[str]) -> dict:
    """The --json object: where the checkpoints went, how training ended, and the best
    validation's `metrics` (as best_<metric>)."""
    val = best_validation(state)
    return {
        "checkpoint": str(best), "last_checkpoint": str(last), "steps": state.step, "epochs": state.epoch,
        "stopped": state.stopped, "best_step": state.best_step, **{f"best_{m}": val.get(m) for m in metrics},
        "elapsed": round(state.elapsed, 2), "tokens": state.tokens,
    }  # fmt: skip
