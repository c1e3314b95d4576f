"""Word pairs -> padded encoder-decoder batches, and the teacher-forced sequence loss."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from textrnn.models.seq2seq import BOS, EOS, PAD, UNK


@dataclass
class Batch:
    src: Tensor  # (B, S) source ids, PAD after each word
    lengths: Tensor  # (B,)
    tgt_in: Tensor  # (B, T) <s> + target ids, PAD after
    tgt_out: Tensor  # (B, T) target ids + </s>, -100 after
    weights: Tensor  # (B,) loss weight per word

    def to(self, device: torch.device) -> Batch:
        return Batch(*(getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)))

    @property
    def tokens(self) -> int:
        return int((self.tgt_out >= 0).sum())


def pad_sources(ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Right-padded (B, S) source ids and their lengths (B,); an empty word reads as one <unk>."""
    rows = [list(r) or [UNK] for r in ids]
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    src = np.full((len(rows), int(lengths.max())), PAD, dtype=np.int64)
    src[np.arange(src.shape[1]) < lengths[:, None]] = [i for r in rows for i in r]
    return torch.from_numpy(src), torch.from_numpy(lengths)


def make_batch(
    src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], weights: Sequence[float]
) -> Batch:
    src, lengths = pad_sources(src_ids)
    B, T = len(tgt_ids), max(len(t) for t in tgt_ids) + 1
    tgt_in = np.full((B, T), PAD, dtype=np.int64)
    tgt_out = np.full((B, T), -100, dtype=np.int64)
    for b, t in enumerate(tgt_ids):
        tgt_in[b, : len(t) + 1] = [BOS, *t]
        tgt_out[b, : len(t) + 1] = [*t, EOS]
    return Batch(
        src,
        lengths,
        torch.from_numpy(tgt_in),
        torch.from_numpy(tgt_out),
        torch.tensor(weights, dtype=torch.float32),
    )


def sequence_loss(
    logits: Tensor, batch: Batch, *, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """(weighted sum of token losses, weighted token count) of teacher-forced logits (B, T, V),
    or of an ensemble's (M, B, T, V), whose loss is the mean of the members'."""
    if logits.dim() == 4:
        sums = [sequence_loss(m, batch, label_smoothing=label_smoothing) for m in logits]
        return torch.stack([total for total, _ in sums]).mean(), sums[0][1]
    B, T, V = logits.shape
    token = F.cross_entropy(
        logits.float().reshape(B * T, V), batch.tgt_out.reshape(-1), ignore_index=-100,
        reduction="none", label_smoothing=label_smoothing,
    ).view(B, T)  # fmt: skip
    real = (batch.tgt_out >= 0).float()  # (B, T)
    w = batch.weights.unsqueeze(1)  # (B, 1)
    return (token * w).sum(), (real * w).sum()
