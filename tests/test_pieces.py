"""Token sequences as lines of pieces and back (textrnn.tokenizers.pieces)."""

from __future__ import annotations

from pathlib import Path

import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from textrnn.errors import DataError
from textrnn.tokenizers import (
    format_pieces,
    parse_pieces,
    read_piece,
    show_piece,
    train_tokenizer,
)

ENGLISH = (Path(__file__).resolve().parent.parent / "corpora" / "english.txt").read_text(
    encoding="utf-8"
)
SHOWN_ALPHABET = regex.compile(r"[^\s\p{Cc}]+")  # what a shown piece may hold: no space at all


def test_show_piece_examples() -> None:
    assert show_piece("a b") == "a▁b"
    assert show_piece("\t\n\r\\") == "\\t\\n\\r\\\\"
    assert show_piece("\x85\u2028\u00a0") == "\\u0085\\u2028\\u00a0"
    assert show_piece("क्\u200dष") == "क्\u200dष"  # joiners are not whitespace
    assert show_piece("▁") == "\\u2581"  # a literal ▁ in a char or word piece
    assert show_piece("▁the", marked=True) == "▁the"  # sentencepiece's own space marker
    assert show_piece("<0xE0>", marked=True) == "<0xE0>"
    assert show_piece("a b", marked=True) == "a\\u0020b"


@pytest.mark.parametrize("marked", [False, True])
@given(piece=st.text(min_size=1, max_size=12))
def test_show_piece_is_one_word_that_reads_back(marked: bool, piece: str) -> None:
    shown = show_piece(piece, marked=marked)
    assert SHOWN_ALPHABET.fullmatch(shown)
    assert read_piece(shown, marked=marked) == piece


@pytest.mark.parametrize("shown", ["\\q", "a\\", "\\u12", "\\u12g4", "\\ud800", "\\▁"])
def test_read_piece_refuses_what_show_piece_never_writes(shown: str) -> None:
    with pytest.raises(ValueError, match="bad escape"):
        read_piece(shown)


def test_parse_pieces_reads_format_pieces() -> None:
    tok = train_tokenizer("char", [ENGLISH + "\\ \t▁"], user_symbols=["< >"])
    text = "a\\b\t▁ < >."
    ids = tok.encode(text)
    line = format_pieces(tok, ids)
    assert line == "a \\\\ b \\t \\u2581 ▁ <▁> ."
    assert parse_pieces(tok, line) == ids
    assert parse_pieces(tok, "  a   b ") == tok.encode("ab")  # runs of spaces count as one
    assert parse_pieces(tok, "") == []
    assert format_pieces(tok, tok.encode("a€")) == "a <unk>"  # what the model sees
    assert parse_pieces(tok, "<unk>") == [tok.unk_id]


def test_parse_pieces_errors_name_the_piece() -> None:
    tok = train_tokenizer("char", [ENGLISH])
    with pytest.raises(DataError, match=r"unknown piece '€': not in the char vocabulary$"):
        parse_pieces(tok, "a € b")
    with pytest.raises(DataError, match=r"unknown piece '99999'.*--ids"):
        parse_pieces(tok, "99999")
    with pytest.raises(DataError, match=r"bad escape '\\\\q'"):
        parse_pieces(tok, "a \\q")


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_sentencepiece_pieces(kind: str) -> None:
    tok = train_tokenizer(kind, [ENGLISH], vocab_size=400)
    ids = tok.encode("the lamp\t😀")
    line = format_pieces(tok, ids)
    assert line.startswith("▁the ") and "<0x09>" in line and "<0xF0>" in line
    assert parse_pieces(tok, line) == ids
    assert parse_pieces(tok, "\\n") == [tok.newline_id]
    with pytest.raises(DataError, match="unknown piece 'the▁lamp▁was▁lit'"):
        parse_pieces(tok, "the▁lamp▁was▁lit")
