"""train_speed: language-model training tokens/s, textrnn's Trainer vs a plain PyTorch loop.

textrnn: the real `Trainer.fit` over an `LMTask` on a corpus encoded by `encode_corpus`,
stopped by `max_steps`; tokens/s is what the Trainer itself reports every `log_every`
steps, and the first report (which covers start-up and the first steps) is dropped.
Reference: nn.Embedding + nn.LSTM + dropout + nn.Linear, AdamW, gradient clipping,
stateful truncated BPTT, at the same shapes and precision (`reference.train_rate`).
Each configuration runs textrnn and reference in bf16 (CPU autocast) and in fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks import reference
from benchmarks.common import (
    Options,
    Table,
    alternate,
    compare,
    fmt_num,
    fmt_ratio,
    fmt_stats,
    fmt_target,
    summarize,
)
from benchmarks.schema import COMPARISON, STATS, VALUE
from textrnn.data.corpus import EncodedCorpus, encode_corpus
from textrnn.engine.config import TrainConfig
from textrnn.engine.progress import Progress
from textrnn.engine.trainer import Trainer
from textrnn.files import fingerprint_file
from textrnn.formats.plain import iter_text_chunks
from textrnn.models.lm import LanguageModel, LMConfig
from textrnn.paths import data_file
from textrnn.tasks.lm import LMTask
from textrnn.tokenizers import Tokenizer, train_tokenizer

TARGET = 0.95
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setup:
    name: str  # row label
    tokenizer: dict  # train_tokenizer arguments
    model: dict  # LMConfig fields besides vocab_size
    batch: int  # sequences per batch
    seq: int  # tokens per sequence (truncated BPTT length)


SETUPS = (
    Setup("char 2x512", {"kind": "char"}, {"embed": 128, "hidden": 512, "layers": 2, "dropout": 0.25}, 64, 128),
    Setup("word 2x650 tied", {"kind": "word", "vocab_size": 10_000},
          {"embed": 650, "hidden": 650, "layers": 2, "dropout": 0.4, "tie_weights": True}, 32, 64),
    Setup("bpe 2x512 tied", {"kind": "bpe", "vocab_size": 4000},
          {"embed": 512, "hidden": 512, "layers": 2, "dropout": 0.3, "tie_weights": True}, 64, 64),
)  # fmt: skip
TINY = {"embed": 32, "hidden": 32}  # --tiny: toy widths, batch 4 x 16

FIELDS = {  # what `run` writes (see schema.py)
    "settings": dict.fromkeys(("corpus", "warmup_steps", "timed_steps", "reps", "device"), VALUE),
    "results": [
        {
            "setup": VALUE,
            "shape": dict.fromkeys(
                ("vocab_size", "cell", "embed", "hidden", "layers", "dropout", "variational",
                 "tie_weights", "batch", "seq"),
                VALUE,
            ),  # fmt: skip
            "parameters": VALUE,
            "corpus_tokens": VALUE,
            "bf16": COMPARISON,
            "fp32": COMPARISON,
            "bf16_gain": {"textrnn": STATS, "reference": STATS},
        }
    ],
}


def steps(opts: Options) -> tuple[int, int]:
    """(log_every, timed windows): a run is log_every * (1 + windows) steps, the first window untimed."""
    if opts.tiny:
        return 1, 2
    if opts.quick:
        return 2, 2
    return 4, 3


def run(opts: Options) -> dict:
    corpus_path = (
        REPO / "corpora/english.txt" if opts.tiny else data_file("tinyshakespeare/input.txt")
    )
    every, windows = steps(opts)
    results = []
    for setup in SETUPS:
        setup = _tiny(setup) if opts.tiny else setup
        results.append(_measure(setup, corpus_path, opts, every=every, windows=windows))
    return {
        "settings": {
            "corpus": str(corpus_path.name),
            "warmup_steps": every,
            "timed_steps": every * windows,
            "reps": opts.reps,
            "device": "cpu",
        },
        "results": results,
    }


def _tiny(setup: Setup) -> Setup:
    """Toy widths and batch for --tiny: the scripts are what is tested, not the library."""
    tokenizer = setup.tokenizer
    if tokenizer["kind"] == "bpe":
        tokenizer = {**tokenizer, "vocab_size": 400}
    name = setup.name.split()[0] + " tiny 2x32"
    return Setup(name, tokenizer, {**setup.model, **TINY}, batch=4, seq=16)


def _measure(setup: Setup, corpus_path: Path, opts: Options, *, every: int, windows: int) -> dict:
    tok = train_tokenizer(texts=iter_text_chunks(corpus_path), **setup.tokenizer)
    corpus = encode_corpus(corpus_path, tok, corpus_sha256=fingerprint_file(corpus_path)["sha256"])
    config = LMConfig(vocab_size=tok.vocab_size, **setup.model)
    ids = torch.from_numpy(np.asarray(corpus.ids, dtype=np.int64))
    subjects = {}
    for precision in ("bf16", "fp32"):
        subjects[f"textrnn {precision}"] = _textrnn(
            corpus,
            tok,
            config,
            setup,
            precision=precision,
            every=every,
            windows=windows,
            workdir=opts.workdir,
        )
        subjects[f"reference {precision}"] = _reference(
            ids, config, setup, bf16=precision == "bf16", every=every, windows=windows
        )
    runs = alternate(subjects, reps=opts.reps, warmup=False)  # every run has its own untimed steps
    gain = {
        who: summarize(
            [b / f for b, f in zip(runs[f"{who} bf16"], runs[f"{who} fp32"], strict=True)]
        )
        for who in ("textrnn", "reference")
    }
    return {
        "setup": setup.name,
        "shape": {
            "vocab_size": tok.vocab_size,
            **setup.model,
            "batch": setup.batch,
            "seq": setup.seq,
        },
        "parameters": LanguageModel(config).num_parameters(),
        "corpus_tokens": corpus.tokens,
        "bf16": compare(
            f"{setup.name} bf16",
            "tokens/s",
            runs["textrnn bf16"],
            runs["reference bf16"],
            target=TARGET,
        ),
        "fp32": compare(
            f"{setup.name} fp32",
            "tokens/s",
            runs["textrnn fp32"],
            runs["reference fp32"],
            target=TARGET,
        ),
        "bf16_gain": gain,
    }


def _textrnn(
    corpus: EncodedCorpus,
    tok: Tokenizer,
    config: LMConfig,
    setup: Setup,
    *,
    precision: str,
    every: int,
    windows: int,
    workdir: Path,
) -> Callable[[], float]:
    """One measurement = one `Trainer.fit` of a fresh model; returns the Trainer's tokens/s."""
    cfg = TrainConfig(
        batch_size=setup.batch,
        seq_len=setup.seq,
        max_steps=every * (1 + windows),
        log_every=every,
        eval_every=10**9,  # no validation inside the timed steps
        val_fraction=0.0,
        patience=0,
        epochs=10**6,
        precision=precision,
    )

    def measure() -> float:
        torch.manual_seed(0)
        model = LanguageModel(config)
        task = LMTask(model, tok, corpus, cfg, corpus_info={}, device=torch.device("cpu"))
        speeds: list[float] = []

        def on_progress(p: Progress) -> None:
            if p.event == "step":
                speeds.append(p.tokens_per_s)

        out = workdir / f"train_speed-{precision}.ckpt"
        Trainer(task, cfg, out=out, device=torch.device("cpu"), on_progress=on_progress).fit()
        timed = speeds[1:]  # the first report has no window before it (and covers start-up)
        if len(timed) != windows:
            raise RuntimeError(
                f"expected {windows} timed progress reports from the Trainer, got {len(timed)}"
            )
        return len(timed) / sum(1.0 / s for s in timed)  # equal tokens per window: harmonic mean

    return measure


def _reference(
    ids: torch.Tensor, config: LMConfig, setup: Setup, *, bf16: bool, every: int, windows: int
) -> Callable[[], float]:
    def measure() -> float:
        torch.manual_seed(0)
        model = reference.PlainLM(
            config.vocab_size,
            embed=config.embed,
            hidden=config.hidden,
            layers=config.layers,
            dropout=config.dropout,
            tie=config.tie_weights,
        )
        return reference.train_rate(
            model,
            ids,
            batch=setup.batch,
            seq=setup.seq,
            warmup=every,
            steps=every * windows,
            bf16=bf16,
        )

    return measure


def table(result: dict) -> Table:
    t = Table(
        "train_speed: training tokens/s, textrnn Trainer vs plain PyTorch loop (median [min-max])",
        ["case", "textrnn", "reference", "ratio", "target", "bf16 gain (textrnn / reference)"],
    )
    for r in result["results"]:
        for precision in ("bf16", "fp32"):
            row = r[precision]
            gain = ""
            if precision == "bf16":
                gain = f"{fmt_ratio(r['bf16_gain']['textrnn'])} / {fmt_ratio(r['bf16_gain']['reference'])}"
            t.rows.append(
                [row["case"], fmt_stats(row["textrnn"]), fmt_stats(row["reference"]), fmt_ratio(row["ratio"]),
                 fmt_target(row), gain]
            )  # fmt: skip
    t.notes += [
        "tokens/s = (batch x seq) tokens per optimizer step; textrnn's figure is the Trainer's own "
        "(Progress.tokens_per_s), its first log window dropped; the reference times the same number "
        "of steps after the same number of untimed ones.",
        "bf16 = torch.autocast('cpu', bfloat16) for both (textrnn --precision bf16); the bf16 gain "
        "is bf16 tokens/s / fp32 tokens/s of the same implementation, per repetition.",
    ]
    return t


def headline(result: dict) -> list[list[str]]:
    rows = result["results"]
    join = " / ".join
    met = all(r["bf16"]["meets_target"] for r in rows)
    return [[
        f"LM training tokens/s, {join(r['setup'] for r in rows)}, bf16",
        join(fmt_num(r["bf16"]["textrnn"]["median"]) for r in rows),
        "",
        "plain PyTorch loop: " + join(fmt_num(r["bf16"]["reference"]["median"]) for r in rows),
        join(f"{r['bf16']['ratio']['median']:.2f}x" for r in rows)
        + f" (target {TARGET:g}x: {'met' if met else 'NOT met'}); bf16 gain "
        + join(f"{r['bf16_gain']['textrnn']['median']:.2f}x" for r in rows),
    ]]  # fmt: skip
