"""Resume that forgives (cli/training.py): `--resume` takes the same command again, the best
or the last checkpoint, and names every option that cannot change; every hint names a
file that exists, and the interrupt hint works when pasted into a shell.

The trainings call `textrnn.cli.main` in this process; the interrupted one is a real
process that gets Ctrl-C (SIGINT).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from textrnn.cli import main
from textrnn.engine.checkpoint import load_checkpoint, read_meta
from textrnn.engine.config import TrainConfig
from textrnn.errors import CheckpointError
from textrnn.formats.conllu import load_sentences, write_sentences
from textrnn.formats.plain import iter_text_chunks
from textrnn.tasks import lm
from textrnn.tokenizers import train_tokenizer

REPO = Path(__file__).resolve().parent.parent
# Every option of a first run spelt out, defaults included, as people copy commands.
LM = ["train", "corpus.txt", "--tokenizer", "char", "--unit", "grapheme", "--normalize", "nfc",
      "--cell", "gru", "--hidden", "16", "--layers", "1", "--embed", "16", "--dropout", "0.3",
      "--batch-size", "4", "--seq-len", "16", "--seed", "1234", "--eval-every", "10",
      "--out", "m.ckpt"]  # fmt: skip
TAG = ["tag", "train", "train.conllu", "--dev", "dev.conllu", "--column", "upos", "--word-dim", "16",
       "--char-dim", "8", "--char-hidden", "8", "--hidden", "16", "--layers", "1", "--no-crf",
       "--lowercase", "--batch-size", "8", "--eval-every", "5", "--out", "m.ckpt"]  # fmt: skip
TRANSLIT = ["translit", "train", "train.tsv", "--dev", "dev.tsv", "--direction", "to-native",
            "--attention", "luong", "--embed", "16", "--hidden", "16", "--layers", "1", "--dec-hidden", "16",
            "--batch-size", "16", "--eval-every", "5", "--out", "m.ckpt"]  # fmt: skip


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


def one_error(code: int, out: str, err: str, expected: int) -> str:
    """The one `textrnn: error:` line of a failed command."""
    assert code == expected and out == "", err
    assert len(err.splitlines()) == 1 and err.startswith("textrnn: error: "), err
    return err.strip()


def steps_of(folder: Path, name: str = "m.last.ckpt") -> int:
    return read_meta(folder / name)[1]["training"]["step"]


@pytest.fixture
def lm_folder(tmp_path, monkeypatch) -> Path:
    """A language model trained 20 steps in tmp_path: m.ckpt, m.last.ckpt."""
    shutil.copy(REPO / "corpora" / "english.txt", tmp_path / "corpus.txt")
    code, _, err = run_here([*LM, "--max-steps", "20", "-q"], tmp_path, monkeypatch)
    assert code == 0, err
    return tmp_path


# ---- the language model ---------------------------------------------------------------------------


def test_the_same_command_with_resume_added_continues(lm_folder, monkeypatch):
    code, out, err = run_here([*LM, "--max-steps", "30", "--resume", "m.last.ckpt", "--json", "-q"], lm_folder, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["steps"] == 30 and steps_of(lm_folder) == 30


def test_options_that_differ_are_all_named_in_one_line(lm_folder, monkeypatch):
    args = [*LM, "--resume", "m.last.ckpt", "--hidden", "32", "--tie-weights", "--seed", "7",
            "--seq-len", "8", "--tokenizer", "word", "--dev", "corpus.txt"]  # fmt: skip
    line = one_error(*run_here(args, lm_folder, monkeypatch), 2)
    for words in ("--hidden 32 differs from the checkpoint's 16", "--tie-weights differs from the checkpoint's --no-tie-weights",
                  "--seed 7 differs from the checkpoint's 1234", "--seq-len 8 differs from the checkpoint's 16",
                  "--tokenizer word differs from the checkpoint's char",
                  "--dev corpus.txt differs from the checkpoint's none", "cannot change when resuming"):  # fmt: skip
        assert words in line, line
    assert "--layers" not in line and "--batch-size" not in line  # (given, and the same)
    assert steps_of(lm_folder) == 20  # nothing ran


def test_options_that_may_change_are_taken(lm_folder, monkeypatch):
    args = [*LM, "--resume", "m.last.ckpt", "--max-steps", "25", "--lr", "1e-3", "--patience", "2",
            "--weight-decay", "0.1", "--clip", "0.5", "--precision", "fp32", "--threads", "1", "--json", "-q"]  # fmt: skip
    code, out, err = run_here(args, lm_folder, monkeypatch)
    assert code == 0, err
    saved = read_meta(lm_folder / "m.last.ckpt")[1]["train_config"]
    assert (saved["lr"], saved["patience"], saved["weight_decay"], saved["clip"], saved["precision"]) == (1e-3, 2, 0.1, 0.5, "fp32")


def test_the_best_checkpoint_resumes_from_the_last_beside_it(lm_folder, monkeypatch):
    code, out, err = run_here([*LM, "--resume", "m.ckpt", "--max-steps", "30", "--json", "--progress", "plain"],
                              lm_folder, monkeypatch)  # fmt: skip
    assert code == 0, err
    assert "m.ckpt holds the best weights only: resuming from m.last.ckpt" in err.splitlines()[0]
    start = next(line for line in err.splitlines() if line.startswith("start "))
    assert " resume=m.last.ckpt step=20 " in start
    assert json.loads(out)["steps"] == 30


def test_a_best_checkpoint_alone_names_its_runs_last_or_says_there_is_none(lm_folder, monkeypatch):
    away = lm_folder / "elsewhere"
    away.mkdir()
    shutil.copy(lm_folder / "m.ckpt", away / "lone.ckpt")
    line = one_error(*run_here(["train", "--resume", "elsewhere/lone.ckpt"], lm_folder, monkeypatch), 1)
    assert "no training state" in line and "elsewhere/lone.last.ckpt does not exist" in line
    named = re.search(r"left (\S+): resume from that", line)
    assert named and Path(named[1]).is_file() and Path(named[1]) == (lm_folder / "m.last.ckpt").resolve(), line
    code, _, err = run_here(["train", "--resume", named[1], "--max-steps", "21", "-q"], lm_folder, monkeypatch)
    assert code == 0, err

    (lm_folder / "m.last.ckpt").unlink()
    line = one_error(*run_here(["train", "--resume", "elsewhere/lone.ckpt"], lm_folder, monkeypatch), 1)
    assert "there is no training state to resume" in line and "resume from" not in line


def test_the_python_api_names_an_existing_last_checkpoint_too(lm_folder):
    tok = train_tokenizer("char", iter_text_chunks(lm_folder / "corpus.txt"))
    with pytest.raises(CheckpointError) as err:  # the best checkpoint, another --out
        lm.train(lm_folder / "corpus.txt", out=lm_folder / "other.ckpt", tokenizer=tok,
                 train_cfg=TrainConfig(batch_size=4, seq_len=16, max_steps=25), resume=load_checkpoint(lm_folder / "m.ckpt"))  # fmt: skip
    assert f"resume from {(lm_folder / 'm.last.ckpt').resolve()}" in str(err.value)
    assert "other.last.ckpt" not in str(err.value)


def test_the_interrupt_hint_pasted_into_a_shell_resumes(tmp_path):
    folder = tmp_path / "a folder"  # spaces: the hint must quote
    folder.mkdir()
    shutil.copy(REPO / "corpora" / "english.txt", folder / "corpus.txt")
    env = {**os.environ, "TEXTRNN_CACHE": str(folder / "cache"), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    args = [*LM, "--out", "my runs/m.ckpt", "--max-steps", "300", "--eval-every", "5"]
    proc = subprocess.Popen([sys.executable, "-m", "textrnn", *args], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    last = folder / "my runs" / "m.last.ckpt"
    try:
        deadline = time.monotonic() + 120
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last.exists(), "no last checkpoint in time"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    hint = stderr.splitlines()[-1]
    command = hint.split("resume with: ", 1)[1]
    assert command == "textrnn train --resume 'my runs/m.last.ckpt'", hint
    stopped = steps_of(folder, "my runs/m.last.ckpt")
    assert 0 < stopped < 300
    res = subprocess.run(command, shell=True, cwd=folder, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert steps_of(folder, "my runs/m.last.ckpt") == 300  # on to the end the first run set


# ---- the tagger and the transliterator ----------------------------------------------------------------


@pytest.fixture
def tag_folder(shared_data, tmp_path, monkeypatch) -> Path:
    train = load_sentences(shared_data("ud_english_ewt/en_ewt-ud-train.conllu"), keep_rows=True)
    dev = load_sentences(shared_data("ud_english_ewt/en_ewt-ud-dev.conllu"), keep_rows=True)
    write_sentences(tmp_path / "train.conllu", train[:200])
    write_sentences(tmp_path / "dev.conllu", dev[:50])
    code, _, err = run_here([*TAG, "--max-steps", "10", "-q"], tmp_path, monkeypatch)
    assert code == 0, err
    return tmp_path


@pytest.fixture
def translit_folder(shared_data, tmp_path, monkeypatch) -> Path:
    for name, every in (("train", 100), ("dev", 40)):
        rows = shared_data(f"dakshina_hi/hi.translit.sampled.{name}.tsv").read_text("utf-8")
        (tmp_path / f"{name}.tsv").write_text("\n".join(rows.splitlines()[::every]) + "\n", "utf-8")
    code, _, err = run_here([*TRANSLIT, "--max-steps", "10", "-q"], tmp_path, monkeypatch)
    assert code == 0, err
    return tmp_path


def test_tag_resume_forgives_the_same_command_and_names_what_differs(tag_folder, monkeypatch):
    line = one_error(*run_here([*TAG, "--resume", "m.last.ckpt", "--crf", "--column", "xpos", "--hidden", "8",
                                "--dev", "train.conllu"], tag_folder, monkeypatch), 2)  # fmt: skip
    for words in ("--crf differs from the checkpoint's --no-crf", "--column xpos differs from the checkpoint's upos",
                  "--hidden 8 differs from the checkpoint's 16", "--dev train.conllu differs from the checkpoint's"):  # fmt: skip
        assert words in line, line
    code, out, err = run_here([*TAG, "--resume", "m.ckpt", "--max-steps", "15", "--json"], tag_folder, monkeypatch)
    assert code == 0, err
    assert "resuming from m.last.ckpt" in err and json.loads(out)["steps"] == 15


def test_translit_resume_forgives_the_same_command_and_names_what_differs(translit_folder, monkeypatch):
    line = one_error(*run_here([*TRANSLIT, "--resume", "m.last.ckpt", "--direction", "to-latin", "--attention", "none",
                                "--batch-size", "8"], translit_folder, monkeypatch), 2)  # fmt: skip
    for words in ("--direction to-latin differs from the checkpoint's to-native",
                  "--attention none differs from the checkpoint's luong", "--batch-size 8 differs from the checkpoint's 16"):  # fmt: skip
        assert words in line, line
    code, out, err = run_here([*TRANSLIT, "--resume", "m.ckpt", "--max-steps", "15", "--json"], translit_folder, monkeypatch)
    assert code == 0, err
    assert "resuming from m.last.ckpt" in err and json.loads(out)["steps"] == 15
