"""Tagging metrics (textrnn.metrics): accuracy, per-tag P/R/F1, conlleval spans, BIO rules."""

from __future__ import annotations

import pytest

from textrnn.metrics import (
    accuracy,
    allowed_transition,
    detect_scheme,
    per_tag,
    span_scores,
    spans,
    split_tag,
)


def test_accuracy_and_mask():
    gold = [["A", "B", "C"], ["A"]]
    pred = [["A", "C", "C"], ["B"]]
    assert accuracy(gold, pred) == (2, 4)
    assert accuracy(gold, pred, mask=[[False, True, True], [False]]) == (1, 2)
    with pytest.raises(ValueError, match="sentence 0"):
        accuracy([["A"]], [["A", "B"]])


def test_per_tag_precision_recall_f1():
    scores = per_tag([["N", "N", "V"]], [["N", "V", "V"]])
    n, v = scores["N"], scores["V"]
    assert (n.tp, n.predicted, n.gold) == (1, 1, 2)
    assert (n.precision, n.recall) == (1.0, 0.5)
    assert n.f1 == pytest.approx(2 / 3)
    assert (v.precision, v.recall) == (0.5, 1.0)
    assert per_tag([["X"]], [["Y"]])["X"].f1 == 0.0  # no division by zero


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["O", "I-PER", "I-PER"], [("PER", 1, 3)]),  # conlleval: I-X after O starts a chunk
        (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),  # a type change starts one
        (["I-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),  # B-X always starts one
        (["B-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),
        (["I-MISC", "I-MISC", "O"], [("MISC", 0, 2)]),  # IOB1
        (["O", "O"], []),
        # BIOES: S and E close chunks (conlleval itself would merge S-PER S-PER).
        (["S-PER", "S-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        (["B-PER", "E-PER", "S-LOC", "O"], [("PER", 0, 2), ("LOC", 2, 3)]),
        (["B-PER", "I-PER", "E-PER", "B-PER", "E-PER"], [("PER", 0, 3), ("PER", 3, 5)]),
    ],
)
def test_spans(tags, expected):
    assert spans(tags) == expected


def test_span_scores_hand_computed():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-MISC", "I-MISC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "I-MISC", "I-MISC"]]
    s = span_scores(gold, pred)
    assert (s.overall.tp, s.overall.predicted, s.overall.gold) == (2, 3, 3)
    assert s.overall.f1 == pytest.approx(2 / 3)
    assert s.by_type["PER"].f1 == 1.0 and s.by_type["MISC"].f1 == 1.0
    assert (s.by_type["LOC"].recall, s.by_type["ORG"].precision) == (0.0, 0.0)
    d = s.to_dict()
    assert d["span_precision"] == pytest.approx(2 / 3) and d["spans"]["LOC"]["support"] == 1


def test_span_boundaries_need_exact_start_and_end():
    s = span_scores([["B-PER", "I-PER", "I-PER"]], [["B-PER", "I-PER", "O"]])
    assert (s.overall.tp, s.overall.predicted, s.overall.gold) == (0, 1, 1)


def test_chunks_do_not_cross_sentences():
    s = span_scores([["B-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]])
    assert s.overall.gold == 2 and s.overall.tp == 2


def test_split_and_detect_scheme():
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I-B-X") == ("I", "B-X")
    assert split_tag("O") == ("O", "") and split_tag("NOUN") == ("O", "")
    assert detect_scheme({"O", "B-PER", "I-PER"}) == "BIO"
    assert detect_scheme({"O", "S-PER", "B-LOC", "E-LOC"}) == "BIOES"
    assert detect_scheme({"NOUN", "VERB"}) is None
    assert detect_scheme({"O"}) is None


def test_allowed_transitions_bio():
    ok = lambda a, b: allowed_transition("BIO", a, b)  # noqa: E731
    assert ok(None, "B-PER") and ok(None, "O")
    assert not ok(None, "I-PER")
    assert not ok("O", "I-PER")
    assert not ok("B-LOC", "I-PER")
    assert ok("B-PER", "I-PER") and ok("I-PER", "I-PER")
    assert ok("I-PER", None) and ok("I-PER", "B-LOC")


def test_allowed_transitions_bioes():
    ok = lambda a, b: allowed_transition("BIOES", a, b)  # noqa: E731
    assert ok(None, "S-PER") and not ok(None, "E-PER")
    assert ok("B-PER", "E-PER") and not ok("B-PER", "O") and not ok("B-PER", "E-LOC")
    assert ok("E-PER", "B-PER") and not ok("E-PER", "I-PER")
    assert not ok("B-PER", None) and ok("S-PER", None)
