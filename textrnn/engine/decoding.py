"""Greedy decoding, ancestral sampling and beam search over any step function.

Search never calls a model. The caller passes a `step_fn` that maps the last tokens
of B rows `(B,)` and an opaque decoder state to next-token logits `(B, V)` and the new
state, and a `reorder_fn` that selects/repeats state rows by an index `(B',)`. This is
the OpenNMT-py/AllenNLP split: the language model and the seq2seq transliterator share
one implementation, and search is tested on hand-written probability tables whose best
path is known.

The caller has already run the prompt (or the encoder) and passes the state after it
together with the last prompt token(s); nothing here re-reads the prompt.

Token-choice order for sampling (`select_next`), fixed and shared by every caller:

1. repetition penalty (CTRL, Keskar et al. 2019): a token already seen in the row has its
   logit divided by the penalty when positive, multiplied when negative;
2. banned ids: logits set to -inf;
3. greedy (`temperature == 0` or `greedy=True`): argmax here, steps 4-6 are skipped;
4. temperature: logits / T;
5. top-k: keep the k largest logits;
6. top-p (nucleus, Holtzman et al. 2020): keep the smallest set of most probable tokens
   whose probability mass (after steps 1-5) is >= p; the top token is always kept;
7. draw one token per row (`draw`: the draws of `torch.multinomial`, without its checks).

Reported log-probabilities are always those of the *unmodified* model: log_softmax of
the raw logits, summed over the chosen tokens. Penalties, temperature and truncation
change which token is chosen but not what the model thought of it, and this is the
number users compare between runs and settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from textrnn.errors import UsageError

State = Any  # decoder state for B rows; only step_fn and reorder_fn look inside
StepFn = Callable[[Tensor, State], tuple[Tensor, State]]  # (B,) long -> (B, V) logits
ReorderFn = Callable[[State, Tensor], State]  # keep/repeat rows by an index (B',)
IsDone = Callable[[int, Sequence[int]], bool]  # (row, tokens so far) -> stop this row?
OnToken = Callable[[int, int], None]  # (row, token id), called as each token is chosen
StopReason = Literal["eos", "stop", "length"]  # eos_id drawn / is_done said so / ran out


@dataclass(frozen=True)
class SamplingConfig:
    """How `sample` turns logits into a token; see the module docstring for the order."""

    temperature: float = 1.0  # > 1 flattens, < 1 sharpens; 0 means greedy
    top_k: int = 0  # keep only the k most probable tokens; 0 = off
    top_p: float = 1.0  # nucleus: keep the smallest set with mass >= p; 1 = off
    repetition_penalty: float = 1.0  # CTRL penalty on tokens already in the row; 1 = off
    greedy: bool = False  # always take the argmax (after penalty and banned ids)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise UsageError(f"--temperature must be a finite number >= 0, got {self.temperature}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise UsageError(f"--top-k must be an integer >= 0 (0 = off), got {self.top_k}")
        if not (0 < self.top_p <= 1):
            raise UsageError(f"--top-p must be in (0, 1], got {self.top_p}")
        if not (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0):
            raise UsageError(
                f"--repetition-penalty must be a finite number > 0, got {self.repetition_penalty}"
            )

    @property
    def is_greedy(self) -> bool:
        """Temperature 0 is the limit of sampling: the argmax, without drawing."""
        return self.greedy or self.temperature == 0


@dataclass(frozen=True, kw_only=True)
class BeamConfig:
    """Beam search settings.

    A hypothesis of `length` decoding steps (eos included when it ended with eos) with
    model log-probability `logprob` scores `logprob / length ** length_penalty`: 0 is the
    raw sum (favours short outputs), 1 is the per-token average. This is plain length
    normalisation, not the GNMT ((5 + length) / 6) ** alpha variant.
    """

    beam: int = 5  # hypotheses kept alive per source
    nbest: int = 1  # hypotheses returned per source, best first
    length_penalty: float = 1.0  # alpha in logprob / length ** alpha; 0 = raw sum
    min_length: int = 0  # eos is blocked until this many tokens were produced
    max_length: int  # decoding steps at most; hypotheses still alive then are returned

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise UsageError(f"--beam must be >= 1, got {self.beam}")
        if not (1 <= self.nbest <= self.beam):
            raise UsageError(
                f"--nbest must be between 1 and --beam ({self.beam}), got {self.nbest}"
            )
        if not math.isfinite(self.length_penalty):
            raise UsageError(f"--length-penalty must be a finite number, got {self.length_penalty}")
        if self.max_length < 1:
            raise UsageError(f"--max-length must be >= 1, got {self.max_length}")
        if not (0 <= self.min_length <= self.max_length):
            raise UsageError(
                f"--min-length must be between 0 and --max-length ({self.max_length}), "
                f"got {self.min_length}"
            )


@dataclass(frozen=True)
class Sample:
    """One row generated by `sample`/`greedy`."""

    tokens: tuple[int, ...]  # generated ids; eos is not included
    logprob: float  # sum of log p_model(token) over tokens (and over eos when it ended so)
    stop_reason: StopReason


@dataclass(frozen=True)
class Hypothesis:
    """One finished beam-search hypothesis."""

    tokens: tuple[int, ...]  # generated ids; eos is not included
    score: float  # logprob / length ** length_penalty; what the n-best list is sorted by
    logprob: float  # sum of log p_model over the decoding steps, eos step included
    stop_reason: StopReason


# --------------------------------------------------------------------------- sampling


def select_next(
    logits: Tensor,
    config: SamplingConfig,
    *,
    generator: torch.Generator | None = None,
    seen: Tensor | None = None,
    banned: Tensor | None = None,
) -> Tensor:
    """Choose one next token per row from `logits` (B, V); returns (B,) long.

    `seen` (B, V) bool marks tokens the repetition penalty applies to; `banned` (V,) bool
    marks ids that must never be chosen. Top-k and top-p work on the k (or all) sorted
    candidates and draw there, so there is one sort per step and no scatter back to V.
    """
    logits = logits.float()
    if seen is not None and config.repetition_penalty != 1.0:
        rp = config.repetition_penalty
        penalised = torch.where(logits > 0, logits / rp, logits * rp)  # (B, V)
        logits = torch.where(seen, penalised, logits)  # (B, V)
    if banned is not None:
        logits = logits.masked_fill(banned, -math.inf)  # (B, V)
    if config.is_greedy:
        return logits.argmax(dim=-1)  # (B,)
    if config.temperature != 1.0:
        logits = logits / config.temperature  # (B, V)
    vocab = logits.shape[-1]
    index = None  # maps candidate positions back to token ids when candidates are cut/sorted
    if 0 < config.top_k < vocab:
        logits, index = logits.topk(config.top_k, dim=-1)  # (B, k) sorted descending
    elif config.top_p < 1.0:
        logits, index = logits.sort(dim=-1, descending=True)  # (B, V)
    probs = logits.softmax(dim=-1)  # (B, C)
    if config.top_p < 1.0:
        before = probs.cumsum(dim=-1) - probs  # (B, C) mass of more probable candidates
        probs = probs.masked_fill(before >= config.top_p, 0.0)  # top token: before == 0 < p
    if generator is not None and generator.device != probs.device:
        # A seeded CPU generator draws for a model on a GPU: the same seed gives the same
        # text on any device (up to the logits' rounding), and the draw needs both on one.
        pick = draw(probs.cpu(), generator).to(probs.device)  # (B, 1)
    else:
        pick = draw(probs, generator)  # (B, 1)
    if index is not None:
        pick = index.gather(1, pick)  # (B, 1)
    return pick.squeeze(1)  # (B,)


def draw(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One index per row of `probs` (B, C), drawn in proportion: (B, 1) long.

    The draws of `torch.multinomial(probs, 1, generator=generator)` (the same exponential
    race, argmax of p / Exp(1), on the same random numbers) without its argument checks,
    which cost more than the draw itself at batch 1.
    """
    race = torch.empty_like(probs).exponential_(generator=generator)  # (B, C)
    return (probs / race).argmax(dim=-1, keepdim=True)


def sample(
    step_fn: StepFn,
    state: State,
    last_tokens: Tensor,
    *,
    max_new_tokens: int,
    config: SamplingConfig = SamplingConfig(),
    generator: torch.Generator | None = None,
    banned_ids: Sequence[int] = (),
    eos_id: int | None = None,
    is_done: IsDone | None = None,
    on_token: OnToken | None = None,
    history: Sequence[Sequence[int]] | None = None,
    reorder_fn: ReorderFn | None = None,
) -> list[Sample]:
    """Generate up to `max_new_tokens` tokens for each of B rows by ancestral sampling.

    All live rows advance together: one `step_fn` call per step. `last_tokens` (B,) are
    the last prompt tokens, `state` the decoder state after the prompt. To draw N
    samples of one prompt, expand first: `reorder_fn(state, torch.zeros(N, dtype=long))`.

    A row stops when it draws `eos_id` (eos is not part of `tokens`, not passed to
    `on_token`, but its log-probability is counted: the row's logprob is that of "these
    tokens, then stop"), or when `is_done(row, tokens)` returns True after a token was
    appended (that token is kept; use it for stop strings). `on_token(row, token)` is
    called as soon as a token is chosen, in row order within a step, never for a
    finished row. Generation ends when every row stopped or after `max_new_tokens`.

    `history[row]` lists ids the repetition penalty counts as already seen before
    generation starts (pass the prompt to penalise its tokens too). With `reorder_fn`,
    finished rows are dropped from the batch instead of being stepped on for nothing;
    the result is the same for greedy decoding, but random draws are then consumed
    differently, so seeded samples differ from a run without it.

    Same `generator` seed, same inputs -> same samples.
    """
    if max_new_tokens < 0:
        raise UsageError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")
    n_rows = last_tokens.shape[0]
    if history is not None and len(history) != n_rows:
        raise ValueError(f"history has {len(history)} rows, last_tokens has {n_rows}")
    out: list[list[int]] = [[] for _ in range(n_rows)]
    logprob = [0.0] * n_rows
    reason: list[StopReason] = ["length"] * n_rows
    rows = list(range(n_rows))  # original row of each batch position
    live = [True] * n_rows  # per batch position; all True after each drop
    banned: Tensor | None = None
    seen: Tensor | None = None
    tokens = last_tokens
    for step in range(max_new_tokens):
        logits, state = step_fn(tokens, state)  # (b, V)
        logits = logits.float()
        if step == 0:
            banned = _banned_mask(banned_ids, logits.shape[-1], logits.device)
            if config.repetition_penalty != 1.0:
                seen = _history_mask(history, n_rows, logits.shape[-1], logits.device)
        chosen = select_next(logits, config, generator=generator, seen=seen, banned=banned)  # (b,)
        chosen_lp = logits.log_softmax(-1).gather(1, chosen[:, None]).squeeze(1)  # (b,)
        if seen is not None:
            seen.scatter_(1, chosen[:, None], True)  # (b, V)
        ids, lps = chosen.tolist(), chosen_lp.tolist()
        for pos, row in enumerate(rows):
            if not live[pos]:
                continue
            token = ids[pos]
            logprob[row] += lps[pos]
            if token == eos_id:
                reason[row], live[pos] = "eos", False
                continue
            out[row].append(token)
            if on_token is not None:
                on_token(row, token)
            if is_done is not None and is_done(row, out[row]):
                reason[row], live[pos] = "stop", False
        if not any(live):
            break
        tokens = chosen
        if reorder_fn is not None and not all(live):
            keep = [pos for pos, alive in enumerate(live) if alive]
            index = torch.tensor(keep, dtype=torch.long, device=chosen.device)  # (b',)
            state = reorder_fn(state, index)
            tokens = chosen[index]  # (b',)
            seen = seen[index] if seen is not None else None  # (b', V)
            rows = [rows[pos] for pos in keep]
            live = [True] * len(keep)
    return [Sample(tuple(out[r]), logprob[r], reason[r]) for r in range(n_rows)]


def greedy(
    step_fn: StepFn,
    state: State,
    last_tokens: Tensor,
    *,
    max_new_tokens: int,
    banned_ids: Sequence[int] = (),
    eos_id: int | None = None,
    is_done: IsDone | None = None,
    on_token: OnToken | None = None,
    history: Sequence[Sequence[int]] | None = None,
    repetition_penalty: float = 1.0,
    reorder_fn: ReorderFn | None = None,
) -> list[Sample]:
    """`sample` with the argmax instead of a draw; see `sample` for the arguments."""
    config = SamplingConfig(greedy=True, repetition_penalty=repetition_penalty)
    return sample(
        step_fn,
        state,
        last_tokens,
        max_new_tokens=max_new_tokens,
        config=config,
        banned_ids=banned_ids,
        eos_id=eos_id,
        is_done=is_done,
        on_token=on_token,
        history=history,
        reorder_fn=reorder_fn,
    )


# ------------------------------------------------------------------------ beam search


def beam_search(
    step_fn: StepFn,
    reorder_fn: ReorderFn,
    state: State,
    start_token: int,
    *,
    config: BeamConfig,
    eos_id: int | None = None,
    is_done: IsDone | None = None,
    banned_ids: Sequence[int] = (),
) -> list[Hypothesis]:
    """Beam search for one source (`state` has one row); see `beam_search_batch`."""
    start = torch.tensor([start_token], dtype=torch.long)  # (1,)
    return beam_search_batch(
        step_fn,
        reorder_fn,
        state,
        start,
        config=config,
        eos_id=eos_id,
        is_done=is_done,
        banned_ids=banned_ids,
    )[0]


def beam_search_batch(
    step_fn: StepFn,
    reorder_fn: ReorderFn,
    state: State,
    start_tokens: Tensor,
    *,
    config: BeamConfig,
    eos_id: int | None = None,
    is_done: IsDone | None = None,
    banned_ids: Sequence[int] = (),
) -> list[list[Hypothesis]]:
    """Beam search for N sources at once; returns each source's n-best list, best first.

    `state` holds N rows and `start_tokens` is (N,). On the first step each source's
    row is expanded to `beam` rows with `reorder_fn`, so no two hypotheses share a token
    sequence; after that every step is one `step_fn` call on (sources left) * beam rows
    and one `reorder_fn` call that both follows the surviving hypotheses and drops the
    sources that are done.

    Each step keeps the 2 * beam best extensions of every source (fairseq): those that
    end with `eos_id` or make `is_done(source, tokens)` true finish if they rank among
    the first `beam`; the `beam` best of the others stay alive. Eos is blocked while a
    hypothesis has fewer than `min_length` tokens. Without eos (or is_done), every
    hypothesis runs to `max_length` and the most probable continuations are returned.

    A source is done when (a) `beam` hypotheses have finished (the OpenNMT/fairseq rule;
    with length_penalty > 0 a longer live hypothesis could in principle still have won,
    so this is the one approximation), or (b) its `nbest`-th finished score is at least
    the best score any live hypothesis can still reach (exact: model log-probabilities
    only fall, so a live one's final score is at most logprob / L ** alpha over its
    possible final lengths L), or (c) `max_length` steps were taken: live hypotheses
    then finish with stop_reason "length". Token sequences in the result are unique.
    """
    k, alpha, max_len = config.beam, config.length_penalty, config.max_length
    n_cand = 2 * k  # at most beam candidates end in eos, so >= beam others remain
    device = start_tokens.device
    n_src = start_tokens.shape[0]
    finished: list[list[Hypothesis]] = [[] for _ in range(n_src)]
    src = list(range(n_src))  # original source of each batch source
    count = torch.zeros(n_src, dtype=torch.long, device=device)  # finished per source
    kth = torch.full((n_src,), -math.inf, device=device)  # nbest-th finished score
    beam_lp = torch.zeros(n_src, 1, device=device)  # (n, w) w = 1 before the first step
    hist = torch.zeros(n_src, 1, 0, dtype=torch.long, device=device)  # (n, w, t-1)
    tokens = start_tokens
    banned: Tensor | None = None  # (V,) bool
    banned_eos: Tensor | None = None  # (V,) bool: banned ids and eos, before min_length
    for t in range(1, max_len + 1):
        logits, state = step_fn(tokens, state)  # (n*w, V)
        n, w = beam_lp.shape
        vocab = logits.shape[-1]
        if t == 1:
            banned = _banned_mask(banned_ids, vocab, device)
            if eos_id is not None:
                _check_id(eos_id, vocab, "eos id")
                banned_eos = _banned_mask([*banned_ids, eos_id], vocab, device)
        logp = logits.float().log_softmax(dim=-1)  # (n*w, V)
        mask = banned_eos if t - 1 < config.min_length else banned
        if mask is not None:
            logp = logp.masked_fill(mask, -math.inf)  # (n*w, V)
        top_lp, parent, token = _best_extensions(beam_lp, logp, n_cand)  # (n, 2k) each
        valid = top_lp > -math.inf  # (n, 2k)
        ended = valid & (token == eos_id) if eos_id is not None else torch.zeros_like(valid)
        stopped = torch.zeros_like(valid)
        hist_rows: list[list[list[int]]] | None = None
        if is_done is not None:
            hist_rows = hist.tolist()
            _mark_stopped(is_done, stopped, valid & ~ended, parent, token, hist_rows, src, k)
        cont = valid & ~ended & ~stopped  # (n, 2k)
        rank = torch.arange(n_cand, device=device).expand(n, n_cand)  # (n, 2k)
        sel = torch.where(cont, rank, rank + n_cand).topk(k, dim=1, largest=False).indices  # (n, k)
        alive = cont.gather(1, sel)  # (n, k)
        beam_lp = top_lp.gather(1, sel).masked_fill(~alive, -math.inf)  # (n, k)
        sel_parent, sel_token = parent.gather(1, sel), token.gather(1, sel)  # (n, k)

        final = (ended | stopped) & (rank < k)  # (n, 2k)
        last = t == max_len
        if bool(final.any()) or last:
            hist_rows = hist.tolist() if hist_rows is None else hist_rows
            scale = float(t) ** alpha
            new = _collect(final, ended, top_lp, parent, token, hist_rows, scale, "stop")
            if last:
                new += _collect(
                    alive, None, beam_lp, sel_parent, sel_token, hist_rows, scale, "length"
                )
            for i, hyp in new:
                finished[src[i]].append(hyp)
            for i in {i for i, _ in new}:
                count[i], kth[i] = _tally(finished[src[i]], config.nbest)
        if last:
            break
        best = beam_lp.max(dim=1).values  # (n,)
        bound = torch.maximum(best / float(t + 1) ** alpha, best / float(max_len) ** alpha)  # (n,)
        done = (count >= k) | (kth >= bound) | ~alive.any(dim=1)  # (n,)
        hist = torch.cat([hist.gather(1, _expand_to(sel_parent, hist)), sel_token[..., None]], 2)
        rows = torch.arange(n, device=device)[:, None] * w + sel_parent  # (n, k) rows in batch
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)  # (n',)
            if keep.numel() == 0:
                break
            rows, sel_token, beam_lp = rows[keep], sel_token[keep], beam_lp[keep]
            hist, count, kth = hist[keep], count[keep], kth[keep]
            src = [src[i] for i in keep.tolist()]
        state = reorder_fn(state, rows.flatten())  # (n'*k) rows
        tokens = sel_token.flatten()  # (n'*k,)
    return [_nbest(hyps, config.nbest) for hyps in finished]


def _best_extensions(beam_lp: Tensor, logp: Tensor, n_cand: int) -> tuple[Tensor, Tensor, Tensor]:
    """The `n_cand` best one-token extensions of each source's beam, best first.

    `beam_lp` (n, w) holds the live hypotheses' log-probabilities, `logp` (n*w, V) the
    next-token log-probabilities. Returns their (n, n_cand) sums, parent beam slots and
    tokens; when fewer than n_cand extensions exist the rest are -inf padding.
    """
    n, w = beam_lp.shape
    vocab = logp.shape[-1]
    cand = (beam_lp.unsqueeze(2) + logp.view(n, w, vocab)).view(n, w * vocab)  # (n, wV)
    if w * vocab < n_cand:
        pad = cand.new_full((n, n_cand - w * vocab), -math.inf)
        cand = torch.cat([cand, pad], dim=1)  # (n, n_cand)
    top_lp, top_idx = cand.topk(n_cand, dim=1)  # (n, n_cand) sorted descending
    parent = (top_idx // vocab).clamp_(max=w - 1)  # (n, n_cand); padding -> any parent
    return top_lp, parent, top_idx % vocab


def _tally(hyps: list[Hypothesis], nbest: int) -> tuple[int, float]:
    """How many hypotheses finished and the nbest-th best score (-inf if fewer)."""
    scores = sorted((h.score for h in hyps), reverse=True)
    return len(scores), scores[nbest - 1] if len(scores) >= nbest else -math.inf


def _mark_stopped(
    is_done: IsDone,
    stopped: Tensor,
    candidate: Tensor,
    parent: Tensor,
    token: Tensor,
    hist_rows: list[list[list[int]]],
    src: list[int],
    k: int,
) -> None:
    """Set `stopped[i, c]` where is_done says candidate c of batch source i is complete.

    Candidates are asked in rank order and only until `k` of them continue, since the
    rest can neither finish (rank >= k) nor stay alive; this bounds the Python calls.
    """
    cand_rows, parent_rows, token_rows = candidate.tolist(), parent.tolist(), token.tolist()
    marks = []
    for i, flags in enumerate(cand_rows):
        going = 0
        for c, ok in enumerate(flags):
            if not ok:
                continue
            seq = hist_rows[i][parent_rows[i][c]] + [token_rows[i][c]]
            if is_done(src[i], seq):
                marks.append((i, c))
            else:
                going += 1
                if going == k:
                    break
    for i, c in marks:
        stopped[i, c] = True


def _collect(
    final: Tensor,
    ended: Tensor | None,
    logprob: Tensor,
    parent: Tensor,
    token: Tensor,
    hist_rows: list[list[list[int]]],
    scale: float,
    reason: StopReason,
) -> list[tuple[int, Hypothesis]]:
    """Turn the candidates marked in `final` (n, C) into (batch source, Hypothesis) pairs.

    Those marked in `ended` finished with eos, which is left out of their tokens; the
    others finish for `reason` with their last token kept.
    """
    out = []
    lps, parents, toks = logprob.tolist(), parent.tolist(), token.tolist()
    eos_rows = ended.tolist() if ended is not None else None
    for i, c in final.nonzero().tolist():
        lp, prefix = lps[i][c], hist_rows[i][parents[i][c]]
        if eos_rows is not None and eos_rows[i][c]:
            out.append((i, Hypothesis(tuple(prefix), lp / scale, lp, "eos")))
        else:
            out.append((i, Hypothesis((*prefix, toks[i][c]), lp / scale, lp, reason)))
    return out


def _nbest(hyps: list[Hypothesis], nbest: int) -> list[Hypothesis]:
    """Best first, one hypothesis per token sequence, at most `nbest`."""
    out: list[Hypothesis] = []
    seen: set[tuple[int, ...]] = set()
    for hyp in sorted(hyps, key=lambda h: h.score, reverse=True):
        if hyp.tokens not in seen:
            seen.add(hyp.tokens)
            out.append(hyp)
            if len(out) == nbest:
                break
    return out


def _expand_to(index: Tensor, hist: Tensor) -> Tensor:
    """Broadcast a (n, k) beam index over the time axis of hist (n, w, t)."""
    return index[..., None].expand(-1, -1, hist.shape[2])  # (n, k, t)


# ---------------------------------------------------------------------------- helpers


def _check_id(token: int, vocab: int, what: str) -> None:
    if not 0 <= token < vocab:
        raise UsageError(f"{what} {token} is outside the vocabulary (0..{vocab - 1})")


def _banned_mask(banned_ids: Sequence[int], vocab: int, device: torch.device) -> Tensor | None:
    """(V,) bool of banned ids, or None when nothing is banned."""
    if not banned_ids:
        return None
    for token in banned_ids:
        _check_id(token, vocab, "banned id")
    mask = torch.zeros(vocab, dtype=torch.bool, device=device)
    mask[torch.tensor(list(banned_ids), dtype=torch.long, device=device)] = True
    if bool(mask.all()):
        raise UsageError("every token id is banned; nothing could be generated")
    return mask


def _history_mask(
    history: Sequence[Sequence[int]] | None, n_rows: int, vocab: int, device: torch.device
) -> Tensor:
    """(B, V) bool of tokens the repetition penalty treats as already generated."""
    seen = torch.zeros(n_rows, vocab, dtype=torch.bool, device=device)
    for row, ids in enumerate(history or ()):
        if len(ids):
            seen[row, torch.tensor(list(ids), dtype=torch.long, device=device)] = True
    return seen
