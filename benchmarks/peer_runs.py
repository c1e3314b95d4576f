"""The programs of the peers benchmark, each run through its own command line.

textrnn, nanoGPT (`../shared/peers/nanogpt`) and the PyTorch examples' word language model
(`../shared/peers/word_language_model`) each train in a separate process, in a scratch copy
of their folder (both peers write data and checkpoints beside themselves), with the same
training text, the same thread count (OMP_NUM_THREADS and MKL_NUM_THREADS; the LM command
of textrnn sets no threads of its own) and the same wall-clock budget. textrnn takes the
budget itself (`--time-budget`). The peers have no such option, so each is first timed by a
short probe run on this CPU with those threads, and then given the length that fills the
budget: nanoGPT's `max_iters` (its cosine schedule decays over them), the word example's
`--epochs` (the epoch count whose time is nearest the budget, at least one: it saves a model
only at the end of an epoch). Every trained model is then scored by `peer_score.py`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textrnn.errors import DataError
from textrnn.formats.plain import read_text
from textrnn.paths import data_file

HERE = Path(__file__).resolve().parent
SCORER = HERE / "peer_score.py"

# nanoGPT's CPU recipe from its README, on top of config/train_shakespeare_char.py; only the
# number of iterations (and the warm-up, for runs under 1000 iterations) follows the budget.
NANOGPT_CPU = (
    "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64",
    "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0",
)  # fmt: skip
NANOGPT_TOKENS_PER_ITER = 12 * 64  # batch_size x block_size
NANOGPT_EVAL_INTERVAL = 250  # the recipe's; it keeps the checkpoint with the best val loss
NANOGPT_WARMUP = 100  # the recipe's warm-up iterations
WORD_LM_BATCH = 20  # the word example's default --batch_size (for counting its tokens)
WORD_LM_BPTT = 35  # and its default --bptt


@dataclass(frozen=True)
class Split:
    """The three files every program reads: train, valid and the held-out test text."""

    train: Path
    valid: Path
    test: Path


# The texts the peers and lm_sizes areas train on: tiny-shakespeare (1.1 MB of English
# verse); the sentences of the Hindi PUD treebank (its `# text =` lines: 90k characters of
# Devanagari news and Wikipedia text; lm_sizes); and the IIT Patna Hindi product reviews'
# train text (357k characters, 76k words; peers), different from tiny-shakespeare in script,
# size and genre and large enough that a tenth of it (7,600 words) scores a word model.
TEXTS = {
    "tinyshakespeare": "tinyshakespeare/input.txt",
    "hindi_pud": "ud_hindi_pud/hi_pud-ud-first800.conllu",
    "hindi_reviews": "iitp_hindi_product_reviews/hi-train.csv",
}


def read_corpus(source: str) -> str:
    """A text of TEXTS: the file as it is, a treebank's sentences or a CSV's `text` column,
    one per line."""
    raw = read_text(data_file(source))
    if source.endswith(".conllu"):
        return "".join(line[len("# text = "):] + "\n" for line in raw.splitlines()
                       if line.startswith("# text = "))  # fmt: skip
    if source.endswith(".csv"):  # label,text
        return "".join(row[1].replace("\n", " ") + "\n" for row in csv.reader(io.StringIO(raw)))
    return raw


def write_split(text: str, folder: Path) -> tuple[Split, dict]:
    """Cut `text` into train (about 81%), valid (9%) and test (the last ~10%, from a line start).

    nanoGPT's prepare.py makes its own cut: it writes the first 90% of its input.txt as
    train.bin, the rest as val.bin. Its input is train + valid, so the cut between train
    and valid is placed exactly where that 90% falls, and all three programs read the same
    train, valid and test text. The test cut is the first line start at or after 90% of the
    text whose held-out text has no character that train + valid lack (nanoGPT's vocabulary
    is the characters of its input.txt), preferring, within the next 2% of the text, one for
    which that inner cut is also a line start (tiny-shakespeare has one); otherwise valid
    starts inside a line.
    """
    if not text.endswith("\n"):
        text += "\n"
    cut = first_cut = _first_cut(text)
    while cut < len(text) * 0.92 and not _is_line_start(text, int(cut * 0.9)):
        cut = _line_start(text, cut + 1)
    if cut >= len(text) * 0.92 or not _is_line_start(text, int(cut * 0.9)):
        cut = first_cut
    first = int(cut * 0.9)
    if cut >= len(text) or first == 0:
        raise DataError("the corpus has too few lines to split into train, valid and test")
    folder.mkdir(parents=True, exist_ok=True)
    split = Split(folder / "train.txt", folder / "valid.txt", folder / "test.txt")
    for path, part in zip(
        (split.train, split.valid, split.test),
        (text[:first], text[first:cut], text[cut:]),
        strict=True,
    ):
        path.write_text(part, encoding="utf-8", newline="")
    info = {
        "train_chars": first,
        "valid_chars": cut - first,
        "heldout_chars": len(text) - cut,
        "heldout_lines": text[cut:].count("\n"),
        "heldout_starts_at": cut,
        "valid_starts_a_line": _is_line_start(text, first),
    }
    return split, info


def _first_cut(text: str) -> int:
    """The first line start at or after 90% of `text` after which every character is one
    seen before it (len(text) if none)."""
    cut = _line_start(text, int(len(text) * 0.9))
    while cut < len(text) and not set(text[cut:]) <= set(text[:cut]):
        cut = _line_start(text, cut + 1)
    return cut


def _is_line_start(text: str, i: int) -> bool:
    return i == 0 or text[i - 1] == "\n"


def _line_start(text: str, i: int) -> int:
    """The first line start at or after position `i` (len(text) if none)."""
    if _is_line_start(text, i):
        return i
    j = text.find("\n", i)
    return len(text) if j < 0 else j + 1


# ---- processes ---------------------------------------------------------------------------------


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED="1",  # the probes read the peers' progress lines as they come
        PYTHONUTF8="1",  # the peers open text files with the locale's encoding
    )
    return env


def run(cmd: list[str], cwd: Path, threads: int, timeout: float) -> tuple[str, float]:
    """Run `cmd` in `cwd` with `threads`; its stdout and wall-clock seconds. RuntimeError
    (with the end of its stderr) when it fails."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env=thread_env(threads), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}) in {cwd}: {proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout, time.perf_counter() - start


def shown(cmd: list[str], threads: int) -> str:
    """The command as a user would type it (python for sys.executable)."""
    words = ["python" if w == sys.executable else w for w in cmd]
    return f"OMP_NUM_THREADS={threads} " + " ".join(words)


def scratch_copy(source: Path, folder: Path) -> Path:
    """A writable copy of a peer's folder (the shared one may be read-only)."""
    if not (source / "LICENSE").is_file():
        raise DataError(f"peer program {source} not found; set TEXTRNN_PEERS to ../shared/peers")
    shutil.copytree(
        source, folder, copy_function=shutil.copyfile, ignore=shutil.ignore_patterns("__pycache__")
    )
    for root, dirs, _ in os.walk(folder):
        for d in dirs:
            os.chmod(Path(root) / d, 0o755)
    os.chmod(folder, 0o755)
    shutil.copyfile(SCORER, folder / SCORER.name)
    return folder


def score(program: str, args: list[str], cwd: Path, threads: int) -> dict:
    """Run peer_score.py inside a peer's folder; its JSON (the last line of its stdout: the
    peer's model code may print too)."""
    cmd = [sys.executable, SCORER.name, program, *args]
    out, _ = run(cmd, cwd, threads, timeout=3600)
    return {**json.loads(out.strip().splitlines()[-1]), "command": shown(cmd, threads)}


# ---- textrnn -----------------------------------------------------------------------------------


def run_textrnn(split: Split, folder: Path, *, word: bool, budget: float, threads: int) -> dict:
    """`textrnn train train.txt --time-budget B` with its defaults (the word tokenizer for
    the word level); it holds out its own validation blocks from train.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    train = os.path.relpath(split.train, folder)
    cmd = [sys.executable, "-m", "textrnn", "train", train, "--time-budget", f"{budget:g}",
           *(["--tokenizer", "word"] if word else []), "--out", "model.ckpt", "--quiet", "--json"]  # fmt: skip
    out, wall = run(cmd, folder, threads, timeout=budget * 3 + 600)
    trained = json.loads(out)
    return {
        "program": "textrnn",
        "command": shown(cmd, threads).replace("python -m textrnn", "textrnn"),
        "checkpoint": str(folder / "model.ckpt"),
        "steps": trained["steps"],
        "epochs": trained["epochs"],  # completed passes over its training blocks
        "best_step": trained["best_step"],
        "train_s": trained["elapsed"],
        "wall_s": round(wall, 1),
        "tokens_trained": trained["tokens"],
        "tokens_per_s": trained["tokens"] / max(trained["elapsed"], 1e-9),
    }


# ---- nanoGPT -----------------------------------------------------------------------------------

_ITER = re.compile(r"^iter (\d+): loss [-\d.naninf]+, time ([\d.]+)ms", re.M)
_EVAL = re.compile(
    r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)\n(saving checkpoint)?", re.M
)


def nanogpt_command(iters: int, *, out_dir: str = "out-shakespeare-char") -> list[str]:
    interval = min(NANOGPT_EVAL_INTERVAL, iters)
    extra = [f"--eval_interval={interval}"] if interval != NANOGPT_EVAL_INTERVAL else []
    warmup = min(NANOGPT_WARMUP, iters // 10)
    extra += [f"--warmup_iters={warmup}"] if warmup != NANOGPT_WARMUP else []
    extra += [f"--out_dir={out_dir}"] if out_dir != "out-shakespeare-char" else []
    return [sys.executable, "train.py", "config/train_shakespeare_char.py", *NANOGPT_CPU,
            f"--max_iters={iters}", f"--lr_decay_iters={iters}", *extra]  # fmt: skip


def prepare_nanogpt(peers: Path, split: Split, folder: Path) -> Path:
    """A scratch nanoGPT whose prepare.py has made train.bin/val.bin from train + valid
    (checked: they decode to exactly our train and valid text)."""
    try:
        import requests  # noqa: F401  (prepare.py imports it, though it downloads nothing here)
    except ImportError:
        raise DataError(
            "nanoGPT's data/shakespeare_char/prepare.py imports requests: pip install -e .[dev]"
        ) from None
    folder = scratch_copy(peers / "nanogpt", folder)
    data = folder / "data" / "shakespeare_char"
    train, valid = (p.read_text(encoding="utf-8") for p in (split.train, split.valid))
    (data / "input.txt").write_text(train + valid, encoding="utf-8", newline="")
    run([sys.executable, "data/shakespeare_char/prepare.py"], folder, 1, timeout=600)
    import pickle

    with open(data / "meta.pkl", "rb") as f:
        itos = pickle.load(f)["itos"]
    for name, text in (("train.bin", train), ("val.bin", valid)):
        ids = np.fromfile(data / name, dtype=np.uint16)
        if "".join(itos[int(i)] for i in ids) != text:
            raise RuntimeError(f"nanoGPT's {name} is not our {name[:-4]} text: the split moved")
    return folder


def run_nanogpt(
    folder: Path, split: Split, *, budget: float, threads: int, probe_iters: int, iters: int = 0
) -> dict:
    """nanoGPT's CPU char recipe with max_iters set from a timed probe to fill the budget
    (or `iters` of them, unprobed: --tiny)."""
    probe = None
    if not iters:
        probe_cmd = nanogpt_command(probe_iters, out_dir="out-probe")
        out, _ = run(probe_cmd, folder, threads, timeout=600)
        times = [float(t) / 1000 for _, t in _ITER.findall(out)]
        step_s = float(np.mean(times[2:probe_iters]))  # iteration 0 holds an eval, 1 warms up
        eval_s = max(0.0, times[probe_iters] - step_s)  # and so does the last
        # budget = iters * step_s + (iters / interval + 1) * eval_s
        fit = (budget - eval_s) / (step_s + eval_s / NANOGPT_EVAL_INTERVAL)
        if fit >= NANOGPT_EVAL_INTERVAL:  # evaluations (and saves) fall on multiples of 250
            fit = round(fit / NANOGPT_EVAL_INTERVAL) * NANOGPT_EVAL_INTERVAL
        iters = max(2, int(fit))
        probe = {"command": shown(probe_cmd, threads), "step_s": step_s, "eval_s": eval_s,
                 "planned_iters": iters}  # fmt: skip
    cmd = nanogpt_command(iters)
    out, wall = run(cmd, folder, threads, timeout=budget * 3 + 600)
    times = [float(t) / 1000 for _, t in _ITER.findall(out)]
    evals = _EVAL.findall(out)
    saved = [int(step) for step, _, _, save in evals if save]
    if not saved:
        raise RuntimeError(
            f"nanoGPT saved no checkpoint (its val loss never improved): {out[-500:]}"
        )
    scored = score("nanogpt", [os.path.relpath(split.test, folder)], folder, os.cpu_count() or 1)
    train_tokens = len(np.fromfile(folder / "data/shakespeare_char/train.bin", dtype=np.uint16))
    return {
        "program": "nanogpt",
        "command": shown(cmd, threads),
        **({"probe": probe} if probe else {}),
        "steps": len(times),
        "passes": len(times) * NANOGPT_TOKENS_PER_ITER / train_tokens,
        "best_step": saved[-1],
        "train_s": round(sum(times), 2),
        "wall_s": round(wall, 1),
        "tokens_trained": len(times) * NANOGPT_TOKENS_PER_ITER,
        "tokens_per_s": len(times) * NANOGPT_TOKENS_PER_ITER / max(sum(times), 1e-9),
        "last_val_loss": float(evals[-1][2]),
        "heldout": scored,
    }


# ---- the PyTorch examples' word language model ---------------------------------------------------

_BATCHES = re.compile(r"\|\s*epoch\s+(\d+)\s*\|\s*(\d+)/\s*(\d+) batches.*ms/batch\s+([\d.]+)")
_EPOCH_END = re.compile(
    r"end of epoch\s+(\d+)\s*\|\s*time:\s*([\d.]+)s\s*\|\s*valid loss\s+([\d.]+)"
)
_TEST = re.compile(r"End of training \| test loss\s+([\d.]+)")


def prepare_word_lm(peers: Path, split: Split, folder: Path) -> Path:
    folder = scratch_copy(peers / "word_language_model", folder)
    (folder / "data").mkdir()
    for path in (split.train, split.valid, split.test):
        shutil.copyfile(path, folder / "data" / path.name)
    return folder


def word_lm_tokens(path: Path) -> int:
    """Tokens of a file as the word example's Corpus counts them: words plus one per line."""
    with open(path, encoding="utf-8") as f:
        return sum(len(line.split()) + 1 for line in f)


def probe_word_lm(folder: Path, threads: int) -> tuple[list[str], float]:
    """Seconds per epoch of the word example, from its own progress lines: the second report
    of ms/batch (the first one also holds the start-up), or the end of a short epoch."""
    cmd = [sys.executable, "main.py", "--data", "data", "--epochs", "1", "--log-interval", "5"]
    proc = subprocess.Popen(
        cmd, cwd=folder, env=thread_env(threads), stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    reports, epoch_s = [], None
    try:
        for line in proc.stdout:
            if m := _EPOCH_END.search(line):
                epoch_s = float(m[2])
                break
            if m := _BATCHES.search(line):
                reports.append((int(m[3]), float(m[4]) / 1000))
                if len(reports) == 2:
                    batches, batch_s = reports[1]
                    train = word_lm_tokens(folder / "data/train.txt")
                    valid = word_lm_tokens(folder / "data/valid.txt")
                    epoch_s = batches * batch_s * (1 + valid / train)  # and the valid pass
                    break
    finally:
        proc.kill()
        proc.wait()
        (folder / "model.pt").unlink(missing_ok=True)
    if epoch_s is None:
        raise RuntimeError(f"the word example's probe printed no timing: {' '.join(cmd)}")
    return cmd, epoch_s


def run_word_lm(folder: Path, *, budget: float, threads: int, epochs: int = 0) -> dict:
    """The word example with its defaults and the epoch count that fits the budget (or
    `epochs`, unprobed: --tiny)."""
    probe, expected_s = None, budget
    if not epochs:
        probe_cmd, epoch_s = probe_word_lm(folder, threads)
        epochs = max(1, round(budget / epoch_s))
        probe = {"command": shown(probe_cmd, threads), "epoch_s": epoch_s, "planned_epochs": epochs}
        expected_s = max(budget, epochs * epoch_s)
    cmd = [sys.executable, "main.py", "--data", "data", "--epochs", str(epochs)]
    out, wall = run(cmd, folder, threads, timeout=expected_s * 3 + 600)
    ends = [(int(e), float(t), float(v)) for e, t, v in _EPOCH_END.findall(out)]
    best = min(ends, key=lambda e: e[2])  # the epoch whose model.pt it kept (best valid loss)
    rows = word_lm_tokens(folder / "data/train.txt") // WORD_LM_BATCH  # its batchify()
    per_epoch = (rows - 1) * WORD_LM_BATCH  # targets per epoch
    train_s = sum(t for _, t, _ in ends)
    scored = score(
        "word_lm", ["data/test.txt", "--data", "data", "--checkpoint", "model.pt"],
        folder, os.cpu_count() or 1,
    )  # fmt: skip
    test = _TEST.search(out)
    return {
        "program": "word_language_model",
        "command": shown(cmd, threads),
        **({"probe": probe} if probe else {}),
        "steps": len(ends) * -(-(rows - 1) // WORD_LM_BPTT),
        "epochs": len(ends),
        "passes": len(ends) * per_epoch / word_lm_tokens(folder / "data/train.txt"),
        "best_epoch": best[0],
        "train_s": round(train_s, 2),
        "wall_s": round(wall, 1),
        "tokens_trained": len(ends) * per_epoch,
        "tokens_per_s": len(ends) * per_epoch / max(train_s, 1e-9),
        "own_test_loss_per_token": float(test[1]) if test else None,
        "heldout": scored,
    }
