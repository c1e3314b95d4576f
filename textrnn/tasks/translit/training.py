"""Training a transliterator on a TSV lexicon."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from textrnn.engine.checkpoint import Checkpoint
from textrnn.engine.config import TrainConfig, config_from_defaults
from textrnn.engine.progress import Progress
from textrnn.engine.trainer import TrainResult as BaseTrainResult
from textrnn.engine.trainer import fit, seed_everything
from textrnn.errors import DataError
from textrnn.files import file_info
from textrnn.models.seq2seq import Seq2SeqConfig, build_model
from textrnn.tasks.translit.config import DEFAULT_MODEL, DEFAULT_TRAIN, TranslitOptions
from textrnn.tasks.translit.lexicon import detect_layout, merge_duplicates, read_lexicon
from textrnn.tasks.translit.load import model_from_checkpoint
from textrnn.tasks.translit.task import TranslitTask
from textrnn.tasks.translit.vocab import Vocabs, build_vocabs


@dataclass
class TrainResult(BaseTrainResult):
    vocabs: Vocabs


def default_train_config(**overrides) -> TrainConfig:
    """The transliterator's training defaults (TrainConfig's, with DEFAULT_TRAIN), plus `overrides`."""
    return config_from_defaults(DEFAULT_TRAIN, **overrides)


def train(
    train: str | Path,
    dev: str | Path | None = None,
    *,
    out: str | Path,
    direction: str = "to-native",
    columns: tuple[int, int] | None = None,
    model_overrides: dict | None = None,
    options: TranslitOptions | None = None,
    train_cfg: TrainConfig | None = None,
    device: torch.device = torch.device("cpu"),
    on_progress: Callable[[Progress], None] | None = None,
    on_log: Callable[[str], None] = lambda msg: None,
    resume: Checkpoint | None = None,
) -> TrainResult:
    """Train (or resume) a transliterator on a TSV lexicon; return where it was saved.

    `columns` = (source, target), 1-based, overrides `direction`. Without `dev`, the last
    `val_fraction` of the distinct training pairs is held out.
    """
    cfg = train_cfg or default_train_config()
    options = options or TranslitOptions()
    src_col, tgt_col = columns if columns is not None else (None, None)
    layout = detect_layout(train, direction=direction, source_column=src_col, target_column=tgt_col)
    lexicon = read_lexicon(train, layout)
    pairs, counts = merge_duplicates(lexicon)
    if dev is not None:
        dev_layout = detect_layout(
            dev, direction=direction, source_column=src_col, target_column=tgt_col
        )
        dev_pairs = read_lexicon(dev, dev_layout).pairs
    else:
        n_dev = int(len(pairs) * cfg.val_fraction)
        if n_dev < 1:
            raise DataError(f"{train}: too few pairs to hold out a dev set; pass --dev FILE")
        rng = np.random.default_rng(cfg.seed)  # the lexicon is sorted: hold out a random sample
        held = set(rng.choice(len(pairs), n_dev, replace=False).tolist())
        dev_pairs = [p for i, p in enumerate(pairs) if i in held]
        counts = [c for i, c in enumerate(counts) if i not in held]
        pairs = [p for i, p in enumerate(pairs) if i not in held]
        on_log(f"no dev file: holding out {n_dev} random training pairs")
    seed_everything(cfg.seed)
    if resume is not None:
        model, vocabs = model_from_checkpoint(resume, source="checkpoint")
    else:
        vocabs = build_vocabs(pairs, options)
        model = build_model(Seq2SeqConfig(n_source=vocabs.source.vocab_size, n_target=vocabs.target.vocab_size,
                                      **{**DEFAULT_MODEL, **(model_overrides or {})}))  # fmt: skip
    if vocabs.lowercase:
        dev_pairs = [(s.lower(), t) for s, t in dev_pairs]
    model.to(device)
    meta = {
        "data": {
            "train": file_info(train), "dev": file_info(dev) if dev is not None else None,
            "direction": direction, "columns": list(columns) if columns is not None else None,
            "layout": layout.describe(), "pairs": len(pairs), "lines": len(lexicon.pairs),
        },
    }  # fmt: skip
    on_log(f"{len(pairs)} distinct training pairs ({layout.describe()}), {len(dev_pairs)} dev pairs; "
           f"{vocabs.source.vocab_size - 2} source and {vocabs.target.vocab_size - 4} target units")  # fmt: skip
    task = TranslitTask(
        model, vocabs, pairs, counts, dev_pairs, cfg, options, meta=meta, device=device
    )
    run = fit(task, cfg, out=out, device=device, on_progress=on_progress, resume=resume)
    return TrainResult(run.state, run.best, run.last, vocabs=vocabs)
