"""Recurrent language model: embedding -> stacked LSTM/GRU/RNN -> dropout -> linear.

Training uses the fused `nn.LSTM` (fast over whole sequences). Generation uses
`LMStepper`, a hand-written single-step cell over the same weights: calling the
fused module once per token costs several times more per step on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textrnn.errors import UsageError

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}

# A state is a tuple of (layers, B, H) tensors: (h, c) for an LSTM, (h,) for GRU/RNN.
State = tuple[Tensor, ...]


@dataclass(frozen=True)
class LMConfig:
    vocab_size: int  # number of token ids the model reads and predicts
    cell: str = "lstm"  # recurrent cell: lstm | gru | rnn
    layers: int = 2  # stacked recurrent layers
    hidden: int = 512  # units per recurrent layer
    embed: int = 128  # token embedding size
    dropout: float = 0.25  # between recurrent layers and before the output layer
    tie_weights: bool = (
        False  # share the embedding and output matrices (adds a projection if embed != hidden)
    )

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise UsageError(f"--cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        for name in ("vocab_size", "layers", "hidden", "embed"):
            if getattr(self, name) < 1:
                raise UsageError(
                    f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LMConfig:
        return cls(**d)


class LanguageModel(nn.Module):
    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed)
        self.rnn = CELLS[c.cell](
            c.embed,
            c.hidden,
            c.layers,
            batch_first=True,
            dropout=c.dropout if c.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(c.dropout)
        # Tied weights need the output layer's input to be `embed` wide.
        self.proj = nn.Linear(c.hidden, c.embed) if c.tie_weights and c.embed != c.hidden else None
        self.head = nn.Linear(c.embed if c.tie_weights else c.hidden, c.vocab_size)
        if c.tie_weights:
            self.head.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Untied: PyTorch's N(0, 1) gives the recurrent layers a strong input signal from
        # the first step (std 0.1 left a char model near the unigram loss for ~100 steps
        # and cost 0.2 nats/char in a 600 s run). Tied: the matrix is also the output
        # layer, whose logits must start small.
        nn.init.normal_(self.embedding.weight, std=0.05 if self.config.tie_weights else 1.0)
        if self.config.cell == "lstm":
            # Forget-gate bias 1 (Jozefowicz et al. 2015): remember by default early in training.
            H = self.config.hidden
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias"):
                    nn.init.zeros_(p)
                    if name.startswith("bias_ih"):
                        nn.init.ones_(p.data[H : 2 * H])
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Logits for every position of `ids` (B, T) and the state after the last one."""
        x = self.embedding(ids)  # (B, T, E)
        if self.config.cell == "lstm":
            out, (h, c) = self.rnn(x, state)  # (B, T, H)
            new_state: State = (h, c)
        else:
            out, h = self.rnn(x, state[0] if state is not None else None)
            new_state = (h,)
        out = self.drop(out)
        if self.proj is not None:
            out = self.proj(out)  # (B, T, E)
        return self.head(out), new_state  # (B, T, V)

    def initial_state(self, batch: int, *, device: torch.device | str = "cpu") -> State:
        c = self.config
        zeros = torch.zeros(c.layers, batch, c.hidden, device=device)
        return (zeros, zeros.clone()) if c.cell == "lstm" else (zeros,)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def detach_state(state: State) -> State:
    return tuple(s.detach() for s in state)


def reorder_state(state: State, index: Tensor) -> State:
    """Select/repeat the batch rows of a state (used by beam search and batched sampling)."""
    return tuple(s.index_select(1, index) for s in state)


# Layer-0 input projections are precomputed per vocabulary entry when the table is this small.
MAX_INPUT_TABLE = 32_000_000


class LMStepper:
    """One-token-at-a-time inference over a trained LanguageModel's weights.

    Each layer's step is one `addmm` for the recurrent matrix plus, above layer 0, one
    for the input; layer 0's input projection is a row lookup in a table computed once
    from the embedding. The state layout matches `LanguageModel.forward`, so a prompt
    can be consumed with the fused forward and continued here.
    """

    def __init__(self, model: LanguageModel) -> None:
        c = model.config
        self.cell, self.layers, self.hidden = c.cell, c.layers, c.hidden
        p = {name: t.detach().float() for name, t in model.rnn.named_parameters()}
        self.w_ih = [p[f"weight_ih_l{k}"].t().contiguous() for k in range(c.layers)]  # (in, G*H)
        self.w_hh = [p[f"weight_hh_l{k}"].t().contiguous() for k in range(c.layers)]  # (H, G*H)
        self.b_ih = [p[f"bias_ih_l{k}"] for k in range(c.layers)]
        self.b_hh = [p[f"bias_hh_l{k}"] for k in range(c.layers)]
        if c.cell != "gru":  # GRU keeps b_hh apart: its candidate gate scales it by r
            self.b_ih = [bi + bh for bi, bh in zip(self.b_ih, self.b_hh, strict=True)]
            self.b_hh = [torch.zeros_like(b) for b in self.b_hh]
        # Above layer 0, LSTM/RNN layers multiply [x, h] by one stacked matrix: one
        # matrix-vector product instead of two (the step is memory-bound at batch 1).
        if c.cell == "lstm":  # gate order i,f,g,o -> i,f,o,g: one sigmoid and one tanh per step
            order = torch.cat(
                [
                    torch.arange(0, 2 * c.hidden),
                    torch.arange(3 * c.hidden, 4 * c.hidden),
                    torch.arange(2 * c.hidden, 3 * c.hidden),
                ]
            )
            self.w_ih = [w[:, order].contiguous() for w in self.w_ih]
            self.w_hh = [w[:, order].contiguous() for w in self.w_hh]
            self.b_ih = [b[order] for b in self.b_ih]
        self.w_cat = [
            torch.cat([wi, wh]) for wi, wh in zip(self.w_ih, self.w_hh, strict=True)
        ]  # (in+H, G*H)
        emb = model.embedding.weight.detach().float()  # (V, E)
        if emb.shape[0] * self.w_ih[0].shape[1] <= MAX_INPUT_TABLE:
            self.table: Tensor | None = torch.addmm(self.b_ih[0], emb, self.w_ih[0])  # (V, G*H)
        else:
            self.table = None
        self.emb = emb
        self.proj = (
            (model.proj.weight.detach().float().t().contiguous(), model.proj.bias.detach().float())
            if model.proj is not None
            else None
        )
        self.head_w = model.head.weight.detach().float().t().contiguous()  # (H or E, V)
        self.head_b = model.head.bias.detach().float()

    def _input_gates(self, tokens: Tensor) -> Tensor:
        if self.table is not None:
            return self.table.index_select(0, tokens)  # (B, G*H)
        return torch.addmm(self.b_ih[0], self.emb.index_select(0, tokens), self.w_ih[0])

    @torch.inference_mode()
    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Next-token logits (B, V) after feeding `tokens` (B,), and the new state."""
        hs = state[0]  # (L, B, H)
        new_h, new_c = [], []
        x = None
        for k in range(self.layers):
            h = hs[k]  # (B, H)
            if self.cell == "gru":
                gx = (
                    self._input_gates(tokens)
                    if k == 0
                    else torch.addmm(self.b_ih[k], x, self.w_ih[k])
                )
                gh = torch.addmm(self.b_hh[k], h, self.w_hh[k])  # (B, 3H)
                xr, xz, xn = gx.chunk(3, dim=1)
                hr, hz, hn = gh.chunk(3, dim=1)
                r = torch.sigmoid(xr + hr)
                z = torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn)
                x = n + z * (h - n)
            else:
                if k == 0:
                    gates = torch.addmm(self._input_gates(tokens), h, self.w_hh[0])  # (B, G*H)
                else:
                    gates = torch.addmm(
                        self.b_ih[k], torch.cat([x, h], 1), self.w_cat[k]
                    )  # (B, G*H)
                if self.cell == "lstm":
                    H = self.hidden
                    ifo = torch.sigmoid(gates[:, : 3 * H])  # (B, 3H)
                    g = torch.tanh(gates[:, 3 * H :])  # (B, H)
                    c = torch.addcmul(ifo[:, H : 2 * H] * state[1][k], ifo[:, :H], g)
                    x = ifo[:, 2 * H :] * torch.tanh(c)
                    new_c.append(c)
                else:
                    x = torch.tanh(gates)
            new_h.append(x)
        if self.proj is not None:
            x = torch.addmm(self.proj[1], x, self.proj[0])
        logits = torch.addmm(self.head_b, x, self.head_w)  # (B, V)
        h_all = torch.stack(new_h)
        return logits, ((h_all, torch.stack(new_c)) if self.cell == "lstm" else (h_all,))


@torch.inference_mode()
def prime(model: LanguageModel, prompt_ids: Tensor) -> tuple[Tensor, State]:
    """Consume a prompt (1, T) with the fused forward; return the last logits (1, V) and state."""
    was_training = model.training
    model.eval()
    logits, state = model(prompt_ids)
    model.train(was_training)
    return logits[:, -1].float(), tuple(s.float() for s in state)


def sequence_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Summed cross-entropy in nats of `targets` (B, T) under `logits` (B, T, V)."""
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
    )
