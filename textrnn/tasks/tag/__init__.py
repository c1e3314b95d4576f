"""The sequence-tagging task (POS, NER): train, load, predict, evaluate.

The Python API behind `textrnn tag train | predict | eval`, shaped like every task's
(textrnn.tasks.lm, textrnn.tasks.translit):

    from textrnn.tasks import tag

    result = tag.train("train.conllu", "dev.conllu", out="pos.ckpt",
                       options=tag.TagOptions(column="upos"))   # dev optional
    tagger = tag.load("pos.ckpt")
    list(tagger.predict([["I", "saw", "her", "duck", "."]]))     # -> one tag list per sentence
    tagger.evaluate("test.conllu")                               # -> {"accuracy", "per_tag", ...}

- `train(train, dev=None, *, out, options, model_overrides, train_cfg, device,
  on_progress, on_log, resume)`: CoNLL-U or token<TAB>tag files; `options` (TagOptions)
  says how they are read (column, format) and the vocabulary built; `model_overrides`
  changes DEFAULT_MODEL's shape; `train_cfg` defaults to `default_train_config()`.
- `load(path, *, device, precision)` -> `LoadedTagger` with `predict(sentences, *,
  read_ahead)` and `evaluate(path, *, fmt, column)` (and `evaluate_sentences(sentences)`
  for gold sentences in memory).
"""

from textrnn.tasks.tag.options import TagOptions
from textrnn.tasks.tag.predict import READ_AHEAD, LoadedTagger, load
from textrnn.tasks.tag.training import (
    DEFAULT_MODEL,
    DEFAULT_TRAIN,
    TrainResult,
    default_train_config,
    train,
)
from textrnn.tasks.tag.vocab import Vocab, build_vocab

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TRAIN",
    "READ_AHEAD",
    "LoadedTagger",
    "TagOptions",
    "TrainResult",
    "Vocab",
    "build_vocab",
    "default_train_config",
    "load",
    "train",
]
