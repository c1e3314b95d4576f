"""How long one training step of a model takes on this device: the timing probe behind
budget-aware defaults (a task sizes its model to the steps a time budget allows).

The step is the loop's own: forward under the run's precision, backward, gradient
clipping and the run's optimizer update. One untimed step first pays for what only the first step
of a shape pays (allocation, oneDNN primitive creation).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from textrnn.engine.config import TrainConfig
from textrnn.engine.devices import autocast
from textrnn.engine.trainer import make_optimizer


def step_seconds(
    model: nn.Module,
    loss_of: Callable[[nn.Module], Tensor],
    cfg: TrainConfig,
    *,
    precision: str,
    device: torch.device,
    min_steps: int = 3,
    min_seconds: float = 0.3,
) -> float:
    """Seconds per training step of `model` with the loss `loss_of(model)`: the median of
    at least `min_steps` steps and `min_seconds` of them, after one warm-up step (a short
    step is timed many times: its time varies most). The model's weights change (throw it
    away)."""
    optimizer = make_optimizer(model, cfg)
    model.train()
    _step(model, loss_of, optimizer, cfg, precision, device)
    times: list[float] = []
    while len(times) < min_steps or sum(times) < min_seconds:
        times.append(_step(model, loss_of, optimizer, cfg, precision, device))
    return sorted(times)[len(times) // 2]


def _step(model: nn.Module, loss_of: Callable[[nn.Module], Tensor], optimizer: torch.optim.Optimizer,
          cfg: TrainConfig, precision: str, device: torch.device) -> float:  # fmt: skip
    """One timed training step: forward, backward, clipping, update."""
    _sync(device)
    start = time.perf_counter()
    with autocast(precision, device):
        loss = loss_of(model)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
    optimizer.step()
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
