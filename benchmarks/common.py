"""What every benchmark area shares: options, alternating timing, summaries, tables.

Timing rule: a speed figure is never reported alone. Each comparison runs the
textrnn subject and its reference alternately (A B, then B A, ...) in the same
process, `reps` times, and reports the median and the min-max spread of each
and of the per-repetition ratio textrnn / reference.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

SCHEMA = 2  # version of the JSON layout written by every area (2: run conditions, split labels)
READABLE_SCHEMAS = (1, 2)  # the layouts the report still renders (1: before issue 20)


@dataclass(frozen=True)
class Options:
    quick: bool = False  # smaller sizes, 2 repetitions: a sanity run, not a measurement
    tiny: bool = False  # toy shapes and repository corpora: checks that the scripts run (tests)
    reps: int = 5  # alternating repetitions per comparison
    sizes: tuple[int, ...] = ()  # scale: corpus sizes in bytes (empty = the area's default)
    budgets: tuple[float, ...] = ()  # peers: training budgets in seconds (empty = its default)
    thread_counts: tuple[int, ...] = ()  # peers: thread counts to train with (empty = its default)
    cells: tuple[tuple[float, int], ...] = ()  # peers: (budget, threads) pairs, instead of the two above
    workdir: Path = Path(".")  # temporary folder for corpora, checkpoints and caches

    def __post_init__(self) -> None:
        if self.reps < 1:
            raise ValueError(f"--reps must be at least 1, got {self.reps}")
        if any(s < 1 for s in self.sizes):
            raise ValueError(f"--sizes must be positive, got {self.sizes}")
        if any(b <= 0 for b in self.budgets):
            raise ValueError(f"--budgets must be positive, got {self.budgets}")
        if any(t < 1 for t in self.thread_counts):
            raise ValueError(f"--thread-counts must be at least 1, got {self.thread_counts}")
        if any(b <= 0 or t < 1 for b, t in self.cells):
            raise ValueError(f"--cells needs positive budgets and threads, got {self.cells}")

    def flags(self) -> str:
        """The command-line flags that reproduce these options (workdir aside)."""
        parts = []
        if self.quick:
            parts.append("--quick")
        if self.tiny:
            parts.append("--tiny")
        if self.reps != default_reps(quick=self.quick, tiny=self.tiny):
            parts.append(f"--reps {self.reps}")
        if self.budgets:
            parts.append("--budgets " + ",".join(f"{b:g}" for b in self.budgets))
        if self.thread_counts:
            parts.append("--thread-counts " + ",".join(map(str, self.thread_counts)))
        if self.cells:
            parts.append("--cells " + ",".join(f"{b:g}x{t}" for b, t in self.cells))
        return " ".join(parts)


def seconds_list(text: str) -> tuple[float, ...]:
    """'120,600,1800' -> (120.0, 600.0, 1800.0) (an argparse type: ValueError is a usage error)."""
    return tuple(float(part) for part in text.split(","))


def count_list(text: str) -> tuple[int, ...]:
    """'1,2' -> (1, 2) (an argparse type)."""
    return tuple(int(part) for part in text.split(","))


def cell_list(text: str) -> tuple[tuple[float, int], ...]:
    """'120x1,600x1,120x2' -> ((120.0, 1), (600.0, 1), (120.0, 2)) (an argparse type)."""
    cells = []
    for part in text.split(","):
        budget, threads = part.split("x")
        cells.append((float(budget), int(threads)))
    return tuple(cells)


def default_reps(*, quick: bool, tiny: bool) -> int:
    return 2 if quick or tiny else 5


def area_command(area: str, opts: Options, *extra: str) -> str:
    return " ".join(p for p in ("python -m benchmarks", area, opts.flags(), *extra) if p)


# ---- timing ------------------------------------------------------------------------------


def alternate(
    subjects: dict[str, Callable[[], float]], *, reps: int, warmup: bool = True
) -> dict[str, list[float]]:
    """Call every subject `reps` times, interleaved; each call returns one measurement.

    The order is reversed on every other repetition (A B C, C B A, ...) so that no
    subject always runs right after the same other one. With `warmup`, each subject
    runs once first, unrecorded (allocator, kernel selection, page cache).
    """
    names = list(subjects)
    if warmup:
        for name in names:
            subjects[name]()
    runs: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else reversed(names):
            runs[name].append(subjects[name]())
    return runs


def rate(count: float, fn: Callable[[], object]) -> float:
    """`count / seconds` for one call of `fn`."""
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def summarize(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def compare(
    case: str,
    unit: str,
    textrnn: list[float],
    reference: list[float],
    *,
    target: float | None = None,
    **extra: object,
) -> dict:
    """One comparison: both subjects' runs and the per-repetition ratio textrnn / reference."""
    ratio = [a / b for a, b in zip(textrnn, reference, strict=True)]
    row = {
        "case": case,
        "unit": unit,
        "textrnn": summarize(textrnn),
        "reference": summarize(reference),
        "ratio": summarize(ratio),
        "target_ratio": target,
        "meets_target": None if target is None else statistics.median(ratio) >= target,
    }
    row.update(extra)
    return row


# ---- machine and run description ------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block (e.g. TEXTRNN_CACHE)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pick(values: dict, keys: tuple[str, ...]) -> dict:
    """The named fields of a command's JSON output (those the area's schema declares)."""
    return {k: values[k] for k in keys if k in values}


# ---- quality labels ----------------------------------------------------------------------------
# Every quality figure names its split and that split's role: what else the split decided.

NEVER_SEEN = "never seen"
CHOSE_CHECKPOINT = "also chose the checkpoint by early stopping"
CHOSE_CHECKPOINT_AND_DEFAULTS = "also chose the checkpoint by early stopping, and the defaults"


def split_label(row: dict) -> str:
    """'test (never seen)' from a row's `split` and `role`."""
    return f"{row['split']} ({row['role']})"


# ---- tables ----------------------------------------------------------------------------------


@dataclass
class Table:
    """One area's figures as strings: printed with Rich and written to RESULTS.md alike."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [
            "| " + " | ".join(self.columns) + " |",
            "| " + " | ".join("---" for _ in self.columns) + " |",
        ]
        lines += [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.rows
        ]
        return "\n".join(lines)

    def rich(self):
        from rich.markup import escape
        from rich.table import Table as RichTable

        table = RichTable(title=escape(self.title), title_justify="left")
        for i, col in enumerate(self.columns):
            table.add_column(escape(col), justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*map(escape, row))
        return table


def fmt_num(x: float | None) -> str:
    """Three significant digits, thousands separated: 12,345 / 123 / 1.23 / 0.0123."""
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def fmt_stats(stats: dict | None) -> str:
    """'median [min-max]'."""
    if stats is None:
        return "-"
    return f"{fmt_num(stats['median'])} [{fmt_num(stats['min'])}-{fmt_num(stats['max'])}]"


def fmt_ratio(stats: dict | None) -> str:
    if stats is None:
        return "-"
    return f"{stats['median']:.2f}x [{stats['min']:.2f}-{stats['max']:.2f}]"


def fmt_target(row: dict) -> str:
    target = row.get("target_ratio")
    if target is None:
        return ""
    return f">= {target:g}x: {'yes' if row['meets_target'] else 'NO'}"
