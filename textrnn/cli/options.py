"""Options shared by several commands, declared once so that they read the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Show no progress or log lines on stderr.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | mps (auto: CUDA, then MPS, then CPU).")]

# Training options that every `train` command words alike.
Resume = Annotated[Path | None, typer.Option(help="Continue exactly where this (last) checkpoint stopped.")]
MaxSteps = Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")]
TimeBudget = Annotated[float | None, typer.Option(help="Stop after this many seconds; the schedule fits the budget.")]
