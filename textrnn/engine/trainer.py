"""One training loop for every task.

A task (language model, tagger, transliterator, classifier) supplies the model,
batches at a resumable position, a loss, an evaluation and any extra state (the
language model's carried hidden state). This loop owns everything else: AdamW,
warm-up + cosine schedule, gradient clipping, mixed precision (bf16, or fp16 with a
gradient scaler), time budgets, periodic validation, early stopping, best/last
checkpoints, exact resume, Ctrl-C/SIGTERM, progress reported through a callback, and
data-parallel training over several processes (see `textrnn.engine.distributed`).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from textrnn.config import config_to_dict
from textrnn.engine import distributed
from textrnn.engine.checkpoint import Checkpoint, flatten_state, save_checkpoint, unflatten_state
from textrnn.engine.config import TrainConfig
from textrnn.engine.devices import autocast, check_precision, resolve_precision
from textrnn.engine.outputs import last_path, metrics_path, open_log, output_lock
from textrnn.errors import CheckpointError, TextrnnError, UsageError
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
    `evaluate` runs on rank 0 alone; its metrics are sent to the other ranks.
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


@dataclass
class Progress:
    """A snapshot of training, passed to the progress callback."""

    event: str  # "step" | "eval" | "log" | "done"
    step: int
    total_steps: int
    epoch: int
    train_loss: float = float("nan")
    val: dict = field(default_factory=dict)
    best_val_loss: float = float("inf")
    best_step: int = 0
    tokens_per_s: float = 0.0
    elapsed: float = 0.0
    eta: float = float("nan")
    lr: float = 0.0
    message: str = ""


@dataclass
class TrainState:
    """Everything besides weights and optimizer moments that an exact resume needs."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed: float = 0.0  # seconds of training so far (time budgets continue across resumes)
    tokens: int = 0
    best_val_loss: float = float("inf")  # val_loss of the best checkpoint
    best_score: float = float(
        "inf"
    )  # the monitored metric of the best checkpoint, negated if higher is better
    best_step: int = 0
    bad_evals: int = 0  # validations since the last improvement (early stopping)
    lr_scale: float = 1.0  # lowered after non-finite losses
    history: list = field(default_factory=list)  # one dict per validation
    stopped: str = ""  # why training ended: "epochs", "max_steps", "time_budget", "early_stopping", "interrupted"


def lr_factor(step: int, *, warmup: int, progress: float, floor: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay from 1 to `floor` as progress goes 0 -> 1."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(max(progress, 0.0), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not biases or embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "embedding" not in name else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_prefix(rank: int) -> str:
    """Checkpoint names of a rank's random state: "rng.torch", "rng.cuda" for rank 0 (and a
    single process); "rng.rank3.torch" ... for the others."""
    return "rng." if rank == 0 else f"rng.rank{rank}."


def rng_tensors(rank: int = 0) -> dict[str, Tensor]:
    """This process's random state: the CPU generator and, when in use, its current GPU's."""
    prefix = rng_prefix(rank)
    tensors = {prefix + "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors[prefix + "cuda"] = torch.cuda.get_rng_state()
    return tensors


def restore_rng(tensors: dict[str, Tensor], rank: int = 0) -> bool:
    """Restore `rank`'s random state from checkpoint tensors; False when they hold none for it
    (a run resumed with more processes than it had). A GPU state is restored only where a
    GPU is: a checkpoint trained on a GPU resumes on a CPU and the reverse."""
    prefix = rng_prefix(rank)
    try:
        if prefix + "torch" not in tensors:
            return False
        torch.set_rng_state(tensors[prefix + "torch"].to(torch.uint8))
        # "rng.cuda.<i>": one per GPU, written before each process kept only its own.
        legacy = (
            f"rng.cuda.{torch.cuda.current_device()}"
            if torch.cuda.is_available() and rank == 0
            else ""
        )
        cuda = tensors.get(prefix + "cuda", tensors.get(legacy))
        if cuda is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(cuda.to(torch.uint8))
        return True
    except (RuntimeError, TypeError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"checkpoint is corrupt: its random-generator state is unusable ({reason})"
        ) from None


class _InterruptFlag:
    """SIGINT/SIGTERM set a flag that the loop checks between steps, so an interrupt
    never lands in the middle of an optimizer update; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def installed(self):
        previous = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


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
        # Only rank 0 reports progress (and writes files: see fit and _save).
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
        self.state = TrainState()
        if resume is not None:
            self._load_resume(resume)
        elif (
            self.dist.rank
        ):  # each rank its own dropout masks; rank 0 draws as a single process would
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

    # ---- the loop ----------------------------------------------------------------
    def fit(self) -> TrainState:
        """Train until a stopping rule fires; return the final state (`stopped` says why).

        An interrupt (Ctrl-C, SIGTERM) saves the resumable last checkpoint and returns
        with `stopped == "interrupted"`. `<out>.lock` is held meanwhile (see `output_lock`).
        """
        st = self.state
        self.interrupt = _InterruptFlag()
        with self._output_files() as log, self.interrupt.installed():
            self._fit(log)
        self.on_progress(self._snapshot("done", message=st.stopped))
        return st

    @contextmanager
    def _output_files(self):
        """Rank 0 holds the output lock and the metrics log; the other ranks write nothing."""
        if not self.dist.main:
            yield None
            return
        with output_lock(self.out):
            for path in (self.out, last_path(self.out)):
                remove_partial_saves(
                    path
                )  # left by a killed run; the lock says none is in progress
            with open_log(metrics_path(self.out)) as log:
                yield log

    def _fit(self, log) -> None:
        st = self.state
        # Where this run starts in the log (step 0, or where a resumed checkpoint stopped):
        # readers drop what an earlier run logged after that point (engine/metrics_log.py).
        start = {"step": st.step, "epoch": st.epoch, "elapsed": round(st.elapsed, 2), "tokens": st.tokens}
        self._write_log(log, {"event": "start", **start})
        self._run(log)
        if st.stopped != "interrupted" and (not st.history or st.history[-1]["step"] != st.step):
            self._validate(log)
        if not math.isfinite(st.best_score):
            # Nothing could be validated (no held-out text, e.g. --val-fraction 0):
            # the final weights are the best there are, so the best checkpoint exists.
            self._save(self.out, with_training_state=False)
        self._save_last()

    def _run(self, log) -> None:
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
                self._agree_on_stopping()
                if self.interrupt.requested:
                    st.stopped = "interrupted"
                if self._should_stop():
                    return
            st.epoch += 1
            st.batch_in_epoch = 0

    def _agree_on_stopping(self) -> None:
        """Every rank takes the largest elapsed time and any rank's interrupt, so that all
        stop at the same step (a rank that stopped alone would leave the others waiting)
        and a time budget's learning-rate schedule is the same on every rank."""
        if not self.dist.active:
            return
        elapsed, interrupted = distributed.all_max(
            [self.state.elapsed, float(self.interrupt.requested)]
        )
        self.state.elapsed = elapsed
        self.interrupt.requested = self.interrupt.requested or interrupted > 0

    def _should_stop(self) -> bool:
        st, cfg = self.state, self.cfg
        if cfg.max_steps and st.step >= cfg.max_steps:
            st.stopped = st.stopped or "max_steps"
        elif cfg.time_budget and st.elapsed >= cfg.time_budget:
            st.stopped = st.stopped or "time_budget"
        return bool(st.stopped)

    def _train_step(self, batch: Any) -> tuple[float | None, int]:
        st, cfg = self.state, self.cfg
        model = self.task.model
        model.train()
        warmup = min(
            cfg.warmup_steps, max(1, self.total_steps() // 10)
        )  # short runs warm up briefly
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
                if (
                    self.scaler.is_enabled()
                ):  # fp16 overflow: the scaler skips the step, lowers its scale
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
        self._nonfinite_streak = getattr(self, "_nonfinite_streak", 0) + 1
        self.state.lr_scale *= 0.5
        self.on_progress(
            self._snapshot("log", message="non-finite loss: step skipped, learning rate halved")
        )
        if self._nonfinite_streak >= 5:
            self._save_last()
            raise TextrnnError(
                f"training diverged (non-finite loss {self._nonfinite_streak} steps in a row at step "
                f"{self.state.step}); try a lower --lr or --precision fp32. Best checkpoint: {self.out}"
            )
        return None

    def _report_steps(self, log, loss_sum: float, steps: int, tokens: int) -> None:
        snap = self._snapshot("step", train_loss=loss_sum / max(1, steps))
        snap.tokens_per_s = self._recent_speed(tokens)
        self._write_log(log, {"event": "train", **self._log_fields(snap), "tokens": self.state.tokens})
        self.on_progress(snap)

    def _recent_speed(self, tokens: int) -> float:
        now, last = time.perf_counter(), getattr(self, "_speed_mark", None)
        self._speed_mark = now
        return tokens / (now - last) if last is not None and now > last else 0.0

    def _validate(self, log) -> None:
        st = self.state
        # Rank 0 validates; every rank applies its numbers, so all keep the same state.
        metrics = distributed.broadcast_object(self.task.evaluate() if self.dist.main else None)
        sign = -1.0 if getattr(self.task, "higher_is_better", False) else 1.0
        score = sign * metrics.get(getattr(self.task, "monitor", "val_loss"), float("nan"))
        improved = math.isfinite(score) and score < st.best_score
        if improved:
            st.best_score, st.best_val_loss = score, metrics["val_loss"]
            st.best_step, st.bad_evals = st.step, 0
        else:
            st.bad_evals += 1
        entry = {"step": st.step, "epoch": st.epoch, "elapsed": round(st.elapsed, 2), **metrics}
        st.history.append(entry)
        self._write_log(log, {"event": "eval", **entry, "tokens": st.tokens})
        if improved:
            self._save(self.out, with_training_state=False)
        self._save_last()
        if self.cfg.patience and st.bad_evals >= self.cfg.patience:
            st.stopped = st.stopped or "early_stopping"
        self.on_progress(self._snapshot("eval", val=metrics))
        self._speed_mark = time.perf_counter()

    def _snapshot(self, event: str, **kw: Any) -> Progress:
        st = self.state
        total = self.total_steps()
        eta = float("nan")
        if st.step:
            per_step = st.elapsed / st.step
            eta = (total - st.step) * per_step
            if self.cfg.time_budget:
                eta = min(eta, max(0.0, self.cfg.time_budget - st.elapsed))
        return Progress(
            event=event,
            step=st.step,
            total_steps=total,
            epoch=st.epoch,
            best_val_loss=st.best_val_loss,
            best_step=st.best_step,
            elapsed=st.elapsed,
            eta=eta,
            lr=self.optimizer.param_groups[0]["lr"],
            **kw,
        )

    @staticmethod
    def _log_fields(p: Progress) -> dict:
        return {
            "step": p.step,
            "epoch": p.epoch,
            "train_loss": round(p.train_loss, 5),
            "lr": p.lr,
            "tokens_per_s": round(p.tokens_per_s, 1),
            "elapsed": round(p.elapsed, 2),
        }

    def _write_log(self, log, record: dict) -> None:
        if log is None:  # not rank 0
            return
        data = (json.dumps(record) + "\n").encode("utf-8")
        try:
            while data:
                data = data[log.write(data) :]
        except OSError as err:  # a full disk: say so in one line, like a failed checkpoint save
            raise TextrnnError(
                f"cannot write the metrics log {log.name}: {err.strerror or err}"
            ) from None

    # ---- checkpoints -------------------------------------------------------------
    def _save_last(self) -> None:
        if (
            getattr(self, "_last_saved_step", None) == self.state.step
            and self.state.stopped != "interrupted"
        ):
            return  # already written at this step (a final validation saves it too)
        self._save(last_path(self.out), with_training_state=True)
        self._last_saved_step = self.state.step

    def _save(self, path: Path, *, with_training_state: bool) -> None:
        """Write a checkpoint from rank 0. With the training state, every rank must call
        this: the task's state and each rank's random state are gathered from all ranks."""
        if with_training_state:
            task_state = self.task.state_tensors()
            rngs: dict[str, Tensor] = {}
            for part in distributed.gather_objects(rng_tensors(self.dist.rank)):
                rngs.update(part)
        if not self.dist.main:
            return
        model = self.task.model
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        meta = self.task.checkpoint_meta()
        meta["train_config"] = config_to_dict(self.cfg)
        meta["training"] = {
            **{k: v for k, v in asdict(self.state).items() if k != "history"},
            "precision": self.precision,
            "best_checkpoint": str(self.out),
            "has_training_state": with_training_state,
        }
        meta["history"] = self.state.history
        meta["metrics"] = {
            "best_val_loss": self.state.best_val_loss,
            "best_step": self.state.best_step,
        }
        best = next((h for h in self.state.history if h["step"] == self.state.best_step), None)
        if best:
            meta["metrics"].update({k: v for k, v in best.items() if k.startswith("val_")})
        if with_training_state:
            opt_tensors, opt_skeleton = flatten_state(self.optimizer.state_dict(), "optim")
            tensors.update(opt_tensors)
            tensors.update(rngs)
            tensors.update({f"state.{k}": v for k, v in task_state.items()})
            meta["optimizer"] = opt_skeleton
            if self.scaler.is_enabled():
                meta["grad_scaler"] = self.scaler.state_dict()
        save_checkpoint(
            path, Checkpoint(task=self.task.name, meta=_json_safe(meta), tensors=tensors)
        )

    def _load_resume(self, ckpt: Checkpoint) -> None:
        training = ckpt.meta.get("training", {})
        if (
            not isinstance(training, dict)
            or not training.get("has_training_state")
            or "optimizer" not in ckpt.meta
        ):
            raise CheckpointError(
                "this checkpoint holds no training state (it is a 'best' checkpoint); "
                f"resume from {last_path(self.out)} instead"
            )
        self._load_optimizer(unflatten_state(ckpt.meta["optimizer"], ckpt.tensors))
        self.state = _resumed_state(training, ckpt.meta.get("history", []))
        if not restore_rng(ckpt.tensors, self.dist.rank):  # more processes than the run had
            torch.manual_seed(
                distributed.rank_seed(self.cfg.seed + self.state.step, self.dist.rank)
            )
        self._load_scaler(ckpt.meta.get("grad_scaler"))
        self.task.load_state_tensors(
            {k[len("state.") :]: v for k, v in ckpt.tensors.items() if k.startswith("state.")}
        )

    def _load_scaler(self, saved: Any) -> None:
        """The fp16 gradient scale of the run resumed (none when it was not fp16: a fresh scale)."""
        if not self.scaler.is_enabled() or saved is None:
            return

        def number(value: Any, kinds: tuple[type, ...] = (int, float)) -> bool:
            return type(value) in kinds and value >= 0 and math.isfinite(value)  # (no bools)

        ok = isinstance(saved, dict) and number(saved.get("_growth_tracker"), (int,))
        ok = ok and all(
            number(saved.get(k)) and saved[k] > 0
            for k in ("scale", "growth_factor", "backoff_factor", "growth_interval")
        )
        if not ok:
            raise CheckpointError(f"checkpoint is corrupt: its gradient-scaler state is {saved!r}")
        self.scaler.load_state_dict(saved)

    def _load_optimizer(self, state: Any) -> None:
        """Load saved optimizer state, checked: it comes from a file, and torch checks little
        (a moment of the wrong shape or a hyperparameter of the wrong type fails mid-step).

        Only the moments and step counts are taken from the file; the hyperparameters are
        this run's, from the same config (so a --weight-decay given on resume applies).
        """
        try:
            current = self.optimizer.state_dict()["param_groups"]
            groups = state["param_groups"]
            if not (
                isinstance(groups, list)
                and len(groups) == len(current)
                and all(isinstance(g, dict) for g in groups)
            ):
                raise ValueError("its parameter groups do not match the model's")
            fresh = [
                {**now, "params": saved["params"]}
                for now, saved in zip(current, groups, strict=True)
            ]
            self.optimizer.load_state_dict({"state": state["state"], "param_groups": fresh})
            for param, moments in self.optimizer.state.items():
                for key, value in moments.items():
                    if not isinstance(value, Tensor):
                        continue
                    fits = (
                        value.numel() == 1
                        if key == "step"
                        else value.is_floating_point() and value.shape == param.shape
                    )
                    if not fits:
                        raise ValueError(
                            f"{key} of shape {tuple(value.shape)} ({value.dtype}) for a parameter of shape {tuple(param.shape)}"
                        )
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(
                f"checkpoint is corrupt: its optimizer state does not fit the model ({reason})"
            ) from None


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


def _resumed_state(training: dict, history: Any) -> TrainState:
    """The TrainState saved in a checkpoint's `training`, its types checked (it comes from a file)."""
    state = TrainState()
    for f in fields(TrainState):
        if f.name in ("history", "stopped") or f.name not in training:
            continue
        value, default = training[f.name], getattr(state, f.name)
        if value is None and f.name in ("best_val_loss", "best_score"):
            value = float("inf")  # JSON keeps inf as null
        ok = (
            isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
        )
        if ok and isinstance(default, int):  # counters
            ok = isinstance(value, int) and value >= 0
        elif ok and f.name in ("elapsed", "lr_scale"):
            ok = math.isfinite(value) and value >= 0 and (value > 0 or f.name == "elapsed")
        if not ok:
            raise CheckpointError(f"checkpoint is corrupt: training.{f.name} is {value!r}")
        setattr(state, f.name, value)
    if "best_score" not in training:  # written before `monitor` existed: it was val_loss
        state.best_score = state.best_val_loss
    if not (
        isinstance(history, list)
        and all(isinstance(h, dict) and isinstance(h.get("step"), int) for h in history)
    ):
        raise CheckpointError(
            "checkpoint is corrupt: its validation history is not a list of records"
        )
    state.history = list(history)
    return state


def _json_safe(obj: Any) -> Any:
    """Replace non-finite floats (JSON has no inf/nan) with None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
