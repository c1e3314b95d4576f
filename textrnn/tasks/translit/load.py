"""Loading a transliteration checkpoint: metadata and weights checked before use."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from textrnn.config import config_from_dict
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint
from textrnn.engine.devices import INFERENCE_PRECISIONS, resolve_precision
from textrnn.engine.weights import check_weight_shapes, checkpoint_weights, load_weights
from textrnn.errors import CheckpointError, TextrnnError, UsageError
from textrnn.models.seq2seq import Ensemble, Seq2Seq, Seq2SeqConfig, build_model
from textrnn.tasks.translit.decode import Transliterator
from textrnn.tasks.translit.vocab import Vocabs


def model_from_checkpoint(ckpt: Checkpoint, *, source: str) -> tuple[Seq2Seq | Ensemble, Vocabs]:
    """The checkpoint's model (with its weights) and vocabularies, every piece of metadata
    checked, and the weights' shapes checked against the config before any allocation."""
    try:
        cfg = config_from_dict(Seq2SeqConfig, ckpt.meta["model_config"], what="model config")
        vocabs = Vocabs.from_dict(ckpt.meta["tokenizers"])
    except (KeyError, TypeError, ValueError, AttributeError, TextrnnError) as err:
        raise CheckpointError(
            f"{source}: checkpoint metadata is incomplete or invalid ({err})"
        ) from None
    sizes = (vocabs.source.vocab_size, vocabs.target.vocab_size)
    if sizes != (cfg.n_source, cfg.n_target):
        raise CheckpointError(f"{source}: vocabulary sizes {sizes} do not match the model config")
    try:
        with torch.device("meta"):  # shapes only: a config claiming a huge model allocates nothing
            probe = build_model(cfg)
    except (RuntimeError, ValueError, OverflowError) as err:
        raise CheckpointError(
            f"{source}: checkpoint model config is unusable ({str(err).splitlines()[0]})"
        ) from None
    weights = checkpoint_weights(ckpt)
    check_weight_shapes(probe, {k: tuple(v.shape) for k, v in weights.items()}, source=source)
    model = build_model(cfg)
    load_weights(model, weights, source=source)
    return model, vocabs


def load_translit(
    path: str | Path,
    *,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
    length_penalty: float = 1.0,
) -> Transliterator:
    """Load a transliteration checkpoint (refusing other tasks) ready for inference."""
    if precision not in INFERENCE_PRECISIONS:
        raise UsageError(
            f"--precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}"
        )
    if not math.isfinite(length_penalty):
        raise UsageError(f"--length-penalty must be a finite number, got {length_penalty}")
    ckpt = load_checkpoint(path, task="translit")
    model, vocabs = model_from_checkpoint(ckpt, source=str(path))
    model.to(device).eval()
    return Transliterator(model, vocabs, precision=resolve_precision(precision, device),
                          checkpoint=ckpt, length_penalty=length_penalty)  # fmt: skip
