"""An attentional encoder-decoder for transliteration (one word in, one word out).

Encoder: unit embeddings -> stacked BiLSTM (the tagger's exactly-masked `BiLSTM`).
Decoder: an LSTM with attention over the encoder states and input feeding (Luong et al.
2015): the attentional vector of step t-1 is part of the input of step t. One `step()`
advances the decoder by one token; teacher-forced training calls it once per target
position and inference hands it to `textrnn.engine.decoding` (greedy, beam search), so the two
can never disagree (Joey NMT's habit).

Attention (`attention`):
- "luong": general score h_t^T W_a m_s, computed with the new decoder state h_t;
- "bahdanau": additive score v^T tanh(W_q h_{t-1} + W_k m_s), computed with the state
  *before* the step and fed to the LSTM with the previous attentional vector;
- "none": no context at all, a plain encoder-decoder whose only view of the source is
  the initial decoder state (the baseline the benchmarks compare with).
Either way the attentional vector is a~_t = tanh(W_c [h_t; c_t]) and the logits are W_o a~_t.

Ensembles (`members` > 1, `build_model`): several encoder-decoders of the same shape,
each with its own initialisation and dropout, trained together on the same batches (the
loss is the mean of theirs); decoding averages their next-unit probabilities. On the
Dakshina lexicon, whose errors are mostly genuine ambiguities (vowel length, dental or
retroflex, nukta), three members gain more than three times the training of one.

Ids: <unk> 0, <pad> 1 in both vocabularies (the CharTokenizer keeps <unk> at 0); the
target vocabulary also has <s> 2 (first decoder input) and </s> 3 (end of word).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from textrnn.errors import UsageError
from textrnn.models.blocks import BiLSTM, Dropout, log_mean_probs
from textrnn.tokenizers import PAD_ID, UNK_ID

UNK, PAD = UNK_ID, PAD_ID  # the one convention; the target vocabulary adds:
BOS, EOS = 2, 3  # the first decoder input and the end of a word
ATTENTIONS = ("luong", "bahdanau", "none")


@dataclass(frozen=True)
class Seq2SeqConfig:
    n_source: int  # source vocabulary size, <unk> and <pad> included
    n_target: int  # target vocabulary size, <unk> <pad> <s> </s> included
    embed: int = 128  # source and target unit embedding size
    hidden: int = 256  # encoder BiLSTM units per direction
    layers: int = 1  # stacked encoder BiLSTM layers
    dec_hidden: int = 512  # decoder LSTM units (also the attentional vector's size)
    attention: str = "luong"  # luong | bahdanau | none
    dropout: float = 0.25  # on embeddings, between encoder layers and before the output layer
    members: int = 1  # encoder-decoders trained together whose probabilities are averaged

    def __post_init__(self) -> None:
        for name in ("n_source", "n_target", "embed", "hidden", "layers", "dec_hidden", "members"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"seq2seq {name} must be an integer >= 1, got {value!r}")
        if self.n_target <= EOS:
            raise UsageError(f"seq2seq n_target must be > {EOS} (<unk> <pad> <s> </s>), got {self.n_target}")
        if self.attention not in ATTENTIONS:
            raise UsageError(f"--attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if not (isinstance(self.dropout, int | float) and 0.0 <= self.dropout < 1.0):
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout!r}")



@dataclass
class DecoderState:
    """Everything `step` needs for B rows; `reorder` selects/repeats rows for beam search."""

    h: Tensor  # (B, Hd) decoder LSTM state
    c: Tensor  # (B, Hd)
    att: Tensor  # (B, Hd) attentional vector of the previous step (input feeding)
    memory: Tensor  # (B, S, 2H) encoder outputs
    keys: Tensor  # (B, S, K) memory projected for scoring (K = Hd for luong, Hd for bahdanau)
    mask: Tensor  # (B, S) True at real source positions
    alpha: Tensor | None = None  # (B, S) attention weights of the last step (for display)

    def reorder(self, index: Tensor) -> DecoderState:
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        return DecoderState(*(pick(getattr(self, f.name)) for f in fields(self)))


class LSTMCell(nn.Module):
    """An LSTM cell as one matrix product over [x; h] (fewer, larger products than
    nn.LSTMCell's two, and plain `linear`, which CPU autocast runs in bf16)."""

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.linear = nn.Linear(input_size + hidden, 4 * hidden)
        bound = 1.0 / math.sqrt(hidden)
        nn.init.uniform_(self.linear.weight, -bound, bound)
        nn.init.zeros_(self.linear.bias)
        with torch.no_grad():
            self.linear.bias[hidden : 2 * hidden] = 1.0  # forget gate starts open

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, I), h and c (B, H) -> the new h and c (c is kept in fp32 under autocast)."""
        gates = self.linear(torch.cat([x, h.to(x.dtype)], dim=-1))  # (B, 4H)
        i, f, g, o = gates.float().chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c



class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = c = config
        self.src_embedding = nn.Embedding(c.n_source, c.embed, padding_idx=PAD)
        self.tgt_embedding = nn.Embedding(c.n_target, c.embed, padding_idx=PAD)
        for emb in (self.src_embedding, self.tgt_embedding):
            nn.init.normal_(emb.weight, std=1.0 / math.sqrt(c.embed))
        self.drop = Dropout(c.dropout)
        self.encoder = BiLSTM(c.embed, c.hidden, c.layers, c.dropout)
        enc = 2 * c.hidden
        self.bridge = nn.Linear(enc, 2 * c.dec_hidden)  # encoder summary -> initial (h, c)
        self.cell = LSTMCell(c.embed + c.dec_hidden, c.dec_hidden)  # input: [y_{t-1}; a~_{t-1}]
        if c.attention == "luong":
            self.key = nn.Linear(enc, c.dec_hidden, bias=False)  # W_a applied to the memory once
        elif c.attention == "bahdanau":
            self.key = nn.Linear(enc, c.dec_hidden, bias=False)  # W_k
            self.query = nn.Linear(c.dec_hidden, c.dec_hidden)  # W_q
            self.energy = nn.Linear(c.dec_hidden, 1, bias=False)  # v
        context = enc if c.attention != "none" else 0
        self.combine = nn.Linear(c.dec_hidden + context, c.dec_hidden)  # W_c
        self.out = nn.Linear(c.dec_hidden, c.n_target)  # W_o

    # ---- encoder ---------------------------------------------------------------------------

    def encode(self, src: Tensor, lengths: Tensor) -> DecoderState:
        """Source ids (B, S), right-padded, and lengths (B,) -> the decoder state before <s>."""
        B, S = src.shape
        mask = torch.arange(S, device=src.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, S)
        x = self.drop(self.src_embedding(src))  # (B, S, E)
        memory = self.encoder(x, lengths)  # (B, S, 2H)
        H = self.config.hidden
        last = (lengths - 1).view(B, 1, 1).expand(B, 1, H)
        summary = torch.cat([memory[..., :H].gather(1, last).squeeze(1), memory[:, 0, H:]], dim=-1)  # (B, 2H)
        h, c = torch.tanh(self.bridge(summary)).float().chunk(2, dim=-1)  # (B, Hd) each
        keys = self.key(memory) if self.config.attention != "none" else memory[..., :0]  # (B, S, Hd)
        att = h.new_zeros(B, self.config.dec_hidden)
        return DecoderState(h=h, c=c, att=att, memory=memory, keys=keys, mask=mask)

    # ---- decoder -----------------------------------------------------------------------------

    def step(self, prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Advance B rows by one token: previous tokens (B,) -> attentional vectors (B, Hd) and
        the new state. `logits(att)` turns the vectors into next-token scores (B, V)."""
        attention = self.config.attention
        emb = self.drop(self.tgt_embedding(prev))  # (B, E)
        context, alpha = None, None
        if attention == "bahdanau":  # attend with the state before the step
            context, alpha = self._attend(state.h, state)
        h, c = self.cell(torch.cat([emb, state.att.to(emb.dtype)], dim=-1), state.h, state.c)  # (B, Hd)
        if attention == "luong":  # attend with the new state
            context, alpha = self._attend(h, state)
        parts = [h] if context is None else [h, context.to(h.dtype)]
        att = torch.tanh(self.combine(torch.cat(parts, dim=-1)))  # (B, Hd)
        new = DecoderState(h=h, c=c, att=att, memory=state.memory, keys=state.keys, mask=state.mask, alpha=alpha)
        return att, new

    def _attend(self, query: Tensor, state: DecoderState) -> tuple[Tensor, Tensor]:
        """Context (B, 2H) and weights (B, S) of `query` (B, Hd) over the source."""
        if self.config.attention == "luong":
            scores = torch.bmm(state.keys, query.to(state.keys.dtype).unsqueeze(2)).squeeze(2)  # (B, S)
        else:
            q = self.query(query).unsqueeze(1)  # (B, 1, Hd)
            scores = self.energy(torch.tanh(state.keys + q)).squeeze(2)  # (B, S)
        scores = scores.float().masked_fill(~state.mask, -math.inf)
        alpha = torch.softmax(scores, dim=-1)  # (B, S)
        context = torch.bmm(alpha.to(state.memory.dtype).unsqueeze(1), state.memory).squeeze(1)  # (B, 2H)
        return context, alpha

    def logits(self, att: Tensor) -> Tensor:
        """Attentional vectors (..., Hd) -> next-token scores (..., V)."""
        return self.out(self.drop(att))

    def step_logits(self, prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """`step` + `logits`: the step function `textrnn.engine.decoding` searches with."""
        att, state = self.step(prev, state)
        return self.logits(att), state

    # ---- training ------------------------------------------------------------------------------

    def teacher_forced(
        self,
        src: Tensor,
        lengths: Tensor,
        tgt_in: Tensor,
        *,
        teacher_forcing: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Logits (B, T, V) for decoder inputs `tgt_in` (B, T) (<s> then the target units).

        With `teacher_forcing` < 1 (scheduled sampling, Bengio et al. 2015) each position
        t > 0 is fed, with probability 1 - teacher_forcing, the model's own best guess at
        t - 1 instead of the gold unit.
        advance; either way every position goes through the same `step` as inference.
        """
        state = self.encode(src, lengths)
        atts: list[Tensor] = []
        prev = tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            if t > 0:
                prev = tgt_in[:, t]
                if teacher_forcing < 1.0:
                    own = self.logits(atts[-1]).argmax(-1).detach()  # (B,) the model's guess
                    gold = torch.rand(prev.shape, generator=generator, device=prev.device) < teacher_forcing
                    prev = torch.where(gold, prev, own)
            att, state = self.step(prev, state)
            atts.append(att)
        return self.logits(torch.stack(atts, dim=1))  # (B, T, V)


# ---- ensembles ------------------------------------------------------------------------------------


@dataclass
class EnsembleState:
    """The members' decoder states, reordered together."""

    states: list[DecoderState]

    def reorder(self, index: Tensor) -> EnsembleState:
        return EnsembleState([s.reorder(index) for s in self.states])

    @property
    def alpha(self) -> Tensor | None:
        """The members' mean attention weights of the last step (B, S)."""
        if self.states[0].alpha is None:
            return None
        return torch.stack([s.alpha for s in self.states]).mean(0)


class Ensemble(nn.Module):
    """`members` Seq2Seq models behind the Seq2Seq interface (encode, step_logits, teacher_forced)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(Seq2Seq(config) for _ in range(config.members))

    def encode(self, src: Tensor, lengths: Tensor) -> EnsembleState:
        return EnsembleState([m.encode(src, lengths) for m in self.members])

    def step_logits(self, prev: Tensor, state: EnsembleState) -> tuple[Tensor, EnsembleState]:
        """Log of the members' mean next-unit probability (B, V): normalised scores, which the
        decoding module's log_softmax leaves as they are."""
        steps = [m.step_logits(prev, s) for m, s in zip(self.members, state.states, strict=True)]
        mean = log_mean_probs(torch.stack([lg for lg, _ in steps]))  # (M, B, V) -> (B, V)
        return mean, EnsembleState([s for _, s in steps])

    def teacher_forced(self, src: Tensor, lengths: Tensor, tgt_in: Tensor, **kw) -> Tensor:
        """Every member's teacher-forced logits (M, B, T, V); the loss averages over members."""
        return torch.stack([m.teacher_forced(src, lengths, tgt_in, **kw) for m in self.members])


def build_model(config: Seq2SeqConfig) -> Seq2Seq | Ensemble:
    """One encoder-decoder, or an ensemble of `config.members` of them."""
    return Seq2Seq(config) if config.members == 1 else Ensemble(config)
