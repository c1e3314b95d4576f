"""quality: held-out nats/char of `textrnn train` on tiny-shakespeare with a 600 s budget.

The text is split by characters: the first 90% is the training file, the last 10%
the held-out file (both written to a temporary folder). Then, exactly as a user
would, `textrnn train train.txt --time-budget 600` (plus --quiet/--out/--json) and
`textrnn eval CKPT heldout.txt --json`. The figure to beat comes from the project
issue: a plain 2x512 LSTM recipe reached 1.46 nats/char in 600 s on the reference
machine; the target is <= 1.42. --quick trains for 10 s: a smoke test, not a figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Options, Table, fmt_num
from textrnn.formats.plain import read_text
from textrnn.paths import data_file

REPO = Path(__file__).resolve().parent.parent
TARGET = 1.42  # nats/char on the held-out 10%
ISSUE_REFERENCE = 1.46  # plain 2x512 LSTM recipe, 600 s, as measured in the project issue


def budget(opts: Options) -> int:
    return 3 if opts.tiny else 10 if opts.quick else 600


def run(opts: Options) -> dict:
    source = REPO / "corpora/english.txt" if opts.tiny else data_file("tinyshakespeare/input.txt")
    text = read_text(source)
    cut = int(len(text) * 0.9)
    (opts.workdir / "train.txt").write_text(text[:cut], encoding="utf-8", newline="")
    (opts.workdir / "heldout.txt").write_text(text[cut:], encoding="utf-8", newline="")
    train_cmd = [
        "train",
        "train.txt",
        "--time-budget",
        str(budget(opts)),
        "--quiet",
        "--out",
        "model.ckpt",
        "--json",
    ]
    eval_cmd = ["eval", "model.ckpt", "heldout.txt", "--json"]
    start = time.perf_counter()
    trained = _textrnn(train_cmd, opts.workdir)
    train_wall = time.perf_counter() - start
    evaluated = _textrnn(eval_cmd, opts.workdir)
    smoke = opts.quick or opts.tiny
    return {
        "settings": {
            "corpus": str(source.name),
            "train_chars": cut,
            "heldout_chars": len(text) - cut,
            "time_budget_s": budget(opts),
            "commands": ["textrnn " + " ".join(train_cmd), "textrnn " + " ".join(eval_cmd)],
        },
        "results": {
            "nats_per_char": evaluated["nats_per_char"],
            "bits_per_char": evaluated["bits_per_char"],
            "target_nats_per_char": TARGET,
            "meets_target": None if smoke else evaluated["nats_per_char"] <= TARGET,
            "issue_reference_nats_per_char": ISSUE_REFERENCE,
            "train_wall_s": round(train_wall, 1),
            "train": trained,
            "eval": {k: v for k, v in evaluated.items() if k != "file"},
        },
        "notes": [
            "the training subprocess uses torch's default thread count (the CLI sets none).",
            f"reference: {ISSUE_REFERENCE} nats/char for a plain 2x512 LSTM recipe in 600 s, as reported "
            "in the project issue (not re-measured in this run).",
        ],
    }


def _textrnn(args: list[str], cwd: Path) -> dict:
    """Run `textrnn ARGS` (this interpreter's textrnn) in `cwd`; return its JSON output."""
    proc = subprocess.run(
        [sys.executable, "-m", "textrnn", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"textrnn {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
        )
    return json.loads(proc.stdout)


def table(result: dict) -> Table:
    r = result["results"]
    smoke = result.get("quick") or result.get("tiny")
    verdict = "n/a (smoke run)" if smoke else ("yes" if r["meets_target"] else "NO")
    train = r["train"]
    t = Table(
        f"quality: held-out nats/char after `textrnn train --time-budget {result['settings']['time_budget_s']}`",
        ["measure", "value"],
    )
    t.rows += [
        ["held-out nats/char", f"{r['nats_per_char']:.4f}"],
        ["held-out bits/char", f"{r['bits_per_char']:.4f}"],
        [f"target <= {r['target_nats_per_char']}", verdict],
        ["plain 2x512 recipe, 600 s (issue)", f"{r['issue_reference_nats_per_char']}"],
        ["steps / epochs / stopped", f"{train['steps']} / {train['epochs']} / {train['stopped']}"],
        [
            "training time (budgeted) / wall s",
            f"{fmt_num(train['elapsed'])} / {fmt_num(r['train_wall_s'])}",
        ],
        [
            "best validation bits/char (train split)",
            f"{train['best_val_bpc']:.4f}" if train.get("best_val_bpc") else "-",
        ],
    ]
    t.notes += [f"`{c}`" for c in result["settings"]["commands"]]
    return t
