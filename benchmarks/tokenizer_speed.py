"""tokenizer_speed: encode MB/s of every tokenizer kind, against `list(str)` and `str.split`.

Texts: tiny-shakespeare (English, ASCII) and the `# text =` sentences of the Hindi PUD
treebank (Devanagari), the latter repeated to about the same size. Each tokenizer is
trained on the text it encodes (training is not timed). MB are 10^6 bytes of UTF-8.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from benchmarks.common import Options, Table, alternate, fmt_num, fmt_ratio, fmt_stats, summarize
from benchmarks.schema import ANY_NAME, STATS, VALUE
from textrnn.formats.plain import read_text
from textrnn.paths import data_file
from textrnn.tokenizers import Tokenizer, train_tokenizer

REPO = Path(__file__).resolve().parent.parent
HINDI = "ud_hindi_pud/hi_pud-ud-first800.conllu"
ENGLISH = "tinyshakespeare/input.txt"
REFERENCES = ("list(str)", "str.split")
TOKENIZERS = {  # name -> train_tokenizer arguments (subword vocabulary sizes are set per run)
    "char grapheme": {"kind": "char", "unit": "grapheme"},
    "char codepoint": {"kind": "char", "unit": "codepoint"},
    "word": {"kind": "word"},
    "bpe": {"kind": "bpe"},
    "unigram": {"kind": "unigram"},
}

FIELDS = {  # what `run` writes (see schema.py)
    "settings": {
        "texts": {ANY_NAME: dict.fromkeys(("source", "repeat", "bytes", "chars"), VALUE)},
        "subword_vocab_size": {ANY_NAME: VALUE},
        "min_time_s": VALUE,
        "reps": VALUE,
    },
    "results": [
        {"text": VALUE, "tokenizer": VALUE, "unit": VALUE, "speed": STATS, "tokens": VALUE,
         "vocab_size": VALUE, **{f"vs {ref}": STATS for ref in REFERENCES}}
    ],
}  # fmt: skip


def texts(opts: Options) -> dict[str, dict]:
    """name -> {"text", "source", "repeat"}; Hindi is repeated to roughly the English size."""
    if opts.tiny:
        english, hindi = (
            read_text(REPO / "corpora/english.txt"),
            read_text(REPO / "corpora/hindi.txt"),
        )
        sources = ("corpora/english.txt", "corpora/hindi.txt")
        target = 50_000
    else:
        english = read_text(data_file(ENGLISH))
        hindi = (
            "\n".join(
                line[len("# text = ") :]
                for line in read_text(data_file(HINDI)).splitlines()
                if line.startswith("# text = ")
            )
            + "\n"
        )
        sources = (ENGLISH, f"{HINDI} (# text = lines)")
        target = len(english.encode("utf-8"))
    out = {}
    for name, text, source in (("english", english, sources[0]), ("hindi", hindi, sources[1])):
        repeat = max(1, round(target / len(text.encode("utf-8"))))
        out[name] = {"train": text, "text": text * repeat, "source": source, "repeat": repeat}
    return out


def vocab_size(opts: Options, text: str) -> int:
    """Subword vocabulary: 4000 on English; 2000 on the Hindi sentences (unigram can make ~2600 there)."""
    if opts.tiny:
        return 500
    return 4000 if text == "english" else 2000


def run(opts: Options) -> dict:
    min_time = 0.05 if opts.quick or opts.tiny else 0.3
    results = []
    corpora = {}
    for name, t in texts(opts).items():
        text = t["text"]
        mb = len(text.encode("utf-8")) / 1e6
        toks = _tokenizers(t["train"], subword_vocab=vocab_size(opts, name))
        subjects: dict[str, Callable[[], float]] = {
            "list(str)": _mb_per_s(partial(list, text), mb, min_time),
            "str.split": _mb_per_s(text.split, mb, min_time),
        }
        subjects.update(
            {
                label: _mb_per_s(partial(tok.encode, text), mb, min_time)
                for label, tok in toks.items()
            }
        )
        runs = alternate(subjects, reps=opts.reps)
        for label, values in runs.items():
            row = {"text": name, "tokenizer": label, "unit": "MB/s", "speed": summarize(values)}
            for ref in REFERENCES:
                row[f"vs {ref}"] = summarize(
                    [a / b for a, b in zip(values, runs[ref], strict=True)]
                )
            if label in toks:
                row["tokens"] = len(toks[label].encode(text))
                row["vocab_size"] = toks[label].vocab_size
            results.append(row)
        corpora[name] = {
            "source": t["source"],
            "repeat": t["repeat"],
            "bytes": round(mb * 1e6),
            "chars": len(text),
        }
    return {
        "settings": {
            "texts": corpora,
            "subword_vocab_size": {name: vocab_size(opts, name) for name in corpora},
            "min_time_s": min_time,
            "reps": opts.reps,
        },
        "results": results,
    }


def _tokenizers(train_text: str, *, subword_vocab: int) -> dict[str, Tokenizer]:
    """Every tokenizer of TOKENIZERS, trained on `train_text`."""
    out = {}
    for label, args in TOKENIZERS.items():
        extra = {"vocab_size": subword_vocab} if args["kind"] in ("bpe", "unigram") else {}
        out[label] = train_tokenizer(texts=[train_text], **args, **extra)
    return out


def _mb_per_s(fn: Callable[[], object], mb: float, min_time: float) -> Callable[[], float]:
    def measure() -> float:
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                return calls * mb / elapsed

    return measure


def table(result: dict) -> Table:
    t = Table(
        "tokenizer_speed: encode MB/s (median [min-max]) and ratio to the plain references",
        ["text", "tokenizer", "MB/s", "vs list(str)", "vs str.split", "tokens"],
    )
    for row in result["results"]:
        tokens = fmt_num(row["tokens"]) if "tokens" in row else ""
        t.rows.append(
            [row["text"], row["tokenizer"], fmt_stats(row["speed"]), fmt_ratio(row["vs list(str)"]),
             fmt_ratio(row["vs str.split"]), tokens]
        )  # fmt: skip
    t.notes += [
        "encode = tokenizer.encode(whole text) -> list of ids, normalisation (NFC) included; "
        "list(str) and str.split are the floor references, measured alternately in the same run.",
        "each measurement repeats the call until min_time_s has passed.",
    ]
    return t


SHORT = {"char grapheme": "grapheme", "char codepoint": "code point"}


def headline(result: dict) -> list[list[str]]:
    """One row per text: each tokenizer's MB/s against the two floor references."""
    out = []
    for text, source in (("english", "tiny-shakespeare"), ("hindi", "Hindi PUD")):
        rows = {r["tokenizer"]: r for r in result["results"] if r["text"] == text}
        if not rows:
            continue
        mine = [name for name in rows if name not in REFERENCES]
        if text == "english":  # ASCII: grapheme and code point tokenizers coincide
            mine = [n for n in mine if n != "char codepoint"]
        speed = {name: fmt_num(row["speed"]["median"]) for name, row in rows.items()}
        label = {n: "char" if text == "english" and n == "char grapheme" else SHORT.get(n, n) for n in mine}
        out.append([
            f"tokenizer encode, {source} (MB/s)",
            ", ".join(f"{label[n]} {speed[n]}" for n in mine),
            "",
            ", ".join(f"`{ref}` {speed[ref]}" for ref in REFERENCES),
            "",
        ])  # fmt: skip
    return out
