"""Pretrained word vectors (word2vec/fastText text files) for a tagger's word embeddings."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from textrnn.errors import DataError
from textrnn.formats.plain import check_text_file, iter_lines
from textrnn.models.tagger import Tagger
from textrnn.tasks.tag.vocab import Vocab


def read_vectors(path: str | os.PathLike, *, limit: int = 0) -> tuple[list[str], np.ndarray]:
    """Words and vectors of a word2vec/fastText text file (an optional "count dim" first line).

    With `limit`, only the first `limit` vectors (the most frequent, in such files) are read.
    """
    check_text_file(path)
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    for lineno, line in enumerate(iter_lines(path), 1):
        parts = line.rstrip("\r\n").rstrip(" ").split(" ")
        if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            continue
        if len(parts) < 2:
            if not line.strip():
                continue
            raise DataError(f"{path}:{lineno}: expected 'word v1 v2 ...'")
        try:
            vec = np.asarray(parts[1:], dtype=np.float32)
        except ValueError:
            raise DataError(f"{path}:{lineno}: vector has a value that is not a number") from None
        if dim is None:
            dim = len(vec)
        elif len(vec) != dim:
            raise DataError(
                f"{path}:{lineno}: vector has {len(vec)} values, earlier ones have {dim}"
            )
        words.append(parts[0])
        rows.append(vec)
        if limit and len(words) >= limit:
            break
    if not words:
        raise DataError(f"{path}: no word vectors found")
    return words, np.stack(rows)


def init_pretrained(model: Tagger, vocab: Vocab, words: list[str], vectors: np.ndarray) -> int:
    """Copy vectors into the word embedding for every vocabulary key they cover; return how many."""
    weight = model.word_embedding.weight
    found = 0
    done = set()
    scale = float(vectors.std()) or 1.0
    with torch.no_grad():
        for w, v in zip(words, vectors, strict=True):
            k = vocab.key(w)
            i = vocab.word_index.get(k)
            if i is not None and i >= 2 and i not in done:
                weight[i] = torch.from_numpy(v) / scale / math.sqrt(len(v))
                done.add(i)
                found += 1
    return found
