"""Characters as tokens: grapheme clusters (Devanagari conjuncts whole) or code points."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from textrnn.text import graphemes
from textrnn.tokenizers.base import (
    TOKENIZER_FORMAT,
    UNITS,
    UNK_ID,
    UNKNOWN_CHAR,
    VocabTokenizer,
    check_choice,
    check_ids,
    check_size,
    list_field,
    str_field,
    symbols_pattern,
)


class CharTokenizer(VocabTokenizer):
    """Characters as units: grapheme clusters (conjuncts whole) or single code points."""

    kind = "char"

    def __init__(
        self,
        vocab: Sequence[str],
        *,
        unit: str = "grapheme",
        normalize: str = "nfc",
        user_symbols: Sequence[str] = (),
    ) -> None:
        super().__init__(vocab, normalize=normalize, user_symbols=user_symbols)
        self.unit = check_choice("unit", unit, UNITS)
        # what each id decodes to: its piece, except <unk>, which decodes to U+FFFD
        decoded = list(self._pieces)
        decoded[UNK_ID] = UNKNOWN_CHAR
        self._decoded = tuple(decoded)
        self._splitter = (
            symbols_pattern(user_symbols, r"\X" if unit == "grapheme" else ".")
            if user_symbols
            else None
        )

    def split(self, text: str) -> list[str]:
        if self._splitter is not None:
            return self._splitter.findall(text)
        return graphemes(text) if self.unit == "grapheme" else list(text)

    def decode(self, ids: Iterable[int]) -> str:
        ids = check_ids(ids, len(self._decoded))
        return "".join(map(self._decoded.__getitem__, ids))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TOKENIZER_FORMAT,
            "kind": self.kind,
            "unit": self.unit,
            "normalize": self.normalize_form,
            "user_symbols": list(self.user_symbols),
            "vocab_size": self.vocab_size,
            "vocab": list(self._pieces),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        return check_size(
            d,
            cls(
                list_field(d, "vocab", required=True),
                unit=str_field(d, "unit"),
                normalize=str_field(d, "normalize"),
                user_symbols=list_field(d, "user_symbols"),
            ),
        )

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unit={self.unit!r}, normalize={self.normalize_form!r})"
