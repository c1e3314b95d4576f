"""`textrnn tag train | predict | eval | split` (textrnn.cli.tag)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch

from textrnn.cli import main
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from textrnn.formats.conllu import Sentence, load_sentences, write_sentences

TINY = [
    "--word-dim",
    "16",
    "--char-dim",
    "8",
    "--char-hidden",
    "8",
    "--hidden",
    "24",
    "--layers",
    "1",
]


def run(capsys, *args: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    """Call the CLI in-process; return (exit code, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    with pytest.raises(SystemExit) as exit_info:
        main(["tag", *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data) -> Path:
    """200 EWT training sentences (CoNLL-U), 50 dev ones, and an NER-style BIO version of both."""
    train = load_sentences(shared_data("ud_english_ewt/en_ewt-ud-train.conllu"), keep_rows=True)
    dev = load_sentences(shared_data("ud_english_ewt/en_ewt-ud-dev.conllu"), keep_rows=True)
    train, dev = train[:200], dev[:50]
    folder = tmp_path_factory.mktemp("tagcli")
    write_sentences(folder / "train.conllu", train)
    write_sentences(folder / "dev.conllu", dev)
    for name, sents in (("train", train), ("dev", dev)):  # runs of PROPN as BIO "names"
        write_sentences(
            folder / f"{name}.bio.tsv",
            [Sentence(s.words, to_bio(s.tags)) for s in sents],
            fmt="tsv",
        )
    return folder


def to_bio(tags: list[str]) -> list[str]:
    out, prev = [], None
    for t in tags:
        out.append(("I-NAME" if prev == "PROPN" else "B-NAME") if t == "PROPN" else "O")
        prev = t
    return out


@pytest.fixture(scope="module")
def model(data: Path) -> Path:
    out = data / "pos.ckpt"
    with pytest.raises(SystemExit) as info:
        main(["tag", "train", str(data / "train.conllu"), "--dev", str(data / "dev.conllu"),
              "--out", str(out), *TINY, "--max-steps", "40", "--lr", "0.01", "--precision", "fp32", "-q"])  # fmt: skip
    assert info.value.code == 0
    return out


@pytest.mark.parametrize("command", [[], ["train"], ["predict"], ["eval"], ["split"]])
def test_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "Usage" in out


def test_train_json(capsys, data, tmp_path):
    code, out, err = run(capsys, "train", str(data / "train.conllu"), "--dev", str(data / "dev.conllu"),
                         "--out", str(tmp_path / "m.ckpt"), *TINY, "--max-steps", "3", "--json", "-q")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["steps"] == 3 and result["checkpoint"] == str(tmp_path / "m.ckpt")
    assert 0 <= result["best_val_accuracy"] <= 1
    assert (tmp_path / "m.ckpt").exists() and (tmp_path / "m.last.ckpt").exists()


def test_predict_formats(capsys, monkeypatch, model):
    text = "I like green apples .\n\nHello  world\n"
    code, out, _ = run(capsys, "predict", "-c", str(model), stdin=text, monkeypatch=monkeypatch)
    assert code == 0
    lines = out.split("\n")
    assert lines[1] == "" and len(lines) == 4  # one output line per input line
    assert [t.rsplit("/", 1)[0] for t in lines[0].split(" ")] == [
        "I",
        "like",
        "green",
        "apples",
        ".",
    ]
    assert [t.rsplit("/", 1)[0] for t in lines[2].split(" ")] == ["Hello", "world"]
    tags = [t.rsplit("/", 1)[1] for t in lines[0].split(" ")]

    code, out, _ = run(
        capsys, "predict", "-c", str(model), "--output-format", "json", stdin=text, monkeypatch=monkeypatch
    )
    objs = [json.loads(line) for line in out.splitlines()]
    assert (
        objs[0] == {"words": ["I", "like", "green", "apples", "."], "tags": tags}
        and objs[1]["words"] == []
    )

    code, out, _ = run(
        capsys,
        "predict",
        "-c",
        str(model),
        "--output-format",
        "tsv",
        stdin="a b\n",
        monkeypatch=monkeypatch,
    )
    rows = out.split("\n")
    assert [r.split("\t")[0] for r in rows[:2]] == ["a", "b"] and rows[2] == ""

    code, out, _ = run(
        capsys,
        "predict",
        "-c",
        str(model),
        "--output-format",
        "conllu",
        stdin="a b\n",
        monkeypatch=monkeypatch,
    )
    rows = [r.split("\t") for r in out.strip("\n").split("\n")]
    assert [r[:2] for r in rows] == [["1", "a"], ["2", "b"]] and all(len(r) == 10 for r in rows)


def test_json_is_output_format_json_and_old_forms_still_work_with_a_notice(capsys, monkeypatch, model, data, tmp_path):
    text = "I like green apples .\nHello world\n"
    args = ["predict", "-c", str(model), "--precision", "fp32"]
    _, want, err = run(capsys, *args, "--output-format", "json", stdin=text, monkeypatch=monkeypatch)
    assert err == ""
    assert run(capsys, *args, "--json", stdin=text, monkeypatch=monkeypatch)[1] == want
    # before one meaning per option name, --format named what predict writes
    code, out, err = run(capsys, *args, "--format", "json", stdin=text, monkeypatch=monkeypatch)
    assert code == 0 and out == want
    assert err == "textrnn: note: `textrnn tag predict --format json` is now `--output-format json`\n"
    code, out, err = run(capsys, *args, "--input-format", "conllu", str(data / "dev.conllu"))
    assert code == 0 and out == run(capsys, *args, "--format", "conllu", str(data / "dev.conllu"))[1]
    assert err == "textrnn: note: `textrnn tag predict --input-format` is now `--format`\n"
    # and `tag train --train FILE` named the training file
    code, out, err = run(capsys, "train", "--train", str(data / "train.conllu"), "--dev", str(data / "dev.conllu"),
                         "--out", str(tmp_path / "m.ckpt"), *TINY, "--max-steps", "1", "--json", "-q")  # fmt: skip
    assert code == 0 and json.loads(out)["steps"] == 1
    assert err == "textrnn: note: `textrnn tag train --train FILE` is now `textrnn tag train FILE`\n"
    assert run(capsys, "train", str(data / "train.conllu"), "--train", str(data / "train.conllu"))[0] == 2


def test_predict_file_same_as_stdin_and_fp32_vs_auto(capsys, monkeypatch, model, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("The cat sat .\r\nDogs bark\n", encoding="utf-8")
    _, from_file, _ = run(capsys, "predict", "-c", str(model), str(path), "--precision", "fp32")
    _, from_stdin, _ = run(
        capsys,
        "predict",
        "-c",
        str(model),
        "--precision",
        "fp32",
        stdin=path.read_text(),
        monkeypatch=monkeypatch,
    )
    assert from_file == from_stdin and len(from_file.splitlines()) == 2


def test_predict_conllu_fills_the_tag_column_only(capsys, monkeypatch, model, data):
    original = (data / "dev.conllu").read_text(encoding="utf-8")
    code, out, _ = run(
        capsys, "predict", "-c", str(model), "--format", "conllu", str(data / "dev.conllu")
    )
    assert code == 0
    a, b = original.split("\n"), out.split("\n")
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if x.startswith("#") or not x or x.split("\t")[0].isdigit() is False:
            assert x == y  # comments, blank lines, ranges, empty nodes kept
        else:
            cx, cy = x.split("\t"), y.split("\t")
            assert cx[:3] == cy[:3] and cx[4:] == cy[4:]


def test_eval_json_and_table(capsys, model, data):
    code, out, _ = run(capsys, "eval", "-c", str(model), str(data / "dev.conllu"), "--json")
    assert code == 0
    result = json.loads(out)
    assert {"accuracy", "oov_accuracy", "per_tag", "tokens"} <= set(
        result
    ) and "span_f1" not in result
    assert 0.3 < result["accuracy"] <= 1  # 40 steps learn the frequent tags
    code, out, _ = run(capsys, "eval", "-c", str(model), str(data / "dev.conllu"))
    assert code == 0 and "accuracy" in out and "NOUN" in out


def test_ner_with_crf_reports_span_f1(capsys, data, tmp_path):
    out = tmp_path / "ner.ckpt"
    code, _, err = run(capsys, "train", str(data / "train.bio.tsv"), "--dev", str(data / "dev.bio.tsv"),
                       "--out", str(out), "--crf", *TINY, "--max-steps", "20", "-q")  # fmt: skip
    assert code == 0, err
    ckpt = load_checkpoint(out)  # --crf reaches the model: its transition scores are trained and saved
    assert ckpt.meta["model_config"]["crf"] is True and "model.crf.transitions" in ckpt.tensors
    code, text, _ = run(capsys, "eval", "-c", str(out), str(data / "dev.bio.tsv"), "--json")
    result = json.loads(text)
    assert {"accuracy", "oov_accuracy", "span_f1", "span_precision", "span_recall"} <= set(result)
    assert result["scheme"] == "BIO" and "NAME" in result["spans"]
    code, text, _ = run(
        capsys,
        "predict",
        "-c",
        str(out),
        str(data / "dev.conllu"),
        "--format",
        "conllu",
        "--output-format",
        "tsv",
    )
    tags = [line.split("\t")[1] for line in text.splitlines() if line]
    prev = "O"
    for t in tags + ["O"]:  # constrained decoding: no I- after O
        assert not (t == "I-NAME" and prev == "O")
        prev = t if t != "" else "O"


def test_malformed_file_exits_1_with_file_and_line(capsys, model, tmp_path):
    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n2\tbroken line\n\n", encoding="utf-8")
    code, out, err = run(capsys, "eval", "-c", str(model), str(bad))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and f"{bad}:2:" in err
    code, _, err = run(capsys, "train", str(bad), "--max-steps", "1", "-q")
    assert code == 1 and f"{bad}:2:" in err and err.count("\n") == 1


def test_wrong_task_checkpoint_exits_1(capsys, tmp_path, data):
    lm = tmp_path / "lm.ckpt"
    save_checkpoint(lm, Checkpoint(task="lm", meta={}, tensors={"model.w": torch.zeros(1)}))
    code, _, err = run(capsys, "eval", "-c", str(lm), str(data / "dev.conllu"))
    assert code == 1 and "needs a tagger checkpoint" in err and err.count("\n") == 1
    code, _, err = run(capsys, "predict", "-c", str(lm), str(data / "dev.conllu"))
    assert code == 1 and "needs a tagger checkpoint" in err


def test_usage_errors_exit_2(capsys, model, data):
    assert run(capsys, "train")[0] == 2  # no TRAIN
    assert run(capsys, "train", str(data / "train.conllu"), "--column", "lemma")[0] == 2
    assert run(capsys, "predict", "-c", str(model), "--read-ahead", "0")[0] == 2
    assert run(capsys, "predict", "-c", str(model), "--threads", "-1")[0] == 2
    assert run(capsys, "predict", "-c", str(model), "--precision", "fp16")[0] == 2


def test_split(capsys, data, tmp_path):
    code, out, _ = run(capsys, "split", str(data / "train.conllu"), "--out-dir", str(tmp_path))
    assert code == 0
    paths = [Path(p) for p in out.split()]
    assert [len(load_sentences(p)) for p in paths] == [160, 20, 20]


@pytest.mark.parametrize("output", ["conllu", "tsv"])
def test_what_predict_writes_eval_reads(capsys, model, data, tmp_path, output):
    """`tag predict --output-format conllu|tsv` writes a file that `tag eval` reads: scored
    against its own predictions, the model is right on every token."""
    code, out, _ = run(capsys, "predict", "-c", str(model), "--format", "conllu", str(data / "dev.conllu"),
                       "--output-format", output, "--precision", "fp32")  # fmt: skip
    assert code == 0
    predicted = tmp_path / f"predicted.{output}"
    predicted.write_text(out, encoding="utf-8")
    code, out, _ = run(capsys, "eval", str(predicted), "-c", str(model), "--format", output, "--json",
                       "--precision", "fp32")  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert result["accuracy"] == 1.0 and result["tokens"] == sum(
        1 for line in (data / "dev.conllu").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#") and line.split("\t")[0].isdigit()
    )
