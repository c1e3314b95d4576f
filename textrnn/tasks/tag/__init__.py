"""The sequence-tagging task (POS, NER): train, load, predict, evaluate.

This is the Python API behind `textrnn tag train | predict | eval`:

    from textrnn.tasks.tag import train_tagger, load_tagger, predict, evaluate
"""

from textrnn.tasks.tag.predict import READ_AHEAD, LoadedTagger, evaluate, load_tagger, predict
from textrnn.tasks.tag.train import (
    DEFAULT_MODEL,
    DEFAULT_TRAIN,
    TrainResult,
    default_train_config,
    train_tagger,
)
from textrnn.tasks.tag.vocab import Vocab, build_vocab

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TRAIN",
    "READ_AHEAD",
    "LoadedTagger",
    "TrainResult",
    "Vocab",
    "build_vocab",
    "default_train_config",
    "evaluate",
    "load_tagger",
    "predict",
    "train_tagger",
]
