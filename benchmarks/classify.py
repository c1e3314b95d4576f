"""classify: sentiment accuracy within a CPU budget against a bag-of-words reference,
prediction speed, and the training loop against a plain PyTorch loop.

Quality, exactly as a user would run it (subprocesses of this interpreter's textrnn):
`textrnn classify train TRAIN --dev DEV --time-budget 900` (defaults otherwise, plus
--quiet/--out/--json), then `textrnn classify eval DEV -c CKPT --json`, on

- SST-2 (sentence level, binary): train -> dev (the issue's target: >= 82% accuracy);
- IITP Hindi product reviews (negative/neutral/positive): hi-train -> hi-valid (>= 70%).

These are dev figures: the same dev set chose the checkpoint (early stopping) and the
defaults. The reference, trained in the same run on the same split: logistic regression on
binary unigram + bigram features of the whitespace-split, lower-cased text (L2-regularised,
full-batch L-BFGS); its regularisation strength is chosen on the same dev set, so that both
sides use the dev set alike.

Prediction speed: sentences/s of `textrnn.tasks.classify.predict` over SST-2 dev (length-
sorted batches, tokenization included) with the default model of the SST-2 run, against the
same model classifying one sentence at a time; both at `classify predict`'s default
precision (auto: bf16 where the CPU has it).

Training loop: tokens/s of the real `Trainer` over a `ClassifierTask` (the default shapes,
SST-2 train) against a plain PyTorch loop at the same shapes and precision: nn.Embedding,
a bidirectional nn.LSTM over the padded batch, masked max pooling, nn.Linear, AdamW and
gradient clipping, over the same batches.

--quick: 60 s budgets; --tiny: 300-row slices, toy widths and 3 s budgets (tests). Neither
is a measurement of quality.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.classify_references import REGULARISATION, PlainClassifier, bag_of_words
from benchmarks.common import (
    CHOSE_CHECKPOINT_AND_DEFAULTS,
    Options,
    Table,
    alternate,
    compare,
    fmt_num,
    fmt_ratio,
    fmt_stats,
    fmt_target,
    split_label,
)
from benchmarks.schema import VALUE, comparison
from textrnn.data.batching import bucket_batches
from textrnn.engine.config import TrainConfig
from textrnn.engine.progress import Progress
from textrnn.engine.trainer import Trainer
from textrnn.formats.tables import read_table
from textrnn.models.classifier import ClassifierConfig, build_classifier
from textrnn.paths import data_file
from textrnn.tasks import classify
from textrnn.tasks.classify import DEFAULT_MODEL, ClassifyOptions, Labels
from textrnn.tasks.classify.batch import TextEncoder
from textrnn.tasks.classify.task import ClassifierTask
from textrnn.tokenizers import train_tokenizer

TARGETS = {"SST-2": 0.82, "IITP Hindi product reviews": 0.70}
TARGET_SPEED = 5000  # sentences/s predicting SST-2 dev with the default model
TARGET_LOOP = 0.95  # the Trainer's tokens/s over the plain loop's
# The dev sets' role: they chose the checkpoint (early stopping) and the classifier's
# defaults (and the reference's regularisation, said in the table's notes).
DEV_ROLE = CHOSE_CHECKPOINT_AND_DEFAULTS
REFERENCE = {**dict.fromkeys(("accuracy", "macro_f1", "C", "features", "train_s"), VALUE), "by_C": {"*": VALUE}}

FIELDS = {  # what `run` writes (see schema.py)
    "settings": {
        "reps": VALUE,
        "model": dict.fromkeys(("embed", "cell", "hidden", "layers", "pool", "dropout", "ngram_buckets", "members"), VALUE),
        "reference_c_grid": VALUE,
        "language_model": VALUE,
        "side_by_side": VALUE,
    },
    "results": {
        "quality": [{
            **dict.fromkeys(("dataset", "split", "role", "time_budget_s", "accuracy", "macro_f1", "difference",
                             "target", "meets_target", "steps", "epochs", "stopped", "best_step", "train_wall_s",
                             "commands"), VALUE),
            "per_class": {"*": dict.fromkeys(("precision", "recall", "f1", "support", "predicted"), VALUE)},
            "reference": REFERENCE,
        }],
        "pretraining": [dict.fromkeys(
            ("dataset", "split", "role", "lm_corpus_words", "lm_time_budget_s", "lm_steps", "lm_val_ppl", "accuracy",
             "macro_f1", "default_accuracy", "difference", "steps", "commands"), VALUE)],
        "predict": comparison("sentences", "precision", "meets_speed_target"),
        "train_loop": [comparison()],
    },
}  # fmt: skip


def datasets(opts: Options) -> list[dict]:
    full = not (opts.quick or opts.tiny)
    budget = 900 if full else 3 if opts.tiny else 60
    # "unlabelled": the treebank whose sentences join the training texts as language-model
    # text (EWT lower-cased, as SST-2 is); never a dev or test set of the task.
    sets = [
        {"name": "SST-2", "train": "sst2/train.tsv", "dev": "sst2/dev.tsv", "split": "dev",
         "unlabelled": "ud_english_ewt/en_ewt-ud-train.conllu", "lowercase": True},
        {"name": "IITP Hindi product reviews", "train": "iitp_hindi_product_reviews/hi-train.csv",
         "dev": "iitp_hindi_product_reviews/hi-valid.csv", "split": "valid",
         "unlabelled": "ud_hindi_pud/hi_pud-ud-first800.conllu", "lowercase": False},
    ]  # fmt: skip
    for d in sets:
        d["budget"] = budget
        d["lm_budget"] = 600 if full else 3 if opts.tiny else 30
        d["target"] = TARGETS[d["name"]] if full else None
    return sets


def files(d: dict, opts: Options) -> tuple[Path, Path]:
    """The data set's train and dev files (with --tiny: their first rows, written to the workdir)."""
    train, dev = data_file(d["train"]), data_file(d["dev"])
    if not opts.tiny:
        return train, dev
    out = []
    for path, rows in ((train, 300), (dev, 100)):
        small = opts.workdir / f"tiny-{path.name}"
        small.write_text("".join(path.read_text(encoding="utf-8").splitlines(True)[: rows + 1]), encoding="utf-8")
        out.append(small)
    return out[0], out[1]


def run(opts: Options) -> dict:
    # `classify train` runs on one thread by default: each data set's runs (default, then
    # language model and --init-from) take one core, the two data sets side by side.
    with ThreadPoolExecutor(max_workers=2) as pool:
        chains = list(pool.map(lambda d: _chain(d, opts), datasets(opts)))
    quality, pretraining = [q for q, _ in chains], [p for _, p in chains]
    sst_checkpoint = opts.workdir / "sst-2.ckpt"
    return {
        "settings": {"reps": opts.reps, "model": DEFAULT_MODEL, "reference_c_grid": list(REGULARISATION),
                     "language_model": LM_OPTIONS, "side_by_side": SIDE_BY_SIDE},  # fmt: skip
        "results": {
            "quality": quality,
            "pretraining": pretraining,
            "predict": _predict_speed(sst_checkpoint, opts),
            "train_loop": _loop_speed(opts),
        },
    }


# ---- quality --------------------------------------------------------------------------------------


SIDE_BY_SIDE = "the data sets' training runs side by side, one core each (classify train's one thread)"


def _chain(d: dict, opts: Options) -> tuple[dict, dict]:
    """A data set's default run, then its language model and the run started from it."""
    quality = _quality(d, opts)
    return quality, _pretraining(d, quality, opts)



def _quality(d: dict, opts: Options) -> dict:
    train, dev = files(d, opts)
    out = opts.workdir / f"{d['name'].split()[0].lower()}.ckpt"
    train_cmd = ["classify", "train", str(train), "--dev", str(dev), "--out", str(out),
                 "--time-budget", str(d["budget"]), "--quiet", "--json"]  # fmt: skip
    if opts.tiny:
        train_cmd += ["--embed", "16", "--hidden", "16"]
    eval_cmd = ["classify", "eval", str(dev), "--checkpoint", str(out), "--json"]
    start = time.perf_counter()
    trained = json.loads(_textrnn(train_cmd, opts.workdir))
    wall = time.perf_counter() - start
    evaluated = json.loads(_textrnn(eval_cmd, opts.workdir))
    pairs = lambda path: [(r.text, r.label) for r in read_table(path)[0]]  # noqa: E731
    reference = bag_of_words(pairs(train), pairs(dev), grid=(1.0,) if opts.tiny else REGULARISATION)
    acc = evaluated["accuracy"]
    return {
        "dataset": d["name"],
        "split": d["split"],
        "role": DEV_ROLE,
        "time_budget_s": d["budget"],
        "accuracy": acc,
        "macro_f1": evaluated["macro_f1"],
        "per_class": evaluated["per_class"],
        "reference": reference,
        "difference": acc - reference["accuracy"],
        "target": d["target"],
        "meets_target": None if d["target"] is None else acc >= d["target"],
        "steps": trained.get("steps"),
        "epochs": trained.get("epochs"),
        "stopped": trained.get("stopped"),
        "best_step": trained.get("best_step"),
        "train_wall_s": round(wall, 1),
        "commands": ["textrnn " + " ".join(_short(c, opts.workdir)) for c in (train_cmd, eval_cmd)],
    }


LM_OPTIONS = ["--tokenizer", "word", "--min-count", "2", "--layers", "1", "--hidden", "256", "--embed", "128",
              "--tie-weights", "--dropout", "0.3"]  # fmt: skip


def _pretraining(d: dict, default: dict, opts: Options) -> dict:
    """A language model of the training texts and a treebank's sentences, and a classifier
    started from it (`--init-from`), against the default classifier's run."""
    train, dev = files(d, opts)
    corpus = opts.workdir / f"{d['name'].split()[0].lower()}-unlabelled.txt"
    texts = [r.text for r in read_table(train)[0]]
    treebank = data_file(d["unlabelled"]).read_text(encoding="utf-8").splitlines()
    extra = [line[len("# text = ") :] for line in treebank if line.startswith("# text = ")]
    extra = [t.lower() for t in extra] if d["lowercase"] else extra
    corpus.write_text("".join(t.replace("\n", " ") + "\n" for t in texts + extra[: 200 if opts.tiny else None]),
                      encoding="utf-8")  # fmt: skip
    lm = corpus.with_suffix(".ckpt")
    lm_cmd = ["train", str(corpus), *LM_OPTIONS, "--time-budget", str(d["lm_budget"]), "--out", str(lm), "--quiet", "--json"]
    out = corpus.with_name(corpus.stem + "-init.ckpt")
    train_cmd = ["classify", "train", str(train), "--dev", str(dev), "--init-from", str(lm), "--out", str(out),
                 "--time-budget", str(d["budget"]), "--quiet", "--json"]  # fmt: skip
    eval_cmd = ["classify", "eval", str(dev), "--checkpoint", str(out), "--json"]
    trained_lm = json.loads(_textrnn(lm_cmd, opts.workdir))
    trained = json.loads(_textrnn(train_cmd, opts.workdir))
    evaluated = json.loads(_textrnn(eval_cmd, opts.workdir))
    return {
        "dataset": d["name"],
        "split": d["split"],
        "role": DEV_ROLE,
        "lm_corpus_words": sum(len(t.split()) for t in texts + extra),
        "lm_time_budget_s": d["lm_budget"],
        "lm_steps": trained_lm.get("steps"),
        "lm_val_ppl": _perplexity(trained_lm.get("best_val_loss")),
        "accuracy": evaluated["accuracy"],
        "macro_f1": evaluated["macro_f1"],
        "default_accuracy": default["accuracy"],
        "difference": evaluated["accuracy"] - default["accuracy"],
        "steps": trained.get("steps"),
        "commands": ["textrnn " + " ".join(_short(c, opts.workdir)) for c in (lm_cmd, train_cmd, eval_cmd)],
    }


def _perplexity(loss: float | None) -> float | None:
    return None if loss is None else float(torch.tensor(loss).exp())


def _short(cmd: list[str], workdir: Path) -> list[str]:
    """A command as the README shows it: data paths relative to $TEXTRNN_DATA, files of the
    work folder by their names."""
    root = str(data_file(".")).rstrip("/.") + "/"
    return [Path(a).name if a.startswith(str(workdir)) else a.replace(root, "$TEXTRNN_DATA/") for a in cmd]


def _textrnn(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "textrnn", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"textrnn {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


# ---- prediction speed --------------------------------------------------------------------------------


def _predict_speed(checkpoint: Path, opts: Options) -> dict:
    dev_rows, _ = read_table(data_file("sst2/dev.tsv"))
    texts = [r.text for r in dev_rows][: 200 if opts.tiny else None]
    clf = classify.load(checkpoint, precision="auto")
    one_at_a_time = texts[: 100 if opts.tiny or opts.quick else 400]

    def batched() -> float:
        start = time.perf_counter()
        for _ in clf.predict(texts):
            pass
        return len(texts) / (time.perf_counter() - start)

    def single() -> float:
        start = time.perf_counter()
        for text in one_at_a_time:
            list(clf.predict([text]))
        return len(one_at_a_time) / (time.perf_counter() - start)

    runs = alternate({"textrnn": batched, "reference": single}, reps=opts.reps)
    row = compare("SST-2 dev, default model", "sentences/s", runs["textrnn"], runs["reference"],
                  sentences=len(texts), precision=clf.precision)  # fmt: skip
    row["meets_speed_target"] = None if opts.tiny or opts.quick else row["textrnn"]["median"] >= TARGET_SPEED
    return row


# ---- the training loop ----------------------------------------------------------------------------------


def _loop_speed(opts: Options) -> list[dict]:
    rows, _ = read_table(data_file("sst2/train.tsv"))
    rows = rows[: 300 if opts.tiny else None]
    tok = train_tokenizer("word", [r.text for r in rows])
    labels = Labels.from_counts({r.label: 1 for r in rows})
    shape = {**DEFAULT_MODEL, **({"embed": 16, "hidden": 16} if opts.tiny else {})}
    encoder = TextEncoder(tok, buckets=shape.get("ngram_buckets", 0))
    items = [encoder.encode(r.text) for r in rows]
    ys = labels.ids(r.label for r in rows)
    every, windows = (1, 2) if opts.tiny else (2, 2) if opts.quick else (10, 3)
    results = []
    for precision in ("bf16", "fp32"):
        cfg = TrainConfig(batch_size=32, max_steps=every * (1 + windows), log_every=every, eval_every=10**9,
                          patience=0, epochs=10**6, precision=precision, clip=5.0, val_fraction=0.0)  # fmt: skip

        def ours(cfg=cfg) -> float:
            torch.manual_seed(0)
            model = build_classifier(ClassifierConfig(vocab_size=tok.vocab_size, n_classes=len(labels), **shape))
            task = ClassifierTask(model, encoder, (items, ys), ([], []), cfg, ClassifyOptions(),
                                  weights=[1.0] * len(labels), meta={}, device=torch.device("cpu"))  # fmt: skip
            speeds: list[float] = []

            def on_progress(p: Progress) -> None:
                if p.event == "step":
                    speeds.append(p.tokens_per_s)

            Trainer(task, cfg, out=opts.workdir / f"loop-{cfg.precision}.ckpt", device=torch.device("cpu"),
                    on_progress=on_progress).fit()  # fmt: skip
            timed = speeds[1:]  # the first report has no window before it
            return len(timed) / sum(1.0 / s for s in timed)

        def plain(cfg=cfg) -> float:
            torch.manual_seed(0)
            # the default's members, as a user would train several: one loss each, one optimizer
            model = nn.ModuleList(
                PlainClassifier(tok.vocab_size, len(labels), embed=shape["embed"], hidden=shape["hidden"],
                                dropout=shape["dropout"], buckets=shape.get("ngram_buckets", 0))
                for _ in range(shape.get("members", 1))
            ).train()  # fmt: skip
            opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01)
            order = bucket_batches([len(e.ids) for e in items], 32, seed=cfg.seed, epoch=0)
            tokens, start = 0, time.perf_counter()
            for step in range(every * (1 + windows)):
                if step == every:
                    tokens, start = 0, time.perf_counter()
                idx = order[step % len(order)]
                batch = encoder.batch([items[i] for i in idx], [ys[i] for i in idx])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                    losses = [F.cross_entropy(m(*batch.inputs).float(), batch.labels) for m in model]
                    loss = sum(losses) / len(losses)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                loss.item()
                tokens += int(batch.lengths.sum())
            return tokens / (time.perf_counter() - start)

        runs = alternate({"textrnn": ours, "reference": plain}, reps=opts.reps, warmup=False)
        results.append(compare(f"SST-2 train, default shapes, {precision}", "tokens/s", runs["textrnn"],
                               runs["reference"], target=TARGET_LOOP))  # fmt: skip
    return results


# ---- table ---------------------------------------------------------------------------------------------


def table(result: dict) -> Table:
    r = result["results"]
    t = Table(
        "classify: accuracy after `textrnn classify train --time-budget`, prediction and training speed",
        ["case", "split (role)", "textrnn", "reference", "ratio / difference", "target"],
    )
    for q in r["quality"]:
        ref = q["reference"]
        t.rows.append(
            [f"{q['dataset']} accuracy (macro-F1), {q['time_budget_s']} s", split_label(q),
             f"{q['accuracy']:.2%} ({q['macro_f1']:.2%})", f"BoW LR {ref['accuracy']:.2%} ({ref['macro_f1']:.2%})",
             f"{100 * q['difference']:+.2f} points", _verdict(q["target"], q["meets_target"])]
        )  # fmt: skip
        t.notes += [f"`{c}`" for c in q["commands"]]
    for q in r["pretraining"]:
        t.rows.append(
            [f"{q['dataset']} accuracy (macro-F1), --init-from a word LM ({q['lm_corpus_words']:,} words, "
             f"{q['lm_time_budget_s']} s, val ppl {q['lm_val_ppl'] or 0:.0f})", split_label(q),
             f"{q['accuracy']:.2%} ({q['macro_f1']:.2%})", f"default {q['default_accuracy']:.2%}",
             f"{100 * q['difference']:+.2f} points", ""]
        )  # fmt: skip
        t.notes += [f"`{c}`" for c in q["commands"]]
    p = r["predict"]
    speed_target = "" if p.get("meets_speed_target") is None else _verdict(f"{TARGET_SPEED:,}/s", p["meets_speed_target"])
    t.rows.append([f"{p['case']}, {p['precision']} (sentences/s)", "", fmt_stats(p["textrnn"]),
                   fmt_stats(p["reference"]), fmt_ratio(p["ratio"]), speed_target])  # fmt: skip
    for row in r["train_loop"]:
        t.rows.append([row["case"] + " (tokens/s)", "", fmt_stats(row["textrnn"]), fmt_stats(row["reference"]),
                       fmt_ratio(row["ratio"]), fmt_target(row)])  # fmt: skip
    t.notes += [
        "quality: the dev sets also chose the reference's regularisation C; reference: logistic regression on "
        "binary unigram + bigram features (lower-cased, whitespace-split), L2, full-batch L-BFGS, trained in the "
        "same run on the same split. The time budget includes validation (wall clock); "
        + result["settings"].get("side_by_side", "") + ".",
        "pretraining: `textrnn train` on the training texts plus a treebank's sentences, then `classify train "
        "--init-from`; compared with the default run above (same split, same dev use).",
        "prediction: reference = the same model classifying one sentence at a time; training loop: "
        "reference = a plain PyTorch BiLSTM loop at the same shapes, over the same batches.",
    ]
    return t


def _verdict(target: float | str | None, met: bool | None) -> str:
    if target is None or met is None:
        return ""
    shown = f"{target:.0%}" if isinstance(target, float) else target
    return f">= {shown}: {'yes' if met else 'NO'}"


def headline(result: dict) -> list[list[str]]:
    """README rows: each data set's accuracy against the bag-of-words reference and with
    `--init-from`, and the prediction speed against one sentence at a time."""
    r = result["results"]
    out = []
    for q in r["quality"]:
        verdict = "" if q["target"] is None else "met" if q["meets_target"] else "NOT met"
        out.append([
            f"{q['dataset']} accuracy after `textrnn classify train --time-budget {q['time_budget_s']}`",
            f"{q['accuracy']:.2%}", split_label(q),
            f"bag-of-words LR {q['reference']['accuracy']:.2%}; target >= {q['target']:.0%}" if q["target"]
            else f"bag-of-words LR {q['reference']['accuracy']:.2%}",
            f"{100 * q['difference']:+.2f} points" + (f", {verdict}" if verdict else ""),
        ])  # fmt: skip
    for q in r["pretraining"]:
        gain = "a gain" if q["difference"] > 0 else "no gain"
        out.append([
            f"{q['dataset']} accuracy, `--init-from` a word LM of the training texts and a treebank's "
            f"({q['lm_time_budget_s']} s)", f"{q['accuracy']:.2%}", split_label(q),
            f"the default classifier: {q['default_accuracy']:.2%}", f"{100 * q['difference']:+.2f} points ({gain})",
        ])  # fmt: skip
    p = r["predict"]
    speed = f"{p['ratio']['median']:.2f}x"
    if p.get("meets_speed_target") is not None:
        speed += f"; target >= {fmt_num(TARGET_SPEED)}/s: {'met' if p['meets_speed_target'] else 'NOT met'}"
    out.append([f"classifying {p['case']} (sentences/s), {p['precision']}", fmt_num(p["textrnn"]["median"]), "",
                f"one sentence at a time: {fmt_num(p['reference']['median'])}", speed])  # fmt: skip
    return out
