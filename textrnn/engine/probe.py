"""How long one training step of a model takes on this device: the timing probe behind
budget-aware defaults (a task sizes its model to the steps a time budget allows).

The step is the loop's own: forward under the run's precision, backward, gradient
clipping and an AdamW update. One untimed step first pays for what only the first step
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
    timed: int = 1,
) -> float:
    """Seconds per training step of `model` with the loss `loss_of(model)`, the median of
    `timed` steps after one warm-up step. The model's weights change (throw it away)."""
    optimizer = make_optimizer(model, cfg)
    model.train()
    times = []
    for i in range(timed + 1):
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
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
