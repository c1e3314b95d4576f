"""Texts -> token ids (and each token's hashed character n-grams) -> padded batches.

Character n-grams are fastText's subword features (Bojanowski et al. 2017): a token is
also read as the mean embedding of the 3-, 4- and 5-grams of `<token>`, hashed into a
fixed number of buckets, so a word never seen in training (5.5% of SST-2 dev tokens) still
has a meaningful vector, and rare inflections share one with their stem. The hash is
CRC-32: the same on every run and machine (Python's `hash` of a string is not).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from textrnn.tokenizers import Tokenizer

NGRAM_ORDERS = (3, 4, 5)  # character n-gram lengths
MAX_NGRAMS = 24  # n-grams kept per token (the shortest first)
CACHE_SIZE = 500_000  # tokens whose n-grams are remembered (cleared when full)


def char_ngrams(unit: str, buckets: int) -> list[int]:
    """Bucket ids of the character n-grams of `<unit>` (at least one)."""
    w = f"<{unit}>"
    grams = [zlib.crc32(w[i : i + n].encode("utf-8")) % buckets
             for n in NGRAM_ORDERS for i in range(len(w) - n + 1)]  # fmt: skip
    return grams[:MAX_NGRAMS] or [zlib.crc32(w.encode("utf-8")) % buckets]


@dataclass(frozen=True)
class Encoded:
    """One text as the model reads it."""

    ids: list[int]  # token ids, at least one
    units: tuple[str, ...] = ()  # the tokens themselves, when the model reads their n-grams


@dataclass
class Batch:
    ids: Tensor  # (B, T) token ids, padded with <unk> (0) after each text
    lengths: Tensor  # (B,) tokens of each text, at least 1
    labels: Tensor | None = None  # (B,) class ids
    grams: Tensor | None = None  # (U, G) n-gram bucket ids of the batch's distinct tokens, padded with `buckets`
    types: Tensor | None = None  # (B, T) index into `grams` of each position

    def to(self, device: torch.device) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(*(move(getattr(self, f)) for f in ("ids", "lengths", "labels", "grams", "types")))

    @property
    def inputs(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """The model's arguments: ids, lengths, grams, types."""
        return self.ids, self.lengths, self.grams, self.types


class TextEncoder:
    """Texts -> `Encoded` -> `Batch`es, with a tokenizer and (when `buckets` > 0) n-gram features."""

    def __init__(self, tokenizer: Tokenizer, *, buckets: int = 0, max_tokens: int = 512) -> None:
        self.tokenizer, self.buckets, self.max_tokens = tokenizer, buckets, max_tokens
        self._grams: dict[str, list[int]] = {}
        self._ids: dict[str, int] = {}

    def encode(self, text: str) -> Encoded:
        """A text's ids (cut to `max_tokens`; a text without tokens reads as one <unk>, so that
        it gets the prediction of no evidence rather than an error), and its tokens."""
        if not self.buckets:
            ids = self.tokenizer.encode(text.replace("\n", " "))[: self.max_tokens]
            return Encoded(ids or [self.tokenizer.unk_id])
        units = self.units(text)  # tokenized once: the ids are the units' (a third of the time)
        if not units:
            return Encoded([self.tokenizer.unk_id], ("",))
        return Encoded([self.unit_id(u) for u in units], tuple(units))

    def units(self, text: str) -> list[str]:
        """The tokens of a text, one per id of `encode` (normalised as the tokenizer reads them)."""
        return self.tokenizer.tokenize(text.replace("\n", " "))[: self.max_tokens]

    def unit_id(self, unit: str) -> int:
        """A token's id (<unk> when the vocabulary lacks it), remembered."""
        return _remembered(self._ids, unit, self._look_up)

    def _look_up(self, unit: str) -> int:
        i = self.tokenizer.piece_to_id(unit)
        return self.tokenizer.unk_id if i is None else i

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.id_to_piece(i) for i in ids]

    def grams(self, unit: str) -> list[int]:
        return _remembered(self._grams, unit, lambda u: char_ngrams(u, self.buckets))

    def batch(self, items: Sequence[Encoded], labels: Sequence[int] | None = None) -> Batch:
        """A right-padded batch (with class ids, when given)."""
        lengths = np.fromiter((len(e.ids) for e in items), dtype=np.int64, count=len(items))
        mask = np.arange(int(lengths.max())) < lengths[:, None]  # (B, T): row-major = tokens in order
        ids = np.zeros(mask.shape, dtype=np.int64)
        ids[mask] = [i for e in items for i in e.ids]
        target = None if labels is None else torch.tensor(list(labels), dtype=torch.long)
        batch = Batch(torch.from_numpy(ids), torch.from_numpy(lengths), target)
        if self.buckets:
            distinct: dict[str, int] = {}
            types = np.zeros(mask.shape, dtype=np.int64)
            types[mask] = [distinct.setdefault(u, len(distinct)) for e in items for u in e.units]
            rows = [self.grams(u) for u in distinct]
            width = max(map(len, rows))
            grams = np.full((len(rows), width), self.buckets, dtype=np.int64)
            grams[np.arange(width) < np.array([len(r) for r in rows])[:, None]] = [g for r in rows for g in r]
            batch.grams, batch.types = torch.from_numpy(grams), torch.from_numpy(types)
        return batch


def _remembered(cache: dict, key: str, make: Callable[[str], Any]) -> Any:
    """`cache[key]`, made by `make(key)` on a miss (the cache is emptied when it holds CACHE_SIZE)."""
    hit = cache.get(key)
    if hit is None:
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        hit = cache[key] = make(key)
    return hit
