"""Recurrent language model: embedding -> stacked LSTM/GRU/RNN -> dropout -> linear.

Training uses the fused `nn.LSTM` (fast over whole sequences). Generation uses
`LMStepper`, a hand-written single-step cell over the same weights: calling the
fused module once per token costs several times more per step on a CPU.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from textrnn.errors import UsageError

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

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
    variational: bool = False  # one dropout mask per sequence, shared by its time steps
    tie_weights: bool = False  # share embedding and output matrices (a projection if embed != hidden)

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



class LanguageModel(nn.Module):
    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed)
        # One module per layer: the dropout between layers is ours (see `dropout`).
        self.rnn = nn.ModuleList(
            CELLS[c.cell](c.embed if k == 0 else c.hidden, c.hidden, 1, batch_first=True) for k in range(c.layers)
        )
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
            for name, p in self.rnn.named_parameters():  # "0.bias_ih_l0", ...
                if ".bias" in name:
                    nn.init.zeros_(p)
                    if ".bias_ih" in name:
                        nn.init.ones_(p.data[H : 2 * H])
        nn.init.zeros_(self.head.bias)

    @torch.no_grad()
    def start_from_unigram(self, counts: Tensor) -> None:
        """Set the output bias to the log of the tokens' training frequencies (`counts`,
        add-one), so that the first step already predicts the unigram distribution instead
        of spending its first updates learning it (with tied word embeddings, whose small
        logits learn slowly, that took a 2x128 model on tiny-shakespeare over 600 steps)."""
        freq = (counts.double() + 1) / (counts.sum() + counts.numel())
        self.head.bias.copy_(freq.log().to(self.head.bias.dtype))

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Logits for every position of `ids` (B, T) and the state after the last one."""
        x = self.embedding(ids)  # (B, T, E)
        finals = []  # each layer's final state
        for k, layer in enumerate(self.rnn):
            if k:
                x = self.dropout(x)
            layer_state = None if state is None else tuple(s[k : k + 1] for s in state)
            if self.config.cell == "lstm":
                x, final = layer(x, layer_state)  # (B, T, H), (h, c)
            else:
                x, h = layer(x, None if layer_state is None else layer_state[0])
                final = (h,)
            finals.append(final)
        new_state: State = tuple(torch.cat(parts) for parts in zip(*finals, strict=True))  # (L, B, H) each
        out = self.dropout(x)
        if self.proj is not None:
            out = self.proj(out)  # (B, T, E)
        return self.head(out), new_state  # (B, T, V)

    def dropout(self, x: Tensor) -> Tensor:
        """Dropout on (B, T, H) activations, with masks drawn by `torch.rand`.

        (`F.dropout` draws with `bernoulli_`: 20 ms for a (32, 128, 640) tensor on this
        2-core CPU, against 6 ms here; at two dropouts per step that was 8% of training
        a 2x640 GRU.) `variational` draws one mask per sequence (B, 1, H), shared by all
        its time steps (Gal and Ghahramani 2016)."""
        p = self.config.dropout
        if not self.training or p == 0.0:
            return x
        shape = (x.shape[0], 1, x.shape[2]) if self.config.variational else x.shape
        keep = torch.rand(shape, device=x.device) >= p
        return x * (keep * (1.0 / (1.0 - p))).to(x.dtype)

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

    def __init__(self, model: LanguageModel, *, precision: str = "fp32") -> None:
        c = model.config
        self.cell, self.layers, self.hidden = c.cell, c.layers, c.hidden
        if precision not in Matmul.MODES:
            raise ValueError(f"stepper precision must be one of {Matmul.MODES}, got {precision!r}")
        device = next(model.parameters()).device
        self.precision = precision if Matmul.available(precision, device) else "fp32"
        w = lambda name: [getattr(layer, name).detach().float() for layer in model.rnn]  # noqa: E731
        w_ih = [t.t().contiguous() for t in w("weight_ih_l0")]  # (in, G*H) per layer
        w_hh = [t.t().contiguous() for t in w("weight_hh_l0")]  # (H, G*H)
        b_ih, b_hh = w("bias_ih_l0"), w("bias_hh_l0")
        if c.cell != "gru":  # GRU keeps b_hh apart: its candidate gate scales it by r
            b_ih = [bi + bh for bi, bh in zip(b_ih, b_hh, strict=True)]
            b_hh = [None] * c.layers
        if c.cell == "lstm":  # gate order i,f,g,o -> i,f,o,g: one sigmoid and one tanh per step
            H = c.hidden
            order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
            w_ih = [w[:, order].contiguous() for w in w_ih]
            w_hh = [w[:, order].contiguous() for w in w_hh]
            b_ih = [b[order] for b in b_ih]
        mm = lambda w, b=None: Matmul(w, b, mode=self.precision)  # noqa: E731
        # Layer 0's input projection is a row lookup in a (V, G*H) table computed once
        # from the embedding (in fp32); above layer 0, LSTM/RNN layers multiply [x, h]
        # by one stacked matrix: one matrix-vector product instead of two (the step is
        # memory-bound at batch 1).
        emb = model.embedding.weight.detach().float()  # (V, E)
        self.table = torch.addmm(b_ih[0], emb, w_ih[0]) if emb.shape[0] * w_ih[0].shape[1] <= MAX_INPUT_TABLE else None
        self.emb, self.in0 = emb, mm(w_ih[0], b_ih[0])
        if c.cell == "gru":
            self.ih = [mm(w_ih[k], b_ih[k]) for k in range(c.layers)]
            self.hh = [mm(w_hh[k], b_hh[k]) for k in range(c.layers)]
        else:
            self.hh0 = mm(w_hh[0])
            self.cat = [None] + [mm(torch.cat([w_ih[k], w_hh[k]]), b_ih[k]) for k in range(1, c.layers)]  # (in+H, G*H)
        self.proj = mm(model.proj.weight.detach().float().t(), model.proj.bias.detach().float()) if model.proj is not None else None
        self.head = mm(model.head.weight.detach().float().t(), model.head.bias.detach().float())  # (H or E, V)

    def _input_gates(self, tokens: Tensor) -> Tensor:
        if self.table is not None:
            return self.table.index_select(0, tokens)  # (B, G*H)
        return self.in0(self.emb.index_select(0, tokens))

    @torch.inference_mode()
    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Next-token logits (B, V) after feeding `tokens` (B,), and the new state."""
        hs = state[0]  # (L, B, H)
        new_h, new_c = [], []
        x = None
        for k in range(self.layers):
            h = hs[k]  # (B, H)
            if self.cell == "gru":
                gx = self._input_gates(tokens) if k == 0 else self.ih[k](x)  # (B, 3H)
                gh = self.hh[k](h)  # (B, 3H)
                xr, xz, xn = gx.chunk(3, dim=1)
                hr, hz, hn = gh.chunk(3, dim=1)
                r = torch.sigmoid(xr + hr)
                z = torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn)
                x = n + z * (h - n)
            else:
                if k == 0:
                    gates = self.hh0(h, add=self._input_gates(tokens))  # (B, G*H)
                else:
                    gates = self.cat[k](torch.cat([x, h], 1))  # (B, G*H)
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
            x = self.proj(x)
        logits = self.head(x)  # (B, V)
        h_all = torch.stack(new_h)
        return logits, ((h_all, torch.stack(new_c)) if self.cell == "lstm" else (h_all,))


class Matmul:
    """`x @ w + b` for inference: fp32 (addmm), bf16 weights prepacked for oneDNN, or int8.

    At batch 1 a step reads every weight once per token, so it runs at memory speed:
    bf16 halves the bytes, int8 quarters them. The model trains under bf16 autocast, so
    its matrices already multiply in bf16 there. int8 keeps one scale per output unit
    (symmetric, per channel) and quantizes the input row on the fly (fbgemm's dynamic
    linear). Stepping a trained 2x512 char model through 20,000 held-out characters gave
    1.38028 nats/char in fp32, 1.38030 in bf16 and 1.38034 in int8. Inputs, outputs, biases
    and the recurrent state stay fp32 in every mode.
    """

    MIN_WEIGHTS = 1 << 18  # smaller matrices stay fp32: a bf16/int8 call has a fixed cost of
    # about 10 us, more than a char model's whole output layer (512 x 66: 3 us in fp32)
    MODES = ("fp32", "bf16", "int8")

    def __init__(self, w: Tensor, b: Tensor | None = None, *, mode: str = "fp32") -> None:  # w: (in, out)
        if mode not in self.MODES:
            raise ValueError(f"Matmul mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode if w.numel() >= self.MIN_WEIGHTS else "fp32"
        self.w, self.b = (w, b) if self.mode == "fp32" else (None, None)  # (the packed forms replace them)
        if self.mode == "bf16":
            self.packed = torch.ops.mkldnn._reorder_linear_weight(w.t().contiguous().bfloat16(), 1)
            self.b16 = b.bfloat16() if b is not None else None
        elif self.mode == "int8":
            self.packed = _int8_prepack(w.t(), b)

    def __call__(self, x: Tensor, *, add: Tensor | None = None) -> Tensor:
        """x @ w + b (+ add), in fp32."""
        if self.mode == "fp32":
            bias = add if self.b is None else (self.b if add is None else add + self.b)
            return x @ self.w if bias is None else torch.addmm(bias, x, self.w)
        if self.mode == "int8":
            y = torch.ops.quantized.linear_dynamic(x, self.packed, True)
        else:
            y = torch.ops.mkldnn._linear_pointwise(x.bfloat16(), self.packed, self.b16, "none", [], "").float()
        return y if add is None else y + add

    @staticmethod
    def available(mode: str, device: torch.device) -> bool:
        """Whether `mode`'s products run natively here: bf16 through oneDNN on CPUs with bf16
        instructions, int8 through fbgemm on x86 CPUs (fp32 everywhere)."""
        if mode == "fp32":
            return True
        if device.type != "cpu":
            return False
        try:
            if mode == "bf16":
                return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            if mode == "int8":
                return _int8_works()
        except (AttributeError, RuntimeError):
            return False
        return False


def _int8_prepack(w: Tensor, b: Tensor | None):
    """fbgemm's packed form of `w` (out, in) quantized to int8 per output row, with an fp32 bias.

    (PyTorch marks its quantized tensor types deprecated; the warning says nothing a user
    can act on, so it is silenced here, and `Matmul.available` falls back when they go.)"""
    scale = (w.abs().amax(1) / 127).clamp_min(1e-12).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qw = torch.quantize_per_channel(w.contiguous(), scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(qw, None if b is None else b.contiguous())


@functools.cache
def _int8_works() -> bool:
    """fbgemm's dynamic int8 linear runs here (x86 engine present, ops not removed): tried once."""
    engines = torch.backends.quantized.supported_engines
    if "fbgemm" not in engines and "x86" not in engines:
        return False
    try:
        y = torch.ops.quantized.linear_dynamic(torch.ones(1, 4), _int8_prepack(torch.eye(4), None), True)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return bool(torch.allclose(y, torch.ones(1, 4), atol=0.05))
