"""generate_speed: sampling and beam-search tokens/s of char models, against every reference a
user might write.

Models: the default char model of `textrnn train` (DEFAULT_MODEL["char"], a 2x640 GRU) and a
2x512 LSTM (the model of the earlier runs, for continuity). textrnn: each model saved and
loaded through a checkpoint as `textrnn sample` loads it (its default precision, `auto`:
int8 weights on x86 CPUs; for batch 1 also fp32 and bf16), then `textrnn.tasks.lm.generate`
(LMStepper + decoding.sample + text assembly) and `beam_generate`. References, with the
same weights (`reference.py`), each at the run's torch threads and at one thread:

- the fused `nn.GRU` / `nn.LSTM` module called once per token on a (B, 1) input, in fp32;
- the same under `torch.autocast("cpu", torch.bfloat16)`;
- one `nn.GRUCell` / `nn.LSTMCell` per layer stepped in a loop under `torch.inference_mode()`.

Sampling is softmax + torch.multinomial; beam search runs textrnn's own
`decoding.beam_search` over the reference's step, so its ratio isolates the step. The
headline of each case is its ratio against the fastest reference. Random weights: speed
does not depend on them.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
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
from benchmarks.schema import VALUE, comparison
from textrnn.config import config_to_dict
from textrnn.engine.checkpoint import Checkpoint, save_checkpoint
from textrnn.engine.decoding.beam import BeamConfig, beam_search
from textrnn.models.lm import LanguageModel, LMConfig
from textrnn.tasks.lm import (
    DEFAULT_MODEL,
    GenerateConfig,
    LoadedLM,
    beam_generate,
    generate,
    load,
)
from textrnn.tokenizers import UNK, CharTokenizer

# The 65 characters of tiny-shakespeare, after <unk>.
VOCAB = [UNK, "\n", " ", *"!$&',-.3:;?", *string.ascii_uppercase, *string.ascii_lowercase]

TARGETS = {"b1_ratio": 8.0, "b1_abs": 1500.0, "beam_abs": 500.0}  # the project issue's
REFERENCES = ("fused fp32", "fused bf16", "cell loop")  # see reference.py and the docstring
TASKS = {  # case -> its label
    "sample": "sample, batch 1",
    "batch": "sample, {batch} samples as one batch",
    "beam": "beam search, width {beam}",
}

FIELDS = {  # what `run` writes (see schema.py)
    "settings": {
        "models": [dict.fromkeys(("name", "cell", "embed", "hidden", "layers", "parameters"), VALUE)],
        **dict.fromkeys(("vocab_size", "length", "batch", "batch_length", "beam", "beam_length", "reps",
                         "reference_threads"), VALUE),
        # before issue 20: one 2x512 LSTM
        "model": dict.fromkeys(("embed", "hidden", "layers"), VALUE),
        "parameters": VALUE,
    },  # fmt: skip
    "results": [
        comparison("model", "task", "precision", "against", "against_threads", "tokens", "absolute_target",
                   "reference_precision", "threads")  # (the last two: before issue 20)
    ],  # fmt: skip
}


def settings(opts: Options) -> dict:
    """Models and lengths (tokens per row) for this run."""
    gru = {k: DEFAULT_MODEL["char"][k] for k in ("cell", "embed", "hidden", "layers")}
    lstm = {"cell": "lstm", "embed": 128, "hidden": 512, "layers": 2}
    if opts.tiny:
        gru, lstm = ({**m, "embed": 16, "hidden": 32} for m in (gru, lstm))
    name = lambda m: f"{m['cell'].upper()} {m['layers']}x{m['hidden']}"  # noqa: E731
    length, batch_length, beam_length = (
        (8, 4, 4) if opts.tiny else (200, 100, 100) if opts.quick else (1000, 300, 300)
    )
    return {
        "models": [{"name": name(gru) + " (default)", **gru}, {"name": name(lstm), **lstm}],
        "length": length,  # batch-1 sampling
        "batch": 16,
        "batch_length": batch_length,
        "beam": 5,
        "beam_length": beam_length,
    }


def run(opts: Options) -> dict:
    s = settings(opts)
    tok = CharTokenizer(VOCAB, unit="codepoint")
    threads = sorted({torch.get_num_threads(), 1}, reverse=True)
    first = tok.encode("\n")[0]  # what generate() starts from without a prompt
    results = []
    for m in s["models"]:
        lms = _textrnn_models(m, tok, opts.workdir / "generate_speed.ckpt")
        plain = reference.PlainLM(tok.vocab_size, embed=m["embed"], hidden=m["hidden"], layers=m["layers"],
                                  cell=m["cell"])  # fmt: skip
        plain.load_textrnn_weights(lms["auto"].model.state_dict())
        plain.eval()
        cells = reference.CellLM(plain).eval()
        refs = {(kind, n): (cells if kind == "cell loop" else plain, kind == "fused bf16", n)
                for kind in REFERENCES for n in threads}  # fmt: skip
        for task in TASKS:
            subjects = lms if task == "sample" else {"auto": lms["auto"]}
            results += _group(m["name"], task, subjects, refs, first, s, opts.reps)
    return {
        "settings": {**s, "vocab_size": tok.vocab_size, "reps": opts.reps, "reference_threads": threads},
        "results": results,
    }


def _textrnn_models(m: dict, tok: CharTokenizer, path) -> dict[str, LoadedLM]:
    """Model `m` with random weights, saved and loaded as `textrnn sample` loads it: "auto"
    (its default precision here), and fp32 and bf16 where they differ from it and the CPU has
    them. Records the model's parameter count in `m`."""
    torch.manual_seed(0)
    shape = {k: m[k] for k in ("cell", "embed", "hidden", "layers")}
    model = LanguageModel(LMConfig(vocab_size=tok.vocab_size, dropout=0.0, **shape))
    m["parameters"] = model.num_parameters()
    meta = {"model_config": config_to_dict(model.config), "tokenizers": {"text": tok.to_dict()}}
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(path, Checkpoint(task="lm", meta=meta, tensors=tensors))
    lms = {"auto": load(path, precision="auto")}
    for precision in ("fp32", "bf16"):
        lm = load(path, precision=precision)
        if lm.precision == precision and precision != lms["auto"].precision:
            lms[precision] = lm
    return lms


def _group(
    model: str, task: str, lms: dict[str, LoadedLM], refs: dict, first: int, s: dict, reps: int
) -> list[dict]:
    """Every textrnn subject and every reference of one case, alternated; one row per pair."""
    rows = 1 if task != "batch" else s["batch"]
    length = {"sample": s["length"], "batch": s["batch_length"], "beam": s["beam_length"]}[task]
    banned = sorted(lms["auto"].tokenizer.special_ids)
    subjects = {
        key: _textrnn_beam(lm, s["beam"], length) if task == "beam" else _textrnn_sample(lm, length, rows)
        for key, lm in lms.items()
    }
    for key, (ref, bf16, n) in refs.items():
        if task == "beam":
            fn = _plain_beam(ref, first, s["beam"], length, banned)
        else:
            fn = _plain_sample(ref, first, length, rows)
        subjects[key] = _with(fn, threads=n, bf16=bf16)
    runs = alternate(subjects, reps=reps)
    label = TASKS[task].format(**s)
    out, most = [], max(n for _, n in refs)  # the 8x: against nn.LSTM fp32 on every core
    for key, lm in lms.items():
        default, b1 = key == "auto", task == "sample"
        absolute = TARGETS["b1_abs"] if b1 else TARGETS["beam_abs"] if task == "beam" else None
        for kind, n in refs:
            out.append(compare(
                f"{model}: {label}, {lm.precision} weights vs {kind}, {n} thread{'s' if n > 1 else ''}",
                "tokens/s", runs[key], runs[(kind, n)], model=model, task=task, precision=lm.precision,
                against=kind, against_threads=n, tokens=rows * length,
                target=TARGETS["b1_ratio"] if default and b1 and kind == "fused fp32" and n == most else None,
                absolute_target=absolute if default else None,
            ))  # fmt: skip
    return out


def _textrnn_sample(lm: LoadedLM, length: int, rows: int) -> Callable[[], float]:
    def go() -> float:
        start = _now()
        out = generate(lm, config=GenerateConfig(length=length, num_samples=rows, seed=1))
        return sum(g.tokens for g in out) / (_now() - start)

    return go


def _textrnn_beam(lm: LoadedLM, beam: int, length: int) -> Callable[[], float]:
    cfg = BeamConfig(beam=beam, max_length=length)

    def go() -> float:
        start = _now()
        (_, hyp), *_ = beam_generate(lm, beam=cfg)
        return len(hyp.tokens) / (_now() - start)

    return go


def _plain_sample(ref, first: int, length: int, rows: int) -> Callable[[], float]:
    def go() -> float:
        gen = torch.Generator().manual_seed(1)
        start = _now()
        out = reference.sample(ref, first, length=length, rows=rows, generator=gen)
        return len(out) * rows / (_now() - start)

    return go


def _plain_beam(ref, first: int, beam: int, length: int, banned: list[int]) -> Callable[[], float]:
    cfg = BeamConfig(beam=beam, max_length=length)

    def go() -> float:
        with torch.inference_mode():
            start = _now()
            hyp = beam_search(ref.step, ref.reorder, ref.initial_state(1), first, config=cfg,
                                       banned_ids=banned)[0]  # fmt: skip
            return len(hyp.tokens) / (_now() - start)

    return go


def _with(fn: Callable[[], float], *, threads: int, bf16: bool) -> Callable[[], float]:
    def go() -> float:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with _threads(threads), autocast:
            return fn()

    return go


@contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---- report -------------------------------------------------------------------------------------------

REF_LABELS = {"fused fp32": "nn.{X} per step, fp32", "fused bf16": "nn.{X} per step, bf16 autocast",
              "cell loop": "nn.{X}Cell loop, inference_mode"}  # fmt: skip


def ref_label(row: dict) -> str:
    cell = "GRU" if row["model"].startswith("GRU") else "LSTM"
    n = row["against_threads"]
    return REF_LABELS[row["against"]].format(X=cell) + f", {n} thread{'s' if n > 1 else ''}"


def fastest(result: dict) -> list[tuple[dict, list[dict]]]:
    """Each case (model, task, textrnn precision) with its rows: (row of the fastest reference, rows)."""
    groups: dict[tuple, list[dict]] = {}
    for row in result["results"]:
        groups.setdefault((row["model"], row["task"], row["precision"]), []).append(row)
    return [(max(rows, key=lambda r: r["reference"]["median"]), rows) for rows in groups.values()]


def table(result: dict) -> Table | list[Table]:
    if not result["results"] or "against" not in result["results"][0]:
        return _legacy_table(result)
    s = result["settings"]
    main = Table(
        "generate_speed: tokens/s, textrnn against the fastest reference of each case (median [min-max])",
        ["case", "textrnn", "fastest reference", "its tokens/s", "ratio", "target"],
    )
    full = Table(
        "generate_speed: every reference (tokens/s, and textrnn's ratio to it)",
        ["case", "textrnn", *[REF_LABELS[k].format(X="X") for k in REFERENCES]],
    )
    for best, rows in fastest(result):
        case = f"{best['model']}: {TASKS[best['task']].format(**s)}, {best['precision']}"
        targets = [f"{fmt_target(r)} against {ref_label(r)} (issue)" for r in rows if r.get("target_ratio")]
        if best.get("absolute_target"):
            ok = best["textrnn"]["median"] >= best["absolute_target"]
            targets.append(f">= {fmt_num(best['absolute_target'])} tok/s: {'yes' if ok else 'NO'}")
        main.rows.append([case, fmt_stats(best["textrnn"]), ref_label(best), fmt_stats(best["reference"]),
                          fmt_ratio(best["ratio"]), "; ".join(targets)])  # fmt: skip
        for n in s["reference_threads"]:
            cells = {r["against"]: r for r in rows if r["against_threads"] == n}
            full.rows.append([f"{case}; references on {n} thread{'s' if n > 1 else ''}", fmt_num(best["textrnn"]["median"]),
                              *[f"{fmt_num(cells[k]['reference']['median'])} ({cells[k]['ratio']['median']:.2f}x)"
                                for k in REFERENCES]])  # fmt: skip
    notes = [
        "tokens/s counts generated tokens (all rows for batched sampling; decoding steps of the best hypothesis "
        "for beam search); untrained random weights; X is GRU or LSTM as the model.",
        "textrnn runs as `textrnn sample` does: one thread for up to 64 rows (samples x beam), whatever the "
        "run's threads; its precision is `--precision auto` (int8 weights on x86 CPUs) unless the case names "
        "another; int8: the stepper's large matrices in int8 with a scale per output unit (fbgemm); bf16: "
        "those matrices in bf16, prepacked for oneDNN; state, biases and logits stay fp32.",
        "references (benchmarks/reference.py), same weights: the fused module called once per token on a (B, 1) "
        "input, in fp32 and under torch.autocast bf16; a loop of nn.GRUCell/nn.LSTMCell steps under "
        "torch.inference_mode(); softmax + torch.multinomial; beam search: textrnn's decoding.beam_search over "
        "the reference's step.",
    ]
    main.notes += notes
    return [main, full]


def _legacy_table(result: dict) -> Table:
    """A run from before issue 20: one 2x512 LSTM against the per-step fused nn.LSTM in fp32 only."""
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
    m = result["settings"]["model"]
    t.notes += [
        f"a run from before issue 20: a char {m['layers']}x{m['hidden']} LSTM (not the default model) against "
        "one reference only, the fused nn.LSTM called once per token in fp32 (bf16 autocast where a row says "
        "so); no nn.LSTMCell loop was measured.",
        "tokens/s counts generated tokens (all rows for batched sampling; decoding steps of the best hypothesis "
        "for beam search); untrained random weights.",
    ]
    return t


def headline(result: dict) -> list[list[str]]:
    if not result["results"] or "against" not in result["results"][0]:
        return _legacy_headline(result)
    s, out = result["settings"], []
    default = {r["model"]: r["precision"] for r in result["results"] if r["task"] == "beam"}  # auto's
    for best, _ in fastest(result):
        if best["model"] != s["models"][0]["name"] or best["precision"] != default[best["model"]]:
            continue  # the default model at textrnn sample's default precision only
        out.append([
            f"{TASKS[best['task']].format(**s)}, char {best['model']}, {best['precision']} (tokens/s)",
            fmt_stats(best["textrnn"]), "",
            f"fastest of {len(REFERENCES) * len(s['reference_threads'])}: {ref_label(best)}: "
            f"{fmt_num(best['reference']['median'])}",
            f"{best['ratio']['median']:.2f}x",
        ])  # fmt: skip
    return out


def _legacy_headline(result: dict) -> list[list[str]]:
    """The default-precision cases of a run from before issue 20, each against its fastest reference."""
    cases = {"sample, batch 1": "default here", "16 samples": "one batch", "beam search": "beam search"}
    out = []
    for label, needle in cases.items():
        rows = [r for r in result["results"] if needle in r["case"]]
        if not rows:
            continue
        best = max(rows, key=lambda r: r["reference"]["median"])
        bf16 = "under bf16 autocast" in best["case"]
        out.append([
            f"{label}, char LSTM 2x512 (not the default model: an older run), int8 (tokens/s)",
            fmt_stats(best["textrnn"]), "",
            f"fastest that run measured: nn.LSTM per step, {'bf16 autocast' if bf16 else 'fp32'}: "
            f"{fmt_num(best['reference']['median'])}",
            f"{best['ratio']['median']:.2f}x",
        ])  # fmt: skip
    return out
