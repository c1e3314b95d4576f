"""tagger: UPOS accuracy within a CPU budget, and tagging throughput against a plain loop.

Quality, exactly as a user would run it (subprocesses of this interpreter's textrnn):
`textrnn tag train --train T --dev D --time-budget B` then `textrnn tag eval`, on

- UD English EWT, train -> dev, 900 s (the issue's target: >= 95.5% UPOS on dev);
- UD Hindi PUD (800 sentences, no official split): `textrnn tag split` 80/10/10 in
  file order, train -> dev, scored on the test part, 180 s;
- UD Marathi UFAL, train -> dev, scored on test, 180 s.

Throughput: tagging EWT dev (words/s, whitespace-split sentences) with the tagger's
default shapes (random weights: speed does not depend on them). textrnn is
`tagging.predict` (length-sorted batches of up to 8,192 positions, streamed); the
reference is the same model called by a plain loop over batches of 32 sentences in file
order (padding to the longest in each batch), argmax per token. Same precision for both:
one row in fp32, one in bf16 (torch.autocast), as `tag predict --precision` offers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import Options, Table, alternate, compare, fmt_ratio, fmt_stats, fmt_target
from textrnn.engine.devices import autocast
from textrnn.formats.conllu import load_sentences
from textrnn.models.tagger import Tagger, TaggerConfig
from textrnn.paths import data_file
from textrnn.tasks.tag import DEFAULT_MODEL, LoadedTagger, build_vocab

TARGET_EWT = 0.955  # dev UPOS accuracy after --time-budget 900 (the target)
REFERENCE_BATCH = 32


def datasets(opts: Options) -> list[dict]:
    """The quality runs: name, files (relative to the data folder) and time budget."""
    full = not (opts.quick or opts.tiny)
    budget = (lambda b: b) if full else (lambda b: 3 if opts.tiny else 15)
    runs = [
        {
            "name": "UD English EWT",
            "train": "ud_english_ewt/en_ewt-ud-train.conllu",
            "dev": "ud_english_ewt/en_ewt-ud-dev.conllu",
            "eval": "ud_english_ewt/en_ewt-ud-dev.conllu",
            "eval_split": "dev",
            "budget": budget(900),
            "target": TARGET_EWT if full else None,
        },
        {
            "name": "UD Hindi PUD",
            "split": "ud_hindi_pud/hi_pud-ud-first800.conllu",
            "eval_split": "test (last 10%)",
            "budget": budget(180),
            "target": None,
        },
        {
            "name": "UD Marathi UFAL",
            "train": "ud_marathi_ufal/mr_ufal-ud-train.conllu",
            "dev": "ud_marathi_ufal/mr_ufal-ud-dev.conllu",
            "eval": "ud_marathi_ufal/mr_ufal-ud-test.conllu",
            "eval_split": "test",
            "budget": budget(180),
            "target": None,
        },
    ]
    return runs[2:] if opts.tiny else runs


def run(opts: Options) -> dict:
    quality = [_quality(d, opts) for d in datasets(opts)]
    speed = _throughput(opts)
    return {
        "settings": {"reference_batch": REFERENCE_BATCH, "reps": opts.reps, "model": DEFAULT_MODEL},
        "results": {"quality": quality, "throughput": speed},
        "notes": [
            "quality: `textrnn tag train` with its default --threads 1; the time budget includes "
            "validation (wall clock).",
            "Hindi PUD has no official split: `textrnn tag split FILE --out-dir DIR` (first 80% train, "
            "next 10% dev, last 10% test, in file order).",
            "throughput: words/s over EWT dev (25k words), random weights with the default shapes.",
        ],
    }


def _quality(d: dict, opts: Options) -> dict:
    work = opts.workdir
    commands = []
    if "split" in d:
        split_cmd = ["tag", "split", str(data_file(d["split"])), "--out-dir", "split"]
        paths = _textrnn(split_cmd, work).split()
        commands.append(split_cmd)
        train, dev, test = paths
    else:
        train, dev, test = (str(data_file(d[k])) for k in ("train", "dev", "eval"))
    out = f"{d['name'].split()[-2].lower()}.ckpt"
    train_cmd = ["tag", "train", "--train", train, "--dev", dev, "--out", out,
                 "--time-budget", str(d["budget"]), "--quiet", "--json"]  # fmt: skip
    eval_cmd = ["tag", "eval", "--checkpoint", out, test, "--json"]
    start = time.perf_counter()
    trained = json.loads(_textrnn(train_cmd, work))
    wall = time.perf_counter() - start
    evaluated = json.loads(_textrnn(eval_cmd, work))
    commands += [train_cmd, eval_cmd]
    acc = evaluated["accuracy"]
    return {
        "dataset": d["name"],
        "eval_split": d["eval_split"],
        "time_budget_s": d["budget"],
        "accuracy": acc,
        "oov_accuracy": evaluated.get("oov_accuracy"),
        "tokens": evaluated.get("tokens"),
        "target": d["target"],
        "meets_target": None if d["target"] is None else acc >= d["target"],
        "steps": trained.get("steps"),
        "epochs": trained.get("epochs"),
        "stopped": trained.get("stopped"),
        "train_wall_s": round(wall, 1),
        "commands": ["textrnn " + " ".join(_short(c)) for c in commands],
    }


def _short(cmd: list[str]) -> list[str]:
    """A command as the README shows it: data paths relative to $TEXTRNN_DATA."""
    root = str(data_file("."))
    return [a.replace(root.rstrip("/.") + "/", "$TEXTRNN_DATA/") for a in cmd]


def _textrnn(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "textrnn", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"textrnn {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _throughput(opts: Options) -> list[dict]:
    train = load_sentences(data_file("ud_english_ewt/en_ewt-ud-train.conllu"))
    dev = load_sentences(data_file("ud_english_ewt/en_ewt-ud-dev.conllu"))
    if opts.tiny:
        train, dev = train[:300], dev[:200]
    elif opts.quick:
        dev = dev[:600]
    vocab, _ = build_vocab(train)
    torch.manual_seed(0)
    shape = {"word_dim": 16, "char_dim": 8, "char_hidden": 8, "hidden": 16} if opts.tiny else {}
    config = TaggerConfig(
        n_words=len(vocab.words), n_chars=len(vocab.chars), n_tags=len(vocab.tags),
        **{**DEFAULT_MODEL, **shape},
    )  # fmt: skip
    model = Tagger(config).eval()
    sentences = [s.words for s in dev]
    words = sum(len(s) for s in sentences)
    rows = []
    for precision in ("fp32", "bf16"):
        tagger = LoadedTagger(model=model, vocab=vocab, checkpoint=None, precision=precision)

        def ours(tagger=tagger) -> float:
            start = time.perf_counter()
            for _ in tagger.predict(sentences):
                pass
            return words / (time.perf_counter() - start)

        def plain(tagger=tagger) -> float:
            start = time.perf_counter()
            _plain_tag(tagger, sentences)
            return words / (time.perf_counter() - start)

        runs = alternate({"textrnn": ours, "reference": plain}, reps=opts.reps)
        rows.append(
            compare(f"tag EWT dev, {precision}", "words/s", runs["textrnn"], runs["reference"], words=words)
        )
    return rows


def _plain_tag(tagger: LoadedTagger, sentences: list[list[str]]) -> list[list[int]]:
    """The straightforward loop: fixed batches in file order, padded, argmax per token."""
    out = []
    with torch.inference_mode(), autocast(tagger.precision, tagger.device):
        for i in range(0, len(sentences), REFERENCE_BATCH):
            batch = tagger.encoder.batch(sentences[i : i + REFERENCE_BATCH])
            emissions = tagger.model(batch.words, batch.lengths, batch.chars, batch.char_lengths, batch.types)
            best = emissions.argmax(-1)  # (B, T)
            out += [best[k, :n].tolist() for k, n in enumerate(batch.lengths.tolist())]
    return out


def table(result: dict) -> Table:
    r = result["results"]
    t = Table(
        "tagger: UPOS accuracy after `textrnn tag train --time-budget` and tagging words/s",
        ["case", "textrnn", "reference", "ratio", "target"],
    )
    for q in r["quality"]:
        target = ""
        if q["target"] is not None:
            target = f">= {q['target']:.1%}: {'yes' if q['meets_target'] else 'NO'}"
        oov = f", unseen words {q['oov_accuracy']:.2%}" if q.get("oov_accuracy") is not None else ""
        t.rows.append(
            [f"{q['dataset']}, {q['eval_split']} UPOS, {q['time_budget_s']} s",
             f"{q['accuracy']:.2%}{oov}", "", "", target]
        )  # fmt: skip
        t.notes += [f"`{c}`" for c in q["commands"]]
    for row in r["throughput"]:
        t.rows.append(
            [row["case"] + " (words/s)", fmt_stats(row["textrnn"]), fmt_stats(row["reference"]),
             fmt_ratio(row["ratio"]), fmt_target(row)]
        )  # fmt: skip
    t.notes.append(
        f"reference: the same model called on batches of {REFERENCE_BATCH} sentences in file order "
        "(padded), argmax per token; textrnn: tagging.predict (length-sorted batches, streamed)."
    )
    return t
