"""Scoring a classifier's probabilities against labelled rows: accuracy, macro-F1, per-class
precision, recall and F1, the confusion matrix; and the misclassified rows for `--errors`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from textrnn.engine import metrics
from textrnn.errors import DataError
from textrnn.files import write_atomically
from textrnn.formats.tables import Row
from textrnn.tasks.classify.labels import Labels
from textrnn.tasks.classify.scoring import confusion_matrix, scores


def score_rows(labels: Labels, rows: Sequence[Row], probs: Sequence[Sequence[float]]) -> dict:
    """The figures of class probabilities `probs` (one list per row, in `labels` order)
    against the rows' gold labels, every one of which `labels` knows.

    JSON-able: rows, accuracy, macro_f1, loss (nats per text), per_class {label: {precision,
    recall, f1, support, predicted}} and confusion {labels, matrix (rows: gold, columns:
    predicted)}.
    """
    gold = labels.ids(r.label for r in rows)
    table = torch.tensor(probs)
    pred = table.argmax(1).tolist()
    summary = scores(table, gold, n_classes=len(labels))
    per_class = metrics.per_tag([gold], [pred])
    none = metrics.PRF(0, 0, 0).to_dict()
    return {
        "rows": len(rows),
        "accuracy": summary["accuracy"],
        "macro_f1": summary["macro_f1"],
        "loss": summary["loss"],
        "per_class": {
            name: per_class[c].to_dict() if c in per_class else none
            for c, name in enumerate(labels.names)
        },
        "confusion": {"labels": list(labels.names), "matrix": confusion_matrix(gold, pred, len(labels))},
    }


def write_errors(
    path: str | Path, labels: Labels, rows: Sequence[Row], probs: Sequence[Sequence[float]]
) -> int:
    """Write the misclassified rows to `path` as JSON lines (text, label, predicted, line,
    probs); return how many there were."""
    names = labels.names
    wrong = []
    for row, p in zip(rows, probs, strict=True):
        predicted = names[max(range(len(p)), key=p.__getitem__)]
        if predicted != row.label:
            wrong.append(json.dumps({"text": row.text, "label": row.label, "predicted": predicted, "line": row.line,
                                     "probs": dict(zip(names, p, strict=True))}, ensure_ascii=False))  # fmt: skip
    try:
        write_atomically(path, "".join(w + "\n" for w in wrong).encode("utf-8"))
    except OSError as err:
        raise DataError(f"{path}: cannot write ({err.strerror or err})") from None
    return len(wrong)
