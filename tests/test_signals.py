"""Stop signals end a training run with a resumable checkpoint (textrnn.engine.signals).

Real `python -m textrnn ... train` processes get SIGINT, SIGTERM or SIGHUP once their
metrics log shows that they train. Each must exit 128 + the signal with a last
checkpoint that loads, from which `--resume` runs on to the same N steps as an
uninterrupted run, bit for bit. A second signal stops at once and exits 130, and
leaves whole checkpoints, no temporary file and no lock behind.

The uninterrupted runs and the resumes call `textrnn.cli.main` in this process (one
thread, like the processes): the same code without seconds of imports each.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import textrnn.engine.checkpoint
from textrnn.cli import main
from textrnn.engine.checkpoint import load_checkpoint, read_meta
from textrnn.engine.config import TrainConfig
from textrnn.engine.signals import STOP_SIGNALS, StopNow, StopSignals
from textrnn.files import atomic_file
from textrnn.formats.conllu import load_sentences, write_sentences
from textrnn.formats.plain import iter_text_chunks
from textrnn.tasks.lm import train
from textrnn.tokenizers import train_tokenizer

REPO = Path(__file__).resolve().parent.parent
ENGLISH = REPO / "corpora" / "english.txt"
N = 120  # steps of every run; the signal goes at the first log record (step 20), long before the end
RUN = ["--max-steps", str(N), "--eval-every", "40", "--patience", "0", "--out", "m.ckpt"]
LM = ["train", "corpus.txt", "--hidden", "16", "--layers", "1", "--embed", "16",
      "--batch-size", "4", "--seq-len", "16"]  # fmt: skip
TAG = ["tag", "train", "train.conllu", "--dev", "dev.conllu", "--word-dim", "16",
       "--char-dim", "8", "--char-hidden", "8", "--hidden", "16", "--layers", "1",
       "--batch-size", "8", "--threads", "1"]  # fmt: skip
TRANSLIT = ["translit", "train", "train.tsv", "--dev", "dev.tsv", "--embed", "16",
            "--hidden", "16", "--layers", "1", "--dec-hidden", "24", "--batch-size", "16",
            "--threads", "1"]  # fmt: skip


# ---- running textrnn ------------------------------------------------------------------------------


def start(args: list[str], folder: Path) -> subprocess.Popen:
    """`python -m textrnn ARGS` in `folder`, as a user or a scheduler starts it."""
    env = {**os.environ, "TEXTRNN_CACHE": str(folder / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "textrnn", *args], cwd=folder, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def signal_when_training(
    proc: subprocess.Popen,
    folder: Path,
    *signals: int,
    ready: str = "m.metrics.jsonl",
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Send `signals` one after the other as soon as the file `ready` has something in it
    (by default the metrics log: the run trains); return how the process ended."""
    path = folder / ready
    try:
        deadline = time.monotonic() + timeout
        while not (path.exists() and path.stat().st_size):
            assert proc.poll() is None, f"ended before training: {proc.communicate()[1]}"
            assert time.monotonic() < deadline, f"no {ready} in time"
            time.sleep(0.01)
        for sig in signals:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_here(args: list[str], folder: Path) -> subprocess.CompletedProcess:
    """`textrnn ARGS` through `textrnn.cli.main` in this process, in `folder`."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("TEXTRNN_CACHE", str(folder / "cache"))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(args)
                code = 0
            except SystemExit as exit_:
                code = exit_.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def trained(folder: Path) -> dict[str, torch.Tensor]:
    """The weights and optimizer moments of a run's last checkpoint."""
    tensors = load_checkpoint(folder / "m.last.ckpt").tensors
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "optim."))}


def leftovers(folder: Path) -> list[str]:
    """Temporary files of interrupted saves and the output lock, if any stayed behind."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or p.suffix == ".lock")


# ---- the data of each task --------------------------------------------------------------------------


def lm_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ENGLISH, folder / "corpus.txt")
    return folder


@pytest.fixture
def tag_folder(shared_data, tmp_path) -> Path:
    """200 EWT training sentences and 50 dev ones."""
    train = load_sentences(shared_data("ud_english_ewt/en_ewt-ud-train.conllu"), keep_rows=True)
    dev = load_sentences(shared_data("ud_english_ewt/en_ewt-ud-dev.conllu"), keep_rows=True)
    write_sentences(tmp_path / "train.conllu", train[:200])
    write_sentences(tmp_path / "dev.conllu", dev[:50])
    return tmp_path


@pytest.fixture
def translit_folder(shared_data, tmp_path) -> Path:
    """Every 100th Dakshina Hindi training pair and every 40th dev pair."""
    for name, every in (("train", 100), ("dev", 40)):
        rows = shared_data(f"dakshina_hi/hi.translit.sampled.{name}.tsv").read_text("utf-8")
        (tmp_path / f"{name}.tsv").write_text("\n".join(rows.splitlines()[::every]) + "\n", "utf-8")
    return tmp_path


def same_files(src: Path, dst: Path) -> Path:
    """A second folder with the data of `src` (the uninterrupted run goes there)."""
    dst.mkdir()
    for path in src.iterdir():
        if path.is_file():
            shutil.copy(path, dst / path.name)
    return dst


# ---- one signal: exit 128 + signal, a checkpoint that loads, an exact resume ------------------------


def check_stop_and_resume(
    proc: subprocess.Popen, command: list[str], folder: Path, sig: int, task: str,
    uninterrupted: dict[str, torch.Tensor],
) -> None:  # fmt: skip
    """Stop `proc` (`command` in `folder`) with `sig`, check how it ended, resume it to N
    steps and compare with the `uninterrupted` run."""
    res = signal_when_training(proc, folder, sig)
    assert res.returncode == 128 + sig, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    last_line = res.stderr.splitlines()[-1]
    assert f"interrupted by {signal.Signals(sig).name} at step" in last_line, res.stderr
    assert "--resume m.last.ckpt" in last_line
    assert leftovers(folder) == []
    training = load_checkpoint(folder / "m.last.ckpt", task=task).meta["training"]
    assert training["stopped"] == "interrupted" and training["signal"] == sig
    assert 0 < training["step"] < N

    train = command[: command.index("train") + 1]
    resumed = run_here([*train, "--resume", "m.last.ckpt", "--json", "-q"], folder)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == N
    after = trained(folder)
    assert sorted(after) == sorted(uninterrupted)
    for name, tensor in uninterrupted.items():
        assert torch.equal(after[name], tensor), f"{name} differs after the resume"


def uninterrupted_run(command: list[str], folder: Path) -> dict[str, torch.Tensor]:
    res = run_here([*command, *RUN], folder)
    assert res.returncode == 0, res.stderr
    return trained(folder)


@pytest.fixture(scope="module")
def lm_uninterrupted(tmp_path_factory):
    """The uninterrupted language-model run, made on first use (while a process starts)."""
    made: dict[str, dict[str, torch.Tensor]] = {}

    def get() -> dict[str, torch.Tensor]:
        if not made:
            made["run"] = uninterrupted_run(LM, lm_folder(tmp_path_factory.mktemp("straight")))
        return made["run"]

    return get


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_lm_train_stopped_by_a_signal_exits_128_plus_it_and_resumes_exactly(
    tmp_path, lm_uninterrupted, sig
):
    proc = start([*LM, *RUN], lm_folder(tmp_path))
    check_stop_and_resume(proc, LM, tmp_path, sig, "lm", lm_uninterrupted())


def test_tag_train_stopped_by_sigterm_exits_143_and_resumes_exactly(tag_folder, tmp_path):
    straight = same_files(tag_folder, tmp_path / "straight")
    proc = start([*TAG, *RUN], tag_folder)  # it imports while the uninterrupted run trains
    check_stop_and_resume(
        proc, TAG, tag_folder, signal.SIGTERM, "tagger", uninterrupted_run(TAG, straight)
    )


def test_translit_train_stopped_by_sigterm_exits_143_and_resumes_exactly(translit_folder, tmp_path):
    straight = same_files(translit_folder, tmp_path / "straight")
    proc = start([*TRANSLIT, *RUN], translit_folder)
    check_stop_and_resume(
        proc, TRANSLIT, translit_folder, signal.SIGTERM, "translit",
        uninterrupted_run(TRANSLIT, straight),
    )  # fmt: skip


# ---- a second signal ----------------------------------------------------------------------------------


def test_a_second_signal_stops_at_once_with_130_and_whole_checkpoints(tmp_path):
    """SIGTERM and, right after it, SIGINT: the second one lands before the first one's
    save ends (or starts), so the run stops at once."""
    folder = lm_folder(tmp_path)
    proc = start([*LM, "--max-steps", "1000000", "--eval-every", "1", "--out", "m.ckpt"], folder)
    res = signal_when_training(proc, folder, signal.SIGTERM, signal.SIGINT, ready="m.last.ckpt")
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.splitlines()[-1].startswith("textrnn: error: interrupted again"), res.stderr
    assert leftovers(folder) == []
    for name in ("m.ckpt", "m.last.ckpt"):
        load_checkpoint(folder / name, task="lm")  # whole


def test_a_second_signal_in_the_middle_of_a_save_leaves_the_old_checkpoints(tmp_path, monkeypatch):
    """The first signal (SIGINT) ends the run; the second (SIGTERM) lands when half of the
    last checkpoint is written. The save stops there: its temporary file goes, the lock
    goes, and the best and last checkpoints on disk are those of the saves before."""
    monkeypatch.setenv("TEXTRNN_CACHE", str(tmp_path / "cache"))
    corpus = lm_folder(tmp_path) / "corpus.txt"
    out = tmp_path / "m.ckpt"
    before: dict[str, bytes] = {}

    def first_signal(p) -> None:
        if p.event == "step" and p.step == 7:  # after the validation at step 5 saved both files
            before.update(
                {name: (tmp_path / name).read_bytes() for name in ("m.ckpt", "m.last.ckpt")}
            )
            os.kill(os.getpid(), signal.SIGINT)

    def write_half_then_signal(path, data: bytes) -> None:
        with atomic_file(path) as f:
            f.write(data[: len(data) // 2])
            if before:
                os.kill(os.getpid(), signal.SIGTERM)  # handled here, before the next line
            f.write(data[len(data) // 2 :])

    monkeypatch.setattr(textrnn.engine.checkpoint, "write_atomically", write_half_then_signal)
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    cfg = TrainConfig(batch_size=4, seq_len=16, max_steps=N, eval_every=5, log_every=1)
    with pytest.raises(StopNow, match="interrupted again"):
        train(corpus, tokenizer=train_tokenizer("char", iter_text_chunks(corpus)), out=out,
              model_overrides={"hidden": 16, "layers": 1}, train_cfg=cfg,
              on_progress=first_signal)  # fmt: skip
    assert before, "the first signal was never sent"
    assert leftovers(tmp_path) == []
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data, f"{name} changed"
    assert read_meta(tmp_path / "m.last.ckpt")[1]["training"]["step"] == 5
    assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == handlers  # put back


# ---- signals that are ignored ---------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_signal_ignored_before_training_stays_ignored():
    """Under nohup SIGHUP is ignored, and a training started so must survive a hang-up."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with StopSignals().installed() as stops:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) == stops._handle
            os.kill(os.getpid(), signal.SIGHUP)
            assert stops.received == 0
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
