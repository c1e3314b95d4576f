"""Sentence classification (many-to-one: a text in, one label out): training, prediction,
explanation and evaluation. The Python API behind `textrnn classify train | predict | eval`:

    from textrnn.tasks.classify import train_classifier, load_classifier, predict, evaluate

Data: tables of texts and labels (`textrnn.formats.tables`: TSV, CSV, JSON lines, fastText
lines); labels are strings, any number of classes. Texts are read by one of the project's
tokenizers (words by default; grapheme characters or sentencepiece subwords), or by the
tokenizer of the language model a classifier starts from (`init_from`).
"""

from textrnn.tasks.classify.evaluate import evaluate
from textrnn.tasks.classify.labels import CLASS_WEIGHTS, Labels
from textrnn.tasks.classify.options import ClassifyOptions
from textrnn.tasks.classify.predict import (
    READ_AHEAD,
    LoadedClassifier,
    explain,
    load_classifier,
    predict,
)
from textrnn.tasks.classify.train import (
    DEFAULT_MODEL,
    DEFAULT_TOKENIZER,
    DEFAULT_TRAIN,
    TrainResult,
    default_train_config,
    train_classifier,
)

__all__ = [
    "CLASS_WEIGHTS",
    "DEFAULT_MODEL",
    "DEFAULT_TOKENIZER",
    "DEFAULT_TRAIN",
    "READ_AHEAD",
    "ClassifyOptions",
    "Labels",
    "LoadedClassifier",
    "TrainResult",
    "default_train_config",
    "evaluate",
    "explain",
    "load_classifier",
    "predict",
    "train_classifier",
]
