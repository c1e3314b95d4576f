"""Budget-aware model size: with a time budget and no shape options, `textrnn train` picks
the hidden size from the steps each size would make in the budget on this device.

Why steps: a run's held-out loss depends on the model and on how many updates it made;
the device and the threads only decide how many updates a size gets in the time. So the
rule is stated in steps, fitted once on a sweep (`python -m benchmarks lm_sizes`: every
size of the ladder below at 60 s and 300 s on one thread, on tiny-shakespeare and on the
Hindi PUD sentences, chars and words), and carried to any device by a timing probe at
start-up: each size, smallest first, takes a few training steps, and the largest
size whose predicted steps reach `steps_wanted` wins. The probe's time comes out of the
budget. What was chosen and why is printed on the start line and kept in the checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from textrnn.engine.config import TrainConfig
from textrnn.engine.devices import resolve_precision
from textrnn.engine.probe import step_seconds
from textrnn.models.lm import LanguageModel, LMConfig

# The hidden sizes the rule chooses among (the sizes the sweeps measured), per family: char;
# word (untied, trained with SGD: see training.DEFAULT_TRAIN), its embedding as large as its
# hidden size, from the word example's small model (200) to its medium one (650); and
# subword (bpe, unigram: tied, trained with AdamW), on the ladder and rule the word models
# had before they moved to SGD (no sweep measured subwords on their own).
LADDER = {
    "char": (128, 192, 256, 384, 512, 640, 896),
    "word": (200, 300, 400, 650),
    "subword": (64, 128, 256, 384, 512),
}
# How many optimizer steps the best size makes, as a power of the steps R the smallest size
# would make in the same budget (R measures the compute of a budget on a device in a unit
# any device can probe): S = scale * R ** power, fitted on the lm_sizes sweep (see the fit
# in benchmarks/RESULTS.md, lm_sizes). A bigger budget buys both a bigger model and more
# steps for it, as compute-optimal scaling studies find for transformers.
# The run of 2026-12-07 fitted char 11.6 x R^0.539 (60 s: R 419 -> 300 steps, hidden 192;
# 300 s: R 2551 -> 794 steps, hidden 384) and, for the AdamW word models of then (now the
# subword rule), 1.10 x R^0.826 (R 147 -> 68, hidden 384; R 732 -> 256, hidden 512).
# SGD word models want a fixed number of steps: in side-by-side runs on one thread (the
# peers benchmark's split and scorer, held-out nats/char, dropout 0.2), tiny-shakespeare
# words at 120 s: 2x200 1.3452 (637 steps), 2x400 1.3680 (377), 2x650 1.4405 (175); at
# 600 s: 2x200 1.3333 (3181), 2x300 1.3370 (2368), 2x400 1.3388 (1932), 2x650 1.3196 (887);
# the Hindi product reviews at 600 s: 2x200 1.2065, 2x400 1.2084, 2x650 1.2036 (1190 steps;
# with dropout 0.4, 1.2050). 650 steps lies between what the losers at 120 s could make
# (2x300: about 480) and what the winner at 600 s made (887), with the widest margin.
RULE = {"char": (11.6, 0.539), "word": (650.0, 0.0), "subword": (1.10, 0.826)}
PROBE_LIMIT = 0.05  # the probe stops once it has spent this share of the budget
SHAPE_OPTIONS = ("hidden", "embed")  # given by the user, these turn the rule off


@dataclass(frozen=True)
class Choice:
    """The size the rule chose, and what it measured to choose it."""

    hidden: int
    embed: int | None  # None: the tokenizer's default embedding size
    budget_s: float  # the training seconds left after the probe
    probe_s: float  # the probe's own seconds (taken from the budget)
    min_steps: int  # the steps the rule asks of a size, from the smallest size's
    step_s: dict[int, float]  # hidden size -> predicted seconds per training step (probed sizes)

    cap: int | None = None  # the steps --epochs (or --max-steps) allow, whatever the time

    def steps(self, hidden: int) -> int:
        """The steps size `hidden` is predicted to make: the budget's, or the cap's."""
        steps = int(self.budget_s / self.step_s[hidden])
        return min(steps, self.cap) if self.cap else steps

    def why(self) -> str:
        """One line for the start line: the size and the steps that chose it."""
        made = ", ".join(f"{h}: {self.steps(h)}" for h in sorted(self.step_s))
        how = (f"the largest size predicted to make the {self.min_steps} steps the rule wants"
               if self.steps(self.hidden) >= self.min_steps else
               f"the smallest size (none is predicted to make the {self.min_steps} steps the rule wants)")  # fmt: skip
        return (f"hidden {self.hidden} chosen for the budget: {how} in {self.budget_s:.0f} s "
                f"(probe {self.probe_s:.1f} s; predicted steps {made})")  # fmt: skip

    def to_dict(self) -> dict:
        d = asdict(self)
        d["step_s"] = {str(k): v for k, v in self.step_s.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Choice:
        return cls(**{**d, "step_s": {int(k): v for k, v in d["step_s"].items()}})


def applies(kind: str, cfg: TrainConfig, shape: dict) -> bool:
    """The rule sizes a new model when the run has a time budget and no shape option."""
    return bool(cfg.time_budget) and not any(k in shape for k in SHAPE_OPTIONS)


def family(kind: str) -> str:
    """The ladder and rule a tokenizer uses: char, word, or subword (bpe, unigram)."""
    return kind if kind in ("char", "word") else "subword"


def shape_for(kind: str, hidden: int) -> dict:
    """The model options of one ladder size (word and subword models: embed = hidden)."""
    return {"hidden": hidden} if family(kind) == "char" else {"hidden": hidden, "embed": hidden}


def steps_wanted(kind: str, smallest_steps: float) -> float:
    """The steps the rule asks the chosen size to make, given the steps the smallest size
    would make in the same budget (never more than those)."""
    scale, power = RULE[family(kind)]
    return min(scale * max(smallest_steps, 1.0) ** power, smallest_steps)


def choose(
    kind: str,
    cfg: TrainConfig,
    probe: Callable[[dict], float],
    cap: int | None = None,
) -> Choice:
    """The largest ladder size whose predicted steps reach `steps_wanted` (the smallest
    size when none does). `probe(shape)` returns the seconds of one training step of that
    shape; sizes are probed smallest first, and probing stops at the first that is too
    slow. `cap`: the most steps the run may make whatever the time (its epochs over a small
    corpus): a size is predicted to make the fewer of the budget's steps and the cap's."""
    ladder = LADDER[family(kind)]
    start = time.perf_counter()
    step_s: dict[int, float] = {}
    chosen, min_steps = ladder[0], 0.0
    for hidden in ladder:
        # a bigger size is never faster: a probe that says so was disturbed
        step_s[hidden] = max(probe(shape_for(kind, hidden)), max(step_s.values(), default=0.0))
        left = cfg.time_budget - (time.perf_counter() - start)
        steps = min(left / step_s[hidden], cap) if cap else left / step_s[hidden]
        if hidden == ladder[0]:
            min_steps = steps_wanted(kind, steps)
        if steps < min_steps:
            break
        chosen = hidden
        if time.perf_counter() - start > PROBE_LIMIT * cfg.time_budget:
            break  # a slow or busy machine: the probe must not eat the budget
    probe_s = time.perf_counter() - start
    return Choice(
        hidden=chosen,
        embed=shape_for(kind, chosen).get("embed"),
        budget_s=max(cfg.time_budget - probe_s, 0.0),
        probe_s=probe_s,
        min_steps=int(min_steps),
        step_s=step_s,
        cap=cap,
    )


def lm_probe(
    ids: np.ndarray, vocab_size: int, base: dict, cfg: TrainConfig, device: torch.device
) -> Callable[[dict], float]:
    """A probe for `choose`: the seconds of one training step of a language model with the
    options `base` updated by a ladder shape, on the run's own batch shape and the first
    tokens of `ids`. (Shorter steps, extrapolated to the whole length, were cheaper but
    once took a 2x896 model for 0.45 s a step instead of 0.85, and the run made half the
    steps the rule wanted.)"""
    precision = resolve_precision(cfg.precision, device)
    need = cfg.batch_size * (cfg.seq_len + 1)
    sample = np.resize(np.asarray(ids[:need], dtype=np.int64), need)  # repeats a short corpus
    rows = torch.from_numpy(sample).view(cfg.batch_size, cfg.seq_len + 1).to(device)
    x, y = rows[:, :-1], rows[:, 1:]

    def loss_of(model: LanguageModel) -> torch.Tensor:
        return F.cross_entropy(model(x)[0].float().reshape(-1, vocab_size), y.reshape(-1))

    def probe(shape: dict) -> float:
        model = LanguageModel(LMConfig(vocab_size=vocab_size, **{**base, **shape})).to(device)
        return step_seconds(model, loss_of, cfg, precision=precision, device=device)

    return probe
