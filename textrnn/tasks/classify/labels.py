"""A classifier's classes: their order, the label vocabulary kept in checkpoints, and
class weights against imbalance."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from textrnn.errors import DataError

CLASS_WEIGHTS = ("none", "balanced")


def _order(label: str) -> tuple:
    """Numbers in numeric order (-1, 0, 1, 10), then the other labels alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


@dataclass
class Labels:
    """The class labels in a fixed order (id = position): numbers numerically, then text."""

    names: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names) or not all(isinstance(n, str) and n for n in self.names):
            raise ValueError("labels must be distinct non-empty strings")
        self.index = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_counts(cls, counts: Counter[str]) -> Labels:
        return cls(sorted(counts, key=_order))

    def ids(self, labels: Iterable[str]) -> list[int]:
        return [self.index[x] for x in labels]

    def to_dict(self) -> dict:
        return {"kind": "label", "vocab": list(self.names)}

    @classmethod
    def from_dict(cls, d: dict) -> Labels:
        if not isinstance(d, dict) or d.get("kind") != "label" or not isinstance(d.get("vocab"), list):
            raise ValueError("the label vocabulary is not {'kind': 'label', 'vocab': [...]}")
        return cls(list(d["vocab"]))


def check_known(labels: Labels, rows: Sequence, *, name: str) -> None:
    """DataError naming the first row (file and line) whose label the classifier does not know."""
    for row in rows:
        if row.label not in labels.index:
            known = ", ".join(labels.names[:20])
            raise DataError(
                f"{name}:{row.line}: label {row.label!r} is not one of the classifier's classes ({known})"
            )


def class_weights(labels: Labels, counts: Counter[str], mode: str) -> list[float]:
    """A loss weight per class: 1 each ("none"), or n / (K * count) ("balanced": every class
    weighs as much in total as the others, sklearn's formula)."""
    if mode not in CLASS_WEIGHTS:
        raise ValueError(f"class weights must be one of {', '.join(CLASS_WEIGHTS)}, got {mode!r}")
    if mode == "none":
        return [1.0] * len(labels)
    n = sum(counts[c] for c in labels.names)
    return [n / (len(labels) * max(1, counts[c])) for c in labels.names]
