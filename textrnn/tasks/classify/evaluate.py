"""Scoring a classifier on labelled texts: accuracy, macro-F1, per-class precision, recall
and F1, and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from textrnn.engine import metrics
from textrnn.errors import DataError
from textrnn.formats.tables import Row
from textrnn.tasks.classify.labels import check_known
from textrnn.tasks.classify.predict import LoadedClassifier, predict
from textrnn.tasks.classify.scoring import confusion_matrix, scores


def evaluate(
    classifier: LoadedClassifier, rows: Sequence[Row], *, name: str = "<rows>"
) -> tuple[dict, list[list[float]]]:
    """Figures of `classifier` on labelled rows, and every row's class probabilities.

    A label the classifier does not know is a DataError naming the file (`name`) and line.
    The figures (JSON-able): rows, accuracy, macro_f1, loss (nats per text), per_class
    {label: {precision, recall, f1, support, predicted}} and confusion {labels, matrix
    (rows: gold, columns: predicted)}.
    """
    if not rows:
        raise DataError(f"{name}: no rows to evaluate")
    labels = classifier.labels
    check_known(labels, rows, name=name)
    gold = labels.ids(r.label for r in rows)
    probs = list(predict(classifier, (r.text for r in rows)))
    table = torch.tensor(probs)
    pred = table.argmax(1).tolist()
    summary = scores(table, gold, n_classes=len(labels))
    per_class = metrics.per_tag([gold], [pred])
    result = {
        "rows": len(rows),
        "accuracy": summary["accuracy"],
        "macro_f1": summary["macro_f1"],
        "loss": summary["loss"],
        "per_class": {
            labels.names[c]: per_class[c].to_dict() if c in per_class else metrics.PRF(0, 0, 0).to_dict()
            for c in range(len(labels))
        },
        "confusion": {"labels": list(labels.names), "matrix": confusion_matrix(gold, pred, len(labels))},
    }
    return result, probs
