"""Subword tokenizers: sentencepiece BPE and unigram models, trained here or imported.

The model bytes are part of the tokenizer (base64 in `to_dict()`), so a checkpoint or
tokenizer file carries everything needed to encode and decode. Training lives in
`textrnn.tokenizers.training`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sentencepiece as spm

from textrnn.errors import DataError
from textrnn.text import check_form, normalize
from textrnn.tokenizers.base import (
    NEWLINE,
    TOKENIZER_FORMAT,
    check_choice,
    check_ids,
    check_size,
    str_field,
)


class SubwordTokenizer:
    """A sentencepiece BPE or unigram model; newlines get their own id after sentencepiece's.

    sentencepiece works on lines (its trainer reads one sentence per line), so text is
    split on "\\n", each line encoded by sentencepiece, and the lines joined with
    `newline_id` = the model's piece count. decode(encode(x)) == normalize(x) for models
    trained here (they keep every space: remove_extra_whitespaces=False and identity
    normalisation), except that a literal "▁" (U+2581) in the text decodes as a space.
    """

    def __init__(self, model: bytes, *, kind: str, normalize: str = "nfc") -> None:
        self.kind = check_choice("kind", kind, ("bpe", "unigram"))
        self.normalize_form = check_form(normalize)
        self._model = bytes(model)
        self._sp = _load_sentencepiece(self._model)
        n = self._sp.get_piece_size()
        self.newline_id = n
        self.unk_id = self._sp.unk_id()
        self.byte_fallback = any(self._sp.is_byte(i) for i in range(n))
        self._special = frozenset(
            i for i in range(n) if self._sp.is_control(i) or self._sp.is_unknown(i)
        )

    @property
    def vocab_size(self) -> int:
        return self.newline_id + 1

    @property
    def special_ids(self) -> frozenset[int]:
        return self._special

    def is_special(self, i: int) -> bool:
        return i in self._special

    def count_chars(self, text: str) -> int:
        return len(normalize(text, self.normalize_form))

    def _join_lines(self, per_line: list[list[Any]], newline: Any) -> list[Any]:
        out = list(per_line[0])
        for line in per_line[1:]:
            out.append(newline)
            out.extend(line)
        return out

    def encode(self, text: str) -> list[int]:
        lines = normalize(text, self.normalize_form).split(NEWLINE)
        return self._join_lines(self._sp.encode(lines), self.newline_id)

    def tokenize(self, text: str) -> list[str]:
        lines = normalize(text, self.normalize_form).split(NEWLINE)
        return self._join_lines(self._sp.encode(lines, out_type=str), NEWLINE)

    def decode(self, ids: Iterable[int]) -> str:
        ids = check_ids(ids, self.vocab_size)
        lines: list[list[int]] = [[]]
        for i in ids:
            if i == self.newline_id:
                lines.append([])
            else:
                lines[-1].append(i)
        try:
            return NEWLINE.join(self._sp.decode(lines))
        except UnicodeDecodeError:  # pieces that join into invalid UTF-8 (a damaged model)
            return NEWLINE.join(b.decode("utf-8", "replace") for b in self._sp.decode(lines, out_type=bytes))

    def id_to_piece(self, i: int) -> str:
        if i == self.newline_id:
            return NEWLINE
        if not 0 <= i < self.newline_id:
            raise DataError(f"token id {i} is out of range (vocabulary size {self.vocab_size})")
        return self._sp.id_to_piece(i)

    def piece_to_id(self, piece: str) -> int | None:
        if piece == NEWLINE:
            return self.newline_id
        i = self._sp.piece_to_id(piece)  # the <unk> id for a piece it does not know
        return i if self._sp.id_to_piece(i) == piece else None

    def unknown_units(self, text: str) -> list[str]:
        """Distinct code points that encode to <unk>; always [] with byte fallback."""
        if self.byte_fallback:
            return []
        chars = list(dict.fromkeys(normalize(text, self.normalize_form).replace(NEWLINE, "")))
        return [
            c for c, ids in zip(chars, self._sp.encode(chars), strict=True) if self.unk_id in ids
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TOKENIZER_FORMAT,
            "kind": self.kind,
            "normalize": self.normalize_form,
            "vocab_size": self.vocab_size,  # informational: sentencepiece's pieces + the newline id
            "model": base64.b64encode(self._model).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SubwordTokenizer:
        try:
            model = base64.b64decode(str_field(d, "model"), validate=True)
        except ValueError:
            raise ValueError("model is not valid base64") from None
        tok = cls(model, kind=str_field(d, "kind"), normalize=str_field(d, "normalize"))
        return check_size(d, tok)

    def __repr__(self) -> str:
        return f"SubwordTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, normalize={self.normalize_form!r})"


def _load_sentencepiece(model: bytes) -> spm.SentencePieceProcessor:
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(model)
        # sentencepiece loads pieces (or an <unk> surface) that are not UTF-8, from a
        # damaged file, and fails only when they are decoded: decode each once here.
        sp.id_to_piece(list(range(sp.get_piece_size())))
        sp.decode([[i] for i in range(sp.get_piece_size())])
    except (RuntimeError, OSError, ValueError):  # UnicodeDecodeError is a ValueError
        raise ValueError("not a valid sentencepiece model") from None
    return sp


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated protobuf")
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def _proto_field(buf: bytes, field: int) -> int | bytes | None:
    """The last value of `field` in a serialized protobuf message (enough to read one enum)."""
    i, found = 0, None
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 2:
            size, i = _read_varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = buf[i : i + size], i + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if number == field:
            found = value
    return found


# sentencepiece's TrainerSpec.ModelType enum; ModelProto.trainer_spec is field 2 and
# TrainerSpec.model_type field 3 (default UNIGRAM). Read directly: protobuf is not a dependency.
_SP_MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


def _sentencepiece_kind(model: bytes) -> str:
    spec = _proto_field(model, 2)
    code = _proto_field(spec, 3) if isinstance(spec, bytes) else None
    return _SP_MODEL_TYPES.get(code if isinstance(code, int) else 1, "unknown")


def load_sentencepiece_model(
    path: str | os.PathLike, *, normalize: str = "none"
) -> SubwordTokenizer:
    """Import an existing sentencepiece `.model` file (bpe or unigram).

    The model keeps its own normaliser (often NFKC with whitespace folding, so decoding
    may not restore the text exactly); `normalize` is applied before it, default none.
    """
    p = Path(path)
    try:
        model = p.read_bytes()
    except OSError as err:
        raise DataError(f"{p}: cannot read ({err.strerror})") from None
    try:
        kind = _sentencepiece_kind(model)
        _load_sentencepiece(model)
    except ValueError:
        raise DataError(f"{p}: not a sentencepiece model file") from None
    if kind not in ("bpe", "unigram"):
        raise DataError(f"{p}: sentencepiece model type {kind!r}; textrnn imports bpe and unigram")
    return SubwordTokenizer(model, kind=kind, normalize=normalize)
