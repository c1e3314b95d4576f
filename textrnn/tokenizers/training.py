"""Building tokenizers from a corpus (`train_tokenizer`) and measuring a corpus with one.

Text arrives as an iterable of chunks (e.g. `iter_text_chunks(path)`) and is counted one
chunk at a time, never joined, so corpora larger than memory work.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import sentencepiece as spm

from textrnn.errors import DataError, TextrnnError, UsageError
from textrnn.text import check_form, normalize
from textrnn.tokenizers.base import (
    KINDS,
    NEWLINE,
    UNITS,
    UNK,
    UNK_ID,
    UNKNOWN_CHAR,
    Tokenizer,
    check_choice,
)
from textrnn.tokenizers.char import CharTokenizer
from textrnn.tokenizers.subword import SubwordTokenizer
from textrnn.tokenizers.word import WordTokenizer

DEFAULT_SUBWORD_VOCAB = 8000  # shrunk automatically when the corpus cannot support it


class _Lines:
    """Non-empty normalised lines from text chunks, for sentencepiece's trainer.

    sentencepiece turns an exception raised inside its iterator into a RuntimeError;
    this keeps the original (e.g. a DataError for invalid UTF-8) to re-raise it.
    """

    def __init__(self, texts: Iterable[str], form: str) -> None:
        self.texts, self.form = texts, form
        self.count = 0
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[str]:
        try:
            for chunk in self.texts:
                for line in normalize(chunk, self.form).split(NEWLINE):
                    if line:
                        self.count += 1
                        yield line
        except Exception as err:
            self.error = err


_SP_TOO_HIGH = re.compile(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)")
_SP_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. \d+ vs (\d+)")


def _run_sentencepiece(kind: str, lines: _Lines, options: dict[str, Any]) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type=kind, **options
    )
    return model.getvalue()


def _train_subword(
    kind: str,
    texts: Iterable[str],
    *,
    vocab_size: int | None,
    normalize: str,
    character_coverage: float,
    byte_fallback: bool,
    user_symbols: Sequence[str],
) -> SubwordTokenizer:
    if any(NEWLINE in s for s in user_symbols):
        raise UsageError("user symbols cannot contain a newline (newlines have their own id)")
    options: dict[str, Any] = dict(
        vocab_size=(vocab_size or DEFAULT_SUBWORD_VOCAB) - 1,  # one id is kept for "\n"
        character_coverage=character_coverage,
        byte_fallback=byte_fallback,
        user_defined_symbols=list(user_symbols),
        normalization_rule_name="identity",  # textrnn normalises before sentencepiece
        remove_extra_whitespaces=False,  # keep every space so that decoding is exact
        max_sentence_length=1 << 18,  # bytes; longer lines would be skipped in training
        input_sentence_size=2_000_000,  # a random sample of lines bounds memory on big corpora
        shuffle_input_sentence=True,
        unk_id=UNK_ID,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        unk_surface=UNKNOWN_CHAR,
        num_threads=2,
        minloglevel=2,  # silence sentencepiece's progress log on stderr
        hard_vocab_limit=vocab_size is not None,  # no size asked for: what the corpus allows
    )
    lines = _Lines(texts, normalize)
    try:
        model = _run_sentencepiece(kind, lines, options)
    except RuntimeError as err:
        if lines.error is not None:
            raise lines.error from None
        asked = vocab_size or DEFAULT_SUBWORD_VOCAB
        raise _subword_error(kind, err, lines, asked, byte_fallback) from None
    if lines.error is not None:
        raise lines.error
    return SubwordTokenizer(model, kind=kind, normalize=normalize)


def _subword_error(
    kind: str, err: Exception, lines: _Lines, vocab_size: int, byte_fallback: bool
) -> TextrnnError:
    """Turn sentencepiece's internal messages into one line that says what to change."""
    if lines.count == 0:
        return DataError("the corpus has no text to train a tokenizer on")
    if m := _SP_TOO_HIGH.search(str(err)):
        most = int(m.group(1)) + 1
        return UsageError(
            f"vocabulary size {vocab_size} is too large for this corpus ({kind} can make at most "
            f"{most} tokens); use --vocab-size {most} or less"
        )
    if m := _SP_TOO_LOW.search(str(err)):
        least = int(m.group(1)) + 1
        return UsageError(
            f"vocabulary size {vocab_size} is too small: the corpus's characters"
            f"{' and the 256 byte pieces' if byte_fallback else ''} need at least {least}; "
            f"use --vocab-size {least} or more, or a lower --character-coverage"
        )
    return TextrnnError(f"sentencepiece could not train a {kind} model: {err}")


def _count_units(
    texts: Iterable[str], split: Any, form: str
) -> Counter[str]:  # split: normalised text -> units
    counts: Counter[str] = Counter()
    for chunk in texts:
        counts.update(split(normalize(chunk, form)))
    return counts


def _build_vocab(
    counts: Counter[str], *, reserved: Sequence[str], vocab_size: int | None, min_count: int
) -> list[str]:
    """<unk> (UNK_ID), the reserved pieces, then units by falling frequency (ties by text) within the caps."""
    head = [UNK, *dict.fromkeys(reserved)]  # UNK_ID == 0: <unk> first
    if vocab_size is not None and vocab_size < len(head) + 1:
        raise UsageError(
            f"vocabulary size {vocab_size} is too small; need at least {len(head) + 1}"
        )
    units = sorted(
        (u for u, c in counts.items() if c >= min_count and u not in head),
        key=lambda u: (-counts[u], u),
    )
    room = None if vocab_size is None else vocab_size - len(head)
    return head + units[:room]


def _train_vocab_tokenizer(
    kind: str,
    texts: Iterable[str],
    *,
    vocab_size: int | None,
    min_count: int,
    unit: str,
    normalize: str,
    user_symbols: Sequence[str],
) -> CharTokenizer | WordTokenizer:
    if kind == "char":
        splitter = CharTokenizer([UNK, *user_symbols], unit=unit, user_symbols=user_symbols)
        reserved = list(user_symbols)
    else:
        splitter = WordTokenizer([UNK, *user_symbols], user_symbols=user_symbols)
        reserved = [*user_symbols, NEWLINE]  # always keep line structure
    counts = _count_units(texts, splitter.split, normalize)
    if not counts:
        raise DataError("the corpus has no text to train a tokenizer on")
    vocab = _build_vocab(counts, reserved=reserved, vocab_size=vocab_size, min_count=min_count)
    if kind == "char":
        return CharTokenizer(vocab, unit=unit, normalize=normalize, user_symbols=user_symbols)
    return WordTokenizer(vocab, normalize=normalize, user_symbols=user_symbols)


def train_tokenizer(
    kind: str,
    texts: Iterable[str],
    *,
    vocab_size: int | None = None,
    min_count: int = 1,
    unit: str = "grapheme",
    normalize: str = "nfc",
    character_coverage: float = 1.0,
    byte_fallback: bool = True,
    user_symbols: Sequence[str] = (),
) -> Tokenizer:
    """Build a tokenizer of `kind` from an iterable of text chunks (e.g. `iter_text_chunks(path)`).

    Chunks are counted one at a time, never joined. `vocab_size` counts every id
    (<unk> and, for subwords, the newline id); None means every unit for char/word and
    up to 8000 for subwords. `min_count` and `unit` apply to char/word, and
    `character_coverage` and `byte_fallback` to subwords. `user_symbols` are always
    single tokens.
    """
    check_choice("kind", kind, KINDS)
    check_choice("unit", unit, UNITS)
    check_form(normalize)
    if vocab_size is not None and vocab_size < 2:
        raise UsageError(f"vocabulary size must be at least 2, got {vocab_size}")
    if min_count < 1:
        raise UsageError(f"min count must be at least 1, got {min_count}")
    if not 0.0 < character_coverage <= 1.0:
        raise UsageError(f"character coverage must be in (0, 1], got {character_coverage}")
    user_symbols = tuple(dict.fromkeys(user_symbols))
    if any(not s or s == UNK for s in user_symbols):
        raise UsageError(f"user symbols must be non-empty and not {UNK}")
    if kind in ("char", "word"):
        return _train_vocab_tokenizer(
            kind,
            texts,
            vocab_size=vocab_size,
            min_count=min_count,
            unit=unit,
            normalize=normalize,
            user_symbols=user_symbols,
        )
    return _train_subword(
        kind,
        texts,
        vocab_size=vocab_size,
        normalize=normalize,
        character_coverage=character_coverage,
        byte_fallback=byte_fallback,
        user_symbols=user_symbols,
    )


# --- measuring a corpus ---------------------------------------------------------------------


def corpus_stats(tok: Tokenizer, texts: Iterable[str], *, top: int = 20) -> dict[str, Any]:
    """Token and character counts of `texts` under `tok`, streamed chunk by chunk."""
    counts = np.zeros(tok.vocab_size, dtype=np.int64)
    chars = 0
    unknown_units: dict[str, None] = {}
    for chunk in texts:
        ids = np.asarray(tok.encode(chunk), dtype=np.int64)
        counts += np.bincount(ids, minlength=tok.vocab_size)
        chars += tok.count_chars(chunk)
        if len(unknown_units) < 50 and np.any(ids == tok.unk_id):
            unknown_units.update(dict.fromkeys(tok.unknown_units(chunk)))
    tokens = int(counts.sum())
    unknown = int(counts[tok.unk_id])
    order = np.argsort(-counts, kind="stable")[:top]
    return {
        "kind": tok.kind,
        "vocab_size": tok.vocab_size,
        "tokens": tokens,
        "characters": chars,
        "chars_per_token": round(chars / tokens, 4) if tokens else 0.0,
        "unknown_tokens": unknown,
        "unknown_rate": round(unknown / tokens, 6) if tokens else 0.0,
        "unknown_units": list(unknown_units)[:50],
        "vocab_used": int(np.count_nonzero(counts)),
        "top": [
            {"id": int(i), "piece": tok.id_to_piece(int(i)), "count": int(counts[i])}
            for i in order
            if counts[i] > 0
        ],
    }
