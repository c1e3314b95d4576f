"""distributed: language-model training tokens/s on 1 process and on 2 (torchrun, gloo on
the CPU), and, when a CUDA GPU is present, on the GPU against the CPU (and on all GPUs
against one) for the char 2x512 model.

Every figure comes from a real `textrnn train --json --time-budget S` command, under
torchrun for several processes: the tokens it trained on divided by the training seconds it
reports (start-up, tokenizer and process-group set-up excluded; no validation:
--val-fraction 0). The global batch is the same for every subject. One process runs with
every core (OMP_NUM_THREADS = cores) and with one; each of N processes gets cores / N. On a
2-core machine two processes cannot gain over one that uses both cores (and the gradients
cross between them every step); the rows are there to be re-run on larger machines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from itertools import count
from pathlib import Path

import torch

from benchmarks.common import Options, Table, alternate, compare, fmt_ratio, fmt_stats
from benchmarks.schema import COMPARISON, VALUE
from textrnn.paths import data_file

REPO = Path(__file__).resolve().parent.parent
_runs = count()

FIELDS = {  # what `run` writes (see schema.py)
    "settings": {
        **dict.fromkeys(("corpus", "seconds_per_run", "cores", "gpus", "gpu", "reps", "precision"), VALUE),
        "shape": dict.fromkeys(("name", "embed", "hidden", "layers", "batch", "seq"), VALUE),
    },
    "results": [COMPARISON],
}


@dataclass(frozen=True)
class Shape:
    name: str  # row label
    embed: int
    hidden: int
    layers: int
    batch: int  # global batch: sequences per step over all processes
    seq: int


CHAR_2X512 = Shape("char 2x512", embed=128, hidden=512, layers=2, batch=64, seq=128)
QUICK = Shape("char 2x128", embed=64, hidden=128, layers=2, batch=16, seq=64)
TINY = Shape("char tiny 1x32", embed=16, hidden=32, layers=1, batch=8, seq=32)


def budget(opts: Options) -> float:
    """Seconds of training per run."""
    return 0.5 if opts.tiny else 2.0 if opts.quick else 30.0


def run(opts: Options) -> dict:
    corpus = REPO / "corpora/english.txt" if opts.tiny else data_file("tinyshakespeare/input.txt")
    shape = TINY if opts.tiny else QUICK if opts.quick else CHAR_2X512
    cores = os.cpu_count() or 1
    train = partial(_train, corpus, seconds=budget(opts), workdir=opts.workdir)
    cpu = {
        "1 process": train(shape, nproc=1, device="cpu", threads=cores),
        "1 process, 1 thread": train(shape, nproc=1, device="cpu", threads=1),
        "2 processes": train(shape, nproc=2, device="cpu", threads=max(1, cores // 2)),
    }
    runs = alternate(cpu, reps=opts.reps, warmup=False)  # each run has its own first steps
    two = runs["2 processes"]
    results = [
        compare(
            f"{shape.name}, CPU: 2 processes (gloo) / 1 process", "tokens/s", two, runs["1 process"]
        ),
        compare(
            f"{shape.name}, CPU: 2 processes / 1 process of 1 thread",
            "tokens/s",
            two,
            runs["1 process, 1 thread"],
        ),
    ]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus:
        big = TINY if opts.tiny else CHAR_2X512
        devices = {
            "1 GPU": train(big, nproc=1, device="cuda", threads=cores),
            "CPU": train(big, nproc=1, device="cpu", threads=cores),
        }
        if gpus > 1:
            devices[f"{gpus} GPUs"] = train(
                big, nproc=gpus, device="cuda", threads=max(1, cores // gpus)
            )
        runs = alternate(devices, reps=opts.reps, warmup=False)
        results.append(compare(f"{big.name}: 1 GPU / CPU", "tokens/s", runs["1 GPU"], runs["CPU"]))
        if gpus > 1:
            results.append(
                compare(
                    f"{big.name}: {gpus} GPUs (nccl) / 1 GPU",
                    "tokens/s",
                    runs[f"{gpus} GPUs"],
                    runs["1 GPU"],
                )
            )
    return {
        "settings": {
            "corpus": corpus.name,
            "shape": asdict(shape),
            "seconds_per_run": budget(opts),
            "cores": cores,
            "gpus": gpus,
            "gpu": torch.cuda.get_device_name(0) if gpus else None,
            "reps": opts.reps,
            "precision": "auto (bf16 where the CPU/GPU has it, else fp32; fp16 on GPUs without bf16)",
        },
        "results": results,
    }


def _train(
    corpus: Path,
    shape: Shape,
    *,
    nproc: int,
    device: str,
    threads: int,
    seconds: float,
    workdir: Path,
) -> Callable[[], float]:
    """One measurement = one `textrnn train` command; returns its tokens per training second."""

    def measure() -> float:
        out = workdir / f"distributed-{next(_runs)}.ckpt"
        args = [corpus, "--out", out, "--device", device, "--embed", shape.embed, "--hidden", shape.hidden,
                "--layers", shape.layers, "--batch-size", shape.batch, "--seq-len", shape.seq,
                "--time-budget", seconds, "--epochs", 10**6, "--val-fraction", 0, "--quiet", "--json"]  # fmt: skip
        launcher = (
            ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
            if nproc > 1
            else []
        )
        cmd = [sys.executable, *launcher, "-m", "textrnn", "train", *map(str, args)]
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
        summary = json.loads(res.stdout.strip().splitlines()[-1])
        for f in out.parent.glob(out.stem + "*"):
            f.unlink()
        return summary["tokens"] / summary["elapsed"]

    return measure


def table(result: dict) -> Table:
    t = Table(
        "distributed: LM training tokens/s, subject vs baseline (median [min-max])",
        ["case", "subject", "baseline", "ratio"],
    )
    for r in result["results"]:
        t.rows.append(
            [r["case"], fmt_stats(r["textrnn"]), fmt_stats(r["reference"]), fmt_ratio(r["ratio"])]
        )
    shape = result["settings"]["shape"]
    t.notes.append(
        f"{shape['name']}: embed {shape['embed']}, {shape['layers']} x {shape['hidden']} LSTM, global batch "
        f"{shape['batch']} x {shape['seq']} tokens, {result['settings']['seconds_per_run']:g} s of training per run"
    )
    t.notes.append(
        "one process with several threads suffers most when other programs share the cores (its "
        "threads wait for each other at every operation): read its row with the 1-thread row and "
        "the load average of the run"
    )
    gpu = result["settings"]["gpu"]
    t.notes += [
        "tokens/s = tokens trained / training seconds, both from `textrnn train --json`; "
        "the ratio is subject / baseline per repetition (the 'textrnn' and 'reference' of the JSON).",
        "CPU threads: one process takes every core, each of N processes cores / N (OMP_NUM_THREADS).",
        f"GPU: {gpu}" if gpu else "no GPU on the machine: GPU rows are absent",
    ]
    return t


def headline(result: dict) -> list[list[str]]:
    row = result["results"][0]  # 2 processes against 1 process with every core
    shape = result["settings"]["shape"]["name"]
    cores = result["settings"]["cores"]
    return [[
        f"LM training on 2 processes (torchrun, gloo) vs 1 process with all {cores} cores, {shape} (tokens/s)",
        fmt_stats(row["textrnn"]),
        "",
        fmt_stats(row["reference"]),
        f"{row['ratio']['median']:.2f}x" + (" (no gain expected on 2 cores)" if cores <= 2 else ""),
    ]]  # fmt: skip
