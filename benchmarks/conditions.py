"""Run conditions, recorded by the harness in every area's JSON (never typed in): threads, CPU
pinning, the CPU time other processes took on this run's CPUs while it ran, and the git
commit and whether the tree held uncommitted changes."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
# What the harness itself writes: not a change to the code that measured.
GENERATED = ("README.md", "benchmarks/RESULTS.md", "benchmarks/out/")
MAX_DIRTY_FILES = 20  # changed files listed by name


def parse_cpus(text: str) -> set[int]:
    """'1' -> {1}; '0,2-3' -> {0, 2, 3} (the notation of taskset -c)."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"not a CPU list: {text!r} (e.g. 1 or 0,2-3)")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def pin(cpus: set[int]) -> None:
    """Run this process, and every process it starts, on `cpus` only; their torch threads
    (OMP_NUM_THREADS, inherited by subprocesses) default to one per pinned CPU."""
    os.sched_setaffinity(0, cpus)
    os.environ["OMP_NUM_THREADS"] = str(len(cpus))


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


class Meter:
    """The CPU seconds that other processes spent on this run's CPUs between start and `stop`:
    busy time of those CPUs in /proc/stat minus this process's and its children's own."""

    def __init__(self) -> None:
        self.cpus = allowed_cpus()
        self.busy, self.own, self.wall = _busy_s(self.cpus), _own_s(), time.perf_counter()

    def stop(self) -> dict:
        busy, own, wall = _busy_s(self.cpus), _own_s(), time.perf_counter()
        if busy is None or self.busy is None:
            return {"other_cpu_s": None, "other_load": None}
        other = max(0.0, (busy - self.busy) - (own - self.own))
        return {
            "other_cpu_s": round(other, 1),
            "other_load": round(other / max(wall - self.wall, 1e-9), 2),  # CPUs kept busy, on average
        }


def _busy_s(cpus: list[int]) -> float | None:
    """Seconds the given CPUs spent busy since boot (user, nice, system, irq, softirq, steal)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    ticks = 0
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
            ticks += user + nice + system + irq + softirq + steal
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def git_state() -> dict:
    """The commit and the uncommitted changes to tracked files (outputs of the harness aside)."""
    try:
        commit = _git("rev-parse", "HEAD").strip()
        changed = [line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()]
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None, "git_dirty_files": None}
    changed = [p for p in changed if not p.startswith(GENERATED) and not _is_plot(p)]
    return {
        "git_commit": commit,
        "git_dirty": bool(changed),
        "git_dirty_files": changed[:MAX_DIRTY_FILES],
    }


def _is_plot(path: str) -> bool:
    return path.startswith("benchmarks/") and path.endswith(".png")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
    ).stdout


def start(*, pinned: bool) -> tuple[Meter, dict]:
    """Begin measuring an area's run: its meter and the conditions known at the start."""
    return Meter(), {
        "threads": torch.get_num_threads(),
        "cpus_allowed": allowed_cpus(),
        "pinned": pinned,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        **git_state(),
    }
