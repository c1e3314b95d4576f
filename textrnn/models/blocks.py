"""Building blocks shared by the task models: a fast dropout, an exactly masked
bidirectional LSTM (or GRU) encoder over right-padded batches, and pooling of its
outputs into one vector per sequence.

The encoder runs every layer as two unidirectional LSTMs over padded tensors: the
forward one reads the sequence as it is (padding comes after the last real position,
so it never reaches one) and the backward one reads each sequence reversed *within its
own length* (padding again comes last). This is exact masking, and on CPU it is
several times faster than packed sequences because plain padded LSTMs run on oneDNN
kernels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Dropout(nn.Module):
    """Dropout with the mask drawn by `torch.rand`: the same result as nn.Dropout, but
    about twice as fast on CPU, where `bernoulli_` is slow."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape, device=x.device) >= self.p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))


def reverse_index(lengths: Tensor, T: int) -> Tensor:
    """(B, T) positions that reverse each row within its length and leave padding in place.

    The map is its own inverse: gathering with it twice restores the original order.
    """
    t = torch.arange(T, device=lengths.device).unsqueeze(0)  # (1, T)
    L = lengths.unsqueeze(1)  # (B, 1)
    return torch.where(t < L, L - 1 - t, t)  # (B, T)


CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}  # the recurrent cells an encoder can be built of


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM (or GRU, `cell="gru"`) over right-padded (B, T, I) input;
    outputs (B, T, 2H): each position's forward state, then its backward state.

    Outputs at padding positions are meaningless; those at real positions never
    depend on padding.
    """

    def __init__(
        self, input_size: int, hidden: int, layers: int, dropout: float, *, cell: str = "lstm"
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        rnn = CELLS[cell]
        sizes = [input_size] + [2 * hidden] * (layers - 1)
        self.fwd = nn.ModuleList(rnn(n, hidden, batch_first=True) for n in sizes)
        self.bwd = nn.ModuleList(rnn(n, hidden, batch_first=True) for n in sizes)
        self.drop = Dropout(dropout)
        if cell == "lstm":
            for lstm in (*self.fwd, *self.bwd):
                for name, p in lstm.named_parameters():
                    if name.startswith("bias_ih"):  # forget-gate bias 1 (the bias_hh half stays 0)
                        nn.init.zeros_(p)
                        p.data[hidden : 2 * hidden] = 1.0
                    elif name.startswith("bias_hh"):
                        nn.init.zeros_(p)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        B, T, _ = x.shape
        rev = reverse_index(lengths, T)  # (B, T)
        rows = (rev + T * torch.arange(B, device=x.device).unsqueeze(1)).view(
            -1
        )  # (B*T,) rows of (B*T, D)

        def reverse(t: Tensor) -> Tensor:  # whole feature rows: much faster than gather
            return t.reshape(B * T, -1).index_select(0, rows).view(B, T, -1)

        for i, (fwd, bwd) in enumerate(zip(self.fwd, self.bwd, strict=True)):
            if i:
                x = self.drop(x)
            f, _ = fwd(x)  # (B, T, H)
            b, _ = bwd(reverse(x))  # (B, T, H), row b reversed within its length
            x = torch.cat([f, reverse(b)], dim=-1)  # (B, T, 2H)
        return x


POOLS = ("max", "mean", "last", "attention")  # ways to read a sequence of states as one vector


class Pooling(nn.Module):
    """(B, T, D) states of right-padded sequences -> (B, D), padding masked by `lengths`.

    - "max": the largest value of each feature over the positions;
    - "mean": the average over the positions;
    - "last": a bidirectional encoder's final states, the forward half at the last
      position and the backward half at the first (`bidirectional=False`: the state
      at the last position);
    - "attention": a weighted average, the weights a softmax over positions of a learnt
      score v . tanh(W h_t) (Yang et al. 2016), given by `attention_weights`.

    A sequence of length 0 pools to zeros.
    """

    def __init__(self, kind: str, dim: int, *, bidirectional: bool = True) -> None:
        super().__init__()
        if kind not in POOLS:
            raise ValueError(f"pooling must be one of {', '.join(POOLS)}, got {kind!r}")
        self.kind, self.bidirectional = kind, bidirectional
        if kind == "attention":
            self.proj = nn.Linear(dim, dim)
            self.score = nn.Linear(dim, 1, bias=False)

    def forward(self, h: Tensor, lengths: Tensor) -> Tensor:
        B, T, D = h.shape
        mask = torch.arange(T, device=h.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        if self.kind == "max":
            pooled = h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)  # (B, D)
            return pooled.masked_fill(lengths.unsqueeze(1) == 0, 0.0)
        if self.kind == "mean":
            summed = (h * mask.unsqueeze(-1).to(h.dtype)).sum(1)  # (B, D)
            return summed / lengths.clamp(min=1).unsqueeze(1).to(h.dtype)
        if self.kind == "last":
            rows = torch.arange(B, device=h.device)
            last = h[rows, (lengths - 1).clamp(min=0)]  # (B, D)
            if self.bidirectional:
                last = torch.cat([last[:, : D // 2], h[:, 0, D // 2 :]], dim=-1)
            return last.masked_fill(lengths.unsqueeze(1) == 0, 0.0)
        weights = self.attention_weights(h, mask)  # (B, T)
        return torch.bmm(weights.unsqueeze(1).to(h.dtype), h).squeeze(1)  # (B, D)

    def attention_weights(self, h: Tensor, mask: Tensor) -> Tensor:
        """(B, T) softmax weights over each sequence's real positions (0 at padding)."""
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1).float()  # (B, T)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return torch.nan_to_num(weights, nan=0.0)  # an empty sequence: all -inf -> NaN -> 0


def log_mean_probs(logits: Tensor) -> Tensor:
    """An ensemble's scores: the log of its members' mean probability, over the first
    dimension of `logits` (M, ...) -> (...); a softmax of them gives that mean."""
    return torch.logsumexp(torch.log_softmax(logits.float(), -1), 0) - math.log(logits.shape[0])
