"""Classifying texts with a trained classifier: class probabilities (streaming, in batches
of similar length) and which tokens drove a decision. `LoadedClassifier` (load.py) calls these."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from textrnn.engine.devices import autocast
from textrnn.models.classifier import ClassifierModel
from textrnn.tasks.classify.batch import Encoded, TextEncoder
from textrnn.tasks.classify.scoring import class_probabilities

READ_AHEAD = 2048  # texts read, length-sorted and classified together when predicting


def classify_texts(
    model: ClassifierModel, encoder: TextEncoder, texts: Iterable[str], *, precision: str, read_ahead: int
) -> Iterator[list[float]]:
    """Class probabilities of each text, in order, streaming: `read_ahead` texts are read,
    classified in batches of similar length and yielded before more input is read."""
    device = next(model.parameters()).device
    pending: list[Encoded] = []
    for text in texts:
        pending.append(encoder.encode(text))
        if len(pending) >= read_ahead:
            yield from class_probabilities(model, encoder, pending, device=device, precision=precision).tolist()
            pending = []
    if pending:
        yield from class_probabilities(model, encoder, pending, device=device, precision=precision).tolist()


def explain_text(
    model: ClassifierModel, encoder: TextEncoder, text: str, pieces: list[str], *, precision: str
) -> tuple[list[float], list[tuple[str, float]]]:
    """A text's class probabilities and a weight per token (`pieces`: the tokens' names)
    for the predicted class.

    With attention pooling the weights are the attention's (they sum to 1); otherwise each
    token's weight is how much the predicted class's probability falls when that token
    alone is left out (leave-one-token-out occlusion; negative: the token spoke against it).
    """
    item = encoder.encode(text)
    device = next(model.parameters()).device
    with torch.inference_mode(), autocast(precision, device):
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
