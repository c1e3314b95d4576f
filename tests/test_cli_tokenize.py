"""`textrnn tokenize train|encode|decode|stats` (textrnn.cli.tokenize)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from textrnn.cli import main
from textrnn.cli import tokenize as tokenize_cli
from textrnn.engine.checkpoint import Checkpoint, save_checkpoint
from textrnn.text import normalize
from textrnn.tokenizers import (
    UNK,
    UNKNOWN_CHAR,
    Tokenizer,
    detokenize,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

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
    code, back, _ = run(
        capsys, "decode", "--ids", "-t", str(char_file), stdin=ids, monkeypatch=monkeypatch
    )
    assert code == 0 and back == text
    code, back, _ = run(
        capsys, "decode", "-t", str(char_file), stdin=pieces, monkeypatch=monkeypatch
    )
    assert code == 0 and back == text


def test_encode_reads_files_and_pipes(tmp_path, char_file) -> None:
    encoded = subprocess.run(
        [sys.executable, "-m", "textrnn", "tokenize", "encode", "-t", str(char_file), str(HINDI)],
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
    "mode, lines, message",
    [
        (["--ids"], "1 2 x\n", "<stdin>:1: expected space-separated token ids"),
        (["--ids"], "1\n99999\n", "<stdin>:2: token id 99999 is out of range"),
        (["--ids"], "1\n-1\n", "<stdin>:2: token id -1 is out of range"),
        ([], "प ल\n\nप € ल\n", "<stdin>:3: unknown piece '€': not in the char vocabulary"),
        ([], "प\n1 2\n", "<stdin>:2: unknown piece '1'"),  # ids, read as pieces...
        ([], "1 2\n", "decode them with --ids"),  # ...say what to do
        ([], "प \\x\n", "<stdin>:1: bad escape '\\\\x'"),
        ([], "प\\\n", "<stdin>:1: bad escape"),
    ],
)
def test_decode_rejects_bad_input(capsys, monkeypatch, char_file, mode, lines, message) -> None:
    args = ["decode", *mode, "-t", str(char_file)]
    code, _, err = run(capsys, *args, stdin=lines, monkeypatch=monkeypatch)
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


# --- encode | decode: symmetric pipes -------------------------------------------------------------
# `encode -t T | decode -t T` gives back the input in T's normal form, in both modes. The
# normal form, per line (the CLI reads lines ended by "\n", drops a "\r" before it and a
# byte-order mark at the start, and ends every line it writes with "\n"):
# - char: the normalised text, each unit outside the vocabulary as U+FFFD;
# - bpe / unigram (byte fallback): the normalised text, a literal "▁" as a space
#   (sentencepiece's own marker for a space, so it cannot tell them apart);
# - word: `detokenize` of the units, each outside the vocabulary as "<unk>": spaces are
#   not tokens, so only text spaced the way `detokenize` spaces it comes back exactly.
# So text whose units are all in the vocabulary (and, for word, in detokenize's spacing;
# for subwords, without "▁") comes back exactly.

# Characters that the piece display escapes, or that sentencepiece spells in bytes; the
# char and word tokenizers learn them from one extra line so that they are pieces too.
SPECIALS = "\t\\▁\r\x85\u2028\u00a0"
SYMBOL = "< >"  # a user symbol: a char or word piece that holds a space
FOREIGN = ["😀", "€", "e\u0301", "\u0958"]  # outside every vocabulary (or not NFC)
TEXTS = {name: (CORPORA / f"{name}.txt").read_text(encoding="utf-8") for name in ("english", "hindi")}
VOCAB_KINDS = ("grapheme", "codepoint", "word")
PIPE_TOKENIZERS = [f"{c}-{k}" for c in TEXTS for k in (*VOCAB_KINDS, "bpe", "unigram")]


@pytest.fixture(scope="module")
def pipe_tokenizers(tmp_path_factory) -> dict[str, tuple[Path, Tokenizer]]:
    """name -> (tokenizer file, tokenizer), trained once on English or Hindi."""
    folder = tmp_path_factory.mktemp("pipes")
    made = {}
    for name in PIPE_TOKENIZERS:
        corpus, kind = name.split("-")
        text = TEXTS[corpus]
        if kind in ("grapheme", "codepoint"):
            tok = train_tokenizer("char", [text, SPECIALS], unit=kind, user_symbols=[SYMBOL])
        elif kind == "word":
            tok = train_tokenizer("word", [text, SPECIALS], user_symbols=[SYMBOL])
        else:
            tok = train_tokenizer(kind, [text])
        made[name] = (save_tokenizer(tok, folder / f"{name}.json"), tok)
    return made


def run_filter(command, tok_file: Path, stdin: str, ids: bool) -> str:
    """A `tokenize` command function (encode or decode) run on `stdin`; its stdout.

    Called as a function, not through `main`: building the whole Typer app costs about
    0.15 s a call, too much for hundreds of examples (the tests above go through `main`)."""
    out = io.StringIO()
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8")), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out):
            command(None, tokenizer=tok_file, checkpoint=None, ids=ids)
    finally:
        sys.stdin = saved
    return out.getvalue()


def pipe(tok_file: Path, text: str, ids: bool) -> str:
    """`textrnn tokenize encode [--ids] -t T | textrnn tokenize decode [--ids] -t T`."""
    encoded = run_filter(tokenize_cli.encode, tok_file, text, ids)
    return run_filter(tokenize_cli.decode, tok_file, encoded, ids)


def cli_lines(text: str) -> list[str]:
    """The lines that encode reads from `text` on stdin."""
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def normal_form(tok: Tokenizer, line: str) -> str:
    """What decode gives back for `line` (see above), from the Python API."""
    known = set(tok.to_dict().get("vocab", ())) - {UNK}
    if tok.kind == "char":
        return "".join(u if u in known else UNKNOWN_CHAR for u in tok.tokenize(line))
    if tok.kind == "word":
        return detokenize([u if u in known else UNK for u in tok.tokenize(line)])
    return normalize(line, tok.normalize_form).replace("▁", " ")


def comes_back_exactly(tok: Tokenizer, line: str) -> bool:
    """True for the text that the tokenizer gives back exactly (see above)."""
    if tok.kind == "word":
        return not tok.unknown_units(line) and detokenize(tok.tokenize(line)) == line
    if tok.kind == "char":
        return not tok.unknown_units(line)
    return "▁" not in line


def pipe_text(corpus: str) -> st.SearchStrategy[str]:
    """Text from the corpus's characters, the specials, a few foreign ones, BOM and CRLF."""
    alphabet = sorted(set(corpus) | set(SPECIALS) | {"\n", " ", "\ufeff", "<", ">"})
    pieces = st.sampled_from(alphabet) | st.sampled_from([*FOREIGN, "\r\n", SYMBOL])
    return st.lists(pieces, max_size=40).map("".join)


@pytest.mark.parametrize("name", PIPE_TOKENIZERS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_encode_decode_pipe_gives_the_normal_form(pipe_tokenizers, name, data) -> None:
    tok_file, tok = pipe_tokenizers[name]
    text = data.draw(pipe_text(TEXTS[name.split("-")[0]]), label="text")
    lines = cli_lines(text)
    expected = "".join(normal_form(tok, line) + "\n" for line in lines)
    for ids in (False, True):
        got = pipe(tok_file, text, ids)
        assert got == expected
        for line, back in zip(lines, got.split("\n"), strict=False):
            if comes_back_exactly(tok, line):
                assert back == normalize(line, tok.normalize_form)


@pytest.mark.parametrize("name", [n for n in PIPE_TOKENIZERS if n.endswith(VOCAB_KINDS)])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_encode_decode_pipe_is_exact_on_text_in_normal_form(pipe_tokenizers, name, data) -> None:
    """Lines made of the vocabulary's own pieces (a word tokenizer's spaced by detokenize)
    come back byte for byte, in both modes."""
    tok_file, tok = pipe_tokenizers[name]
    pieces = [p for p in tok.to_dict()["vocab"] if p not in (UNK, "\n")]
    lines = data.draw(st.lists(st.lists(st.sampled_from(pieces), max_size=12), max_size=3))
    join = detokenize if tok.kind == "word" else "".join
    text = "".join(join(line) + "\n" for line in lines)
    assume(not any(join(line).endswith("\r") for line in lines))  # "\r\n" ends a line
    # pieces side by side need not be in normal form (virama + nukta: NFC puts the nukta first)
    assume(text == normalize(text, tok.normalize_form))
    if tok.kind == "char":  # units side by side may form other graphemes (क् + ष = क्ष)
        assume(not tok.unknown_units(text))
    else:  # and words side by side other tokens ("don" + "'" + "t")
        assume(all(tok.tokenize(join(line)) == line for line in lines))
    for ids in (False, True):
        assert pipe(tok_file, text, ids) == text


@pytest.mark.parametrize("name", PIPE_TOKENIZERS)
def test_encode_decode_pipe_gives_the_corpus_back(capsys, pipe_tokenizers, name) -> None:
    tok_file, _ = pipe_tokenizers[name]
    corpus = CORPORA / f"{name.split('-')[0]}.txt"
    for mode in ([], ["--ids"]):
        code, encoded, _ = run(capsys, "encode", *mode, "-t", str(tok_file), str(corpus))
        assert code == 0
        (corpus_dir := tok_file.parent / "encoded").mkdir(exist_ok=True)
        (corpus_dir / "in.txt").write_text(encoded, encoding="utf-8")
        code, decoded, _ = run(capsys, "decode", *mode, "-t", str(tok_file), str(corpus_dir / "in.txt"))
        assert code == 0 and decoded == TEXTS[corpus.stem]
