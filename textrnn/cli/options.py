"""Options shared by several commands, declared once so that they read the same everywhere,
and the notice that an old command form prints.

The grammar of every task (lm, tag, translit, ...):
    textrnn <task> train TRAIN [--dev DEV] [--out CKPT] [--resume LAST]
    textrnn <task> predict [FILE] -c CKPT        (stdin when no FILE)
    textrnn <task> eval FILE -c CKPT
An option name has one meaning in every command: --format is always the format of the
data read, --output-format the format of what is written.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Show nothing on stderr but errors (--progress none, and no log lines).")]


class Shown(str, Enum):
    """How progress shows on stderr (see cli/display.py)."""

    auto = "auto"
    rich = "rich"
    plain = "plain"
    none = "none"


ProgressMode = Annotated[Shown, typer.Option("--progress", help="How progress shows on stderr: auto (a live display on a terminal, plain key=value lines otherwise, see the README) | rich | plain | none.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (streamed input: one object per line).")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | mps (auto: CUDA, then MPS, then CPU).")]
Threads = Annotated[int, typer.Option(help="CPU threads (0 = PyTorch's default, one per core).")]
Seed = Annotated[int | None, typer.Option(help="Random seed: the same seed gives the same result (default: 1234 when training, a new one each run when sampling).")]

# What every `train` command takes alike.
Dev = Annotated[Path | None, typer.Option("--dev", help="Development data in TRAIN's format, for validation and early stopping (default: hold out part of TRAIN).")]
Out = Annotated[Path | None, typer.Option(help="Best checkpoint; the last one goes beside it as <name>.last.ckpt.", show_default="checkpoints/<TRAIN>.ckpt")]
Resume = Annotated[Path | None, typer.Option(help="Continue exactly where this checkpoint's training stopped: a last checkpoint, or a best one with its .last.ckpt beside it. Options equal to the checkpoint's are accepted; shape, data and batch options cannot change.")]
MaxSteps = Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")]
Optimizer = Annotated[str | None, typer.Option(help="adamw | sgd (plain SGD; its own --lr 20, --clip 0.25, --weight-decay 0 unless given).", show_default="adamw; sgd for word LMs")]
TimeBudget = Annotated[float | None, typer.Option(help="Stop after this many seconds; the schedule fits the budget.")]
OldTrain = Annotated[Path | None, typer.Option("--train", hidden=True, help="The old form of TRAIN.")]

# What every `predict` and `eval` command takes alike.
Checkpoint = Annotated[Path, typer.Option("--checkpoint", "-c", help="The trained model's checkpoint.")]


def old_form(old: str, new: str) -> None:
    """One line on stderr (from the first process only): an old command form still works,
    and this is the new one."""
    if os.environ.get("RANK", "0") == "0":
        print(f"textrnn: note: {old} is now {new}", file=sys.stderr)
