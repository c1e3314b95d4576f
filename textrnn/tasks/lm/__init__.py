"""The language-model task: train on a corpus, predict the next words, evaluate, sample.

The Python API behind `textrnn train | sample | eval` (also `textrnn lm ...`), shaped like
every task's (textrnn.tasks.tag, textrnn.tasks.translit):

    from textrnn.formats.plain import iter_text_chunks
    from textrnn.tasks import lm
    from textrnn.tokenizers import train_tokenizer

    tok = train_tokenizer("word", iter_text_chunks("corpus.txt"))
    result = lm.train("corpus.txt", "dev.txt", out="m.ckpt", tokenizer=tok)  # dev optional
    model = lm.load("m.ckpt")
    model.predict(["the cat"], k=5)   # -> one [NextToken(text, probability), ...] per prompt
    model.evaluate("heldout.txt")     # -> {"loss_nats", "perplexity", "bits_per_char", ...}
    lm.generate(model, prompt="the cat", config=lm.GenerateConfig(length=50))

- `train(train, dev=None, *, out, tokenizer, model_overrides, train_cfg, device,
  on_progress, on_log, resume)`: the corpus and dev are text files; the language model's
  own input is its tokenizer (a language model has no task options besides it).
  `model_overrides` changes DEFAULT_MODEL's shape; `train_cfg` (TrainConfig) defaults to
  `default_train_config(tokenizer.kind)`.
- `load(path, *, device, precision)` -> `LoadedLM` with `predict(prompts, *, k)` and
  `evaluate(path)` (and `evaluate_text(text)` for text in memory).
"""

from textrnn.tasks.lm.generate import (
    GenerateConfig,
    Generated,
    TextStream,
    beam_generate,
    encode_prompt,
    generate,
)
from textrnn.tasks.lm.load import (
    GENERATION_PRECISIONS,
    LoadedLM,
    check_lm_header,
    lm_config,
    load,
)
from textrnn.tasks.lm.next import NextToken
from textrnn.tasks.lm.task import LMTask, stream_nll
from textrnn.tasks.lm.training import (
    BUDGET_EPOCHS,
    DEFAULT_MODEL,
    DEFAULT_TRAIN,
    Plan,
    default_train_config,
    plan,
    train,
)

__all__ = [
    "BUDGET_EPOCHS",
    "DEFAULT_MODEL",
    "DEFAULT_TRAIN",
    "GENERATION_PRECISIONS",
    "GenerateConfig",
    "Generated",
    "LMTask",
    "LoadedLM",
    "NextToken",
    "Plan",
    "TextStream",
    "beam_generate",
    "check_lm_header",
    "default_train_config",
    "encode_prompt",
    "generate",
    "lm_config",
    "load",
    "plan",
    "stream_nll",
    "train",
]
