"""`textrnn train / sample / eval / info` as a user runs them.

What only a real process shows (exit status, stdout vs stderr, pipes, Ctrl-C) runs as
`python -m textrnn ...` in a temporary folder with stdin closed, a few processes at a
time. Each process spends seconds importing torch, so the long tables of options and
bad inputs call `textrnn.cli.main`, the console script's entry point, in this process
instead; a few of them are also run as real processes to tie the two together.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import typer.main

from textrnn.cli import app, main
from textrnn.engine.checkpoint import Checkpoint, read_meta, save_checkpoint

TINY = "--hidden 32 --layers 1 --max-steps 20 --batch-size 4 --seq-len 32".split()
PARALLEL = 3  # processes at once: the work is mostly importing, on a small machine


def textrnn_env(folder: Path) -> dict[str, str]:
    # One thread: tiny models on a shared machine are many times slower with more.
    return {**os.environ, "TEXTRNN_CACHE": str(folder / "cache"), "OMP_NUM_THREADS": "1"}


def run(
    args: list[str], cwd: Path, *, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "textrnn", *map(str, args)],
        cwd=cwd,
        env=textrnn_env(cwd),
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_all(jobs: dict, cwd: Path) -> dict[str, subprocess.CompletedProcess]:
    """Run {name: args or (args, stdin)} concurrently in `cwd`; return {name: result}."""
    jobs = {name: (job, None) if isinstance(job, list) else job for name, job in jobs.items()}
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {
            name: pool.submit(run, args, cwd, stdin=stdin) for name, (args, stdin) in jobs.items()
        }
        return {name: f.result() for name, f in futures.items()}


def assert_ok(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr


def assert_one_line_error(res: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("textrnn: error: "), res.stderr
    assert res.returncode == code, res.stderr
    assert res.stdout == ""
    for needle in needles:
        assert needle in lines[0]


class InProcess:
    """`textrnn ARGS` run through `textrnn.cli.main` in this process, like `run` but fast."""

    def __init__(self, capsys, monkeypatch) -> None:
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def __call__(self, args: str | list[str], *, stdin: bytes = b"") -> subprocess.CompletedProcess:
        args = shlex.split(args) if isinstance(args, str) else args
        self.monkeypatch.setattr(
            sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
        )
        self.capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:  # anything else escaping main is a bug
            main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(args, exit_.value.code, out, err)


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path) -> InProcess:
    monkeypatch.setenv("TEXTRNN_CACHE", str(tmp_path / "cache"))
    return InProcess(capsys, monkeypatch)


@pytest.fixture(scope="session")
def shakespeare(shared_data):
    """`shakespeare(chars)`: the first `chars` characters of tiny-shakespeare."""
    text = shared_data("tinyshakespeare/input.txt").read_text(encoding="utf-8")
    return lambda chars: text[:chars]


@pytest.fixture(scope="module")
def work(tmp_path_factory, shakespeare) -> Path:
    """A folder where `textrnn train corpus.txt` has run (checkpoints/corpus.ckpt), plus bad inputs."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "corpus.txt").write_text(shakespeare(12_000), encoding="utf-8")
    res = run(["train", "corpus.txt", *TINY, "--json"], folder)
    assert_ok(res)
    (folder / "train.json").write_text(res.stdout)

    (folder / "a-directory").mkdir()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(b"PK\x03\x04\x00\x00" + bytes(range(256)))
    (folder / "latin1.txt").write_bytes("first line\nsecond: caf\u00e9\n".encode("latin-1"))
    (folder / "small.txt").write_text(shakespeare(500), encoding="utf-8")
    (folder / "random.ckpt").write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
        .to(torch.uint8)
        .numpy()
        .tobytes()
    )
    (folder / "pickle.ckpt").write_bytes(pickle.dumps({"model": [1.0, 2.0]}))
    shutil.copy(folder / CKPT, folder / "lone.ckpt")
    save_checkpoint(
        folder / "tagger.ckpt",
        Checkpoint(task="tagger", meta={}, tensors={"model.w": torch.zeros(3)}),
    )
    return folder


CKPT = "checkpoints/corpus.ckpt"
LAST = "checkpoints/corpus.last.ckpt"


# ---- help ----------------------------------------------------------------------------------------


def command_paths() -> list[list[str]]:
    def walk(cmd, path):
        yield path
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "textrnn")
def test_help_of_every_command(cli, path):
    res = cli([*path, "--help"])
    assert res.returncode == 0, res.stderr
    assert "Usage:" in res.stdout and res.stderr == ""


# ---- train -> sample -> eval -> info, as processes ---------------------------------------------


def test_train_json_and_files(work):
    report = json.loads((work / "train.json").read_text())  # stdout held this JSON and nothing else
    assert report["steps"] == 20 and report["stopped"] == "max_steps"
    assert report["checkpoint"] == CKPT and report["last_checkpoint"] == LAST
    assert math.isfinite(report["best_val_loss"])
    assert (work / CKPT).exists() and (work / LAST).exists()
    assert (work / "checkpoints/corpus.metrics.jsonl").exists()


PROCESSES = {
    "help": ["--help"],
    "sample": ["sample", "--length", "60", "--seed", "1"],  # the newest in ./checkpoints
    "sample stdin": (["sample", "-c", CKPT, "--length", "30", "--seed", "3"], "First Citizen:\n"),
    "eval": ["eval", "corpus.txt", "-c", CKPT, "--json"],
    "info": ["info", CKPT, "--json"],
}
# Bad input as real processes too (the whole table runs in process below).
REAL_ERRORS = ["invalid utf-8", "device", "pickle checkpoint"]


@pytest.fixture(scope="module")
def procs(work) -> dict[str, subprocess.CompletedProcess]:
    """The short independent commands of this module, run together as processes in `work`."""
    return run_all({**PROCESSES, **{e: ERRORS[e][0] for e in REAL_ERRORS}}, work)


def test_help_in_a_real_process(procs):
    assert_ok(procs["help"])
    assert all(c in procs["help"].stdout for c in ("train", "sample", "eval", "info"))


def test_no_arguments_shows_the_help(cli):
    res = cli([])
    assert "Usage:" in res.stdout + res.stderr and "train" in res.stdout + res.stderr


def test_sample_eval_info_processes(procs, work, cli, monkeypatch):
    for name in ("sample", "eval", "info"):
        assert_ok(procs[name])
    # Log lines show on stderr, terminal or not; a short eval shows no progress.
    assert procs["sample"].stderr == f"using checkpoint {CKPT}\n"
    assert procs["eval"].stderr == procs["info"].stderr == ""

    text = procs["sample"].stdout
    assert len(text) == 61 and text.endswith("\n")  # 60 characters, then the line is ended
    assert set(text) <= set((work / "corpus.txt").read_text(encoding="utf-8"))  # the sample only
    monkeypatch.chdir(work)
    same = cli(["sample", "-c", CKPT, "--length", "60", "--seed", "1"])
    assert same.stdout == text  # same checkpoint, same seed: same text

    m = json.loads(procs["eval"].stdout)
    assert {"loss_nats", "perplexity", "bits_per_char", "tokens"} <= set(m)
    assert m["perplexity"] == pytest.approx(math.exp(m["loss_nats"]))
    assert m["tokens"] == 12_000 - 1

    info = json.loads(procs["info"].stdout)
    assert info["task"] == "lm" and info["step"] == 20
    assert info["model_config"]["hidden"] == 32 and info["tokenizers"]["text"]["kind"] == "char"


def test_prompt_from_piped_stdin(procs):
    res = procs["sample stdin"]
    assert_ok(res)
    assert res.stdout.startswith("First Citizen:\n")
    assert len(res.stdout) == len("First Citizen:\n") + 30 + 1


@pytest.mark.parametrize("case", REAL_ERRORS)
def test_bad_input_in_a_real_process(procs, case):
    _, code, needles = ERRORS[case]
    assert_one_line_error(procs[case], code, *needles)


def test_sample_into_a_closed_pipe_is_quiet(work):
    cmd = f"set -o pipefail; {shlex.quote(sys.executable)} -m textrnn sample -c {CKPT} --length 20000 --seed 1 | head -c 50"
    res = subprocess.run(
        ["bash", "-c", cmd],
        cwd=work,
        env=textrnn_env(work),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert len(res.stdout) == 50
    assert res.stderr == b""


# ---- sample, eval, info in process -------------------------------------------------------------


def test_sample_options(cli, work, monkeypatch):
    monkeypatch.chdir(work)
    three = cli(
        [*f"sample -c {CKPT} --length 20 --num-samples 3 --seed 1".split(), "--separator", "--\n"]
    )
    assert three.returncode == 0
    assert [len(s) for s in three.stdout.split("--\n")] == [21, 21, 21]

    piped = cli(["sample", "-c", CKPT, "--length", "30", "--seed", "3"], stdin=b"First Citizen:\n")
    only = cli(
        ["sample", "-c", CKPT, "--length", "30", "--seed", "3", "--continuation-only"],
        stdin=b"First Citizen:\n",
    )
    assert piped.stdout == "First Citizen:\n" + only.stdout
    given = cli(
        ["sample", "-c", CKPT, "--length", "30", "--seed", "3", "--prompt", "First Citizen:\n"]
    )
    assert given.stdout == piped.stdout

    stop = only.stdout[10:12]
    stopped = cli(
        [*f"sample -c {CKPT} --length 30 --seed 3 --continuation-only --stop".split(), stop],
        stdin=b"First Citizen:\n",
    )
    assert stopped.stdout.rstrip("\n") == only.stdout[: only.stdout.index(stop)].rstrip("\n")

    greedy = cli(["sample", "-c", CKPT, "--length", "25", "--greedy", "--seed", "1"])
    cold = cli(["sample", "-c", CKPT, "--length", "25", "--temperature", "0", "--seed", "2"])
    assert greedy.stdout == cold.stdout

    beams = cli(["sample", "-c", CKPT, "--length", "10", "--beam", "3", "--nbest", "2", "--json"])
    hyps = json.loads(beams.stdout)
    assert len(hyps) == 2 and hyps[0]["score"] >= hyps[1]["score"] and hyps[0]["tokens"] == 10
    # --scores: each continuation after its score and log-probability, the ones --json gives
    scored = cli([*f"sample -c {CKPT} --length 10 --beam 3 --nbest 2 --scores --continuation-only".split(),
                  "--separator", "<>\n"])  # fmt: skip
    assert scored.returncode == 0
    assert scored.stdout.split("<>\n") == [
        f"[score {h['score']:.4f} logprob {h['logprob']:.4f}] {h['text']}" + ("" if h["text"].endswith("\n") else "\n")
        for h in hyps
    ]  # fmt: skip
    assert hyps[0]["logprob"] < 0 and hyps[0]["score"] != hyps[1]["score"]

    samples = json.loads(
        cli(["sample", "-c", CKPT, "--length", "10", "--num-samples", "2", "--json"]).stdout
    )
    assert len(samples) == 2 and all(len(s["text"]) == 10 for s in samples)

    # fp32, bf16 and int8 generation are each reproducible; their greedy texts agree for a while
    exact = [cli(["sample", "-c", CKPT, "--length", "40", "--greedy", "--precision", p]).stdout for p in ("fp32", "fp32", "bf16", "int8")]
    assert exact[0] == exact[1] and exact[2][:5] == exact[3][:5] == exact[0][:5]


def test_sample_picks_the_newest_best_checkpoint(cli, work, tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    garbage = (work / "random.ckpt").read_bytes()
    (folder / "old.ckpt").write_bytes(garbage)
    (folder / "new.ckpt").write_bytes((work / CKPT).read_bytes())
    (folder / "new.last.ckpt").write_bytes(garbage)  # the newest file, but not a best checkpoint
    now = time.time()
    for name, age in (("old.ckpt", 300), ("new.ckpt", 200), ("new.last.ckpt", 100)):
        os.utime(folder / name, (now - age, now - age))
    monkeypatch.chdir(tmp_path)
    res = cli(["sample", "--length", "10", "--seed", "1"])
    assert res.returncode == 0, res.stderr
    assert len(res.stdout) == 11


def test_eval_from_stdin_and_plain_output(cli, work, monkeypatch):
    monkeypatch.chdir(work)
    text = (work / "corpus.txt").read_bytes()[:3000]
    from_stdin = json.loads(cli(["eval", "-c", CKPT, "--json"], stdin=text).stdout)
    (work / "part.txt").write_bytes(text)
    from_file = json.loads(cli(["eval", "part.txt", "-c", CKPT, "--json"]).stdout)
    assert from_stdin["loss_nats"] == pytest.approx(from_file["loss_nats"])
    plain = cli(["eval", "part.txt", "-c", CKPT]).stdout
    assert plain.splitlines()[0].split()[0] == "loss_nats"


def test_old_eval_form_still_works_with_a_notice(cli, work, monkeypatch):
    """`textrnn eval CKPT [FILE]` (before one grammar for every task): the same figures, and
    one line on stderr that gives the new form."""
    monkeypatch.chdir(work)
    text = (work / "corpus.txt").read_bytes()[:3000]
    (work / "part.txt").write_bytes(text)
    new = cli(["eval", "part.txt", "-c", CKPT, "--json"])
    assert new.returncode == 0 and new.stderr == ""
    for old in (cli(["eval", CKPT, "part.txt", "--json"]), cli(["eval", CKPT, "--json"], stdin=text)):
        assert old.returncode == 0, old.stderr
        assert json.loads(old.stdout)["loss_nats"] == pytest.approx(json.loads(new.stdout)["loss_nats"])
        assert old.stderr.splitlines() == [
            "textrnn: note: `textrnn eval CHECKPOINT FILE` is now `textrnn eval FILE -c CHECKPOINT`"
        ]
    assert_one_line_error(cli(["eval", "part.txt"]), 2, "-c CHECKPOINT")  # a text file is no checkpoint


def test_train_with_a_dev_file_validates_on_it(cli, tmp_path, monkeypatch, shakespeare):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text(shakespeare(5000), encoding="utf-8")
    (tmp_path / "d.txt").write_text("to be, or not to be\n" * 40, encoding="utf-8")  # unlike TRAIN
    res = cli("train t.txt --dev d.txt --hidden 16 --layers 1 --max-steps 10 --json --out m.ckpt")
    assert res.returncode == 0, res.stderr
    assert Path(read_meta(tmp_path / "m.ckpt")[1]["data"]["dev"]["path"]).name == "d.txt"
    dev, train = (json.loads(cli(f"eval {f} -c m.ckpt --json").stdout)["loss_nats"] for f in ("d.txt", "t.txt"))
    # Validation scored DEV (in rows of another length than eval's: equal to about 1e-3).
    assert json.loads(res.stdout)["best_val_loss"] == pytest.approx(dev, rel=2e-3)
    assert abs(dev - train) > 0.01 * train  # (held-out blocks of TRAIN would score like TRAIN)


def test_train_json_in_process(cli, tmp_path, monkeypatch, shakespeare):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text(shakespeare(4000), encoding="utf-8")
    res = cli("train c.txt --hidden 16 --layers 1 --max-steps 3 --json --out m.ckpt")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["steps"] == 3 and Path(report["checkpoint"]) == Path("m.ckpt")
    # A corpus too small for the default shape trains with a smaller one instead of failing.
    (tmp_path / "s.txt").write_text(shakespeare(2000), encoding="utf-8")
    res = cli("train s.txt --hidden 16 --layers 1 --max-steps 2 --json --out s.ckpt")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "s.ckpt").exists()
    # The model options reach the model (not only accepted).
    res = cli("train c.txt --cell lstm --layers 2 --hidden 16 --embed 8 --dropout 0.1 --tie-weights "
              "--variational-dropout --max-steps 1 --out o.ckpt")  # fmt: skip
    assert res.returncode == 0, res.stderr
    config = read_meta(tmp_path / "o.ckpt")[1]["model_config"]
    assert {k: config[k] for k in ("cell", "layers", "hidden", "embed", "dropout", "tie_weights", "variational")} == {
        "cell": "lstm", "layers": 2, "hidden": 16, "embed": 8, "dropout": 0.1, "tie_weights": True, "variational": True}


# ---- bad input: one line on stderr, the right exit code ---------------------------------------

ERRORS = {
    "missing corpus": (["train", "missing.txt"], 1, ["missing.txt", "no such file"]),
    "directory": (["train", "a-directory"], 1, ["directory"]),
    "empty": (["train", "empty.txt"], 1, ["empty"]),
    "binary": (["train", "binary.txt"], 1, ["binary"]),
    "invalid utf-8": (["train", "latin1.txt"], 1, ["UTF-8", "byte 22", "line 2"]),
    "too small": (
        ["train", "small.txt", "--batch-size", "16", "--seq-len", "64"],
        1,
        ["too small"],
    ),
    "temperature": (["sample", "-c", CKPT, "--temperature", "-1"], 2, ["--temperature"]),
    "top-p": (["sample", "-c", CKPT, "--top-p", "1.5"], 2, ["--top-p"]),
    "beam 0": (["sample", "-c", CKPT, "--beam", "0"], 2, ["--beam"]),
    "beam and top-p": (
        ["sample", "-c", CKPT, "--beam", "3", "--top-p", "0.9"],
        2,
        ["--beam", "--top-p"],
    ),
    "nbest without beam": (["sample", "-c", CKPT, "--nbest", "3"], 2, ["--nbest"]),
    "length 0": (["sample", "-c", CKPT, "--length", "0"], 2, ["--length"]),
    "sample precision": (["sample", "-c", CKPT, "--precision", "fp16"], 2, ["--precision", "fp16"]),
    "seq-len 0": (["train", "corpus.txt", "--seq-len", "0"], 2, ["--seq-len"]),
    "precision": (["train", "corpus.txt", "--precision", "fp8"], 2, ["--precision", "fp8"]),
    "device": (["train", "corpus.txt", "--device", "tpu"], 2, ["--device", "tpu"]),
    # (-q: an error found once training has started follows its log and progress lines)
    "cell": (["train", "corpus.txt", "--cell", "transformer", "-q"], 2, ["--cell", "transformer"]),
    "diverges": (
        ["train", "corpus.txt", *TINY, "--lr", "1e6", "--max-steps", "60", "--eval-every", "5", "--out", "d.ckpt", "-q"],
        1,
        ["diverged", "--lr"],
    ),
    "out under a file": (["train", "corpus.txt", "--out", "corpus.txt/m.ckpt"], 1, ["--out"]),
    "unknown prompt": (["sample", "-c", CKPT, "--prompt", "snow\u2603man"], 2, ["\u2603"]),
    "random checkpoint": (
        ["sample", "-c", "random.ckpt"],
        1,
        ["random.ckpt", "not a textrnn checkpoint"],
    ),
    "pickle checkpoint": (["sample", "-c", "pickle.ckpt"], 1, ["pickle"]),
    "tagger checkpoint": (["sample", "-c", "tagger.ckpt"], 1, ["tagger"]),
    "tagger to eval": (["eval", "corpus.txt", "-c", "tagger.ckpt"], 1, ["tagger"]),
    "missing checkpoint": (["sample", "-c", "nope.ckpt"], 1, ["nope.ckpt"]),
    # a best checkpoint copied away from its last: the hint names the run's last, which exists
    "resume lone best": (["train", "--resume", "lone.ckpt"], 1, ["no training state", f"{LAST}: resume from that"]),
    "resume changes model": (["train", "--resume", LAST, "--hidden", "64"], 2, ["--hidden 64 differs from the checkpoint's 32", "cannot change"]),
    "eval invalid utf-8": (["eval", "latin1.txt", "-c", CKPT], 1, ["UTF-8"]),
    "info random": (["info", "random.ckpt"], 1, ["random.ckpt"]),
    "bad option value": (["sample", "-c", CKPT, "--length", "many"], 2, ["--length"]),
    "unknown option": (["sample", "--colour"], 2, ["--colour"]),
    "no train corpus": (["train"], 2, ["TRAIN"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_gives_one_line_and_exit_code(cli, work, monkeypatch, case):
    args, code, needles = ERRORS[case]
    monkeypatch.chdir(work)
    assert_one_line_error(cli(args), code, *needles)


def test_sample_without_any_checkpoint(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(cli(["sample"]), 2, "--checkpoint")


# ---- Ctrl-C and resume ----------------------------------------------------------------------------


def test_ctrl_c_saves_and_resume_continues(tmp_path, shakespeare):
    (tmp_path / "corpus.txt").write_text(shakespeare(30_000), encoding="utf-8")
    args = [
        "--hidden",
        "32",
        "--layers",
        "1",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--eval-every",
        "5",
        "--max-steps",
        "1000000",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "textrnn", "train", "corpus.txt", *args],
        cwd=tmp_path,
        env=textrnn_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = tmp_path / LAST
    try:
        deadline = time.monotonic() + 60
        while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert last.exists(), "training wrote no last checkpoint"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"textrnn train --resume {LAST}" in stderr
    assert stdout == ""
    steps = read_meta(last)[1]["training"]["step"]
    assert steps >= 5

    res = run(["train", "--resume", LAST, "--max-steps", str(steps + 6), "--json"], tmp_path)
    assert_ok(res)
    report = json.loads(res.stdout)
    assert report["steps"] == steps + 6 and report["stopped"] == "max_steps"
    assert read_meta(last)[1]["training"]["step"] == steps + 6
