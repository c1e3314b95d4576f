"""`textrnn translit train | predict | eval` (textrnn.cli.translit)."""

from __future__ import annotations

import io
import json
import os
import selectors
import subprocess
import sys
from pathlib import Path

import pytest
import regex
import torch

from textrnn.cli import main
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parent.parent
TINY = ["--embed", "24", "--hidden", "32", "--layers", "1", "--dec-hidden", "48", "--dropout", "0.1"]
DEVANAGARI_WORD = regex.compile(r"^[\u0900-\u097f]+$")


def run(capsys, *args: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    """Call the CLI in-process; return (exit code, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    with pytest.raises(SystemExit) as exit_info:
        main(["translit", *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data) -> Path:
    """Every 100th Dakshina Hindi training row and every 40th dev row."""
    train = shared_data("dakshina_hi/hi.translit.sampled.train.tsv").read_text(encoding="utf-8").splitlines()
    dev = shared_data("dakshina_hi/hi.translit.sampled.dev.tsv").read_text(encoding="utf-8").splitlines()
    folder = tmp_path_factory.mktemp("translitcli")
    (folder / "train.tsv").write_text("\n".join(train[::100]) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("\n".join(dev[::40]) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def model(data: Path) -> Path:
    out = data / "hi.ckpt"
    with pytest.raises(SystemExit) as info:
        main(["translit", "train", str(data / "train.tsv"), "--dev", str(data / "dev.tsv"), "--out", str(out),
              *TINY, "--batch-size", "32", "--max-steps", "300", "--eval-every", "300", "--lr", "0.01",
              "--precision", "fp32", "-q"])  # fmt: skip
    assert info.value.code == 0
    return out


@pytest.mark.parametrize("command", [[], ["train"], ["predict"], ["eval"]])
def test_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "Usage" in out


def test_train_json(capsys, data, tmp_path):
    code, out, err = run(capsys, "train", str(data / "train.tsv"), "--dev", str(data / "dev.tsv"),
                         "--out", str(tmp_path / "m.ckpt"), *TINY, "--attention", "bahdanau", "--max-steps", "3",
                         "--teacher-forcing", "0.8", "--label-smoothing", "0", "--json", "-q")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["steps"] == 3 and result["checkpoint"] == str(tmp_path / "m.ckpt")
    assert 0 <= result["best_val_accuracy"] <= 1 and 0 <= result["best_val_cer"]
    assert (tmp_path / "m.ckpt").exists() and (tmp_path / "m.last.ckpt").exists()
    # the options reach the model and the training (not only accepted)
    ckpt = load_checkpoint(tmp_path / "m.ckpt")
    assert ckpt.meta["model_config"]["attention"] == "bahdanau" and "model.energy.weight" in ckpt.tensors
    assert ckpt.meta["translit"]["teacher_forcing"] == 0.8 and ckpt.meta["translit"]["label_smoothing"] == 0.0


def test_predict_one_word_per_line(capsys, monkeypatch, model):
    code, out, _ = run(capsys, "predict", "-c", str(model), stdin="rahul\n", monkeypatch=monkeypatch)
    assert code == 0 and DEVANAGARI_WORD.match(out.removesuffix("\n")) and out.count("\n") == 1
    code, out, _ = run(capsys, "predict", "-c", str(model), "--nbest", "3", "--scores",
                       stdin="rahul\n\n Bharat \n", monkeypatch=monkeypatch)  # fmt: skip
    lines = out.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""  # one output line per input line
    cells = lines[0].split("\t")
    words, scores = cells[::2], [float(x) for x in cells[1::2]]
    assert len(words) == 3 == len(set(words)) and scores == sorted(scores, reverse=True)
    assert all(DEVANAGARI_WORD.match(w) for w in words)
    _, greedy, _ = run(capsys, "predict", "-c", str(model), "--beam", "1", stdin="rahul\n", monkeypatch=monkeypatch)
    assert DEVANAGARI_WORD.match(greedy.strip())


def test_predict_json_lines(capsys, monkeypatch, model):
    args = ["predict", "-c", str(model), "--precision", "fp32"]
    _, plain, _ = run(capsys, *args, "--nbest", "2", "--scores", stdin="rahul\n\n", monkeypatch=monkeypatch)
    _, out, _ = run(capsys, *args, "--nbest", "2", "--json", stdin="rahul\n\n", monkeypatch=monkeypatch)
    first, empty = (json.loads(line) for line in out.splitlines())
    assert first["input"] == "rahul" and empty == {"input": "", "candidates": []}
    assert "\t".join(f"{c['text']}\t{c['score']:.4f}" for c in first["candidates"]) == plain.split("\n")[0]
    _, out, _ = run(capsys, *args, "--text", "--json", stdin="Mera naam\n", monkeypatch=monkeypatch)
    line = json.loads(out)
    assert line["input"] == "Mera naam" and DEVANAGARI_WORD.match(line["output"].split()[0])


def test_old_train_form_still_works_with_a_notice(capsys, data, tmp_path):
    code, out, err = run(capsys, "train", "--train", str(data / "train.tsv"), "--dev", str(data / "dev.tsv"),
                         "--out", str(tmp_path / "m.ckpt"), *TINY, "--max-steps", "1", "--json", "-q")  # fmt: skip
    assert code == 0 and json.loads(out)["steps"] == 1
    assert err == "textrnn: note: `textrnn translit train --train FILE` is now `textrnn translit train FILE`\n"


def test_predict_file_same_as_stdin(capsys, monkeypatch, model, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("namaste\r\nghar\ndost\n", encoding="utf-8")
    _, from_file, _ = run(capsys, "predict", "-c", str(model), str(path), "--precision", "fp32")
    _, from_stdin, _ = run(capsys, "predict", "-c", str(model), "--precision", "fp32", stdin=path.read_text(),
                           monkeypatch=monkeypatch)  # fmt: skip
    assert from_file == from_stdin and len(from_file.splitlines()) == 3


def test_predict_text_keeps_punctuation_digits_and_spacing(capsys, monkeypatch, model):
    text = "Mera naam, rahul hai!  42 saal...\n\n\tdost-dost (ghar) 3.5%\n"
    code, out, _ = run(capsys, "predict", "-c", str(model), "--text", stdin=text, monkeypatch=monkeypatch)
    assert code == 0
    word = regex.compile(r"[\p{L}\p{M}]+")
    assert word.sub("W", out) == word.sub("W", text)
    assert not regex.search(r"[A-Za-z]", out)


def test_predict_streams_from_stdin(model):
    """The answer to a word arrives while stdin is still open."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "textrnn", "translit", "predict", "-c", str(model), "--read-ahead", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        proc.stdin.write(b"rahul\n")
        proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=60), "no output while stdin stayed open"
        first = proc.stdout.readline().decode("utf-8")
        assert DEVANAGARI_WORD.match(first.strip())
        proc.stdin.write(b"ghar\n")
        proc.stdin.close()
        assert DEVANAGARI_WORD.match(proc.stdout.readline().decode("utf-8").strip())
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_show_attention(capsys, model, tmp_path):
    code, out, _ = run(capsys, "predict", "-c", str(model), "--show-attention", "bharat")
    assert code == 0 and "bharat ->" in out
    header = next(line for line in out.splitlines() if " b " in line.replace("┃", " "))
    assert all(f" {c} " in header.replace("┃", " ") for c in "bharat")
    png = tmp_path / "att.png"
    code, _, err = run(capsys, "predict", "-c", str(model), "--show-attention", "bharat", "--attention-png", str(png))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert code == 1 and "matplotlib" in err and err.count("\n") == 1 and not png.exists()
    else:
        assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_json_and_table(capsys, model, data):
    code, out, _ = run(capsys, "eval", "-c", str(model), str(data / "dev.tsv"), "--json")
    assert code == 0
    result = json.loads(out)
    assert {"top1", "topk", "cer", "any_reference_top1"} <= set(result) and result["k"] == result["beam"] == 5
    assert 0 <= result["top1"] <= result["topk"] <= 1 and 0 < result["cer"] < 1
    code, out, _ = run(capsys, "eval", "-c", str(model), str(data / "dev.tsv"), "--beam", "1")
    assert code == 0 and "top-1 word accuracy (greedy)" in out and "character error rate" in out


def test_malformed_lexicon_exits_1_with_file_and_line(capsys, model, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("rahul\tराहुल\t3\nghar\n", encoding="utf-8")
    code, out, err = run(capsys, "eval", "-c", str(model), str(bad))
    assert code == 1 and out == "" and err.count("\n") == 1 and f"{bad}:2:" in err
    code, _, err = run(capsys, "train", str(bad), "--max-steps", "1", "-q")
    assert code == 1 and f"{bad}:2:" in err and err.count("\n") == 1


def test_wrong_task_checkpoint_exits_1(capsys, tmp_path, data):
    tagger = tmp_path / "tagger.ckpt"
    save_checkpoint(tagger, Checkpoint(task="tagger", meta={}, tensors={"model.w": torch.zeros(1)}))
    for args in (["eval", "-c", str(tagger), str(data / "dev.tsv")], ["predict", "-c", str(tagger)],
                 ["train", "--resume", str(tagger)]):  # fmt: skip
        code, _, err = run(capsys, *args)
        assert code == 1 and "needs a transliteration (translit) checkpoint" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [["predict", "--beam", "0"], ["predict", "--nbest", "6"], ["predict", "--text", "--nbest", "2", "--beam", "3"],
     ["predict", "--read-ahead", "0"], ["predict", "--attention-png", "x.png"], ["predict", "--precision", "fp16"],
     ["predict", "--threads", "-1"], ["eval", "DEV", "--beam", "0"], ["eval", "DEV", "--nbest", "9"],
     ["train", "--teacher-forcing", "1.5"], ["train", "--teacher-forcing", "-0.5"], ["train", "--label-smoothing", "1"],
     ["train", "--attention", "dot"], ["train", "--batch-size", "0"], ["train", "--source-column", "2"],
     ["train", "--direction", "up"], ["train", "--dropout", "1.0"]],
    ids=lambda a: " ".join(a),
)  # fmt: skip
def test_nonsense_options_exit_2(capsys, model, data, args):
    command, rest = args[0], [str(data / "dev.tsv") if a == "DEV" else a for a in args[1:]]
    if command == "train":
        rest = [str(data / "train.tsv"), "--max-steps", "1", "-q", *rest]
    else:
        rest = ["-c", str(model), *rest]
    code, out, err = run(capsys, command, *rest)
    assert code == 2 and out == "" and err.count("\n") == 1, err


def test_resume_continues(capsys, data, tmp_path):
    out = tmp_path / "r.ckpt"
    common = ["--out", str(out), "--eval-every", "100", "-q", "--json"]
    code, text, err = run(capsys, "train", str(data / "train.tsv"), *TINY, "--max-steps", "4", *common)
    assert code == 0, err
    code, text, err = run(capsys, "train", "--resume", str(tmp_path / "r.last.ckpt"), "--max-steps", "7", *common)
    assert code == 0, err
    assert json.loads(text)["steps"] == 7
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "r.last.ckpt"), "--hidden", "8", "-q")
    assert code == 2 and "cannot change when resuming" in err


def _altered(src: Path, dst: Path, change_meta=None, change_tensors=None) -> Path:
    from textrnn.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(src)
    meta = {k: v for k, v in ckpt.meta.items() if k != "header"}
    tensors = dict(ckpt.tensors)
    if change_meta:
        change_meta(meta)
    if change_tensors:
        change_tensors(tensors)
    save_checkpoint(dst, Checkpoint(task="translit", meta=meta, tensors=tensors))
    return dst


# Metadata or tensors that would crash a careless loader: (name, meta change, tensor change).
HOSTILE = [
    ("no model config", lambda m: m.pop("model_config"), None),
    ("huge model", lambda m: m["model_config"].update(dec_hidden=10**9), None),
    ("attention unknown", lambda m: m["model_config"].update(attention="dot"), None),
    ("tokenizers not a dict", lambda m: m.update(tokenizers=[1, 2]), None),
    ("target specials missing", lambda m: m["tokenizers"]["target"].update(vocab=["<unk>", "a", "b", "c"], vocab_size=4), None),
    ("columns garbage", lambda m: m["data"].update(columns=["x", 2]), None),
    ("direction garbage", lambda m: m["data"].update(direction="up"), None),
    ("NaN weights", None, lambda t: t.update({"model.out.weight": torch.full_like(t["model.out.weight"], float("nan"))})),
    ("weight of wrong shape", None, lambda t: t.update({"model.out.bias": torch.zeros(3)})),
]  # fmt: skip


@pytest.mark.parametrize("name, meta, tensors", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_checkpoints_cost_one_line(capsys, model, data, tmp_path, name, meta, tensors):
    bad = _altered(model, tmp_path / "bad.ckpt", meta, tensors)
    code, out, err = run(capsys, "eval", "-c", str(bad), str(data / "dev.tsv"), "--json")
    assert code == 1 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    last = _altered(model.with_name("hi.last.ckpt"), tmp_path / "bad.last.ckpt", meta, tensors)
    code, out, err = run(capsys, "train", "--resume", str(last), "--max-steps", "1", "-q")
    if name not in ("columns garbage", "direction garbage"):  # (resume reads the lexicons anew)
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
