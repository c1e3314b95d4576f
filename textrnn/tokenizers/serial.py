"""Tokenizers as plain data and files: `tokenizer_from_dict`, `save_tokenizer`, `load_tokenizer`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from textrnn.errors import DataError, TextrnnError
from textrnn.files import write_atomically
from textrnn.tokenizers.base import KINDS, TOKENIZER_FORMAT, Tokenizer
from textrnn.tokenizers.char import CharTokenizer
from textrnn.tokenizers.subword import SubwordTokenizer
from textrnn.tokenizers.word import WordTokenizer

_FROM_DICT = {
    "char": CharTokenizer.from_dict,
    "word": WordTokenizer.from_dict,
    "bpe": SubwordTokenizer.from_dict,
    "unigram": SubwordTokenizer.from_dict,
}


def tokenizer_from_dict(d: Any) -> Tokenizer:
    """Rebuild a tokenizer from `to_dict()` data; TextrnnError if the data is malformed."""
    if not isinstance(d, dict):
        raise TextrnnError("tokenizer data is not a JSON object")
    if d.get("format") != TOKENIZER_FORMAT:
        raise TextrnnError(
            f"tokenizer data has format {d.get('format')!r}; this textrnn reads format {TOKENIZER_FORMAT}"
        )
    kind = d.get("kind")
    build = _FROM_DICT.get(kind) if isinstance(kind, str) else None
    if build is None:
        raise TextrnnError(f"unknown tokenizer kind {kind!r}; expected one of {', '.join(KINDS)}")
    try:
        return build(d)
    except KeyError as err:
        raise TextrnnError(f"malformed {kind} tokenizer data: missing field {err}") from None
    except (TypeError, ValueError, TextrnnError) as err:
        raise TextrnnError(f"malformed {kind} tokenizer data: {err}") from None


def save_tokenizer(tok: Tokenizer, path: str | os.PathLike) -> Path:
    """Write `tok.to_dict()` as JSON, atomically (see `textrnn.files.atomic_file`)."""
    p = Path(path)
    text = json.dumps(tok.to_dict(), ensure_ascii=False, indent=1) + "\n"
    try:
        write_atomically(p, text.encode("utf-8"))
    except OSError as err:
        raise TextrnnError(f"{p}: cannot write ({err.strerror or err})") from None
    return p


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Read a tokenizer file written by `save_tokenizer`."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a tokenizer file")
    if not p.is_file():
        raise DataError(f"{p}: no such tokenizer file")
    hint = ""
    if p.suffix == ".model":
        hint = " (a sentencepiece model? import it with `textrnn tokenize train --tokenizer-model`)"
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # (nested 100,000 deep)
        raise DataError(f"{p}: not a textrnn tokenizer file{hint}") from None
    except OSError as err:
        raise DataError(f"{p}: cannot read ({err.strerror})") from None
    try:
        return tokenizer_from_dict(d)
    except TextrnnError as err:
        raise DataError(f"{p}: {err}") from None
