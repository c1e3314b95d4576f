"""Words as tokens: words, numbers and punctuation, a "\\n" token, and natural spacing back.

Spaces are not tokens, so decoding is `detokenize`, a heuristic that restores the spacing
of ordinary prose; see its docstring for what round-trips exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from textrnn.tokenizers.base import (
    NEWLINE,
    TOKENIZER_FORMAT,
    VocabTokenizer,
    check_size,
    list_field,
    str_field,
    symbols_pattern,
)

# Word characters: letters, marks (matras, virama, nukta, anusvara...), digits, joiners.
# `\w` alone would cut Devanagari words at some combining marks.
_W = r"[\p{L}\p{M}\p{N}_\u200c\u200d]"
WORD_PATTERN = (
    r"\n"  # line breaks are tokens
    rf"|\p{{N}}+(?:[.,:/]\p{{N}}+)+(?:-{_W}+)*"  # 3.14  1,000  10:30  12/05/2024  1,000-watt
    r"|\p{L}(?:\.\p{L})+\."  # a.m.  e.g.  U.S.
    rf"|(?<!['‘’]){_W}+(?:['’\-]{_W}+)*(?:'(?=\s|$))?"  # words: don't, well-known, and
    # a final ' before a space (o' the, the ladies' fans) unless a quote opened the word;
    # a final ’ needs no such rule: it is a closer, so "ladies ’" comes back as "ladies’"
    rf"|{_W}+(?:['’\-]{_W}+)*"
    r"|-{2,}"  # a dash typed as hyphens is one token
    r"|(?!\s)\X"  # any other non-space character (punctuation, symbols, emoji)
)
_OPENERS = frozenset("([{“‘«¿¡$£€₹#")  # no space after these
_CLOSERS = frozenset(",.;:!?)]}%”’»…।॥")  # no space before these
_DASH = "--"  # no space on either side of a double hyphen: "yet,--" "grave--shall" "now!--How"
_QUOTES = frozenset("\"'")  # opening or closing by parity within a line
_SENTENCE_END = frozenset(".!?")  # a ' right after these closes a quote from an earlier line


def detokenize(tokens: Iterable[str]) -> str:
    """Join word tokens with natural spacing.

    A heuristic, since spaces are not tokens: no space before closing punctuation or
    after opening brackets, none around "--" (a spaced "—" stays spaced); straight quotes
    open or close by parity within a line. Text written that way round-trips exactly.
    """
    out: list[str] = []
    glue = True  # no space before the next token (start of line, after an opener)
    open_quotes: set[str] = set()
    prev = NEWLINE
    for tok in tokens:
        if tok == NEWLINE:
            glue, open_quotes = True, set()
        elif tok in _QUOTES:
            closing = tok in open_quotes or (tok == "'" and prev[-1] in _SENTENCE_END and not glue)
            if not glue and not closing:
                out.append(" ")
            open_quotes ^= {tok}
            glue = not closing
        else:
            # "ladies' ," keeps its space, or the apostrophe would turn into a quote
            elided = len(prev) > 1 and prev[-1] == "'"
            spaced = not glue and (tok[0] not in _CLOSERS or elided) and not tok.startswith(_DASH)
            if spaced or (prev[-1] == "-" and tok[0] == "-"):  # "- --" must not become "---"
                out.append(" ")
            glue = tok[-1] in _OPENERS or tok.endswith(_DASH)
        out.append(tok)
        prev = tok
    return "".join(out)


class WordTokenizer(VocabTokenizer):
    """Words, numbers and punctuation; "\\n" is a token; <unk> (id 0) for the rest."""

    kind = "word"

    def __init__(
        self, vocab: Sequence[str], *, normalize: str = "nfc", user_symbols: Sequence[str] = ()
    ) -> None:
        super().__init__(vocab, normalize=normalize, user_symbols=user_symbols)
        self._splitter = symbols_pattern(user_symbols, WORD_PATTERN)

    def split(self, text: str) -> list[str]:
        if "\r" in text:
            text = text.replace("\r\n", NEWLINE)
        return self._splitter.findall(text)

    def decode(self, ids: Iterable[int]) -> str:
        return detokenize(self._lookup(ids))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TOKENIZER_FORMAT,
            "kind": self.kind,
            "normalize": self.normalize_form,
            "user_symbols": list(self.user_symbols),
            "vocab_size": self.vocab_size,
            "vocab": list(self._pieces),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordTokenizer:
        return check_size(
            d,
            cls(
                list_field(d, "vocab", required=True),
                normalize=str_field(d, "normalize"),
                user_symbols=list_field(d, "user_symbols"),
            ),
        )
