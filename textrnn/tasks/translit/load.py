"""Loading a transliteration checkpoint (`load`): metadata and weights checked before use,
into a `LoadedTransliterator`."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from textrnn.config import config_from_dict
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint
from textrnn.engine.devices import INFERENCE_PRECISIONS, resolve_precision
from textrnn.engine.progress import Tick
from textrnn.engine.weights import check_weight_shapes, checkpoint_weights, load_weights
from textrnn.errors import CheckpointError, TextrnnError, UsageError
from textrnn.models.seq2seq import Ensemble, Seq2Seq, Seq2SeqConfig, build_model
from textrnn.tasks.translit.config import LENGTH_PENALTY
from textrnn.tasks.translit.decode import (
    READ_AHEAD,
    Candidate,
    attention_map,
    predict_words,
    transliterate_text,
)
from textrnn.tasks.translit.evaluate import evaluate_file, score_pairs
from textrnn.tasks.translit.vocab import Vocabs


@dataclass
class LoadedTransliterator:
    """A model with its vocabularies, ready for inference: `predict` (candidates for words,
    streaming), `predict_text` (running text), `evaluate` (scores on a gold lexicon)."""

    model: Seq2Seq | Ensemble
    vocabs: Vocabs
    precision: str = "fp32"  # fp32 | bf16: the arithmetic of decoding
    checkpoint: Checkpoint | None = None
    length_penalty: float = LENGTH_PENALTY  # alpha in logprob / length ** alpha when ranking beams
    cache: OrderedDict = field(default_factory=OrderedDict, repr=False)  # running text's words

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(
        self, words: Iterable[str], *, beam: int = 5, nbest: int = 1, read_ahead: int = READ_AHEAD
    ) -> Iterator[list[Candidate]]:
        """The `nbest` best transliterations of each word, best first, in order, streaming:
        `read_ahead` words are read, decoded together and yielded before more input is read.
        Greedy search with `beam` 1; an empty word gives []."""
        return predict_words(self, words, beam=beam, nbest=nbest, read_ahead=read_ahead)

    def predict_text(self, lines: Sequence[str], *, beam: int = 5) -> list[str]:
        """Running text: every word the model can read is transliterated; spacing,
        punctuation, digits and words of other scripts stay as they are."""
        return transliterate_text(self, lines, beam=beam)

    def attention(self, word: str) -> tuple[list[str], list[str], list[list[float]]]:
        """Greedy transliteration of `word` with its attention weights: (source units,
        output units (+ </s>), weights[output][source])."""
        return attention_map(self, word)

    def evaluate(
        self, path: str | Path, *, beam: int = 5, nbest: int = 5, on_progress: Tick | None = None
    ) -> dict:
        """Top-1/top-k word accuracy, CER, any-reference accuracy and teacher-forced loss on
        a gold lexicon read with the layout the model was trained with (`on_progress` hears
        (words decoded, words) as it goes)."""
        return evaluate_file(self, path, beam=beam, nbest=nbest, on_progress=on_progress)

    def evaluate_pairs(
        self, pairs: Sequence[tuple[str, str]], *, beam: int = 5, nbest: int = 5
    ) -> dict:
        """`evaluate` of (source, target) pairs in memory, with each row's prediction."""
        return score_pairs(self, pairs, beam=beam, nbest=nbest)


def model_from_checkpoint(ckpt: Checkpoint, *, source: str) -> tuple[Seq2Seq | Ensemble, Vocabs]:
    """The checkpoint's model (with its weights) and vocabularies, every piece of metadata
    checked, and the weights' shapes checked against the config before any allocation."""
    try:
        cfg = config_from_dict(Seq2SeqConfig, ckpt.meta["model_config"], what="model config")
        vocabs = Vocabs.from_dict(ckpt.meta["tokenizers"])
    except (KeyError, TypeError, ValueError, AttributeError, TextrnnError) as err:
        raise CheckpointError(
            f"{source}: checkpoint metadata is incomplete or invalid ({err})"
        ) from None
    sizes = (vocabs.source.vocab_size, vocabs.target.vocab_size)
    if sizes != (cfg.n_source, cfg.n_target):
        raise CheckpointError(f"{source}: vocabulary sizes {sizes} do not match the model config")
    try:
        with torch.device("meta"):  # shapes only: a config claiming a huge model allocates nothing
            probe = build_model(cfg)
    except (RuntimeError, ValueError, OverflowError) as err:
        raise CheckpointError(
            f"{source}: checkpoint model config is unusable ({str(err).splitlines()[0]})"
        ) from None
    weights = checkpoint_weights(ckpt)
    check_weight_shapes(probe, {k: tuple(v.shape) for k, v in weights.items()}, source=source)
    model = build_model(cfg)
    load_weights(model, weights, source=source)
    return model, vocabs


def load(
    path: str | Path,
    *,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
    length_penalty: float = LENGTH_PENALTY,
) -> LoadedTransliterator:
    """Load a transliteration checkpoint (refusing other tasks) ready for inference."""
    if precision not in INFERENCE_PRECISIONS:
        raise UsageError(
            f"--precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}"
        )
    if not math.isfinite(length_penalty):
        raise UsageError(f"--length-penalty must be a finite number, got {length_penalty}")
    ckpt = load_checkpoint(path, task="translit")
    model, vocabs = model_from_checkpoint(ckpt, source=str(path))
    model.to(device).eval()
    return LoadedTransliterator(model, vocabs, precision=resolve_precision(precision, device),
                          checkpoint=ckpt, length_penalty=length_penalty)  # fmt: skip
