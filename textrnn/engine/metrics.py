"""Tagging and transliteration metrics: token accuracy, per-tag precision/recall/F1, span F1
with conlleval semantics; edit distance and character error rate.

Pure functions over lists of tag sequences (one list of tags per sentence) or strings; no torch.

Span extraction follows conlleval (CoNLL-2000/2003): a chunk starts at B-X, at I-X
after O or after a chunk of another type, and ends before O, B, or a change of
type. For BIOES tags E-X and S-X also end a chunk and S-X starts one (conlleval
itself does not know S/E, and would merge `S-PER S-PER`). A chunk never crosses a
sentence boundary. Span precision = correct / predicted chunks, recall = correct /
gold chunks; a chunk is correct when its type, start and end all match.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

SCHEMES = ("BIO", "BIOES")
_PREFIXES = {"B", "I", "E", "S"}

Tags = Sequence[Sequence[str]]  # one sequence of tags per sentence


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 with the counts behind them."""

    tp: int
    predicted: int  # tp + false positives
    gold: int  # tp + false negatives

    @property
    def precision(self) -> float:
        return self.tp / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.gold,
            "predicted": self.predicted,
        }


def _check_aligned(gold: Tags, pred: Tags) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")


def accuracy(gold: Tags, pred: Tags, *, mask: Tags | None = None) -> tuple[int, int]:
    """(correct, total) tokens; with `mask` (booleans per token) only masked-in tokens count."""
    _check_aligned(gold, pred)
    correct = total = 0
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        m = mask[i] if mask is not None else None
        for j, (a, b) in enumerate(zip(g, p, strict=True)):
            if m is not None and not m[j]:
                continue
            total += 1
            correct += a == b
    return correct, total


def per_tag(gold: Tags, pred: Tags) -> dict[str, PRF]:
    """Token-level precision/recall/F1 of every tag seen in gold or predictions, sorted by tag."""
    _check_aligned(gold, pred)
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    for g, p in zip(gold, pred, strict=True):
        for a, b in zip(g, p, strict=True):
            n_gold[a] += 1
            n_pred[b] += 1
            if a == b:
                tp[a] += 1
    return {t: PRF(tp[t], n_pred[t], n_gold[t]) for t in sorted(set(n_gold) | set(n_pred))}


# ---- spans ---------------------------------------------------------------------------------

# Ours rather than seqeval's: tests/test_metrics.py proves these chunks and scores equal to
# seqeval's default (conlleval-compatible) mode on random IOB1/IOB2/BIOES tags, ill-formed
# ones included, and to conlleval.pl's own outputs on BIO files. Kept because seqeval would
# bring scikit-learn and SciPy into every install for these few lines, and because ours
# scores a BIO tagging of EWT several times faster (`python -m benchmarks libraries`).


def split_tag(tag: str) -> tuple[str, str]:
    """('B', 'PER') for 'B-PER'; ('O', '') for O and for any tag without a B/I/E/S prefix."""
    prefix, sep, label = tag.partition("-")
    if sep and prefix in _PREFIXES:
        return prefix, label
    return "O", ""


def detect_scheme(tags: Sequence[str] | set[str]) -> str | None:
    """'BIOES' if any tag is S-X or E-X, 'BIO' if all are O, B-X or I-X (with some B/I), else None."""
    tags = set(tags)
    if not tags:
        return None
    prefixes = set()
    for t in tags:
        if t == "O":
            continue
        prefix, sep, label = t.partition("-")
        if not sep or prefix not in _PREFIXES or not label:
            return None
        prefixes.add(prefix)
    if not prefixes:
        return None
    return "BIOES" if prefixes & {"E", "S"} else "BIO"


def _chunk_end(prev: str, prev_type: str, tag: str, type_: str) -> bool:
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev != "O" and prev_type != type_


def _chunk_start(prev: str, prev_type: str, tag: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if tag in ("I", "E") and prev in ("O", "E", "S"):
        return True
    return tag != "O" and prev_type != type_


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks of one sentence as (type, start, end) with `end` exclusive, in order."""
    out: list[tuple[str, int, int]] = []
    prev, prev_type = "O", ""
    start = -1
    for i, tag in enumerate(tags):
        cur, type_ = split_tag(tag)
        if start >= 0 and _chunk_end(prev, prev_type, cur, type_):
            out.append((prev_type, start, i))
            start = -1
        if _chunk_start(prev, prev_type, cur, type_):
            start = i
        prev, prev_type = cur, type_
    if start >= 0:
        out.append((prev_type, start, len(tags)))
    return out


@dataclass(frozen=True)
class SpanScores:
    overall: PRF
    by_type: dict[str, PRF]

    def to_dict(self) -> dict:
        return {
            "span_precision": self.overall.precision,
            "span_recall": self.overall.recall,
            "span_f1": self.overall.f1,
            "spans": {t: s.to_dict() for t, s in self.by_type.items()},
        }


def span_scores(gold: Tags, pred: Tags) -> SpanScores:
    """Span (chunk) precision/recall/F1, overall and per type, with conlleval semantics."""
    _check_aligned(gold, pred)
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    for g, p in zip(gold, pred, strict=True):
        gs, ps = set(spans(g)), set(spans(p))
        for t, _, _ in gs:
            n_gold[t] += 1
        for t, _, _ in ps:
            n_pred[t] += 1
        for t, _, _ in gs & ps:
            tp[t] += 1
    types = sorted(set(n_gold) | set(n_pred))
    by_type = {t: PRF(tp[t], n_pred[t], n_gold[t]) for t in types}
    overall = PRF(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    return SpanScores(overall, by_type)


# ---- valid transitions -------------------------------------------------------------------------


def allowed_transition(scheme: str, prev: str | None, tag: str | None) -> bool:
    """Whether `tag` may follow `prev` in a well-formed BIO/BIOES sequence.

    `prev=None` is the start of the sentence and `tag=None` its end. BIO forbids
    I-X except after B-X or I-X; BIOES also requires B-X/I-X to be followed by
    I-X/E-X and E-X/S-X/O to be followed by a fresh chunk or O.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    p, pt = ("O", "") if prev is None else split_tag(prev)
    if tag is None:  # end of sentence
        return scheme == "BIO" or p in ("O", "E", "S")
    t, tt = split_tag(tag)
    if scheme == "BIO":
        if t == "I":
            return p in ("B", "I") and pt == tt
        return True
    if p in ("B", "I"):
        return t in ("I", "E") and pt == tt
    return t in ("O", "B", "S")


# ---- edit distance and character error rate --------------------------------------------------


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning a into b.

    Works on any sequences of hashable items (strings compare code points). rapidfuzz's
    C++ implementation, not ours: on the CER of the Dakshina dev set it gives the same
    distances as the pure-Python dynamic programme it replaced, dozens of times faster
    (`python -m benchmarks libraries`, benchmarks/RESULTS.md).
    """
    return Levenshtein.distance(a, b)


def char_errors(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[int, int]:
    """(edit operations, reference characters) summed over aligned pairs of strings.

    Character error rate = errors / characters, pooled over the whole set (so long
    words weigh more), counting code points of the strings as given (normalise first).
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    errors = chars = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        errors += edit_distance(ref, hyp)
        chars += len(ref)
    return errors, chars
