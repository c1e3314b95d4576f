"""`textrnn plot` on the metrics logs of real training runs, and the reader beneath it
(textrnn.engine.metrics_log).

Two tiny language models train for real on the quickstart corpus (different dropout),
one of them twice into the same --out, so that the log holds two runs; the plots are
then drawn in this process through `textrnn.cli.main`, as the console script does.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from textrnn.cli import main
from textrnn.engine.checkpoint import read_meta
from textrnn.engine.metrics_log import (
    best_eval,
    choose_metric,
    parse_metrics_log,
    read_metrics_log,
)
from textrnn.errors import DataError, UsageError

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "english.txt"
TINY = "--hidden 32 --layers 1 --embed 16 --batch-size 4 --seq-len 32 --eval-every 5 --quiet"


def textrnn(args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m textrnn ARGS` as a real process (one thread: tiny models, shared machine)."""
    env = {**os.environ, "TEXTRNN_CACHE": str(cwd / "cache"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "textrnn", *shlex.split(args)],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """a.metrics.jsonl (dropout 0) and b.metrics.jsonl (dropout 0.5; trained twice, 20 then
    40 steps, into the same --out, so its log holds an older run before the latest)."""
    folder = tmp_path_factory.mktemp("runs")
    jobs = {
        "a": f"train {CORPUS} {TINY} --max-steps 40 --dropout 0 --out a.ckpt",
        "b": f"train {CORPUS} {TINY} --max-steps 20 --dropout 0.5 --out b.ckpt",
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        for res in pool.map(lambda args: textrnn(args, folder), jobs.values()):
            assert res.returncode == 0, res.stderr
    res = textrnn(f"train {CORPUS} {TINY} --max-steps 40 --dropout 0.5 --out b.ckpt", folder)
    assert res.returncode == 0, res.stderr
    return folder


def plot(
    args: str, cwd: Path, capsys, monkeypatch, stdin: bytes = b""
) -> subprocess.CompletedProcess:
    """`textrnn plot ARGS` through the console script's entry point, in this process."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["plot", *shlex.split(args)])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, exit_.value.code, out, err)


def best_step(checkpoint: Path) -> int:
    return read_meta(checkpoint)[1]["metrics"]["best_step"]


# ---- the reader ------------------------------------------------------------------


def test_the_best_point_is_the_best_checkpoint(runs):
    log = read_metrics_log(runs / "a.metrics.jsonl")
    assert [r["step"] for r in log.evals] == list(range(5, 41, 5))
    assert [r["step"] for r in log.train] == [20, 40]
    assert choose_metric([log]) == "val_loss"
    best = best_eval(log, "val_loss")
    assert best["val_loss"] == min(r["val_loss"] for r in log.evals)
    assert best["step"] == best_step(runs / "a.ckpt")
    assert all(r["tokens"] == r["step"] * 4 * 32 for r in (*log.train, *log.evals))


def test_a_second_run_into_the_same_out_replaces_the_first(runs):
    text = (runs / "b.metrics.jsonl").read_text()
    assert text.count('"event": "start"') == 2  # both runs are in the file...
    log = read_metrics_log(runs / "b.metrics.jsonl")
    steps = [r["step"] for r in log.evals]
    assert steps == list(range(5, 41, 5))  # ...but only the latest is read
    assert best_eval(log, "val_loss")["step"] == best_step(runs / "b.ckpt")


def lines(*records: dict) -> list[str]:
    return [json.dumps(r) for r in records]


def ev(step: int, loss: float, **more) -> dict:
    return {"event": "eval", "step": step, "elapsed": step / 10, "val_loss": loss, **more}


def test_a_resume_from_an_older_checkpoint_drops_the_steps_it_repeats():
    log = parse_metrics_log(
        lines({"event": "start", "step": 0}, ev(5, 3.0), ev(10, 2.0), ev(15, 1.0),
              {"event": "start", "step": 10}, ev(15, 1.5), ev(20, 1.2)),
        name="r",
    )  # fmt: skip
    assert [(r["step"], r["val_loss"]) for r in log.evals] == [
        (5, 3.0),
        (10, 2.0),
        (15, 1.5),
        (20, 1.2),
    ]
    assert best_eval(log, "val_loss")["step"] == 20


def test_a_log_without_start_records_starts_again_where_steps_go_back():
    log = parse_metrics_log(lines(ev(5, 3.0), ev(10, 2.0), ev(5, 2.5), ev(10, 2.2)), name="old")
    assert [(r["step"], r["val_loss"]) for r in log.evals] == [(5, 2.5), (10, 2.2)]


def test_accuracy_is_chosen_where_the_log_holds_it_and_higher_is_better():
    log = parse_metrics_log(
        lines(ev(5, 0.9, val_accuracy=0.7), ev(10, 0.5, val_accuracy=0.8), ev(15, 0.4, val_accuracy=0.8),
              ev(20, 0.45, val_accuracy=0.6)),
        name="tagger",
    )  # fmt: skip
    assert choose_metric([log]) == "val_accuracy"
    assert best_eval(log, "val_accuracy")["step"] == 10  # the first of equal values, as training
    assert choose_metric([log], "loss") == "val_loss" and best_eval(log, "val_loss")["step"] == 15
    lm = parse_metrics_log(lines(ev(5, 2.0)), name="lm")
    with pytest.raises(UsageError, match="different dev metrics"):
        choose_metric([log, lm])


def test_a_run_without_a_dev_set_has_nothing_to_draw():
    log = parse_metrics_log(['{"event": "eval", "step": 5, "val_loss": NaN}'], name="nodev")
    with pytest.raises(DataError, match="no numbers"):
        choose_metric([log])


# ---- pictures --------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_png_of_the_requested_size_with_both_runs_drawn(runs, capsys, monkeypatch):
    res = plot(
        "a.metrics.jsonl b.metrics.jsonl -o out/curves.png --size 640x400",
        runs,
        capsys,
        monkeypatch,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and "wrote out/curves.png" in res.stderr
    data = (runs / "out/curves.png").read_bytes()
    assert png_size(data) == (640, 400)
    from PIL import Image  # matplotlib's own dependency

    image = Image.open(runs / "out/curves.png").convert("RGB")
    colours = {rgb for _, rgb in image.getcolors(maxcolors=640 * 400)}
    assert len(colours) > 50  # lines, text, antialiasing: not a blank page
    for hex_colour in ("1f77b4", "ff7f0e"):  # matplotlib's first two line colours: one per run
        rgb = tuple(int(hex_colour[i : i + 2], 16) for i in (0, 2, 4))
        assert rgb in colours, hex_colour


@pytest.mark.parametrize(("suffix", "magic"), [(".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_svg_and_pdf(runs, capsys, monkeypatch, tmp_path, suffix, magic):
    out = tmp_path / f"curves{suffix}"
    res = plot(f"a.metrics.jsonl --x time -o {out} --quiet", runs, capsys, monkeypatch)
    assert res.returncode == 0 and res.stderr == ""
    assert out.read_bytes().startswith(magic)


def test_text_chart_shows_the_run_and_its_best_point(runs, capsys, monkeypatch):
    res = plot("a.metrics.jsonl --size 70x12", runs, capsys, monkeypatch)
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0] == "val_loss against step (lower is better)"
    grid = out[1:13]
    assert all(len(line) <= 70 for line in out[:14])
    assert sum("*" in line for line in grid) == 1 and any("o" in line for line in grid)
    assert any("." in line for line in grid)  # train loss
    best = best_eval(read_metrics_log(runs / "a.metrics.jsonl"), "val_loss")
    assert (
        f"  o a: best val_loss {best['val_loss']:.4f} at step {best['step']} (epoch" in res.stdout
    )
    assert out[14].split()[0] == "5" and out[14].split()[-1] == "40"  # the x range: step 5 to 40


def test_two_runs_overlaid_with_labels(runs, capsys, monkeypatch):
    args = (
        "a.metrics.jsonl b.metrics.jsonl --label dropout-0 -l dropout-0.5 --metric bpc --size 70x12"
    )
    res = plot(args, runs, capsys, monkeypatch)
    assert res.returncode == 0, res.stderr
    grid = "\n".join(res.stdout.splitlines()[1:13])
    assert (
        "o" in grid and "x" in grid and grid.count("*") in (1, 2)
    )  # two best points, maybe on one cell
    assert "  o dropout-0: best val_bpc " in res.stdout
    assert "  x dropout-0.5: best val_bpc " in res.stdout
    assert "train loss" not in res.stdout  # bits per character and nats do not share an axis


def test_tokens_and_json(runs, capsys, monkeypatch):
    res = plot("a.metrics.jsonl b.metrics.jsonl --x tokens --json", runs, capsys, monkeypatch)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["metric"] == "val_loss" and summary["x"] == "tokens"
    assert [r["label"] for r in summary["runs"]] == ["a", "b"]
    assert summary["runs"][1]["best"]["step"] == best_step(runs / "b.ckpt")
    res = plot("a.metrics.jsonl --x tokens --size 60x10", runs, capsys, monkeypatch)
    assert "training tokens" in res.stdout and res.stdout.splitlines()[12].split()[-1] == "5120"


def test_stdin(runs, capsys, monkeypatch):
    data = (runs / "a.metrics.jsonl").read_bytes()
    res = plot("--size 60x10", runs, capsys, monkeypatch, stdin=data)
    assert res.returncode == 0, res.stderr
    assert "  o <stdin>: best val_loss" in res.stdout


# ---- bad input -------------------------------------------------------------------

BAD = {
    "missing": ("nothing.metrics.jsonl", None, 1, "nothing.metrics.jsonl: no such file"),
    "empty": ("e.jsonl", b"", 1, "e.jsonl: file is empty"),
    "blank lines": ("e.jsonl", b"\n\n", 1, "e.jsonl: empty metrics log"),
    "binary": ("e.jsonl", b"\x00\x01\x02", 1, "binary"),
    "not UTF-8": ("e.jsonl", b'{"event": "\xff"}\n', 1, "invalid UTF-8"),
    "not JSONL": ("e.jsonl", CORPUS.read_bytes(), 1, "e.jsonl:1: not a JSON object"),
    "a list": (
        "e.jsonl",
        b'{"event": "start", "step": 0}\n[1, 2]\n',
        1,
        "e.jsonl:2: not a JSON object",
    ),
    "no event": ("e.jsonl", b'{"step": 5}\n', 1, 'e.jsonl:1: a JSON object without an "event"'),
    "bad step": (
        "e.jsonl",
        b'{"event": "eval", "step": "5"}\n',
        1,
        'e.jsonl:1: the "eval" record has no whole "step"',
    ),
    "no eval": (
        "e.jsonl",
        b'{"event": "train", "step": 5, "train_loss": 2}\n',
        1,
        "no validation records",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_logs_give_one_line(case, capsys, monkeypatch, tmp_path):
    name, content, code, words = BAD[case]
    if content is not None:
        (tmp_path / name).write_bytes(content)
    res = plot(name, tmp_path, capsys, monkeypatch)
    assert res.returncode == code and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("textrnn: error: "), res.stderr
    assert words in res.stderr


USAGE = {
    "metric": (
        "a.metrics.jsonl --metric accuracy",
        1,
        "no val_accuracy in its validations (it holds val_loss",
    ),
    "format": (
        "a.metrics.jsonl -o curves.jpg",
        2,
        "-o curves.jpg: the image must be a .png, .svg or .pdf",
    ),
    "size": ("a.metrics.jsonl --size 80", 2, "--size 80: expected WIDTHxHEIGHT"),
    "labels": (
        "a.metrics.jsonl b.metrics.jsonl -l one",
        2,
        "one --label per log (2 logs, 1 labels)",
    ),
    "axis": ("a.metrics.jsonl --x epochs", 2, "'epochs' is not one of"),
    "terminal": ("", 2, "give a metrics log"),
}


@pytest.mark.parametrize("case", USAGE)
def test_bad_options_give_one_line(case, runs, capsys, monkeypatch):
    args, code, words = USAGE[case]
    if case == "terminal":
        monkeypatch.setattr("textrnn.cli.plot.interactive", lambda: True)
    res = plot(args, runs, capsys, monkeypatch)
    assert res.returncode == code and res.stdout == ""
    assert res.stderr.count("\n") == 1 and words in res.stderr, res.stderr


def test_a_log_older_than_token_counts_cannot_be_drawn_by_tokens(capsys, monkeypatch, tmp_path):
    (tmp_path / "old.jsonl").write_text(
        '{"event": "eval", "step": 5, "elapsed": 1.0, "val_loss": 2.0}\n'
    )
    res = plot("old.jsonl --x tokens", tmp_path, capsys, monkeypatch)
    assert res.returncode == 1 and "no 'tokens'" in res.stderr and "--x step" in res.stderr
    assert plot("old.jsonl --x time", tmp_path, capsys, monkeypatch).returncode == 0


def test_without_matplotlib_an_image_is_one_line_naming_the_extra(runs):
    """matplotlib is an optional extra: hide it, as an install without it would be."""
    code = "import sys; sys.modules['matplotlib'] = None; from textrnn.cli import main; main()"
    res = subprocess.run(
        [sys.executable, "-c", code, "plot", "a.metrics.jsonl", "-o", "c.png"],
        cwd=runs, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 1 and res.stdout == ""
    assert (
        res.stderr
        == "textrnn: error: writing a .png image needs matplotlib: pip install 'textrnn[plot]'\n"
    )
    assert not (runs / "c.png").exists()
