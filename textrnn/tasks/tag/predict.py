"""A trained tagger: loading its checkpoint, tagging sentences (streaming, in batches of
similar length) and scoring it on gold data."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from textrnn.data.batching import length_batches
from textrnn.engine import metrics
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint
from textrnn.engine.devices import (
    INFERENCE_PRECISIONS,
    autocast,
    check_precision,
    resolve_precision,
)
from textrnn.errors import DataError, UsageError
from textrnn.formats.conllu import Sentence
from textrnn.models.tagger import Tagger
from textrnn.tasks.tag.batch import Encoder
from textrnn.tasks.tag.load import model_from_checkpoint
from textrnn.tasks.tag.vocab import Vocab, apply_constraints

READ_AHEAD = 2048  # sentences read, length-sorted and tagged together when predicting


@dataclass
class LoadedTagger:
    model: Tagger
    vocab: Vocab
    checkpoint: Checkpoint
    precision: str = "fp32"  # fp32 | bf16: the arithmetic of tagging
    encoder: Encoder = field(init=False)

    def __post_init__(self) -> None:
        self.encoder = Encoder(self.vocab)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_tagger(
    path: str | Path, *, device: torch.device = torch.device("cpu"), precision: str = "fp32"
) -> LoadedTagger:
    """Load a tagger checkpoint (refusing other tasks) ready for inference.

    `precision` "auto" tags in bf16 where the hardware computes it natively (about
    twice as fast on a recent CPU; a few tags in 10,000 may change), else in fp16 on a
    CUDA GPU, else fp32.
    """
    if precision not in INFERENCE_PRECISIONS:
        raise UsageError(
            f"--precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}"
        )
    ckpt = load_checkpoint(path, task="tagger")
    model, vocab = model_from_checkpoint(ckpt, source=str(path))
    apply_constraints(model, vocab, None, lambda m: None)
    model.to(device).eval()
    resolved = resolve_precision(precision, device)
    check_precision(resolved, device)
    return LoadedTagger(model=model, vocab=vocab, checkpoint=ckpt, precision=resolved)


def predict(
    tagger: LoadedTagger, sentences: Iterable[Sequence[str]], *, read_ahead: int = READ_AHEAD
) -> Iterator[list[str]]:
    """Tags for each sentence (a list of words), in order, streaming: `read_ahead` sentences
    are read, tagged in batches of similar length and yielded before more input is read.
    Empty sentences get no tags.
    """
    pending: list[Sequence[str]] = []
    for s in sentences:
        pending.append(s)
        if len(pending) >= read_ahead:
            yield from _tag_chunk(tagger, pending)
            pending = []
    if pending:
        yield from _tag_chunk(tagger, pending)


def _tag_chunk(tagger: LoadedTagger, sentences: list[Sequence[str]]) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in sentences]
    todo = [i for i, s in enumerate(sentences) if len(s)]
    model, tags = tagger.model, tagger.vocab.tags
    with torch.inference_mode(), autocast(tagger.precision, tagger.device):
        for batch_idx in length_batches([len(sentences[i]) for i in todo]):
            idx = [todo[k] for k in batch_idx]
            batch = tagger.encoder.batch([sentences[i] for i in idx]).to(tagger.device)
            emissions = model(
                batch.words, batch.lengths, batch.chars, batch.char_lengths, batch.types
            )
            for i, p in zip(idx, model.decode(emissions, batch.lengths), strict=True):
                out[i] = [tags[t] for t in p]
    return out


def evaluate(tagger: LoadedTagger, sentences: Sequence[Sentence]) -> dict:
    """Accuracy, accuracy on words unseen in training, per-tag P/R/F1 and (for BIO/BIOES tags) span P/R/F1.

    Returns a JSON-able dict: accuracy, oov_accuracy, tokens, oov_tokens, sentences,
    per_tag {tag: {precision, recall, f1, support, predicted}}, and when spans apply
    span_precision, span_recall, span_f1 and spans {type: {...}}.
    """
    if not sentences:
        raise DataError("no sentences to evaluate")
    gold = [list(s.tags or []) for s in sentences]
    pred = list(predict(tagger, [s.words for s in sentences]))
    known = [[tagger.vocab.is_known(w) for w in s.words] for s in sentences]
    unseen = [[not k for k in ks] for ks in known]
    correct, total = metrics.accuracy(gold, pred)
    oov_correct, oov_total = metrics.accuracy(gold, pred, mask=unseen)
    result: dict = {
        "accuracy": correct / total if total else 0.0,
        "oov_accuracy": oov_correct / oov_total if oov_total else None,
        "tokens": total,
        "oov_tokens": oov_total,
        "sentences": len(sentences),
        "per_tag": {t: prf.to_dict() for t, prf in metrics.per_tag(gold, pred).items()},
    }
    scheme = tagger.vocab.scheme or metrics.detect_scheme({t for g in gold for t in g})
    if scheme is not None:
        result["scheme"] = scheme
        result.update(metrics.span_scores(gold, pred).to_dict())
    return result
