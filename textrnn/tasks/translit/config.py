"""Transliteration settings besides the model shape and the shared TrainConfig (kept in
checkpoints), and the defaults a user who passes only --train/--dev gets."""

from __future__ import annotations

from dataclasses import dataclass

from textrnn.errors import UsageError
from textrnn.tokenizers import UNITS

DIRECTIONS = ("to-native", "to-latin")


COUNTS = ("once", "weight")


# What a user who passes only --train/--dev gets (see the README section for the runs
# behind these choices).
DEFAULT_MODEL = {
    "embed": 128,
    "hidden": 256,
    "layers": 1,
    "dec_hidden": 512,
    "attention": "luong",
    "dropout": 0.25,
}


# Beam candidates are ranked by logprob / length ** LENGTH_PENALTY. Measured on the Dakshina
# dev lexicon with beam 5 (dev figures: dev also chose this), on the benchmark's models:
# alpha 0.3 / 0.5 / 1.0 gave top-1 46.3 / 46.3 / 46.0% (one model, Luong), 46.1 / 45.9 /
# 45.7% (Bahdanau), and 48.7 / 48.6 (0.45) / 48.0% (the five-member ensemble); 0 (the raw
# sum) 48.5%. Less than 1 keeps short words that a full normalisation lets longer
# candidates overtake.
LENGTH_PENALTY = 0.5


DEFAULT_TRAIN = {
    "batch_size": 128,
    "lr": 3e-3,
    "clip": 5.0,
    "epochs": 200,
    "patience": 8,
    "warmup_steps": 200,
}


@dataclass(frozen=True)
class TranslitOptions:
    """Task settings besides the model shape and the shared TrainConfig (kept in checkpoints)."""

    teacher_forcing: float = 1.0  # probability of feeding the gold previous unit, after the decay
    sampling_decay: int = 0  # steps over which that probability falls linearly from 1 (0 = at once)
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    counts: str = "once"  # once (each pair once) | weight (loss weighted by attestation count)
    source_unit: str = "grapheme"  # grapheme | codepoint
    target_unit: str = "codepoint"  # grapheme | codepoint

    def __post_init__(self) -> None:
        if not (
            isinstance(self.teacher_forcing, int | float) and 0.0 <= self.teacher_forcing <= 1.0
        ):
            raise UsageError(f"--teacher-forcing must be in [0, 1], got {self.teacher_forcing!r}")
        if (
            isinstance(self.sampling_decay, bool)
            or not isinstance(self.sampling_decay, int)
            or self.sampling_decay < 0
        ):
            raise UsageError(
                f"--sampling-decay must be an integer >= 0, got {self.sampling_decay!r}"
            )
        if not (
            isinstance(self.label_smoothing, int | float) and 0.0 <= self.label_smoothing < 1.0
        ):
            raise UsageError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.counts not in COUNTS:
            raise UsageError(f"--counts must be one of {', '.join(COUNTS)}, got {self.counts!r}")
        for name in ("source_unit", "target_unit"):
            if getattr(self, name) not in UNITS:
                raise UsageError(
                    f"--{name.replace('_', '-')} must be one of {', '.join(UNITS)}, got {getattr(self, name)!r}"
                )

    def teacher_forcing_at(self, step: int) -> float:
        """The probability of feeding the gold unit at optimizer step `step`."""
        if self.sampling_decay == 0 or step >= self.sampling_decay:
            return self.teacher_forcing
        return 1.0 - (1.0 - self.teacher_forcing) * step / self.sampling_decay

