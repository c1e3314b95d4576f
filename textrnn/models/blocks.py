"""Building blocks shared by the task models: a fast dropout, and an exactly masked
bidirectional LSTM encoder over right-padded batches.

The encoder runs every layer as two unidirectional LSTMs over padded tensors: the
forward one reads the sequence as it is (padding comes after the last real position,
so it never reaches one) and the backward one reads each sequence reversed *within its
own length* (padding again comes last). This is exact masking, and on CPU it is
several times faster than packed sequences because plain padded LSTMs run on oneDNN
kernels.
"""

from __future__ import annotations

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


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM over right-padded (B, T, I) input; outputs (B, T, 2H).

    Outputs at padding positions are meaningless; those at real positions never
    depend on padding.
    """

    def __init__(self, input_size: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        sizes = [input_size] + [2 * hidden] * (layers - 1)
        self.fwd = nn.ModuleList(nn.LSTM(n, hidden, batch_first=True) for n in sizes)
        self.bwd = nn.ModuleList(nn.LSTM(n, hidden, batch_first=True) for n in sizes)
        self.drop = Dropout(dropout)
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
