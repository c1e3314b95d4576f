"""Options shared by several commands, declared once so that they read the same everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Show no progress or log lines on stderr.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda | mps (auto: CUDA, then MPS, then CPU).")]
