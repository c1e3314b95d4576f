"""Next-token candidates (autocomplete): the K most probable next units after a prompt,
with their probabilities, computed as `evaluate` scores text (fp32, the whole model), so
that P(unit | prompt) = exp(nats(prompt) - nats(prompt + unit)).

A unit is what a reader takes as the next "thing" for the model's tokenizer:
- word: one token (a word, a number, a punctuation mark, or the line break "\\n");
- char with grapheme units: one token, a whole grapheme cluster;
- char with code points: the code points up to the next grapheme-cluster boundary;
- bpe / unigram: a whole word, that is the pieces from one that starts a word ("\u2581...")
  up to the next word boundary (a piece that starts a word, a line break or a special
  token). The prompt's last word is taken as complete: punctuation that sentencepiece
  glues to it ("any," is "\u2581any" ",") is not a candidate.

A unit of several tokens is the pieces followed by a boundary:
P(unit) = P(t1..tn | prompt) * P(the next token starts a new unit | prompt, t1..tn).
Units are searched best first; a prefix is never less probable than a unit it starts, so
the search stops once K units are at least as probable as every prefix left (or after
MAX_STEPS model steps). A text reached by two segmentations adds up their probabilities.
Special tokens (<unk>, controls) are never candidates.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from textrnn.errors import UsageError
from textrnn.models.lm import LanguageModel, State
from textrnn.tasks.lm.generate import continuation, encode_prompt
from textrnn.text import graphemes
from textrnn.tokenizers import Tokenizer

MAX_STEPS = 256  # model steps one prompt's search may take (a step is one token of one prefix)
MAX_UNIT_TOKENS = 24  # a unit this long is taken as complete (a runaway "word")


@dataclass(frozen=True)
class NextToken:
    text: str  # the text that follows the prompt (" the", ","): prompt + text is what was scored
    probability: float  # P(text | prompt)

    @property
    def token(self) -> str:
        """The unit without the spaces around it ("the"); a space alone stays one."""
        return self.text.strip(" ") or self.text


@dataclass
class _Prefix:
    """Tokens after the prompt that do not yet make a whole unit, with what follows them."""

    ids: tuple[int, ...]
    logprob: float  # log P(ids | prompt)
    state: State | None = None  # the model's state after them
    ranked: list[int] = field(default_factory=list)  # tokens that may extend it, most probable first
    next_logprob: Tensor | None = None  # log P(next token | prompt, ids), (V,)


def next_tokens(
    model: LanguageModel, tokenizer: Tokenizer, prompt: str, *, k: int
) -> list[NextToken]:
    """The `k` most probable next units after `prompt`, most probable first."""
    if k < 1:
        raise UsageError(f"--next must be at least 1, got {k}")
    prompt_ids = encode_prompt(tokenizer, prompt)
    rule = _UnitRule(tokenizer, prompt_ids)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _search(model, tokenizer, rule, prompt_ids, k, device)
    finally:
        model.train(was_training)


def _search(model, tokenizer, rule, prompt_ids, k, device) -> list[NextToken]:
    found: dict[str, float] = {}
    root = _Prefix(ids=(), logprob=0.0)
    root.next_logprob, root.state = _step(model, prompt_ids, None, device)
    root.ranked = _ranked(root.next_logprob, rule.starts)
    heap: list[tuple[float, int, _Prefix, int]] = []  # (-logprob of the child, tie, parent, rank)
    tie = 0

    def push_child(parent: _Prefix, rank: int) -> None:
        nonlocal tie
        if rank < len(parent.ranked):
            lp = parent.logprob + float(parent.next_logprob[parent.ranked[rank]])
            heapq.heappush(heap, (-lp, tie, parent, rank))
            tie += 1

    def add(ids: tuple[int, ...], logprob: float) -> None:
        text = continuation(tokenizer, prompt_ids, list(ids))
        found[text] = found.get(text, 0.0) + math.exp(logprob)

    push_child(root, 0)
    steps = 0
    while heap and not _enough(found, k, -heap[0][0]):
        neg_lp, _, parent, rank = heapq.heappop(heap)
        push_child(parent, rank + 1)  # siblings enter the heap one at a time, best first
        child = _Prefix(ids=(*parent.ids, parent.ranked[rank]), logprob=-neg_lp)
        extend = rule.extenders(child.ids)
        if extend is None or len(child.ids) >= MAX_UNIT_TOKENS or steps >= MAX_STEPS:
            add(child.ids, child.logprob)  # a whole unit: nothing can continue it
            continue
        steps += 1
        child.next_logprob, child.state = _step(model, [child.ids[-1]], parent.state, device)
        ends = torch.logsumexp(child.next_logprob.masked_fill(extend, -math.inf), dim=0)
        add(child.ids, child.logprob + float(ends))
        child.ranked = _ranked(child.next_logprob, extend)
        push_child(child, 0)
    best = sorted(found.items(), key=lambda item: -item[1])[:k]
    return [NextToken(text, p) for text, p in best]


def _enough(found: dict[str, float], k: int, best_left: float) -> bool:
    """Whether `k` units are at least as probable as the best prefix left (log `best_left`)."""
    if len(found) < k:
        return False
    kth = sorted(found.values(), reverse=True)[k - 1]
    return kth >= math.exp(best_left)


def _step(model: LanguageModel, ids: list[int], state: State | None, device) -> tuple[Tensor, State]:
    x = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    logits, state = model(x, state)  # (1, T, V)
    return torch.log_softmax(logits[0, -1].float(), dim=-1).cpu(), state  # (V,)


def _ranked(logprob: Tensor, allowed: Tensor) -> list[int]:
    """The allowed token ids, most probable first."""
    ids = torch.nonzero(allowed).flatten()
    order = torch.argsort(logprob[ids], descending=True, stable=True)
    return ids[order].tolist()


class _UnitRule:
    """Which tokens may start a unit, and which extend a unit begun with given tokens."""

    def __init__(self, tokenizer: Tokenizer, prompt_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        V = tokenizer.vocab_size
        special = torch.tensor([tokenizer.is_special(i) for i in range(V)])
        self.starts = ~special  # (V,) every ordinary token may start a unit
        self.pieces = [tokenizer.id_to_piece(i) for i in range(V)]
        self.mode = _mode(tokenizer)
        if self.mode == "words":  # a word starts with "▁" (or is a line break); the others continue one
            self.inside = torch.tensor(
                [not (p.startswith("\u2581") or p == "\n") for p in self.pieces]
            ) & ~special
            self.starts = ~self.inside & ~special
        elif self.mode == "clusters":
            self.prompt_tail = (graphemes(tokenizer.decode(prompt_ids)) or [""])[-1]
            self.inside = ~special

    def extenders(self, ids: tuple[int, ...]) -> Tensor | None:
        """The tokens that would continue the unit begun with `ids` (None: it is whole)."""
        if self.mode == "tokens" or self.pieces[ids[-1]] == "\n":
            return None
        if self.mode == "words":
            return self.inside
        # Code points: a token extends the unit if it joins the last grapheme cluster.
        tail = graphemes(self.prompt_tail + "".join(self.pieces[i] for i in ids))[-1]
        inside = self.inside.tolist()
        mask = torch.tensor([ok and len(graphemes(tail + p)) == 1 for ok, p in zip(inside, self.pieces, strict=True)])
        return mask if bool(mask.any()) else None


def _mode(tokenizer: Tokenizer) -> str:
    """tokens: every token is a unit; words: subword pieces up to a word boundary;
    clusters: code points up to a grapheme-cluster boundary."""
    if tokenizer.kind in ("bpe", "unigram"):
        return "words"
    if tokenizer.kind == "char" and getattr(tokenizer, "unit", "grapheme") == "codepoint":
        return "clusters"
    return "tokens"
