"""`textrnn info CHECKPOINT`: what any checkpoint holds, from its header alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from textrnn.cli.options import JsonOut
from textrnn.engine.checkpoint import describe
from textrnn.tasks.lm import check_lm_header


def info(
    checkpoint: Annotated[Path, typer.Argument(help="Any textrnn checkpoint.")],
    json_out: JsonOut = False,
) -> None:
    """Show what a checkpoint holds: task, model, tokenizer, size, steps, best validation, corpus.

    Example: textrnn info checkpoints/input.ckpt
    """
    summary = describe(checkpoint)
    if summary["task"] == "lm":
        check_lm_header(checkpoint)  # a config that its tensors do not fit is not a usable model
    if json_out:
        print(json.dumps(summary, ensure_ascii=False))
        return
    for key, value in _flatten_summary(summary):
        print(f"{key:28} {value}")


def _flatten_summary(d: dict, prefix: str = ""):
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten_summary(value, name + ".")
        elif isinstance(value, float):
            yield name, f"{value:.4f}"
        else:
            yield name, value
