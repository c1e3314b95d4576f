"""Reading the metrics log that a training writes beside its checkpoint (`x.metrics.jsonl`).

The training loop (`engine/trainer.py`) appends one JSON object per line:

    {"event": "start", "step", "epoch", "elapsed", "tokens"}   a run starts (step 0) or resumes
    {"event": "train", "step", "epoch", "train_loss", "lr", "tokens_per_s", "elapsed", "tokens"}
                                                               every `log_every` steps
    {"event": "eval", "step", "epoch", "elapsed", "val_loss", ..., "tokens"}   each validation

`elapsed` is seconds of training (continued across resumes) and `tokens` the training
tokens seen so far. A validation holds the task's dev metrics: `val_loss` always (NaN
without a dev set), a language model's `val_ppl`/`val_bpc`, a tagger's, transliterator's
and classifier's `val_accuracy`. The best checkpoint follows `val_accuracy` where a task
reports it and `val_loss` otherwise, the first of equal values.

Training into the same `--out` again appends a new run to the same file, and resuming
from a checkpoint older than the end of the log repeats steps. A reader wants the run
that the checkpoints hold: a start record at step S drops what was logged after step S;
in logs older than start records, a step lower than the one before starts the run again.

This module reads no tensors, so that `textrnn plot` starts without torch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from textrnn.errors import DataError, UsageError
from textrnn.formats.plain import iter_lines

# Which field of a record each x axis reads.
X_FIELDS = {"step": "step", "tokens": "tokens", "time": "elapsed"}

# Dev metrics for which a larger value is better (matched by the name after "val_");
# every other metric (loss, ppl, bpc, cer) is better smaller.
HIGHER_IS_BETTER = ("accuracy", "f1", "top1", "top5", "precision", "recall")


@dataclass(frozen=True)
class MetricsLog:
    """The latest run of one metrics log."""

    name: str  # the file it was read from ("<stdin>" for standard input)
    train: tuple[dict, ...]  # {"event": "train"} records, in step order
    evals: tuple[dict, ...]  # {"event": "eval"} records, in step order


def read_metrics_log(path: str | os.PathLike) -> MetricsLog:
    """Read a metrics log file; a bad file or line raises one DataError naming it."""
    return parse_metrics_log(iter_lines(path), name=str(Path(path)))


def parse_metrics_log(lines: Iterable[str], *, name: str) -> MetricsLog:
    """The train and eval records of the latest run in `lines` (see the module docstring)."""
    records: list[dict] = []
    seen_any = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        seen_any = True
        record = _parse_record(line, f"{name}:{number}")
        event = record["event"]
        if event == "start":
            records = [r for r in records if r["step"] <= record["step"]]
        elif event in ("train", "eval"):
            if records and record["step"] < records[-1]["step"]:  # a log without start records
                records = []
            records.append(record)
        # other events: written by a later textrnn; nothing to plot here
    if not seen_any:
        raise DataError(f"{name}: empty metrics log")
    evals = tuple(r for r in records if r["event"] == "eval")
    if not evals:
        raise DataError(
            f'{name}: no validation records ({{"event": "eval"}}); '
            "the run ended before its first validation (see --eval-every)"
        )
    return MetricsLog(name, tuple(r for r in records if r["event"] == "train"), evals)


def _parse_record(line: str, where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{where}: not a JSON object ({err.msg}); is this a .metrics.jsonl file?"
        ) from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: not a JSON object but {type(record).__name__}")
    event = record.get("event")
    if not isinstance(event, str):
        raise DataError(
            f'{where}: a JSON object without an "event"; is this a .metrics.jsonl file?'
        )
    if event in ("start", "train", "eval"):
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise DataError(f'{where}: the "{event}" record has no whole "step" (got {step!r})')
    return record


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value: object) -> bool:
    return _is_number(value) and math.isfinite(value)


def dev_metrics(log: MetricsLog) -> list[str]:
    """The `val_*` metrics that some validation of `log` holds a finite value for."""
    names = dict.fromkeys(
        k for r in log.evals for k, v in r.items() if k.startswith("val_") and finite(v)
    )
    return list(names)


def higher_is_better(metric: str) -> bool:
    return metric.removeprefix("val_").endswith(HIGHER_IS_BETTER)


def choose_metric(logs: list[MetricsLog], requested: str | None = None) -> str:
    """The dev metric to show for `logs`: `requested` ("bpc" or "val_bpc"), or the one
    the training loop chose the best checkpoint by (`val_accuracy` where the logs hold
    it, else `val_loss`). Raises DataError when a log does not hold it."""
    if requested is not None:
        metric = requested if requested.startswith("val_") else f"val_{requested}"
        for log in logs:
            held = dev_metrics(log)
            if metric not in held:
                have = ", ".join(held) or "no finite dev metric"
                raise DataError(f"{log.name}: no {metric} in its validations (it holds {have})")
        return metric
    chosen = {log.name: _monitored(log) for log in logs}
    if len(set(chosen.values())) > 1:
        which = ", ".join(f"{name}: {metric}" for name, metric in chosen.items())
        raise UsageError(
            f"the runs were chosen by different dev metrics ({which}); pick one with --metric"
        )
    return next(iter(chosen.values()))


def _monitored(log: MetricsLog) -> str:
    held = dev_metrics(log)
    for metric in ("val_accuracy", "val_loss"):
        if metric in held:
            return metric
    raise DataError(f"{log.name}: its validations hold no numbers (trained without a dev set?)")


def best_eval(log: MetricsLog, metric: str) -> dict:
    """The validation with the best `metric` (the first of equal ones), as training chose it."""
    sign = -1.0 if higher_is_better(metric) else 1.0
    scored = [r for r in log.evals if finite(r.get(metric))]
    if not scored:
        raise DataError(f"{log.name}: no validation holds {metric}")
    return min(scored, key=lambda r: sign * r[metric])  # min keeps the first of ties


def curve(records: Iterable[dict], metric: str, x: str) -> tuple[list[float], list[float]]:
    """(xs, ys) of `metric` against `x` ("step", "tokens" or "time") over the records
    holding a finite value of both."""
    field = x_field(x)
    pairs = [
        (r[field], r[metric]) for r in records if finite(r.get(field)) and finite(r.get(metric))
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def x_field(x: str) -> str:
    if x not in X_FIELDS:
        raise UsageError(f"--x must be one of {', '.join(X_FIELDS)}, not {x!r}")
    return X_FIELDS[x]


def check_x(log: MetricsLog, x: str) -> None:
    """Raise DataError if the validations of `log` do not all hold the field of axis `x`."""
    field = x_field(x)
    if not all(finite(r.get(field)) for r in log.evals):
        raise DataError(
            f"{log.name}: its records hold no {field!r} (written by an older textrnn); "
            "plot against --x step or --x time"
        )
