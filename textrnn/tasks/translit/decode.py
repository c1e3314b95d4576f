"""Transliterating words with a trained model: greedy or beam search through
`engine.decoding`, many words at once, streaming, and running text word by word."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import regex
import torch
from torch import Tensor

from textrnn.engine.decoding.beam import BeamConfig, beam_search_batch
from textrnn.engine.decoding.sampling import greedy
from textrnn.engine.devices import autocast
from textrnn.engine.progress import Tick
from textrnn.errors import UsageError
from textrnn.models.seq2seq import BOS, EOS, PAD, UNK, Ensemble, Seq2Seq
from textrnn.tasks.translit.batch import pad_sources

if TYPE_CHECKING:  # load.py imports this module: the type only
    from textrnn.tasks.translit.load import LoadedTransliterator

BANNED = (UNK, PAD, BOS)  # never generated


INFER_WORDS = 256  # words decoded together (times the beam width in rows)


READ_AHEAD = 1024  # input lines read before they are transliterated (streaming)


CACHE_WORDS = 100_000  # running text repeats words: their results are kept


_WORD = regex.compile(r"[\p{L}\p{M}\u200c\u200d]+")  # what --text transliterates


@dataclass(frozen=True)
class Candidate:
    text: str  # the transliteration
    score: float  # length-normalised log-probability (what candidates are ranked by)
    logprob: float  # total log-probability, end of word included


def max_length(src_length: int) -> int:
    """Units a word of `src_length` source units may become: twice as many, plus four.

    Every word has its own limit, whatever else is in its batch, so that a word's
    candidates never depend on its neighbours (Dakshina's longest ratio is below 2).
    """
    return 2 * src_length + 4


def decode_ids(
    tr: LoadedTransliterator,
    src_ids: Sequence[Sequence[int]],
    *,
    beam: int = 5,
    nbest: int = 1,
    on_progress: Tick | None = None,
) -> list[list[tuple[tuple[int, ...], float, float]]]:
    """The `nbest` best (target ids, score, logprob) of each source (unit ids), best first, by
    greedy search (beam 1) or beam search through `textrnn.engine.decoding`; words are decoded
    INFER_WORDS at a time, similar lengths together (`on_progress` hears (done, words))."""
    beam_config(beam, nbest, tr.length_penalty, 1)  # check the settings before any work
    out: list[list] = [[] for _ in src_ids]
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    model = tr.model
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(tr.precision, tr.device):
            for start in range(0, len(order), INFER_WORDS):
                idx = order[start : start + INFER_WORDS]
                src, lengths = pad_sources([src_ids[i] for i in idx])
                limits = [max_length(n) for n in lengths.tolist()]
                state = model.encode(src.to(tr.device), lengths.to(tr.device))
                first = torch.full((len(idx),), BOS, dtype=torch.long, device=tr.device)
                if beam == 1:
                    found = _greedy(model, state, first, limits, tr.length_penalty)
                else:
                    found = _beam(
                        model,
                        state,
                        first,
                        limits,
                        beam_config(beam, nbest, tr.length_penalty, max(limits)),
                    )
                for i, cands in zip(idx, found, strict=True):
                    out[i] = cands
                if on_progress is not None:
                    on_progress(start + len(idx), len(order))
    finally:
        model.train(was_training)
    return out


def beam_config(beam: int, nbest: int, length_penalty: float, steps: int) -> BeamConfig:
    return BeamConfig(
        beam=beam, nbest=nbest, length_penalty=length_penalty, max_length=steps
    )


def _greedy(
    model: Seq2Seq | Ensemble, state, first: Tensor, limits: list[int], alpha: float
) -> list[list[tuple]]:
    samples = greedy(
        model.step_logits, state, first, max_new_tokens=max(limits), banned_ids=BANNED, eos_id=EOS,
        is_done=lambda row, tokens: len(tokens) >= limits[row], reorder_fn=lambda s, i: s.reorder(i),
    )  # fmt: skip
    # Scored like a beam hypothesis: log-probability / (steps taken, </s> included) ** alpha.
    return [
        [(s.tokens, s.logprob / (len(s.tokens) + (s.stop_reason == "eos")) ** alpha, s.logprob)]
        for s in samples
    ]


def _beam(
    model: Seq2Seq | Ensemble, state, first: Tensor, limits: list[int], config: BeamConfig
) -> list[list[tuple]]:
    hyps = beam_search_batch(
        model.step_logits, lambda s, i: s.reorder(i), state, first, config=config, eos_id=EOS,
        is_done=lambda row, tokens: len(tokens) >= limits[row], banned_ids=BANNED,
    )  # fmt: skip
    return [[(h.tokens, h.score, h.logprob) for h in row] for row in hyps]


def transliterate(
    tr: LoadedTransliterator, words: Sequence[str], *, beam: int = 5, nbest: int = 1, on_progress: Tick | None = None
) -> list[list[Candidate]]:
    """The `nbest` best transliterations of each word, best first; an empty word gives []."""
    todo = [i for i, w in enumerate(words) if w]
    sources = [tr.vocabs.source_ids(words[i]) for i in todo]
    found = decode_ids(tr, sources, beam=beam, nbest=nbest, on_progress=on_progress)
    out: list[list[Candidate]] = [[] for _ in words]
    for i, cands in zip(todo, found, strict=True):
        out[i] = [Candidate(tr.vocabs.target_text(t), float(s), float(lp)) for t, s, lp in cands]
    return out


def predict_words(
    tr: LoadedTransliterator,
    words: Iterable[str],
    *,
    beam: int = 5,
    nbest: int = 1,
    read_ahead: int = READ_AHEAD,
) -> Iterator[list[Candidate]]:
    """Candidates for each word, in order, streaming: `read_ahead` words are read, decoded
    together and yielded before more input is read."""
    pending: list[str] = []
    for w in words:
        pending.append(w)
        if len(pending) >= read_ahead:
            yield from transliterate(tr, pending, beam=beam, nbest=nbest)
            pending = []
    if pending:
        yield from transliterate(tr, pending, beam=beam, nbest=nbest)


def transliterate_text(tr: LoadedTransliterator, lines: Sequence[str], *, beam: int = 5) -> list[str]:
    """Running text: every word (a run of letters and marks) whose units the model knows is
    transliterated; spacing, punctuation, digits and unknown-script words stay as they are.
    Results of words are cached (running text repeats them)."""
    words = [m.group() for line in lines for m in _WORD.finditer(line)]
    cache = tr.cache
    todo = list(dict.fromkeys(w for w in words if w not in cache and tr.vocabs.knows(w)))
    for w, cands in zip(todo, transliterate(tr, todo, beam=beam, nbest=1), strict=True):
        cache[w] = cands[0].text if cands else w
        if len(cache) > CACHE_WORDS:
            cache.popitem(last=False)
    return [_WORD.sub(lambda m: cache.get(m.group(), m.group()), line) for line in lines]


def attention_map(tr: LoadedTransliterator, word: str) -> tuple[list[str], list[str], list[list[float]]]:
    """Greedy transliteration of `word` with the attention weights of every output unit:
    (source units, output units (+ </s>), weights[output][source])."""
    ids = tr.vocabs.source_ids(word)
    if not ids:
        raise UsageError("--show-attention needs a non-empty word")
    if tr.model.config.attention == "none":
        raise UsageError("this model has no attention (--attention none)")
    src, lengths = pad_sources([ids])
    model = tr.model.eval()
    rows: list[list[float]] = []
    out: list[int] = []
    with torch.inference_mode():
        state = model.encode(src.to(tr.device), lengths.to(tr.device))
        prev = torch.tensor([BOS], device=tr.device)
        for _ in range(max_length(len(ids)) + 1):
            logits, state = model.step_logits(prev, state)
            logits[:, list(BANNED)] = -math.inf
            rows.append(state.alpha[0].float().tolist())
            prev = logits.argmax(-1)
            if int(prev) == EOS:
                break
            out.append(int(prev))
    source_units = [tr.vocabs.source.id_to_piece(i) if i != UNK else "?" for i in ids]
    target_units = [tr.vocabs.target.id_to_piece(i) for i in out] + ["</s>"]
    return source_units, target_units[: len(rows)], rows
