"""A BiLSTM sequence tagger: word embeddings + a character BiLSTM per word -> stacked
BiLSTM over the sentence -> per-token tag scores, with an optional linear-chain CRF.

Batches are right-padded; the BiLSTMs are the exactly masked `models.blocks.BiLSTM`.

Character representations are computed once per distinct word of a batch: the model
takes the batch's word types (U, L) and an index (B, T) from positions to types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from textrnn.errors import UsageError
from textrnn.models.blocks import BiLSTM, Dropout
from textrnn.tokenizers import PAD_ID, UNK_ID

# The word and character vocabularies follow the one convention (tags have neither).
UNK, PAD = UNK_ID, PAD_ID
NEG = -1e4  # score of a forbidden transition: finite, so that sums stay free of inf - inf
CHAR_GROUPS = 3  # the character BiLSTM reads a batch's words in this many length groups


@dataclass(frozen=True)
class TaggerConfig:
    n_words: int  # word vocabulary size, <pad> and <unk> included
    n_chars: int  # character (grapheme) vocabulary size, <pad> and <unk> included
    n_tags: int  # tag vocabulary size
    word_dim: int = 100  # word embedding size (0 = characters only)
    char_dim: int = 50  # character embedding size
    char_hidden: int = 100  # character BiLSTM units per direction (0 = no character model)
    hidden: int = 200  # sentence BiLSTM units per direction
    layers: int = 2  # stacked sentence BiLSTM layers
    dropout: float = 0.33  # on the word features, between layers and before the output
    crf: bool = False  # score whole tag sequences with a linear-chain CRF

    def __post_init__(self) -> None:
        for name in ("n_words", "n_chars", "n_tags", "hidden", "layers", "char_dim"):
            if getattr(self, name) < 1:
                raise UsageError(f"tagger {name} must be at least 1, got {getattr(self, name)}")
        for name in ("word_dim", "char_hidden"):
            if getattr(self, name) < 0:
                raise UsageError(f"tagger {name} must not be negative, got {getattr(self, name)}")
        if self.word_dim == 0 and self.char_hidden == 0:
            raise UsageError(
                "tagger needs word embeddings or a character model (word_dim or char_hidden > 0)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"tagger dropout must be in [0, 1), got {self.dropout}")



class CRF(nn.Module):
    """Linear-chain CRF: score(y) = start[y1] + sum_t emit[t, yt] + sum_t trans[yt-1, yt] + end[yT]."""

    def __init__(self, n_tags: int) -> None:
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(n_tags, n_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(n_tags))
        self.end = nn.Parameter(torch.zeros(n_tags))

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log sum over all tag sequences of exp(score), per sentence: (B,). mask (B, T) bool."""
        alpha = self.start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.shape[1]):
            step = alpha.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1)  # (B, K, K)
            alpha = torch.where(mask[:, t : t + 1], torch.logsumexp(step, dim=1), alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Score of the given tag sequences (B,); tags (B, T) with anything at padding."""
        B, T, _ = emissions.shape
        tags = tags.clamp(min=0)
        m = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        total = self.start[tags[:, 0]] + (emit * m).sum(1)
        if T > 1:
            trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
            total = total + (trans * m[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)  # (B,)
        return total + self.end[last]

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood of the gold sequences, summed over the batch."""
        return (self.log_partition(emissions, mask) - self.score(emissions, tags, mask)).sum()


def viterbi(
    emissions: Tensor,
    lengths: Tensor,
    *,
    transitions: Tensor | None = None,
    start: Tensor | None = None,
    end: Tensor | None = None,
) -> tuple[list[list[int]], Tensor]:
    """Best tag sequence per sentence and its score under emissions (B, T, K) + transitions.

    Forbidden transitions are simply very negative entries of `transitions`, `start`
    or `end` (see `constraint_scores`). Runs in float32; a free function, so that it
    is testable on hand-written tables.
    """
    emissions = emissions.float()
    B, T, K = emissions.shape
    trans = transitions.float() if transitions is not None else emissions.new_zeros(K, K)
    score = emissions[:, 0] + (start.float() if start is not None else 0.0)  # (B, K)
    mask = torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    backpointers = []
    for t in range(1, T):
        step = score.unsqueeze(2) + trans  # (B, K_from, K_to)
        best, idx = step.max(dim=1)  # (B, K)
        new = best + emissions[:, t]
        m = mask[:, t : t + 1]
        score = torch.where(m, new, score)
        # At padding, point every tag to itself so that the path is carried through unchanged.
        backpointers.append(torch.where(m, idx, torch.arange(K, device=idx.device)))
    if end is not None:
        score = score + end.float()
    best_score, last = score.max(dim=1)  # (B,)
    path = [last]
    for bp in reversed(backpointers):
        last = bp.gather(1, last.unsqueeze(1)).squeeze(1)
        path.append(last)
    paths = torch.stack(path[::-1], dim=1).tolist()  # (B, T)
    return [p[:n] for p, n in zip(paths, lengths.tolist(), strict=True)], best_score


def constraint_scores(
    allowed: Tensor, allowed_start: Tensor, allowed_end: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """0 where allowed, NEG where forbidden: additive scores for `viterbi`."""

    def to_score(a: Tensor) -> Tensor:
        return torch.where(a, 0.0, NEG).float()

    return to_score(allowed), to_score(allowed_start), to_score(allowed_end)


class Tagger(nn.Module):
    """Per-token tag scores for a padded batch of sentences."""

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = c = config
        features = 0
        if c.word_dim:
            self.word_embedding = nn.Embedding(c.n_words, c.word_dim, padding_idx=PAD)
            nn.init.normal_(self.word_embedding.weight, std=1.0 / math.sqrt(c.word_dim))
            features += c.word_dim
        if c.char_hidden:
            self.char_embedding = nn.Embedding(c.n_chars, c.char_dim, padding_idx=PAD)
            nn.init.normal_(self.char_embedding.weight, std=1.0 / math.sqrt(c.char_dim))
            self.char_lstm = BiLSTM(c.char_dim, c.char_hidden, 1, 0.0)
            features += 2 * c.char_hidden
        self.drop = Dropout(c.dropout)
        self.lstm = BiLSTM(features, c.hidden, c.layers, c.dropout)
        self.out = nn.Linear(2 * c.hidden, c.n_tags)
        self.crf = CRF(c.n_tags) if c.crf else None
        # Valid transitions of the tag scheme (all allowed unless set by `set_constraints`).
        self.register_buffer(
            "allowed", torch.ones(c.n_tags, c.n_tags, dtype=torch.bool), persistent=False
        )
        self.register_buffer(
            "allowed_start", torch.ones(c.n_tags, dtype=torch.bool), persistent=False
        )
        self.register_buffer(
            "allowed_end", torch.ones(c.n_tags, dtype=torch.bool), persistent=False
        )
        self.constrained = False

    def set_constraints(self, allowed: Tensor, allowed_start: Tensor, allowed_end: Tensor) -> None:
        """Restrict decoding to valid transitions (e.g. no I-X after O for BIO tags)."""
        self.allowed.copy_(allowed)
        self.allowed_start.copy_(allowed_start)
        self.allowed_end.copy_(allowed_end)
        self.constrained = True

    def char_features(self, chars: Tensor, char_lengths: Tensor) -> Tensor:
        """(U, L) grapheme ids of distinct words -> (U, 2 * char_hidden).

        Words are read in CHAR_GROUPS groups of similar length, each padded only to its
        own longest word: most words are short, so this saves most of the padding.
        """
        U = chars.shape[0]
        groups = min(CHAR_GROUPS, max(1, U // 64))
        if groups == 1:
            return self._read_words(chars, char_lengths)
        order = torch.argsort(char_lengths)
        parts = []
        for idx in torch.tensor_split(order, groups):
            lens = char_lengths[idx]
            parts.append(self._read_words(chars[idx, : int(lens.max())], lens))
        out = torch.cat(parts)  # (U, 2Hc) in length order
        return out[torch.argsort(order)]

    def _read_words(self, chars: Tensor, char_lengths: Tensor) -> Tensor:
        U = chars.shape[0]
        h = self.char_lstm(self.char_embedding(chars), char_lengths)  # (U, L, 2Hc)
        H = self.config.char_hidden
        last = (char_lengths - 1).view(U, 1, 1).expand(U, 1, H)
        fwd = h[..., :H].gather(1, last).squeeze(1)  # forward state after the last unit
        bwd = h[:, 0, H:]  # backward state after reading back to the first unit
        return torch.cat([fwd, bwd], dim=-1)

    def forward(
        self, words: Tensor, lengths: Tensor, chars: Tensor, char_lengths: Tensor, types: Tensor
    ) -> Tensor:
        """Emission scores (B, T, K).

        words (B, T) word ids; lengths (B,) sentence lengths; chars (U, L) grapheme ids of
        the batch's distinct words with char_lengths (U,); types (B, T) the distinct-word
        index of every position. Padding positions may hold any valid ids.
        """
        parts = []
        if self.config.word_dim:
            parts.append(self.word_embedding(words))  # (B, T, Dw)
        if self.config.char_hidden:
            parts.append(self.char_features(chars, char_lengths)[types])  # (B, T, 2Hc)
        x = self.drop(torch.cat(parts, dim=-1))
        h = self.drop(self.lstm(x, lengths))  # (B, T, 2H)
        return self.out(h)  # (B, T, K)

    def decoding_scores(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """(transitions, start, end) for `viterbi`: the CRF's, plus the scheme's constraints."""
        if self.crf is None and not self.constrained:
            return None, None, None
        K = self.config.n_tags
        dev = self.out.weight.device
        trans, start, end = (
            torch.zeros(K, K, device=dev),
            torch.zeros(K, device=dev),
            torch.zeros(K, device=dev),
        )
        if self.crf is not None:
            trans, start, end = (
                self.crf.transitions.float(),
                self.crf.start.float(),
                self.crf.end.float(),
            )
        if self.constrained:
            ct, cs, ce = constraint_scores(self.allowed, self.allowed_start, self.allowed_end)
            trans, start, end = trans + ct, start + cs, end + ce
        return trans, start, end

    def decode(self, emissions: Tensor, lengths: Tensor) -> list[list[int]]:
        """Best tags per sentence: Viterbi with a CRF or constraints, else per-token argmax."""
        trans, start, end = self.decoding_scores()
        if trans is None:
            best = emissions.argmax(-1).tolist()
            return [row[:n] for row, n in zip(best, lengths.tolist(), strict=True)]
        scores = emissions if self.crf is not None else torch.log_softmax(emissions.float(), dim=-1)
        return viterbi(scores, lengths, transitions=trans, start=start, end=end)[0]
