"""Scoring text under a language model: nats per token, perplexity, bits per character."""

from __future__ import annotations

import math

import numpy as np

from textrnn.engine.progress import Tick
from textrnn.errors import DataError
from textrnn.models.lm import LanguageModel
from textrnn.tasks.lm.task import stream_nll
from textrnn.tokenizers import Tokenizer


def score_text(
    model: LanguageModel, tokenizer: Tokenizer, text: str, *, name: str, on_progress: Tick | None = None
) -> dict:
    """Cross-entropy of `text` under the model: per token (nats), perplexity, bits and nats
    per character, token and character counts, unknown tokens; `name` says where it came from."""
    tok = tokenizer
    device = next(model.parameters()).device
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    if len(ids) < 2:
        raise DataError(f"{name}: too short to evaluate ({len(ids)} tokens)")
    unknown = int(np.sum(ids == tok.unk_id)) if getattr(tok, "unk_id", None) is not None else 0
    nats, count = stream_nll(model, ids, device=device, on_progress=on_progress)
    chars = tok.count_chars(text)
    # bits/char counts every predicted character; the first token has no prediction.
    first_chars = tok.count_chars(tok.decode(ids[:1].tolist()))
    predicted_chars = max(1, chars - first_chars)
    loss = nats / count
    return {
        "loss_nats": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "bits_per_char": nats / predicted_chars / math.log(2),
        "nats_per_char": nats / predicted_chars,
        "tokens": count,
        "chars": predicted_chars,
        "unknown": unknown,
        "file": name,
    }
