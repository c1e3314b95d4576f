"""scale: `textrnn train` on synthetic corpora of growing size, watched from outside.

For each size a synthetic English-like ASCII corpus is written to a temporary folder,
then `textrnn train CORPUS --max-steps N` runs as a subprocess with its own empty
$TEXTRNN_CACHE. Polling the process and its files every 20 ms gives the phases:

- encoding starts: the cache's `*.tmp-<pid>` id file appears (after the char
  vocabulary was counted and the corpus hashed, two full passes);
- tokenized: the id file's `.json` sidecar appears (the encoding pass is done);
- training starts: the `<out>.metrics.jsonl` log is opened by the training loop.

Peak resident memory is the child's own `ru_maxrss` from `os.wait4`. Memory should
stay flat (<= 1.5 GB at 1 GB) and tokenization time grow linearly with size.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Options, Table, fmt_num
from benchmarks.schema import VALUE

DEFAULT_SIZES = (10**7, 10**8, 10**9)
QUICK_SIZES = (10**6, 10**7)
TINY_SIZES = (300_000,)
PEAK_TARGET_MB = 1500  # at 1 GB
POLL_S = 0.02

FIELDS = {  # what `run` writes (see schema.py)
    "settings": dict.fromkeys(("sizes", "max_steps", "poll_s", "commands"), VALUE),
    "results": [
        dict.fromkeys(
            ("size_bytes", "command", "generate_corpus_s", "encode_start_s", "tokenized_s",
             "train_start_s", "wall_s", "peak_rss_mb", "peak_rss_polled_mb", "tokens", "steps",
             "train_elapsed_s", "tokens_per_s"),
            VALUE,
        )  # fmt: skip
    ],
}


def sizes(opts: Options) -> tuple[int, ...]:
    if opts.sizes:
        return opts.sizes
    return TINY_SIZES if opts.tiny else QUICK_SIZES if opts.quick else DEFAULT_SIZES


def max_steps(opts: Options) -> int:
    return 3 if opts.tiny else 10 if opts.quick else 30


def run(opts: Options) -> dict:
    results = []
    commands = []
    for size in sizes(opts):
        folder = opts.workdir / f"size-{size}"
        folder.mkdir()
        try:
            results.append(_one(size, folder, opts))
            commands.append(results[-1]["command"])
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # a 1 GB corpus and its 2 GB of ids
    return {
        "settings": {
            "sizes": list(sizes(opts)),
            "max_steps": max_steps(opts),
            "poll_s": POLL_S,
            "commands": commands,
        },
        "results": results,
    }


def val_fraction(size: int) -> float:
    """About 100k validation tokens whatever the size (validation is not what is measured)."""
    return min(0.05, 10.0 ** -round(math.log10(max(size, 1) / 1e5)))


def _one(size: int, folder: Path, opts: Options) -> dict:
    corpus = folder / "corpus.txt"
    start = time.perf_counter()
    write_corpus(corpus, size)
    gen_s = time.perf_counter() - start
    args = [
        "train",
        corpus.name,
        "--max-steps",
        str(max_steps(opts)),
        "--val-fraction",
        f"{val_fraction(size):g}",
    ]
    if opts.tiny:
        args += ["--hidden", "32", "--embed", "16", "--batch-size", "8", "--seq-len", "32"]
    args += ["--out", "scale.ckpt", "--quiet", "--json"]
    cache = folder / "cache"
    watched = watch(
        [sys.executable, "-m", "textrnn", *args],
        cwd=folder,
        env={**os.environ, "TEXTRNN_CACHE": str(cache)},
        tokens_dir=cache / "tokens",
        metrics=folder / "scale.metrics.jsonl",
    )
    out = json.loads((folder / "stdout.txt").read_text(encoding="utf-8"))
    marks = watched["marks"]
    return {
        "size_bytes": size,
        "command": "textrnn " + " ".join(args).replace(corpus.name, f"corpus-{_label(size)}.txt"),
        "generate_corpus_s": round(gen_s, 2),
        "encode_start_s": marks.get("encode_start"),
        "tokenized_s": marks.get("tokenized"),
        "train_start_s": marks.get("train_start"),
        "wall_s": watched["wall_s"],
        "peak_rss_mb": watched["peak_rss_mb"],
        "peak_rss_polled_mb": watched["peak_rss_polled_mb"],
        "tokens": out["tokens"],
        "steps": out["steps"],
        "train_elapsed_s": out["elapsed"],
        "tokens_per_s": out["tokens"] / out["elapsed"] if out["elapsed"] else None,
    }


def watch(argv: list[str], *, cwd: Path, env: dict, tokens_dir: Path, metrics: Path) -> dict:
    """Run `argv` to completion, recording when its phases begin and its peak memory."""
    marks: dict[str, float] = {}
    polled_peak = 0
    with (cwd / "stdout.txt").open("wb") as stdout, (cwd / "stderr.txt").open("wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        while True:
            # wait4 (not Popen.poll) reaps the child itself and returns its own rusage.
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            now = round(time.perf_counter() - start, 3)
            if pid:
                break
            polled_peak = max(polled_peak, _status_kb(proc.pid, "VmHWM"))
            if (
                "encode_start" not in marks
                and tokens_dir.is_dir()
                and any(tokens_dir.glob("*.tmp-*"))
            ):
                marks["encode_start"] = now
            if "tokenized" not in marks and tokens_dir.is_dir() and any(tokens_dir.glob("*.json")):
                marks["tokenized"] = now
            if "train_start" not in marks and metrics.exists():
                marks["train_start"] = now
            time.sleep(POLL_S)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = (cwd / "stderr.txt").read_text(encoding="utf-8", errors="replace").strip()
        raise RuntimeError(f"{' '.join(argv[2:])} failed ({proc.returncode}): {err[-2000:]}")
    return {
        "marks": marks,
        "wall_s": now,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "peak_rss_polled_mb": round(polled_peak / 1024, 1),
    }


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


# ---- the synthetic corpus ---------------------------------------------------------------------


def write_corpus(path: Path, size: int, *, seed: int = 0) -> None:
    """`size` bytes of English-like ASCII text: a seeded 1 MB block of random lines, repeated."""
    block = _block(seed).encode("ascii")
    with path.open("wb") as f:
        left = size
        while left > 0:
            piece = block[:left]
            f.write(piece)
            left -= len(piece)
    with path.open("r+b") as f:  # end on a line break like a text file
        f.seek(size - 1)
        f.write(b"\n")


def _block(seed: int, *, target: int = 1_000_000) -> str:
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    weights = 1.0 / np.arange(1, 27) ** 0.8
    lengths = rng.integers(1, 10, size=5000)
    words = ["".join(rng.choice(letters, size=n, p=weights / weights.sum())) for n in lengths]
    zipf = 1.0 / np.arange(1, len(words) + 1)
    zipf /= zipf.sum()
    lines, total = [], 0
    while total < target:
        ws = [words[i] for i in rng.choice(len(words), size=int(rng.integers(4, 14)), p=zipf)]
        line = " ".join(ws).capitalize() + rng.choice([".", ",", "?", "!", ";", ":"]) + "\n"
        lines.append(line)
        total += len(line)
    return "".join(lines)


def _label(size: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


# ---- report ---------------------------------------------------------------------------------------


def table(result: dict) -> Table:
    t = Table(
        f"scale: `textrnn train --max-steps {result['settings']['max_steps']}` on synthetic char corpora",
        ["size", "encoding starts s", "encode pass s", "tokenized s", "marginal s/MB", "training starts s",
         "tokens/s", "peak RSS MB", "wall s"],
    )  # fmt: skip
    previous = None
    for r in result["results"]:
        encode = _minus(r["tokenized_s"], r["encode_start_s"])
        marginal = None
        if (
            previous is not None
            and r["tokenized_s"] is not None
            and previous["tokenized_s"] is not None
        ):
            extra_mb = (r["size_bytes"] - previous["size_bytes"]) / 1e6
            marginal = (
                (r["tokenized_s"] - previous["tokenized_s"]) / extra_mb if extra_mb > 0 else None
            )
        t.rows.append(
            [_label(r["size_bytes"]), fmt_num(r["encode_start_s"]), fmt_num(encode), fmt_num(r["tokenized_s"]),
             fmt_num(marginal), fmt_num(r["train_start_s"]), fmt_num(r["tokens_per_s"]), fmt_num(r["peak_rss_mb"]),
             fmt_num(r["wall_s"])]
        )  # fmt: skip
        previous = r
    big = [r for r in result["results"] if r["size_bytes"] >= 10**9]
    if big:
        peak = max(r["peak_rss_mb"] for r in big)
        verdict = "yes" if peak <= PEAK_TARGET_MB else "NO"
        t.notes.append(
            f"peak RSS at >= 1 GB: {fmt_num(peak)} MB (target <= {PEAK_TARGET_MB} MB: {verdict})"
        )
    t.notes += [
        "marginal s/MB = extra time to tokenized per extra MB from the previous size: constant when "
        "tokenization is linear (start-up cancels out).",
        "plot (written beside this file when matplotlib is installed: `pip install -e '.[plot]'`): "
        "![peak memory and time against corpus size](scale.png)",
        "times are seconds since the process was launched (interpreter and torch import included, "
        "about 2 s); tokenize = launch -> encoded ids on disk.",
        "tokens/s = tokens / training seconds from `textrnn train --json` (first step included).",
        "--val-fraction is chosen per size so that the final validation scores about 100k tokens.",
        "synthetic corpus: seeded random English-like ASCII words (Zipf frequencies) in lines.",
    ]
    return t


def headline(result: dict) -> list[list[str]]:
    rows = result["results"]
    big, small = rows[-1], rows[0]
    marginal = None
    if len(rows) > 1 and big["tokenized_s"] is not None and rows[-2]["tokenized_s"] is not None:
        marginal = (big["tokenized_s"] - rows[-2]["tokenized_s"]) / ((big["size_bytes"] - rows[-2]["size_bytes"]) / 1e6)
    linear = f", {marginal:.3f} s/MB" if marginal is not None else ""
    verdict = "met" if big["peak_rss_mb"] <= PEAK_TARGET_MB else "NOT met"
    return [[
        f"`textrnn train` on a {_label(big['size_bytes'])} corpus: peak memory, time to tokenized",
        f"{fmt_num(big['peak_rss_mb'])} MB, {fmt_num(big['tokenized_s'])} s{linear} "
        f"(sizes {_label(small['size_bytes'])} to {_label(big['size_bytes'])})",
        "",
        f"target <= {PEAK_TARGET_MB / 1000:g} GB at 1 GB",
        verdict if big["size_bytes"] >= 10**9 else "n/a (no 1 GB run)",
    ]]  # fmt: skip


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def plot(result: dict, folder: Path) -> None:
    """Peak memory and time to tokenize against corpus size, if matplotlib is available."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = result["results"]
    mb = [r["size_bytes"] / 1e6 for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(mb, [r["peak_rss_mb"] for r in rows], "o-")
    ax1.set(xscale="log", xlabel="corpus MB", ylabel="peak RSS MB", title="peak memory")
    ax1.set_ylim(0, max(PEAK_TARGET_MB, *(r["peak_rss_mb"] for r in rows)) * 1.1)
    ax1.axhline(PEAK_TARGET_MB, color="grey", linestyle=":", label=f"target {PEAK_TARGET_MB} MB")
    ax1.legend()
    ax2.plot(mb, [r["tokenized_s"] or float("nan") for r in rows], "o-", label="tokenized")
    ax2.plot(mb, [r["train_start_s"] or float("nan") for r in rows], "s--", label="training starts")
    ax2.set(
        xscale="log", yscale="log", xlabel="corpus MB", ylabel="seconds since launch", title="time"
    )
    ax2.legend()
    fig.tight_layout()
    fig.savefig(folder / "scale.png", dpi=100)
    plt.close(fig)
