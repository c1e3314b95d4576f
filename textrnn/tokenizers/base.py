"""What every tokenizer shares: the protocol, the ids convention, the vocabulary machinery.

Every tokenizer normalises its input (NFC by default, recorded in the tokenizer), turns
text into ids and back, and becomes plain JSON-able data with `to_dict()` so that it can
live inside a checkpoint or a tokenizer file.

Unknown policy: `encode` maps units outside the vocabulary to `unk_id` and never fails;
`unknown_units(text)` names them so that callers can refuse or report them (the sampler
refuses a prompt with unknown characters). Decoding <unk> gives U+FFFD for char and
subword tokenizers and the token "<unk>" for word tokenizers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import regex

from textrnn.errors import DataError, UsageError
from textrnn.text import check_form, normalize

TOKENIZER_FORMAT = 1  # version of the to_dict() layout; bump when it changes
KINDS = ("char", "word", "bpe", "unigram")
UNITS = ("grapheme", "codepoint")
NEWLINE = "\n"
UNKNOWN_CHAR = "\ufffd"  # what an unknown unit decodes to (char and subword kinds)

# The ids convention of every vocabulary in textrnn: id 0 is <unk>, so that an id from
# any vocabulary means "unknown" the same way; a vocabulary that pads (the
# transliterator's, a batch of sentences) puts <pad> at id 1. Models mask padding by
# lengths, so the padding id never changes a prediction. Tag vocabularies have neither.
UNK = "<unk>"
UNK_ID = 0
PAD = "<pad>"
PAD_ID = 1


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

    def piece_to_id(self, piece: str) -> int | None: ...  # None: not in the vocabulary

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
    if not vocab or vocab[UNK_ID] != UNK:
        raise ValueError(f"vocab must start with {UNK}")
    if len(set(vocab)) != len(vocab):
        raise ValueError("vocab has duplicate entries")
    missing = [s for s in reserved if s not in vocab]
    if missing:
        raise ValueError(f"user symbols missing from vocab: {missing}")
    return vocab


def check_ids(ids: Iterable[int], vocab_size: int) -> list[int]:
    """`ids` as a list, or DataError naming the first id outside [0, vocab_size)."""
    ids = list(ids)
    if ids and (min(ids) < 0 or max(ids) >= vocab_size):
        bad = next(i for i in ids if not 0 <= i < vocab_size)
        raise DataError(f"token id {bad} is out of range (vocabulary size {vocab_size})")
    return ids


class VocabTokenizer:
    """Shared machinery of char and word: a list of pieces (id = position) and a splitter."""

    kind = ""
    unk_id = UNK_ID

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

    def piece_to_id(self, piece: str) -> int | None:
        return self.unk_id if piece == UNK else dict.get(self._index, piece)

    def unknown_units(self, text: str) -> list[str]:
        return list(dict.fromkeys(u for u in self.tokenize(text) if u not in self._index))

    def _lookup(self, ids: Iterable[int]) -> list[str]:
        return list(map(self._pieces.__getitem__, check_ids(ids, len(self._pieces))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, normalize={self.normalize_form!r})"


def symbols_pattern(user_symbols: Sequence[str], rest: str) -> regex.Pattern:
    """A splitter that matches user symbols whole (longest first) before the `rest` pattern."""
    alternatives = [regex.escape(s) for s in sorted(user_symbols, key=len, reverse=True)]
    return regex.compile("|".join([*alternatives, rest]), regex.DOTALL)


# --- checking choices and plain data ----------------------------------------------------------


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


def check_size(d: dict[str, Any], tok: Any) -> Any:
    """`tok`, if it has the vocabulary size that the data claims (when it claims one)."""
    if "vocab_size" in d and d["vocab_size"] != tok.vocab_size:
        raise ValueError(
            f"vocab_size says {d['vocab_size']} but the vocabulary has {tok.vocab_size}"
        )
    return tok


def str_field(d: dict[str, Any], name: str) -> str:
    value = d[name]
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string")
    return value


def list_field(d: dict[str, Any], name: str, *, required: bool = False) -> list[str]:
    value = d[name] if required else d.get(name, [])
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise ValueError(f"field {name!r} must be a list of non-empty strings")
    return value
