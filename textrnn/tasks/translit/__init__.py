"""Transliteration (romanised <-> native script, one word at a time): data, training,
prediction and evaluation. The Python API behind `textrnn translit train | predict | eval`,
shaped like every task's (textrnn.tasks.lm, textrnn.tasks.tag):

    from textrnn.tasks import translit

    result = translit.train("hi.train.tsv", "hi.dev.tsv", out="hi.ckpt")  # dev optional
    tr = translit.load("hi.ckpt")
    list(tr.predict(["rahul"], beam=5, nbest=3))  # -> one [Candidate(text, score, logprob)] per word
    tr.predict_text(["Mera naam Rahul hai"])      # -> running text, word by word
    tr.evaluate("hi.dev.tsv")                     # -> {"top1", "topk", "cer", ...}

- `train(train, dev=None, *, out, options, direction, columns, model_overrides, train_cfg,
  device, on_progress, on_log, resume)`: TSV lexicons; `options` (TranslitOptions, kept in
  the checkpoint) holds the task's own settings; `direction` / `columns` pick source and
  target; `model_overrides` changes DEFAULT_MODEL's shape; `train_cfg` defaults to
  `default_train_config()`.
- `load(path, *, device, precision, length_penalty)` -> `LoadedTransliterator` with
  `predict(words, *, beam, nbest, read_ahead)` and `evaluate(path, *, beam, nbest)` (and
  `evaluate_pairs(pairs)` for pairs in memory, `predict_text(lines)`, `attention(word)`).

Data: TSV lexicons, one pair per line. The Dakshina layout (`latin<TAB>native<TAB>count`
in the released files, whatever the order of the first two columns) and plain
`source<TAB>target` both work: the first two columns are the pair, and whichever of
them is written in Latin script is the romanised side, so `--direction to-native`
(default) or `to-latin` picks source and target without knowing the column order.
`--source-column N --target-column M` (1-based) name the columns instead.

Attestation counts (Dakshina's third column: how many annotators wrote this romanisation)
are used, by default, as de-duplication only: each distinct (source, target) pair is
one training example per epoch, whatever its count (duplicate lines add up their
counts). Evaluation counts every row once too, so this matches what is measured; with
`counts="weight"` each example's loss is weighted by its count instead (mean weight 1),
which makes the model prefer the most common romanisation, useful for `to-latin`.

Units: the source is read as grapheme clusters (conjuncts whole, `textrnn.text`), the
target is written as code points: Hindi has 2,020 distinct grapheme clusters in the
training lexicon against 63 code points, and 0.7% of the dev set's clusters never occur
in training, so a grapheme decoder would get those words wrong for certain.
"""

from textrnn.tasks.translit.config import (
    DEFAULT_MODEL,
    DEFAULT_TRAIN,
    DIRECTIONS,
    LENGTH_PENALTY,
    TranslitOptions,
)
from textrnn.tasks.translit.decode import READ_AHEAD, Candidate
from textrnn.tasks.translit.lexicon import Layout, detect_layout, read_lexicon
from textrnn.tasks.translit.load import LoadedTransliterator, load
from textrnn.tasks.translit.training import TrainResult, default_train_config, train

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TRAIN",
    "LENGTH_PENALTY",
    "DIRECTIONS",
    "READ_AHEAD",
    "Candidate",
    "Layout",
    "LoadedTransliterator",
    "TrainResult",
    "TranslitOptions",
    "default_train_config",
    "detect_layout",
    "load",
    "read_lexicon",
    "train",
]
