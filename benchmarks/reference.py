"""The plain PyTorch references textrnn is measured against.

Written the way a tutorial would: `nn.Embedding -> nn.LSTM (or nn.GRU) -> dropout ->
nn.Linear`, and a training loop with AdamW and gradient clipping. For generation, two
ways to step it: the fused module called once per token (what a tutorial's sampler does),
and the loop a user who knows the cost of that call writes, one `nn.LSTMCell` /
`nn.GRUCell` per layer under `torch.inference_mode()`. Nothing here imports textrnn.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CELLS = {"lstm": (nn.LSTM, nn.LSTMCell), "gru": (nn.GRU, nn.GRUCell)}


class PlainLM(nn.Module):
    """The textbook LSTM (or GRU) language model (textrnn's weights: `load_textrnn_weights`)."""

    def __init__(
        self,
        vocab: int,
        *,
        embed: int,
        hidden: int,
        layers: int,
        dropout: float = 0.0,
        tie: bool = False,
        cell: str = "lstm",
    ) -> None:
        super().__init__()
        if tie and embed != hidden:
            raise ValueError("tied weights need embed == hidden here")
        self.cell = cell
        self.embedding = nn.Embedding(vocab, embed)
        self.rnn = CELLS[cell][0](
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

    def forward(self, ids: Tensor, state: Tensor | tuple[Tensor, Tensor] | None = None):
        out, state = self.rnn(self.embedding(ids), state)  # (B, T, H)
        return self.head(self.drop(out)), state  # (B, T, V)

    def initial_state(self, rows: int) -> Tensor | tuple[Tensor, Tensor]:
        h = torch.zeros(self.rnn.num_layers, rows, self.rnn.hidden_size)  # (L, B, H)
        return (h, h.clone()) if self.cell == "lstm" else h

    def step(self, tokens: Tensor, state):
        """Logits (B, V) after `tokens` (B,): one call of the fused module on a (B, 1) input."""
        logits, state = self(tokens[:, None], state)  # (B, 1, V)
        return logits[:, -1].float(), state

    @staticmethod
    def reorder(state, index: Tensor):
        if isinstance(state, tuple):
            return tuple(s.index_select(1, index) for s in state)
        return state.index_select(1, index)


class CellLM(nn.Module):
    """A PlainLM's weights stepped by one `nn.LSTMCell` / `nn.GRUCell` per layer: the
    generation loop a competent user writes (no fused-module call per token)."""

    def __init__(self, plain: PlainLM) -> None:
        super().__init__()
        rnn, cell = plain.rnn, CELLS[plain.cell][1]
        self.lstm = plain.cell == "lstm"
        self.embedding, self.head = plain.embedding, plain.head
        self.cells = nn.ModuleList()
        for k in range(rnn.num_layers):
            layer = cell(rnn.input_size if k == 0 else rnn.hidden_size, rnn.hidden_size)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(layer, name).data.copy_(getattr(rnn, f"{name}_l{k}").data)
            self.cells.append(layer)

    def initial_state(self, rows: int) -> list:
        """One entry per layer: h (B, H) for a GRU, (h, c) for an LSTM."""
        zeros = lambda: torch.zeros(rows, self.cells[0].hidden_size)  # noqa: E731
        return [(zeros(), zeros()) if self.lstm else zeros() for _ in self.cells]

    def step(self, tokens: Tensor, state: list):
        x = self.embedding(tokens)  # (B, E)
        new = []
        for layer, s in zip(self.cells, state, strict=True):
            s = layer(x, s)
            x = s[0] if self.lstm else s  # (B, H)
            new.append(s)
        return self.head(x).float(), new  # (B, V)

    @staticmethod
    def reorder(state: list, index: Tensor) -> list:
        pick = lambda t: t.index_select(0, index)  # noqa: E731
        return [tuple(map(pick, s)) if isinstance(s, tuple) else pick(s) for s in state]


@torch.inference_mode()
def sample(
    model: PlainLM | CellLM, first: int, *, length: int, rows: int, generator: torch.Generator
) -> list[list[int]]:
    """Ancestral sampling with `model.step`: softmax, torch.multinomial, one token per row."""
    model.eval()
    x = torch.full((rows,), first, dtype=torch.long)  # (B,)
    state = model.initial_state(rows)
    out = []
    for _ in range(length):
        logits, state = model.step(x, state)  # (B, V)
        probs = logits.float().softmax(-1)  # (B, V)
        x = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
        out.append(x.tolist())
    return out


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
