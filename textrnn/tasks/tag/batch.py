"""Sentences -> padded tagger batches: word ids, the distinct words' grapheme ids, and tags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from textrnn.models.tagger import PAD
from textrnn.tasks.tag.vocab import Vocab


@dataclass
class Batch:
    words: Tensor  # (B, T) word ids, PAD after each sentence
    lengths: Tensor  # (B,)
    chars: Tensor  # (U, L) grapheme ids of the batch's distinct words
    char_lengths: Tensor  # (U,)
    types: Tensor  # (B, T) index into `chars` of each position
    tags: Tensor | None  # (B, T) tag ids, -100 at padding
    known: Tensor | None = None  # (B, T) True where the word occurred in training

    def to(self, device: torch.device) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(
            *(
                move(getattr(self, f))
                for f in ("words", "lengths", "chars", "char_lengths", "types", "tags", "known")
            )
        )

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())


class Encoder:
    """Turns word lists into `Batch`es, remembering each distinct word's ids (a bounded cache)."""

    def __init__(self, vocab: Vocab, *, cache_size: int = 500_000) -> None:
        self.vocab = vocab
        self.cache_size = cache_size
        self._cache: dict[str, tuple[int, list[int], bool]] = {}

    def lookup(self, word: str) -> tuple[int, list[int], bool]:
        hit = self._cache.get(word)
        if hit is None:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            wid = self.vocab.word_id(word)
            hit = (wid, self.vocab.char_ids(word), 2 <= wid < 2 + self.vocab.train_words)
            self._cache[word] = hit
        return hit

    def batch(
        self, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]] | None = None
    ) -> Batch:
        """A padded batch of non-empty sentences (with their tags, when given)."""
        B = len(sentences)
        lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=B)
        T = int(lengths.max())
        mask = np.arange(T) < lengths[:, None]  # (B, T): row-major order = the words in order
        flat = [w for s in sentences for w in s]
        cache = self._cache
        hits = [cache.get(w) or self.lookup(w) for w in flat]
        distinct: dict[str, int] = {}
        type_flat = [distinct.setdefault(w, len(distinct)) for w in flat]
        words = np.full((B, T), PAD, dtype=np.int64)
        words[mask] = [h[0] for h in hits]
        known = np.zeros((B, T), dtype=bool)
        known[mask] = [h[2] for h in hits]
        types = np.zeros((B, T), dtype=np.int64)
        types[mask] = type_flat
        rows = [(cache.get(w) or self.lookup(w))[1] for w in distinct]
        char_lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        chars = np.full((len(rows), int(char_lengths.max())), PAD, dtype=np.int64)
        chars[np.arange(chars.shape[1]) < char_lengths[:, None]] = [c for r in rows for c in r]
        tag_ids = None
        if tags is not None:
            index = self.vocab.tag_index
            tag_arr = np.full((B, T), -100, dtype=np.int64)
            tag_arr[mask] = [index.get(t, -100) for ts in tags for t in ts]
            tag_ids = torch.from_numpy(tag_arr)
        return Batch(
            torch.from_numpy(words),
            torch.from_numpy(lengths),
            torch.from_numpy(chars),
            torch.from_numpy(char_lengths),
            torch.from_numpy(types),
            tag_ids,
            torch.from_numpy(known),
        )
