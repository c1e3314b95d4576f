"""`textrnn tokenize train|encode|decode|stats` (textrnn.cli.tokenize)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from textrnn.cli import main
from textrnn.cli.tokenize import show_piece
from textrnn.engine.checkpoint import Checkpoint, save_checkpoint
from textrnn.tokenizers import load_tokenizer, save_tokenizer, train_tokenizer

CORPORA = Path(__file__).resolve().parent.parent / "corpora"
HINDI = CORPORA / "hindi.txt"
ENGLISH = CORPORA / "english.txt"


def run(capsys, *args: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    """Call the CLI in-process; return (exit code, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenize", *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(scope="module")
def char_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "char.json"
    save_tokenizer(train_tokenizer("char", [HINDI.read_text(encoding="utf-8")]), path)
    return path


@pytest.mark.parametrize("command", [[], ["train"], ["encode"], ["decode"], ["stats"]])
def test_help(capsys, command: list[str]) -> None:
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0 and "Usage" in out


@pytest.mark.parametrize("kind", ["char", "word", "bpe", "unigram"])
def test_train_writes_a_tokenizer(capsys, tmp_path, kind: str) -> None:
    out_file = tmp_path / f"{kind}.json"
    args = ["train", str(HINDI), "--kind", kind, "--out", str(out_file)]
    if kind in ("bpe", "unigram"):
        args += ["--vocab-size", "500"]
    code, out, err = run(capsys, *args)
    assert code == 0 and out == ""
    tok = load_tokenizer(out_file)
    assert tok.kind == kind
    assert f"{kind} tokenizer ({tok.vocab_size} ids)" in err


def test_train_options_reach_the_tokenizer(capsys, tmp_path) -> None:
    out_file = tmp_path / "t.json"
    code, _, _ = run(
        capsys, "train", str(ENGLISH), "--unit", "codepoint", "--normalize", "nfkc",
        "--vocab-size", "20", "--user-symbol", "<sep>", "--out", str(out_file),
    )  # fmt: skip
    assert code == 0
    d = load_tokenizer(out_file).to_dict()
    assert (d["unit"], d["normalize"], d["vocab_size"], d["user_symbols"]) == (
        "codepoint", "nfkc", 20, ["<sep>"]
    )  # fmt: skip
    code, _, _ = run(
        capsys, "train", str(ENGLISH), "--kind", "bpe", "--vocab-size", "300",
        "--no-byte-fallback", "--character-coverage", "0.99", "--out", str(out_file),
    )  # fmt: skip
    assert code == 0 and not load_tokenizer(out_file).byte_fallback


def test_encode_decode_round_trip(capsys, monkeypatch, char_file) -> None:
    text = "पीपल वाला पुस्तकालय।\n\nक्षण  शास्त्र\n"
    code, pieces, _ = run(
        capsys, "encode", "-t", str(char_file), stdin=text, monkeypatch=monkeypatch
    )
    assert code == 0
    assert pieces.split("\n") == ["पी प ल ▁ वा ला ▁ पु स्त का ल य ।", "", "क्ष ण ▁ ▁ शा स्त्र", ""]
    code, ids, _ = run(
        capsys, "encode", "--ids", "-t", str(char_file), stdin=text, monkeypatch=monkeypatch
    )
    assert code == 0 and len(ids.splitlines()) == 3
    code, back, _ = run(capsys, "decode", "-t", str(char_file), stdin=ids, monkeypatch=monkeypatch)
    assert code == 0 and back == text


def test_encode_reads_files_and_pipes(tmp_path, char_file) -> None:
    encoded = subprocess.run(
        [sys.executable, "-m", "textrnn", "tokenize", "encode", "--ids", "-t", str(char_file), str(HINDI)],
        capture_output=True, check=True,
    )  # fmt: skip
    decoded = subprocess.run(
        [sys.executable, "-m", "textrnn", "tokenize", "decode", "-t", str(char_file)],
        input=encoded.stdout, capture_output=True, check=True,
    )  # fmt: skip
    assert decoded.stdout.decode("utf-8") == HINDI.read_text(encoding="utf-8")


def test_encode_subword_pieces(capsys, monkeypatch, tmp_path) -> None:
    tok_file = tmp_path / "bpe.json"
    run(
        capsys,
        "train",
        str(ENGLISH),
        "--kind",
        "bpe",
        "--vocab-size",
        "400",
        "--out",
        str(tok_file),
    )
    code, out, _ = run(
        capsys, "encode", "-t", str(tok_file), stdin="the lamp\tlit 😀\n", monkeypatch=monkeypatch
    )
    assert code == 0 and out.startswith("▁the ")
    assert "<0x09>" in out and "<0xF0>" in out and out.count("\n") == 1


def test_encode_with_a_checkpoint(capsys, monkeypatch, tmp_path) -> None:
    tok = train_tokenizer("word", [ENGLISH.read_text(encoding="utf-8")])
    ckpt = tmp_path / "lm.ckpt"
    save_checkpoint(
        ckpt, Checkpoint("lm", {"tokenizers": {"text": tok.to_dict()}}, {"model.w": torch.zeros(1)})
    )
    code, out, _ = run(
        capsys, "encode", "-c", str(ckpt), stdin="The lamp, lit.\n", monkeypatch=monkeypatch
    )
    assert code == 0 and out == "The lamp , lit .\n"
    save_checkpoint(ckpt, Checkpoint("translit", {"tokenizers": {}}, {"model.w": torch.zeros(1)}))
    code, _, err = run(capsys, "encode", "-c", str(ckpt), stdin="x\n", monkeypatch=monkeypatch)
    assert code == 1 and "no single text tokenizer" in err


def test_stats_json_and_table(capsys, char_file) -> None:
    code, out, _ = run(
        capsys, "stats", str(HINDI), "--tokenizer", str(char_file), "--json", "--top", "3"
    )
    assert code == 0
    report = json.loads(out)
    assert report["kind"] == "char" and len(report["top"]) == 3
    assert report["characters"] == len(HINDI.read_text(encoding="utf-8"))
    assert report["unknown_rate"] == 0.0
    assert report["chars_per_token"] == pytest.approx(
        report["characters"] / report["tokens"], abs=1e-3
    )
    code, out, _ = run(capsys, "stats", str(ENGLISH), "--kind", "word", "--top", "5")
    assert code == 0 and "vocabulary size" in out and "most frequent tokens" in out
    code, out, _ = run(capsys, "stats", str(ENGLISH), "-t", str(char_file), "--json")
    assert json.loads(out)["unknown_rate"] > 0.2  # Latin letters are rare in hindi.txt


def test_show_piece_is_unambiguous() -> None:
    assert show_piece("a b") == "a▁b"
    assert show_piece("\t\n\r") == "\\t\\n\\r"
    assert show_piece("\x85\u2028") == "<U+0085><U+2028>"
    assert show_piece("क्\u200dष") == "क्\u200dष"  # joiners are not whitespace


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("textrnn: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["train", "missing.txt", "--out", "t.json"], 1, "missing.txt: no such file"),
        (["train", "{hindi}", "--kind", "chars", "--out", "t.json"], 2, "unknown kind 'chars'"),
        (["train", "{hindi}", "--unit", "byte", "--out", "t.json"], 2, "unknown unit"),
        (["train", "{hindi}", "--normalize", "nfd", "--out", "t.json"], 2, "nfc, nfkc, none"),
        (["train", "{hindi}"], 2, "--out"),
        (["train", "--out", "t.json"], 2, "CORPUS"),
        (
            ["train", "{hindi}", "--kind", "bpe", "--vocab-size", "100000", "--out", "t.json"],
            2,
            "or less",
        ),
        (
            ["train", "--tokenizer-model", "{hindi}", "--out", "t.json"],
            1,
            "not a sentencepiece model",
        ),
        (["encode", "{hindi}"], 2, "exactly one of --tokenizer"),
        (["encode", "-t", "nothere.json", "{hindi}"], 1, "no such tokenizer file"),
        (["encode", "-t", "{hindi}", "{hindi}"], 1, "not a textrnn tokenizer file"),
        (["stats", "{hindi}", "--kind", "word", "-t", "{tok}"], 2, "not both"),
        (["stats", "{hindi}", "--top", "-1"], 2, "--top"),
    ],
)
def test_errors_are_one_line(capsys, monkeypatch, tmp_path, char_file, args, code, message) -> None:
    monkeypatch.chdir(tmp_path)
    args = [a.format(hindi=HINDI, tok=char_file) for a in args]
    got, out, err = run(capsys, *args)
    assert got == code and out == ""
    assert message in _one_error_line(err)


@pytest.mark.parametrize(
    "ids, message",
    [
        ("1 2 x\n", "<stdin>:1: expected space-separated token ids"),
        ("1\n99999\n", "<stdin>:2: token id 99999"),
    ],
)
def test_decode_rejects_bad_ids(capsys, monkeypatch, char_file, ids: str, message: str) -> None:
    code, _, err = run(capsys, "decode", "-t", str(char_file), stdin=ids, monkeypatch=monkeypatch)
    assert code == 1 and message in _one_error_line(err)


def test_invalid_utf8_on_stdin(capsys, monkeypatch, char_file) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\xfe\n")))
    code, _, err = run(capsys, "encode", "-t", str(char_file))
    assert code == 1 and "invalid UTF-8" in _one_error_line(err)


def test_import_sentencepiece_model(capsys, tmp_path) -> None:
    import sentencepiece as spm

    prefix = tmp_path / "sp"
    spm.SentencePieceTrainer.train(
        input=str(ENGLISH),
        model_prefix=str(prefix),
        vocab_size=300,
        model_type="bpe",
        minloglevel=2,
    )
    out_file = tmp_path / "imported.json"
    code, _, _ = run(
        capsys, "train", "--tokenizer-model", str(prefix) + ".model", "--out", str(out_file)
    )
    assert code == 0
    tok = load_tokenizer(out_file)
    assert tok.kind == "bpe" and tok.vocab_size == 301
