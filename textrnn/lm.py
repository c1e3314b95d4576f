"""The language-model task: train on a corpus, sample, evaluate.

This is the Python API behind `textrnn train`, `sample` and `eval`:

    from textrnn.lm import train_lm, load_lm, generate, evaluate_file
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from textrnn import decoding, distributed
from textrnn.checkpoint import Checkpoint, file_info, load_checkpoint, read_meta
from textrnn.data import (
    EncodedCorpus,
    Spans,
    TokenStreams,
    encode_corpus,
    fit_batch_shape,
    read_text,
    split_validation,
)
from textrnn.errors import CheckpointError, DataError, TextrnnError, UsageError
from textrnn.models.lm import (
    LanguageModel,
    LMConfig,
    LMStepper,
    Matmul,
    State,
    detach_state,
    reorder_state,
)
from textrnn.tokenizers import Tokenizer, tokenizer_from_dict
from textrnn.train import (
    Progress,
    TrainConfig,
    TrainResult,
    fit,
    seed_everything,
)

MAX_VAL_TOKENS = 2_000_000  # validation is capped so that it stays cheap on large corpora


# ---- the task the training loop runs ------------------------------------------------


class LMTask:
    """Stateful truncated-BPTT language modelling over contiguous token streams.

    With several processes, the `batch_size` streams are split among them: rank r of W
    reads streams r*B/W .. (r+1)*B/W - 1 and carries their state. A checkpoint holds the
    state of all B streams, so a run resumes on any number of processes that divides B.
    """

    name = "lm"
    data_parallel = True

    def __init__(
        self,
        model: LanguageModel,
        tokenizer: Tokenizer,
        corpus: EncodedCorpus,
        cfg: TrainConfig,
        *,
        corpus_info: dict,
        device: torch.device,
    ) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.corpus_info = corpus_info
        n_val = min(int(corpus.tokens * cfg.val_fraction), MAX_VAL_TOKENS)
        if n_val <= cfg.seq_len:
            n_val = 0
        train, val = split_validation(corpus.tokens, n_val, min_block=4 * cfg.seq_len)
        self.train_ids = Spans(corpus.ids, train)
        self.val_ids = Spans(corpus.ids, val).array() if n_val else None
        self.chars_per_token = corpus.chars / max(1, corpus.tokens)
        self.streams = TokenStreams(self.train_ids, batch_size=cfg.batch_size, seq_len=cfg.seq_len, seed=cfg.seed)
        self.seq_len = cfg.seq_len
        self.dist = distributed.context()
        if cfg.batch_size % self.dist.world:
            raise UsageError(
                f"--batch-size {cfg.batch_size} is the batch of all {self.dist.world} processes together: "
                f"it must be a multiple of {self.dist.world}"
            )
        self.rows = self.dist.rows(cfg.batch_size)  # this rank's streams
        self.hidden: State | None = None

    def steps_per_epoch(self) -> int:
        return self.streams.steps_per_epoch()

    def batches(self, epoch: int, start: int) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.streams.batches(epoch, start, rows=self.rows):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def reset_epoch(self) -> None:
        self.hidden = None

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        x, y = batch
        logits, hidden = self.model(x, self.hidden)  # (B/W, T, V)
        # This rank's share of the global mean: every rank has B/W of the B rows.
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)) / self.dist.world
        # The loop skips a non-finite step; a state that blew up with it must not be
        # carried on, or every later batch would be non-finite too.
        self.hidden = detach_state(hidden) if torch.isfinite(loss) else None
        return loss, y.numel()

    def evaluate(self) -> dict[str, float]:
        if self.val_ids is None:
            return {"val_loss": float("nan")}
        nats, tokens = stream_nll(self.model, self.val_ids, device=self.device, seq_len=self.seq_len)
        loss = nats / tokens
        return {
            "val_loss": loss,
            "val_ppl": math.exp(min(loss, 50.0)),
            "val_bpc": loss / self.chars_per_token / math.log(2),
        }

    def state_tensors(self) -> dict[str, Tensor]:
        """The carried state of all B streams (gathered from every rank)."""
        if not self.dist.active:
            return {} if self.hidden is None else {f"hidden.{i}": h.detach().cpu() for i, h in enumerate(self.hidden)}
        # Every rank must take part; a rank without a state (a skipped non-finite step) sends
        # zeros, which is what an LSTM starts from anyway.
        hidden = self.hidden or self.model.initial_state(self.rows.stop - self.rows.start, device=self.device)
        dtype = next(self.model.parameters()).dtype
        return {f"hidden.{i}": distributed.gather_rows(h.to(dtype), dim=1).cpu() for i, h in enumerate(hidden)}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        keys = sorted(k for k in tensors if k.startswith("hidden."))
        if not keys:
            self.hidden = None
            return
        c = self.model.config
        shape, count = (c.layers, self.streams.batch_size, c.hidden), 2 if c.cell == "lstm" else 1
        if len(keys) != count or any(tuple(tensors[k].shape) != shape or not tensors[k].is_floating_point() for k in keys):
            raise CheckpointError(
                f"the checkpoint's carried state does not fit this run (expected {count} float tensor(s) "
                f"of shape {shape}); was --batch-size changed?"
            )
        # In the parameters' dtype: a state carried under bf16 autocast is bf16, and resuming
        # with --precision fp32 must not hand it to an fp32 LSTM (bf16 -> fp32 -> bf16 is exact).
        dtype = next(self.model.parameters()).dtype
        self.hidden = tuple(tensors[k][:, self.rows].to(self.device, dtype).contiguous() for k in keys)

    def checkpoint_meta(self) -> dict:
        return {
            "model_config": self.model.config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "corpus": self.corpus_info,
        }


@torch.no_grad()
def stream_nll(
    model: LanguageModel,
    ids: np.ndarray,
    *,
    device: torch.device,
    seq_len: int = 256,
    streams: int = 16,
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of `ids[1:]` given the preceding ids.

    The text is cut into `streams` contiguous rows scored together with their state
    carried across windows; only the first token of each row lacks context. Scored
    in fp32 in eval mode, so the figure does not depend on the training precision.
    """
    n = len(ids) - 1
    rows = max(1, min(streams, n // (4 * seq_len)))
    row_len = n // rows
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    x_all = torch.from_numpy(np.asarray(ids[: rows * row_len], dtype=np.int64)).view(rows, row_len)
    y_all = torch.from_numpy(np.asarray(ids[1 : rows * row_len + 1], dtype=np.int64)).view(rows, row_len)
    state = None
    for start in range(0, row_len, seq_len):
        x = x_all[:, start : start + seq_len].to(device)
        y = y_all[:, start : start + seq_len].to(device)
        logits, state = model(x, state)
        total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    # The remainder that did not fill a row is scored as one short extra row.
    tail = rows * row_len
    if tail < n:
        x = torch.from_numpy(np.asarray(ids[tail:n], dtype=np.int64)).view(1, -1).to(device)
        y = torch.from_numpy(np.asarray(ids[tail + 1 : n + 1], dtype=np.int64)).view(1, -1).to(device)
        logits, _ = model(x)
        total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total, count


# ---- training ------------------------------------------------------------------------

# Model shapes that suit each tokenizer when the user passes only a corpus. Char models
# are GRUs: on tiny-shakespeare in 600 s on a 2-core CPU (held-out last 10%, nats/char),
# a 2x512 LSTM reached 1.4446 (1.4320 with weight decay 0.2), a 2x640 GRU 1.4334 (1.4170):
# the GRU fits the training text no better but carries over to unseen text better.
DEFAULT_MODEL = {
    "char": {"cell": "gru", "embed": 128, "hidden": 640, "layers": 2, "dropout": 0.3, "tie_weights": False},
    "word": {"embed": 512, "hidden": 512, "layers": 2, "dropout": 0.4, "tie_weights": True},
    "bpe": {"embed": 512, "hidden": 512, "layers": 2, "dropout": 0.3, "tie_weights": True},
    "unigram": {"embed": 512, "hidden": 512, "layers": 2, "dropout": 0.3, "tie_weights": True},
}
# Training settings for each tokenizer, over TrainConfig's defaults. Char models decay
# their weights far harder than the loop's default (0.01): on tiny-shakespeare in 600 s (as
# above), the 2x640 GRU reached 1.4334 nats/char with 0.01, 1.4217 with 0.1, 1.4170 with 0.2,
# 1.4141 with 0.4 and 1.4111 with 0.8 (validation loss on the training text: 1.284, 1.274,
# 1.266, 1.262, 1.264): a strong decay mostly helps on text unlike the training text.
DEFAULT_TRAIN = {
    "char": {"seq_len": 128, "weight_decay": 0.8},
    "word": {"seq_len": 64},
    "bpe": {"seq_len": 64},
    "unigram": {"seq_len": 64},
}


def default_train_config(kind: str) -> TrainConfig:
    """The training settings `textrnn train` starts from for a `kind` tokenizer."""
    return TrainConfig(**DEFAULT_TRAIN.get(kind, DEFAULT_TRAIN["char"]))


def train_lm(
    corpus: str | Path,
    tokenizer: Tokenizer,
    *,
    out: str | Path,
    model_overrides: dict | None = None,
    train_cfg: TrainConfig,
    device: torch.device = torch.device("cpu"),
    on_progress: Callable[[Progress], None] | None = None,
    on_log: Callable[[str], None] = lambda msg: None,
    resume: Checkpoint | None = None,
    fit_small_corpus: bool = True,
) -> TrainResult:
    """Train (or resume training) a language model on `corpus`; return where it was saved.

    When `fit_small_corpus` is set, a batch shape too large for the corpus is shrunk
    (and reported through `on_log`) instead of failing.
    """
    fingerprint = file_info(corpus)
    if resume is not None:
        old = resume.meta.get("corpus", {}).get("sha256")
        if old and old != fingerprint["sha256"]:
            on_log(f"warning: {corpus} differs from the corpus this checkpoint was trained on")
    encoded = encode_corpus(corpus, tokenizer, corpus_sha256=fingerprint["sha256"])
    _check_not_constant(encoded, tokenizer)
    if fit_small_corpus and resume is None:
        n_train = int(encoded.tokens * (1 - train_cfg.val_fraction))
        B, T = fit_batch_shape(n_train, train_cfg.batch_size, train_cfg.seq_len)
        world = distributed.context().world
        B = max(world, B - B % world)  # the global batch is split evenly among the processes
        if (B, T) != (train_cfg.batch_size, train_cfg.seq_len):
            on_log(f"small corpus ({encoded.tokens} tokens): using --batch-size {B} --seq-len {T}")
            train_cfg = TrainConfig.from_dict({**train_cfg.to_dict(), "batch_size": B, "seq_len": T})
    seed_everything(train_cfg.seed)
    if resume is not None:
        model = model_from_checkpoint(resume).to(device)
        if model.config.vocab_size != tokenizer.vocab_size:
            raise CheckpointError(
                f"checkpoint tokenizer has {tokenizer.vocab_size} ids but its model expects {model.config.vocab_size}"
            )
    else:
        shape = {**DEFAULT_MODEL.get(tokenizer.kind, DEFAULT_MODEL["char"]), **(model_overrides or {})}
        model = LanguageModel(LMConfig(vocab_size=tokenizer.vocab_size, **shape)).to(device)
    task = LMTask(
        model,
        tokenizer,
        encoded,
        train_cfg,
        corpus_info={**fingerprint, "tokens": encoded.tokens, "chars": encoded.chars},
        device=device,
    )
    out = Path(out).absolute()  # resuming from another directory must write to the same place
    out.parent.mkdir(parents=True, exist_ok=True)
    return fit(task, train_cfg, out=out, device=device, on_progress=on_progress, resume=resume)


def _check_not_constant(corpus: EncodedCorpus, tokenizer: Tokenizer) -> None:
    """DataError for a corpus that is one token repeated: there is nothing to predict."""
    ids, step = corpus.ids, 1 << 20
    first = ids[0]
    if any(np.any(ids[i : i + step] != first) for i in range(0, len(ids), step)):
        return
    raise DataError(
        f"{corpus.path}: the text is one token ({tokenizer.id_to_piece(int(first))!r}) repeated; "
        "a language model needs a text with at least two distinct tokens"
    )


_CONFIG_TYPES = {"vocab_size": int, "layers": int, "hidden": int, "embed": int, "dropout": int | float, "tie_weights": bool, "variational": bool, "cell": str}


def lm_config(meta: dict, *, source: str = "checkpoint") -> LMConfig:
    """The validated `model_config` of a checkpoint's meta; CheckpointError if it has none
    or an invalid one (a value that would be a usage error as an option is a corrupt file here)."""
    try:
        config = LMConfig.from_dict(meta["model_config"])
        for name, kind in _CONFIG_TYPES.items():  # LMConfig checks values, not types
            value = getattr(config, name)
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise TypeError(f"{name} is {value!r}")
        return config
    except (KeyError, TypeError, ValueError, UsageError) as err:
        raise CheckpointError(f"{source}: checkpoint metadata is incomplete or invalid (model config: {err})") from None


def _checked_model(config: LMConfig, shapes: dict[str, tuple[int, ...]], *, source: str) -> LanguageModel:
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
    claimed = c.vocab_size * c.embed + gates * c.hidden * (c.embed + c.hidden) + (c.layers - 1) * gates * c.hidden * 2 * c.hidden
    held = sum(math.prod(shape) for shape in shapes.values())
    if claimed > 4 * held + 1_000_000:
        where = f"{source}: checkpoint" if source else "checkpoint"
        raise CheckpointError(
            f"{where} model config describes at least {claimed:,} weights but the file holds {held:,}"
        )
    try:
        model = LanguageModel(config)
    except (RuntimeError, ValueError, TypeError, OverflowError) as err:
        raise CheckpointError(f"{source or 'checkpoint'}: cannot build its model config ({err})") from None
    check_weight_shapes(model, shapes, source=source)
    return model


def check_weight_shapes(model: torch.nn.Module, shapes: dict[str, tuple[int, ...]], *, source: str = "") -> None:
    """CheckpointError unless `shapes` ({name: shape}, without "model.") has exactly the
    model's weights, each of the model's shape. `source` (the file) prefixes the message."""
    where = f"{source}: checkpoint" if source else "checkpoint"
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where} weights do not match its model config (missing: {missing[:3]}, unexpected: {unexpected[:3]})"
        )
    for name, shape in shapes.items():
        if tuple(shape) != expected[name]:
            raise CheckpointError(
                f"{where} tensor {name} has shape {tuple(shape)}, its model config needs {expected[name]}"
            )


_STACKED_NAME = re.compile(r"rnn\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)")


def checkpoint_weights(ckpt: Checkpoint) -> dict[str, Tensor]:
    """The checkpoint's `model.*` tensors, named as in the model's state dict (without "model.")."""
    return {k[len("model.") :]: v for k, v in ckpt.tensors.items() if k.startswith("model.")}


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


def load_weights(model: torch.nn.Module, weights: dict[str, Tensor], *, source: str = "") -> None:
    """Load `weights` (from `checkpoint_weights`), checking every name, shape and value first."""
    check_weight_shapes(model, {k: tuple(v.shape) for k, v in weights.items()}, source=source)
    for name, tensor in weights.items():
        # Training never saves non-finite weights, so these come from a damaged file.
        if (tensor.is_floating_point() or tensor.is_complex()) and not torch.isfinite(tensor).all():
            where = f"{source}: checkpoint" if source else "checkpoint"
            raise CheckpointError(f"{where} tensor {name} holds NaN or infinite values")
    model.load_state_dict(weights)


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
    shapes = {lm_weight_name(k[len("model.") :]): tuple(e["shape"]) for k, e in tensors.items() if k.startswith("model.")}
    _checked_model(lm_config(meta, source=str(path)), shapes, source=str(path))


GENERATION_PRECISIONS = ("auto", *Matmul.MODES)

# ---- loading a trained model ---------------------------------------------------------------


@dataclass
class LoadedLM:
    model: LanguageModel
    tokenizer: Tokenizer
    checkpoint: Checkpoint
    precision: str = "fp32"  # fp32 | bf16 | int8: the weights' arithmetic when generating (see Matmul)
    _stepper: LMStepper | None = field(default=None, init=False, repr=False, compare=False)

    def stepper(self) -> LMStepper:
        """The model's one-token-at-a-time stepper, built on first use and kept: it copies and
        repacks the weights (tens of ms), so later generate calls start at once. Changing the
        model's weights afterwards does not reach it."""
        if self._stepper is None:
            self._stepper = LMStepper(self.model, precision=self.precision)
        return self._stepper


def load_lm(
    path: str | Path, *, device: torch.device = torch.device("cpu"), precision: str = "fp32"
) -> LoadedLM:
    """Load a language-model checkpoint (refusing other tasks) ready for inference.

    `precision` is the arithmetic of the generation stepper's large matrices (see Matmul):
    "auto" is int8 on x86 CPUs (a step at batch 1 reads every weight once, so fewer bytes
    is faster; the loss moves by under 0.001 nats/char), else bf16 where the CPU computes it
    natively, else fp32; a mode this machine lacks falls back to fp32. Scoring
    (`evaluate_*`) is always fp32.
    """
    if precision not in GENERATION_PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(GENERATION_PRECISIONS)}, got {precision!r}")
    ckpt = load_checkpoint(path, task="lm")
    cfg = lm_config(ckpt.meta, source=str(path))
    try:
        tokenizer = tokenizer_from_dict(ckpt.meta["tokenizer"])
    except KeyError as err:
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


# ---- generation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateConfig:
    length: int = 500  # tokens to generate per sample
    num_samples: int = 1  # samples drawn together as one batch
    stop: str = ""  # end a sample where this string appears (not printed)
    seed: int | None = None  # fixes the random draws

    def __post_init__(self) -> None:
        if self.length < 1:
            raise UsageError(f"--length must be at least 1, got {self.length}")
        if self.num_samples < 1:
            raise UsageError(f"--num-samples must be at least 1, got {self.num_samples}")


@dataclass
class Generated:
    text: str  # the continuation (the prompt is not repeated)
    logprob: float
    tokens: int


def encode_prompt(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """Prompt ids; unknown units are an error that names them, never silently dropped."""
    unknown = tokenizer.unknown_units(prompt)
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10])
        raise UsageError(f"prompt contains {len(unknown)} unit(s) not in the model's vocabulary: {shown}")
    ids = tokenizer.encode(prompt) if prompt else []
    if not ids:  # no prompt: start as after a line break, a natural text boundary
        ids = tokenizer.encode("\n") or [next(i for i in range(tokenizer.vocab_size) if not tokenizer.is_special(i))]
    return ids


class TextStream:
    """Turns one row's token ids into text increments, holding back a possible stop string.

    Characters decode one by one (a table lookup). Other tokenizers re-decode only the
    current line for each new token (word detokenization depends on its neighbours, e.g.
    quote pairs within a line), so the cost per token stays bounded however long the
    output grows. Only the not-yet-emitted tail is searched for the stop string: the part
    of a stop string that has been produced so far is always held back.
    """

    MAX_WINDOW = 64  # tokens of context kept for decoding when lines run long

    def __init__(self, tokenizer: Tokenizer, context: list[int], stop: str, emit: Callable[[str], None]):
        self.tokenizer, self.stop, self.emit = tokenizer, stop, emit
        self.pieces = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)] if tokenizer.kind == "char" else None
        newline = tokenizer.encode("\n")
        self.newline = newline[0] if len(newline) == 1 else None
        self.window = list(context[-8:])  # a few prompt ids give the first token its spacing
        if self.newline in self.window:
            self.window = self.window[len(self.window) - self.window[::-1].index(self.newline) :]
        self.window_text = tokenizer.decode(self.window)
        self.sent: list[str] = []  # emitted pieces of the continuation
        self.pending = ""  # decoded, not yet emitted
        self.done = False

    @property
    def text(self) -> str:
        """The decoded continuation so far (up to the stop string)."""
        return "".join(self.sent) + self.pending

    def add(self, token: int) -> bool:
        """Add a token; return True when the stop string has been reached."""
        if self.pieces is not None:
            self.pending += self.pieces[token]
        else:
            self._decode_with_context(token)
        if self.stop and self.stop in self.pending:
            self.pending = self.pending[: self.pending.index(self.stop)]
            self.done = True
        self._flush(final=self.done)
        return self.done

    def _decode_with_context(self, token: int) -> None:
        self.window.append(token)
        full = self.tokenizer.decode(self.window)
        if full.startswith(self.window_text):
            self.pending += full[len(self.window_text) :]
        else:  # the new token changed the window's end (bytes completing a character): redo
            same = len(os.path.commonprefix([full, self.window_text]))  # that end, still pending
            changed = len(self.window_text) - same
            if changed <= len(self.pending):
                self.pending = self.pending[: len(self.pending) - changed] + full[same:]
            else:
                self.pending += full[len(self.window_text) :]
        if token == self.newline:
            self.window, self.window_text = [], ""
        elif len(self.window) > self.MAX_WINDOW:
            self.window = self.window[-self.MAX_WINDOW // 2 :]
            self.window_text = self.tokenizer.decode(self.window)
        else:
            self.window_text = full

    def _flush(self, *, final: bool) -> None:
        text, ready = self.pending, len(self.pending)
        if not final:
            if text.endswith("\ufffd"):  # an unfinished UTF-8 sequence (byte fallback)
                ready -= 1
            if self.stop:  # hold back a tail that may grow into the stop string
                for k in range(min(len(self.stop) - 1, ready), 0, -1):
                    if text[ready - k : ready] == self.stop[:k]:
                        ready -= k
                        break
        if ready > 0:
            self.emit(text[:ready])
            self.sent.append(text[:ready])
            self.pending = text[ready:]

    def finish(self) -> None:
        self._flush(final=True)


def generate(
    lm: LoadedLM,
    *,
    prompt: str = "",
    config: GenerateConfig = GenerateConfig(),
    sampling: decoding.SamplingConfig = decoding.SamplingConfig(),
    on_text: Callable[[int, str], None] | None = None,
) -> list[Generated]:
    """Sample `num_samples` continuations of `prompt` as one batch.

    `on_text(row, text)` receives each row's text as it is produced, for streaming.
    """
    tok = lm.tokenizer
    ids = encode_prompt(tok, prompt)
    generator = torch.Generator().manual_seed(config.seed) if config.seed is not None else None
    stepper = lm.stepper()
    state, last = _prime(lm, stepper, ids, config.num_samples)
    streams = [
        TextStream(tok, ids, config.stop, (lambda text, r=r: on_text(r, text)) if on_text else (lambda text: None))
        for r in range(config.num_samples)
    ]
    with generation_threads(config.num_samples, last.device):
        samples = decoding.sample(
            stepper.step,
            state,
            last,
            max_new_tokens=config.length,
            config=sampling,
            generator=generator,
            banned_ids=sorted(tok.special_ids),
            is_done=lambda row, tokens: streams[row].done,
            on_token=lambda row, token: streams[row].add(token),
            history=[ids] * config.num_samples,
        )
    results = []
    for s, stream in zip(samples, streams, strict=True):
        stream.finish()
        results.append(Generated(text=stream.text, logprob=s.logprob, tokens=len(s.tokens)))
    return results


@contextmanager
def generation_threads(rows: int, device: torch.device):
    """One CPU thread while stepping a few rows at a time.

    A single step is a few matrix-vector products: a second thread adds synchronisation
    and no speed, and when the CPU is busy with anything else, threads waiting on each
    other made batch-1 sampling several times slower (see benchmarks/RESULTS.md).
    """
    if device.type != "cpu" or rows > SINGLE_THREAD_ROWS:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


SINGLE_THREAD_ROWS = 64  # generation with at most this many rows (samples x beam) uses one thread


def _prime(lm: LoadedLM, stepper: LMStepper, ids: list[int], rows: int) -> tuple[State, Tensor]:
    """State after all prompt ids but the last (consumed with the fused forward), for `rows` rows."""
    model = lm.model
    device = next(model.parameters()).device
    if len(ids) > 1:
        with torch.inference_mode():
            _, state = model(torch.tensor([ids[:-1]], device=device))
        state = tuple(s.float() for s in state)
    else:
        state = model.initial_state(1, device=device)
    index = torch.zeros(rows, dtype=torch.long, device=device)
    return reorder_state(state, index), torch.full((rows,), ids[-1], dtype=torch.long, device=device)


def beam_generate(
    lm: LoadedLM,
    *,
    prompt: str = "",
    beam: decoding.BeamConfig,
    stop: str = "",
) -> list[tuple[str, decoding.Hypothesis]]:
    """The most probable continuations of `prompt` by beam search, best first."""
    tok = lm.tokenizer
    ids = encode_prompt(tok, prompt)
    stepper = lm.stepper()
    state, last = _prime(lm, stepper, ids, 1)

    def is_done(row: int, tokens) -> bool:
        return bool(stop) and stop in _continuation(tok, ids, list(tokens))

    with generation_threads(beam.beam, last.device):
        hyps = decoding.beam_search(
            stepper.step,
            reorder_state,
            state,
            int(last[0]),
            config=beam,
            is_done=is_done if stop else None,
            banned_ids=sorted(tok.special_ids),
        )
    out = []
    for h in hyps:
        text = _continuation(tok, ids, list(h.tokens))
        if stop and stop in text:
            text = text[: text.index(stop)]
        out.append((text, h))
    return out


def _continuation(tok: Tokenizer, prompt_ids: list[int], ids: list[int]) -> str:
    context = prompt_ids[-4:]
    base = tok.decode(context)
    full = tok.decode(context + ids)
    return full[len(base) :] if full.startswith(base) else full


# ---- evaluation ---------------------------------------------------------------------------------


def evaluate_file(lm: LoadedLM, path: str | Path) -> dict:
    """Cross-entropy of a text file under the model: per token, perplexity, bits per character."""
    return evaluate_text(lm, read_text(path), name=str(path))


def evaluate_text(lm: LoadedLM, text: str, *, name: str = "<text>") -> dict:
    """Cross-entropy of `text` under the model (see `evaluate_file`)."""
    tok = lm.tokenizer
    device = next(lm.model.parameters()).device
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    if len(ids) < 2:
        raise DataError(f"{name}: too short to evaluate ({len(ids)} tokens)")
    unknown = int(np.sum(ids == tok.unk_id)) if getattr(tok, "unk_id", None) is not None else 0
    nats, count = stream_nll(lm.model, ids, device=device)
    chars = tok.count_chars(text)
    # bits/char counts every predicted character; the first token has no prediction.
    first_chars = tok.count_chars(tok.decode(ids[:1].tolist()))
    predicted_chars = max(1, chars - first_chars)
    loss = nats / count
    return {
        "loss_nats": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "bits_per_char": nats / predicted_chars / math.log(2),
        "nats_per_char": nats / predicted_chars,
        "tokens": count,
        "chars": predicted_chars,
        "unknown": unknown,
        "file": name,
    }
