"""Training a language model on a corpus: the defaults a user who passes only a corpus
gets (chosen by measurement, see the comments), and `train`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from textrnn.data.corpus import EncodedCorpus, encode_corpus, fit_batch_shape
from textrnn.engine import distributed
from textrnn.engine.checkpoint import Checkpoint
from textrnn.engine.config import TrainConfig, config_from_defaults
from textrnn.engine.progress import Progress
from textrnn.engine.trainer import TrainResult, fit, seed_everything
from textrnn.errors import CheckpointError, DataError
from textrnn.files import file_info
from textrnn.models.lm import LanguageModel, LMConfig
from textrnn.tasks.lm import budget
from textrnn.tasks.lm.load import model_from_checkpoint
from textrnn.tasks.lm.task import LMTask
from textrnn.tokenizers import Tokenizer

# Model shapes that suit each tokenizer when the user passes only a corpus. Char models
# are GRUs: on tiny-shakespeare in 600 s on a 2-core CPU (held-out last 10%, nats/char),
# a 2x512 LSTM reached 1.4446 (1.4320 with weight decay 0.2), a 2x640 GRU 1.4334 (1.4170):
# the GRU fits the training text no better but carries over to unseen text better.
DEFAULT_MODEL = {
    "char": {
        "cell": "gru",
        "embed": 128,
        "hidden": 640,
        "layers": 2,
        "dropout": 0.3,
        "tie_weights": False,
    },
    "word": {"embed": 400, "hidden": 400, "layers": 2, "dropout": 0.2, "tie_weights": False},
    "bpe": {"embed": 512, "hidden": 512, "layers": 2, "dropout": 0.3, "tie_weights": True},
    "unigram": {"embed": 512, "hidden": 512, "layers": 2, "dropout": 0.3, "tie_weights": True},
}


# Training settings for each tokenizer, over TrainConfig's defaults. Char models decay
# their weights far harder than the loop's default (0.01): on tiny-shakespeare in 600 s (as
# above), the 2x640 GRU reached 1.4334 nats/char with 0.01, 1.4217 with 0.1, 1.4170 with 0.2,
# 1.4141 with 0.4 and 1.4111 with 0.8 (validation loss on the training text: 1.284, 1.274,
# 1.266, 1.262, 1.264): a strong decay mostly helps on text unlike the training text.
#
# Word models train with plain SGD (lr 20, clipping 0.25, no weight decay: OPTIMIZERS["sgd"])
# on batches of 20 x 35 tokens, the word example's settings, under the loop's warm-up and
# cosine decay to the end of the budget. At 120 s on one thread (held-out nats/char, the
# peers benchmark's split and scorer), a 2x200 untied LSTM with dropout 0.2 reached 1.2126
# with SGD and 1.2713 with AdamW on the Hindi product reviews, and 1.3452 with SGD on
# tiny-shakespeare words, where the AdamW default (2x384 tied, dropout 0.4, 32 x 64) had
# 1.4759: SGD's updates carry over to unseen text better (as Merity et al. found for
# AWD-LSTM), and many small steps suit a small corpus.
DEFAULT_TRAIN = {
    "char": {"seq_len": 128, "weight_decay": 0.8},
    "word": {"seq_len": 35, "batch_size": 20, "optimizer": "sgd"},
    "bpe": {"seq_len": 64},
    "unigram": {"seq_len": 64},
}


PRIOR_TOKENS = 10_000_000  # the output bias starts at the unigram frequencies of this many tokens


# With a time budget and no --epochs, the budget alone ends a run: on a small corpus 20
# epochs ended it long before (the Hindi PUD sentences, 90k characters, are 20 epochs in 240
# steps, a tenth of a 300 s budget on one thread, and every size was still improving).
BUDGET_EPOCHS = 1_000_000


def default_train_config(kind: str = "char", *, budget_alone: bool = False, **overrides) -> TrainConfig:
    """The training settings `textrnn train` starts from for a `kind` tokenizer, plus
    `overrides`; with `budget_alone`, no epoch limit (BUDGET_EPOCHS)."""
    defaults = DEFAULT_TRAIN.get(kind, DEFAULT_TRAIN["char"])
    return config_from_defaults({**defaults, **({"epochs": BUDGET_EPOCHS} if budget_alone else {})}, **overrides)


@dataclass
class Plan:
    """What a training run will do, decided before its first step (`textrnn train --dry-run`
    prints it): the encoded data, the training settings, the model options and, when the
    budget rule sized the model, its `Choice`."""

    encoded: EncodedCorpus
    fingerprint: dict
    dev: EncodedCorpus | None
    dev_info: dict | None
    train_cfg: TrainConfig
    shape: dict  # LMConfig options besides vocab_size (empty when resuming)
    choice: budget.Choice | None = None

    def describe(self) -> dict:
        """The plan as plain data (what `--dry-run` prints)."""
        c = self.train_cfg
        return {
            "model": self.shape, "batch_size": c.batch_size, "seq_len": c.seq_len, "optimizer": c.optimizer,
            "lr": c.lr,
            "time_budget": c.time_budget or None, "corpus_tokens": self.encoded.tokens,
            "sizing": self.choice.to_dict() if self.choice else None,
            "why": self.choice.why() if self.choice else None,
        }  # fmt: skip


def plan(
    corpus: str | Path,
    dev: str | Path | None = None,
    *,
    tokenizer: Tokenizer,
    model_overrides: dict | None = None,
    train_cfg: TrainConfig | None = None,
    device: torch.device = torch.device("cpu"),
    on_log: Callable[[str], None] = lambda msg: None,
    resume: Checkpoint | None = None,
    fit_small_corpus: bool = True,
) -> Plan:
    """Encode the data and settle the batch shape and the model options: the tokenizer's
    defaults, sized for the time budget by `budget.choose` when the run has one and no
    shape option was given, then the user's `model_overrides`."""
    train_cfg = train_cfg or default_train_config(tokenizer.kind)
    fingerprint = file_info(corpus)
    if resume is not None:
        data = resume.meta.get("data")
        train = data.get("train") if isinstance(data, dict) else None  # metadata a user edited
        old = train.get("sha256") if isinstance(train, dict) else None
        if old and old != fingerprint["sha256"]:
            on_log(f"warning: {corpus} differs from the corpus this checkpoint was trained on")
    encoded = encode_corpus(corpus, tokenizer, corpus_sha256=fingerprint["sha256"])
    _check_not_constant(encoded, tokenizer)
    dev_corpus, dev_info = _encode_dev(dev, tokenizer)
    n_train = int(encoded.tokens * (1 - (0 if dev is not None else train_cfg.val_fraction)))
    if fit_small_corpus and resume is None:
        B, T = fit_batch_shape(n_train, train_cfg.batch_size, train_cfg.seq_len)
        world = distributed.context().world
        B = max(world, B - B % world)  # the global batch is split evenly among the processes
        if (B, T) != (train_cfg.batch_size, train_cfg.seq_len):
            on_log(f"small corpus ({encoded.tokens} tokens): using --batch-size {B} --seq-len {T}")
            train_cfg = replace(train_cfg, batch_size=B, seq_len=T)
    overrides = model_overrides or {}
    shape = {} if resume is not None else {**DEFAULT_MODEL.get(tokenizer.kind, DEFAULT_MODEL["char"]), **overrides}
    choice = None
    if resume is None and budget.applies(tokenizer.kind, train_cfg, overrides):
        cap = train_cfg.epochs * max(n_train // (train_cfg.batch_size * train_cfg.seq_len), 1)
        choice = _choose(encoded, tokenizer, shape, train_cfg, device, min(cap, train_cfg.max_steps or cap))
        shape.update(budget.shape_for(tokenizer.kind, choice.hidden))
        train_cfg = replace(train_cfg, time_budget=round(choice.budget_s, 1))  # the probe's time is spent
    return Plan(encoded, fingerprint, dev_corpus, dev_info, train_cfg, shape, choice)


def _choose(encoded: EncodedCorpus, tokenizer: Tokenizer, shape: dict, cfg: TrainConfig,
            device: torch.device, cap: int) -> budget.Choice:  # fmt: skip
    """The budget rule's size; with several processes, rank 0 probes (its share of the
    batch) and every rank takes its choice."""
    ctx = distributed.context()
    choice = None
    if ctx.main:
        share = replace(cfg, batch_size=max(cfg.batch_size // ctx.world, 1))
        probe = budget.lm_probe(encoded.ids, tokenizer.vocab_size, shape, share, device)
        choice = budget.choose(tokenizer.kind, cfg, probe, cap)
    if ctx.active:
        choice = budget.Choice.from_dict(distributed.broadcast_object(choice.to_dict() if choice else None))
    return choice


def train(
    corpus: str | Path,
    dev: str | Path | None = None,
    *,
    out: str | Path,
    tokenizer: Tokenizer,
    model_overrides: dict | None = None,
    train_cfg: TrainConfig | None = None,
    device: torch.device = torch.device("cpu"),
    on_progress: Callable[[Progress], None] | None = None,
    on_log: Callable[[str], None] = lambda msg: None,
    resume: Checkpoint | None = None,
    fit_small_corpus: bool = True,
) -> TrainResult:
    """Train (or resume training) a language model on `corpus` read by `tokenizer` (built by
    `textrnn.tokenizers.train_tokenizer`, or the checkpoint's when resuming); return where it
    was saved.

    Validation scores `dev` when given, else `val_fraction` of the corpus held out in blocks
    spread over it. When `fit_small_corpus` is set, a batch shape too large for the corpus
    is shrunk (and reported through `on_log`) instead of failing. With a time budget and no
    shape in `model_overrides`, the model is sized for the budget (see `plan`).
    """
    p = plan(corpus, dev, tokenizer=tokenizer, model_overrides=model_overrides, train_cfg=train_cfg,
             device=device, on_log=on_log, resume=resume, fit_small_corpus=fit_small_corpus)  # fmt: skip
    seed_everything(p.train_cfg.seed)
    if resume is not None:
        model = model_from_checkpoint(resume).to(device)
        if model.config.vocab_size != tokenizer.vocab_size:
            raise CheckpointError(
                f"checkpoint tokenizer has {tokenizer.vocab_size} ids but its model expects {model.config.vocab_size}"
            )
    else:
        model = LanguageModel(LMConfig(vocab_size=tokenizer.vocab_size, **p.shape))
        ids = p.encoded.ids[:PRIOR_TOKENS]
        model.start_from_unigram(torch.from_numpy(np.bincount(ids, minlength=tokenizer.vocab_size)))
        model = model.to(device)
    enc = p.encoded
    task = LMTask(
        model,
        tokenizer,
        enc,
        p.train_cfg,
        corpus_info={**p.fingerprint, "tokens": enc.tokens, "chars": enc.chars},
        device=device,
        dev=p.dev,
        dev_info=p.dev_info,
        sizing=p.choice,
    )
    out = Path(out).absolute()  # resuming from another directory must write to the same place
    out.parent.mkdir(parents=True, exist_ok=True)
    return fit(task, p.train_cfg, out=out, device=device, on_progress=on_progress, resume=resume)


def _encode_dev(dev: str | Path | None, tokenizer: Tokenizer) -> tuple[EncodedCorpus | None, dict | None]:
    """The dev text's token ids and its file_info (with counts), or (None, None)."""
    if dev is None:
        return None, None
    info = file_info(dev)
    encoded = encode_corpus(dev, tokenizer, corpus_sha256=info["sha256"])
    if encoded.tokens < 2:
        raise DataError(f"{dev}: too short to validate on ({encoded.tokens} tokens)")
    return encoded, {**info, "tokens": encoded.tokens, "chars": encoded.chars}


def _check_not_constant(corpus: EncodedCorpus, tokenizer: Tokenizer) -> None:
    """DataError for a corpus that is one token repeated: there is nothing to predict."""
    ids, step = corpus.ids, 1 << 20
    first = ids[0]
    if any(np.any(ids[i : i + step] != first) for i in range(0, len(ids), step)):
        return
    raise DataError(
        f"{corpus.path}: the text is one token ({tokenizer.id_to_piece(int(first))!r}) repeated; "
        "a language model needs a text with at least two distinct tokens"
    )
