"""A model's weights in a checkpoint: taking them out, and loading them only after every
name, shape and value has been checked (the file may come from anywhere)."""

from __future__ import annotations

import torch
from torch import Tensor

from textrnn.engine.checkpoint import Checkpoint
from textrnn.errors import CheckpointError


def check_weight_shapes(
    model: torch.nn.Module, shapes: dict[str, tuple[int, ...]], *, source: str = ""
) -> None:
    """CheckpointError unless `shapes` ({name: shape}, without "model.") has exactly the
    model's weights, each of the model's shape. `source` (the file) prefixes the message."""
    where = f"{source}: checkpoint" if source else "checkpoint"
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where} weights do not match its model config (missing: {missing[:3]}, unexpected: {unexpected[:3]})"
        )
    for name, shape in shapes.items():
        if tuple(shape) != expected[name]:
            raise CheckpointError(
                f"{where} tensor {name} has shape {tuple(shape)}, its model config needs {expected[name]}"
            )


def checkpoint_weights(ckpt: Checkpoint) -> dict[str, Tensor]:
    """The checkpoint's `model.*` tensors, named as in the model's state dict (without "model.")."""
    return {k[len("model.") :]: v for k, v in ckpt.tensors.items() if k.startswith("model.")}


def load_weights(model: torch.nn.Module, weights: dict[str, Tensor], *, source: str = "") -> None:
    """Load `weights` (from `checkpoint_weights`), checking every name, shape and value first."""
    check_weight_shapes(model, {k: tuple(v.shape) for k, v in weights.items()}, source=source)
    for name, tensor in weights.items():
        # Training never saves non-finite weights, so these come from a damaged file.
        if (tensor.is_floating_point() or tensor.is_complex()) and not torch.isfinite(tensor).all():
            where = f"{source}: checkpoint" if source else "checkpoint"
            raise CheckpointError(f"{where} tensor {name} holds NaN or infinite values")
    model.load_state_dict(weights)
