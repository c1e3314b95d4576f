"""Class probabilities of many texts at once (length-sorted batches) and the figures they
give against gold labels: loss, accuracy, macro-F1, per-class precision/recall/F1 and the
confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from textrnn.data.batching import length_batches
from textrnn.engine import metrics
from textrnn.engine.devices import autocast
from textrnn.models.classifier import ClassifierModel
from textrnn.tasks.classify.batch import Encoded, TextEncoder

# Padded positions per inference batch. Each of an ensemble's recurrent layers costs about
# the same per padded position at 100 to 430 sentences a batch; on SST-2 dev, batches of
# 8192 positions were 28% padding and those of 2048 are 10%, for 20% more sentences/s.
BATCH_POSITIONS = 2048


def class_probabilities(
    model: ClassifierModel,
    encoder: TextEncoder,
    items: Sequence[Encoded],
    *,
    device: torch.device,
    precision: str = "fp32",
) -> Tensor:
    """(N, K) float32 class probabilities of encoded texts, in their order (eval mode)."""
    was_training = model.training
    model.eval()
    out = torch.empty(len(items), model.config.n_classes)
    try:
        with torch.inference_mode(), autocast(precision, device):
            for idx in length_batches([len(e.ids) for e in items], max_tokens=BATCH_POSITIONS):
                batch = encoder.batch([items[i] for i in idx]).to(device)
                logits = model(*batch.inputs)  # (B, K)
                out[idx] = torch.softmax(logits.float(), dim=-1).cpu()
    finally:
        model.train(was_training)
    return out


def scores(probs: Tensor, gold: Sequence[int], *, n_classes: int) -> dict:
    """Mean cross-entropy (nats), accuracy and macro-F1 of (N, K) probabilities against gold
    class ids (a gold id of -1, a class the model does not have, counts as an error)."""
    target = torch.tensor(list(gold), dtype=torch.long)
    known = target >= 0
    picked = probs[known].gather(1, target[known].unsqueeze(1)).squeeze(1)
    loss = float(-picked.clamp(min=1e-12).log().mean()) if known.any() else float("nan")
    pred = probs.argmax(1)
    per_class = metrics.per_tag([target.tolist()], [pred.tolist()])
    f1 = [prf.f1 for c, prf in per_class.items() if c >= 0]
    return {
        "loss": loss,
        "accuracy": float((pred == target).float().mean()),
        "macro_f1": sum(f1) / max(1, len(f1)),
    }


def confusion_matrix(gold: Sequence[int], pred: Sequence[int], n_classes: int) -> list[list[int]]:
    """counts[g][p]: texts of gold class g predicted as p."""
    counts = [[0] * n_classes for _ in range(n_classes)]
    for g, p in zip(gold, pred, strict=True):
        counts[g][p] += 1
    return counts
