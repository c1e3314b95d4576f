"""A recurrent sentence classifier (many-to-one): token embeddings (plus, optionally, the
mean embedding of each token's hashed character n-grams) -> recurrent encoder -> pooling
over the positions -> linear layer -> one score per class.

The encoder is the exactly masked bidirectional `models.blocks.BiLSTM` (LSTM or GRU
cells), or, for a classifier started from a language model (`--init-from`), a
unidirectional stack laid out as `models.lm.LanguageModel`'s (`embedding`, `rnn.0`,
`rnn.1`, ...), so that the language model's weights load into it by name. Batches are
right-padded; padding never changes a prediction (the pooling is masked by lengths, and
a unidirectional stack reads padding only after the last real position).

Ensembles (`members` > 1, `build_classifier`): several classifiers of the same shape,
trained side by side on the same batches (each on its own loss, from its own random
start and dropout), whose class probabilities are averaged. A classifier of this size
learns SST-2 in a few epochs, well inside the budgets it is trained with, and then only
overfits; the members spend the rest of the budget on what averaging gains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textrnn.errors import UsageError
from textrnn.models.blocks import CELLS, POOLS, BiLSTM, Dropout, Pooling, log_mean_probs


@dataclass(frozen=True)
class ClassifierConfig:
    vocab_size: int  # token ids the model reads (the tokenizer's vocabulary size)
    n_classes: int  # labels it chooses between
    embed: int = 300  # token embedding size
    cell: str = "lstm"  # recurrent cell: lstm | gru
    hidden: int = 256  # encoder units (per direction when bidirectional)
    layers: int = 1  # stacked encoder layers
    bidirectional: bool = True  # False: one direction, laid out as a language model
    pool: str = "max"  # max | mean | last | attention: how the states become one vector
    dropout: float = 0.5  # on the embeddings, between layers and on the pooled vector
    ngram_buckets: int = 0  # hashed character n-gram embeddings added to each token's (0 = none)
    members: int = 1  # classifiers trained side by side whose probabilities are averaged

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embed", "hidden", "layers", "members"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.ngram_buckets < 0:
            raise UsageError(f"--ngram-buckets must not be negative, got {self.ngram_buckets}")
        if self.n_classes < 2:
            raise UsageError(f"a classifier needs at least 2 classes, got {self.n_classes}")
        if self.cell not in CELLS:
            raise UsageError(f"--cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.pool not in POOLS:
            raise UsageError(f"--pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")

    @property
    def features(self) -> int:
        """Width of the encoder's states and of the pooled vector."""
        return 2 * self.hidden if self.bidirectional else self.hidden


class Classifier(nn.Module):
    """Class scores (B, K) for right-padded token ids (B, T) with their lengths (B,)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed)
        nn.init.normal_(self.embedding.weight, std=1.0 / math.sqrt(c.embed))
        self.ngram_embedding = None
        if c.ngram_buckets:  # the last row pads a token's n-grams: a mean leaves it out
            b = c.ngram_buckets
            self.ngram_embedding = nn.EmbeddingBag(b + 1, c.embed, mode="mean", padding_idx=b)
            nn.init.normal_(self.ngram_embedding.weight, std=1.0 / math.sqrt(c.embed))
        self.drop = Dropout(c.dropout)
        if c.bidirectional:
            self.encoder = BiLSTM(c.embed, c.hidden, c.layers, c.dropout, cell=c.cell)
        else:
            self.rnn = nn.ModuleList(
                CELLS[c.cell](c.embed if k == 0 else c.hidden, c.hidden, batch_first=True)
                for k in range(c.layers)
            )
        self.pool = Pooling(c.pool, c.features, bidirectional=c.bidirectional)
        self.out = nn.Linear(c.features, c.n_classes)

    def embed(self, ids: Tensor, grams: Tensor | None = None, types: Tensor | None = None) -> Tensor:
        """Token vectors (B, T, E): the token's embedding, plus the mean of its n-grams'
        (grams (U, G): the batch's distinct tokens' n-gram buckets; types (B, T): which row)."""
        x = self.embedding(ids)  # (B, T, E)
        if self.ngram_embedding is not None:
            x = x + self.ngram_means(grams)[types]  # (U, E) -> (B, T, E)
        return x

    def ngram_means(self, grams: Tensor) -> Tensor:
        """(U, E) mean n-gram embedding of each row of (U, G) bucket ids padded with `buckets`.

        The bag is given flat with offsets: EmbeddingBag over the padded rows skips the
        padding and the flat bags run 5-10x faster (measured at U=2000, G=24, E=128)."""
        real = grams != self.config.ngram_buckets  # (U, G); every row has at least one
        counts = real.sum(1)
        offsets = torch.cumsum(counts, 0) - counts
        # (without padding_idx: the bags hold no padding, and it turns off the fast kernel)
        return F.embedding_bag(grams[real], self.ngram_embedding.weight, offsets, mode="mean")

    def encode(
        self, ids: Tensor, lengths: Tensor, grams: Tensor | None = None, types: Tensor | None = None
    ) -> Tensor:
        """The encoder's states (B, T, D) at every position (meaningless at padding)."""
        x = self.drop(self.embed(ids, grams, types))  # (B, T, E)
        if self.config.bidirectional:
            return self.encoder(x, lengths)  # (B, T, 2H)
        for k, layer in enumerate(self.rnn):
            if k:
                x = self.drop(x)
            x, _ = layer(x)  # (B, T, H)
        return x

    def forward(
        self, ids: Tensor, lengths: Tensor, grams: Tensor | None = None, types: Tensor | None = None
    ) -> Tensor:
        h = self.encode(ids, lengths, grams, types)  # (B, T, D)
        return self.out(self.drop(self.pool(h, lengths)))  # (B, K)

    def member_logits(self, *inputs: Tensor | None) -> Tensor:
        """Every member's class scores (M, B, K): here the one member's."""
        return self(*inputs).unsqueeze(0)

    def each(self) -> list[Classifier]:
        """The classifiers that make up this model: itself."""
        return [self]

    def attention(
        self, ids: Tensor, lengths: Tensor, grams: Tensor | None = None, types: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Class scores (B, K) and the attention pooling's weights (B, T) (pool "attention" only)."""
        if self.config.pool != "attention":
            raise UsageError("attention weights need a classifier with --pool attention")
        h = self.encode(ids, lengths, grams, types)
        mask = torch.arange(h.shape[1], device=h.device).unsqueeze(0) < lengths.unsqueeze(1)
        weights = self.pool.attention_weights(h, mask)  # (B, T)
        pooled = torch.bmm(weights.unsqueeze(1).to(h.dtype), h).squeeze(1)  # (B, D)
        return self.out(pooled), weights



class ClassifierEnsemble(nn.Module):
    """`config.members` classifiers behind the Classifier interface; its scores are the log
    of the members' mean probabilities, so that a softmax of them gives that mean."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(Classifier(config) for _ in range(config.members))

    def forward(self, *inputs: Tensor | None) -> Tensor:
        return log_mean_probs(self.member_logits(*inputs))  # (B, K)

    def member_logits(self, *inputs: Tensor | None) -> Tensor:
        return torch.stack([m(*inputs) for m in self.members])  # (M, B, K)

    def attention(self, *inputs: Tensor | None) -> tuple[Tensor, Tensor]:
        """Scores (B, K) and the members' mean attention weights (B, T)."""
        pairs = [m.attention(*inputs) for m in self.members]
        scores = log_mean_probs(torch.stack([s for s, _ in pairs]))
        return scores, torch.stack([w.float() for _, w in pairs]).mean(0)

    def each(self) -> list[Classifier]:
        return list(self.members)


def build_classifier(config: ClassifierConfig) -> Classifier | ClassifierEnsemble:
    """One classifier, or an ensemble of `config.members` of them."""
    return Classifier(config) if config.members == 1 else ClassifierEnsemble(config)


ClassifierModel = Classifier | ClassifierEnsemble  # what build_classifier returns
