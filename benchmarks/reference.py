"""The plain PyTorch references textrnn is measured against.

Written the way a tutorial would: `nn.Embedding -> nn.LSTM -> dropout -> nn.Linear`,
a per-token sampler that calls the fused `nn.LSTM` once per token, and a training
loop with AdamW and gradient clipping. Nothing here imports textrnn.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PlainLM(nn.Module):
    """The textbook LSTM language model (load textrnn's weights with `load_textrnn_weights`)."""

    def __init__(
        self,
        vocab: int,
        *,
        embed: int,
        hidden: int,
        layers: int,
        dropout: float = 0.0,
        tie: bool = False,
    ) -> None:
        super().__init__()
        if tie and embed != hidden:
            raise ValueError("tied weights need embed == hidden here")
        self.embedding = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(
            embed, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab)
        if tie:
            self.head.weight = self.embedding.weight

    def load_textrnn_weights(self, state: dict[str, Tensor]) -> None:
        """Load a textrnn LanguageModel's state dict: its layer k's `rnn.k.weight_ih_l0` is
        this stacked module's `rnn.weight_ih_lk`; every other name is the same."""
        renamed = {}
        for name, tensor in state.items():
            parts = name.split(".")
            if parts[0] == "rnn" and len(parts) == 3:
                name = f"rnn.{parts[2].removesuffix('_l0')}_l{parts[1]}"
            renamed[name] = tensor
        self.load_state_dict(renamed)

    def forward(self, ids: Tensor, state: tuple[Tensor, Tensor] | None = None):
        out, state = self.rnn(self.embedding(ids), state)  # (B, T, H)
        return self.head(self.drop(out)), state  # (B, T, V)


@torch.inference_mode()
def sample(
    model: PlainLM, first: int, *, length: int, rows: int, generator: torch.Generator
) -> list[list[int]]:
    """Ancestral sampling, one fused-module call per token: (rows, 1) in, softmax, multinomial."""
    model.eval()
    x = torch.full((rows, 1), first, dtype=torch.long)  # (B, 1)
    state = None
    out = []
    for _ in range(length):
        logits, state = model(x, state)  # (B, 1, V)
        probs = logits[:, -1].softmax(-1)  # (B, V)
        x = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        out.append(x.squeeze(1).tolist())
    return out


def step_fn(model: PlainLM):
    """A (tokens (B,), state) -> (logits (B, V), state) step over the fused module, for beam search."""

    def step(tokens: Tensor, state):
        logits, state = model(tokens[:, None], state)  # (B, 1, V)
        return logits[:, -1], state

    return step


def reorder(state: tuple[Tensor, Tensor], index: Tensor) -> tuple[Tensor, Tensor]:
    return tuple(s.index_select(1, index) for s in state)


def train_rate(
    model: PlainLM,
    ids: Tensor,
    *,
    batch: int,
    seq: int,
    warmup: int,
    steps: int,
    bf16: bool,
) -> float:
    """Tokens/s of `steps` training steps after `warmup` untimed ones.

    Stateful truncated BPTT over `batch` contiguous streams of `ids` (1-D long), as in
    char-rnn: the hidden state is carried (detached) from one window to the next.
    """
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.01)
    row = (ids.numel() - 1) // batch
    xs = ids[: batch * row].view(batch, row)  # (B, L)
    ys = ids[1 : batch * row + 1].view(batch, row)  # (B, L)
    windows = row // seq
    state = None
    start = time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        k = step % windows
        x, y = xs[:, k * seq : (k + 1) * seq], ys[:, k * seq : (k + 1) * seq]  # (B, T)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, state = model(x, state)  # (B, T, V)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        state = tuple(s.detach() for s in state)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
    return steps * batch * seq / (time.perf_counter() - start)
