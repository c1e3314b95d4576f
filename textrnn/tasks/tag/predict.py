"""A trained tagger: loading its checkpoint (`load`), tagging sentences (streaming, in
batches of similar length) and scoring it on gold data (`LoadedTagger`)."""

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
from textrnn.engine.progress import Tick
from textrnn.errors import DataError, UsageError
from textrnn.formats.conllu import Sentence, check_column, load_sentences
from textrnn.models.tagger import Tagger
from textrnn.tasks.tag.batch import Encoder
from textrnn.tasks.tag.load import model_from_checkpoint
from textrnn.tasks.tag.vocab import Vocab, apply_constraints

READ_AHEAD = 2048  # sentences read, length-sorted and tagged together when predicting


@dataclass
class LoadedTagger:
    """A tagger ready for inference: `predict` (tags of sentences, streaming) and `evaluate`
    (scores on a gold file)."""

    model: Tagger
    vocab: Vocab
    checkpoint: Checkpoint | None
    precision: str = "fp32"  # fp32 | bf16: the arithmetic of tagging
    encoder: Encoder = field(init=False)

    def __post_init__(self) -> None:
        self.encoder = Encoder(self.vocab)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(
        self, sentences: Iterable[Sequence[str]], *, read_ahead: int = READ_AHEAD
    ) -> Iterator[list[str]]:
        """Tags for each sentence (a list of words), in order, streaming: `read_ahead`
        sentences are read, tagged in batches of similar length and yielded before more
        input is read. Empty sentences get no tags.
        """
        pending: list[Sequence[str]] = []
        for s in sentences:
            pending.append(s)
            if len(pending) >= read_ahead:
                yield from self._tag_chunk(pending)
                pending = []
        if pending:
            yield from self._tag_chunk(pending)

    def _tag_chunk(self, sentences: list[Sequence[str]]) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in sentences]
        todo = [i for i, s in enumerate(sentences) if len(s)]
        model, tags = self.model, self.vocab.tags
        with torch.inference_mode(), autocast(self.precision, self.device):
            for batch_idx in length_batches([len(sentences[i]) for i in todo]):
                idx = [todo[k] for k in batch_idx]
                batch = self.encoder.batch([sentences[i] for i in idx]).to(self.device)
                emissions = model(
                    batch.words, batch.lengths, batch.chars, batch.char_lengths, batch.types
                )
                for i, p in zip(idx, model.decode(emissions, batch.lengths), strict=True):
                    out[i] = [tags[t] for t in p]
        return out

    def evaluate(
        self, path: str | Path, *, fmt: str = "auto", column: str | None = None, on_progress: Tick | None = None
    ) -> dict:
        """`evaluate_sentences` on a gold file (CoNLL-U or token<TAB>tag lines; `column`:
        the CoNLL-U gold column, by default the one the tagger was trained on)."""
        column = check_column(column or self.vocab.column)
        sentences = load_sentences(path, fmt=fmt, column=column)
        return {"file": str(path), **self.evaluate_sentences(sentences, on_progress=on_progress)}

    def evaluate_sentences(self, sentences: Sequence[Sentence], *, on_progress: Tick | None = None) -> dict:
        """Accuracy, accuracy on words unseen in training, per-tag P/R/F1 and (for BIO/BIOES
        tags) span P/R/F1 against the sentences' gold tags.

        Returns a JSON-able dict: accuracy, oov_accuracy, tokens, oov_tokens, sentences,
        per_tag {tag: {precision, recall, f1, support, predicted}}, and when spans apply
        scheme, span_precision, span_recall, span_f1 and spans {type: {...}}.
        `on_progress` hears (sentences tagged, sentences) as it goes.
        """
        if not sentences:
            raise DataError("no sentences to evaluate")
        gold = [list(s.tags or []) for s in sentences]
        pred: list[list[str]] = []
        for tags in self.predict([s.words for s in sentences]):
            pred.append(tags)
            if on_progress is not None:
                on_progress(len(pred), len(sentences))
        known = [[self.vocab.is_known(w) for w in s.words] for s in sentences]
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
        scheme = self.vocab.scheme or metrics.detect_scheme({t for g in gold for t in g})
        if scheme is not None:
            result["scheme"] = scheme
            result.update(metrics.span_scores(gold, pred).to_dict())
        return result


def load(
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
