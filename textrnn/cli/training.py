"""What every task's `train` command does alike: the training file (and its old --train
form), the process group, console and progress display, resuming (which file holds the
training state, which options may change), the training settings from the options, the
output folder, and the end-of-training report."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from textrnn.cli.display import (
    LiveDisplay,
    NoDisplay,
    PlainDisplay,
    log,
    perplexity,
    progress_mode,
    show_summary,
    stderr_console,
    train_display,
)
from textrnn.cli.options import Shown, old_form
from textrnn.cli.outcome import exit_if_interrupted, summary
from textrnn.engine import distributed
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint, trained_on
from textrnn.engine.checkpointing import has_training_state
from textrnn.engine.config import TrainConfig, config_with_overrides, saved_train_config
from textrnn.engine.devices import default_device, set_threads
from textrnn.engine.distributed import Dist
from textrnn.engine.outputs import last_path, out_path_for
from textrnn.engine.state import TrainState
from textrnn.errors import CheckpointError, DataError, TextrnnError, UsageError
from textrnn.files import fingerprint_file

try:  # typer >= 0.20 vendors click; older releases depend on it
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover
    from click import get_current_context


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
    """The process group, this process's device, the console of log lines (None with
    --quiet and on every process but the first) and the form progress takes."""

    group: Dist
    device: object  # a torch.device (the CLI does not import torch)
    console: Console | None
    progress: str  # "rich" | "plain" | "none" (see display.progress_mode)

    def log(self, message: str) -> None:
        log(self.console, message)


def start(device: str, *, quiet: bool, progress=Shown.auto, threads: int = 0) -> Session:
    """Join the process group torchrun describes (if any), place this process, set threads,
    and choose how progress shows (`--progress`, `--quiet`)."""
    mode = progress_mode(progress, quiet=quiet)
    group, placed = distributed.join(default_device(device))
    console = stderr_console(quiet or not group.main, live=progress == Shown.rich)
    set_threads(threads)
    return Session(group, placed, console, mode if group.main else "none")


def given(**options) -> dict:
    """The options the user gave (those not None)."""
    return {k: v for k, v in options.items() if v is not None}


def passed(name: str) -> bool:
    """Whether the option of parameter `name` was on the command line (not its default)."""
    ctx = get_current_context(silent=True)
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return source is not None and source.name == "COMMANDLINE"


# ---- resuming -----------------------------------------------------------------------------------

# The training settings that cannot change when a run resumes: the seed and the batch size
# fix the order of each epoch's batches and where the checkpoint stopped in it (and, for a
# language model, so does the sequence length); the held-out fraction decides which part of
# TRAIN is trained on; the optimizer's state is its own. Changed, they would not continue
# the run but start another on top of it. The others may change: how long to train
# (--epochs, --max-steps, --time-budget: the learning rate follows the new end), when to
# validate and stop (--eval-every, --patience),
# the optimisation (--lr, --weight-decay, --clip, --precision: the optimizer's moments carry
# over), and how and where it runs (--device, --threads, --progress, --quiet, --json, --out).
FIXED_TRAINING = ("batch_size", "seq_len", "val_fraction", "seed", "optimizer")


@dataclass
class Resumed:
    """What a last checkpoint says about the training it continues."""

    path: Path  # the last checkpoint resumed from
    ckpt: Checkpoint
    train: Path | None  # the training file it names
    dev: Path | None  # the dev file it names
    out: Path | None  # the best checkpoint it was writing
    train_cfg: TrainConfig  # its training settings


def resume_from(path: Path, task: str, session: Session) -> Resumed:
    """The training of `task` to continue from `path`: a last checkpoint, or a best one
    with its last beside it (x.ckpt -> x.last.ckpt). Says on stderr which file it resumes;
    metadata it lacks is a CheckpointError."""
    path = training_state_file(path, task, session)
    ckpt = load_checkpoint(path, task=task)
    train, dev = trained_on(ckpt.meta, source=str(path))
    cfg = saved_train_config(ckpt.meta, source=str(path))
    try:
        out = ckpt.meta["training"].get("best_checkpoint")
    except (KeyError, AttributeError) as err:
        raise CheckpointError(f"{path}: checkpoint metadata is incomplete or invalid ({err})") from None
    if not (out is None or (isinstance(out, str) and out)):
        raise CheckpointError(f"{path}: checkpoint metadata is invalid (best checkpoint path {out!r})")
    return Resumed(path, ckpt, _path(train), _path(dev), _path(out), cfg)


def training_state_file(path: Path, task: str, session: Session) -> Path:
    """`path` when it holds the training state; else the last checkpoint beside it (said on
    stderr); else a CheckpointError that names the last checkpoint of the run that wrote
    `path`, where it still exists, or says that there is no training state to resume."""
    meta = load_checkpoint(path, task=task, load_tensors=False).meta
    if has_training_state(meta):
        return path
    beside = last_path(path)
    if beside.is_file() and has_training_state(load_checkpoint(beside, task=task, load_tensors=False).meta):
        session.log(f"{path} holds the best weights only: resuming from {beside}, the last checkpoint beside it")
        return beside
    training = meta.get("training")
    recorded = training.get("best_checkpoint") if isinstance(training, dict) else None
    elsewhere = last_path(Path(recorded)) if isinstance(recorded, str) and recorded else None
    found = f"; the run that wrote it left {elsewhere}: resume from that" if elsewhere and elsewhere.is_file() else (
        ": there is no training state to resume (start a new training)")  # fmt: skip
    raise CheckpointError(
        f"{path} is a best checkpoint (weights only, no training state) and {beside} does not exist{found}"
    )


def _path(name: str | None) -> Path | None:
    return Path(name) if name else None


def check_unchanged(
    resumed: Resumed,
    *,
    model: dict,
    train: dict,
    dev: Path | None = None,
    task: dict[str, tuple[Any, Any]] | None = None,
    params: dict[str, str] | None = None,
) -> None:
    """Refuse, in one line that names each, the options given that differ from what the
    checkpoint was trained with: `model` ({model config field: value given}) against its
    model config, the FIXED_TRAINING settings in `train`, `dev` against its dev file, and
    the task's own `task` ({parameter: (value given, value saved)}). `params` names the
    parameter of a model field where the two differ ({"variational": "variational_dropout"})."""
    params = params or {}
    saved_model = resumed.ckpt.meta.get("model_config")
    saved_model = saved_model if isinstance(saved_model, dict) else {}
    pairs = {params.get(k, k): (v, saved_model.get(k)) for k, v in model.items()}
    pairs |= {k: (v, getattr(resumed.train_cfg, k)) for k, v in train.items() if k in FIXED_TRAINING}
    pairs |= task or {}
    differ = [_differs(name, now, then) for name, (now, then) in pairs.items() if now != then]
    if dev is not None and not _same_file(dev, resumed.ckpt.meta):
        differ.append(f"--dev {dev} differs from the checkpoint's {resumed.dev or 'none (part of TRAIN held out)'}")
    if differ:
        raise UsageError(
            f"{'; '.join(differ)}: these cannot change when resuming "
            "(leave them out to continue with the checkpoint's, or train anew with another --out)"
        )


def _differs(name: str, now: Any, then: Any) -> str:
    """`--hidden 512 differs from the checkpoint's 640` (`--no-crf ... the checkpoint's --crf`)."""
    flag, negative = _flags(name)
    if isinstance(now, bool) or isinstance(then, bool):
        return f"{flag if now else negative} differs from the checkpoint's {flag if then else negative}"
    return f"{flag} {_value(now)} differs from the checkpoint's {_value(then)}"


def _flags(name: str) -> tuple[str, str]:
    """The option of parameter `name` and its negative form (`--crf`, `--no-crf`)."""
    ctx = get_current_context(silent=True)
    for param in ctx.command.params if ctx is not None else ():
        if param.name == name and getattr(param, "opts", None):
            secondary = getattr(param, "secondary_opts", None) or [f"--no-{param.opts[0][2:]}"]
            return param.opts[0], secondary[0]
    flag = "--" + name.replace("_", "-")
    return flag, f"--no-{flag[2:]}"


def _value(value: Any) -> str:
    value = getattr(value, "value", value)  # an Enum's value
    return "none" if value is None else str(value)


def _same_file(dev: Path, meta: dict) -> bool:
    """Whether `dev` is the dev file the checkpoint names: the same path, or the same bytes."""
    data = meta.get("data")
    entry = data.get("dev") if isinstance(data, dict) else None
    if not isinstance(entry, dict):
        return False
    if entry.get("path") and Path(entry["path"]) == dev.resolve():
        return True
    try:
        return bool(entry.get("sha256")) and fingerprint_file(dev)["sha256"] == entry["sha256"]
    except TextrnnError:
        return False


# ---- the run ------------------------------------------------------------------------------------


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


def display(
    session: Session,
    *,
    task: str,
    train: Path,
    dev: Path | None,
    out: Path,
    resumed: Resumed | None,
    extras: dict | None = None,
    describe_val: Callable[[dict], str | None] = perplexity,
) -> LiveDisplay | PlainDisplay | NoDisplay:
    """The training's progress display (pass it as `on_progress`): its start line names
    `task`, the files, the checkpoint resumed and the task's own `extras` ({"column": "upos"})."""
    about = {"task": task, "train": train, "dev": dev, "out": out, "resume": resumed.path if resumed else None}
    return train_display(session.progress, session.console, about=about, extras=extras or {},
                         describe_val=describe_val)  # fmt: skip


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
    """How training ended: the summary (a `done` line, or words: `best` words the best
    validation); after an interrupt, the resume hint (and exit 128 + the signal); with
    --json, the summary on stdout."""
    result = summary(state, out, last_path(out), metrics)
    words = (f"done ({state.stopped}) after {state.step} steps in {state.elapsed:.0f} s; "
             f"{best} at step {state.best_step}: {out}")  # fmt: skip
    if session.group.main:
        show_summary(session.progress, session.console, result, words)
    exit_if_interrupted(state, last_path(out), session.group, command)
    if json_out and session.group.main:
        print(json.dumps(result))


def metadata_error(path: Path, err: Exception) -> TextrnnError:
    """A task's own checkpoint metadata that cannot be used: a corrupt checkpoint."""
    return CheckpointError(f"{path}: checkpoint metadata is incomplete or invalid ({err})")
