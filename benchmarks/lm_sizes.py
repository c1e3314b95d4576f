"""lm_sizes: the sweep that `textrnn train`'s budget rule is fitted on (issue 21).

Every language-model shape of a ladder, at every training budget, on two different texts
and at two token levels (chars, words): which shape gives the lowest held-out nats/char
for the time? Each run is `textrnn train train.txt --time-budget B --hidden H ...` on one
thread; two runs go side by side on the two cores (each is timed against its own budget,
so the steps it made are what it could do on one core beside another busy one). The rule
`textrnn.tasks.lm.budget` uses is stated in steps, not seconds, so that it carries to
other speeds: a run's quality depends on its shape and the steps it made, and the time
only decides how many steps a shape gets. `fit` reads the sweep into that rule.

Texts: tiny-shakespeare (1.1 MB of English verse) and the sentences of the Hindi PUD
treebank (`# text =` lines, 90k characters of Devanagari news), each cut by the peers'
split (train ~81%, valid ~9% unused here, the held-out last ~10%). Scoring: the peers'
scorer (peer_score.score_textrnn), in a subprocess beside the next run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import peer_runs
from benchmarks.common import Options, Table, fmt_num
from benchmarks.schema import VALUE
from textrnn.tasks.lm import budget as sizing

ROOT = Path(__file__).resolve().parent.parent
BUDGETS = (60.0, 300.0)
QUICK_BUDGETS = (10.0,)
TINY_BUDGETS = (2.0,)
WORKERS = 2  # runs side by side, one thread each
TEXTS = ("tinyshakespeare", "hindi_pud")  # of peer_runs.TEXTS
TIME_BOUND = 0.9  # a run that trained this share of its budget was ended by the budget
LADDER = {level: sizing.LADDER[level] for level in ("char", "word")}  # the rule's own ladders
TINY_LADDER = {"char": (32, 64), "word": (32, 64)}
EARLIER = {  # what a result's ladder measured, when it is not today's
    "word": "a run of the AdamW, tied word models of before the move to SGD: its fit is now the "
            "subword rule",
}

_RUN = ("text", "level", "budget_s", "hidden", "embed", "command", "steps", "epochs",
        "best_step", "train_s", "tokens", "step_s", "nats_per_char", "params", "model")  # fmt: skip
FIELDS = {
    "settings": {
        **dict.fromkeys(("budgets_s", "workers", "threads_per_run"), VALUE),
        "ladder": {"*": VALUE},
        "texts": {"*": dict.fromkeys(("source", "train_chars", "heldout_chars"), VALUE)},
    },
    "runs": [dict.fromkeys(_RUN, VALUE)],
}


def run(opts: Options) -> dict:
    budgets = opts.budgets or (TINY_BUDGETS if opts.tiny else QUICK_BUDGETS if opts.quick else BUDGETS)
    ladder = TINY_LADDER if opts.tiny else LADDER
    texts, jobs = {}, []
    for name in TEXTS:
        source = peer_runs.TEXTS[name]
        text = peer_runs.read_corpus(source)
        if opts.tiny or opts.quick:
            text = text[: text.rfind("\n", 0, 30_000 if opts.tiny else 200_000) + 1]
        split, info = peer_runs.write_split(text, opts.workdir / name / "data")
        texts[name] = {"source": source, "train_chars": info["train_chars"],
                       "heldout_chars": info["heldout_chars"]}  # fmt: skip
        for budget in budgets:
            for level, sizes in ladder.items():
                jobs += [(name, split, level, budget, h) for h in sizes]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        runs = list(pool.map(lambda job: _one(opts.workdir, *job), jobs))
    return {
        "settings": {"budgets_s": list(budgets), "workers": WORKERS, "threads_per_run": 1,
                     "ladder": {k: list(v) for k, v in ladder.items()}, "texts": texts},  # fmt: skip
        "runs": runs,
    }


def _one(workdir: Path, name: str, split: peer_runs.Split, level: str, budget: float, hidden: int) -> dict:
    """Train one shape for one budget on one thread, then score it on the held-out text."""
    folder = workdir / name / f"{level}-{budget:g}s-h{hidden}"
    folder.mkdir(parents=True, exist_ok=True)
    shape = {"embed": 128, **sizing.shape_for(level, hidden)}  # what the rule would give this size
    embed = shape["embed"]
    options = [part for key, value in shape.items() for part in (f"--{key}", f"{value:g}")]
    cmd = [sys.executable, "-m", "textrnn", "train", str(split.train), "--time-budget", f"{budget:g}",
           *options, "--out", "model.ckpt", "--quiet", "--json",
           *(["--tokenizer", "word"] if level == "word" else [])]  # fmt: skip
    out, _ = peer_runs.run(cmd, folder, threads=1, timeout=budget * 3 + 600)
    trained = json.loads(out)
    score = [sys.executable, "-c", "import json, sys; from benchmarks.peer_score import score_textrnn; "
             "print(json.dumps(score_textrnn(sys.argv[1], sys.argv[2])))", str(split.test), "model.ckpt"]  # fmt: skip
    env = {**peer_runs.thread_env(1), "PYTHONPATH": str(ROOT)}  # the benchmarks package
    scored = json.loads(subprocess.run(score, cwd=folder, env=env, check=True, capture_output=True,
                                       text=True).stdout)  # fmt: skip
    return {
        "text": name,
        "level": level,
        "budget_s": budget,
        "hidden": hidden,
        "embed": embed,
        "command": peer_runs.shown(cmd, 1).replace("python -m textrnn", "textrnn"),
        "steps": trained["steps"],
        "epochs": trained["epochs"],
        "best_step": trained["best_step"],
        "train_s": trained["elapsed"],
        "tokens": trained["tokens"],
        "step_s": trained["elapsed"] / max(trained["steps"], 1),
        "nats_per_char": scored["nats_per_char"],
        "params": scored["params"],
        "model": scored["model"],
    }


def cell(run: dict) -> tuple[str, str, float]:
    """The cell of the sweep a run belongs to: its text, level and budget."""
    return run["text"], run["level"], run["budget_s"]


def cell_runs(result: dict, key: tuple[str, str, float]) -> list[dict]:
    """The runs of one cell, smallest size first."""
    return sorted((r for r in result["runs"] if cell(r) == key), key=lambda r: r["hidden"])


def best_runs(result: dict) -> list[dict]:
    """The lowest held-out nats/char of each text, level and budget."""
    cells: dict[tuple, dict] = {}
    for r in result["runs"]:
        key = cell(r)
        if key not in cells or r["nats_per_char"] < cells[key]["nats_per_char"]:
            cells[key] = r
    return list(cells.values())


def table(result: dict) -> Table:
    t = Table(
        "lm_sizes: held-out nats/char of each hidden size at each budget (1 thread per run)",
        ["text / level / budget s", "hidden", "params", "steps", "epochs", "s/step", "held-out nats/char", "best"],
    )  # fmt: skip
    best = {id(r) for r in best_runs(result)}
    for r in result["runs"]:
        t.rows.append([
            f"{r['text']} / {r['level']} / {r['budget_s']:g}",
            str(r["hidden"]),
            fmt_num(r["params"]),
            str(r["steps"]),
            fmt_num(r["epochs"]),
            f"{r['step_s']:.3f}",
            f"{r['nats_per_char']:.4f}",
            "best" if id(r) in best else "",
        ])  # fmt: skip
    for level, f in fit(result).items():
        t.notes.append(
            f"rule fitted for {level} models: the best size makes S = {f['scale']:.3g} x R^{f['power']:.3f} "
            f"steps, R = the steps the smallest size makes in the same budget (cells: "
            + ", ".join(f"R {c['smallest_steps']} -> S {c['best_steps']}" for c in f["cells"]) + ")"
        )
    capped = sorted({f"{r['text']} / {r['level']} / {r['budget_s']:g}" for r in result["runs"]
                     if r["hidden"] == min(result["settings"]["ladder"][r["level"]]) and not time_bound(r)})  # fmt: skip
    if capped:
        t.notes.append("left out of the fit (the smallest size stopped at its epoch limit before the "
                       "budget, so the cell does not measure the budget): " + "; ".join(capped))  # fmt: skip
    t.notes += [
        "each run: one thread, two runs side by side on the two cores; held-out text: the last ~10% "
        "of each text, scored by the peers' scorer; every option but those of the size (--hidden, and "
        "--embed as the rule gives it) is the level's default.",
        "plot (written beside this file when matplotlib is installed): ![held-out nats/char against "
        "steps for each size](lm_sizes.png)",
    ]
    return t


def time_bound(run: dict) -> bool:
    """Whether the budget ended a run (not its epoch limit, as 20 epochs of a small text
    did before a time budget lifted that limit): only such cells measure what a budget buys."""
    return run["train_s"] >= TIME_BOUND * run["budget_s"]


def fit(result: dict) -> dict[str, dict]:
    """The rule, per level: the steps S the best size made in each cell (text, budget)
    against the steps R the smallest size made there (the compute of the cell, counted in
    the one unit every device can probe), fitted as S = scale * R ** power (least squares
    in logs; with one budget only, power 0 and the geometric mean). Cells whose smallest
    size stopped before its budget (`time_bound`) are left out."""
    cells: dict[str, list[tuple[float, float]]] = {}
    for best in best_runs(result):
        smallest = cell_runs(result, cell(best))[0]
        if not time_bound(smallest):
            continue
        cells.setdefault(best["level"], []).append((smallest["steps"], best["steps"]))
    out = {}
    for level, pairs in cells.items():
        x = [math.log(max(r, 1)) for r, _ in pairs]
        y = [math.log(max(s, 1)) for _, s in pairs]
        mx, my = sum(x) / len(x), sum(y) / len(y)
        var = sum((v - mx) ** 2 for v in x)
        power = sum((u - mx) * (v - my) for u, v in zip(x, y, strict=True)) / var if var else 0.0
        out[level] = {"scale": math.exp(my - power * mx), "power": power,
                      "cells": [{"smallest_steps": r, "best_steps": s} for r, s in pairs]}  # fmt: skip
    return out


def plot(result: dict, folder: Path) -> None:
    """Held-out nats/char against steps made, one line per text, level and budget (the
    best size of each marked), if matplotlib is available."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    levels = list(result["settings"]["ladder"])
    fig, axes = plt.subplots(1, len(levels), figsize=(5 * len(levels), 3.8))
    best = {id(r) for r in best_runs(result)}
    for ax, level in zip(axes, levels, strict=True):
        cells = sorted({(r["text"], r["budget_s"]) for r in result["runs"] if r["level"] == level})
        for text, budget in cells:
            runs = cell_runs(result, (text, level, budget))
            line, = ax.plot([r["steps"] for r in runs], [r["nats_per_char"] for r in runs], "o-",
                            label=f"{text}, {budget:g} s")  # fmt: skip
            for r in runs:
                ax.annotate(str(r["hidden"]), (r["steps"], r["nats_per_char"]), fontsize=7)
                if id(r) in best:
                    ax.plot(r["steps"], r["nats_per_char"], "*", markersize=14, color=line.get_color())
        ax.set(xscale="log", xlabel="steps made in the budget (labels: hidden size)",
               ylabel="held-out nats/char", title=f"{level} models, one thread")  # fmt: skip
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "lm_sizes.png", dpi=100)
    plt.close(fig)


def headline(result: dict) -> list[list[str]]:
    """One README row per text and level: the best size at each budget, and the fitted rule."""
    rules = fit(result)
    rows = []
    for text, level in dict.fromkeys((r["text"], r["level"]) for r in result["runs"]):
        best = sorted((r for r in best_runs(result) if (r["text"], r["level"]) == (text, level)),
                      key=lambda r: r["budget_s"])  # fmt: skip
        rule = rules.get(level)
        smallest = [r for r in result["runs"] if (r["text"], r["level"]) == (text, level)
                    and r["hidden"] == min(result["settings"]["ladder"][level])]  # fmt: skip
        fitted = all(time_bound(r) for r in smallest)
        smoke = result.get("tiny") or result.get("quick")
        earlier = not smoke and tuple(result["settings"]["ladder"][level]) != LADDER[level]
        rows.append([
            f"best {level} LM size for the budget on {text}, one thread (held-out nats/char)"
            + (f" ({EARLIER[level]})" if earlier and level in EARLIER else ""),
            ", ".join(f"{r['budget_s']:g} s: hidden {r['hidden']} ({r['nats_per_char']:.4f}, {r['steps']} steps)"
                      for r in best),
            "held-out (never trained on; chose the sizes and the rule)" if fitted else
            "held-out (never trained on; the runs stopped at 20 epochs, before the budget: not in the rule's fit)",
            f"ladder {', '.join(map(str, result['settings']['ladder'][level]))}",
            f"rule: steps = {rule['scale']:.3g} x R^{rule['power']:.3f}" if rule else "",
        ])  # fmt: skip
    return rows
