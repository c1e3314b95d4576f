"""Generating text from a language model: sampling (temperature, top-k/top-p, repetition
penalty) and beam search through `engine.decoding`, streamed as text increments that
hold back a possible stop string."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from textrnn.engine.decoding.beam import BeamConfig, Hypothesis, beam_search
from textrnn.engine.decoding.sampling import SamplingConfig, sample
from textrnn.errors import UsageError
from textrnn.models.lm import LMStepper, State, reorder_state
from textrnn.tokenizers import Tokenizer

if TYPE_CHECKING:  # load.py imports this module (through next.py): the type only
    from textrnn.tasks.lm.load import LoadedLM


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
        raise UsageError(
            f"prompt contains {len(unknown)} unit(s) not in the model's vocabulary: {shown}"
        )
    ids = tokenizer.encode(prompt) if prompt else []
    if not ids:  # no prompt: start as after a line break, a natural text boundary
        ids = tokenizer.encode("\n") or [
            next(i for i in range(tokenizer.vocab_size) if not tokenizer.is_special(i))
        ]
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

    def __init__(
        self, tokenizer: Tokenizer, context: list[int], stop: str, emit: Callable[[str], None]
    ):
        self.tokenizer, self.stop, self.emit = tokenizer, stop, emit
        self.pieces = (
            [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)]
            if tokenizer.kind == "char"
            else None
        )
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
    sampling: SamplingConfig = SamplingConfig(),
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
        TextStream(
            tok,
            ids,
            config.stop,
            (lambda text, r=r: on_text(r, text)) if on_text else (lambda text: None),
        )
        for r in range(config.num_samples)
    ]
    with generation_threads(config.num_samples, last.device):
        samples = sample(
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
    return reorder_state(state, index), torch.full(
        (rows,), ids[-1], dtype=torch.long, device=device
    )


def beam_generate(
    lm: LoadedLM,
    *,
    prompt: str = "",
    beam: BeamConfig,
    stop: str = "",
) -> list[tuple[str, Hypothesis]]:
    """The most probable continuations of `prompt` by beam search, best first."""
    tok = lm.tokenizer
    ids = encode_prompt(tok, prompt)
    stepper = lm.stepper()
    state, last = _prime(lm, stepper, ids, 1)

    def is_done(row: int, tokens) -> bool:
        return bool(stop) and stop in continuation(tok, ids, list(tokens))

    with generation_threads(beam.beam, last.device):
        hyps = beam_search(
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
        text = continuation(tok, ids, list(h.tokens))
        if stop and stop in text:
            text = text[: text.index(stop)]
        out.append((text, h))
    return out


def continuation(tok: Tokenizer, prompt_ids: list[int], ids: list[int]) -> str:
    """The text that `ids` add after the prompt (decoded with a few prompt ids for spacing)."""
    context = prompt_ids[-4:]
    base = tok.decode(context)
    full = tok.decode(context + ids)
    return full[len(base) :] if full.startswith(base) else full
