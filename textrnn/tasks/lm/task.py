"""The language model as a task for the training loop: truncated back-propagation through
time over contiguous token streams, and the fp32 streaming score used for validation
and `textrnn eval`."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from textrnn.config import config_to_dict
from textrnn.data.corpus import EncodedCorpus, Spans, TokenStreams, split_validation
from textrnn.engine import distributed
from textrnn.engine.config import TrainConfig
from textrnn.engine.progress import Tick
from textrnn.errors import CheckpointError, UsageError
from textrnn.models.lm import LanguageModel, State, detach_state
from textrnn.tasks.lm.budget import Choice
from textrnn.tokenizers import Tokenizer

MAX_VAL_TOKENS = 2_000_000  # validation is capped so that it stays cheap on large corpora


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
        dev: EncodedCorpus | None = None,
        dev_info: dict | None = None,
        sizing: Choice | None = None,
    ) -> None:
        """Validation scores `dev` when given, else `val_fraction` of `corpus` held out.
        `sizing`: how the budget rule chose the model's size (kept in the checkpoint)."""
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.sizing = sizing
        self.corpus_info, self.dev_info = corpus_info, dev_info
        if dev is not None:
            train = [(0, corpus.tokens)]
            self.val_ids = np.array(dev.ids[:MAX_VAL_TOKENS])  # read into memory, as held-out spans are
            self.chars_per_token = dev.chars / max(1, dev.tokens)
        else:
            n_val = min(int(corpus.tokens * cfg.val_fraction), MAX_VAL_TOKENS)
            if n_val <= cfg.seq_len:
                n_val = 0
            train, val = split_validation(corpus.tokens, n_val, min_block=4 * cfg.seq_len)
            self.val_ids = Spans(corpus.ids, val).array() if n_val else None
            self.chars_per_token = corpus.chars / max(1, corpus.tokens)
        self.train_ids = Spans(corpus.ids, train)
        self.streams = TokenStreams(
            self.train_ids, batch_size=cfg.batch_size, seq_len=cfg.seq_len, seed=cfg.seed
        )
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
        loss = (
            F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
            / self.dist.world
        )
        # The loop skips a non-finite step; a state that blew up with it must not be
        # carried on, or every later batch would be non-finite too.
        self.hidden = detach_state(hidden) if torch.isfinite(loss) else None
        return loss, y.numel()

    def evaluate(self) -> dict[str, float]:
        if self.val_ids is None:
            return {"val_loss": float("nan")}
        nats, tokens = stream_nll(
            self.model, self.val_ids, device=self.device, seq_len=self.seq_len
        )
        loss = nats / tokens
        return {
            "val_loss": loss,
            "val_ppl": math.exp(min(loss, 50.0)),
            "val_bpc": loss / self.chars_per_token / math.log(2),
        }

    def state_tensors(self) -> dict[str, Tensor]:
        """The carried state of all B streams (gathered from every rank)."""
        if not self.dist.active:
            return (
                {}
                if self.hidden is None
                else {f"hidden.{i}": h.detach().cpu() for i, h in enumerate(self.hidden)}
            )
        # Every rank must take part; a rank without a state (a skipped non-finite step) sends
        # zeros, which is what an LSTM starts from anyway.
        hidden = self.hidden or self.model.initial_state(
            self.rows.stop - self.rows.start, device=self.device
        )
        dtype = next(self.model.parameters()).dtype
        return {
            f"hidden.{i}": distributed.gather_rows(h.to(dtype), dim=1).cpu()
            for i, h in enumerate(hidden)
        }

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        keys = sorted(k for k in tensors if k.startswith("hidden."))
        if not keys:
            self.hidden = None
            return
        c = self.model.config
        shape, count = (c.layers, self.streams.batch_size, c.hidden), 2 if c.cell == "lstm" else 1
        if len(keys) != count or any(
            tuple(tensors[k].shape) != shape or not tensors[k].is_floating_point() for k in keys
        ):
            raise CheckpointError(
                f"the checkpoint's carried state does not fit this run (expected {count} float tensor(s) "
                f"of shape {shape}); was --batch-size changed?"
            )
        # In the parameters' dtype: a state carried under bf16 autocast is bf16, and resuming
        # with --precision fp32 must not hand it to an fp32 LSTM (bf16 -> fp32 -> bf16 is exact).
        dtype = next(self.model.parameters()).dtype
        self.hidden = tuple(
            tensors[k][:, self.rows].to(self.device, dtype).contiguous() for k in keys
        )

    def checkpoint_meta(self) -> dict:
        return {
            "model_config": config_to_dict(self.model.config),
            "tokenizers": {"text": self.tokenizer.to_dict()},
            "data": {"train": self.corpus_info, "dev": self.dev_info},
            **({"sizing": self.sizing.to_dict()} if self.sizing else {}),
        }

    def model_note(self) -> str:
        """The model in a few words for the start line, with why it has this size."""
        c = self.model.config
        tied = ", tied" if c.tie_weights else ""
        words = f"{c.cell.upper()} {c.layers}x{c.hidden}, embed {c.embed}{tied}, dropout {c.dropout:g}"
        return f"{words}; {self.sizing.why()}" if self.sizing else words


@torch.no_grad()
def stream_nll(
    model: LanguageModel,
    ids: np.ndarray,
    *,
    device: torch.device,
    seq_len: int = 256,
    streams: int = 16,
    on_progress: Tick | None = None,
) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of `ids[1:]` given the preceding ids.

    The text is cut into `streams` contiguous rows scored together with their state
    carried across windows; only the first token of each row lacks context. Scored
    in fp32 in eval mode, so the figure does not depend on the training precision.
    `on_progress` hears (tokens scored, tokens to score) after each window.
    """
    n = len(ids) - 1
    rows = max(1, min(streams, n // (4 * seq_len)))
    row_len = n // rows
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    x_all = torch.from_numpy(np.asarray(ids[: rows * row_len], dtype=np.int64)).view(rows, row_len)
    y_all = torch.from_numpy(np.asarray(ids[1 : rows * row_len + 1], dtype=np.int64)).view(
        rows, row_len
    )
    state = None
    for start in range(0, row_len, seq_len):
        x = x_all[:, start : start + seq_len].to(device)
        y = y_all[:, start : start + seq_len].to(device)
        logits, state = model(x, state)
        total += F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
        ).item()
        count += y.numel()
        if on_progress is not None:
            on_progress(count, n)
    # The remainder that did not fill a row is scored as one short extra row.
    tail = rows * row_len
    if tail < n:
        x = torch.from_numpy(np.asarray(ids[tail:n], dtype=np.int64)).view(1, -1).to(device)
        y = (
            torch.from_numpy(np.asarray(ids[tail + 1 : n + 1], dtype=np.int64))
            .view(1, -1)
            .to(device)
        )
        logits, _ = model(x)
        total += F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
        ).item()
        count += y.numel()
        if on_progress is not None:
            on_progress(count, n)
    model.train(was_training)
    return total, count
