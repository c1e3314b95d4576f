"""How a training command ends: the resume hint after an interruption, and the --json summary."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

import typer

from textrnn.engine.distributed import Dist
from textrnn.engine.state import TrainState


def exit_if_interrupted(state: TrainState, last: Path, group: Dist, command: str) -> None:
    """After a stop signal saved the last checkpoint: tell how to resume (the main process
    only) and exit 128 + the signal, as shells and schedulers expect: 130 for SIGINT
    (Ctrl-C), 143 for SIGTERM, 129 for SIGHUP.

    `command` is what resumes, e.g. "textrnn tag train"; the hint pastes into a shell as it is.
    """
    if state.stopped != "interrupted":
        return
    signum = int(state.signal or signal.SIGINT)
    launcher = " (launched with torchrun, as this run was)" if group.active else ""
    if group.main:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(
                f"textrnn: interrupted by {signal_name(signum)} at step {state.step}; "
                f"resume with: {command} --resume {shlex.quote(str(last))}{launcher}",
                file=sys.stderr,
            )
    raise typer.Exit(128 + signum)


def signal_name(signum: int) -> str:
    """The name of a signal number (15: "SIGTERM"), or "signal N" where it has none here."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


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
