"""What every task's `train` command does alike: the training file (and its old --train
form), the process group and console, the resume lookup, the training settings from the
options, the output folder, and the end-of-training report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from textrnn.cli.display import log, stderr_console
from textrnn.cli.options import old_form
from textrnn.cli.outcome import exit_if_interrupted, summary
from textrnn.engine import distributed
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint, trained_on
from textrnn.engine.config import TrainConfig, config_with_overrides, saved_train_config
from textrnn.engine.devices import default_device, set_threads
from textrnn.engine.distributed import Dist
from textrnn.engine.outputs import last_path, out_path_for
from textrnn.engine.state import TrainState
from textrnn.errors import CheckpointError, DataError, TextrnnError, UsageError


def train_file(positional: Path | None, option: Path | None, command: str) -> Path | None:
    """TRAIN, given as the first argument or in the old form `--train FILE` (with a notice)."""
    if option is None:
        return positional
    if positional is not None:
        raise UsageError(f"give the training file once: {command} TRAIN (--train is its old form)")
    old_form(f"`{command} --train FILE`", f"`{command} FILE`")
    return option


@dataclass
class Session:
    """The process group, this process's device and the console of a training command."""

    group: Dist
    device: object  # a torch.device (the CLI does not import torch)
    console: Console | None


def start(device: str, *, quiet: bool, threads: int = 0) -> Session:
    """Join the process group torchrun describes (if any), place this process, set threads."""
    group, placed = distributed.join(default_device(device))
    console = stderr_console(quiet or not group.main)
    set_threads(threads)
    return Session(group, placed, console)


def given(**options) -> dict:
    """The options the user gave (those not None)."""
    return {k: v for k, v in options.items() if v is not None}


@dataclass
class Resumed:
    """What a last checkpoint says about the training it continues."""

    ckpt: Checkpoint
    train: Path | None  # the training file it names
    dev: Path | None  # the dev file it names
    out: Path | None  # the best checkpoint it was writing
    train_cfg: TrainConfig  # its training settings


def resume_from(path: Path, task: str, *, model_changes: dict, examples: str) -> Resumed:
    """Read a last checkpoint of `task` to continue from; model options (`model_changes`,
    named like `examples`) cannot change, and metadata it lacks is a CheckpointError."""
    ckpt = load_checkpoint(path, task=task)
    if model_changes:
        raise UsageError(f"model options ({examples}, ...) cannot change when resuming")
    train, dev = trained_on(ckpt.meta, source=str(path))
    cfg = saved_train_config(ckpt.meta, source=str(path))
    try:
        out = ckpt.meta["training"].get("best_checkpoint")
    except (KeyError, AttributeError) as err:
        raise CheckpointError(f"{path}: checkpoint metadata is incomplete or invalid ({err})") from None
    if not (out is None or (isinstance(out, str) and out)):
        raise CheckpointError(f"{path}: checkpoint metadata is invalid (best checkpoint path {out!r})")
    return Resumed(ckpt, _path(train), _path(dev), _path(out), cfg)


def _path(name: str | None) -> Path | None:
    return Path(name) if name else None


def files_to_train(
    train: Path | None, dev: Path | None, out: Path | None, resumed: Resumed | None
) -> tuple[Path, Path | None, Path]:
    """TRAIN, DEV and the best checkpoint's path: as given, else as the resumed checkpoint
    says, else (the checkpoint) checkpoints/<TRAIN>.ckpt."""
    if resumed is not None:
        train, dev, out = train or resumed.train, dev or resumed.dev, out or resumed.out
    if train is None:
        if resumed is None:
            raise UsageError("missing TRAIN: the file to train on (or --resume CHECKPOINT)")
        raise UsageError("the checkpoint does not say which file it was trained on; give TRAIN")
    return train, dev, out or out_path_for(train)


def train_config(defaults: TrainConfig, resumed: Resumed | None, **options) -> TrainConfig:
    """The training settings: the resumed checkpoint's (else the task's `defaults`) with the
    options the user gave."""
    return config_with_overrides(resumed.train_cfg if resumed else defaults, **options)


def make_folder(out: Path) -> None:
    """Create the folder of the best checkpoint; an --out that cannot be is a DataError."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the folder for --out {out}: {err.strerror or err}") from None


def report(
    session: Session,
    state: TrainState,
    out: Path,
    *,
    command: str,
    best: str,
    metrics: tuple[str, ...],
    json_out: bool,
) -> None:
    """How training ended: after an interrupt, the resume hint (and exit 130); else one log
    line (`best` words the best validation) and, with --json, the summary on stdout."""
    exit_if_interrupted(state, last_path(out), session.group, command)
    log(session.console, f"done ({state.stopped}) after {state.step} steps; {best} at step {state.best_step}: {out}")
    if json_out and session.group.main:
        print(json.dumps(summary(state, out, last_path(out), metrics)))


def metadata_error(path: Path, err: Exception) -> TextrnnError:
    """A task's own checkpoint metadata that cannot be used: a corrupt checkpoint."""
    return CheckpointError(f"{path}: checkpoint metadata is incomplete or invalid ({err})")
