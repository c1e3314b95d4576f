"""Texts -> token ids -> padded batches for a classifier."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from textrnn.tokenizers import Tokenizer

MAX_TOKENS = 512  # a longer text is read by its first MAX_TOKENS tokens


@dataclass
class Batch:
    ids: Tensor  # (B, T) token ids, padded with <unk> (0) after each text
    lengths: Tensor  # (B,) tokens of each text, at least 1
    labels: Tensor | None = None  # (B,) class ids

    def to(self, device: torch.device) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.ids), move(self.lengths), move(self.labels))

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])


def encode_text(tokenizer: Tokenizer, text: str, *, max_tokens: int = MAX_TOKENS) -> list[int]:
    """A text's token ids, cut to `max_tokens`; a text without tokens reads as one <unk>, so
    that it gets the prediction of no evidence rather than an error."""
    ids = tokenizer.encode(text.replace("\n", " "))[:max_tokens]
    return ids or [tokenizer.unk_id]


def make_batch(seqs: Sequence[Sequence[int]], labels: Sequence[int] | None = None) -> Batch:
    """A right-padded batch of non-empty id sequences (with their class ids, when given)."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    ids = np.zeros((len(seqs), int(lengths.max())), dtype=np.int64)
    ids[np.arange(ids.shape[1]) < lengths[:, None]] = [i for s in seqs for i in s]
    target = None if labels is None else torch.tensor(list(labels), dtype=torch.long)
    return Batch(torch.from_numpy(ids), torch.from_numpy(lengths), target)
