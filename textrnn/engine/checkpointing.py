"""The checkpoints a training run writes, and exact resume from the last one.

A run keeps two files (in the one format of `textrnn.engine.checkpoint`):
- the best checkpoint `out`: the weights of the best validation so far, and metadata:
  the task's own (`checkpoint_meta()`), "train_config", "training" (the `TrainState`),
  "history" (every validation) and "metrics" (the best validation's numbers);
- the last checkpoint `x.last.ckpt` beside it, written after every validation and when
  the run ends: the same, plus all that an exact resume needs: the optimizer's moments
  ("optim." tensors, its structure under "optimizer"), the fp16 gradient scaler's state,
  every rank's random-generator state ("rng." tensors) and the task's extra state
  ("state." tensors, e.g. the language model's carried hidden state).

Resuming from the last checkpoint restores all of it, checked: the file may be damaged
or come from elsewhere, and torch checks little of what it is given.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from textrnn.config import config_to_dict
from textrnn.engine import distributed
from textrnn.engine.checkpoint import Checkpoint, flatten_state, save_checkpoint, unflatten_state
from textrnn.engine.config import TrainConfig
from textrnn.engine.distributed import Dist
from textrnn.engine.outputs import last_path
from textrnn.engine.state import TrainState
from textrnn.engine.validation import best_record
from textrnn.errors import CheckpointError

if TYPE_CHECKING:
    from textrnn.engine.trainer import Task


class Checkpointer:
    """Writes the best and last checkpoints of `task`'s run into `out` and beside it, and
    loads a last checkpoint to resume from. Only rank 0 writes; with the training state
    every rank must call `save_last`, as each one's random state is gathered."""

    def __init__(
        self,
        task: Task,
        cfg: TrainConfig,
        *,
        out: Path,
        precision: str,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        dist: Dist,
    ) -> None:
        self.task, self.cfg, self.out, self.precision = task, cfg, out, precision
        self.optimizer, self.scaler, self.dist = optimizer, scaler, dist
        self.last = last_path(out)
        self._last_saved_step: int | None = None

    # ---- saving ------------------------------------------------------------------------
    def save_best(self, state: TrainState) -> None:
        self._save(self.out, state, with_training_state=False)

    def save_last(self, state: TrainState) -> None:
        if self._last_saved_step == state.step and state.stopped != "interrupted":
            return  # already written at this step (a final validation saves it too)
        self._save(self.last, state, with_training_state=True)
        self._last_saved_step = state.step

    def _save(self, path: Path, state: TrainState, *, with_training_state: bool) -> None:
        if with_training_state:
            task_state = self.task.state_tensors()
            rngs: dict[str, Tensor] = {}
            for part in distributed.gather_objects(rng_tensors(self.dist.rank)):
                rngs.update(part)
        if not self.dist.main:
            return
        tensors = {f"model.{k}": v for k, v in self.task.model.state_dict().items()}
        meta = self.task.checkpoint_meta()
        meta["train_config"] = config_to_dict(self.cfg)
        meta["training"] = {
            **state.to_meta(),
            "precision": self.precision,
            "best_checkpoint": str(self.out),
            "has_training_state": with_training_state,
        }
        meta["history"] = state.history
        meta["metrics"] = {"best_val_loss": state.best_val_loss, "best_step": state.best_step}
        best = best_record(state)
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
            path, Checkpoint(task=self.task.name, meta=finite_or_none(meta), tensors=tensors)
        )

    # ---- resuming ----------------------------------------------------------------------
    def resume(self, ckpt: Checkpoint) -> TrainState:
        """Load the optimizer, random, scaler and task state of a last checkpoint into this
        run; return the training state it saved."""
        training = ckpt.meta.get("training", {})
        if not has_training_state(ckpt.meta):
            raise CheckpointError(
                "this checkpoint holds no training state (it is a 'best' checkpoint); resume "
                f"from {_last_beside(training)}"
            )
        load_optimizer(self.optimizer, unflatten_state(ckpt.meta["optimizer"], ckpt.tensors))
        state = TrainState.from_meta(training, ckpt.meta.get("history", []))
        if not restore_rng(ckpt.tensors, self.dist.rank):  # more processes than the run had
            torch.manual_seed(distributed.rank_seed(self.cfg.seed + state.step, self.dist.rank))
        load_scaler(self.scaler, ckpt.meta.get("grad_scaler"))
        self.task.load_state_tensors(
            {k[len("state.") :]: v for k, v in ckpt.tensors.items() if k.startswith("state.")}
        )
        return state


def has_training_state(meta: dict) -> bool:
    """Whether a checkpoint's metadata describes a last checkpoint, which a run resumes from."""
    training = meta.get("training")
    return isinstance(training, dict) and bool(training.get("has_training_state")) and "optimizer" in meta


def _last_beside(training: Any) -> str:
    """The last checkpoint written beside the best one a checkpoint records, where it exists."""
    best = training.get("best_checkpoint") if isinstance(training, dict) else None
    if isinstance(best, str) and best and last_path(Path(best)).is_file():
        return str(last_path(Path(best)))
    return "the <name>.last.ckpt written beside it"


# ---- random state ----------------------------------------------------------------------


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
        raise CheckpointError(
            f"checkpoint is corrupt: its random-generator state is unusable ({_reason(err)})"
        ) from None


# ---- optimizer and gradient scaler -------------------------------------------------------


def load_optimizer(optimizer: torch.optim.Optimizer, saved: Any) -> None:
    """Load saved optimizer state, checked: it comes from a file, and torch checks little
    (a moment of the wrong shape or a hyperparameter of the wrong type fails mid-step).

    Only the moments and step counts are taken from the file; the hyperparameters are
    this run's, from the same config (so a --weight-decay given on resume applies).
    """
    try:
        current = optimizer.state_dict()["param_groups"]
        groups = saved["param_groups"]
        if not (
            isinstance(groups, list)
            and len(groups) == len(current)
            and all(isinstance(g, dict) for g in groups)
        ):
            raise ValueError("its parameter groups do not match the model's")
        fresh = [{**now, "params": old["params"]} for now, old in zip(current, groups, strict=True)]
        optimizer.load_state_dict({"state": saved["state"], "param_groups": fresh})
        for param, moments in optimizer.state.items():
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
                        f"{key} of shape {tuple(value.shape)} ({value.dtype}) "
                        f"for a parameter of shape {tuple(param.shape)}"
                    )
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as err:
        raise CheckpointError(
            f"checkpoint is corrupt: its optimizer state does not fit the model ({_reason(err)})"
        ) from None


def load_scaler(scaler: torch.amp.GradScaler, saved: Any) -> None:
    """The fp16 gradient scale of the run resumed (none when it was not fp16: a fresh scale)."""
    if not scaler.is_enabled() or saved is None:
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
    scaler.load_state_dict(saved)


# ---- helpers ---------------------------------------------------------------------------


def finite_or_none(obj: Any) -> Any:
    """Replace non-finite floats (JSON has no inf/nan) with None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def _reason(err: Exception) -> str:
    """The first line of an exception's message, or its type when it has none."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__
