"""What the CLI shows on stderr: log lines, and the progress of long commands in the form
`--progress` asks for:
- `rich`: a live display (the default when stderr is a terminal);
- `plain`: one `key=value` line now and then (the default otherwise: a log file, nohup,
  cron, CI, a notebook, `tee`), stable enough to grep (see `plain_line`);
- `none`: no progress (log lines and errors still show).
`--quiet` shows errors only. Everything here writes to stderr, so stdout carries only
the product.

Plain lines start with a word that names their kind, then `key=value` fields in a fixed
order (README: "Progress"): `start` (what a training runs on), `progress` (every ~30 s),
`eval` (each validation), `done` (the summary, with the keys of `--json`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from textrnn.engine.progress import Progress as TrainProgress
from textrnn.errors import UsageError

T = TypeVar("T")

PROGRESS_MODES = ("auto", "rich", "plain", "none")
PLAIN_EVERY = 30.0  # seconds between plain progress lines (each validation adds its own)
SHOW_AFTER = 5.0  # seconds a predict, eval or tokenize runs before it shows progress


def progress_mode(choice, *, quiet: bool, product_shows: bool = False) -> str:
    """The form progress takes: "rich", "plain" or "none".

    auto: rich when stderr is a terminal, plain lines otherwise (quiet is asked for, never
    the default); none when `product_shows` (a command's output on a terminal is its own
    progress). --quiet is none, and contradicts an explicit rich or plain.
    """
    choice = getattr(choice, "value", choice)  # an Enum of the option
    if choice not in PROGRESS_MODES:
        raise UsageError(f"--progress must be one of {', '.join(PROGRESS_MODES)}, got {choice!r}")
    if quiet:
        if choice in ("rich", "plain"):
            raise UsageError(f"--quiet and --progress {choice} contradict each other")
        return "none"
    if choice != "auto":
        return choice
    if product_shows:
        return "none"
    return "rich" if _is_terminal(sys.stderr) else "plain"


def _is_terminal(stream) -> bool:
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


def stderr_console(quiet: bool = False, *, live: bool = False) -> Console | None:
    """A Rich console on stderr for log lines (and, `live`, a live display even where
    stderr is no terminal: --progress rich asked for it); None with --quiet."""
    if quiet:
        return None
    return Console(stderr=True, highlight=False, force_terminal=True if live else None)


def log(console: Console | None, message: str) -> None:
    """A log line on stderr (none when `console` is None: --quiet), never wrapped."""
    if console is not None:
        console.print(message, markup=False, highlight=False, soft_wrap=True)


# ---- plain lines -----------------------------------------------------------------------------


def plain_line(kind: str, fields: dict[str, object]) -> str:
    """`kind key=value ...` in the order of `fields`. A value is a number, a word, `-` for
    none (or not finite), `yes`/`no`, or a JSON string in double quotes where it holds
    whitespace or a quote (or is empty)."""
    return " ".join([kind, *(f"{k}={_plain(v)}" for k, v in fields.items())])


def _plain(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else "-"
    text = str(value)
    if not text or any(c.isspace() or c == '"' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def write_plain(kind: str, fields: dict[str, object]) -> None:
    print(plain_line(kind, fields), file=sys.stderr, flush=True)


# ---- words ------------------------------------------------------------------------------------


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


def _round(x: float, digits: int = 1) -> float | None:
    return round(x, digits) if math.isfinite(x) else None


# ---- training ---------------------------------------------------------------------------------


def start_fields(about: dict, setup: dict, extras: dict) -> dict:
    """The `start` line: what the CLI knows (`about`: task, train, dev, out, resume), what
    the loop reports (`setup`: step, params, device, threads, processes, precision,
    optimizer, lr, epochs, max_steps, time_budget, total_steps, and the task's model in words where it
    gives them), then the task's own (`extras`)."""
    keys = ("step", "params", "device", "threads", "processes", "precision", "optimizer", "lr", "epochs", "max_steps",
            "time_budget", "total_steps", "model")  # fmt: skip
    return {**about, **{k: setup.get(k) for k in keys}, **extras}


def start_words(fields: dict, extras: dict) -> str:
    """The `start` fields in words, for the live display."""
    f = fields
    dev = f" (dev {f['dev']})" if f.get("dev") else ""
    resumed = f", resumed from {f['resume']} at step {f['step']}" if f.get("resume") else ""
    more = "".join(f", {k.replace('_', ' ')} {v}" for k, v in extras.items())
    processes = f", {f['processes']} processes" if (f.get("processes") or 1) > 1 else ""
    limit = f"up to {f['total_steps']} steps"
    if f.get("time_budget"):
        limit += f" or {f['time_budget']:g} s"
    model = f"\nmodel: {f['model']}" if f.get("model") else ""
    optimizer = f", {f['optimizer']} lr {f['lr']:g}" if f.get("optimizer") else ""
    return (f"training {f['task']} on {f['train']}{dev}{more} -> {f['out']}{resumed}\n"
            f"{f['params']:,} parameters on {f['device']} ({f['threads']} threads, {f['precision']}"
            f"{optimizer}{processes}); {limit}{model}")  # fmt: skip


class LiveDisplay:
    """Rich live progress: step/epoch, train loss, the last validation, tokens/s, ETA.

    `describe_val` words a validation's metrics (a task's own: perplexity, dev accuracy...);
    None from it shows nothing for that validation.
    """

    def __init__(
        self,
        console: Console,
        *,
        about: dict,
        extras: dict,
        describe_val: Callable[[dict], str | None] = perplexity,
    ) -> None:
        self.console, self.about, self.extras = console, about, extras
        self.describe_val = describe_val
        self.bar: Progress | None = None
        self.task = None
        self.last_val = ""
        self.speed = 0.0

    def __enter__(self) -> LiveDisplay:
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
        if p.event == "start":
            self._print(start_words(start_fields(self.about, p.setup, self.extras), self.extras))
        if p.tokens_per_s:
            self.speed = p.tokens_per_s
        if p.event == "eval" and p.val:
            line = self.describe_val(p.val)
            if line is not None:
                self.last_val = line
                best = " (best)" if p.step == p.best_step else ""
                self._print(f"step {p.step} epoch {p.epoch + 1}: {self.last_val}{best}")
        if p.event == "log" and p.message:
            self._print(p.message)
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
        total = max(p.total_steps, p.step)
        if p.event == "step":
            self.bar.update(self.task, completed=p.step, total=total, stats=stats)
        else:
            self.bar.update(self.task, completed=p.step, total=total)

    def _print(self, text: str) -> None:
        self.bar.console.print(text, markup=False, highlight=False, soft_wrap=True)


class PlainDisplay:
    """Plain progress lines: `start` once, `eval` per validation, `progress` on the first
    report and then at most every PLAIN_EVERY seconds; messages as they are."""

    def __init__(self, *, about: dict, extras: dict) -> None:
        self.about, self.extras = about, extras
        self.reported = False  # whether a progress line was written (the first is at once)
        self.last_line = 0.0  # when the last line was written

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __call__(self, p: TrainProgress) -> None:
        if p.event == "start":
            self._write("start", start_fields(self.about, p.setup, self.extras))
        elif p.event == "log" and p.message:
            print(p.message, file=sys.stderr, flush=True)
        elif p.event == "eval":
            self._write("eval", {
                "step": p.step, "epoch": p.epoch + 1, **p.val, "best": p.step == p.best_step,
                "best_step": p.best_step, "elapsed": _round(p.elapsed),
            })  # fmt: skip
        elif p.event == "step":
            if self.reported and time.monotonic() - self.last_line < PLAIN_EVERY:
                return
            self.reported = True
            self._write("progress", {
                "step": p.step, "total_steps": p.total_steps, "epoch": p.epoch + 1,
                "train_loss": p.train_loss, "lr": p.lr, "tokens_per_s": round(p.tokens_per_s) or None,
                "elapsed": _round(p.elapsed), "eta": _round(p.eta),
            })  # fmt: skip

    def _write(self, kind: str, fields: dict) -> None:
        write_plain(kind, fields)
        self.last_line = time.monotonic()


class NoDisplay:
    """--progress none: training shows nothing (log lines still do)."""

    def __enter__(self) -> NoDisplay:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __call__(self, p: TrainProgress) -> None:
        pass


def train_display(
    mode: str,
    console: Console | None,
    *,
    about: dict,
    extras: dict,
    describe_val: Callable[[dict], str | None] = perplexity,
) -> LiveDisplay | PlainDisplay | NoDisplay:
    """The display of a training in `mode` (see `progress_mode`)."""
    if mode == "rich" and console is not None:
        return LiveDisplay(console, about=about, extras=extras, describe_val=describe_val)
    if mode == "plain":
        return PlainDisplay(about=about, extras=extras)
    return NoDisplay()


def show_summary(mode: str, console: Console | None, summary: dict, words: str) -> None:
    """How a training ended: the `done` line (plain: the --json summary's keys), or `words`
    (the live display); nothing with --progress none."""
    if mode == "plain":
        write_plain("done", summary)
    elif mode == "rich":
        log(console, words)


# ---- other long commands ----------------------------------------------------------------------


class Ticker:
    """Progress of a command that may run long (predict, eval, tokenize train): nothing for
    the first SHOW_AFTER seconds (a small input shows nothing), then a live count (rich) or
    a `progress` line every PLAIN_EVERY seconds and a `done` line at the end (plain).

    Call it with the count done so far (and the total, when known): `ticker(done, total)`.
    """

    def __init__(self, mode: str, console: Console | None, *, unit: str, total: int | None = None) -> None:
        self.mode, self.console, self.unit, self.total = mode, console, unit, total
        self.started = time.monotonic()
        self.count = 0
        self.shown: float | None = None  # when the last line (or the live display) was shown
        self.bar: Progress | None = None
        self.task = None

    def __enter__(self) -> Ticker:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
        elif self.mode == "plain" and self.shown is not None and exc[0] is None:
            write_plain("done", {"count": self.count, "unit": self.unit, "elapsed": self._elapsed()})

    def __call__(self, done: int, total: int | None = None) -> None:
        self.count, self.total = done, total if total is not None else self.total
        if self.mode == "none":
            return
        now = time.monotonic()
        if now - self.started < SHOW_AFTER:
            return
        if self.mode == "rich" and self.console is not None:
            self._live()
        elif self.mode == "plain" and (self.shown is None or now - self.shown >= PLAIN_EVERY):
            rate = self.count / max(now - self.started, 1e-9)
            eta = (self.total - self.count) / rate if self.total and rate else None
            write_plain("progress", {
                "count": self.count, "total": self.total, "unit": self.unit, "per_s": round(rate, 1),
                "elapsed": self._elapsed(), "eta": None if eta is None else round(eta, 1),
            })  # fmt: skip
            self.shown = now

    def _live(self) -> None:
        if self.bar is None:
            self.bar = Progress(
                TextColumn("{task.completed} " + self.unit),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[rate]}"),
                console=self.console,
                transient=True,  # the product stays; its progress goes
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("work", total=self.total, rate="")
        rate = self.count / max(time.monotonic() - self.started, 1e-9)
        self.bar.update(self.task, completed=self.count, total=self.total, rate=f"{_fmt_rate(rate)} {self.unit}/s")

    def _elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)


def ticker(progress, *, quiet: bool, unit: str, total: int | None = None, product_shows: bool = False) -> Ticker:
    """The Ticker of a command's --progress and --quiet (see `progress_mode`)."""
    mode = progress_mode(progress, quiet=quiet, product_shows=product_shows)
    live = getattr(progress, "value", progress) == "rich"
    return Ticker(mode, stderr_console(quiet, live=live), unit=unit, total=total)


def counting(items: Iterable[T], tick: Ticker, *, size: Callable[[T], int] = lambda item: 1) -> Iterator[T]:
    """`items` as they come, `tick` told how many (or how much, by `size`) went by."""
    done = 0
    for item in items:
        done += size(item)
        tick(done)
        yield item
