"""Loading a language-model checkpoint for inference: every piece of its metadata and every
weight checked before use (the file may come from anywhere), including checkpoints of
textrnn 0.1.0 with the stacked recurrent-layer names."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from textrnn.config import config_from_dict
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint, read_meta
from textrnn.engine.progress import Tick
from textrnn.engine.weights import check_weight_shapes, checkpoint_weights, load_weights
from textrnn.errors import CheckpointError, TextrnnError, UsageError
from textrnn.formats.plain import read_text
from textrnn.models.lm import LanguageModel, LMConfig, LMStepper, Matmul
from textrnn.tasks.lm.evaluate import score_text
from textrnn.tasks.lm.next import NextToken, next_tokens
from textrnn.tokenizers import Tokenizer, tokenizer_from_dict


def lm_config(meta: dict, *, source: str = "checkpoint") -> LMConfig:
    """The validated `model_config` of a checkpoint's meta; CheckpointError if it has none
    or an invalid one (a value that would be a usage error as an option is a corrupt file here)."""
    try:
        return config_from_dict(LMConfig, meta["model_config"], what="model config")
    except (KeyError, ValueError) as err:
        raise CheckpointError(
            f"{source}: checkpoint metadata is incomplete or invalid (model config: {err})"
        ) from None


def _checked_model(
    config: LMConfig, shapes: dict[str, tuple[int, ...]], *, source: str
) -> LanguageModel:
    """A freshly initialised model of `config`, after checking that the checkpoint's weights
    (`shapes`, names without "model.") can fill it.

    A config that claims far more weights than the file holds is refused before anything
    is allocated, so a hostile file cannot make us build a huge model; smaller mismatches
    are named by the shape check. (Not built on the meta device: that imports
    torch._dynamo, seconds at every start.)
    """
    c = config
    gates = {"lstm": 4, "gru": 3}.get(c.cell, 1)
    # A lower bound of the model's weights: embedding, first and further recurrent layers.
    claimed = (
        c.vocab_size * c.embed
        + gates * c.hidden * (c.embed + c.hidden)
        + (c.layers - 1) * gates * c.hidden * 2 * c.hidden
    )
    held = sum(math.prod(shape) for shape in shapes.values())
    if claimed > 4 * held + 1_000_000:
        where = f"{source}: checkpoint" if source else "checkpoint"
        raise CheckpointError(
            f"{where} model config describes at least {claimed:,} weights but the file holds {held:,}"
        )
    try:
        model = LanguageModel(config)
    except (RuntimeError, ValueError, TypeError, OverflowError) as err:
        raise CheckpointError(
            f"{source or 'checkpoint'}: cannot build its model config ({err})"
        ) from None
    check_weight_shapes(model, shapes, source=source)
    return model


_STACKED_NAME = re.compile(r"rnn\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)")


def lm_weight_name(name: str) -> str:
    """A language model's weight name as the model has it now.

    Checkpoints of textrnn 0.1.0 held the recurrent layers as one stacked module
    (`rnn.weight_ih_l1`); the model now has one module per layer (`rnn.1.weight_ih_l0`).
    """
    old = _STACKED_NAME.fullmatch(name)
    return f"rnn.{old[2]}.{old[1]}_l0" if old else name


def lm_weights(ckpt: Checkpoint) -> dict[str, Tensor]:
    """`checkpoint_weights` of a language model, under the model's current names."""
    return {lm_weight_name(k): v for k, v in checkpoint_weights(ckpt).items()}


def model_from_checkpoint(ckpt: Checkpoint, *, source: str = "") -> LanguageModel:
    """The checkpoint's language model with its weights, its config checked before any allocation."""
    config = lm_config(ckpt.meta, source=source or "checkpoint")
    weights = lm_weights(ckpt)
    model = _checked_model(config, {k: tuple(v.shape) for k, v in weights.items()}, source=source)
    load_weights(model, weights, source=source)
    return model


def check_lm_header(path: str | Path) -> None:
    """Check a language-model checkpoint's config against its tensor shapes, from the header alone."""
    _, meta = read_meta(path)
    tensors = meta["header"]["tensors"]
    shapes = {
        lm_weight_name(k[len("model.") :]): tuple(e["shape"])
        for k, e in tensors.items()
        if k.startswith("model.")
    }
    _checked_model(lm_config(meta, source=str(path)), shapes, source=str(path))


GENERATION_PRECISIONS = ("auto", *Matmul.MODES)


@dataclass
class LoadedLM:
    """A language model ready for inference: `predict` (next-token candidates), `evaluate`
    (a file's cross-entropy); `generate` and `beam_generate` (textrnn.tasks.lm) sample text."""

    model: LanguageModel
    tokenizer: Tokenizer
    checkpoint: Checkpoint
    precision: str = (
        "fp32"  # fp32 | bf16 | int8: the weights' arithmetic when generating (see Matmul)
    )
    _stepper: LMStepper | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, prompts: Iterable[str], *, k: int = 5) -> Iterator[list[NextToken]]:
        """For each prompt, in order, the `k` most probable next units (words for a word
        model, grapheme clusters for a char model, whole words for subwords) with their
        probabilities, most probable first (see textrnn.tasks.lm.next)."""
        for prompt in prompts:
            yield next_tokens(self.model, self.tokenizer, prompt, k=k)

    def evaluate(self, path: str | Path, *, on_progress: Tick | None = None) -> dict:
        """Cross-entropy of a text file: per token (nats), perplexity, bits per character.
        `on_progress` hears (tokens scored, tokens to score) as it goes."""
        return score_text(self.model, self.tokenizer, read_text(path), name=str(path), on_progress=on_progress)

    def evaluate_text(self, text: str, *, name: str = "<text>", on_progress: Tick | None = None) -> dict:
        """`evaluate` of a text in memory; `name` says where it came from in messages."""
        return score_text(self.model, self.tokenizer, text, name=name, on_progress=on_progress)

    def stepper(self) -> LMStepper:
        """The model's one-token-at-a-time stepper, built on first use and kept: it copies and
        repacks the weights (tens of ms), so later generate calls start at once. Changing the
        model's weights afterwards does not reach it."""
        if self._stepper is None:
            self._stepper = LMStepper(self.model, precision=self.precision)
        return self._stepper


def load(
    path: str | Path, *, device: torch.device = torch.device("cpu"), precision: str = "fp32"
) -> LoadedLM:
    """Load a language-model checkpoint (refusing other tasks) ready for inference.

    `precision` is the arithmetic of the generation stepper's large matrices (see Matmul):
    "auto" is int8 on x86 CPUs (a step at batch 1 reads every weight once, so fewer bytes
    is faster; the loss moves by under 0.001 nats/char), else bf16 where the CPU computes it
    natively, else fp32; a mode this machine lacks falls back to fp32. Scoring
    (`evaluate`) and next-token candidates (`predict`) are always fp32.
    """
    if precision not in GENERATION_PRECISIONS:
        raise UsageError(
            f"--precision must be one of {', '.join(GENERATION_PRECISIONS)}, got {precision!r}"
        )
    ckpt = load_checkpoint(path, task="lm")
    cfg = lm_config(ckpt.meta, source=str(path))
    try:
        tokenizer = tokenizer_from_dict(ckpt.meta["tokenizers"]["text"])
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: checkpoint metadata is incomplete ({err})") from None
    except TextrnnError as err:
        raise CheckpointError(f"{path}: {err}") from None
    if tokenizer.vocab_size != cfg.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {tokenizer.vocab_size} ids but the model expects {cfg.vocab_size}"
        )
    model = model_from_checkpoint(ckpt, source=str(path))
    model.to(device).eval()
    if precision == "auto":
        precision = next(p for p in ("int8", "bf16", "fp32") if Matmul.available(p, device))
    elif not Matmul.available(precision, device):
        precision = "fp32"  # (on a GPU the stepper's products run in fp32 too)
    return LoadedLM(model=model, tokenizer=tokenizer, checkpoint=ckpt, precision=precision)
