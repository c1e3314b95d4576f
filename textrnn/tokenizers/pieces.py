"""Token sequences as lines of text: pieces separated by spaces, and back.

`textrnn tokenize encode` writes one line per input line, and `tokenize decode` reads
it back, so the format has to parse unambiguously:
- A line is the pieces of its tokens, each the vocabulary's piece for the token's id
  (a unit outside the vocabulary shows as `<unk>`), separated by single spaces. A
  line with no tokens is an empty line.
- Inside a piece a space is written "▁" (U+2581), as sentencepiece writes it;
  sentencepiece's pieces already use "▁" for a space and are shown as they are
  ("▁the", and byte pieces such as "<0xE0>").
- Backslash escapes: "\\\\" is a backslash, "\\n", "\\t", "\\r" a newline, tab and carriage
  return, and "\\uXXXX" (four hex digits) any other whitespace or control character,
  and a literal "▁" in a char or word piece ("\\u2581"; in sentencepiece pieces "▁" is
  the space). No other backslash sequence is valid.
So a shown piece is never empty and never contains a space, and show_piece gives every
piece exactly one spelling.
"""

from __future__ import annotations

import regex

from textrnn.errors import DataError
from textrnn.tokenizers.base import Tokenizer

SPACE_MARK = "\u2581"  # "▁": how a space inside a piece is written
_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNNAMED = {v[1]: k for k, v in _NAMED.items()}  # "n" -> "\n", ...
_NEEDS_ESCAPE = regex.compile(r"[\\\s\p{Cc}\u2581]")  # all of these are in the BMP
_ESCAPE = regex.compile(r"\\(?:u([0-9A-Fa-f]{4})|(.)|$)", regex.DOTALL)


def marks_spaces(tok: Tokenizer) -> bool:
    """True if `tok`'s own pieces write a space as "▁" (sentencepiece's bpe and unigram)."""
    return tok.kind in ("bpe", "unigram")


def show_piece(piece: str, *, marked: bool = False) -> str:
    """`piece` as one word without spaces (see the module docstring).

    `marked`: the piece already writes spaces as "▁" (a sentencepiece piece), so "▁"
    stays as it is and a raw space, which such a piece never holds, is escaped.
    """

    def escape(m: regex.Match) -> str:
        c = m[0]
        if c == " " and not marked:
            return SPACE_MARK
        if c == SPACE_MARK and marked:
            return c
        return _NAMED.get(c) or f"\\u{ord(c):04x}"

    return _NEEDS_ESCAPE.sub(escape, piece)


def read_piece(shown: str, *, marked: bool = False) -> str:
    """The piece that `show_piece(piece, marked=marked)` showed as `shown`; ValueError if
    `shown` holds a backslash sequence that `show_piece` never writes."""

    def unescape(m: regex.Match) -> str:
        if m[1] is not None and not 0xD800 <= int(m[1], 16) <= 0xDFFF:  # no lone surrogates
            return chr(int(m[1], 16))
        if m[2] is None or m[2] not in _UNNAMED:
            raise ValueError(f"bad escape {m[0]!r} in piece {shown!r}")
        return _UNNAMED[m[2]]

    text = shown if marked else shown.replace(SPACE_MARK, " ")
    return _ESCAPE.sub(unescape, text) if "\\" in text else text


def format_pieces(tok: Tokenizer, ids: list[int]) -> str:
    """One line: the shown pieces of `ids`, separated by spaces."""
    marked = marks_spaces(tok)
    return " ".join(show_piece(tok.id_to_piece(i), marked=marked) for i in ids)


def parse_pieces(tok: Tokenizer, line: str) -> list[int]:
    """The ids of a line that `format_pieces` wrote; DataError naming the first piece that
    is malformed or not in `tok`'s vocabulary. Runs of spaces count as one."""
    marked = marks_spaces(tok)
    ids = []
    for shown in line.split(" "):
        if not shown:
            continue
        try:
            piece = read_piece(shown, marked=marked)
        except ValueError as err:
            raise DataError(str(err)) from None
        i = tok.piece_to_id(piece)
        if i is None:
            hint = " (token ids? decode them with --ids)" if shown.isdigit() else ""
            raise DataError(f"unknown piece {shown!r}: not in the {tok.kind} vocabulary{hint}")
        ids.append(i)
    return ids
