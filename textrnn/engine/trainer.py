"""One training loop for every task.

A task (language model, tagger, transliterator, classifier) supplies the model,
batches at a resumable position, a loss, an evaluation and any extra state (the
language model's carried hidden state). This loop owns everything else: AdamW (or SGD),
warm-up + cosine schedule, gradient clipping, mixed precision (bf16, or fp16 with a
gradient scaler), time budgets and the other stopping rules, and data-parallel training
over several processes (see `textrnn.engine.distributed`). It hands the rest to one
module each:
- `validation`: periodic validation, the best checkpoint's metric, early stopping;
- `checkpointing`: what the best and last checkpoints hold, and exact resume;
- `progress`: the `Progress` events for the caller and the metrics log;
- `signals`: SIGINT, SIGTERM and SIGHUP end a run with a resumable checkpoint.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from textrnn.engine import distributed
from textrnn.engine.checkpoint import Checkpoint
from textrnn.engine.checkpointing import Checkpointer
from textrnn.engine.config import TrainConfig
from textrnn.engine.devices import autocast, check_precision, resolve_precision
from textrnn.engine.outputs import last_path, metrics_path, open_log, output_lock
from textrnn.engine.progress import MetricsLog, Progress, Throughput, snapshot, train_record
from textrnn.engine.signals import StopSignals
from textrnn.engine.state import TrainState
from textrnn.engine.validation import Monitor, evaluate_everywhere, out_of_patience, record
from textrnn.errors import TextrnnError, UsageError
from textrnn.files import remove_partial_saves


class Task(Protocol):
    """What the loop needs from a task.

    The best checkpoint and early stopping follow the validation number named by an
    optional class attribute `monitor` (default "val_loss"), minimised unless the task
    sets `higher_is_better = True` (a tagger monitors "val_accuracy").

    Several processes (torchrun) train a task that sets `data_parallel = True`, which
    promises, with `distributed.context()` giving this process's rank r of W:
    - `steps_per_epoch` and the order of global batches are the same on every rank;
    - `batches` yields rank r's share of each global batch of `cfg.batch_size` rows;
    - `loss` returns its shard's share of the global batch's mean loss (sum of the
      shard's token losses / tokens in the global batch), so that the shares sum to
      the single-process loss; the loop sums gradients over ranks. A rank whose share
      is empty must still return a loss that touches every parameter (times 0);
    - `state_tensors` is called on every rank and returns the whole state (gathered
      with `distributed.gather_rows`); `load_state_tensors` takes rank r's part.
    `evaluate` runs on rank 0 alone; its metrics are sent to the other ranks. A task may
    also have `model_note() -> str`: its model in words for the start line.
    """

    model: nn.Module
    name: str  # checkpoint task name: "lm", "tagger", "translit"

    def steps_per_epoch(self) -> int: ...
    def batches(self, epoch: int, start: int) -> Iterator[Any]: ...
    def loss(
        self, batch: Any
    ) -> tuple[Tensor, int]: ...  # mean loss (this rank's share), tokens in this rank's batch
    def evaluate(self) -> dict[str, float]: ...  # must hold "val_loss"; lower is better
    def reset_epoch(self) -> None: ...  # called when a new epoch starts (e.g. zero carried state)
    def state_tensors(self) -> dict[str, Tensor]: ...  # extra state for exact resume
    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None: ...
    def checkpoint_meta(self) -> dict: ...  # model config, tokenizer(s), corpus fingerprint...


def lr_factor(step: int, *, warmup: int, progress: float, floor: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay from 1 to `floor` as progress goes 0 -> 1."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(max(progress, 0.0), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (or plain SGD) with weight decay on weight matrices only (not biases or
    embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "embedding" not in name else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Runs `task` under `cfg`, writing the best checkpoint to `out` and the last beside it."""

    def __init__(
        self,
        task: Task,
        cfg: TrainConfig,
        *,
        out: Path,
        device: torch.device,
        on_progress: Callable[[Progress], None] | None = None,
        resume: Checkpoint | None = None,
    ) -> None:
        self.task, self.cfg, self.out, self.device = task, cfg, Path(out), device
        self.precision = resolve_precision(cfg.precision, device)
        check_precision(self.precision, device)
        self.dist = distributed.context()
        # Only rank 0 reports progress (and writes files: see fit and Checkpointer).
        self.on_progress = (on_progress or (lambda p: None)) if self.dist.main else (lambda p: None)
        self.forward: Callable[[Any], tuple[Tensor, int]] = task.loss
        if self.dist.active:
            if not getattr(task, "data_parallel", False):
                raise UsageError(
                    f"the {task.name} task cannot train on several processes; start one process"
                )
            self.forward = distributed.replicate(task, device)  # rank 0's weights on every rank
        self.optimizer = make_optimizer(task.model, cfg)
        # fp16 gradients underflow without a scale; bf16 and fp32 need none (enabled=False: a no-op).
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.checkpoints = Checkpointer(
            task, cfg, out=self.out, precision=self.precision, optimizer=self.optimizer,
            scaler=self.scaler, dist=self.dist,
        )  # fmt: skip
        self.monitor = Monitor.of(task)
        self.signals = StopSignals()
        self.speed = Throughput()
        self._nonfinite_streak = 0
        self.state = TrainState()
        if resume is not None:
            self.state = self.checkpoints.resume(resume)
        elif self.dist.rank:  # each rank its own dropout masks; rank 0 draws as one process would
            torch.manual_seed(distributed.rank_seed(cfg.seed, self.dist.rank))
        self._digests = _digest_file(self.dist.rank)

    # ---- schedule and stopping -------------------------------------------------
    def total_steps(self) -> int:
        total = self.cfg.epochs * self.task.steps_per_epoch()
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def progress(self) -> float:
        """Fraction of the run done: by steps, or by time when a time budget ends it sooner."""
        p = self.state.step / max(1, self.total_steps())
        if self.cfg.time_budget:
            p = max(p, self.state.elapsed / self.cfg.time_budget)
        return p

    def eval_interval(self) -> int:
        return self.cfg.eval_every or max(1, min(self.task.steps_per_epoch(), 1000))

    def _agreed_signal(self) -> int:
        """The stop signal this step ends on (0: none). Every rank takes the largest elapsed
        time and any rank's signal, so that all stop at the same step (a rank that stopped
        alone would leave the others waiting) and a time budget's learning-rate schedule is
        the same on every rank."""
        received = self.signals.received  # read once: a signal may land at any moment
        if not self.dist.active:
            return received
        elapsed, signum = distributed.all_max([self.state.elapsed, float(received)])
        self.state.elapsed = elapsed
        # Stopping for another rank's signal: a signal here now is a second one, too.
        self.signals.received = self.signals.received or int(signum)
        return int(signum)

    def _should_stop(self) -> bool:
        st, cfg = self.state, self.cfg
        if cfg.max_steps and st.step >= cfg.max_steps:
            st.stopped = st.stopped or "max_steps"
        elif cfg.time_budget and st.elapsed >= cfg.time_budget:
            st.stopped = st.stopped or "time_budget"
        return bool(st.stopped)

    # ---- the loop ----------------------------------------------------------------
    def fit(self) -> TrainState:
        """Train until a stopping rule fires; return the final state (`stopped` says why).

        A stop signal (SIGINT, SIGTERM, SIGHUP) saves the resumable last checkpoint and
        returns with `stopped == "interrupted"` and `signal` set; a second one stops at once
        (see `textrnn.engine.signals`). `<out>.lock` is held meanwhile (see `output_lock`).
        """
        st = self.state
        # The handlers cover the output files' clean-up: a second signal cannot cut it short.
        with self.signals.installed(), self._output_files() as log:
            self.on_progress(self._snapshot("start", setup=self._setup()))
            self._fit(log)
        self.on_progress(self._snapshot("done", message=st.stopped))
        return st

    def _setup(self) -> dict:
        """What a "start" report says: where the run starts, on what, and until when."""
        cfg = self.cfg
        return {
            "step": self.state.step, "params": sum(p.numel() for p in self.task.model.parameters()),
            "device": str(self.device), "threads": torch.get_num_threads(), "processes": self.dist.world,
            "precision": self.precision, "optimizer": cfg.optimizer, "lr": cfg.lr, "epochs": cfg.epochs, "max_steps": cfg.max_steps or None,
            "time_budget": cfg.time_budget or None, "total_steps": self.total_steps(),
            "model": self.task.model_note() if hasattr(self.task, "model_note") else None,
        }  # fmt: skip

    @contextmanager
    def _output_files(self) -> Iterator[MetricsLog]:
        """Rank 0 holds the output lock and the metrics log; the other ranks write nothing."""
        if not self.dist.main:
            yield MetricsLog(None)
            return
        with output_lock(self.out):
            for path in (self.out, last_path(self.out)):
                # left by a killed run; the lock says none is in progress
                remove_partial_saves(path)
            with open_log(metrics_path(self.out)) as log:
                yield MetricsLog(log)

    def _fit(self, log: MetricsLog) -> None:
        st = self.state
        # Where this run starts in the log (step 0, or where a resumed checkpoint stopped):
        # readers drop what an earlier run logged after that point (engine/metrics_log.py).
        start = {"step": st.step, "epoch": st.epoch, "elapsed": round(st.elapsed, 2), "tokens": st.tokens}
        log.write({"event": "start", **start})
        self._run(log)
        if st.stopped != "interrupted" and (not st.history or st.history[-1]["step"] != st.step):
            self._validate(log)
        if not math.isfinite(st.best_score):
            # Nothing could be validated (no held-out text, e.g. --val-fraction 0):
            # the final weights are the best there are, so the best checkpoint exists.
            self.checkpoints.save_best(st)
        self.checkpoints.save_last(st)

    def _run(self, log: MetricsLog) -> None:
        st, cfg = self.state, self.cfg
        window_loss, window_tokens, window_steps = 0.0, 0, 0
        t_mark = time.perf_counter()
        while not st.stopped:
            if st.epoch >= cfg.epochs:
                st.stopped = "epochs"
                break
            if st.batch_in_epoch == 0:
                self.task.reset_epoch()
            for batch in self.task.batches(st.epoch, st.batch_in_epoch):
                loss, tokens = self._train_step(batch)
                now = time.perf_counter()
                st.elapsed += now - t_mark
                t_mark = now
                st.step += 1
                st.batch_in_epoch += 1
                if self._digests is not None:
                    with self._digests.open("a", encoding="utf-8") as f:
                        f.write(f"{st.step} {distributed.weights_digest(self.task.model)}\n")
                st.tokens += tokens
                if loss is not None:
                    window_loss += loss
                    window_steps += 1
                window_tokens += tokens
                if st.step % cfg.log_every == 0:
                    self._report_steps(log, window_loss, window_steps, window_tokens)
                    window_loss, window_tokens, window_steps = 0.0, 0, 0
                if st.step % self.eval_interval() == 0:
                    self._validate(log)  # its time counts: a budget is wall-clock time
                signum = self._agreed_signal()
                if signum:
                    st.stopped, st.signal = "interrupted", signum
                if self._should_stop():
                    return
            st.epoch += 1
            st.batch_in_epoch = 0

    def _train_step(self, batch: Any) -> tuple[float | None, int]:
        st, cfg = self.state, self.cfg
        model = self.task.model
        model.train()
        warmup = min(cfg.warmup_steps, max(1, self.total_steps() // 10))  # short runs: brief
        factor = lr_factor(st.step, warmup=warmup, progress=self.progress(), floor=cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * factor * st.lr_scale
        with autocast(self.precision, self.device):
            loss, tokens = self.forward(batch)  # this rank's share of the global batch's loss
        self.optimizer.zero_grad(set_to_none=True)
        # The global batch's loss and tokens: every rank takes the same decision below.
        total, tokens = self._global_loss(loss, tokens)
        if not math.isfinite(total):
            return self._skip_nonfinite(), tokens
        self.scaler.scale(loss).backward()  # several processes: gradients summed over ranks here
        if cfg.clip:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            if not torch.isfinite(norm):
                # fp16 overflow: the scaler skips the step and lowers its scale
                if self.scaler.is_enabled():
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    return total, tokens
                self.optimizer.zero_grad(set_to_none=True)
                return self._skip_nonfinite(), tokens
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._nonfinite_streak = 0
        return total, tokens

    def _global_loss(self, loss: Tensor, tokens: int) -> tuple[float, int]:
        """The loss of the global batch (the sum of the ranks' shares) and its tokens."""
        if not self.dist.active:
            return loss.item(), tokens
        total, count = distributed.all_sum([loss.item(), float(tokens)])
        return total, int(count)

    def _skip_nonfinite(self) -> None:
        """Skip a step whose loss or gradient is not finite and halve the learning rate.

        The weights are never updated with NaN/inf, so the best checkpoint stays clean;
        after 5 such steps in a row training stops with an error.
        """
        self._nonfinite_streak += 1
        self.state.lr_scale *= 0.5
        self.on_progress(
            self._snapshot("log", message="non-finite loss: step skipped, learning rate halved")
        )
        if self._nonfinite_streak >= 5:
            self.checkpoints.save_last(self.state)
            raise TextrnnError(
                f"training diverged (non-finite loss {self._nonfinite_streak} steps in a row at step "
                f"{self.state.step}); try a lower --lr or --precision fp32. Best checkpoint: {self.out}"
            )
        return None

    # ---- validation and reports ----------------------------------------------------
    def _validate(self, log: MetricsLog) -> None:
        st = self.state
        metrics = evaluate_everywhere(self.task.evaluate, main=self.dist.main)
        improved = record(st, metrics, self.monitor)
        log.write({"event": "eval", **st.history[-1], "tokens": st.tokens})
        if improved:
            self.checkpoints.save_best(st)
        self.checkpoints.save_last(st)
        if out_of_patience(st, self.cfg.patience):
            st.stopped = st.stopped or "early_stopping"
        self.on_progress(self._snapshot("eval", val=metrics))
        self.speed.restart()

    def _report_steps(self, log: MetricsLog, loss_sum: float, steps: int, tokens: int) -> None:
        snap = self._snapshot("step", train_loss=loss_sum / max(1, steps))
        snap.tokens_per_s = self.speed.rate(tokens)
        log.write({**train_record(snap), "tokens": self.state.tokens})
        self.on_progress(snap)

    def _snapshot(self, event: str, **kw: Any) -> Progress:
        return snapshot(
            event, self.state, total_steps=self.total_steps(), time_budget=self.cfg.time_budget,
            lr=self.optimizer.param_groups[0]["lr"], **kw,
        )  # fmt: skip


@dataclass
class TrainResult:
    """How a training run ended, and where its best and last checkpoints are."""

    state: TrainState
    best: Path
    last: Path


def fit(
    task: Task,
    cfg: TrainConfig,
    *,
    out: str | os.PathLike,
    device: torch.device,
    on_progress: Callable[[Progress], None] | None = None,
    resume: Checkpoint | None = None,
) -> TrainResult:
    """Train `task` to the end with a Trainer; the best checkpoint is `out`, the last beside it."""
    out = Path(out)
    state = Trainer(task, cfg, out=out, device=device, on_progress=on_progress, resume=resume).fit()
    return TrainResult(state=state, best=out, last=last_path(out))


def _digest_file(rank: int) -> Path | None:
    """With $TEXTRNN_WEIGHT_DIGESTS=DIR, each rank appends "step digest" lines to DIR/rank<r>.txt
    after every step: a check (used by the tests) that the replicas stay bitwise identical."""
    folder = os.environ.get("TEXTRNN_WEIGHT_DIGESTS")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / f"rank{rank}.txt"
