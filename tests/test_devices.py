"""Devices and precisions: the fp16 + gradient-scaler path of the loop, checkpoints that
cross between GPU and CPU, and the checks that need a CUDA GPU (skipped without one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import textrnn.engine.devices
from textrnn.config import config_from_dict
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from textrnn.engine.config import TrainConfig
from textrnn.engine.outputs import last_path
from textrnn.engine.trainer import Trainer
from textrnn.errors import CheckpointError, UsageError
from textrnn.formats.plain import iter_text_chunks
from textrnn.tasks.lm import GenerateConfig, generate, load, train
from textrnn.tokenizers import train_tokenizer

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpora" / "english.txt"
TINY = {"hidden": 32, "layers": 1, "embed": 16, "dropout": 0.0}
CPU = torch.device("cpu")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTRNN_CACHE", str(tmp_path / "cache"))


def char_tokenizer():
    return train_tokenizer("char", iter_text_chunks(CORPUS))


def _interrupt_at(step: int):
    def on_progress(p):
        if p.event == "step" and p.step == step:
            os.kill(os.getpid(), signal.SIGINT)

    return on_progress


# ---- fp16 with a gradient scaler, driven on the CPU -------------------------------------------------


class LinearTask:
    """Next-token prediction with an embedding and a linear layer, no recurrent layer.

    CPU autocast computes those two in fp16 (it cannot run an LSTM in fp16), which is
    enough to drive the loop's fp16 path, GradScaler included, on a machine without a GPU.
    """

    name = "lm"

    def __init__(self, cfg: TrainConfig, *, vocab: int = 50) -> None:
        g = torch.Generator().manual_seed(0)
        self.data = torch.randint(0, vocab, (5, cfg.batch_size, cfg.seq_len + 1), generator=g)
        torch.manual_seed(cfg.seed)
        self.model = nn.Sequential(nn.Embedding(vocab, 32), nn.Linear(32, vocab))

    def steps_per_epoch(self) -> int:
        return len(self.data)

    def batches(self, epoch: int, start: int):
        yield from self.data[start:]

    def loss(self, batch):
        logits = self.model(batch[:, :-1])  # (B, T, V)
        target = batch[:, 1:]
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1)
        ), target.numel()

    def evaluate(self) -> dict[str, float]:
        with torch.no_grad():
            return {"val_loss": self.loss(self.data[0])[0].item()}

    def reset_epoch(self) -> None:
        pass

    def state_tensors(self) -> dict:
        return {}

    def load_state_tensors(self, tensors) -> None:
        pass

    def checkpoint_meta(self) -> dict:
        return {}


FP16 = TrainConfig(
    batch_size=4,
    seq_len=8,
    lr=1e-2,
    max_steps=12,
    eval_every=4,
    patience=0,
    log_every=1,
    precision="fp16",
)
# A large first scale overflows fp16 gradients for a few steps; a short growth interval
# makes the scale grow again within the run: both directions are exercised.
SCALE = {
    "scale": 2.0**24,
    "growth_factor": 2.0,
    "backoff_factor": 0.5,
    "growth_interval": 3,
    "_growth_tracker": 0,
}


@pytest.fixture
def fp16_on_cpu(monkeypatch):
    monkeypatch.setattr(textrnn.engine.devices, "FP16_DEVICES", ("cuda", "cpu"))


def fp16_trainer(out: Path, *, resume=None, on_progress=None) -> Trainer:
    task = LinearTask(FP16)
    if resume is not None:
        task.model.load_state_dict(
            {k[6:]: v for k, v in resume.tensors.items() if k.startswith("model.")}
        )
    trainer = Trainer(task, FP16, out=out, device=CPU, resume=resume, on_progress=on_progress)
    if resume is None:
        trainer.scaler.load_state_dict(SCALE)
    return trainer


def test_fp16_is_refused_off_cuda():
    with pytest.raises(UsageError, match="--precision fp16 needs a CUDA GPU"):
        Trainer(LinearTask(FP16), FP16, out=Path("unused.ckpt"), device=CPU)


def test_fp16_overflow_lowers_the_scale_without_counting_as_divergence(fp16_on_cpu, tmp_path):
    messages = []
    trainer = fp16_trainer(tmp_path / "m.ckpt", on_progress=lambda p: messages.append(p.message))
    before = [p.detach().clone() for p in trainer.task.model.parameters()]
    st = trainer.fit()
    assert st.stopped == "max_steps" and st.step == 12
    assert st.lr_scale == 1.0 and not any("non-finite" in m for m in messages)
    assert trainer.scaler.get_scale() < SCALE["scale"]  # overflowing steps backed the scale off
    assert any(
        not torch.equal(a, b) for a, b in zip(before, trainer.task.model.parameters(), strict=True)
    )
    saved = load_checkpoint(last_path(tmp_path / "m.ckpt")).meta["grad_scaler"]
    assert saved["scale"] == trainer.scaler.get_scale()
    assert saved["_growth_tracker"] == trainer.scaler.state_dict()["_growth_tracker"]


def test_fp16_resume_restores_the_grad_scaler_and_is_bitwise_exact(fp16_on_cpu, tmp_path):
    straight = fp16_trainer(tmp_path / "a.ckpt")
    straight.fit()
    first = fp16_trainer(tmp_path / "b.ckpt", on_progress=_interrupt_at(6))
    assert first.fit().stopped == "interrupted"
    ckpt = load_checkpoint(last_path(tmp_path / "b.ckpt"))
    assert ckpt.meta["grad_scaler"] == first.scaler.state_dict()
    resumed = fp16_trainer(tmp_path / "b.ckpt", resume=ckpt)
    assert resumed.scaler.state_dict() == first.scaler.state_dict()
    assert resumed.fit().step == 12
    a = load_checkpoint(last_path(tmp_path / "a.ckpt"))
    b = load_checkpoint(last_path(tmp_path / "b.ckpt"))
    for name in (k for k in a.tensors if k.startswith(("model.", "optim."))):
        assert torch.equal(a.tensors[name], b.tensors[name]), name
    assert a.meta["grad_scaler"] == b.meta["grad_scaler"]


@pytest.mark.parametrize(
    "bad", [{"scale": "big"}, {**SCALE, "scale": -1.0}, {**SCALE, "_growth_tracker": True}, [1, 2]]
)
def test_a_damaged_grad_scaler_state_is_a_checkpoint_error(fp16_on_cpu, tmp_path, bad):
    fp16_trainer(tmp_path / "m.ckpt").fit()
    ckpt = load_checkpoint(last_path(tmp_path / "m.ckpt"))
    ckpt.meta["grad_scaler"] = bad
    with pytest.raises(CheckpointError, match="gradient-scaler state"):
        fp16_trainer(tmp_path / "m.ckpt", resume=ckpt)


# ---- checkpoints crossing devices ---------------------------------------------------------------------


def train_tiny(
    out: Path, *, device: torch.device = CPU, steps: int = 4, resume=None, precision: str = "fp32"
):
    cfg = TrainConfig(batch_size=4, seq_len=32, max_steps=steps, eval_every=2, precision=precision)
    return train(CORPUS, tokenizer=char_tokenizer(), out=out, model_overrides=None if resume else TINY,
                    train_cfg=cfg, device=device, resume=resume)  # fmt: skip


def test_checkpoint_of_a_gpu_run_samples_and_resumes_on_a_cpu(tmp_path):
    """What a GPU run adds to a checkpoint (its GPU's random state, an fp16 gradient scale)
    does not stop a CPU-only machine from sampling or resuming (CPU tests; the real GPU run
    is test_gpu_checkpoint_runs_on_cpu_and_the_reverse)."""
    result = train_tiny(tmp_path / "m.ckpt")
    ckpt = load_checkpoint(result.last)
    ckpt.meta["grad_scaler"] = dict(SCALE)
    ckpt.meta["training"]["precision"] = "fp16"
    ckpt.meta["train_config"]["precision"] = "auto"  # resolved again on the machine that resumes
    ckpt.tensors["rng.cuda"] = torch.arange(16, dtype=torch.uint8)
    ckpt.tensors["rng.rank1.cuda"] = torch.arange(16, dtype=torch.uint8)
    gpu_made = tmp_path / "gpu.last.ckpt"
    save_checkpoint(gpu_made, Checkpoint(ckpt.task, ckpt.meta, ckpt.tensors))

    lm = load(gpu_made, device=CPU)
    assert generate(lm, prompt="The ", config=GenerateConfig(length=20, seed=1))[0].tokens == 20
    assert lm.evaluate_text("The cat sat on the mat.")["perplexity"] > 1
    resumed = train(CORPUS, tokenizer=char_tokenizer(), out=tmp_path / "gpu.ckpt", device=CPU,
                       train_cfg=config_from_dict(TrainConfig, {**ckpt.meta["train_config"], "max_steps": 6}),
                       resume=load_checkpoint(gpu_made))  # fmt: skip
    assert resumed.state.step == 6


# ---- on a CUDA GPU ------------------------------------------------------------------------------


@cuda
def test_gpu_checkpoint_runs_on_cpu_and_the_reverse(tmp_path):
    gpu = torch.device("cuda")
    on_gpu = train_tiny(tmp_path / "g.ckpt", device=gpu, steps=6, precision="auto")
    lm = load(on_gpu.best, device=CPU)
    assert generate(lm, prompt="The ", config=GenerateConfig(length=20, seed=1))[0].tokens == 20
    on_cpu = train_tiny(tmp_path / "g.ckpt", steps=8, resume=load_checkpoint(on_gpu.last))
    assert on_cpu.state.step == 8
    back = train_tiny(
        tmp_path / "g.ckpt",
        device=gpu,
        steps=10,
        resume=load_checkpoint(on_cpu.last),
        precision="auto",
    )
    assert back.state.step == 10
    weights = load_checkpoint(back.best).tensors
    assert all(torch.isfinite(t).all() for k, t in weights.items() if k.startswith("model."))


@cuda
def test_sampling_on_a_gpu_with_a_seed_is_repeatable(tmp_path):
    result = train_tiny(tmp_path / "m.ckpt")
    lm = load(result.best, device=torch.device("cuda"))
    config = GenerateConfig(length=40, num_samples=3, seed=5)
    first = [g.text for g in generate(lm, prompt="The ", config=config)]
    assert first == [g.text for g in generate(lm, prompt="The ", config=config)]


@cuda
def test_training_on_a_gpu_runs_the_recurrent_layers_in_cudnn(tmp_path):
    from torch.profiler import ProfilerActivity, profile

    result = train_tiny(tmp_path / "m.ckpt", device=torch.device("cuda"), steps=2)
    lm = load(result.last, device=torch.device("cuda"))
    lm.model.train()
    x = torch.zeros(4, 32, dtype=torch.long, device="cuda")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        lm.model(x)[0].sum().backward()
    assert any("cudnn_rnn" in e.name for e in prof.events())


@cuda
def test_fp16_on_a_gpu_keeps_and_restores_the_grad_scaler(tmp_path):
    gpu = torch.device("cuda")
    cfg = TrainConfig(
        batch_size=4, seq_len=32, max_steps=12, eval_every=4, log_every=1, precision="fp16"
    )
    tok = char_tokenizer()
    first = train(CORPUS, tokenizer=tok, out=tmp_path / "h.ckpt", model_overrides=TINY, train_cfg=cfg, device=gpu,
                     on_progress=_interrupt_at(6))  # fmt: skip
    assert first.state.stopped == "interrupted"
    ckpt = load_checkpoint(first.last)
    assert ckpt.meta["training"]["precision"] == "fp16" and ckpt.meta["grad_scaler"]["scale"] > 0
    resumed = train(CORPUS, tokenizer=tok, out=tmp_path / "h.ckpt", train_cfg=cfg, device=gpu, resume=ckpt)
    assert resumed.state.step == 12 and resumed.state.lr_scale == 1.0
    assert load_checkpoint(resumed.last).meta["grad_scaler"]["scale"] > 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpus_with_nccl_match_one_gpu(tmp_path):
    args = [CORPUS, "--hidden", 32, "--layers", 1, "--embed", 16, "--dropout", 0, "--precision", "fp32",
            "--batch-size", 8, "--seq-len", 32, "--max-steps", 6, "--device", "cuda"]  # fmt: skip
    env = {**os.environ, "TEXTRNN_CACHE": str(tmp_path / "cache")}
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "textrnn",
    ]
    runs = [([*torchrun, "train", *args, "--out", "two.ckpt"], {"TEXTRNN_WEIGHT_DIGESTS": str(tmp_path / "d")}),
            ([sys.executable, "-m", "textrnn", "train", *args, "--out", "one.ckpt"], {})]  # fmt: skip
    for cmd, extra in runs:
        res = subprocess.run(
            [str(c) for c in cmd],
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr[-3000:]
    ranks = [p.read_text() for p in sorted((tmp_path / "d").glob("rank*.txt"))]
    assert len(ranks) == 2 and ranks[0] == ranks[1]
    a, b = (
        load_checkpoint(tmp_path / "two.last.ckpt").tensors,
        load_checkpoint(tmp_path / "one.last.ckpt").tensors,
    )
    for name in (k for k in a if k.startswith("model.")):
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=1e-4)
