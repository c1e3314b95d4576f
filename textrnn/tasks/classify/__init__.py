"""Sentence classification (many-to-one: a text in, one label out): train, load, predict,
explain, evaluate. The Python API behind `textrnn classify train | predict | eval`, shaped
like every task's (textrnn.tasks.lm, textrnn.tasks.tag, textrnn.tasks.translit):

    from textrnn.tasks import classify

    result = classify.train("sst2/train.tsv", "sst2/dev.tsv", out="sst2.ckpt")  # dev optional
    clf = classify.load("sst2.ckpt")
    list(clf.predict(["a gorgeous , witty movie ."]))   # -> one probability list per text
    clf.explain("a gorgeous , witty movie .")           # -> (probs, [(token, weight), ...])
    clf.evaluate("sst2/dev.tsv")                        # -> {"file", "accuracy", "macro_f1", ...}

- `train(train, dev=None, *, out, fmt, text_column, label_column, tokenizer,
  model_overrides, options, train_cfg, init_from, device, on_progress, on_log, resume)`:
  tables of texts and labels; `fmt` / `text_column` / `label_column` say how they are read
  (detected by default); `tokenizer` holds the tokenizer's settings (DEFAULT_TOKENIZER);
  `options` (ClassifyOptions, kept in the checkpoint under "classify") the task's own
  settings; `model_overrides` changes DEFAULT_MODEL's shape; `init_from` a language model
  to start from; `train_cfg` defaults to `default_train_config()`.
- `load(path, *, device, precision)` -> `LoadedClassifier` with `predict(texts, *,
  read_ahead)`, `explain(text)` and `evaluate(path, *, fmt, text_column, label_column,
  errors)` (and `evaluate_rows(rows)` for labelled rows in memory).

Data: tables of texts and labels (`textrnn.formats.tables`: TSV, CSV, JSON lines, fastText
lines); labels are strings, any number of classes, ordered numbers first (numerically),
then text. Texts are read by one of the project's tokenizers (words by default; grapheme
characters or sentencepiece subwords), or by the tokenizer of the language model a
classifier starts from (`init_from`).
"""

from textrnn.tasks.classify.labels import CLASS_WEIGHTS, Labels
from textrnn.tasks.classify.load import LoadedClassifier, load
from textrnn.tasks.classify.options import ClassifyOptions
from textrnn.tasks.classify.predict import READ_AHEAD
from textrnn.tasks.classify.training import (
    DEFAULT_MODEL,
    DEFAULT_TOKENIZER,
    DEFAULT_TRAIN,
    TrainResult,
    default_train_config,
    train,
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
    "load",
    "train",
]
