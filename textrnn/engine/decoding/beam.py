"""Beam search over any step function (see `textrnn.engine.decoding.sampling` for the
`step_fn` / `reorder_fn` contract): one source at a time or many at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from textrnn.engine.decoding.sampling import (
    IsDone,
    ReorderFn,
    State,
    StepFn,
    StopReason,
    banned_mask,
    check_id,
)
from textrnn.errors import UsageError


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
class Hypothesis:
    """One finished beam-search hypothesis."""

    tokens: tuple[int, ...]  # generated ids; eos is not included
    score: float  # logprob / length ** length_penalty; what the n-best list is sorted by
    logprob: float  # sum of log p_model over the decoding steps, eos step included
    stop_reason: StopReason


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
            banned = banned_mask(banned_ids, vocab, device)
            if eos_id is not None:
                check_id(eos_id, vocab, "eos id")
                banned_eos = banned_mask([*banned_ids, eos_id], vocab, device)
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
