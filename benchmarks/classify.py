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
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import Options, Table, alternate, compare, fmt_ratio, fmt_stats, fmt_target
from textrnn.data.batching import bucket_batches
from textrnn.engine.config import TrainConfig
from textrnn.engine.trainer import Progress, Trainer
from textrnn.formats.tables import read_table
from textrnn.models.classifier import Classifier, ClassifierConfig
from textrnn.paths import data_file
from textrnn.tasks.classify import DEFAULT_MODEL, ClassifyOptions, Labels, load_classifier, predict
from textrnn.tasks.classify.batch import encode_text, make_batch
from textrnn.tasks.classify.task import ClassifierTask
from textrnn.tokenizers import train_tokenizer

TARGETS = {"SST-2": 0.82, "IITP Hindi product reviews": 0.70}
TARGET_SPEED = 5000  # sentences/s predicting SST-2 dev with the default model
TARGET_LOOP = 0.95  # the Trainer's tokens/s over the plain loop's
REGULARISATION = (0.1, 0.3, 1.0, 3.0, 10.0)  # the reference's C = 1 / (L2 strength) grid


def datasets(opts: Options) -> list[dict]:
    full = not (opts.quick or opts.tiny)
    budget = 900 if full else 3 if opts.tiny else 60
    sets = [
        {"name": "SST-2", "train": "sst2/train.tsv", "dev": "sst2/dev.tsv", "split": "dev"},
        {"name": "IITP Hindi product reviews", "train": "iitp_hindi_product_reviews/hi-train.csv",
         "dev": "iitp_hindi_product_reviews/hi-valid.csv", "split": "valid"},
    ]  # fmt: skip
    for d in sets:
        d["budget"] = budget
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
    quality = [_quality(d, opts) for d in datasets(opts)]
    sst_checkpoint = opts.workdir / "sst-2.ckpt"
    return {
        "settings": {"reps": opts.reps, "model": DEFAULT_MODEL, "reference_c_grid": list(REGULARISATION)},
        "results": {
            "quality": quality,
            "predict": _predict_speed(sst_checkpoint, opts),
            "train_loop": _loop_speed(opts),
        },
        "notes": [
            "quality: dev figures; the dev set also chose the checkpoint (early stopping), the defaults "
            "and the reference's regularisation. The time budget includes validation (wall clock).",
            "reference: logistic regression on binary unigram + bigram features (lower-cased, "
            "whitespace-split), L2, full-batch L-BFGS, trained in the same run on the same split.",
        ],
    }


# ---- quality --------------------------------------------------------------------------------------


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
    reference = bag_of_words_reference(train, dev, grid=(1.0,) if opts.tiny else REGULARISATION)
    acc = evaluated["accuracy"]
    return {
        "dataset": d["name"],
        "eval_split": d["split"],
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
        "commands": ["textrnn " + " ".join(_short(c)) for c in (train_cmd, eval_cmd)],
    }


def _short(cmd: list[str]) -> list[str]:
    """A command as the README shows it: data paths relative to $TEXTRNN_DATA, no work folder."""
    root = str(data_file(".")).rstrip("/.") + "/"
    return [Path(a).name if a.endswith(".ckpt") else a.replace(root, "$TEXTRNN_DATA/") for a in cmd]


def _textrnn(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "textrnn", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"textrnn {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _ngrams(text: str) -> list[str]:
    words = text.lower().split()
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


def _features(texts: list[str], index: dict[str, int]) -> torch.Tensor:
    """Binary n-gram indicators as a sparse (N, F) CSR matrix."""
    rows, cols = [], []
    for r, text in enumerate(texts):
        found = {index[g] for g in _ngrams(text) if g in index}
        rows += [r] * len(found)
        cols += sorted(found)
    values = torch.ones(len(rows))
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product below is all we use
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor([rows, cols], values, (len(texts), len(index)), check_invariants=True)
        return coo.coalesce().to_sparse_csr()


def bag_of_words_reference(train: Path, dev: Path, *, grid: tuple[float, ...] = REGULARISATION) -> dict:
    """Unigram + bigram logistic regression on the same split; C chosen on dev (as the RNN's checkpoint is)."""
    train_rows, _ = read_table(train)
    dev_rows, _ = read_table(dev)
    labels = Labels.from_counts({r.label: 1 for r in train_rows})
    index: dict[str, int] = {}
    for r in train_rows:
        for g in _ngrams(r.text):
            index.setdefault(g, len(index))
    X, Xd = _features([r.text for r in train_rows], index), _features([r.text for r in dev_rows], index)
    y = torch.tensor(labels.ids(r.label for r in train_rows))
    yd = torch.tensor([labels.index.get(r.label, -1) for r in dev_rows])
    start = time.perf_counter()
    tried = {}
    for C in grid:
        W = torch.zeros(len(index), len(labels), requires_grad=True)
        b = torch.zeros(len(labels), requires_grad=True)
        opt = torch.optim.LBFGS([W, b], lr=1, max_iter=300, history_size=20, line_search_fn="strong_wolfe")

        def closure(W=W, b=b, opt=opt, C=C):
            opt.zero_grad()
            loss = F.cross_entropy(X @ W + b, y, reduction="sum") + 0.5 / C * (W * W).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            pred = (Xd @ W + b).argmax(1)
        tried[C] = {"accuracy": float((pred == yd).float().mean()), "macro_f1": _macro_f1(pred, yd, len(labels))}
    best = max(tried, key=lambda c: tried[c]["accuracy"])
    return {"accuracy": tried[best]["accuracy"], "macro_f1": tried[best]["macro_f1"], "C": best,
            "features": len(index), "by_C": {str(c): v["accuracy"] for c, v in tried.items()},
            "train_s": round(time.perf_counter() - start, 1)}  # fmt: skip


def _macro_f1(pred: torch.Tensor, gold: torch.Tensor, k: int) -> float:
    f1 = []
    for c in range(k):
        tp = int(((pred == c) & (gold == c)).sum())
        p, g = int((pred == c).sum()), int((gold == c).sum())
        if p or g:
            f1.append(2 * tp / (p + g))
    return sum(f1) / max(1, len(f1))


# ---- prediction speed --------------------------------------------------------------------------------


def _predict_speed(checkpoint: Path, opts: Options) -> dict:
    dev_rows, _ = read_table(data_file("sst2/dev.tsv"))
    texts = [r.text for r in dev_rows][: 200 if opts.tiny else None]
    clf = load_classifier(checkpoint, precision="auto")
    one_at_a_time = texts[: 100 if opts.tiny or opts.quick else 400]

    def batched() -> float:
        start = time.perf_counter()
        for _ in predict(clf, texts):
            pass
        return len(texts) / (time.perf_counter() - start)

    def single() -> float:
        start = time.perf_counter()
        for text in one_at_a_time:
            list(predict(clf, [text]))
        return len(one_at_a_time) / (time.perf_counter() - start)

    runs = alternate({"textrnn": batched, "reference": single}, reps=opts.reps)
    row = compare("SST-2 dev, default model", "sentences/s", runs["textrnn"], runs["reference"],
                  sentences=len(texts), precision=clf.precision)  # fmt: skip
    row["meets_speed_target"] = None if opts.tiny or opts.quick else row["textrnn"]["median"] >= TARGET_SPEED
    return row


# ---- the training loop ----------------------------------------------------------------------------------


class PlainClassifier(nn.Module):
    """The textbook BiLSTM classifier: padding is read by the backward direction (no masking
    but in the pooling), the fastest plain form."""

    def __init__(self, vocab: int, n_classes: int, *, embed: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, n_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.drop(self.embedding(ids)))  # (B, T, 2H)
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        pooled = h.masked_fill(~mask[..., None], float("-inf")).amax(1)  # (B, 2H)
        return self.out(self.drop(pooled))


def _loop_speed(opts: Options) -> list[dict]:
    rows, _ = read_table(data_file("sst2/train.tsv"))
    rows = rows[: 300 if opts.tiny else None]
    tok = train_tokenizer("word", [r.text for r in rows])
    labels = Labels.from_counts({r.label: 1 for r in rows})
    seqs = [encode_text(tok, r.text) for r in rows]
    ys = labels.ids(r.label for r in rows)
    shape = {**DEFAULT_MODEL, **({"embed": 16, "hidden": 16} if opts.tiny else {})}
    every, windows = (1, 2) if opts.tiny else (2, 2) if opts.quick else (10, 3)
    results = []
    for precision in ("bf16", "fp32"):
        cfg = TrainConfig(batch_size=32, max_steps=every * (1 + windows), log_every=every, eval_every=10**9,
                          patience=0, epochs=10**6, precision=precision, clip=5.0, val_fraction=0.0)  # fmt: skip

        def ours(cfg=cfg) -> float:
            torch.manual_seed(0)
            model = Classifier(ClassifierConfig(vocab_size=tok.vocab_size, n_classes=len(labels), **shape))
            task = ClassifierTask(model, (seqs, ys), ([], []), cfg, ClassifyOptions(), weights=[1.0] * len(labels),
                                  meta={}, device=torch.device("cpu"))  # fmt: skip
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
            model = PlainClassifier(tok.vocab_size, len(labels), embed=shape["embed"], hidden=shape["hidden"],
                                    dropout=shape["dropout"]).train()  # fmt: skip
            opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.99), weight_decay=0.01)
            order = bucket_batches([len(s) for s in seqs], 32, seed=cfg.seed, epoch=0)
            tokens, start = 0, time.perf_counter()
            for step in range(every * (1 + windows)):
                if step == every:
                    tokens, start = 0, time.perf_counter()
                idx = order[step % len(order)]
                batch = make_batch([seqs[i] for i in idx], [ys[i] for i in idx])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                    logits = model(batch.ids, batch.lengths)
                    loss = F.cross_entropy(logits.float(), batch.labels)
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
        "classify: dev accuracy after `textrnn classify train --time-budget`, prediction and training speed",
        ["case", "textrnn", "reference", "ratio / difference", "target"],
    )
    for q in r["quality"]:
        target = "" if q["target"] is None else f">= {q['target']:.0%}: {'yes' if q['meets_target'] else 'NO'}"
        ref = q["reference"]
        t.rows.append(
            [f"{q['dataset']}, {q['eval_split']} accuracy (macro-F1), {q['time_budget_s']} s",
             f"{q['accuracy']:.2%} ({q['macro_f1']:.2%})", f"BoW LR {ref['accuracy']:.2%} ({ref['macro_f1']:.2%})",
             f"{100 * q['difference']:+.2f} points", target]
        )  # fmt: skip
        t.notes += [f"`{c}`" for c in q["commands"]]
    p = r["predict"]
    speed_target = "" if p.get("meets_speed_target") is None else (
        f">= {TARGET_SPEED:,}/s: {'yes' if p['meets_speed_target'] else 'NO'}")  # fmt: skip
    t.rows.append([f"{p['case']}, {p['precision']} (sentences/s)", fmt_stats(p["textrnn"]), fmt_stats(p["reference"]),
                   fmt_ratio(p["ratio"]), speed_target])  # fmt: skip
    for row in r["train_loop"]:
        t.rows.append([row["case"] + " (tokens/s)", fmt_stats(row["textrnn"]), fmt_stats(row["reference"]),
                       fmt_ratio(row["ratio"]), fmt_target(row)])  # fmt: skip
    t.notes.append("quality: dev figures (the dev set also chose the checkpoint, the defaults and the reference's C); "
                   "reference: unigram + bigram logistic regression on the same split, in the same run.")  # fmt: skip
    t.notes.append("prediction: reference = the same model classifying one sentence at a time; training loop: "
                   "reference = a plain PyTorch BiLSTM loop at the same shapes, over the same batches.")  # fmt: skip
    return t

