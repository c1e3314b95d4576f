"""Data-parallel training over several processes: one machine or many, CPUs or GPUs.

`torchrun` starts one process per device and tells each its RANK, WORLD_SIZE and
LOCAL_RANK; `join` turns those into a process group (gloo on CPUs, nccl on GPUs).
With WORLD_SIZE unset or 1 nothing is initialised and every helper here is a no-op,
so a plain `textrnn train` runs exactly as before.

How a step stays the single-process step on the same global batch:
- `--batch-size` is the global batch; rank r takes its contiguous share of the rows;
- a task's `loss` is its shard's *share* of the global batch's mean loss (summed over
  ranks it is that mean), and gradients are summed over ranks (`sum_gradients`, a DDP
  communication hook), so every rank holds the gradient of the global mean;
- the optimizer then makes the same update on every rank: the replicas stay identical.
Everything else the loop decides (skip a non-finite step, stop on a time budget or an
interrupt, early stopping) is agreed through the collectives below, so that no rank
waits in a collective that another rank will never enter.

From Python, under torchrun: call `join(device)` first (it initialises the group and
picks this rank's GPU), then a task's `train` (`textrnn.tasks.lm.training`, ...) as in a
single process.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from textrnn.errors import UsageError

TIMEOUT = timedelta(minutes=30)  # a collective may wait this long, e.g. for rank 0's validation


@dataclass(frozen=True)
class Dist:
    """Where this process stands among those training together."""

    rank: int = 0  # this process, 0 .. world - 1; rank 0 validates, logs and saves
    world: int = 1  # processes training together
    local_rank: int = 0  # this process among those on its machine: picks its GPU

    def __post_init__(self) -> None:
        if not (self.world >= 1 and 0 <= self.rank < self.world and self.local_rank >= 0):
            raise UsageError(
                f"invalid process placement: rank {self.rank} of {self.world} (local rank {self.local_rank})"
            )

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def rows(self, n: int) -> slice:
        """This rank's contiguous share of `n` rows; `n` must be a multiple of the world size."""
        share = n // self.world
        return slice(self.rank * share, (self.rank + 1) * share)


def from_env(env: dict[str, str] | None = None) -> Dist:
    """The placement torchrun put in the environment (one process when it did not)."""
    env = os.environ if env is None else env
    try:
        values = {
            k: int(env.get(k, default))
            for k, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"))
        }
    except ValueError:
        raise UsageError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun)"
        ) from None
    return Dist(rank=values["RANK"], world=values["WORLD_SIZE"], local_rank=values["LOCAL_RANK"])


def context() -> Dist:
    """This process's placement: the initialised process group's, else a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local)


def join(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group torchrun described (when WORLD_SIZE > 1); return the placement
    and this rank's device: on CUDA the GPU numbered LOCAL_RANK, with nccl; else gloo."""
    placement = from_env()
    if not placement.active:
        return placement, device
    if not dist.is_available():  # pragma: no cover - builds without torch.distributed
        raise UsageError("this PyTorch build has no torch.distributed: train with one process")
    if dist.is_initialized():  # joined already (by the caller, from Python)
        return context(), device
    if device.type == "mps":
        raise UsageError(
            "training on several processes needs CUDA GPUs or CPUs (--device cuda or cpu), not MPS"
        )
    if device.type == "cuda":
        if placement.local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"local rank {placement.local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                "start at most that many processes per node (--nproc-per-node)"
            )
        device = torch.device("cuda", placement.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    atexit.register(_leave)
    return context(), device


def _leave() -> None:
    """At exit: a last collective (a barrier every rank waits out), then tear the group down.

    gloo's worker threads outlive this handler: `destroy_process_group` does not stop them
    (torch keeps the default group referenced, e.g. in torch.distributed.nn's default
    arguments). A worker drops its reference to a collective's work only after the caller
    has returned from it; when that drop frees a tensor that Python had created, the worker
    takes the GIL to free the tensor's Python object, and if the interpreter is finalizing
    by then, CPython ends the thread inside a noexcept destructor: std::terminate, SIGABRT
    ("terminate called without an active exception"). So every collective here returns
    only once gloo has let go of its tensors (`_collective`), this last one included."""
    if dist.is_initialized():
        try:
            all_sum([0.0])
        except Exception:  # a peer is gone already (it failed): nothing to wait for
            pass
        dist.destroy_process_group()


# ---- collectives (each a no-op for one process) -----------------------------------------------


def _device() -> torch.device:
    """Where collective tensors must live: nccl moves only GPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(values: list[float]) -> list[float]:
    return _all_reduce(values, dist.ReduceOp.SUM)


def all_max(values: list[float]) -> list[float]:
    return _all_reduce(values, dist.ReduceOp.MAX)


def _all_reduce(values: list[float], op) -> list[float]:
    if not context().active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    _collective(lambda: dist.all_reduce(t, op=op), t)
    return t.tolist()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` (any picklable value, e.g. validation metrics) on every rank."""
    if not context().active:
        return obj
    device = _device()
    data = _encode(obj, device) if dist.get_rank() == 0 else None
    size = torch.tensor([0 if data is None else data.numel()], dtype=torch.int64, device=device)
    _collective(lambda: dist.broadcast(size, src=0), size)
    if data is None:
        data = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    _collective(lambda: dist.broadcast(data, src=0), data)
    return _decode(data)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not context().active:
        return [obj]
    device, world = _device(), dist.get_world_size()
    mine = _encode(obj, device)
    size = torch.tensor([mine.numel()], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    _collective(lambda: dist.all_gather(sizes, size), size, *sizes)
    lengths = [int(s.item()) for s in sizes]
    padded = torch.zeros(max(lengths), dtype=torch.uint8, device=device)
    padded[: mine.numel()] = mine
    parts = [torch.empty_like(padded) for _ in range(world)]
    _collective(lambda: dist.all_gather(parts, padded), padded, *parts)
    return [_decode(part[:n]) for part, n in zip(parts, lengths, strict=True)]


def gather_rows(t: Tensor, dim: int) -> Tensor:
    """Every rank's `t` (all of one shape) concatenated along `dim` in rank order, on every rank."""
    if not context().active:
        return t
    device = _device()
    local = t.detach().to(device).contiguous()
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    _collective(lambda: dist.all_gather(parts, local), local, *parts)
    return torch.cat(parts, dim=dim)


def _encode(obj: Any, device: torch.device) -> Tensor:
    data = bytearray(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return torch.frombuffer(data, dtype=torch.uint8).to(device)


def _decode(t: Tensor) -> Any:
    return pickle.loads(t.cpu().numpy().tobytes())


SETTLE_LIMIT = 5.0  # seconds a collective waits for gloo to let go of its tensors
_settle = hasattr(Tensor, "_use_count")  # (off for good once the wait has run out)


def _collective(run: Callable[[], Any], *tensors: Tensor) -> None:
    """Run a blocking collective over `tensors`, which the caller holds, and return only once
    the process group holds none of them.

    gloo runs a collective on a worker thread, which keeps its work, and with it the
    tensors, a moment after the collective has returned here. Were the caller's references
    the first to go, that worker would free the tensors, taking the GIL for their Python
    objects: at exit that kills the process (see `_leave`). Waiting out the worker's
    references keeps every tensor of ours freed here, by the caller's thread.
    (nccl is not waited on: it retires its works from a watchdog thread, on its own
    schedule, and the failure was gloo's.)"""
    global _settle
    if not _settle or dist.get_backend() != "gloo":
        run()
        return
    held = [t._use_count() for t in tensors]  # the caller's references
    run()
    deadline, pause = time.monotonic() + SETTLE_LIMIT, 1e-5
    while any(t._use_count() > n for t, n in zip(tensors, held, strict=True)):
        if time.monotonic() > deadline:  # a torch that keeps them for good: stop waiting
            _settle = False
            return
        time.sleep(pause)  # (with the GIL released)
        pause = min(2 * pause, 1e-3)


# ---- the replicated model ------------------------------------------------------------------


class TaskLoss(nn.Module):
    """A task's loss as a module over the task's model, for DistributedDataParallel to drive:
    DDP prepares its gradient reduction in its forward, and our forward is `task.loss`."""

    def __init__(self, task) -> None:
        super().__init__()
        self.model = task.model  # registers the parameters that DDP reduces
        self.task_loss = task.loss

    def forward(self, batch: Any) -> tuple[Tensor, int]:
        return self.task_loss(batch)


def sum_gradients(state, bucket):  # no annotations: DDP compares them to real types, and
    # `from __future__ import annotations` makes them strings (bucket: GradBucket -> Future[Tensor])
    """DDP communication hook: sum a bucket of gradients over ranks (DDP's default averages).
    Each rank's loss is its share of the global mean, so the sum is the global gradient."""
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def replicate(task, device: torch.device) -> nn.Module:
    """DistributedDataParallel over `task.loss`; rank 0's weights are copied to every rank."""
    ids = (
        [torch.cuda.current_device() if device.index is None else device.index]
        if device.type == "cuda"
        else None
    )
    ddp = nn.parallel.DistributedDataParallel(TaskLoss(task), device_ids=ids)
    ddp.register_comm_hook(None, sum_gradients)
    return ddp


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s training randomness (dropout): rank 0 keeps the run's seed."""
    return (
        seed
        if rank == 0
        else int.from_bytes(hashlib.sha256(f"{seed}/{rank}".encode()).digest()[:7], "little")
    )


def weights_digest(model: nn.Module) -> str:
    """A hash of every weight's bytes: equal on two ranks iff their replicas are bitwise equal."""
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]
