"""A trained classifier: loading its checkpoint, class probabilities of texts (streaming, in
batches of similar length), and which tokens drove a decision."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from textrnn.config import config_from_dict
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint
from textrnn.engine.devices import (
    INFERENCE_PRECISIONS,
    autocast,
    check_precision,
    resolve_precision,
)
from textrnn.engine.weights import check_weight_shapes, checkpoint_weights, load_weights
from textrnn.errors import CheckpointError, TextrnnError, UsageError
from textrnn.models.classifier import Classifier, ClassifierConfig
from textrnn.tasks.classify.batch import Encoded, TextEncoder
from textrnn.tasks.classify.labels import Labels
from textrnn.tasks.classify.options import ClassifyOptions
from textrnn.tasks.classify.scoring import class_probabilities
from textrnn.tokenizers import Tokenizer, tokenizer_from_dict

READ_AHEAD = 2048  # texts read, length-sorted and classified together when predicting


@dataclass
class LoadedClassifier:
    model: Classifier
    tokenizer: Tokenizer
    labels: Labels
    checkpoint: Checkpoint | None
    options: ClassifyOptions
    precision: str = "fp32"  # fp32 | bf16: the arithmetic of classifying
    encoder: TextEncoder = field(init=False)

    def __post_init__(self) -> None:
        self.encoder = TextEncoder(self.tokenizer, buckets=self.model.config.ngram_buckets,
                                   max_tokens=self.options.max_tokens)  # fmt: skip

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokens(self, text: str) -> list[str]:
        """The units a text is read as, one per token id (spaces shown as ▁)."""
        ids = self.encoder.encode(text).ids
        pieces = self.encoder.units(text)
        if len(pieces) != len(ids):
            pieces = self.encoder.pieces(ids)
        return [p.replace(" ", "\u2581") for p in pieces]


def model_from_checkpoint(ckpt: Checkpoint, *, source: str) -> tuple[Classifier, Tokenizer, Labels]:
    """The checkpoint's classifier (with its weights), tokenizer and labels, every piece of
    metadata checked, and the weights' shapes checked before any allocation."""
    try:
        cfg = config_from_dict(ClassifierConfig, ckpt.meta["model_config"], what="model config")
        tokenizers = ckpt.meta["tokenizers"]
        tok = tokenizer_from_dict(tokenizers["text"])
        labels = Labels.from_dict(tokenizers["label"])
    except (KeyError, TypeError, ValueError, AttributeError, TextrnnError) as err:
        raise CheckpointError(f"{source}: checkpoint metadata is incomplete or invalid ({err})") from None
    if (tok.vocab_size, len(labels)) != (cfg.vocab_size, cfg.n_classes):
        raise CheckpointError(
            f"{source}: {tok.vocab_size} token ids and {len(labels)} labels do not match the model config"
        )
    weights = checkpoint_weights(ckpt)
    with torch.device("meta"):  # shapes only: a config claiming a huge model allocates nothing
        probe = Classifier(cfg)
    check_weight_shapes(probe, {k: tuple(v.shape) for k, v in weights.items()}, source=source)
    model = Classifier(cfg)
    load_weights(model, weights, source=source)
    return model, tok, labels


def load_classifier(
    path: str | Path, *, device: torch.device = torch.device("cpu"), precision: str = "fp32"
) -> LoadedClassifier:
    """Load a classifier checkpoint (refusing other tasks) ready for inference.

    `precision` "auto" classifies in bf16 where the hardware computes it natively, else fp32.
    """
    if precision not in INFERENCE_PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}")
    ckpt = load_checkpoint(path, task="classify")
    model, tok, labels = model_from_checkpoint(ckpt, source=str(path))
    try:
        options = config_from_dict(ClassifyOptions, ckpt.meta.get("classify") or {}, what="classify options")
    except ValueError as err:
        raise CheckpointError(f"{path}: checkpoint metadata is invalid ({err})") from None
    model.to(device).eval()
    resolved = resolve_precision(precision, device)
    check_precision(resolved, device)
    return LoadedClassifier(model, tok, labels, ckpt, options, precision=resolved)


def predict(
    classifier: LoadedClassifier, texts: Iterable[str], *, read_ahead: int = READ_AHEAD
) -> Iterator[list[float]]:
    """Class probabilities (in `classifier.labels` order) of each text, in order, streaming:
    `read_ahead` texts are read, classified in batches of similar length and yielded before
    more input is read."""
    pending: list[Encoded] = []
    for text in texts:
        pending.append(classifier.encoder.encode(text))
        if len(pending) >= read_ahead:
            yield from _classify(classifier, pending)
            pending = []
    if pending:
        yield from _classify(classifier, pending)


def _classify(classifier: LoadedClassifier, items: list[Encoded]) -> list[list[float]]:
    probs = class_probabilities(classifier.model, classifier.encoder, items, device=classifier.device,
                                precision=classifier.precision)  # fmt: skip
    return probs.tolist()


def explain(classifier: LoadedClassifier, text: str) -> tuple[list[float], list[tuple[str, float]]]:
    """A text's class probabilities and a weight per token for the predicted class.

    With attention pooling the weights are the attention's (they sum to 1); otherwise each
    token's weight is how much the predicted class's probability falls when that token
    alone is left out (leave-one-token-out occlusion; negative: the token spoke against it).
    """
    encoder = classifier.encoder
    item = encoder.encode(text)
    pieces = classifier.tokens(text)
    model, device = classifier.model, classifier.device
    with torch.inference_mode(), autocast(classifier.precision, device):
        whole = encoder.batch([item]).to(device)
        if model.config.pool == "attention":
            logits, weights = model.attention(*whole.inputs)
            probs = torch.softmax(logits.float(), -1)[0]
            return probs.tolist(), list(zip(pieces, weights[0].float().tolist(), strict=True))
        probs = torch.softmax(model(*whole.inputs).float(), -1)[0]
        best = int(probs.argmax())
        batch = encoder.batch([_without(item, t, encoder) for t in range(len(item.ids))]).to(device)
        without = torch.softmax(model(*batch.inputs).float(), -1)[:, best]  # (T,)
        drops = (probs[best] - without).tolist()
    return probs.tolist(), list(zip(pieces, drops, strict=True))


def _without(item: Encoded, t: int, encoder: TextEncoder) -> Encoded:
    """`item` with its token `t` left out (no token left: one <unk>, as an empty text reads)."""
    ids, units = item.ids[:t] + item.ids[t + 1 :], item.units[:t] + item.units[t + 1 :]
    if not ids:
        return encoder.encode("")
    return Encoded(ids, units)
