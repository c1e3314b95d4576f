"""Cutting a task's examples into batches: bucketed training batches of similar length in
a reproducible order, and inference batches that bound the padded positions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BATCH_TOKENS = 8192  # padded positions per inference batch (at most MAX_BATCH sentences)


MAX_BATCH = 512


def bucket_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, pool: int = 50
) -> list[np.ndarray]:
    """Sentence indices cut into batches of similar length, in an order fixed by (seed, epoch).

    The sentences are shuffled, cut into pools of `pool` batches, sorted by length
    inside each pool and cut into batches; then the batches are shuffled. Every batch
    but the last of the last pool is full, so an epoch has ceil(n / batch_size) batches.
    """
    rng = np.random.default_rng([seed, epoch])
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    out = []
    size = pool * batch_size
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [out[i] for i in rng.permutation(len(out))]


def length_batches(
    lengths: Sequence[int], *, max_tokens: int = BATCH_TOKENS, max_sentences: int = MAX_BATCH
) -> list[list[int]]:
    """Indices cut into inference batches, longest sentences first, of similar length:
    each batch holds at most `max_tokens` padded positions, so padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]
        if current and ((len(current) + 1) * width > max_tokens or len(current) >= max_sentences):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
