"""Metrics (textrnn.metrics): accuracy, per-tag P/R/F1, conlleval spans, BIO rules; edit distance, CER."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textrnn.engine.metrics import (
    accuracy,
    allowed_transition,
    char_errors,
    detect_scheme,
    edit_distance,
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


# ---- edit distance and CER ----------------------------------------------------------------------


def test_edit_distance_known_values():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == edit_distance("abc", "") == 3
    assert edit_distance("राहुल", "राहूल") == 1  # code points: one vowel sign differs
    assert edit_distance(["क्ष", "ा"], ["क्ष"]) == 1  # any sequence: grapheme lists too


def _brute_distance(a: str, b: str) -> int:
    """Shortest edit script by breadth-first search over strings (tiny alphabets only)."""
    alphabet = sorted(set(a + b))
    frontier, seen, depth = {a}, {a}, 0
    while b not in frontier:
        nxt = set()
        for s in frontier:
            for i in range(len(s) + 1):
                nxt.add(s[:i] + s[i + 1 :])
                for c in alphabet:
                    nxt.add(s[:i] + c + s[i:])
                    nxt.add(s[:i] + c + s[i + 1 :])
        frontier, depth = nxt - seen, depth + 1
        seen |= nxt
    return depth


words = st.text(alphabet="abक्", max_size=5)


@settings(max_examples=150, deadline=None)
@given(words, words, words)
def test_edit_distance_is_a_metric(a, b, c):
    d = edit_distance(a, b)
    assert d == edit_distance(b, a)
    assert (d == 0) == (a == b)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))
    assert edit_distance(a, c) <= d + edit_distance(b, c)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab", max_size=4), st.text(alphabet="ab", max_size=4))
def test_edit_distance_is_the_shortest_edit_script(a, b):
    assert edit_distance(a, b) == _brute_distance(a, b)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(words, words), max_size=6))
def test_cer_pools_errors_over_reference_characters(pairs):
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    errors, chars = char_errors(refs, hyps)
    assert errors == sum(edit_distance(r, h) for r, h in pairs) and chars == sum(map(len, refs))
    assert char_errors(refs, refs) == (0, chars)


def test_char_errors_known_value_and_misaligned_input():
    assert char_errors(["abcd", "ef"], ["abed", ""]) == (3, 6)
    with pytest.raises(ValueError, match="2 references but 1"):
        char_errors(["a", "b"], ["a"])
