"""libraries: textrnn's hand-written parts against the well-kept libraries for the same jobs.

The measurements behind issue 17's "use the library or prove ours against it", each on the
real data the job sees, both subjects alternately in this process, with whether their
results are equal:

- edit distance: the character error rate of the Dakshina Hindi dev lexicon (4,358 word
  pairs). textrnn's `metrics.char_errors` calls rapidfuzz; the reference is the pure-Python
  dynamic programme it replaced. Hypotheses: each reference word with seeded random edits
  (substitutions, insertions, deletions) at 13% of its characters, the dev CER of the
  translit benchmark's model.
- CoNLL-U reading: words and UPOS tags of UD English EWT dev, `formats.conllu.read_sentences`
  (textrnn's own) against `conllu.parse_incr` (the reference).
- span F1: a BIO tagging of EWT dev (runs of PROPN and of NUM as chunks) against a copy with
  10% of its tags replaced at random (so some sequences are ill-formed), `metrics.span_scores`
  (textrnn's own, overall and per type) against seqeval's `precision_recall_fscore_support`
  in its default, conlleval-compatible mode (micro and per type).

--tiny: the first 400 pairs and 200 sentences (tests).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from itertools import islice

import conllu
from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

from benchmarks.common import Options, Table, alternate, compare, fmt_ratio, fmt_stats
from benchmarks.schema import VALUE, comparison
from textrnn.engine import metrics
from textrnn.formats.conllu import read_sentences
from textrnn.paths import data_file

DAKSHINA_DEV = "dakshina_hi/hi.translit.sampled.dev.tsv"
EWT_DEV = "ud_english_ewt/en_ewt-ud-dev.conllu"
NOISE = 0.13  # edits per reference character in the CER hypotheses
CHUNKS = ("PROPN", "NUM")  # UPOS whose runs become BIO chunks
TAG_NOISE = 0.10  # share of predicted tags replaced at random


FIELDS = {  # what `run` writes (see schema.py)
    "settings": dict.fromkeys(("reps", "min_time_s", "noise", "tag_noise"), VALUE),
    "results": [comparison("same_result", "pairs", "cer", "sentences", "words", "tokens", "span_f1")],
}


def run(opts: Options) -> dict:
    min_time = 0.05 if opts.quick or opts.tiny else 0.5
    rows = [
        cer_row(opts, min_time),
        conllu_row(opts, min_time),
        span_row(opts, min_time),
    ]
    return {
        "settings": {"reps": opts.reps, "min_time_s": min_time, "noise": NOISE, "tag_noise": TAG_NOISE},
        "results": rows,
    }


# ---- edit distance -------------------------------------------------------------------------------


def python_edit_distance(a: Sequence, b: Sequence) -> int:
    """The pure-Python Levenshtein distance textrnn used before rapidfuzz (two rows of the table)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def noisy(word: str, alphabet: list[str], rng: random.Random) -> str:
    """`word` with a deletion, substitution or insertion at about NOISE of its characters."""
    out = []
    for ch in word:
        x = rng.random()
        if x < NOISE / 3:
            continue
        if x < 2 * NOISE / 3:
            out.append(rng.choice(alphabet))
            continue
        out.append(ch)
        if x < NOISE:
            out.append(rng.choice(alphabet))
    return "".join(out)


def cer_row(opts: Options, min_time: float) -> dict:
    lines = data_file(DAKSHINA_DEV).read_text(encoding="utf-8").splitlines()
    refs = [line.split("\t")[1] for line in lines][: 400 if opts.tiny else None]
    alphabet = sorted({ch for w in refs for ch in w})
    rng = random.Random(0)
    hyps = [noisy(w, alphabet, rng) for w in refs]

    def reference() -> tuple[int, int]:
        pairs = zip(refs, hyps, strict=True)
        return sum(python_edit_distance(r, h) for r, h in pairs), sum(map(len, refs))

    ours = metrics.char_errors(refs, hyps)
    runs = alternate(
        {"textrnn": per_second(lambda: metrics.char_errors(refs, hyps), len(refs), min_time),
         "reference": per_second(reference, len(refs), min_time)},
        reps=opts.reps,
    )  # fmt: skip
    return compare(
        "CER of the Dakshina hi dev lexicon: char_errors (rapidfuzz) vs the pure-Python DP it replaced",
        "pairs/s", runs["textrnn"], runs["reference"],
        same_result=ours == reference(), pairs=len(refs), cer=ours[0] / ours[1],
    )  # fmt: skip


# ---- CoNLL-U reading ------------------------------------------------------------------------------


def conllu_row(opts: Options, min_time: float) -> dict:
    path = data_file(EWT_DEV)
    limit = 200 if opts.tiny else None

    def ours() -> list[tuple[list[str], list[str]]]:
        sentences = read_sentences(path, fmt="conllu")
        return [(s.words, s.tags) for s in islice(sentences, limit)]

    def library() -> list[tuple[list[str], list[str]]]:
        out = []
        with open(path, encoding="utf-8") as f:
            for sentence in islice(conllu.parse_incr(f), limit):
                words = [t for t in sentence if isinstance(t["id"], int)]
                out.append(([t["form"] for t in words], [t["upos"] for t in words]))
        return out

    result = ours()
    words = sum(len(w) for w, _ in result)
    runs = alternate(
        {"textrnn": per_second(ours, words, min_time), "reference": per_second(library, words, min_time)},
        reps=opts.reps,
    )
    return compare(
        "read UD EWT dev (words, UPOS): formats.conllu vs conllu.parse_incr",
        "words/s", runs["textrnn"], runs["reference"],
        same_result=result == library(), sentences=len(result), words=words,
    )  # fmt: skip


# ---- span F1 -------------------------------------------------------------------------------------


def to_bio(upos: list[str]) -> list[str]:
    """Runs of the same CHUNKS tag as B-X I-X ..., everything else O."""
    out, prev = [], None
    for tag in upos:
        if tag in CHUNKS:
            out.append(("I-" if tag == prev else "B-") + tag)
            prev = tag
        else:
            out.append("O")
            prev = None
    return out


def span_row(opts: Options, min_time: float) -> dict:
    sentences = list(read_sentences(data_file(EWT_DEV), fmt="conllu"))[: 200 if opts.tiny else None]
    gold = [to_bio(s.tags or []) for s in sentences]
    labels = ["O"] + [f"{p}-{t}" for t in CHUNKS for p in "BI"]
    rng = random.Random(1)
    pred = [[rng.choice(labels) if rng.random() < TAG_NOISE else t for t in g] for g in gold]

    def ours() -> tuple:
        s = metrics.span_scores(gold, pred)
        by_type = [(v.precision, v.recall, v.f1, v.gold) for v in s.by_type.values()]
        return (s.overall.precision, s.overall.recall, s.overall.f1), by_type

    def library() -> tuple:
        p, r, f, _ = precision_recall_fscore_support(gold, pred, average="micro", zero_division=0)
        ps, rs, fs, support = precision_recall_fscore_support(gold, pred, zero_division=0)
        by_type = [(float(a), float(b), float(c), int(d)) for a, b, c, d in zip(ps, rs, fs, support, strict=True)]
        return (float(p), float(r), float(f)), by_type

    tokens = sum(map(len, gold))
    runs = alternate(
        {"textrnn": per_second(ours, tokens, min_time), "reference": per_second(library, tokens, min_time)},
        reps=opts.reps,
    )
    same = _close(ours(), library())
    return compare(
        "span P/R/F1 of a BIO tagging of UD EWT dev: metrics.span_scores vs seqeval (default mode)",
        "tokens/s", runs["textrnn"], runs["reference"],
        same_result=same, tokens=tokens, span_f1=ours()[0][2],
    )  # fmt: skip


def _close(a: object, b: object) -> bool:
    """Equal, floats within 1e-12 (the two sum in different orders)."""
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-12  # type: ignore[operator]
    return a == b


# ---- timing and table ----------------------------------------------------------------------------


def per_second(fn: Callable[[], object], count: int, min_time: float) -> Callable[[], float]:
    """A measurement: `count` items per call of `fn`, calls repeated for at least `min_time`."""

    def measure() -> float:
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                return calls * count / elapsed

    return measure


def table(result: dict) -> Table:
    t = Table(
        "libraries: textrnn's code against the library for the same job (median [min-max])",
        ["case", "unit", "textrnn", "reference", "ratio", "same result"],
    )
    for row in result["results"]:
        t.rows.append(
            [row["case"], row["unit"], fmt_stats(row["textrnn"]), fmt_stats(row["reference"]),
             fmt_ratio(row["ratio"]), "yes" if row["same_result"] else "NO"]
        )  # fmt: skip
    t.notes += [
        "ratio = textrnn / reference per repetition; each measurement repeats the call until "
        "min_time_s has passed.",
        "same result: both subjects return equal figures (distances, words and tags, span counts).",
    ]
    return t
