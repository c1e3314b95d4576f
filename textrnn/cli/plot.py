"""`textrnn plot RUN.metrics.jsonl [MORE...]`: training curves from the metrics logs that
training writes, as an image (`-o curves.png|.svg|.pdf`, with matplotlib) or as a text
chart on stdout.

Reading the logs (which run, which dev metric, which validation was best) lives in
`textrnn.engine.metrics_log`; this module only draws.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from textrnn.cli.io import interactive, stdin_lines
from textrnn.cli.options import JsonOut, Quiet
from textrnn.engine.metrics_log import (
    MetricsLog,
    best_eval,
    check_x,
    choose_metric,
    curve,
    finite,
    higher_is_better,
    parse_metrics_log,
    read_metrics_log,
)
from textrnn.errors import TextrnnError, UsageError
from textrnn.files import write_atomically

IMAGE_FORMATS = (".png", ".svg", ".pdf")
IMAGE_SIZE = (800, 480)  # pixels (at DPI dots per inch for .svg and .pdf)
DPI = 100
GLYPHS = "ox+#%&@="  # one per run in the text chart
BEST, TRAIN = "*", "."  # the best validation, and train-loss dots (text chart)


class XAxis(str, Enum):
    step = "step"
    tokens = "tokens"
    time = "time"


@dataclass(frozen=True)
class Run:
    """One log to draw: its label, records and best validation."""

    label: str
    log: MetricsLog
    best: dict


def plot(
    logs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Metrics logs written by training (<out>.metrics.jsonl); stdin if none.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write an image (.png, .svg, .pdf; needs matplotlib)."),
    ] = None,
    x: Annotated[XAxis, typer.Option("--x", help="What the curves run along.")] = XAxis.step,
    metric: Annotated[
        str | None,
        typer.Option(
            help="Dev metric to draw, e.g. val_bpc (default: the one training chose the best by)."
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="A run's name in the legend, once per log, in order."),
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(help="WIDTHxHEIGHT: pixels for an image (800x480), characters for text."),
    ] = None,
    title: Annotated[str | None, typer.Option(help="A title above the chart.")] = None,
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Draw train and dev curves of one or more training runs, the best validation marked.

    Without -o, a text chart goes to stdout; --json prints each run's best validation.

    Examples: textrnn plot checkpoints/english.metrics.jsonl;
    textrnn plot a.metrics.jsonl b.metrics.jsonl --x time -o curves.png
    """
    if output is not None and output.suffix.lower() not in IMAGE_FORMATS:
        raise UsageError(f"-o {output}: the image must be a .png, .svg or .pdf file")
    read = [_read(path) for path in logs] if logs else [_read_stdin()]
    names = _labels(logs or [Path("<stdin>")], label)
    chosen = choose_metric(read, metric)
    for log in read:
        check_x(log, x.value)
    runs = [Run(name, log, best_eval(log, chosen)) for name, log in zip(names, read, strict=True)]
    if output is not None:
        width, height = _size(size, default=IMAGE_SIZE, least=(100, 100))
        image = draw_image(runs, chosen, x.value, fmt=output.suffix[1:].lower(), size=(width, height),
                           title=title)  # fmt: skip
        try:
            write_atomically(output, image)
        except OSError as err:
            raise TextrnnError(f"cannot write {output}: {err.strerror or err}") from None
        if not quiet:
            print(
                f"textrnn: wrote {output} ({chosen} against {x.value}, {_count(len(runs), 'run')})",
                file=sys.stderr,
            )
    if json_out:
        print(json.dumps(_summary(runs, chosen, x.value)))
    elif output is None:
        columns = min(shutil.get_terminal_size((80, 24)).columns, 100)
        width, height = _size(size, default=(columns, 18), least=(30, 8))
        print("\n".join(text_chart(runs, chosen, x.value, width=width, height=height, title=title)))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _read(path: Path) -> MetricsLog:
    return _read_stdin() if str(path) == "-" else read_metrics_log(path)


def _read_stdin() -> MetricsLog:
    if interactive():
        raise UsageError("give a metrics log (RUN.metrics.jsonl), or pipe one to stdin")
    return parse_metrics_log(stdin_lines(), name="<stdin>")


def _labels(paths: list[Path], given: list[str] | None) -> list[str]:
    """--label values, else each file's name without `.metrics.jsonl` (its path where two clash)."""
    if given:
        if len(given) != len(paths):
            raise UsageError(f"give one --label per log ({len(paths)} logs, {len(given)} labels)")
        return given
    names = [p.name.removesuffix(".metrics.jsonl") if p.name.endswith(".metrics.jsonl") else p.name
             for p in paths]  # fmt: skip
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def _size(text: str | None, *, default: tuple[int, int], least: tuple[int, int]) -> tuple[int, int]:
    if text is None:
        return default
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise UsageError(f"--size {text}: expected WIDTHxHEIGHT, e.g. {default[0]}x{default[1]}")
    if int(width) < least[0] or int(height) < least[1] or max(int(width), int(height)) > 10_000:
        raise UsageError(
            f"--size {text}: out of range (at least {least[0]}x{least[1]}, at most 10000x10000)"
        )
    return int(width), int(height)


def _summary(runs: list[Run], metric: str, x: str) -> dict:
    return {
        "metric": metric, "higher_is_better": higher_is_better(metric), "x": x,
        "runs": [{"label": r.label, "file": r.log.name, "validations": len(r.log.evals),
                  "best": r.best, "last": r.log.evals[-1]} for r in runs],
    }  # fmt: skip


# ---- axes -------------------------------------------------------------------------


def _x_unit(runs: list[Run], x: str) -> tuple[str, float]:
    """The x axis's name and the divisor of its values (time in s, min or h)."""
    if x != "time":
        return ("training tokens" if x == "tokens" else "step"), 1.0
    records = [r for run in runs for r in (*run.log.train, *run.log.evals)]
    longest = max((r["elapsed"] for r in records if finite(r.get("elapsed"))), default=0.0)
    if longest >= 3 * 3600:
        return "training time (h)", 3600.0
    if longest >= 10 * 60:
        return "training time (min)", 60.0
    return "training time (s)", 1.0


def _series(run: Run, metric: str, x: str, scale: float) -> tuple[tuple, tuple, tuple]:
    """(train xs, train losses), (dev xs, dev values), (best x, best value) of a run."""
    tx, ty = curve(run.log.train, "train_loss", x)
    dx, dy = curve(run.log.evals, metric, x)
    bx, by = curve([run.best], metric, x)
    return ([v / scale for v in tx], ty), ([v / scale for v in dx], dy), (bx[0] / scale, by[0])


def _title(metric: str, axis: str) -> str:
    better = "higher" if higher_is_better(metric) else "lower"
    return f"{metric} against {axis} ({better} is better)"


def _legend(run: Run, metric: str) -> str:
    b = run.best
    return f"{run.label}: best {metric} {_num(b[metric])} at step {b['step']} (epoch {b.get('epoch', '?')})"


def _num(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def _tick(value: float) -> str:
    if value == int(value) and abs(value) < 100_000:
        return str(int(value))
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


# ---- text ---------------------------------------------------------------------------


def text_chart(runs: list[Run], metric: str, x: str, *, width: int, height: int,
               title: str | None = None) -> list[str]:  # fmt: skip
    """The curves as lines of plain characters: one glyph per run's dev curve, train
    loss as dots where it shares the dev metric's unit (val_loss), the best points as *."""
    axis, scale = _x_unit(runs, x)
    with_train = metric == "val_loss"
    drawn = []  # (glyph, xs, ys): train dots first, so that dev curves and best points cover them
    bests = []
    for i, run in enumerate(runs):
        train, dev, best = _series(run, metric, x, scale)
        if with_train:
            drawn.insert(0, (TRAIN, *train))
        drawn.append((GLYPHS[i % len(GLYPHS)], *dev))
        bests.append(best)
    xs = [v for _, vx, _ in drawn for v in vx]
    ys = [v for _, _, vy in drawn for v in vy]
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    ticks = {0: _num(hi), (height - 1) // 2: _num((hi + lo) / 2), height - 1: _num(lo)}
    margin = max(len(t) for t in ticks.values()) + 1
    cols = width - margin - 1
    x0, x1 = min(xs), max(xs)
    grid = [[" "] * cols for _ in range(height)]

    def col(v: float) -> int:
        return 0 if x1 == x0 else round((v - x0) / (x1 - x0) * (cols - 1))

    def row(v: float) -> int:
        return round((hi - v) / (hi - lo) * (height - 1))

    for glyph, vx, vy in drawn:
        for c, v in _columns(vx, vy, col):
            grid[row(v)][c] = glyph
    for bx, by in bests:
        grid[row(by)][col(bx)] = BEST
    lines = [title or _title(metric, axis)]
    lines += [
        f"{ticks.get(r, ''):>{margin - 1}} |{''.join(grid[r]).rstrip()}" for r in range(height)
    ]
    lines.append(" " * margin + "+" + "-" * cols)
    left, right = _tick(x0), _tick(x1)
    gap = max(1, cols - len(left) - len(right) - len(axis))
    lines.append(
        " " * (margin + 1) + left + " " * (gap // 2) + axis + " " * (gap - gap // 2) + right
    )
    lines += [f"  {GLYPHS[i % len(GLYPHS)]} {_legend(run, metric)}" for i, run in enumerate(runs)]
    if with_train:
        lines.append(f"  {TRAIN} train loss")
    lines.append(f"  {BEST} best validation")
    return lines


def _columns(xs: list[float], ys: list[float], col) -> list[tuple[int, float]]:
    """(column, value) along the polyline through the points: every column between two
    points gets the interpolated value, so that a few validations still draw a line."""
    points = [(col(a), b) for a, b in zip(xs, ys, strict=True)]
    out = points[:1]
    for (c0, v0), (c1, v1) in zip(points, points[1:], strict=False):
        out += [(c, v0 + (v1 - v0) * (c - c0) / (c1 - c0)) for c in range(c0 + 1, c1 + 1)]
    return out


# ---- images -------------------------------------------------------------------------


def draw_image(runs: list[Run], metric: str, x: str, *, fmt: str, size: tuple[int, int],
               title: str | None = None) -> bytes:  # fmt: skip
    """The curves as an image file's bytes (png, svg or pdf): dev curves solid, train loss
    faint (on the same axes for val_loss, above them for any other metric), best points as stars."""
    try:
        from matplotlib.figure import Figure  # an optional extra: imported only to draw
        from matplotlib.lines import Line2D
    except ImportError:
        raise TextrnnError(
            f"writing a .{fmt} image needs matplotlib: pip install 'textrnn[plot]'"
        ) from None
    axis, scale = _x_unit(runs, x)
    together = metric == "val_loss"
    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    panels = fig.subplots(1 if together else 2, 1, sharex=True, squeeze=False)[:, 0]
    loss_ax, dev_ax = panels[0], panels[-1]
    for i, run in enumerate(runs):
        (tx, ty), (dx, dy), (bx, by) = _series(run, metric, x, scale)
        colour = f"C{i % 10}"
        loss_ax.plot(tx, ty, color=colour, linewidth=1, alpha=0.4 if together else 0.9)
        dev_ax.plot(
            dx,
            dy,
            color=colour,
            linewidth=1.8,
            marker="o",
            markersize=3,
            label=_legend(run, metric),
        )
        dev_ax.plot([bx], [by], color=colour, marker="*", markersize=15, markeredgecolor="black",
                    linestyle="none", zorder=5)  # fmt: skip
    handles, _ = dev_ax.get_legend_handles_labels()
    style = [
        Line2D(
            [],
            [],
            color="black",
            marker="*",
            markersize=10,
            linestyle="none",
            label="best validation",
        )
    ]
    if together:
        style.insert(0, Line2D([], [], color="grey", alpha=0.4, label="train loss (faint)"))
        loss_ax.set_ylabel("loss (nats per token)")
    else:
        loss_ax.set_ylabel("train loss")
        dev_ax.set_ylabel(metric)
    dev_ax.legend(handles=handles + style, fontsize="small")
    dev_ax.set_xlabel(axis)
    for ax in panels:
        ax.grid(True, alpha=0.3)
    fig.suptitle(title or _title(metric, axis))
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt)
    return buffer.getvalue()
