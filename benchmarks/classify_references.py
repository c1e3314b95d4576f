"""The plain references of the classify benchmark, written the way a tutorial would (nothing
here imports textrnn's models): a bag-of-words logistic regression, and a textbook BiLSTM
classifier for the training-loop comparison."""

from __future__ import annotations

import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

REGULARISATION = (0.1, 0.3, 1.0, 3.0, 10.0)  # the logistic regression's C = 1 / (L2 strength) grid


def _ngrams(text: str) -> list[str]:
    words = text.lower().split()
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


def _features(texts: list[str], index: dict[str, int]) -> torch.Tensor:
    """Binary n-gram indicators as a sparse (N, F) CSR matrix."""
    rows, cols = [], []
    for r, text in enumerate(texts):
        found = {index[g] for g in _ngrams(text) if g in index}
        rows += [r] * len(found)
        cols += sorted(found)
    values = torch.ones(len(rows))
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product below is all we use
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor([rows, cols], values, (len(texts), len(index)), check_invariants=True)
        return coo.coalesce().to_sparse_csr()


def bag_of_words(
    train: list[tuple[str, str]], dev: list[tuple[str, str]], *, grid: tuple[float, ...] = REGULARISATION
) -> dict:
    """Unigram + bigram logistic regression on (text, label) rows; C chosen on dev (as the RNN's checkpoint is)."""
    names = sorted({y for _, y in train})
    index_of = {y: i for i, y in enumerate(names)}
    index: dict[str, int] = {}
    for text, _ in train:
        for g in _ngrams(text):
            index.setdefault(g, len(index))
    X, Xd = _features([t for t, _ in train], index), _features([t for t, _ in dev], index)
    y = torch.tensor([index_of[label] for _, label in train])
    yd = torch.tensor([index_of.get(label, -1) for _, label in dev])
    start = time.perf_counter()
    tried = {}
    for C in grid:
        W = torch.zeros(len(index), len(names), requires_grad=True)
        b = torch.zeros(len(names), requires_grad=True)
        opt = torch.optim.LBFGS([W, b], lr=1, max_iter=300, history_size=20, line_search_fn="strong_wolfe")

        def closure(W=W, b=b, opt=opt, C=C):
            opt.zero_grad()
            loss = F.cross_entropy(X @ W + b, y, reduction="sum") + 0.5 / C * (W * W).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            pred = (Xd @ W + b).argmax(1)
        tried[C] = {"accuracy": float((pred == yd).float().mean()), "macro_f1": _macro_f1(pred, yd, len(names))}
    best = max(tried, key=lambda c: tried[c]["accuracy"])
    return {"accuracy": tried[best]["accuracy"], "macro_f1": tried[best]["macro_f1"], "C": best,
            "features": len(index), "by_C": {str(c): v["accuracy"] for c, v in tried.items()},
            "train_s": round(time.perf_counter() - start, 1)}  # fmt: skip


def _macro_f1(pred: torch.Tensor, gold: torch.Tensor, k: int) -> float:
    f1 = []
    for c in range(k):
        tp = int(((pred == c) & (gold == c)).sum())
        p, g = int((pred == c).sum()), int((gold == c).sum())
        if p or g:
            f1.append(2 * tp / (p + g))
    return sum(f1) / max(1, len(f1))


class PlainClassifier(nn.Module):
    """The textbook BiLSTM classifier: padding is read by the backward direction (no masking
    but in the pooling), the fastest plain form; n-gram embeddings as fastText's EmbeddingBag."""

    def __init__(self, vocab: int, n_classes: int, *, embed: int, hidden: int, dropout: float, buckets: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.ngrams = nn.EmbeddingBag(buckets + 1, embed, mode="mean", padding_idx=buckets) if buckets else None
        self.lstm = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, n_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, grams=None, types=None) -> torch.Tensor:
        x = self.embedding(ids)
        if self.ngrams is not None:
            x = x + self.ngrams(grams)[types]
        h, _ = self.lstm(self.drop(x))  # (B, T, 2H)
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        pooled = h.masked_fill(~mask[..., None], float("-inf")).amax(1)  # (B, 2H)
        return self.out(self.drop(pooled))
