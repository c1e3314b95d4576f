"""`textrnn classify train | predict | eval` (textrnn.cli.classify)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from textrnn.cli import main
from textrnn.engine.checkpoint import Checkpoint, save_checkpoint

TINY = ["--embed", "16", "--hidden", "16", "--dropout", "0.1", "--precision", "fp32", "--quiet"]
GOOD, BAD = ["good", "great", "superb", "lovely"], ["bad", "awful", "dull", "boring"]


def run(capsys, *args: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    """Call the CLI in-process; return (exit code, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", *map(str, args)])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def rows(n: int, offset: int = 0) -> list[tuple[str, str]]:
    """Texts labelled by the sentiment word they hold (deterministic)."""
    out = []
    for i in range(offset, offset + n):
        label = "pos" if i % 2 else "neg"
        word = (GOOD if label == "pos" else BAD)[(i // 2) % 4]
        filler = ["the", "film", "was", "really", "a", "plot"][: 2 + i % 4]
        out.append((" ".join([*filler, word]), label))
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    """A classifier trained through the CLI on a CSV without a header (label first)."""
    folder = tmp_path_factory.mktemp("clfcli")
    (folder / "train.csv").write_text("".join(f"{y},{t}\n" for t, y in rows(200)), encoding="utf-8")
    (folder / "dev.csv").write_text("".join(f'{y},"{t}"\n' for t, y in rows(40, 200)), encoding="utf-8")
    with pytest.raises(SystemExit) as done:
        main(["classify", "train", str(folder / "train.csv"), "--dev", str(folder / "dev.csv"),
              "--out", str(folder / "m.ckpt"), "--epochs", "15", "--lr", "0.01", "--word-dropout", "0", *TINY])  # fmt: skip
    assert done.value.code == 0
    return folder, folder / "m.ckpt"


def test_train_prints_a_json_summary(tmp_path, capsys):
    train = tmp_path / "t.jsonl"
    train.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows(40)), encoding="utf-8")
    code, out, err = run(capsys, "train", train, "--out", tmp_path / "j.ckpt", "--max-steps", "2", "--json", *TINY)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["steps"] == 2 and summary["checkpoint"] == str(tmp_path / "j.ckpt")
    assert {"best_val_accuracy", "best_val_macro_f1"} <= set(summary)


def test_predict_one_label_per_line_from_stdin(model, capsys, monkeypatch):
    _, ckpt = model
    code, out, err = run(capsys, "predict", "-c", ckpt, stdin="the film was superb\nreally dull\n\n",
                         monkeypatch=monkeypatch)  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[:2] == ["pos", "neg"] and len(out.splitlines()) == 3


def test_predict_probabilities_top_and_threshold(model, capsys, monkeypatch):
    folder, ckpt = model
    texts = folder / "texts.txt"
    texts.write_text("a lovely plot\nthe film was awful\n", encoding="utf-8")
    _, out, _ = run(capsys, "predict", texts, "-c", ckpt, "--probs")
    first = out.splitlines()[0].split("\t")
    assert first[0] == "pos" and len(first) == 3 and float(first[2]) > float(first[1])
    assert abs(float(first[1]) + float(first[2]) - 1) < 1e-3
    _, out, _ = run(capsys, "predict", texts, "-c", ckpt, "--top", "2", "--probs")
    assert [f for i, f in enumerate(out.splitlines()[1].split("\t")) if i % 2 == 0] == ["neg", "pos"]
    _, out, _ = run(capsys, "predict", texts, "-c", ckpt, "--threshold", "0.0")
    assert out.splitlines() == ["pos", "pos"]  # P(pos) >= 0 always
    _, out, _ = run(capsys, "predict", texts, "-c", ckpt, "--threshold", "1.0")
    assert out.splitlines() == ["neg", "neg"]


def test_predict_json_is_a_table_that_eval_reads(model, capsys, tmp_path):
    folder, ckpt = model
    code, out, err = run(capsys, "predict", folder / "dev.csv", "-c", ckpt, "--json")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 40 and set(records[0]) == {"text", "label", "probs"}
    assert not records[0]["text"].startswith(("pos,", "neg,"))  # the text column of the CSV
    (tmp_path / "pred.jsonl").write_text(out, encoding="utf-8")
    _, out, _ = run(capsys, "eval", tmp_path / "pred.jsonl", "-c", ckpt, "--json")
    assert json.loads(out)["accuracy"] == 1.0  # the model agrees with its own predictions


def test_explain_writes_token_weight_pairs_off_a_terminal(model, capsys, monkeypatch):
    _, ckpt = model
    _, out, _ = run(capsys, "predict", "-c", ckpt, "--explain", stdin="the plot was superb\n", monkeypatch=monkeypatch)
    label, *pairs = out.rstrip("\n").split("\t")
    assert label == "pos" and [p.split(" ")[0] for p in pairs] == ["the", "plot", "was", "superb"]
    _, out, _ = run(capsys, "predict", "-c", ckpt, "--explain", "--json", stdin="awful\n", monkeypatch=monkeypatch)
    record = json.loads(out)
    assert record["label"] == "neg" and record["tokens"][0][0] == "awful"


def test_eval_reports_and_writes_the_errors(model, capsys, tmp_path):
    folder, ckpt = model
    dev = tmp_path / "dev.tsv"
    dev.write_text("text\tlabel\nthe film was superb\tneg\nreally dull\tneg\n", encoding="utf-8")
    code, out, err = run(capsys, "eval", dev, "-c", ckpt, "--json", "--errors", tmp_path / "wrong.jsonl")
    assert code == 0, err
    result = json.loads(out)
    assert result["accuracy"] == 0.5 and result["errors"] == 1
    assert result["confusion"] == {"labels": ["neg", "pos"], "matrix": [[1, 1], [0, 0]]}
    wrong = [json.loads(line) for line in (tmp_path / "wrong.jsonl").read_text().splitlines()]
    assert wrong[0]["text"] == "the film was superb" and wrong[0]["predicted"] == "pos" and wrong[0]["line"] == 2
    code, out, _ = run(capsys, "eval", dev, "-c", ckpt)
    assert code == 0 and "macro-F1" in out and "confusion" in out


def test_unknown_label_at_eval_is_one_line(model, capsys, tmp_path):
    _, ckpt = model
    dev = tmp_path / "dev.tsv"
    dev.write_text("text\tlabel\ngood\tpos\nmeh\tmixed\n", encoding="utf-8")
    code, out, err = run(capsys, "eval", dev, "-c", ckpt)
    assert code == 1 and out == ""
    assert err.strip() == f"textrnn: error: {dev}:3: label 'mixed' is not one of the classifier's classes (neg, pos)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "--threshold", "0.5", "--top", "2"], "does not go with --top"),
        (["predict", "--threshold", "2"], "--threshold must be in [0, 1]"),
        (["predict", "--format", "lines", "--text-column", "3"], "do not apply to lines input"),
    ],
)
def test_usage_errors_exit_2(model, capsys, monkeypatch, args, message):
    _, ckpt = model
    code, _, err = run(capsys, *args, "-c", ckpt, stdin="x\n", monkeypatch=monkeypatch)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_of_another_task_is_refused(tmp_path, capsys, monkeypatch):
    import torch

    save_checkpoint(tmp_path / "t.ckpt", Checkpoint(task="tagger", meta={}, tensors={"x": torch.zeros(1)}))
    code, _, err = run(capsys, "predict", "-c", tmp_path / "t.ckpt", stdin="x\n", monkeypatch=monkeypatch)
    assert code == 1 and "is a tagger checkpoint; this command needs a sentence classifier (classify) checkpoint" in err


def test_malformed_training_row_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\ngood\t1\nno label here\n", encoding="utf-8")
    code, _, err = run(capsys, "train", bad, *TINY)
    assert code == 1 and err.strip() == f"textrnn: error: {bad}:3: 1 tab-separated fields, expected 2"


def test_resume_continues_from_the_last_checkpoint(tmp_path, capsys):
    train = tmp_path / "t.tsv"
    train.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows(80)), encoding="utf-8")
    out = tmp_path / "r.ckpt"
    assert run(capsys, "train", train, "--out", out, "--max-steps", "2", *TINY)[0] == 0
    code, stdout, err = run(capsys, "train", "--resume", tmp_path / "r.last.ckpt", "--max-steps", "4", "--json", "--quiet")
    assert code == 0, err
    assert json.loads(stdout)["steps"] == 4
    code, _, err = run(capsys, "train", "--resume", tmp_path / "r.last.ckpt", "--hidden", "8")
    assert code == 2 and "cannot change when resuming" in err


def test_resume_forgives_the_same_command_and_names_what_differs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("t.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows(80)), encoding="utf-8")
    command = ["train", "t.tsv", "--out", "r.ckpt", "--format", "tsv", "--pool", "max", *TINY]
    assert run(capsys, *command, "--max-steps", "2")[0] == 0
    code, _, err = run(capsys, *command, "--resume", "r.last.ckpt", "--pool", "mean", "--class-weights", "balanced",
                       "--batch-size", "8", "--tokenizer", "char", "--format", "csv")  # fmt: skip
    assert code == 2, err
    for words in ("--pool mean differs from the checkpoint's max", "--class-weights balanced differs from the "
                  "checkpoint's none", "--batch-size 8 differs from the checkpoint's 32", "--tokenizer char differs "
                  "from the checkpoint's word", "--format csv differs from the checkpoint's tsv"):  # fmt: skip
        assert words in err, err
    code, out, err = run(capsys, *command, "--resume", "r.ckpt", "--max-steps", "4", "--json")
    assert code == 0, err
    assert json.loads(out)["steps"] == 4


def test_plain_progress_of_train_and_eval(model, tmp_path, capsys, monkeypatch):
    """Off a terminal, --progress plain gives key=value lines on stderr, stdout keeps the product."""
    import textrnn.cli.display

    folder, ckpt = model
    train = [a for a in TINY if a != "--quiet"]
    code, out, err = run(capsys, "train", folder / "train.csv", "--dev", folder / "dev.csv", "--out", tmp_path / "p.ckpt",
                         "--max-steps", "3", "--eval-every", "2", "--progress", "plain", *train)  # fmt: skip
    assert code == 0 and out == "", err
    plain = [line for line in err.splitlines() if line.split(" ", 1)[0] in ("start", "progress", "eval", "done")]
    kinds = [line.split(" ", 1)[0] for line in plain]
    assert kinds[0] == "start" and "task=classify" in plain[0] and "eval" in kinds and kinds[-1] == "done"
    monkeypatch.setattr(textrnn.cli.display, "SHOW_AFTER", 0.0)  # as if it took long
    code, out, err = run(capsys, "eval", folder / "dev.csv", "-c", ckpt, "--json", "--progress", "plain")
    assert code == 0 and json.loads(out)["rows"] == 40, err
    assert "unit=texts" in err and err.splitlines()[-1].startswith("done")


def test_info_describes_a_classifier(model, capsys):
    _, ckpt = model
    with pytest.raises(SystemExit) as done:
        main(["info", str(ckpt), "--json"])
    assert done.value.code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["task"] == "classify"
    assert info["data"]["classes"] == {"neg": 100, "pos": 100}
    assert info["tokenizers"]["label"] == {"kind": "label", "vocab_size": 2}
    assert 0.9 <= info["metrics"]["val_accuracy"] <= 1.0


def test_help_of_every_command(capsys):
    for command in ("train", "predict", "eval"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "Example:" in out
