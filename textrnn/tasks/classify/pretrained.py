"""Starting a classifier from a language model of `textrnn train` (the ULMFiT idea: learn the
language from unlabelled text of the domain, then learn the labels).

The language model is read through the engine's checkpoint format, `models.lm`'s config
and the tokenizers directly (a task never imports another task). Its tokenizer becomes
the classifier's, and its embedding and recurrent layers fill the classifier's embedding
and unidirectional encoder, which has the same layout (`embedding`, `rnn.0`, `rnn.1`...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from textrnn.config import config_from_dict
from textrnn.engine.checkpoint import load_checkpoint
from textrnn.engine.weights import checkpoint_weights
from textrnn.errors import CheckpointError, TextrnnError, UsageError
from textrnn.files import file_info
from textrnn.models.blocks import CELLS
from textrnn.models.classifier import Classifier, ClassifierModel
from textrnn.models.lm import LMConfig
from textrnn.tokenizers import Tokenizer, tokenizer_from_dict

# textrnn 0.1.0 stored the recurrent layers as one stacked module (rnn.weight_ih_l1).
_STACKED_NAME = re.compile(r"rnn\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)")


@dataclass
class LanguageModelParts:
    """What a classifier takes from a language-model checkpoint."""

    tokenizer: Tokenizer
    config: LMConfig
    weights: dict[str, Tensor]  # embedding.weight and rnn.<k>.* (names as in models.lm)
    info: dict  # file_info of the checkpoint, for the classifier's metadata


def read_language_model(path: str | Path) -> LanguageModelParts:
    """The tokenizer, config and embedding/recurrent weights of a `textrnn train` checkpoint."""
    ckpt = load_checkpoint(path, task="lm")
    meta = ckpt.meta
    # Format 2 keeps the tokenizer under tokenizers.text, format 1 under tokenizer.
    tokenizer_data = (meta.get("tokenizers") or {}).get("text", meta.get("tokenizer"))
    try:
        config = config_from_dict(LMConfig, meta["model_config"], what="model config")
        tokenizer = tokenizer_from_dict(tokenizer_data)
    except (KeyError, ValueError, TextrnnError) as err:
        raise CheckpointError(f"{path}: language-model metadata is incomplete or invalid ({err})") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {tokenizer.vocab_size} ids but the model expects {config.vocab_size}"
        )
    if config.cell not in CELLS:
        raise UsageError(
            f"{path}: a classifier can start from an LSTM or GRU language model, not a {config.cell!r} one"
        )
    weights = {}
    for name, tensor in checkpoint_weights(ckpt).items():
        old = _STACKED_NAME.fullmatch(name)
        name = f"rnn.{old[2]}.{old[1]}_l0" if old else name
        if name == "embedding.weight" or name.startswith("rnn."):
            weights[name] = tensor
    return LanguageModelParts(tokenizer, config, weights, file_info(path))


def classifier_shape(lm: LMConfig) -> dict:
    """The ClassifierConfig fields that a language model fixes."""
    return {"embed": lm.embed, "hidden": lm.hidden, "layers": lm.layers, "cell": lm.cell,
            "bidirectional": False}  # fmt: skip


def load_pretrained(model: ClassifierModel, parts: LanguageModelParts, *, source: str) -> None:
    """Copy the language model's embedding and recurrent layers into `model`, every name and
    shape checked (the weights come from a file)."""
    for member in model.each():
        _load_member(member, parts, source=source)


def _load_member(model: Classifier, parts: LanguageModelParts, *, source: str) -> None:
    own = model.state_dict()
    missing = sorted(n for n in own if (n == "embedding.weight" or n.startswith("rnn.")) and n not in parts.weights)
    if missing:
        raise CheckpointError(f"{source}: the language model lacks {', '.join(missing[:3])}")
    with torch.no_grad():
        for name, tensor in parts.weights.items():
            if name not in own or own[name].shape != tensor.shape:
                raise CheckpointError(
                    f"{source}: language-model tensor {name} of shape {tuple(tensor.shape)} does not fit the classifier"
                )
            if not torch.isfinite(tensor).all():
                raise CheckpointError(f"{source}: language-model tensor {name} holds NaN or infinite values")
            own[name].copy_(tensor)
