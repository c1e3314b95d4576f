"""Metrics (textrnn.metrics): accuracy, per-tag P/R/F1, conlleval spans, BIO rules; edit distance, CER.

Span scores are proved against conlleval.pl's own outputs and against seqeval (a dev dependency)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support

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


# ---- the same chunks and scores as conlleval.pl and seqeval -----------------------------------

# What conlleval.pl (version 2004-01-26) prints for these files ("w GOLD PRED" lines, a blank
# line between sentences), checked by hand: overall "correct", "found" and "phrases" as
# (tp, predicted, gold), and per type (correct, found, phrases) from its per-type lines.
CONLLEVAL = [
    pytest.param(
        [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-MISC", "I-MISC"]],
        [["B-PER", "I-PER", "O", "B-ORG"], ["O", "I-MISC", "I-MISC"]],
        (2, 3, 3),
        {"LOC": (0, 0, 1), "MISC": (1, 1, 1), "ORG": (0, 1, 0), "PER": (1, 1, 1)},
        id="IOB2, I-X after O starts a chunk",
    ),
    pytest.param(
        [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]],
        [["I-PER", "O", "O", "I-LOC", "I-LOC"]],
        (0, 2, 3),
        {"LOC": (0, 1, 2), "PER": (0, 1, 1)},
        id="IOB1, B-X only between two chunks of one type",
    ),
    pytest.param(
        [["O", "I-PER", "I-PER", "B-LOC", "I-ORG"]],
        [["B-PER", "I-PER", "I-PER", "B-LOC", "I-LOC"]],
        (0, 2, 3),
        {"LOC": (0, 1, 1), "ORG": (0, 0, 1), "PER": (0, 1, 1)},
        id="ill-formed: a type change inside a chunk starts a new one",
    ),
    pytest.param(
        [["O", "B-PER"], ["I-PER", "O"]],
        [["O", "B-PER"], ["I-PER", "I-PER"]],
        (1, 2, 2),
        {"PER": (1, 2, 2)},
        id="a sentence boundary ends a chunk",
    ),
]


@pytest.mark.parametrize(("gold", "pred", "overall", "by_type"), CONLLEVAL)
def test_span_scores_equal_conlleval_outputs(gold, pred, overall, by_type):
    s = span_scores(gold, pred)
    assert (s.overall.tp, s.overall.predicted, s.overall.gold) == overall
    assert {t: (v.tp, v.predicted, v.gold) for t, v in s.by_type.items()} == by_type


def test_bioes_chunks_follow_seqeval_where_conlleval_does_not_know_s():
    """conlleval.pl reads S-PER S-PER as one two-word chunk and so scores B-PER E-PER against
    it as correct ("1 phrases; found: 1 phrases; correct: 1"). Two one-word names are not one
    two-word name: like seqeval, we count 2 gold chunks and 0 correct."""
    gold, pred = [["S-PER", "S-PER"]], [["B-PER", "E-PER"]]
    s = span_scores(gold, pred)
    assert (s.overall.tp, s.overall.predicted, s.overall.gold) == (0, 1, 2)
    assert [(t, a, b + 1) for t, a, b in get_entities(gold[0])] == spans(gold[0])


# Tags of every scheme seqeval's default (conlleval-compatible) mode reads: IOB1, IOB2, BIOES,
# well-formed or not; a type may hold a hyphen (conlleval splits at the first one only).
TAG = st.sampled_from(["O"] + [f"{p}-{t}" for p in "BIES" for t in ("PER", "LOC", "B-X")])


@st.composite
def gold_and_pred(draw) -> tuple[list[list[str]], list[list[str]]]:
    lengths = draw(st.lists(st.integers(0, 8), min_size=1, max_size=5))
    gold = [draw(st.lists(TAG, min_size=n, max_size=n)) for n in lengths]
    pred = [draw(st.lists(TAG, min_size=n, max_size=n)) for n in lengths]
    return gold, pred


@settings(max_examples=300, deadline=None)
@given(st.lists(TAG, max_size=12))
def test_spans_equal_seqeval_chunks(tags):
    assert spans(tags) == [(t, start, end + 1) for t, start, end in get_entities(tags)]


@settings(max_examples=200, deadline=None)
@given(gold_and_pred())
def test_span_scores_equal_seqeval(case):
    gold, pred = case
    s = span_scores(gold, pred)
    p, r, f, _ = precision_recall_fscore_support(gold, pred, average="micro", zero_division=0)
    assert (s.overall.precision, s.overall.recall, s.overall.f1) == pytest.approx((p, r, f))
    p, r, f, support = precision_recall_fscore_support(gold, pred, average=None, zero_division=0)
    ours = list(s.by_type.values())  # sorted by type, as seqeval's arrays are
    assert [v.precision for v in ours] == pytest.approx(list(p))
    assert [v.recall for v in ours] == pytest.approx(list(r))
    assert [v.f1 for v in ours] == pytest.approx(list(f))
    assert [v.gold for v in ours] == list(support)


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
