"""peers: textrnn against the programs people use instead, at equal wall-clock time.

Two levels, each on the same text, threads and training budget:
- char: `textrnn train` (its default char model) against nanoGPT's `train_shakespeare_char`
  recipe in the CPU form its README gives, with max_iters scaled to the budget;
- word: `textrnn train --tokenizer word` against the PyTorch examples' word_language_model
  with its defaults, its epochs scaled to the budget.
How each program is run, and how the peers' lengths are fitted to the budget: peer_runs.py.

Data: two different texts (TEXTS: tiny-shakespeare, and the IIT Patna Hindi product
reviews' train text, so that no default is tuned to one text), each cut at line starts into
train (~81%), valid (~9%) and the held-out rest (~10%; 6.6% of the reviews, whose test cut
moves on until no held-out character is missing from train + valid: nanoGPT's vocabulary
is those characters; peer_runs.write_split). Every program trains on train.txt only; the peers
validate on valid.txt (nanoGPT keeps its best-val checkpoint, the word example its best
epoch and anneals on it); textrnn holds out its own validation blocks from train.txt
(`--val-fraction`, default 5%), so it trains on less text than the peers. Nobody sees the
held-out text before scoring.

Scoring: one scorer (peer_score.py) for all four models: every token of the held-out text,
cut at line starts into 16 pieces, each scored as a stream from the line break before it;
summed nats / characters of the text. The scorer is checked against `textrnn eval` on the
first textrnn char model. tokens/s counts each program's own tokens over its training time
(validation included); chars/s converts them with the held-out text's characters per token.

At one thread textrnn and its peer train side by side, one core each (as the lm_sizes sweep
that fitted the size rule ran); at two threads, one after the other.

Budgets and thread counts: `--budgets 120,600,1800 --thread-counts 1,2` (every budget at
every thread count), or chosen cells, `--cells 120x1,600x1,120x2` (default 600 s at
one thread: 40 minutes of training). --quick: the first 200,000 characters, 20 s; --tiny: the
first 30,000, 2 s, and the peers unprobed: 10 nanoGPT iterations, one epoch of the word
example (checks that the scripts run, not a measurement).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import peer_runs
from benchmarks.common import Options, Table, fmt_num, split_label
from benchmarks.peer_score import score_textrnn
from benchmarks.schema import VALUE
from textrnn.formats.plain import read_text
from textrnn.paths import data_dir

DEFAULT_BUDGETS = (600.0,)
DEFAULT_THREADS = (1,)
QUICK_CHARS = 200_000  # --quick: the start of tiny-shakespeare
TINY_CHARS = 30_000  # --tiny: a shorter start (every held-out character also in train)
TINY_LENGTHS = {"iters": 10, "epochs": 1}  # --tiny: the peers' lengths, unprobed (a faster test)
PROBE_ITERS = 30  # nanoGPT iterations of its timing probe
SIDE_BY_SIDE = 1  # at this thread count textrnn and its peer train at once, one core each
OVER_BUDGET = 1.25  # a training time this many budgets long is marked in the table
SCORER_TOLERANCE = 0.01  # nats/char between peer_score and `textrnn eval` on the same model


# The held-out slice's role at each level: no program trains on it, but textrnn's char
# defaults were chosen on (almost) this slice, the last 10% of tiny-shakespeare, in the
# 90/10 runs of the quality area before issue 20; the budget rule that sizes textrnn's
# models (issue 21) was fitted on runs scored on this same held-out slice of each text
# (benchmarks/lm_sizes.py, same split); and the word defaults (SGD, the word ladder and its
# dropouts) were chosen in side-by-side runs scored on the held-out slices of both texts.
FITTED = "the size rule for budgets was fitted on runs scored on it (lm_sizes)"
WORD_CHOSEN = "the word optimiser, sizes and dropouts were chosen on runs scored on it"
ROLES = {
    ("tinyshakespeare", "char"): "never trained on, but textrnn's char defaults were chosen on it in "
                                 f"90/10 runs, and {FITTED}",
    ("tinyshakespeare", "word"): f"never trained on, but {WORD_CHOSEN}",
    ("hindi_pud", "char"): f"never trained on, but {FITTED}",
    ("hindi_pud", "word"): f"never trained on, but {FITTED}",
    ("hindi_reviews", "char"): "never trained on, and no default or rule was chosen on this text",
    ("hindi_reviews", "word"): f"never trained on, but {WORD_CHOSEN}",
}
TEXTS = ("tinyshakespeare", "hindi_reviews")  # of peer_runs.TEXTS
TEXT_NAMES = {"tinyshakespeare": "tiny-shakespeare", "hindi_pud": "Hindi PUD sentences",
              "hindi_reviews": "Hindi product reviews"}  # fmt: skip
_HELDOUT = ("nats", "tokens", "chars", "nats_per_char", "nats_per_token", "unknown_tokens",
            "params", "model", "stride", "checkpoint_iter", "torch_threads", "command")  # fmt: skip
_RUN = ("program", "command", "steps", "epochs", "passes", "best_step", "best_epoch", "train_s",
        "wall_s", "tokens_trained", "tokens_per_s", "chars_per_s", "last_val_loss",
        "own_test_loss_per_token")  # fmt: skip
_PROBE = ("command", "step_s", "eval_s", "planned_iters", "epoch_s", "planned_epochs")
_PROGRAM = {**dict.fromkeys(_RUN, VALUE), "probe": dict.fromkeys(_PROBE, VALUE),
            "heldout": dict.fromkeys(_HELDOUT, VALUE)}  # fmt: skip
FIELDS = {  # what `run` writes (see schema.py)
    "settings": {
        **dict.fromkeys(("budgets_s", "thread_counts", "cells", "side_by_side_threads", "peers"), VALUE),
        "texts": {"*": {
            **dict.fromkeys(("corpus", "corpus_chars"), VALUE),
            "split": dict.fromkeys(("train_chars", "valid_chars", "heldout_chars", "heldout_lines",
                                    "heldout_starts_at", "valid_starts_a_line"), VALUE),
        }},
    },  # fmt: skip
    "results": [
        {
            **dict.fromkeys(
                (
                    "text",
                    "level",
                    "split",
                    "role",
                    "budget_s",
                    "threads",
                    "nats_per_char_diff",
                    "textrnn_leads",
                    "tokens_per_s_ratio",
                    "chars_per_s_ratio",
                ),
                VALUE,
            ),
            "textrnn": _PROGRAM,
            "peer": _PROGRAM,
        }
    ],  # fmt: skip
    "scorer_check": dict.fromkeys(
        ("command", "textrnn_eval_nats_per_char", "scorer_nats_per_char", "difference"), VALUE
    ),  # fmt: skip
}


def peers_dir() -> Path:
    """The peer programs: $TEXTRNN_PEERS, else `peers/` beside the reference data."""
    env = os.environ.get("TEXTRNN_PEERS")
    return Path(env) if env else data_dir().parent / "peers"


def settings(opts: Options) -> tuple[dict[str, str], list[tuple[float, int]]]:
    """The texts ({name: text}) and the (budget, threads) cells to run on each."""
    texts = {name: peer_runs.read_corpus(peer_runs.TEXTS[name]) for name in TEXTS}
    if opts.tiny:
        texts, budgets = {k: _lines_within(t, TINY_CHARS) for k, t in texts.items()}, (2.0,)
    elif opts.quick:
        texts, budgets = {k: _lines_within(t, QUICK_CHARS) for k, t in texts.items()}, (20.0,)
    else:
        budgets = DEFAULT_BUDGETS
    if opts.cells:
        return texts, list(opts.cells)
    return texts, [(b, t) for t in opts.thread_counts or DEFAULT_THREADS for b in opts.budgets or budgets]


def _lines_within(text: str, chars: int) -> str:
    """The whole lines of `text` that fit in its first `chars` characters."""
    return text[: text.rfind("\n", 0, chars) + 1]


def run(opts: Options) -> dict:
    texts, cells = settings(opts)
    fixed = TINY_LENGTHS if opts.tiny else {"iters": 0, "epochs": 0}
    peers = peers_dir()
    results, check, about = [], None, {}
    for name, text in texts.items():
        split, split_info = peer_runs.write_split(text, opts.workdir / name / "data")
        about[name] = {"corpus": peer_runs.TEXTS[name], "corpus_chars": len(text), "split": split_info}
        for budget, threads in cells:
            cell = opts.workdir / name / f"threads{threads}-budget{budget:g}"
            for level in ("char", "word"):
                mine, peer = _race(peers, split, cell, level, budget, threads, fixed)
                if check is None:
                    check = _check_scorer(mine, split)
                results.append(_pair(name, level, budget, threads, mine, peer))
    return {
        "settings": {
            "texts": about,
            "budgets_s": sorted({b for b, _ in cells}),
            "thread_counts": sorted({t for _, t in cells}),
            "cells": [list(c) for c in cells],
            "side_by_side_threads": SIDE_BY_SIDE,
            "peers": str(peers),
        },
        "results": results,
        "scorer_check": check,
    }


def _race(peers: Path, split: peer_runs.Split, cell: Path, level: str, budget: float,
          threads: int, fixed: dict) -> tuple[dict, dict]:  # fmt: skip
    """textrnn and the level's peer, trained and scored; side by side (one core each) at
    SIDE_BY_SIDE threads, one after the other otherwise."""

    def mine() -> dict:
        run = peer_runs.run_textrnn(split, cell / f"textrnn-{level}", word=level == "word",
                                    budget=budget, threads=threads)  # fmt: skip
        _score_textrnn(run, split)
        return run

    def peer() -> dict:
        if level == "char":
            folder = peer_runs.prepare_nanogpt(peers, split, cell / "nanogpt")
            return peer_runs.run_nanogpt(folder, split, budget=budget, threads=threads,
                                         probe_iters=PROBE_ITERS, iters=fixed["iters"])  # fmt: skip
        folder = peer_runs.prepare_word_lm(peers, split, cell / "word_language_model")
        return peer_runs.run_word_lm(folder, budget=budget, threads=threads, epochs=fixed["epochs"])

    if threads != SIDE_BY_SIDE or (os.cpu_count() or 1) < 2:
        return mine(), peer()
    with ThreadPoolExecutor(max_workers=2) as pool:
        ours, theirs = pool.submit(mine), pool.submit(peer)
        return ours.result(), theirs.result()


def _score_textrnn(mine: dict, split: peer_runs.Split) -> None:
    """The held-out score of a textrnn run, and its passes over train.txt in its own tokens."""
    from textrnn.tasks.lm import load

    mine["heldout"] = {
        **score_textrnn(str(split.test), mine["checkpoint"]),
        "command": "peer_score.score_textrnn(test.txt, model.ckpt), in the benchmark process",
    }
    train = read_text(split.train)
    mine["passes"] = mine["tokens_trained"] / len(
        load(mine["checkpoint"]).tokenizer.encode(train)
    )


def _pair(text: str, level: str, budget: float, threads: int, mine: dict, peer: dict) -> dict:
    """textrnn and one peer on one text at one budget and thread count, and how they compare."""
    for prog in (mine, peer):
        prog.pop("checkpoint", None)
        held = prog["heldout"]
        prog["chars_per_s"] = prog["tokens_per_s"] * held["chars"] / held["tokens"]
    diff = mine["heldout"]["nats_per_char"] - peer["heldout"]["nats_per_char"]
    return {
        "text": text,
        "level": level,
        "split": "test",
        "role": ROLES[text, level],
        "budget_s": budget,
        "threads": threads,
        "textrnn": mine,
        "peer": peer,
        "nats_per_char_diff": diff,
        "textrnn_leads": diff < 0,
        "tokens_per_s_ratio": mine["tokens_per_s"] / peer["tokens_per_s"],
        "chars_per_s_ratio": mine["chars_per_s"] / peer["chars_per_s"],
    }


def _check_scorer(mine: dict, split: peer_runs.Split) -> dict:
    """`textrnn eval` and peer_score on the same textrnn model must agree (to the rows
    `textrnn eval` starts without context: it scores 16 rows at once)."""
    cmd = [sys.executable, "-m", "textrnn", "eval", str(split.test), "-c", mine["checkpoint"], "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"textrnn eval failed ({proc.returncode}): {proc.stderr.strip()}")
    evaluated = json.loads(proc.stdout)["nats_per_char"]
    scored = mine["heldout"]["nats_per_char"]
    if abs(evaluated - scored) > SCORER_TOLERANCE:
        raise RuntimeError(
            f"the scorer disagrees with `textrnn eval`: {scored:.4f} vs {evaluated:.4f} nats/char"
        )
    return {
        "command": f"textrnn eval model.ckpt {split.test.name} --json",
        "textrnn_eval_nats_per_char": evaluated,
        "scorer_nats_per_char": scored,
        "difference": scored - evaluated,
    }


NOTES = [
    "held-out text: the last ~10% of the corpus from a line start, never trained on; nats/char = "
    "summed nats of all its tokens / its characters (code points, newlines included); it is cut "
    "at line starts into 16 pieces, each scored from the line break before it; one scorer "
    "(benchmarks/peer_score.py) for every model.",
    "word models pay nothing for spaces (textrnn's word tokens and the example's whitespace words "
    "leave them out) and do not spell out unseen words as a char model must: textrnn maps them "
    "to <unk> (one id for all), the example gives each its own id (it builds its vocabulary from "
    "train, valid and test together) whose row was never a target in training; unknown_tokens "
    "counts them.",
    "peers' lengths come from a timed probe (not counted): nanoGPT's max_iters, the word example's "
    "--epochs (nearest the budget, at least one: it saves only at the end of an epoch, so a budget "
    "shorter than one epoch gets a whole one). train_s is each program's training time "
    "(validation included); tokens/s counts each program's own tokens.",
]


def headline(result: dict) -> list[list[str]]:
    """One README row per level, budget and thread count."""
    smoke = result.get("quick") or result.get("tiny")
    rows = []
    for r in result["results"]:
        mine, peer = r["textrnn"]["heldout"], r["peer"]["heldout"]
        how = "leads" if r["textrnn_leads"] else "BEHIND"
        rows.append([
            f"{TEXT_NAMES[r.get('text', 'tinyshakespeare')]} {r['level']} LM, {r['budget_s']:g} s, {r['threads']} thread(s): "
            f"held-out nats/char, one scorer, against {r['peer']['program']}",
            f"{mine['nats_per_char']:.4f}",
            split_label(r),
            f"{r['peer']['program']}: {peer['nats_per_char']:.4f}",
            "n/a (smoke run)" if smoke else
            f"{how} by {abs(r['nats_per_char_diff']):.4f}; {r['tokens_per_s_ratio']:.2f}x tokens/s",
        ])  # fmt: skip
    return rows


def _train_time(seconds: float, budget: float) -> str:
    """Training seconds, with how far past the budget where a peer could not stop in time
    (the word example saves only at the end of an epoch)."""
    over = seconds / budget
    return fmt_num(seconds) + (f" ({over:.1f}x the budget)" if over > OVER_BUDGET else "")


def table(result: dict) -> Table:
    t = Table(
        "peers: held-out nats/char at equal wall-clock (same text, threads and budget)",
        ["text", "budget s / threads", "program", "model", "held-out nats/char", "steps / passes",
         "train s", "tokens/s", "textrnn vs peer"],
    )  # fmt: skip
    for r in result["results"]:
        for who in ("textrnn", "peer"):
            run = r[who]
            held = run["heldout"]
            versus = ""
            if who == "textrnn":
                verdict = "leads" if r["textrnn_leads"] else "BEHIND"
                versus = (
                    f"{verdict}: {r['nats_per_char_diff']:+.4f} nats/char, "
                    f"{r['tokens_per_s_ratio']:.2f}x tokens/s, {r['chars_per_s_ratio']:.2f}x chars/s"
                )
            t.rows.append([
                TEXT_NAMES[r.get("text", "tinyshakespeare")],
                f"{r['budget_s']:g} / {r['threads']}",
                f"{run['program']} ({r['level']})",
                held["model"],
                f"{held['nats_per_char']:.4f}",
                f"{run['steps']} / {fmt_num(run['passes'])}",
                _train_time(run["train_s"], r["budget_s"]),
                fmt_num(run["tokens_per_s"]),
                versus,
            ])  # fmt: skip
    check = result["scorer_check"]
    t.notes.append(
        f"scorer check: {check['scorer_nats_per_char']:.4f} (peer_score) vs "
        f"{check['textrnn_eval_nats_per_char']:.4f} (`{check['command']}`) on the first textrnn char model"
    )
    t.notes += [f"`{r[w]['command']}`" for r in result["results"] for w in ("textrnn", "peer")]
    t.notes += NOTES
    return t
