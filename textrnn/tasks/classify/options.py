"""Classification settings besides the model shape and the shared TrainConfig (kept in
checkpoints under "classify")."""

from __future__ import annotations

from dataclasses import dataclass

from textrnn.errors import UsageError
from textrnn.tasks.classify.labels import CLASS_WEIGHTS


@dataclass(frozen=True)
class ClassifyOptions:
    word_dropout: float = 0.3  # probability that a training token is read as <unk>
    class_weights: str = "none"  # none | balanced (each class weighs as much in the loss)
    max_tokens: int = 512  # a longer text is read by its first max_tokens tokens

    def __post_init__(self) -> None:
        if not (isinstance(self.word_dropout, int | float) and 0.0 <= self.word_dropout < 1.0):
            raise UsageError(f"--word-dropout must be in [0, 1), got {self.word_dropout!r}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise UsageError(
                f"--class-weights must be one of {', '.join(CLASS_WEIGHTS)}, got {self.class_weights!r}"
            )
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise UsageError(f"--max-tokens must be an integer >= 1, got {self.max_tokens!r}")
