"""Char / word / subword tokenizers behind one small protocol.

Every tokenizer normalises its input (NFC by default, recorded in the tokenizer), turns
text into ids and back, and becomes plain JSON-able data with `to_dict()` so that it can
live inside a checkpoint or a tokenizer file; `tokenizer_from_dict` rebuilds it.

Kinds:
- "char": grapheme clusters (default) or code points; id 0 is <unk>.
- "word": words, numbers and punctuation, plus a "\\n" token so line structure
  survives; spaces are not tokens and decoding restores natural spacing.
- "bpe" / "unigram": sentencepiece models trained here (or imported from a `.model`
  file), with byte fallback by default so that no text is unknown.

Unknown policy: `encode` maps units outside the vocabulary to `unk_id` and never fails;
`unknown_units(text)` names them so that callers can refuse or report them (the sampler
refuses a prompt with unknown characters). Decoding <unk> gives U+FFFD for char and
subword tokenizers and the token "<unk>" for word tokenizers.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import regex
import sentencepiece as spm

from textrnn.errors import DataError, TextrnnError, UsageError
from textrnn.text import check_form, graphemes, normalize

TOKENIZER_FORMAT = 1  # version of the to_dict() layout; bump when it changes
KINDS = ("char", "word", "bpe", "unigram")
UNITS = ("grapheme", "codepoint")
UNK = "<unk>"
UNKNOWN_CHAR = "\ufffd"  # what an unknown unit decodes to (char and subword kinds)
NEWLINE = "\n"
DEFAULT_SUBWORD_VOCAB = 8000  # shrunk automatically when the corpus cannot support it


class Tokenizer(Protocol):
    """What every tokenizer offers; the rest of textrnn relies on nothing else."""

    kind: str  # "char" | "word" | "bpe" | "unigram"
    unk_id: int  # id that units outside the vocabulary encode to
    normalize_form: str  # "nfc" | "nfkc" | "none", applied by encode()

    @property
    def vocab_size(self) -> int: ...

    @property
    def special_ids(self) -> frozenset[int]: ...  # ids never to be generated (<unk>, controls)

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def tokenize(self, text: str) -> list[str]: ...

    def id_to_piece(self, i: int) -> str: ...

    def unknown_units(self, text: str) -> list[str]: ...

    def is_special(self, i: int) -> bool: ...

    def count_chars(self, text: str) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...


# --- vocabulary-based tokenizers (char, word) -------------------------------------------


class _Index(dict):
    """str -> id lookup that answers unk_id for a missing key, so encoding is one C-level map()."""

    def __init__(self, pieces: Sequence[str], unk_id: int) -> None:
        super().__init__((p, i) for i, p in enumerate(pieces) if i != unk_id)
        self.unk_id = unk_id

    def __missing__(self, key: str) -> int:
        return self.unk_id


def _check_vocab(vocab: Sequence[str], reserved: Sequence[str] = ()) -> Sequence[str]:
    if not isinstance(vocab, list | tuple) or not all(isinstance(p, str) and p for p in vocab):
        raise ValueError("vocab must be a list of non-empty strings")
    if not vocab or vocab[0] != UNK:
        raise ValueError(f"vocab must start with {UNK}")
    if len(set(vocab)) != len(vocab):
        raise ValueError("vocab has duplicate entries")
    missing = [s for s in reserved if s not in vocab]
    if missing:
        raise ValueError(f"user symbols missing from vocab: {missing}")
    return vocab


def _check_ids(ids: Iterable[int], vocab_size: int) -> list[int]:
    """`ids` as a list, or DataError naming the first id outside [0, vocab_size)."""
    ids = list(ids)
    if ids and (min(ids) < 0 or max(ids) >= vocab_size):
        bad = next(i for i in ids if not 0 <= i < vocab_size)
        raise DataError(f"token id {bad} is out of range (vocabulary size {vocab_size})")
    return ids


class _VocabTokenizer:
    """Shared machinery: a list of pieces (id = position, 0 = <unk>) and a splitter."""

    kind = ""
    unk_id = 0

    def __init__(
        self, vocab: Sequence[str], *, normalize: str = "nfc", user_symbols: Sequence[str] = ()
    ) -> None:
        self.normalize_form = check_form(normalize)
        self.user_symbols = tuple(user_symbols)
        self._pieces = tuple(_check_vocab(vocab, self.user_symbols))
        self._index = _Index(self._pieces, self.unk_id)
        self._special = frozenset({self.unk_id})

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    @property
    def special_ids(self) -> frozenset[int]:
        return self._special

    def is_special(self, i: int) -> bool:
        return i in self._special

    def count_chars(self, text: str) -> int:
        return len(normalize(text, self.normalize_form))

    def split(self, text: str) -> list[str]:
        """Cut already-normalised text into units (overridden per kind)."""
        raise NotImplementedError

    def tokenize(self, text: str) -> list[str]:
        return self.split(normalize(text, self.normalize_form))

    def encode(self, text: str) -> list[int]:
        return list(map(self._index.__getitem__, self.tokenize(text)))

    def id_to_piece(self, i: int) -> str:
        return self._lookup([i])[0]

    def unknown_units(self, text: str) -> list[str]:
        return list(dict.fromkeys(u for u in self.tokenize(text) if u not in self._index))

    def _lookup(self, ids: Iterable[int]) -> list[str]:
        return list(map(self._pieces.__getitem__, _check_ids(ids, len(self._pieces))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, normalize={self.normalize_form!r})"


def _symbols_pattern(user_symbols: Sequence[str], rest: str) -> regex.Pattern:
    """A splitter that matches user symbols whole (longest first) before the `rest` pattern."""
    alternatives = [regex.escape(s) for s in sorted(user_symbols, key=len, reverse=True)]
    return regex.compile("|".join([*alternatives, rest]), regex.DOTALL)


class CharTokenizer(_VocabTokenizer):
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
        self.unit = _check_choice("unit", unit, UNITS)
        self._decoded = (UNKNOWN_CHAR, *self._pieces[1:])
        self._splitter = (
            _symbols_pattern(user_symbols, r"\X" if unit == "grapheme" else ".")
            if user_symbols
            else None
        )

    def split(self, text: str) -> list[str]:
        if self._splitter is not None:
            return self._splitter.findall(text)
        return graphemes(text) if self.unit == "grapheme" else list(text)

    def decode(self, ids: Iterable[int]) -> str:
        ids = _check_ids(ids, len(self._decoded))
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
        return _check_size(
            d,
            cls(
                _list_field(d, "vocab", required=True),
                unit=_str_field(d, "unit"),
                normalize=_str_field(d, "normalize"),
                user_symbols=_list_field(d, "user_symbols"),
            ),
        )

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unit={self.unit!r}, normalize={self.normalize_form!r})"


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


class WordTokenizer(_VocabTokenizer):
    """Words, numbers and punctuation; "\\n" is a token; <unk> (id 0) for the rest."""

    kind = "word"

    def __init__(
        self, vocab: Sequence[str], *, normalize: str = "nfc", user_symbols: Sequence[str] = ()
    ) -> None:
        super().__init__(vocab, normalize=normalize, user_symbols=user_symbols)
        self._splitter = _symbols_pattern(user_symbols, WORD_PATTERN)

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
        return _check_size(
            d,
            cls(
                _list_field(d, "vocab", required=True),
                normalize=_str_field(d, "normalize"),
                user_symbols=_list_field(d, "user_symbols"),
            ),
        )


# --- subword tokenizers (sentencepiece) ---------------------------------------------------


class SubwordTokenizer:
    """A sentencepiece BPE or unigram model; newlines get their own id after sentencepiece's.

    sentencepiece works on lines (its trainer reads one sentence per line), so text is
    split on "\\n", each line encoded by sentencepiece, and the lines joined with
    `newline_id` = the model's piece count. decode(encode(x)) == normalize(x) for models
    trained here (they keep every space: remove_extra_whitespaces=False and identity
    normalisation), except that a literal "▁" (U+2581) in the text decodes as a space.
    """

    def __init__(self, model: bytes, *, kind: str, normalize: str = "nfc") -> None:
        self.kind = _check_choice("kind", kind, ("bpe", "unigram"))
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
        ids = _check_ids(ids, self.vocab_size)
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
            model = base64.b64decode(_str_field(d, "model"), validate=True)
        except ValueError:
            raise ValueError("model is not valid base64") from None
        tok = cls(model, kind=_str_field(d, "kind"), normalize=_str_field(d, "normalize"))
        return _check_size(d, tok)

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


# --- training -------------------------------------------------------------------------------


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
        unk_id=0,
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
    """<unk>, the reserved pieces, then units by falling frequency (ties by text) within the caps."""
    head = [UNK, *dict.fromkeys(reserved)]
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
    _check_choice("kind", kind, KINDS)
    _check_choice("unit", unit, UNITS)
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


# --- plain data and files ----------------------------------------------------------------------

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
    """Write `tok.to_dict()` as JSON, atomically (temp file + rename)."""
    p = Path(path)
    text = json.dumps(tok.to_dict(), ensure_ascii=False, indent=1) + "\n"
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, p)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as err:
        raise TextrnnError(f"{p}: cannot write ({err.strerror})") from None
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


# --- small validators -----------------------------------------------------------------------------


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


def _check_size(d: dict[str, Any], tok: Any) -> Any:
    """`tok`, if it has the vocabulary size that the data claims (when it claims one)."""
    if "vocab_size" in d and d["vocab_size"] != tok.vocab_size:
        raise ValueError(
            f"vocab_size says {d['vocab_size']} but the vocabulary has {tok.vocab_size}"
        )
    return tok


def _str_field(d: dict[str, Any], name: str) -> str:
    value = d[name]
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string")
    return value


def _list_field(d: dict[str, Any], name: str, *, required: bool = False) -> list[str]:
    value = d[name] if required else d.get(name, [])
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise ValueError(f"field {name!r} must be a list of non-empty strings")
    return value
