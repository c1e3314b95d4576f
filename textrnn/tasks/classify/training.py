"""Training a classifier: the defaults and `train`.

What the defaults rest on (SST-2 train -> dev, one thread, seed 1, epochs counted rather
than seconds because other work shared the machine; dev accuracy after epoch 4 / 5; dev
also picks the checkpoint, so these are dev figures):

    1x BiLSTM 2x256, embed 300, word dropout 0.2 (the first default)     80.0 / 80.6
    the same with hashed character 3-5-grams in 20,000 buckets           81.0 / -
    BiLSTM 2x128, embed 128, word dropout 0.3, n-grams                   80.5 / 81.1
    four of those trained side by side, probabilities averaged           81.5 / 81.8

A model of this size learns SST-2 in 2-3 epochs (about 15 s each on one thread) and then
only overfits, so a 900 s budget is better spent on members than on width; the four
members cost about what the first 300/256 default did per step. On the IITP Hindi reviews
the first default and the narrower model both reached 72% valid accuracy. An earlier
comparison (128x128, word dropout 0.3, 10 epochs, two seeds) found the n-grams worth about
2 points (80.3 -> 82.1, 79.4 -> 81.7): 5.5% of SST-2 dev tokens are unseen in training.
Freezing a language model's layers under `--init-from` measured worse than not freezing.
`python -m benchmarks classify` measures the defaults at `--time-budget 900`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from textrnn.engine.checkpoint import Checkpoint
from textrnn.engine.config import TrainConfig, config_from_defaults
from textrnn.engine.progress import Progress
from textrnn.engine.trainer import TrainResult as BaseTrainResult
from textrnn.engine.trainer import fit, seed_everything
from textrnn.errors import DataError, UsageError
from textrnn.files import file_info
from textrnn.formats.tables import Layout, Row, read_table
from textrnn.models.classifier import ClassifierConfig, ClassifierModel, build_classifier
from textrnn.tasks.classify.batch import TextEncoder
from textrnn.tasks.classify.labels import Labels, check_known, class_weights
from textrnn.tasks.classify.load import model_from_checkpoint
from textrnn.tasks.classify.options import ClassifyOptions
from textrnn.tasks.classify.pretrained import classifier_shape, load_pretrained, read_language_model
from textrnn.tasks.classify.task import ClassifierTask
from textrnn.tokenizers import Tokenizer, load_tokenizer, train_tokenizer

DEFAULT_MODEL = {
    "embed": 128,
    "cell": "lstm",
    "hidden": 128,
    "layers": 1,
    "pool": "max",
    "dropout": 0.5,
    "ngram_buckets": 20_000,
    "members": 4,
}


DEFAULT_TRAIN = {
    "batch_size": 32,
    "lr": 2e-3,
    "clip": 5.0,
    "epochs": 20,
    "patience": 5,
    "warmup_steps": 100,
}


DEFAULT_TOKENIZER = {"kind": "word"}


@dataclass
class TrainResult(BaseTrainResult):
    labels: Labels
    tokenizer: Tokenizer


def default_train_config(**overrides) -> TrainConfig:
    """The classifier's training defaults (TrainConfig's, with DEFAULT_TRAIN), plus `overrides`."""
    return config_from_defaults(DEFAULT_TRAIN, **overrides)


def build_tokenizer(
    texts: Sequence[str],
    *,
    kind: str = "word",
    vocab_size: int | None = None,
    min_count: int = 1,
    unit: str = "grapheme",
    tokenizer_file: str | Path | None = None,
) -> Tokenizer:
    """A tokenizer from a file, or trained on the training texts."""
    if tokenizer_file is not None:
        return load_tokenizer(tokenizer_file)
    return train_tokenizer(kind, texts, vocab_size=vocab_size, min_count=min_count, unit=unit)


def train(
    train: str | Path,
    dev: str | Path | None = None,
    *,
    out: str | Path,
    fmt: str = "auto",
    text_column: str | None = None,
    label_column: str | None = None,
    tokenizer: dict | None = None,
    model_overrides: dict | None = None,
    options: ClassifyOptions | None = None,
    train_cfg: TrainConfig | None = None,
    init_from: str | Path | None = None,
    device: torch.device = torch.device("cpu"),
    on_progress: Callable[[Progress], None] | None = None,
    on_log: Callable[[str], None] = lambda msg: None,
    resume: Checkpoint | None = None,
) -> TrainResult:
    """Train (or resume) a classifier on a table of texts and labels; return where it was saved.

    `tokenizer` holds `build_tokenizer`'s arguments (default DEFAULT_TOKENIZER); `init_from`
    a language-model checkpoint whose tokenizer, embedding and encoder the classifier starts
    from. Without `dev`, the last `val_fraction` of the training rows is held out.
    """
    cfg = train_cfg or default_train_config()
    options = options or ClassifyOptions()
    rows, dev_rows, layout = read_data(train, dev, fmt=fmt, text_column=text_column, label_column=label_column,
                                       val_fraction=cfg.val_fraction, on_log=on_log)  # fmt: skip
    counts = Counter(r.label for r in rows)
    seed_everything(cfg.seed)
    if resume is not None:
        model, tok, labels = model_from_checkpoint(resume, source="checkpoint")
        check_known(labels, rows, name=str(train))
        init_info = (resume.meta.get("data") or {}).get("init_from")
    else:
        if len(counts) < 2:
            raise DataError(f"{train}: every row has the label {next(iter(counts))!r}; a classifier needs two classes or more")
        model, tok, labels, init_info = new_model(rows, counts, tokenizer=tokenizer, model_overrides=model_overrides,
                                                  init_from=init_from, on_log=on_log)  # fmt: skip
    report_classes(labels, counts, dev_rows, on_log)
    model.to(device)
    encoder = TextEncoder(tok, buckets=model.config.ngram_buckets, max_tokens=options.max_tokens)
    encode = lambda rs: ([encoder.encode(r.text) for r in rs], [labels.index.get(r.label, -1) for r in rs])  # noqa: E731
    train_data, dev_data = encode(rows), encode(dev_rows)
    meta = {
        "tokenizers": {"text": tok.to_dict(), "label": labels.to_dict()},
        "data": {
            "train": file_info(train), "dev": file_info(dev) if dev is not None else None,
            "format": layout.fmt, "text_column": text_column, "label_column": label_column,
            "layout": layout.describe(), "rows": len(rows), "dev_rows": len(dev_rows),
            "tokens": sum(len(e.ids) for e in train_data[0]),
            "classes": {c: counts[c] for c in labels.names},
            "init_from": init_info,
        },
    }  # fmt: skip
    on_log(f"{len(rows)} training rows ({layout.describe()}), {len(dev_rows)} dev rows, "
           f"{len(labels)} classes, {tok.kind} tokenizer with {tok.vocab_size} ids")  # fmt: skip
    weights = class_weights(labels, counts, options.class_weights)
    task = ClassifierTask(model, encoder, train_data, dev_data, cfg, options, weights=weights, meta=meta, device=device)
    run = fit(task, cfg, out=out, device=device, on_progress=on_progress, resume=resume)
    return TrainResult(run.state, run.best, run.last, labels=labels, tokenizer=tok)


def read_data(
    train: str | Path, dev: str | Path | None, *, fmt: str, text_column: str | None, label_column: str | None,
    val_fraction: float, on_log: Callable[[str], None],
) -> tuple[list[Row], list[Row], Layout]:
    """Training and dev rows (without `dev`, the last `val_fraction` of the training rows) and
    the training table's layout."""
    columns = {"fmt": fmt, "text_column": text_column, "label_column": label_column}
    rows, layout = read_table(train, **columns)
    if dev is not None:
        return rows, read_table(dev, **columns)[0], layout
    n_dev = int(len(rows) * val_fraction)
    if n_dev < 1:
        raise DataError(f"{train}: too few rows to hold out a dev set; pass --dev FILE")
    on_log(f"no dev file: holding out the last {n_dev} training rows")
    return rows[:-n_dev], rows[-n_dev:], layout


def new_model(
    rows: Sequence[Row], counts: Counter[str], *, tokenizer: dict | None, model_overrides: dict | None,
    init_from: str | Path | None, on_log: Callable[[str], None],
) -> tuple[ClassifierModel, Tokenizer, Labels, dict | None]:
    """A fresh classifier for the training rows: its tokenizer (trained on them, or the
    language model's), labels, and the language model's fingerprint when it starts from one."""
    labels = Labels.from_counts(counts)
    shape = {**DEFAULT_MODEL, **(model_overrides or {})}
    if init_from is None:
        tok = build_tokenizer([r.text for r in rows], **{**DEFAULT_TOKENIZER, **(tokenizer or {})})
        model = build_classifier(ClassifierConfig(vocab_size=tok.vocab_size, n_classes=len(labels), **shape))
        return model, tok, labels, None
    parts = read_language_model(init_from)
    fixed = classifier_shape(parts.config)
    clash = [k for k in fixed if k in (model_overrides or {}) and model_overrides[k] != fixed[k]]
    if clash:
        raise UsageError(f"--{clash[0]} is set by the language model of --init-from")
    model = build_classifier(ClassifierConfig(vocab_size=parts.tokenizer.vocab_size, n_classes=len(labels), **{**shape, **fixed}))
    load_pretrained(model, parts, source=str(init_from))
    on_log(f"embedding and {parts.config.layers}-layer {parts.config.cell} encoder from {init_from}")
    return model, parts.tokenizer, labels, parts.info


def report_classes(labels: Labels, counts: Counter[str], dev_rows: Sequence[Row], on_log) -> None:
    """Say which dev classes never occur in training (always wrong) and which classes are rare."""
    unseen = sorted({r.label for r in dev_rows} - set(labels.names))
    if unseen:
        on_log(f"warning: dev classes never seen in training (always wrong): {', '.join(unseen[:10])}")
    rare = [c for c in labels.names if counts[c] < 5]
    if rare:
        on_log(f"warning: classes with fewer than 5 training rows: {', '.join(rare[:10])}")
