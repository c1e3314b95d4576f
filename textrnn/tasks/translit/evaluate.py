"""Scoring a transliterator: top-1/top-k word accuracy, character error rate, the
any-reference accuracy and the teacher-forced loss."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from textrnn.engine import metrics
from textrnn.engine.progress import Tick
from textrnn.errors import CheckpointError, DataError
from textrnn.models.blocks import log_mean_probs
from textrnn.tasks.translit.batch import make_batch, sequence_loss
from textrnn.tasks.translit.config import DIRECTIONS
from textrnn.tasks.translit.decode import INFER_WORDS, transliterate
from textrnn.tasks.translit.lexicon import Layout, detect_layout, read_lexicon

if TYPE_CHECKING:  # load.py imports this module: the type only
    from textrnn.tasks.translit.load import LoadedTransliterator


def score_pairs(
    tr: LoadedTransliterator,
    pairs: Sequence[tuple[str, str]],
    *,
    beam: int = 5,
    nbest: int = 5,
    on_progress: Tick | None = None,
) -> dict:
    """Top-1 and top-k word accuracy, CER of the best candidate, accuracy where any reference
    of the same source counts, and the teacher-forced loss per target unit. Every row counts
    once. `on_progress` hears (words decoded, words) as it goes."""
    if not pairs:
        raise DataError("no pairs to evaluate")
    sources = [s for s, _ in pairs]
    cands = transliterate(tr, sources, beam=beam, nbest=nbest, on_progress=on_progress)
    best = [c[0].text if c else "" for c in cands]
    refs: dict[str, set[str]] = {}
    for s, t in pairs:
        refs.setdefault(s, set()).add(t)
    top1 = sum(b == t for b, (_, t) in zip(best, pairs, strict=True))
    topk = sum(any(c.text == t for c in cs) for cs, (_, t) in zip(cands, pairs, strict=True))
    any_ref = sum(b in refs[s] for b, (s, _) in zip(best, pairs, strict=True))
    errors, chars = metrics.char_errors([t for _, t in pairs], best)
    n = len(pairs)
    return {
        "top1": top1 / n,
        "topk": topk / n,
        "k": nbest,
        "beam": beam,
        "cer": errors / chars if chars else 0.0,
        "any_reference_top1": any_ref / n,
        "loss": teacher_forced_loss(tr, pairs),
        "rows": n,
        "sources": len(refs),
        "predictions": best,
    }


def teacher_forced_loss(tr: LoadedTransliterator, pairs: Sequence[tuple[str, str]]) -> float:
    """Cross-entropy per target unit (</s> included), without label smoothing or dropout."""
    model, vocabs = tr.model, tr.vocabs
    was_training = model.training
    model.eval()
    total = count = 0.0
    src = [vocabs.source_ids(s) for s, _ in pairs]
    tgt = [vocabs.target_ids(t) for _, t in pairs]
    order = sorted(range(len(pairs)), key=lambda i: len(src[i]))
    try:
        with torch.inference_mode():
            for start in range(0, len(order), INFER_WORDS):
                idx = order[start : start + INFER_WORDS]
                batch = make_batch(
                    [src[i] for i in idx], [tgt[i] for i in idx], [1.0] * len(idx)
                ).to(tr.device)
                logits = model.teacher_forced(batch.src, batch.lengths, batch.tgt_in)
                if logits.dim() == 4:  # an ensemble: the loss of its mean probabilities
                    logits = log_mean_probs(logits)
                s, c = sequence_loss(logits, batch)
                total, count = total + float(s), count + float(c)
    finally:
        model.train(was_training)
    return total / max(count, 1.0)


def evaluate_file(
    tr: LoadedTransliterator, path: str | Path, *, beam: int = 5, nbest: int = 5, on_progress: Tick | None = None
) -> dict:
    """`score_pairs` on a lexicon file read with the layout the model was trained with."""
    layout = layout_for(tr, path)
    lexicon = read_lexicon(path, layout, lowercase=tr.vocabs.lowercase)
    result = score_pairs(tr, lexicon.pairs, beam=beam, nbest=nbest, on_progress=on_progress)
    result.pop("predictions")
    return {"file": str(path), "layout": layout.describe(), **result}


def layout_for(tr: LoadedTransliterator, path: str | Path) -> Layout:
    """The layout of `path` for this model: its training columns, or its direction."""
    data = tr.checkpoint.meta.get("data") if tr.checkpoint is not None else None
    data = data if isinstance(data, dict) else {}
    cols, direction = data.get("columns"), data.get("direction", "to-native")
    if cols is not None and not (
        isinstance(cols, list) and len(cols) == 2 and all(type(c) is int and c >= 1 for c in cols)
    ):
        raise CheckpointError(f"checkpoint is corrupt: data.columns is {cols!r}")
    if direction not in DIRECTIONS:
        raise CheckpointError(f"checkpoint is corrupt: data.direction is {direction!r}")
    if cols:
        return detect_layout(path, source_column=cols[0], target_column=cols[1])
    return detect_layout(path, direction=direction)
