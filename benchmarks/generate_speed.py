"""generate_speed: sampling and beam-search tokens/s of a char 2x512 LSTM.

textrnn: the model is saved and loaded through a checkpoint, then `textrnn.tasks.lm.generate`
(LMStepper + decoding.sample + text assembly, the path of `textrnn sample`) and
`textrnn.tasks.lm.beam_generate`. Reference: a plain `nn.LSTM` module with the same
weights called once per token with a (B, 1) input, then softmax and multinomial;
for beam search, textrnn's own `decoding.beam_search` over that plain step, so the
ratio isolates what the stepper gains. Random weights: speed does not depend on them.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from contextlib import contextmanager
from time import perf_counter as _now

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
)
from textrnn.config import config_to_dict
from textrnn.engine import decoding
from textrnn.engine.checkpoint import Checkpoint, save_checkpoint
from textrnn.models.lm import LanguageModel, LMConfig, LMStepper
from textrnn.tasks.lm import GenerateConfig, LoadedLM, beam_generate, generate, load_lm
from textrnn.tokenizers import UNK, CharTokenizer

# The 65 characters of tiny-shakespeare, after <unk>.
VOCAB = [UNK, "\n", " ", *"!$&',-.3:;?", *string.ascii_uppercase, *string.ascii_lowercase]

TARGETS = {"b1_ratio": 8.0, "b1_abs": 1500.0, "beam_abs": 500.0}


def settings(opts: Options) -> dict:
    """Model shape and lengths (tokens per row) for this run."""
    model = (
        {"embed": 16, "hidden": 32, "layers": 2}
        if opts.tiny
        else {"embed": 128, "hidden": 512, "layers": 2}
    )
    length, batch_length, beam_length = (
        (40, 20, 20) if opts.tiny else (200, 100, 100) if opts.quick else (1000, 300, 300)
    )
    return {
        "model": model,
        "length": length,  # batch-1 sampling
        "batch": 16,
        "batch_length": batch_length,
        "beam": 5,
        "beam_length": beam_length,
    }


def run(opts: Options) -> dict:
    s = settings(opts)
    torch.manual_seed(0)
    tok = CharTokenizer(VOCAB, unit="codepoint")
    model = LanguageModel(LMConfig(vocab_size=tok.vocab_size, dropout=0.0, **s["model"]))
    path = opts.workdir / "generate_speed.ckpt"
    meta = {"model_config": config_to_dict(model.config), "tokenizers": {"text": tok.to_dict()}}
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(path, Checkpoint(task="lm", meta=meta, tensors=tensors))
    lm = load_lm(path)  # fp32
    fast = load_lm(path, precision="auto")  # textrnn sample's default: int8 on x86 CPUs
    lm16 = load_lm(path, precision="bf16")  # fp32 again where the CPU lacks native bf16
    plain = reference.PlainLM(tok.vocab_size, **s["model"])
    plain.load_textrnn_weights(lm.model.state_dict())
    plain.eval()
    first = tok.encode("\n")[0]  # what generate() starts from without a prompt

    results = [
        _sample_b1(lm, plain, first, s, opts.reps),
        *(_sample_b1_fast(fast, plain, first, s, opts.reps) if fast.precision != "fp32" else []),
        *([_sample_b1_precision(lm16, plain, first, s, opts.reps)] if lm16.precision not in ("fp32", fast.precision) else []),
        _sample_b1_core(fast, plain, first, s, opts.reps),
        _sample_b1_one_thread(fast, plain, first, s, opts.reps),
        # batched sampling and beam search as `textrnn sample` runs them by default here
        _sample_batched(fast, plain, first, s, opts.reps),
        _beam(fast, plain, first, s, opts.reps),
    ]
    return {
        "settings": {
            **s,
            "vocab_size": tok.vocab_size,
            "parameters": model.num_parameters(),
            "reps": opts.reps,
        },
        "results": results,
        "notes": [
            "tokens/s counts generated tokens (all rows for batched sampling; decoding steps of the "
            "best hypothesis for beam search); untrained random weights.",
            "reference: plain nn.Embedding + nn.LSTM + nn.Linear with the same weights, one fused "
            "nn.LSTM call per token on a (B, 1) input, softmax, torch.multinomial.",
            "fp32 rows: load_lm(precision='fp32') (textrnn sample --precision fp32); int8 rows: the "
            "stepper's two large matrices in int8 with a scale per output unit, fbgemm's dynamic "
            "linear (textrnn sample's default, auto, on x86 CPUs); bf16 rows: those matrices in bf16, "
            "prepacked for oneDNN; state, biases, the output layer and logits stay fp32.",
        ],
    }


def _rate_generate(lm: LoadedLM, length: int, rows: int) -> Callable[[], float]:
    def go() -> float:
        start = _now()
        out = generate(lm, config=GenerateConfig(length=length, num_samples=rows, seed=1))
        return sum(g.tokens for g in out) / (_now() - start)

    return go


def _rate_plain(
    plain: reference.PlainLM, first: int, length: int, rows: int, *, bf16: bool = False
) -> Callable[[], float]:
    def go() -> float:
        gen = torch.Generator().manual_seed(1)
        start = _now()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = reference.sample(plain, first, length=length, rows=rows, generator=gen)
        return len(out) * rows / (_now() - start)

    return go


def _sample_b1_fast(fast, plain, first, s, reps) -> list[dict]:
    """The default precision here (int8, or bf16 on a CPU without fbgemm) against the plain
    sampler in fp32 and under bf16 autocast."""
    runs = alternate(
        {
            "textrnn": _rate_generate(fast, s["length"], 1),
            "reference": _rate_plain(plain, first, s["length"], 1),
            "reference_bf16": _rate_plain(plain, first, s["length"], 1, bf16=True),
        },
        reps=reps,
    )
    case = f"sample, batch 1, {fast.precision} weights (textrnn sample's default here)"
    return [
        compare(case, "tokens/s", runs["textrnn"], runs["reference"], target=TARGETS["b1_ratio"],
                absolute_target=TARGETS["b1_abs"], tokens=s["length"], precision=fast.precision,
                reference_precision="fp32"),
        compare(case + " vs reference under bf16 autocast", "tokens/s", runs["textrnn"], runs["reference_bf16"],
                tokens=s["length"], precision=fast.precision, reference_precision="bf16"),
    ]  # fmt: skip


def _sample_b1_precision(lm, plain, first, s, reps) -> dict:
    """Another precision than the default (bf16 where int8 is the default), for comparison."""
    runs = alternate(
        {"textrnn": _rate_generate(lm, s["length"], 1), "reference": _rate_plain(plain, first, s["length"], 1)},
        reps=reps,
    )
    return compare(f"sample, batch 1, {lm.precision} weights (--precision {lm.precision})", "tokens/s",
                   runs["textrnn"], runs["reference"], tokens=s["length"], precision=lm.precision)  # fmt: skip


def _sample_b1(lm, plain, first, s, reps) -> dict:
    runs = alternate(
        {
            "textrnn": _rate_generate(lm, s["length"], 1),
            "reference": _rate_plain(plain, first, s["length"], 1),
        },
        reps=reps,
    )
    return compare(
        "sample, batch 1, fp32 (textrnn.lm.generate)",
        "tokens/s",
        runs["textrnn"],
        runs["reference"],
        target=TARGETS["b1_ratio"],
        absolute_target=TARGETS["b1_abs"],
        tokens=s["length"],
    )


def _sample_b1_core(lm, plain, first, s, reps) -> dict:
    """The stepper and sampler alone, without generate()'s text assembly."""

    def core() -> float:
        stepper = LMStepper(lm.model, precision=lm.precision)
        gen = torch.Generator().manual_seed(1)
        start = _now()
        out = decoding.sample(
            stepper.step,
            lm.model.initial_state(1),
            torch.tensor([first]),
            max_new_tokens=s["length"],
            generator=gen,
        )
        return len(out[0].tokens) / (_now() - start)

    runs = alternate(
        {"textrnn": core, "reference": _rate_plain(plain, first, s["length"], 1)}, reps=reps
    )
    return compare(
        f"sample, batch 1, {lm.precision} (LMStepper + decoding.sample only)",
        "tokens/s",
        runs["textrnn"],
        runs["reference"],
        tokens=s["length"],
    )


@contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _sample_b1_one_thread(lm, plain, first, s, reps) -> dict:
    """Batch-1 steps are a few small matrix-vector products: threads may cost more than they give."""
    textrnn, plain_rate = (
        _rate_generate(lm, s["length"], 1),
        _rate_plain(plain, first, s["length"], 1),
    )

    def one_thread(fn: Callable[[], float]) -> Callable[[], float]:
        def go() -> float:
            with _threads(1):
                return fn()

        return go

    runs = alternate(
        {"textrnn": one_thread(textrnn), "reference": one_thread(plain_rate)}, reps=reps
    )
    return compare(
        f"sample, batch 1, {lm.precision}, torch.set_num_threads(1) for both (generate)",
        "tokens/s",
        runs["textrnn"],
        runs["reference"],
        tokens=s["length"],
        threads=1,
    )


def _sample_batched(lm, plain, first, s, reps) -> dict:
    rows, length = s["batch"], s["batch_length"]
    runs = alternate(
        {
            "textrnn": _rate_generate(lm, length, rows),
            "reference": _rate_plain(plain, first, length, rows),
        },
        reps=reps,
    )
    return compare(
        f"sample, {rows} samples as one batch ({lm.precision}, generate)",
        "tokens/s",
        runs["textrnn"],
        runs["reference"],
        tokens=rows * length,
    )


def _beam(lm, plain, first, s, reps) -> dict:
    cfg = decoding.BeamConfig(beam=s["beam"], max_length=s["beam_length"])
    banned = sorted(lm.tokenizer.special_ids)

    def textrnn() -> float:
        start = _now()
        (text, hyp), *_ = beam_generate(lm, beam=cfg)
        return len(hyp.tokens) / (_now() - start)

    def plain_beam() -> float:
        with torch.inference_mode():
            start = _now()
            state = tuple(
                torch.zeros(plain.rnn.num_layers, 1, plain.rnn.hidden_size) for _ in range(2)
            )
            hyp = decoding.beam_search(
                reference.step_fn(plain),
                reference.reorder,
                state,
                first,
                config=cfg,
                banned_ids=banned,
            )[0]
            return len(hyp.tokens) / (_now() - start)

    runs = alternate({"textrnn": textrnn, "reference": plain_beam}, reps=reps)
    return compare(
        f"beam search, width {s['beam']} ({lm.precision}, beam_generate)",
        "tokens/s",
        runs["textrnn"],
        runs["reference"],
        absolute_target=TARGETS["beam_abs"],
        tokens=s["beam_length"],
    )


def table(result: dict) -> Table:
    t = Table(
        "generate_speed: tokens/s, textrnn vs per-step nn.LSTM (median [min-max])",
        ["case", "textrnn", "reference", "ratio", "target"],
    )
    for row in result["results"]:
        targets = [fmt_target(row)]
        if row.get("absolute_target"):
            ok = row["textrnn"]["median"] >= row["absolute_target"]
            targets.append(f">= {fmt_num(row['absolute_target'])} tok/s: {'yes' if ok else 'NO'}")
        t.rows.append(
            [row["case"], fmt_stats(row["textrnn"]), fmt_stats(row["reference"]), fmt_ratio(row["ratio"]),
             "; ".join(x for x in targets if x)]
        )  # fmt: skip
    return t
