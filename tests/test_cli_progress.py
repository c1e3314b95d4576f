"""Progress that fits where it goes (`--progress auto|rich|plain|none`, cli/display.py).

Off a terminal (a log file, nohup, CI) training writes plain `key=value` lines to stderr:
`start`, `progress`, `eval`, `done`; on a terminal, a live display; `--quiet` nothing.
The runs whose stderr is a file or a terminal are real processes (`python -m textrnn`),
with stderr redirected to a file, or to a pseudo-terminal; the rest call
`textrnn.cli.main` in this process.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

import textrnn.cli.display
from textrnn.cli import main
from textrnn.formats.conllu import load_sentences, write_sentences

REPO = Path(__file__).resolve().parent.parent
LM = ["train", "corpus.txt", "--hidden", "16", "--layers", "1", "--embed", "16", "--batch-size", "4",
      "--seq-len", "16", "--max-steps", "45", "--eval-every", "20", "--out", "m.ckpt"]  # fmt: skip
TAG = ["tag", "train", "train.conllu", "--dev", "dev.conllu", "--word-dim", "16", "--char-dim", "8",
       "--char-hidden", "8", "--hidden", "16", "--layers", "1", "--batch-size", "8", "--max-steps", "25",
       "--eval-every", "10", "--out", "m.ckpt"]  # fmt: skip
TRANSLIT = ["translit", "train", "train.tsv", "--dev", "dev.tsv", "--embed", "16", "--hidden", "16",
            "--dec-hidden", "16", "--batch-size", "16", "--max-steps", "25", "--eval-every", "10",
            "--out", "m.ckpt"]  # fmt: skip
KINDS = ("start", "progress", "eval", "done")
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse(line: str) -> tuple[str, dict[str, str]]:
    """A plain line as (kind, {key: value}), values as written (JSON strings decoded)."""
    kind, _, rest = line.partition(" ")
    fields = {k: json.loads(v) if v.startswith('"') else v for k, v in FIELD.findall(rest)}
    assert " ".join(f"{k}={v}" for k, v in FIELD.findall(rest)) == rest, f"not key=value: {line!r}"
    return kind, fields


def plain_lines(stderr: str) -> list[tuple[str, dict[str, str]]]:
    return [parse(line) for line in stderr.splitlines() if line.split(" ", 1)[0] in KINDS]


def env(folder: Path) -> dict[str, str]:
    return {**os.environ, "TEXTRNN_CACHE": str(folder / "cache"), "OMP_NUM_THREADS": "1", "TERM": "xterm"}


def run_to_file(args: list[str], folder: Path) -> tuple[int, str, str]:
    """`python -m textrnn ARGS` with stderr redirected to a file, as `... 2>log` does."""
    with (folder / "stderr.log").open("w") as log:
        res = subprocess.run(
            [sys.executable, "-m", "textrnn", *args], cwd=folder, env=env(folder),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True, timeout=300,
        )  # fmt: skip
    return res.returncode, res.stdout, (folder / "stderr.log").read_text()


def run_on_terminal(args: list[str], folder: Path) -> tuple[int, str, str]:
    """`python -m textrnn ARGS` with stderr on a pseudo-terminal (stdout a pipe)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))  # 200 columns
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the terminal's last writer went away
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        res = subprocess.run(
            [sys.executable, "-m", "textrnn", *args], cwd=folder, env=env(folder),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, timeout=300,
        )  # fmt: skip
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
    return res.returncode, res.stdout.decode(), b"".join(chunks).decode(errors="replace")


def run_here(args: list[str], folder: Path, monkeypatch) -> tuple[int, str, str]:
    """`textrnn ARGS` through `textrnn.cli.main` in this process, in `folder`."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv("TEXTRNN_CACHE", str(folder / "cache"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def lm_folder(tmp_path) -> Path:
    (tmp_path / "corpus.txt").write_text((REPO / "corpora" / "english.txt").read_text("utf-8"), "utf-8")
    return tmp_path


@pytest.fixture(scope="module")
def tag_folder(shared_data, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tag")
    train = load_sentences(shared_data("ud_english_ewt/en_ewt-ud-train.conllu"), keep_rows=True)
    dev = load_sentences(shared_data("ud_english_ewt/en_ewt-ud-dev.conllu"), keep_rows=True)
    write_sentences(folder / "train.conllu", train[:200])
    write_sentences(folder / "dev.conllu", dev[:50])
    return folder


@pytest.fixture(scope="module")
def translit_folder(shared_data, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("translit")
    for name, every in (("train", 100), ("dev", 40)):
        rows = shared_data(f"dakshina_hi/hi.translit.sampled.{name}.tsv").read_text("utf-8")
        (folder / f"{name}.tsv").write_text("\n".join(rows.splitlines()[::every]) + "\n", "utf-8")
    return folder


# ---- training, stderr to a file ---------------------------------------------------------------------


def check_plain_training(stderr: str, stdout: str, *, task: str, steps: int) -> list:
    """A training's plain lines: a start line first, progress and eval lines, and a done
    line last that holds the --json summary (stdout: that JSON and nothing else)."""
    lines = plain_lines(stderr)
    kinds = [kind for kind, _ in lines]
    assert kinds[0] == "start" and kinds[-1] == "done", stderr
    assert "progress" in kinds and "eval" in kinds, stderr
    start = lines[0][1]
    assert start["task"] == task and start["out"] == "m.ckpt" and start["resume"] == "-"
    assert int(start["params"]) > 0 and start["device"] == "cpu" and int(start["threads"]) >= 1
    assert start["precision"] in ("fp32", "bf16") and start["max_steps"] == str(steps)
    assert int(start["total_steps"]) == steps
    progress = next(f for k, f in lines if k == "progress")
    assert list(progress) == ["step", "total_steps", "epoch", "train_loss", "lr", "tokens_per_s", "elapsed", "eta"]
    assert float(progress["train_loss"]) > 0 and float(progress["eta"]) >= 0
    evals = [f for k, f in lines if k == "eval"]
    assert [e["step"] for e in evals][-1] == str(steps)
    assert all(e["best"] in ("yes", "no") and "val_loss" in e for e in evals)
    done = lines[-1][1]
    summary = json.loads(stdout)
    assert list(done) == list(summary), "the done line has the --json summary's keys, in order"
    assert done["checkpoint"] == summary["checkpoint"] == "m.ckpt" and done["steps"] == str(steps)
    assert done["stopped"] == "max_steps" and done["best_step"] == str(summary["best_step"])
    return lines


def test_lm_train_to_a_file_writes_start_progress_eval_and_done_lines(lm_folder):
    code, stdout, stderr = run_to_file([*LM, "--json"], lm_folder)
    assert code == 0, stderr
    lines = check_plain_training(stderr, stdout, task="lm", steps=45)
    start = lines[0][1]
    assert start["train"] == "corpus.txt" and start["dev"] == "-" and start["tokenizer"] == "char"
    evals = [f for k, f in lines if k == "eval"]
    assert [e["step"] for e in evals] == ["20", "40", "45"]
    assert list(evals[0]) == ["step", "epoch", "val_loss", "val_ppl", "val_bpc", "best", "best_step", "elapsed"]
    # the first report at once, then at most one every 30 s: one here
    assert sum(kind == "progress" for kind, _ in lines) == 1
    assert len(stderr.splitlines()) == len(lines)  # nothing else to say about this run


def test_quiet_and_progress_none_write_nothing_to_the_file(lm_folder):
    code, stdout, stderr = run_to_file([*LM, "--quiet", "--json"], lm_folder)
    assert code == 0 and stderr == "" and json.loads(stdout)["steps"] == 45
    code, stdout, stderr = run_to_file([*LM, "--out", "n.ckpt", "--progress", "none"], lm_folder)
    assert code == 0 and stderr == "" and stdout == ""


def test_tag_train_to_a_file_writes_plain_lines_and_a_long_predict_too(tag_folder, monkeypatch):
    code, stdout, stderr = run_to_file([*TAG, "--json"], tag_folder)
    assert code == 0, stderr
    lines = check_plain_training(stderr, stdout, task="tag", steps=25)
    assert lines[0][1]["column"] == "upos" and lines[0][1]["dev"] == "dev.conllu"
    assert all("val_accuracy" in f for k, f in lines if k == "eval")

    (tag_folder / "text.txt").write_text("I saw her duck .\nThe cat sat .\n" * 50, "utf-8")
    monkeypatch.setattr(textrnn.cli.display, "SHOW_AFTER", 0.0)  # as if it took long
    code, out, err = run_here(["tag", "predict", "text.txt", "-c", "m.ckpt", "--read-ahead", "10"], tag_folder, monkeypatch)
    assert code == 0, err
    assert len(out.splitlines()) == 100 and all("/" in line for line in out.splitlines())  # the product alone
    lines = plain_lines(err)
    assert lines[0][0] == "progress" and lines[0][1]["unit"] == "sentences"
    assert lines[-1][0] == "done" and lines[-1][1]["count"] == "100"


def test_translit_train_to_a_file_writes_plain_lines(translit_folder):
    code, stdout, stderr = run_to_file([*TRANSLIT, "--json"], translit_folder)
    assert code == 0, stderr
    lines = check_plain_training(stderr, stdout, task="translit", steps=25)
    assert lines[0][1]["direction"] == "to-native"
    assert all("val_cer" in f for k, f in lines if k == "eval")


# ---- training on a terminal ---------------------------------------------------------------------------


def test_on_a_terminal_auto_is_live_and_plain_stays_plain(lm_folder):
    code, stdout, shown = run_on_terminal([*LM, "--json"], lm_folder)
    assert code == 0, shown
    assert "\x1b[" in shown and "step 45/45" in shown  # the live display draws
    assert not plain_lines(shown)
    assert "training lm on corpus.txt" in shown and "done (max_steps) after 45 steps" in shown
    assert json.loads(stdout)["steps"] == 45  # stdout: the JSON alone

    code, stdout, shown = run_on_terminal([*LM, "--out", "p.ckpt", "--progress", "plain"], lm_folder)
    assert code == 0, shown
    assert "\x1b[" not in shown and stdout == ""
    kinds = [k for k, _ in plain_lines(shown)]
    assert kinds[0] == "start" and "eval" in kinds and kinds[-1] == "done"


# ---- training in this process: the interval, the options ------------------------------------------


def test_plain_progress_lines_follow_the_interval(lm_folder, monkeypatch):
    monkeypatch.setattr(textrnn.cli.display, "PLAIN_EVERY", 0.0)  # every report
    code, _, err = run_here([*LM, "--max-steps", "80", "--eval-every", "100"], lm_folder, monkeypatch)
    assert code == 0, err
    assert [f["step"] for k, f in plain_lines(err) if k == "progress"] == ["20", "40", "60", "80"]
    monkeypatch.setattr(textrnn.cli.display, "PLAIN_EVERY", 1e9)  # the first report only
    code, _, err = run_here([*LM, "--max-steps", "80", "--eval-every", "100", "--out", "b.ckpt"], lm_folder, monkeypatch)
    assert [f["step"] for k, f in plain_lines(err) if k == "progress"] == ["20"]


def test_quiet_contradicts_an_explicit_progress(lm_folder, monkeypatch):
    for mode in ("plain", "rich"):
        code, out, err = run_here([*LM, "-q", "--progress", mode], lm_folder, monkeypatch)
        assert code == 2 and out == "" and err.startswith("textrnn: error: --quiet and --progress")
    code, _, err = run_here([*LM, "--progress", "loud"], lm_folder, monkeypatch)
    assert code == 2 and "--progress" in err


# ---- other long commands --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lm")
    (folder / "corpus.txt").write_text((REPO / "corpora" / "english.txt").read_text("utf-8"), "utf-8")
    res = subprocess.run([sys.executable, "-m", "textrnn", *LM, "-q"], cwd=folder, env=env(folder),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return folder


def test_a_long_eval_or_tokenize_shows_progress_a_short_one_does_not(lm_model, monkeypatch):
    code, out, err = run_here(["eval", "corpus.txt", "-c", "m.ckpt", "--json", "--progress", "plain"], lm_model, monkeypatch)
    assert code == 0 and err == "" and json.loads(out)["tokens"] > 0  # seconds: nothing shown
    monkeypatch.setattr(textrnn.cli.display, "SHOW_AFTER", 0.0)  # as if it took long
    code, out, err = run_here(["eval", "corpus.txt", "-c", "m.ckpt", "--json", "--progress", "plain"], lm_model, monkeypatch)
    assert code == 0, err
    lines = plain_lines(err)
    assert [k for k, _ in lines] == ["progress", "done"], err
    tokens = json.loads(out)["tokens"]  # stdout: the metrics alone
    assert lines[0][1]["unit"] == "tokens" and int(lines[0][1]["total"]) == tokens
    assert lines[-1][1]["count"] == str(tokens)
    code, out, err = run_here(["eval", "corpus.txt", "-c", "m.ckpt", "--json", "-q"], lm_model, monkeypatch)
    assert code == 0 and err == ""

    size = (lm_model / "corpus.txt").stat().st_size
    code, out, err = run_here(["tokenize", "train", "corpus.txt", "--kind", "word", "--out", "w.json", "--progress", "plain"],
                              lm_model, monkeypatch)  # fmt: skip
    assert code == 0 and out == "", err
    lines = plain_lines(err)
    assert lines[0][1]["unit"] == "bytes" and lines[0][1]["total"] == str(size) and lines[-1] == (
        "done", {"count": str(size), "unit": "bytes", "elapsed": lines[-1][1]["elapsed"]})  # fmt: skip
    assert err.splitlines()[-1].startswith("textrnn: wrote word tokenizer")
    code, out, err = run_here(["tokenize", "train", "corpus.txt", "--kind", "word", "--out", "w.json", "-q"],
                              lm_model, monkeypatch)  # fmt: skip
    assert code == 0 and err == ""
