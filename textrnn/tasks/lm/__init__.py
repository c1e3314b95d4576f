"""The language-model task: train on a corpus, sample, evaluate.

This is the Python API behind `textrnn train`, `sample` and `eval`:

    from textrnn.tasks.lm import train_lm, load_lm, generate, evaluate_file
"""

from textrnn.tasks.lm.evaluate import evaluate_file, evaluate_text
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
    load_lm,
)
from textrnn.tasks.lm.task import LMTask, stream_nll
from textrnn.tasks.lm.train import DEFAULT_MODEL, DEFAULT_TRAIN, default_train_config, train_lm

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TRAIN",
    "GENERATION_PRECISIONS",
    "GenerateConfig",
    "Generated",
    "LMTask",
    "LoadedLM",
    "TextStream",
    "beam_generate",
    "check_lm_header",
    "default_train_config",
    "encode_prompt",
    "evaluate_file",
    "evaluate_text",
    "generate",
    "lm_config",
    "load_lm",
    "stream_nll",
    "train_lm",
]
