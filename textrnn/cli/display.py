"""What the CLI shows on stderr: a live training display, and log lines.

Everything here writes to stderr and stays silent when stderr is not a terminal
or with --quiet, so stdout carries only the product.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from textrnn.engine.progress import Progress as TrainProgress


def stderr_console(quiet: bool) -> Console | None:
    """A Rich console on stderr, or None when nothing should be shown."""
    if quiet or not sys.stderr.isatty():
        return None
    return Console(stderr=True, highlight=False)


def log(console: Console | None, message: str) -> None:
    if console is not None:
        console.print(message, markup=False)


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt_rate(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def pct(x: float | None) -> str:
    """A fraction as a percentage, "-" when there is none."""
    return f"{100 * x:.2f}%" if x is not None and math.isfinite(x) else "-"


def perplexity(val: dict) -> str | None:
    """A language model's validation: loss, perplexity and bits/char (None without a finite loss)."""
    if not math.isfinite(val.get("val_loss", float("nan"))):
        return None
    return f"val {val['val_loss']:.4f} ppl {val.get('val_ppl', float('nan')):.2f} {val.get('val_bpc', float('nan')):.3f} bpc"


class TrainDisplay:
    """Live progress: step/epoch, train loss, the last validation, tokens/s, ETA.

    `describe_val` words a validation's metrics (a task's own: perplexity, dev accuracy...);
    None from it shows nothing for that validation.
    """

    def __init__(
        self, console: Console | None, describe_val: Callable[[dict], str | None] = perplexity
    ) -> None:
        self.console = console
        self.describe_val = describe_val
        self.bar: Progress | None = None
        self.task = None
        self.last_val = ""
        self.speed = 0.0

    def __enter__(self) -> TrainDisplay:
        if self.console is not None:
            self.bar = Progress(
                TextColumn("step {task.completed}/{task.total}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[stats]}"),
                console=self.console,
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("train", total=1, stats="starting")
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, p: TrainProgress) -> None:
        if self.bar is None:
            return
        if p.tokens_per_s:
            self.speed = p.tokens_per_s
        if p.event == "eval" and p.val:
            line = self.describe_val(p.val)
            if line is not None:
                self.last_val = line
                best = " (best)" if p.step == p.best_step else ""
                self.bar.console.print(f"step {p.step} epoch {p.epoch + 1}: {self.last_val}{best}", markup=False)
        if p.event == "log" and p.message:
            self.bar.console.print(p.message, markup=False)
        train = f"loss {p.train_loss:.4f}" if math.isfinite(p.train_loss) else ""
        stats = " · ".join(
            s
            for s in (
                f"epoch {p.epoch + 1}",
                train,
                self.last_val,
                f"{_fmt_rate(self.speed)} tok/s" if self.speed else "",
                f"ETA {_fmt_time(p.eta)}",
            )
            if s
        )
        if p.event != "eval" or train:
            self.bar.update(self.task, completed=p.step, total=max(p.total_steps, p.step), stats=stats)
        else:
            self.bar.update(self.task, completed=p.step, total=max(p.total_steps, p.step))
