"""The one training loop, driven by the language-model task with tiny real models:
learning, checkpoints, metric logs, exact resume, stopping rules, non-finite losses."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

from textrnn.config import config_from_dict
from textrnn.data.corpus import encode_corpus
from textrnn.engine.checkpoint import load_checkpoint
from textrnn.engine.config import TrainConfig
from textrnn.engine.outputs import last_path, metrics_path
from textrnn.engine.trainer import Trainer, make_optimizer
from textrnn.errors import CheckpointError, TextrnnError, UsageError
from textrnn.files import fingerprint_file
from textrnn.formats.plain import iter_text_chunks
from textrnn.models.lm import LanguageModel, LMConfig
from textrnn.tasks.lm import LMTask, train
from textrnn.tokenizers import train_tokenizer

CPU = torch.device("cpu")
TINY = {"hidden": 32, "layers": 1, "embed": 16, "dropout": 0.0}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTRNN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def shakespeare(shared_data, tmp_path):
    """Return a function that writes the first `chars` characters of tiny-shakespeare to tmp_path."""
    text = shared_data("tinyshakespeare/input.txt").read_text(encoding="utf-8")

    def cut(chars: int) -> Path:
        path = tmp_path / f"shakespeare-{chars}.txt"
        path.write_text(text[:chars], encoding="utf-8")
        return path

    return cut


def char_tokenizer(path: Path):
    return train_tokenizer("char", iter_text_chunks(path))


def make_task(path: Path, cfg: TrainConfig, model: dict = TINY) -> LMTask:
    """An LMTask built the way train builds it, for tests that wrap the task."""
    tok = char_tokenizer(path)
    encoded = encode_corpus(path, tok, corpus_sha256=fingerprint_file(path)["sha256"])
    torch.manual_seed(cfg.seed)
    lm = LanguageModel(LMConfig(vocab_size=tok.vocab_size, **model))
    return LMTask(lm, tok, encoded, cfg, corpus_info={}, device=CPU)


class Wrapped:
    """A task that behaves like `inner` except for what a subclass overrides."""

    def __init__(self, inner: LMTask) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def model_tensors(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_checkpoint(path).tensors.items() if k.startswith("model.")}


def all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all() for t in tensors.values())


# ---- learning, files, stopping --------------------------------------------------------------


def test_training_lowers_validation_loss_and_writes_checkpoints_and_metrics(shakespeare, tmp_path):
    corpus = shakespeare(20_000)
    tok = char_tokenizer(corpus)
    cfg = TrainConfig(
        batch_size=8,
        seq_len=32,
        lr=1e-2,
        max_steps=60,
        eval_every=5,
        log_every=10,
        precision="fp32",
    )
    out = tmp_path / "ck" / "model.ckpt"
    out.parent.mkdir()
    events = []
    result = train(
        corpus, tokenizer=tok, out=out, model_overrides=TINY, train_cfg=cfg, on_progress=events.append
    )
    st = result.state

    assert st.stopped == "max_steps" and st.step == 60
    vals = [h["val_loss"] for h in st.history]
    assert [h["step"] for h in st.history] == list(range(5, 61, 5))
    assert vals[-1] < vals[0] - 0.3
    assert st.best_val_loss < math.log(tok.vocab_size) - 0.5  # well below a uniform guess
    assert st.best_val_loss == min(vals)

    assert result.best == out and out.exists()
    assert result.last == last_path(out) and result.last.exists()
    best, last = load_checkpoint(out, task="lm"), load_checkpoint(result.last, task="lm")
    assert best.meta["training"]["has_training_state"] is False
    assert not any(k.startswith(("optim.", "rng.")) for k in best.tensors)
    assert last.meta["training"]["has_training_state"] is True
    assert last.meta["training"]["step"] == 60
    assert any(k.startswith("optim.") for k in last.tensors) and "rng.torch" in last.tensors
    assert best.meta["metrics"]["best_step"] == st.best_step

    records = [json.loads(line) for line in metrics_path(out).read_text().splitlines()]
    evals = [r for r in records if r["event"] == "eval"]
    trains = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in evals] == list(range(5, 61, 5))
    assert all(math.isfinite(r["val_loss"]) and "val_bpc" in r for r in evals)
    assert [r["step"] for r in trains] == [10, 20, 30, 40, 50, 60]
    assert all(math.isfinite(r["train_loss"]) for r in trains)

    assert events[-1].event == "done" and events[-1].message == "max_steps"
    assert {e.event for e in events} >= {"step", "eval", "done"}


def _interrupt_at(step: int):
    """A progress callback that Ctrl-C's this very process once `step` is reached."""

    def on_progress(p):
        if p.event == "step" and p.step == step:
            os.kill(os.getpid(), signal.SIGINT)

    return on_progress


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_after_interrupt_is_bitwise_exact(shakespeare, tmp_path, precision):
    """2N steps straight == N steps, Ctrl-C, resume from the last checkpoint, N more steps.

    The corpus is small enough that the run crosses epochs (new stream offsets, reset
    state), and dropout makes the result depend on the restored random state.
    """
    corpus = shakespeare(2_000)
    tok = char_tokenizer(corpus)
    model = {"hidden": 32, "layers": 2, "embed": 16, "dropout": 0.2}
    cfg = TrainConfig(
        batch_size=4,
        seq_len=32,
        max_steps=30,
        eval_every=7,
        patience=0,
        log_every=1,
        precision=precision,
        seed=7,
    )
    straight = train(corpus, tokenizer=tok, out=tmp_path / "a.ckpt", model_overrides=model, train_cfg=cfg)
    assert straight.state.epoch >= 2  # the run did cross epoch boundaries

    first = train(
        corpus,
        tokenizer=tok,
        out=tmp_path / "b.ckpt",
        model_overrides=model,
        train_cfg=cfg,
        on_progress=_interrupt_at(15),
    )
    assert first.state.stopped == "interrupted" and first.state.step == 15
    ckpt = load_checkpoint(first.last, task="lm")
    assert ckpt.meta["training"]["step"] == 15
    resumed = train(
        corpus,
        tokenizer=tok,
        out=tmp_path / "b.ckpt",
        train_cfg=config_from_dict(TrainConfig, ckpt.meta["train_config"]),
        resume=ckpt,
    )
    assert resumed.state.step == 30 and resumed.state.stopped == "max_steps"

    a = load_checkpoint(straight.last).tensors
    b = load_checkpoint(resumed.last).tensors
    compared = [k for k in a if k.startswith(("model.", "optim.", "state."))]
    assert sorted(compared) == sorted(k for k in b if k.startswith(("model.", "optim.", "state.")))
    for name in compared:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume ({precision})"
    assert [h["val_loss"] for h in resumed.state.history] == [
        h["val_loss"] for h in straight.state.history
    ]
    # The metric log of the interrupted run continues in the same file, from a start record.
    records = [
        json.loads(line) for line in metrics_path(tmp_path / "b.ckpt").read_text().splitlines()
    ]
    assert [r["step"] for r in records if r["event"] == "start"] == [0, 15]
    steps = [r["step"] for r in records if r["event"] != "start"]
    assert steps[0] == 1 and steps[-1] == 30 and steps.count(15) == 1


def test_resume_from_best_checkpoint_is_refused(shakespeare, tmp_path):
    corpus = shakespeare(3_000)
    tok = char_tokenizer(corpus)
    cfg = TrainConfig(batch_size=4, seq_len=32, max_steps=4, precision="fp32")
    result = train(corpus, tokenizer=tok, out=tmp_path / "m.ckpt", model_overrides=TINY, train_cfg=cfg)
    with pytest.raises(CheckpointError, match="no training state") as err:
        train(
            corpus, tokenizer=tok, out=tmp_path / "m.ckpt", train_cfg=cfg, resume=load_checkpoint(result.best)
        )
    assert str(result.last) in str(err.value)


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_the_floor(shakespeare, tmp_path):
    cfg = TrainConfig(batch_size=4, seq_len=16, max_steps=40, warmup_steps=4, lr=1e-2, min_lr_ratio=0.1,
                      log_every=1, val_fraction=0.0, precision="fp32")  # fmt: skip
    lrs = []
    Trainer(make_task(shakespeare(3_000), cfg), cfg, out=tmp_path / "m.ckpt", device=CPU,
            on_progress=lambda p: lrs.append(p.lr) if p.event == "step" else None).fit()  # fmt: skip
    assert len(lrs) == 40
    assert lrs[:4] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2])  # (step + 1) / 4 of the peak
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False)) and lrs[4] > lrs[-1]
    assert lrs[-1] == pytest.approx(1e-3, rel=0.02)  # the floor: min_lr_ratio x lr
    assert lrs[22] == pytest.approx(1e-3 + 9e-3 * 0.5 * (1 + math.cos(math.pi * 22 / 40)), rel=0.05)


def test_weight_decay_shrinks_matrices_only(shakespeare):
    """AdamW's decoupled decay: with zero gradients one step scales each matrix by (1 - lr x wd)
    and leaves biases and embeddings alone."""
    cfg = TrainConfig(lr=0.1, weight_decay=0.5)
    model = LanguageModel(LMConfig(vocab_size=20, **TINY))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = make_optimizer(model, cfg)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        decayed = p.dim() >= 2 and "embedding" not in name
        assert torch.allclose(p, before[name] * (0.95 if decayed else 1.0)), name


def test_sgd_is_plain_sgd_with_l2_on_matrices():
    """--optimizer sgd: one step moves each weight by lr x (gradient + weight_decay x weight
    on matrices), with no momentum or moment estimates (a second zero-gradient step on
    undecayed weights moves nothing)."""
    cfg = TrainConfig(optimizer="sgd", lr=0.5, weight_decay=0.2)
    model = LanguageModel(LMConfig(vocab_size=20, **TINY))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = make_optimizer(model, cfg)
    assert isinstance(optimizer, torch.optim.SGD)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        decay = 0.2 if p.dim() >= 2 and "embedding" not in name else 0.0
        assert torch.allclose(p, before[name] - 0.5 * (1.0 + decay * before[name])), name
    after = {k: v.detach().clone() for k, v in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.equal(model.embedding.weight, after["embedding.weight"])


def test_another_optimizer_brings_its_own_settings():
    """Naming the other optimizer swaps in its lr, weight decay and clipping unless they are
    given too; a word LM's defaults are SGD's, and --optimizer adamw gives it AdamW's."""
    from textrnn.engine.config import OPTIMIZERS, config_with_overrides
    from textrnn.tasks.lm import default_train_config

    sgd = config_with_overrides(TrainConfig(), optimizer="sgd")
    assert (sgd.optimizer, sgd.lr, sgd.weight_decay, sgd.clip) == ("sgd", 20.0, 0.0, 0.25)
    assert config_with_overrides(TrainConfig(), optimizer="sgd", lr=5.0).lr == 5.0
    word = default_train_config("word")
    assert word.optimizer == "sgd" and word.lr == OPTIMIZERS["sgd"]["lr"]
    adamw = default_train_config("word", optimizer="adamw")
    assert (adamw.lr, adamw.weight_decay, adamw.clip) == (3e-3, 0.01, 1.0)
    assert default_train_config("char").optimizer == "adamw"
    with pytest.raises(UsageError, match="--optimizer must be one of adamw, sgd"):
        TrainConfig(optimizer="adam")


def test_gradient_clipping_bounds_the_update(shakespeare, tmp_path):
    """A vanishing --clip shrinks the gradient below AdamW's epsilon: the first step barely
    moves the weights, where the unclipped step moves each by about the learning rate."""
    moved = {}
    for clip in (0.0, 1e-12):
        cfg = TrainConfig(batch_size=4, seq_len=16, max_steps=1, clip=clip, weight_decay=0.0, warmup_steps=1,
                          val_fraction=0.0, precision="fp32")  # fmt: skip
        task = make_task(shakespeare(3_000), cfg)
        before = {k: v.detach().clone() for k, v in task.model.named_parameters()}
        Trainer(task, cfg, out=tmp_path / f"clip{clip}.ckpt", device=CPU).fit()
        moved[clip] = max((p.detach() - before[k]).abs().max().item() for k, p in task.model.named_parameters())
    assert moved[0.0] > 0.5 * cfg.lr and moved[1e-12] < 0.01 * moved[0.0]


def test_max_steps_stops_exactly(shakespeare, tmp_path):
    cfg = TrainConfig(batch_size=4, seq_len=16, max_steps=7, epochs=50, precision="fp32")
    task = make_task(shakespeare(3_000), cfg)
    st = Trainer(task, cfg, out=tmp_path / "m.ckpt", device=CPU).fit()
    assert (st.step, st.stopped) == (7, "max_steps")
    assert st.history[-1]["step"] == 7  # a final validation of the last weights


def test_without_validation_text_the_final_weights_are_the_best_checkpoint(shakespeare, tmp_path):
    cfg = TrainConfig(batch_size=4, seq_len=16, max_steps=5, val_fraction=0.0, precision="fp32")
    task = make_task(shakespeare(3_000), cfg)
    st = Trainer(task, cfg, out=tmp_path / "m.ckpt", device=CPU).fit()
    assert st.step == 5 and not math.isfinite(st.best_val_loss)
    best, last = model_tensors(tmp_path / "m.ckpt"), model_tensors(tmp_path / "m.last.ckpt")
    assert all(torch.equal(best[k], last[k]) for k in last)


def test_epochs_stop(shakespeare, tmp_path):
    cfg = TrainConfig(batch_size=4, seq_len=16, epochs=2, precision="fp32")
    task = make_task(shakespeare(1_500), cfg)
    st = Trainer(task, cfg, out=tmp_path / "m.ckpt", device=CPU).fit()
    assert st.stopped == "epochs" and st.step == 2 * task.steps_per_epoch()


def test_time_budget_stops(shakespeare, tmp_path):
    cfg = TrainConfig(batch_size=4, seq_len=16, epochs=100_000, time_budget=0.3, precision="fp32")
    task = make_task(shakespeare(1_500), cfg)
    trainer = Trainer(task, cfg, out=tmp_path / "m.ckpt", device=CPU)
    st = trainer.fit()
    assert st.stopped == "time_budget"
    assert st.elapsed >= 0.3 and st.step < trainer.total_steps()


class FlatValidation(Wrapped):
    """Validation never improves after the first evaluation."""

    def evaluate(self):
        return {"val_loss": 2.0}


def test_early_stopping_after_patience_evaluations(shakespeare, tmp_path):
    cfg = TrainConfig(
        batch_size=4, seq_len=16, max_steps=200, eval_every=2, patience=3, precision="fp32"
    )
    task = FlatValidation(make_task(shakespeare(3_000), cfg))
    st = Trainer(task, cfg, out=tmp_path / "m.ckpt", device=CPU).fit()
    # step 2 improves on inf; steps 4, 6, 8 do not: the third one stops training.
    assert (st.stopped, st.step, st.best_step, st.bad_evals) == ("early_stopping", 8, 2, 3)


# ---- non-finite losses --------------------------------------------------------------------------


class NanLossAt(Wrapped):
    """The loss of the given training steps (1-based) is NaN, as after an fp overflow."""

    def __init__(self, inner, steps):
        super().__init__(inner)
        self.bad = set(steps)

    def loss(self, batch):
        self.calls += 1
        loss, tokens = self.inner.loss(batch)
        return (loss * float("nan") if self.calls in self.bad else loss), tokens


class NanStateAt(Wrapped):
    """At the given step the forward blows up: the carried hidden state becomes NaN."""

    def __init__(self, inner, step):
        super().__init__(inner)
        self.step = step

    def loss(self, batch):
        self.calls += 1
        if self.calls == self.step and self.inner.hidden is not None:
            self.inner.hidden = tuple(torch.full_like(h, float("nan")) for h in self.inner.hidden)
        return self.inner.loss(batch)


def test_transient_nan_steps_are_skipped_and_lr_halved(shakespeare, tmp_path):
    cfg = TrainConfig(batch_size=4, seq_len=16, max_steps=12, eval_every=3, precision="fp32")
    task = NanLossAt(make_task(shakespeare(3_000), cfg), steps={4, 5})
    messages = []
    st = Trainer(
        task,
        cfg,
        out=tmp_path / "m.ckpt",
        device=CPU,
        on_progress=lambda p: messages.append(p.message),
    ).fit()
    assert st.stopped == "max_steps" and st.step == 12
    assert st.lr_scale == 0.25
    assert sum("non-finite" in m for m in messages) == 2
    assert all(math.isfinite(h["val_loss"]) for h in st.history)
    assert all_finite(model_tensors(tmp_path / "m.ckpt"))
    assert all_finite(model_tensors(tmp_path / "m.last.ckpt"))


def test_nan_carried_state_does_not_poison_later_batches(shakespeare, tmp_path):
    """A forward that produced a NaN state is skipped, and the NaN state is not carried on."""
    cfg = TrainConfig(batch_size=4, seq_len=16, max_steps=12, eval_every=3, precision="fp32")
    task = NanStateAt(make_task(shakespeare(3_000), cfg), step=4)
    st = Trainer(task, cfg, out=tmp_path / "m.ckpt", device=CPU).fit()
    assert st.stopped == "max_steps" and st.step == 12
    assert st.lr_scale == 0.5  # exactly one step was skipped
    assert all_finite(model_tensors(tmp_path / "m.ckpt"))


def test_divergence_stops_with_error_and_keeps_best_checkpoint_finite(shakespeare, tmp_path):
    cfg = TrainConfig(batch_size=4, seq_len=16, max_steps=50, eval_every=2, precision="fp32")
    task = NanLossAt(make_task(shakespeare(3_000), cfg), steps=range(5, 100))
    trainer = Trainer(task, cfg, out=tmp_path / "m.ckpt", device=CPU)
    with pytest.raises(TextrnnError, match="diverged"):
        trainer.fit()
    assert trainer.state.step == 8  # steps 5-8 skipped; the fifth non-finite one in a row stops
    best = model_tensors(tmp_path / "m.ckpt")
    assert all_finite(best) and all_finite(model_tensors(tmp_path / "m.last.ckpt"))
    assert load_checkpoint(tmp_path / "m.ckpt").meta["training"]["best_step"] == 4


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_huge_learning_rate_diverges_with_error_and_finite_checkpoints(
    shakespeare, tmp_path, precision
):
    corpus = shakespeare(5_000)
    cfg = TrainConfig(
        batch_size=4,
        seq_len=32,
        lr=1e6,
        warmup_steps=0,
        max_steps=60,
        eval_every=5,
        precision=precision,
    )
    with pytest.raises(TextrnnError, match="diverged"):
        train(
            corpus,
            tokenizer=char_tokenizer(corpus),
            out=tmp_path / "m.ckpt",
            model_overrides=TINY,
            train_cfg=cfg,
        )
    assert all_finite(model_tensors(tmp_path / "m.ckpt"))
    assert all_finite(model_tensors(tmp_path / "m.last.ckpt"))


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"seq_len": 0}, "--seq-len"),
        ({"batch_size": 0}, "--batch-size"),
        ({"lr": 0.0}, "--lr"),
        ({"lr": float("nan")}, "--lr"),
        ({"val_fraction": 1.0}, "--val-fraction"),
        ({"precision": "fp8"}, "--precision"),
        ({"patience": -1}, "--patience"),
    ],
)
def test_train_config_validation_names_the_option(kwargs, option):
    with pytest.raises(UsageError, match=option):
        TrainConfig(**kwargs)
