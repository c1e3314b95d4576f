"""The tagger's own settings: how its data is read and its vocabulary built (besides the
model shape, DEFAULT_MODEL, and the shared TrainConfig)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textrnn.errors import UsageError
from textrnn.formats.conllu import check_column, check_format


@dataclass(frozen=True)
class TagOptions:
    column: str = "upos"  # CoNLL-U tag column: upos | xpos | deprel | misc:KEY
    fmt: str = "auto"  # data format: auto (.conllu or 10 columns -> conllu) | conllu | tsv
    lowercase: bool = True  # look words up lowercased (the character model still sees case)
    min_count: int = 1  # words seen fewer times get no embedding of their own
    embeddings: str | Path | None = None  # pretrained word vectors (word2vec/fastText text)
    embeddings_limit: int = 200_000  # read at most this many vectors (0 = all)

    def __post_init__(self) -> None:
        check_column(self.column)
        check_format(self.fmt)
        if self.min_count < 1:
            raise UsageError(f"--min-count must be at least 1, got {self.min_count}")
        if self.embeddings_limit < 0:
            raise UsageError(f"--embeddings-limit must be >= 0, got {self.embeddings_limit}")
