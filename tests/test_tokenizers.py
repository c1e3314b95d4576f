"""Char / word / subword tokenizers (textrnn.tokenizers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import regex
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from textrnn.errors import DataError, TextrnnError, UsageError
from textrnn.formats.plain import iter_lines, iter_text_chunks, read_text
from textrnn.text import graphemes, is_combining_start, normalize
from textrnn.tokenizers import (
    UNK,
    CharTokenizer,
    SubwordTokenizer,
    WordTokenizer,
    corpus_stats,
    detokenize,
    load_sentencepiece_model,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_dict,
    train_tokenizer,
)

CORPORA = Path(__file__).resolve().parent.parent / "corpora"
ENGLISH = (CORPORA / "english.txt").read_text(encoding="utf-8")
HINDI = (CORPORA / "hindi.txt").read_text(encoding="utf-8")
BOTH = ENGLISH + HINDI


@pytest.fixture(scope="module")
def subwords() -> dict[str, SubwordTokenizer]:
    """Small bpe and unigram models of the two project corpora, trained once."""
    return {
        kind: train_tokenizer(kind, [ENGLISH, HINDI], vocab_size=600) for kind in ("bpe", "unigram")
    }


MIXED = st.text(
    alphabet=st.sampled_from(
        list("abcdefghijklmnopqrstuvwxyzTM ,.;:!?'\"()-\n\t0123")
        + list("कखगजडफषसतरनमदछचय")
        + list("ािीुूेैोौंँः़्।॥०१९")
        + ["\u200d", "\u200c", "😀", "é", "\u0301", "\u0958"]
    ),
    max_size=60,
)


# --- char ------------------------------------------------------------------------------------


def test_char_vocabulary_order_and_unknowns() -> None:
    tok = train_tokenizer("char", ["abacab\n"])
    assert isinstance(tok, CharTokenizer)
    assert tok.to_dict()["vocab"] == [UNK, "a", "b", "\n", "c"]  # by count, ties by text
    assert tok.unk_id == 0 and tok.special_ids == frozenset({0}) and tok.is_special(0)
    assert tok.encode("cab") == [4, 1, 2]
    assert tok.encode("xay") == [0, 1, 0]
    assert tok.unknown_units("xay yz x") == ["x", "y", " ", "z"]
    assert tok.decode([0, 1]) == "\ufffda"
    with pytest.raises(DataError, match="out of range"):
        tok.decode([5])
    with pytest.raises(DataError, match="out of range"):
        tok.decode([-1])


def test_char_caps() -> None:
    text = "aaaabbbcc d"
    assert train_tokenizer("char", [text], vocab_size=3).to_dict()["vocab"] == [UNK, "a", "b"]
    assert train_tokenizer("char", [text], min_count=3).to_dict()["vocab"] == [UNK, "a", "b"]
    with pytest.raises(UsageError, match="at least 2"):
        train_tokenizer("char", [text], vocab_size=1)


def test_char_units_grapheme_vs_codepoint() -> None:
    text = "क्षत्रिय स्त्री"
    by_grapheme = train_tokenizer("char", [text])
    by_codepoint = train_tokenizer("char", [text], unit="codepoint")
    assert by_grapheme.tokenize("क्षत्रिय") == ["क्ष", "त्रि", "य"]
    assert by_codepoint.tokenize("क्ष") == ["क", "्", "ष"]
    assert by_codepoint.to_dict()["unit"] == "codepoint"
    for tok in (by_grapheme, by_codepoint):
        assert tok.decode(tok.encode(text)) == text
        assert tok.count_chars(text) == len(text)


def test_char_user_symbols_are_single_tokens() -> None:
    tok = train_tokenizer("char", ["<eos>ab<eos>"], user_symbols=["<eos>"])
    assert tok.to_dict()["vocab"][:2] == [UNK, "<eos>"]
    assert tok.tokenize("a<eos>b") == ["a", "<eos>", "b"]
    assert tok.decode(tok.encode("a<eos>b")) == "a<eos>b"
    with pytest.raises(UsageError):
        train_tokenizer("char", ["ab"], user_symbols=[UNK])


def test_nfc_handling_of_nukta() -> None:
    tok = train_tokenizer("char", ["ज़रा फ़िर"])  # typed with a combining nukta
    precomposed = "\u095b\u0930\u093e"  # ज़रा with the precomposed letter
    assert tok.encode(precomposed) == tok.encode("ज\u093cरा")
    assert tok.unknown_units(precomposed) == []
    assert tok.decode(tok.encode(precomposed)) == normalize(precomposed)
    raw = train_tokenizer("char", ["ज़रा"], normalize="none")
    assert raw.unknown_units(precomposed) == ["\u095b"]


@given(MIXED, st.sampled_from(["grapheme", "codepoint"]))
def test_char_round_trip(s: str, unit: str) -> None:
    tok = train_tokenizer("char", [s or "x"], unit=unit)
    assert tok.decode(tok.encode(s)) == normalize(s)
    assert tok.unknown_units(s) == []
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.encode(s) == tok.encode(s)


# --- word ------------------------------------------------------------------------------------


def test_word_splitting() -> None:
    tok = train_tokenizer("word", ["x"])
    text = 'He said: "don\'t go"... 3.14, 1,000-watt at 4 a.m. (ok)\r\nनमस्ते! क्षत्रिय ज़िंदगी। १९४७ ॥'
    assert tok.tokenize(text) == [
        "He", "said", ":", '"', "don't", "go", '"', ".", ".", ".", "3.14", ",", "1,000-watt", "at", "4",
        "a.m.", "(", "ok", ")", "\n",
        "नमस्ते", "!", "क्षत्रिय", "ज़िंदगी", "।", "१९४७", "॥",
    ]  # fmt: skip


def test_word_round_trip_on_project_corpora() -> None:
    for text in (ENGLISH, HINDI):
        tok = train_tokenizer("word", [text])
        assert tok.decode(tok.encode(text)) == text
        assert tok.unknown_units(text) == []
        assert all(not regex.search(r"\s", t) for t in tok.tokenize(text) if t != "\n")


def test_word_unknowns_and_caps() -> None:
    tok = train_tokenizer("word", ["the cat, the dog. the end"], vocab_size=6)
    assert isinstance(tok, WordTokenizer)
    assert tok.to_dict()["vocab"] == [UNK, "\n", "the", ",", ".", "cat"]  # "\n" is always kept
    assert tok.unknown_units("the bird and the dog") == ["bird", "and", "dog"]
    assert tok.decode(tok.encode("the bird, the cat.")) == "the <unk>, the cat."
    assert train_tokenizer("word", ["a a b"], min_count=2).to_dict()["vocab"] == [UNK, "\n", "a"]


def test_detokenize_spacing() -> None:
    assert detokenize(["(", "Hi", ",", "you", ")", "!", "\n", "Yes", "--", "no", "।"]) == (
        "(Hi, you)!\nYes--no।"
    )
    assert detokenize(['"', "Go", ",", '"', "she", "said", "."]) == '"Go," she said.'
    assert detokenize(["'", "Tis", "so", ".", "'"]) == "'Tis so.'"
    assert detokenize(["out", "o'", "the", "ladies'", ",", "he", "said", ".", "'", "Go"]) == (
        "out o' the ladies' , he said.' Go"
    )
    assert detokenize(["a", "-", "b", "--", "-", "c"]) == "a - b-- - c"


# Whole units only (an orphan mark would join the punctuation before it) and no straight
# apostrophe, whose reading as a quote or an elision depends on the spacing that is lost.
WORDY = st.lists(
    st.sampled_from(
        list('ab1 ,.;:!?()"-\n\t') + ["कि", "क्ष", "।", "॥", "—", "😀", "’", "“", "\r\n", "$"]
    ),
    max_size=30,
).map("".join)


@given(WORDY)
def test_detokenized_text_tokenizes_the_same(s: str) -> None:
    tok = train_tokenizer("word", ["x"])
    tokens = tok.tokenize(s)
    assert tok.tokenize(detokenize(tokens)) == tokens


@given(MIXED)
def test_word_tokens_keep_line_structure(s: str) -> None:
    tok = train_tokenizer("word", [s, "x"])
    tokens = tok.tokenize(s)
    text = normalize(s).replace("\r\n", "\n")
    assert tokens.count("\n") == text.count("\n")
    assert all(t == "\n" or not regex.search(r"\s", t) for t in tokens)
    assert tok.decode(tok.encode(s)).count("\n") == text.count("\n")


# --- subword ---------------------------------------------------------------------------------


def test_subword_basics(subwords) -> None:
    for kind, tok in subwords.items():
        assert tok.kind == kind and tok.vocab_size == 600 and tok.byte_fallback
        assert tok.newline_id == 599 and not tok.is_special(tok.newline_id)
        assert tok.is_special(tok.unk_id)
        ids = tok.encode("one\n\ntwo\n")
        assert ids.count(tok.newline_id) == 3
        assert tok.decode(ids) == "one\n\ntwo\n"
        assert tok.tokenize("a\nb").count("\n") == 1
        assert tok.id_to_piece(tok.newline_id) == "\n"


@settings(max_examples=60, deadline=None)
@given(MIXED)
def test_subword_round_trip(subwords, s: str) -> None:
    for tok in subwords.values():
        assert tok.decode(tok.encode(s)) == normalize(s)
        assert tok.unknown_units(s) == []


def test_byte_fallback_spells_unseen_text(subwords) -> None:
    bpe = subwords["bpe"]
    text = "emoji 😀 and Ελληνικά and 中文"
    pieces = bpe.tokenize(text)
    assert "<0xF0>" in pieces
    assert bpe.decode(bpe.encode(text)) == text
    assert bpe.unk_id not in bpe.encode(text)


def test_without_byte_fallback_unknowns_are_named() -> None:
    tok = train_tokenizer("unigram", [ENGLISH], vocab_size=300, byte_fallback=False)
    assert not tok.byte_fallback
    assert tok.unknown_units("the 😀 नमस्ते") == ["😀", "न", "म", "स", "्", "त", "े"]
    assert tok.unk_id in tok.encode("the 😀")
    assert tok.decode(tok.encode("the 😀")) == "the \ufffd"


def test_subword_user_symbols() -> None:
    tok = train_tokenizer("bpe", [ENGLISH], vocab_size=400, user_symbols=["<sep>"])
    assert "<sep>" in tok.tokenize("a<sep>b")
    assert tok.decode(tok.encode("a <sep> b")) == "a <sep> b"
    with pytest.raises(UsageError, match="newline"):
        train_tokenizer("bpe", [ENGLISH], user_symbols=["a\nb"])


def test_subword_vocab_size_errors() -> None:
    with pytest.raises(UsageError, match=r"too large .*--vocab-size \d+ or less"):
        train_tokenizer("bpe", ["hello world\nthe cat sat\n"], vocab_size=5000)
    with pytest.raises(UsageError, match=r"too small.*256 byte pieces.*--vocab-size \d+ or more"):
        train_tokenizer("unigram", [ENGLISH], vocab_size=50)
    auto = train_tokenizer("unigram", ["hello world\nthe cat sat\n"])  # no size: what fits
    assert 260 < auto.vocab_size < 300


def test_subword_corpus_problems() -> None:
    with pytest.raises(DataError, match="no text"):
        train_tokenizer("bpe", ["\n\n"], vocab_size=300)

    def broken():
        yield "some text\n"
        raise DataError("corpus.txt: invalid UTF-8 at byte 9 (line 2)")

    with pytest.raises(DataError, match="invalid UTF-8"):
        train_tokenizer("bpe", broken(), vocab_size=300)


# --- every kind ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_kinds(subwords) -> dict[str, object]:
    return {
        "char": train_tokenizer("char", [BOTH]),
        "codepoint": train_tokenizer("char", [BOTH], unit="codepoint"),
        "word": train_tokenizer("word", [BOTH]),
        **subwords,
    }


def test_dict_round_trip_is_exact(all_kinds, tmp_path) -> None:
    for name, tok in all_kinds.items():
        d = tok.to_dict()
        assert json.loads(json.dumps(d)) == d
        again = tokenizer_from_dict(d)
        assert type(again) is type(tok) and again.to_dict() == d, name
        assert again.encode(BOTH) == tok.encode(BOTH)
        path = save_tokenizer(tok, tmp_path / f"{name}.json")
        assert load_tokenizer(path).to_dict() == d
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.json" for n in all_kinds)


def test_chunked_encoding_equals_whole(all_kinds) -> None:
    chunks = list(iter_text_chunks(CORPORA / "hindi.txt", chunk_bytes=1000))
    assert len(chunks) > 3
    for tok in all_kinds.values():
        assert [i for c in chunks for i in tok.encode(c)] == tok.encode(HINDI)
        assert sum(tok.count_chars(c) for c in chunks) == len(HINDI)


def test_corpus_stats(all_kinds) -> None:
    report = corpus_stats(all_kinds["word"], [ENGLISH], top=3)
    assert report["characters"] == len(ENGLISH) and report["unknown_tokens"] == 0
    assert report["tokens"] == len(all_kinds["word"].encode(ENGLISH))
    assert [row["piece"] for row in report["top"]][:1] == [","] or len(report["top"]) == 3
    stats = corpus_stats(train_tokenizer("char", ["ab"]), ["abcab"])
    assert stats["unknown_tokens"] == 1 and stats["unknown_units"] == ["c"]
    assert stats["unknown_rate"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    "data, message",
    [
        ([1, 2], "not a JSON object"),
        ({"kind": "char"}, "format"),
        ({"format": 1, "kind": "morpheme"}, "unknown tokenizer kind 'morpheme'"),
        ({"format": 1, "kind": "char", "unit": "grapheme", "normalize": "nfc"}, "missing field"),
        ({"format": 1, "kind": "char", "unit": "byte", "normalize": "nfc", "vocab": [UNK]}, "unit"),
        (
            {"format": 1, "kind": "char", "unit": "grapheme", "normalize": "nfc", "vocab": ["a"]},
            UNK,
        ),
        ({"format": 1, "kind": "word", "normalize": "nfc", "vocab": [UNK, "a", "a"]}, "duplicate"),
        ({"format": 1, "kind": "word", "normalize": "nfc", "vocab": "<unk>ab"}, "list"),
        ({"format": 1, "kind": "word", "normalize": "nfc", "vocab": [UNK], "vocab_size": 9}, "9"),
        ({"format": 1, "kind": "word", "normalize": "nfd", "vocab": [UNK]}, "nfd"),
        ({"format": 1, "kind": "bpe", "normalize": "nfc", "model": "%%%"}, "base64"),
        ({"format": 1, "kind": "bpe", "normalize": "nfc", "model": "AAAA"}, "sentencepiece"),
    ],
)
def test_malformed_dicts_raise(data, message: str) -> None:
    with pytest.raises(TextrnnError, match=regex.escape(message)):
        tokenizer_from_dict(data)


def test_bad_tokenizer_files(tmp_path) -> None:
    with pytest.raises(DataError, match="no such tokenizer file"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not a textrnn tokenizer file"):
        load_tokenizer(bad)
    model = tmp_path / "m.model"
    model.write_bytes(b"\x0a\x05\x00\xff")
    with pytest.raises(DataError, match="--tokenizer-model"):
        load_tokenizer(model)
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"format": 1, "kind": "bytes"}', encoding="utf-8")
    with pytest.raises(DataError, match="foreign.json: unknown tokenizer kind"):
        load_tokenizer(foreign)
    tok = train_tokenizer("char", ["a"])
    (tmp_path / "a_file").write_text("", encoding="utf-8")
    with pytest.raises(TextrnnError, match="a_file/t.json: cannot write"):
        save_tokenizer(tok, tmp_path / "a_file" / "t.json")
    # the one atomic write (textrnn.files) makes missing folders, as checkpoint saves do
    saved = save_tokenizer(tok, tmp_path / "new" / "dir" / "t.json")
    assert load_tokenizer(saved).to_dict() == tok.to_dict()
    assert [p.name for p in saved.parent.iterdir()] == ["t.json"]  # no temporary file left


def test_train_rejects_bad_options() -> None:
    with pytest.raises(UsageError, match="char, word, bpe, unigram"):
        train_tokenizer("chars", ["a"])
    with pytest.raises(UsageError, match="grapheme, codepoint"):
        train_tokenizer("char", ["a"], unit="byte")
    with pytest.raises(UsageError, match="coverage"):
        train_tokenizer("bpe", ["a"], character_coverage=0)
    with pytest.raises(DataError, match="no text"):
        train_tokenizer("char", [])


# --- importing sentencepiece models ------------------------------------------------------------


def _write_sp_model(tmp_path: Path, model_type: str) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(ENGLISH, encoding="utf-8")
    prefix = tmp_path / model_type
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), model_type=model_type,
        vocab_size=300 if model_type != "char" else 70, minloglevel=2,
    )  # fmt: skip
    return prefix.with_suffix(".model")


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_import_sentencepiece_model(tmp_path, model_type: str) -> None:
    tok = load_sentencepiece_model(_write_sp_model(tmp_path, model_type))
    assert tok.kind == model_type and tok.normalize_form == "none"
    assert tok.vocab_size == 301
    assert tok.decode(tok.encode("The lamp was lit.\nAll well.")) == "The lamp was lit.\nAll well."
    assert tokenizer_from_dict(tok.to_dict()).encode("Cocoa") == tok.encode("Cocoa")
    assert tok.special_ids >= {tok.unk_id}


def test_import_rejects_other_files(tmp_path) -> None:
    with pytest.raises(DataError, match="type 'char'"):
        load_sentencepiece_model(_write_sp_model(tmp_path, "char"))
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"definitely not a model")
    with pytest.raises(DataError, match="not a sentencepiece model"):
        load_sentencepiece_model(junk)
    with pytest.raises(DataError, match="cannot read"):
        load_sentencepiece_model(tmp_path / "absent.model")


# --- real data -------------------------------------------------------------------------------


def _pud_text(shared_data) -> str:
    """The 800 sentences of the Hindi PUD sample, one per line."""
    path = shared_data("ud_hindi_pud/hi_pud-ud-first800.conllu")
    prefix = "# text = "
    return "".join(line[len(prefix) :] + "\n" for line in iter_lines(path) if line.startswith(prefix))


def test_hindi_pud_char_and_bpe(shared_data) -> None:
    text = _pud_text(shared_data)
    assert text.count("\n") == 800
    char = train_tokenizer("char", [text])
    units = char.to_dict()["vocab"][1:]
    assert not [u for u in units if is_combining_start(u)]
    assert {"क्ष", "स्त", "द्ध"} & set(units)
    assert char.decode(char.encode(text)) == normalize(text)
    bpe = train_tokenizer("bpe", [text], vocab_size=2000)
    assert bpe.decode(bpe.encode(text)) == normalize(text)
    assert bpe.decode(bpe.encode("🙂 शुभकामनाएँ")) == "🙂 शुभकामनाएँ"  # byte fallback
    assert char.unknown_units("शुभ 🙂") == ["🙂"]


def test_marathi_and_dakshina(shared_data) -> None:
    marathi = read_text(shared_data("ud_marathi_ufal/mr_ufal-ud-train.conllu"))
    forms = [cols.split("\t")[1] for cols in marathi.splitlines() if cols[:1].isdigit()]
    text = " ".join(forms)
    tok = train_tokenizer("char", [text])
    assert tok.decode(tok.encode(text)) == normalize(text)
    assert not [u for u in tok.to_dict()["vocab"][1:] if is_combining_start(u)]
    dakshina = read_text(shared_data("dakshina_hi/hi.translit.sampled.dev.tsv"))
    native = [
        w
        for row in dakshina.splitlines()
        for w in row.split("\t")[:2]
        if regex.match(r"\p{Devanagari}", w)
    ]
    hindi = train_tokenizer("char", ["\n".join(native)])
    for word in native[:2000]:
        assert hindi.decode(hindi.encode(word)) == normalize(word)
        assert len(hindi.encode(word)) == len(graphemes(normalize(word)))


def test_tiny_shakespeare(shared_data) -> None:
    path = shared_data("tinyshakespeare/input.txt")
    text = read_text(path)
    char = train_tokenizer("char", iter_text_chunks(path))
    assert char.vocab_size == 66  # 65 characters and <unk>
    assert char.decode(char.encode(text)) == text
    bpe = train_tokenizer("bpe", iter_text_chunks(path), vocab_size=1000)
    assert bpe.decode(bpe.encode(text)) == text
    word = train_tokenizer("word", iter_text_chunks(path))
    lines = text.split("\n")
    same = sum(
        a == b for a, b in zip(word.decode(word.encode(text)).split("\n"), lines, strict=True)
    )
    assert same / len(lines) > 0.99
