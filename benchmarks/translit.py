"""translit: Dakshina Hindi word transliteration (Latin -> Devanagari), quality and speed.

Quality, exactly as a user would run it: `textrnn translit train TRAIN --dev DEV
--time-budget 1800` (plus --quiet/--out/--json), then `textrnn translit eval` on the dev
lexicon with beam 5 (top-1, top-5, CER) and with greedy decoding. The target comes from
the project issue: >= 50% top-1 and >= 75% top-5 with beam 5 after 1800 s on a 2-core
CPU (LSTM course projects reach 36-39% top-1, IndicXlit 60.6%).

The main run trains an ensemble of five (`--members 5`) on both cores (`--threads 2`): one
model's dev accuracy stops rising after about ten minutes, members trained together on the
same batches keep gaining.

Attention: one model (the CLI default) with `--attention luong | bahdanau | none` and a
shorter budget (300 s each), evaluated the same way (in this process, by the function
behind `translit eval`), so the three differ in attention only.

Every accuracy is on the Dakshina dev lexicon, which also chose the checkpoint (early
stopping on dev accuracy) and the defaults; the reference data has no test lexicon.

Speed, on the single luong model: words/s of `textrnn.tasks.translit.decode.transliterate` (words
decoded INFER_WORDS at a time, similar lengths together, batched beam search) against plain
references with the same weights: one word at a time through `beam_search` (or a
per-word greedy loop), the way a straightforward implementation decodes; and, for greedy
decoding, the batched loop a competent user writes: INFER_WORDS words at a time in file
order, padded, argmax until every row has ended. (A batched beam search is what textrnn
is; a hand-written one decodes a word at a time.)

--quick: budgets of 60 s and 30 s; --tiny: a 440-pair sample and 3 s budgets (tests).
Neither is a measurement of quality.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import (
    CHOSE_CHECKPOINT_AND_DEFAULTS,
    Options,
    Table,
    alternate,
    compare,
    fmt_num,
    fmt_ratio,
    fmt_stats,
    pick,
    rate,
    split_label,
)
from benchmarks.schema import VALUE, comparison
from textrnn.engine.decoding.beam import BeamConfig, beam_search
from textrnn.models.seq2seq import BOS, EOS
from textrnn.paths import data_file
from textrnn.tasks import translit
from textrnn.tasks.translit.batch import pad_sources
from textrnn.tasks.translit.decode import BANNED, INFER_WORDS, max_length, transliterate

REPO = Path(__file__).resolve().parent.parent
TARGET_TOP1, TARGET_TOP5 = 0.50, 0.75
OTHERS = {"LSTM course projects (issue)": "36-39%", "IndicXlit (issue)": "60.6%"}
ATTENTIONS = ("luong", "bahdanau", "none")
THREADS = 2  # the training threads (--threads): both cores of the 2-core CPU (the CLI's
# default is one, which leaves a core to other work); three members train 1.46x faster on two
MEMBERS = 5  # the main run trains an ensemble (--members): one model's dev accuracy stops rising
# after ~10 minutes (about 46%); three trained together on one thread reached 48.7% and peaked
# at 71% of the run, so the second core buys more members rather than more steps
SPLIT = {"split": "dev", "role": CHOSE_CHECKPOINT_AND_DEFAULTS}  # every accuracy here
REFERENCES = {"one word": "one word at a time", "batched": f"{INFER_WORDS} words at a time in file order"}
TRAIN_KEYS = ("checkpoint", "last_checkpoint", "steps", "epochs", "stopped", "best_step", "best_val_loss",
              "best_val_accuracy", "best_val_cer", "elapsed", "tokens")
EVAL_KEYS = ("rows", "sources", "layout", "beam", "k", "top1", "topk", "cer", "any_reference_top1", "loss")
SCORES = dict.fromkeys(("top1", "topk", "cer"), VALUE)

FIELDS = {  # what `run` writes (see schema.py)
    "settings": dict.fromkeys(("train", "dev", "time_budget_s", "attention_budget_s", "threads", "members",
                               "commands"), VALUE),
    "results": {
        **dict.fromkeys(("split", "role", "top1_beam5", "top5_beam5", "cer_beam5", "any_reference_top1_beam5",
                         "top1_greedy", "cer_greedy", "meets_target", "train_wall_s"), VALUE),
        "train": dict.fromkeys(TRAIN_KEYS, VALUE),
        "eval": {"beam5": dict.fromkeys(EVAL_KEYS, VALUE), "greedy": dict.fromkeys(EVAL_KEYS, VALUE)},
        "attention": [{"attention": VALUE, "split": VALUE, "role": VALUE, "train": dict.fromkeys(TRAIN_KEYS, VALUE),
                       "beam5": SCORES, "greedy": SCORES}],
        "speed": [comparison("words", "batch_words", "beam", "against")],
    },
}  # fmt: skip


def budgets(opts: Options) -> tuple[int, int]:
    """(main run, each attention run) in seconds."""
    return (3, 2) if opts.tiny else (60, 30) if opts.quick else (1800, 300)


def lexicons(opts: Options) -> tuple[Path, Path]:
    train = data_file("dakshina_hi/hi.translit.sampled.train.tsv")
    dev = data_file("dakshina_hi/hi.translit.sampled.dev.tsv")
    if not opts.tiny:
        return train, dev
    small_train, small_dev = opts.workdir / "train.tsv", opts.workdir / "dev.tsv"
    for src, dst, step in ((train, small_train, 100), (dev, small_dev, 40)):
        lines = src.read_text(encoding="utf-8").splitlines()[::step]
        dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return small_train, small_dev


def run(opts: Options) -> dict:
    train, dev = lexicons(opts)
    main_budget, att_budget = budgets(opts)
    shape = ["--embed", "24", "--hidden", "32", "--dec-hidden", "48"] if opts.tiny else []
    common = [str(train), "--dev", str(dev), "--quiet", "--json", "--threads", str(THREADS), *shape]
    main_cmd = ["translit", "train", *common, "--members", str(MEMBERS), "--time-budget", str(main_budget),
                "--out", "hi.ckpt"]  # fmt: skip
    start = time.perf_counter()
    trained = _textrnn(main_cmd, opts.workdir)
    train_wall = time.perf_counter() - start
    evals = {
        "beam5": _textrnn(["translit", "eval", str(dev), "-c", "hi.ckpt", "--beam", "5", "--json"], opts.workdir),
        "greedy": _textrnn(["translit", "eval", str(dev), "-c", "hi.ckpt", "--beam", "1", "--json"], opts.workdir),
    }
    attention = []
    for att in ATTENTIONS:
        out = f"att-{att}.ckpt"
        cmd = ["translit", "train", *common, "--attention", att, "--time-budget", str(att_budget), "--out", out]
        row = {"attention": att, **SPLIT, "train": pick(_textrnn(cmd, opts.workdir), TRAIN_KEYS)}
        tr = translit.load(opts.workdir / out)  # what `translit eval` runs, without a process start
        for name, beam in (("beam5", 5), ("greedy", 1)):
            r = tr.evaluate(dev, beam=beam, nbest=beam)
            row[name] = {k: r[k] for k in ("top1", "topk", "cer")}
        attention.append(row)
    speed = _speed(opts, opts.workdir / "att-luong.ckpt", dev)  # one model: the CLI's default shape
    smoke = opts.quick or opts.tiny
    b5 = evals["beam5"]
    return {
        "settings": {
            "train": train.name, "dev": dev.name, "time_budget_s": main_budget, "attention_budget_s": att_budget,
            "threads": THREADS, "members": MEMBERS, "commands": ["textrnn " + " ".join(_show(main_cmd, train, dev)),
                                             f"textrnn translit eval -c hi.ckpt {dev.name} --beam 5|1 --json"],
        },  # fmt: skip
        "results": {
            **SPLIT,
            "top1_beam5": b5["top1"],
            "top5_beam5": b5["topk"],
            "cer_beam5": b5["cer"],
            "any_reference_top1_beam5": b5["any_reference_top1"],
            "top1_greedy": evals["greedy"]["top1"],
            "cer_greedy": evals["greedy"]["cer"],
            "meets_target": None if smoke else b5["top1"] >= TARGET_TOP1 and b5["topk"] >= TARGET_TOP5,
            "train_wall_s": round(train_wall, 1),
            "train": pick(trained, TRAIN_KEYS),
            "eval": {k: pick(e, EVAL_KEYS) for k, e in evals.items()},
            "attention": attention,
            "speed": speed,
        },
    }


def _show(cmd: list[str], train: Path, dev: Path) -> list[str]:
    return [train.name if a == str(train) else dev.name if a == str(dev) else a for a in cmd]


def _textrnn(args: list[str], cwd: Path) -> dict:
    """Run `textrnn ARGS` (this interpreter's textrnn) in `cwd`; return its JSON output."""
    proc = subprocess.run(
        [sys.executable, "-m", "textrnn", *args], cwd=cwd, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"textrnn {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


# ---- speed ------------------------------------------------------------------------------------------------


def _speed(opts: Options, ckpt: Path, dev: Path) -> list[dict]:
    """words/s of batched decoding (textrnn) against the references, same weights."""
    tr = translit.load(ckpt, precision="fp32")
    words = [line.split("\t")[0] for line in dev.read_text(encoding="utf-8").splitlines() if line.strip()]
    words = words[: 64 if opts.tiny else 256 if opts.quick else 1024]
    rows = []
    for beam in (5, 1):
        subjects = {
            "textrnn": lambda beam=beam: rate(len(words), lambda: transliterate(tr, words, beam=beam, nbest=1)),
            "one word": lambda beam=beam: rate(len(words), lambda: [_one_word(tr, w, beam) for w in words]),
        }
        if beam == 1:
            subjects["batched"] = lambda: rate(len(words), lambda: _batched_greedy(tr, words))
        runs = alternate(subjects, reps=opts.reps)
        name = "greedy" if beam == 1 else f"beam {beam}"
        rows += [
            compare(f"{name}, {len(words)} dev words, against {REFERENCES[ref]}", "words/s", runs["textrnn"],
                    runs[ref], words=len(words), batch_words=INFER_WORDS, beam=beam, against=ref)
            for ref in subjects if ref != "textrnn"
        ]  # fmt: skip
    return rows


def _one_word(tr, word: str, beam: int) -> str:
    """The reference: one word decoded alone (batch of 1 row, or `beam` rows)."""
    ids = tr.vocabs.source_ids(word)
    src, lengths = pad_sources([ids])
    model = tr.model
    with torch.inference_mode():
        state = model.encode(src, lengths)
        steps = max_length(len(ids))
        if beam == 1:
            prev, out = torch.tensor([BOS]), []
            for _ in range(steps):
                logits, state = model.step_logits(prev, state)
                logits[:, list(BANNED)] = -float("inf")
                prev = logits.argmax(-1)
                if int(prev) == EOS:
                    break
                out.append(int(prev))
            return tr.vocabs.target_text(out)
        config = BeamConfig(beam=beam, nbest=1, max_length=steps, length_penalty=tr.length_penalty)
        hyp = beam_search(model.step_logits, lambda s, i: s.reorder(i), state, BOS, config=config,
                                   eos_id=EOS, banned_ids=BANNED)[0]  # fmt: skip
        return tr.vocabs.target_text(hyp.tokens)


def _batched_greedy(tr, words: list[str]) -> list[str]:
    """The batched greedy loop a competent user writes: INFER_WORDS words at a time in file
    order, padded, argmax for every row until all have ended, each row cut at its </s>."""
    model, out = tr.model, []
    with torch.inference_mode():
        for i in range(0, len(words), INFER_WORDS):
            src, lengths = pad_sources([tr.vocabs.source_ids(w) for w in words[i : i + INFER_WORDS]])
            state = model.encode(src, lengths)
            prev = torch.full((len(lengths),), BOS)  # (B,)
            ended = torch.zeros(len(lengths), dtype=torch.bool)  # (B,)
            steps = []
            for _ in range(max_length(int(lengths.max()))):
                logits, state = model.step_logits(prev, state)  # (B, V)
                logits[:, list(BANNED)] = -float("inf")
                prev = logits.argmax(-1)  # (B,)
                steps.append(prev)
                ended |= prev == EOS
                if bool(ended.all()):
                    break
            for row in torch.stack(steps, 1).tolist():  # (B, T)
                out.append(tr.vocabs.target_text(row[: row.index(EOS)] if EOS in row else row))
    return out


# ---- table --------------------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _split(r: dict) -> str:
    return split_label(r if "split" in r else SPLIT)  # (before issue 20: unlabelled, the same dev lexicon)


def table(result: dict) -> Table:
    r, s = result["results"], result["settings"]
    smoke = result.get("quick") or result.get("tiny")
    verdict = "n/a (smoke run)" if smoke else ("yes" if r["meets_target"] else "NO")
    train = r["train"]
    t = Table(
        f"translit: Dakshina Hindi after `textrnn translit train --members {s.get('members', 1)} "
        f"--time-budget {s['time_budget_s']}`; accuracy on {_split(r)}",
        ["measure", "value"],
    )
    t.rows += [
        ["top-1 word accuracy, beam 5", _pct(r["top1_beam5"])],
        ["top-5 word accuracy, beam 5", _pct(r["top5_beam5"])],
        ["CER, beam 5", _pct(r["cer_beam5"])],
        ["top-1, any reference of the source, beam 5", _pct(r["any_reference_top1_beam5"])],
        ["top-1 word accuracy, greedy", _pct(r["top1_greedy"])],
        ["CER, greedy", _pct(r["cer_greedy"])],
        [f"target top-1 >= {TARGET_TOP1:.0%} and top-5 >= {TARGET_TOP5:.0%}", verdict],
        *[[k, v] for k, v in OTHERS.items()],
        ["steps / epochs / stopped", f"{train['steps']} / {train['epochs']} / {train['stopped']}"],
        ["training time (budgeted) / wall s", f"{fmt_num(train['elapsed'])} / {fmt_num(r['train_wall_s'])}"],
    ]
    for row in r["attention"]:
        b5, g = row["beam5"], row["greedy"]
        t.rows.append([
            f"attention {row['attention']}, {s['attention_budget_s']} s: top-1 beam 5 / greedy, top-5, CER",
            f"{_pct(b5['top1'])} / {_pct(g['top1'])}, {_pct(b5['topk'])}, {_pct(b5['cer'])}",
        ])  # fmt: skip
    for row in r["speed"]:
        against = REFERENCES[row.get("against", "one word")]
        t.rows.append([
            f"words/s, {row['case'].split(', against')[0]}: textrnn vs {against} (ratio)",
            f"{fmt_stats(row['textrnn'])} vs {fmt_stats(row['reference'])} ({fmt_ratio(row['ratio'])})",
        ])  # fmt: skip
    t.notes += [f"`{c}`" for c in s["commands"]]
    t.notes += [
        f"every accuracy is on the dev lexicon: {_split(r)}; the reference data has no test lexicon.",
        f"training uses --threads {s['threads']}; decoding speed is measured in this process (the run's torch "
        "threads), fp32, untimed warm-up first, on the single-model luong checkpoint (the default shape; an "
        "ensemble of M decodes M times slower).",
        f"target: top-1 >= {TARGET_TOP1:.0%} and top-5 >= {TARGET_TOP5:.0%} with beam 5 (project issue); "
        + "; ".join(f"{k}: {v}" for k, v in OTHERS.items()) + " top-1 (not re-measured here).",
        "dev accuracy counts every row once; top-5 counts the row's target anywhere in the 5-best list; "
        "CER = edit distance / reference code points, pooled.",
    ]
    return t


def headline(result: dict) -> list[list[str]]:
    r, s = result["results"], result["settings"]
    smoke = result.get("quick") or result.get("tiny")
    verdict = "n/a" if smoke else "met" if r["meets_target"] else "NOT met"
    out = [[
        f"Dakshina Hindi after `textrnn translit train --members {s.get('members', 1)} --threads {s['threads']} "
        f"--time-budget {s['time_budget_s']}`, beam 5",
        f"top-1 {_pct(r['top1_beam5'])}, top-5 {_pct(r['top5_beam5'])}, CER {_pct(r['cer_beam5'])}",
        _split(r), f"target top-1 >= {TARGET_TOP1:.0%}, top-5 >= {TARGET_TOP5:.0%}", verdict,
    ]]  # fmt: skip
    for name in ("beam 5", "greedy"):
        rows = [row for row in r["speed"] if row["case"].startswith(name)]
        best = max(rows, key=lambda x: x["reference"]["median"])
        out.append([
            f"transliteration, {best['words']:,} dev words (words/s, one model), {name}",
            fmt_num(best["textrnn"]["median"]), "",
            f"fastest of {len(rows)}, {REFERENCES[best.get('against', 'one word')]}: {fmt_num(best['reference']['median'])}",
            f"{best['ratio']['median']:.2f}x",
        ])  # fmt: skip
    return out
