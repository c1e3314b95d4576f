"""Decoding on hand-written probability tables whose best paths are known.

Two toy "models" stand in for networks:
- `Markov`: logits depend on the last token only (a (V, V) table); state is a (B, 1)
  tensor of row ids, so wrong reordering shows up as a wrong row id.
- `PrefixModel`: probabilities keyed by the whole generated prefix; state is the list
  of prefixes, so a beam that reorders its state wrongly scores the wrong prefixes.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from textrnn.engine.decoding.beam import BeamConfig, Hypothesis, beam_search, beam_search_batch
from textrnn.engine.decoding.sampling import SamplingConfig, draw, greedy, sample, select_next
from textrnn.errors import UsageError

EOS, A, B, C, BOS = 0, 1, 2, 3, 4
V = 5
EPS = 1e-6  # probability of tokens a table does not mention


class Markov:
    """Next-token logits from a (V, V) table indexed by the last token; counts calls."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table
        self.batch_sizes: list[int] = []

    def step(self, tokens: torch.Tensor, state: torch.Tensor):
        self.batch_sizes.append(tokens.shape[0])
        assert state.shape[0] == tokens.shape[0]
        return self.table[tokens], state

    @staticmethod
    def reorder(state: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return state[index]


class PrefixModel:
    """p(next | source, generated prefix) from a dict; unknown prefixes end with eos.

    The state is a list of (source, prefix) pairs; the start token is not part of the
    prefix. Logits are log-probabilities, so reported logprobs can be checked exactly.
    """

    def __init__(self, tables: dict[int, dict[tuple[int, ...], dict[int, float]]]) -> None:
        self.tables = tables
        self.batch_sizes: list[int] = []

    def start(self, n: int) -> list[tuple[int, tuple[int, ...] | None]]:
        return [(s, None) for s in range(n)]

    def probs(self, source: int, prefix: tuple[int, ...]) -> list[float]:
        dist = self.tables[source].get(prefix, {EOS: 1.0})
        return [dist.get(tok, EPS) for tok in range(V)]

    def step(self, tokens: torch.Tensor, state):
        self.batch_sizes.append(tokens.shape[0])
        new = []
        for (source, prefix), tok in zip(state, tokens.tolist(), strict=True):
            new.append((source, () if prefix is None else (*prefix, tok)))
        logits = torch.tensor([self.probs(s, p) for s, p in new]).log()  # (B, V)
        return logits, new

    @staticmethod
    def reorder(state, index: torch.Tensor):
        return [state[i] for i in index.tolist()]

    def logprob(self, source: int, tokens: tuple[int, ...], *, eos: bool) -> float:
        """Log-probability under the normalised table, eos step included when `eos`."""
        total, prefix = 0.0, ()
        for tok in (*tokens, EOS) if eos else tokens:
            p = self.probs(source, prefix)
            total += math.log(p[tok] / sum(p))
            prefix = (*prefix, tok)
        return total


# Greedy takes A (0.6) and then gets at best 0.34; B (0.4) is followed by C at 0.9.
GARDEN_PATH = {
    (): {A: 0.6, B: 0.4},
    (A,): {A: 0.34, B: 0.33, C: 0.33},
    (B,): {C: 0.9, A: 0.05, B: 0.05},
}

# Stopping at once (0.55) beats A B <eos> (0.45 * 0.8 * 0.8 = 0.288) on the raw sum,
# but loses once scores are divided by length: -0.60 / 1 vs -1.25 / 3.
SHORT_OR_LONG = {
    (): {EOS: 0.55, A: 0.45},
    (A,): {B: 0.8, C: 0.2},
    (A, B): {EOS: 0.8, C: 0.2},
}


def markov_table(seed: int, vocab: int = V) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(vocab, vocab, generator=gen) * 2  # (V, V)


def run_sample(model: Markov, rows: int, **kwargs):
    state = torch.arange(rows)[:, None]  # (B, 1)
    last = torch.full((rows,), A)
    return sample(model.step, state, last, **kwargs)


# ---------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"temperature": -0.5}, "--temperature"),
        ({"temperature": math.inf}, "--temperature"),
        ({"top_p": 0.0}, "--top-p"),
        ({"top_p": 1.5}, "--top-p"),
        ({"top_k": -1}, "--top-k"),
        ({"repetition_penalty": 0.0}, "--repetition-penalty"),
    ],
)
def test_bad_sampling_config_names_the_option(kwargs, option):
    with pytest.raises(UsageError, match=option):
        SamplingConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"beam": 0}, "--beam"),
        ({"beam": 3, "nbest": 4}, "--nbest"),
        ({"nbest": 0}, "--nbest"),
        ({"max_length": 0}, "--max-length"),
        ({"min_length": -1}, "--min-length"),
        ({"length_penalty": math.nan}, "--length-penalty"),
    ],
)
def test_bad_beam_config_names_the_option(kwargs, option):
    with pytest.raises(UsageError, match=option):
        BeamConfig(**{"max_length": 10, **kwargs})


def test_top_p_message_shows_the_value():
    with pytest.raises(UsageError, match=r"--top-p must be in \(0, 1\], got 1.5"):
        SamplingConfig(top_p=1.5)


def test_banning_every_token_is_a_usage_error():
    with pytest.raises(UsageError, match="banned"):
        run_sample(Markov(markov_table(0)), 1, max_new_tokens=3, banned_ids=range(V))


# ---------------------------------------------------------------------- greedy/sample


def test_greedy_follows_the_argmax_path():
    table = markov_table(1)
    samples = greedy(Markov(table).step, torch.zeros(1, 1), torch.tensor([A]), max_new_tokens=8)
    expected, tok = [], A
    for _ in range(8):
        tok = int(table[tok].argmax())
        expected.append(tok)
    assert samples[0].tokens == tuple(expected)
    assert samples[0].stop_reason == "length"


@pytest.mark.parametrize("temperature", [0.0, 1e-6])
def test_temperature_to_zero_equals_greedy(temperature):
    table = markov_table(2)
    want = run_sample(Markov(table), 4, max_new_tokens=10, config=SamplingConfig(greedy=True))
    gen = torch.Generator().manual_seed(0)
    config = SamplingConfig(temperature=temperature)
    got = run_sample(Markov(table), 4, max_new_tokens=10, config=config, generator=gen)
    assert [s.tokens for s in got] == [s.tokens for s in want]
    assert [s.logprob for s in got] == pytest.approx([s.logprob for s in want])


def test_logprob_is_under_the_raw_model_whatever_the_settings():
    table = markov_table(3)
    logp = table.log_softmax(-1)  # (V, V)
    config = SamplingConfig(temperature=0.7, top_k=3, top_p=0.9, repetition_penalty=1.3)
    gen = torch.Generator().manual_seed(1)
    samples = run_sample(Markov(table), 6, max_new_tokens=7, config=config, generator=gen)
    for s in samples:
        prev, want = A, 0.0
        for tok in s.tokens:
            want += float(logp[prev, tok])
            prev = tok
        assert s.logprob == pytest.approx(want, abs=1e-5)


def test_same_seed_same_samples_other_seed_other_samples():
    table = markov_table(4)

    def draw(seed: int):
        gen = torch.Generator().manual_seed(seed)
        config = SamplingConfig(temperature=1.5, top_p=0.95)
        return [
            s.tokens
            for s in run_sample(Markov(table), 8, max_new_tokens=12, config=config, generator=gen)
        ]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_rows_advance_together_in_one_step_call_per_step():
    model = Markov(torch.zeros(V, V))  # uniform: rows can only differ by their own draws
    gen = torch.Generator().manual_seed(0)
    samples = run_sample(model, 16, max_new_tokens=10, generator=gen)
    assert model.batch_sizes == [16] * 10
    assert all(len(s.tokens) == 10 for s in samples)
    assert len({s.tokens for s in samples}) > 1


def test_samples_follow_the_tempered_distribution():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    rows = 20000
    gen = torch.Generator().manual_seed(0)
    for temperature in (1.0, 2.0):
        config = SamplingConfig(temperature=temperature)
        picks = select_next(logits.expand(rows, V), config, generator=gen)  # (rows,)
        freq = torch.bincount(picks, minlength=V).float() / rows
        assert torch.allclose(freq, (logits / temperature).softmax(-1), atol=0.015)


@settings(max_examples=60, deadline=None)
@given(
    logits=st.lists(st.floats(-6, 6, allow_nan=False), min_size=2, max_size=12),
    top_k=st.integers(0, 12),
    top_p=st.floats(0.01, 1.0),
    temperature=st.floats(0.2, 3.0),
    seed=st.integers(0, 2**31),
)
@example(logits=[-3.4671994487278856e-211, 0.0], top_k=1, top_p=1.0, temperature=1.0, seed=0)
def test_top_k_and_top_p_never_leave_the_allowed_set(logits, top_k, top_p, temperature, seed):
    # The logits as select_next sees them (float32: -3e-211 and 0.0 tie there), then the
    # reference set in float64.
    x = torch.tensor(logits).double() / temperature
    # Reference set computed independently in float64: top-k first, then the nucleus.
    if 0 < top_k < len(logits):
        kth = x.sort(descending=True).values[top_k - 1]
        x = x.masked_fill(x < kth, -math.inf)
    probs = x.softmax(-1)
    allowed = {
        tok
        for tok in range(len(logits))
        if probs[tok] > 0 and probs[probs > probs[tok]].sum() < top_p + 1e-5
    }
    config = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    gen = torch.Generator().manual_seed(seed)
    picks = select_next(torch.tensor(logits).expand(64, -1), config, generator=gen)
    assert set(picks.tolist()) <= allowed
    assert int(probs.argmax()) in allowed


def test_top_k_1_and_tiny_top_p_are_greedy():
    table = markov_table(5)
    want = [
        s.tokens
        for s in run_sample(Markov(table), 3, max_new_tokens=6, config=SamplingConfig(greedy=True))
    ]
    for config in (SamplingConfig(top_k=1), SamplingConfig(top_p=1e-6)):
        gen = torch.Generator().manual_seed(0)
        got = run_sample(Markov(table), 3, max_new_tokens=6, config=config, generator=gen)
        assert [s.tokens for s in got] == want


def test_banned_ids_are_never_emitted():
    table = markov_table(6)
    best_after_a = int(table[A].argmax())
    banned = (best_after_a, C)
    gen = torch.Generator().manual_seed(0)
    samples = run_sample(Markov(table), 32, max_new_tokens=15, generator=gen, banned_ids=banned)
    samples += run_sample(
        Markov(table), 1, max_new_tokens=15, config=SamplingConfig(greedy=True), banned_ids=banned
    )
    assert all(tok not in banned for s in samples for tok in s.tokens)


def test_eos_and_is_done_stop_rows_and_their_streams():
    table = torch.zeros(V, V)
    table[:, EOS] = 1.5  # eos likely but not certain: rows end at different steps
    table[:, C] = 1.0  # and C, which is_done stops at, is next
    calls: list[tuple[int, int]] = []
    gen = torch.Generator().manual_seed(3)
    model = Markov(table)
    samples = run_sample(
        model,
        12,
        max_new_tokens=30,
        generator=gen,
        eos_id=EOS,
        is_done=lambda row, toks: toks[-1] == C,
        on_token=lambda row, tok: calls.append((row, tok)),
    )
    reasons = {s.stop_reason for s in samples}
    assert reasons == {"eos", "stop"}
    for row, s in enumerate(samples):
        assert EOS not in s.tokens
        assert [tok for r, tok in calls if r == row] == list(s.tokens)
        assert (C in s.tokens) == (s.stop_reason == "stop")
        if s.stop_reason == "stop":
            assert s.tokens.index(C) == len(s.tokens) - 1
    # Streaming order: within a step, rows in ascending order.
    steps: dict[int, list[int]] = {}
    seen_per_row: dict[int, int] = {}
    for row, _ in calls:
        step = seen_per_row.get(row, 0)
        seen_per_row[row] = step + 1
        steps.setdefault(step, []).append(row)
    assert all(rows == sorted(rows) for rows in steps.values())
    assert len(model.batch_sizes) == max(len(s.tokens) + (s.stop_reason == "eos") for s in samples)


def test_eos_logprob_is_counted():
    table = torch.zeros(V, V)
    table[A, EOS] = 10.0  # after A: eos almost surely
    samples = greedy(
        Markov(table).step, torch.zeros(1, 1), torch.tensor([A]), max_new_tokens=5, eos_id=EOS
    )
    assert samples[0].tokens == ()
    assert samples[0].stop_reason == "eos"
    assert samples[0].logprob == pytest.approx(float(table[A].log_softmax(-1)[EOS]))


def test_dropping_finished_rows_shrinks_the_batch_and_keeps_results():
    table = markov_table(7)
    table[:, EOS] -= 1.0
    table[B, EOS] = 9.0  # rows end with eos right after B
    last = torch.tensor([A, B, C, A, C])
    kwargs = {"max_new_tokens": 12, "eos_id": EOS}
    plain = greedy(Markov(table).step, torch.arange(5)[:, None], last, **kwargs)
    model = Markov(table)
    dropping = greedy(
        model.step, torch.arange(5)[:, None], last, reorder_fn=Markov.reorder, **kwargs
    )
    assert dropping == plain
    assert model.batch_sizes[0] == 5 and model.batch_sizes[-1] < 5
    assert model.batch_sizes == sorted(model.batch_sizes, reverse=True)


def test_repetition_penalty_reduces_repeats():
    table = torch.zeros(V, V)
    table[:, A] = 1.0  # everything prefers A, and A prefers itself
    table[:, B] = 0.8
    table[:, C] = -0.5
    table[:, EOS] = -2.0
    table[:, BOS] = -3.0

    def repeats(penalty: float, history=None) -> int:
        out = greedy(
            Markov(table).step,
            torch.zeros(1, 1),
            torch.tensor([BOS]),
            max_new_tokens=8,
            repetition_penalty=penalty,
            history=history,
        )
        toks = out[0].tokens
        return sum(a == b for a, b in itertools.pairwise(toks)), toks

    n_plain, toks = repeats(1.0)
    assert toks == (A,) * 8 and n_plain == 7
    n_pen, toks = repeats(2.0)
    assert n_pen < n_plain
    assert toks[:2] == (A, B)  # A's logit 1.0 -> 0.5 < B's 0.8 once A was generated
    _, toks = repeats(2.0, history=[[A]])  # A in the prompt is penalised from the start
    assert toks[0] == B


def test_zero_new_tokens_calls_nothing():
    model = Markov(markov_table(8))
    samples = run_sample(model, 3, max_new_tokens=0)
    assert [s.tokens for s in samples] == [()] * 3 and model.batch_sizes == []


# ------------------------------------------------------------------------ beam search


def beam(model: PrefixModel, **kwargs) -> list[Hypothesis]:
    eos_id = kwargs.pop("eos_id", EOS)
    config = BeamConfig(**kwargs)
    return beam_search(model.step, model.reorder, model.start(1), BOS, config=config, eos_id=eos_id)


def test_beam_finds_the_path_greedy_misses():
    model = PrefixModel({0: GARDEN_PATH})
    lm_greedy = greedy(model.step, model.start(1), torch.tensor([BOS]), max_new_tokens=2)
    assert lm_greedy[0].tokens == (A, A)
    # No eos: an LM continuation of fixed length.
    best = beam(model, beam=2, max_length=2, eos_id=None)[0]
    assert best.tokens == (B, C)
    assert best.stop_reason == "length"
    assert best.logprob == pytest.approx(model.logprob(0, (B, C), eos=False), abs=1e-5)
    # With eos the same path wins and ends.
    best = beam(model, beam=2, max_length=6)[0]
    assert best.tokens == (B, C) and best.stop_reason == "eos"
    assert best.logprob == pytest.approx(model.logprob(0, (B, C), eos=True), abs=1e-5)


def test_beam_1_is_greedy():
    model = PrefixModel({0: GARDEN_PATH})
    assert beam(model, beam=1, max_length=2, eos_id=None)[0].tokens == (A, A)


def test_length_penalty_changes_the_winner():
    model = PrefixModel({0: SHORT_OR_LONG})
    raw = beam(model, beam=2, max_length=6, length_penalty=0.0)
    assert raw[0].tokens == () and raw[0].stop_reason == "eos"
    assert raw[0].score == pytest.approx(math.log(0.55), abs=1e-5)
    normalised = beam(model, beam=2, nbest=2, max_length=6, length_penalty=1.0)
    assert [h.tokens for h in normalised] == [(A, B), ()]
    assert normalised[0].score == pytest.approx(math.log(0.288) / 3, abs=1e-5)


def test_min_length_blocks_early_eos():
    model = PrefixModel({0: SHORT_OR_LONG})
    hyps = beam(model, beam=3, nbest=3, max_length=6, length_penalty=0.0, min_length=1)
    assert hyps[0].tokens == (A, B)
    assert all(len(h.tokens) >= 1 for h in hyps)


def test_is_done_and_banned_ids_in_beam_search():
    model = PrefixModel({0: GARDEN_PATH})
    config = BeamConfig(beam=3, nbest=3, max_length=6)
    hyps = beam_search(
        model.step,
        model.reorder,
        model.start(1),
        BOS,
        config=config,
        eos_id=EOS,
        is_done=lambda row, toks: toks[-1] == C,
        banned_ids=[A],
    )
    assert hyps[0].tokens == (B, C) and hyps[0].stop_reason == "stop"
    assert all(A not in h.tokens for h in hyps)
    assert all(h.stop_reason != "stop" or h.tokens[-1] == C for h in hyps)


def random_tables(seed: int, depth: int, vocab: int = V) -> dict[tuple[int, ...], dict[int, float]]:
    """A full random tree of distributions over non-BOS tokens up to `depth`."""
    rng = random.Random(seed)
    tokens = list(range(vocab - 1))  # all but BOS
    table = {}
    for length in range(depth):
        for prefix in itertools.product(tokens[1:], repeat=length):
            weights = [rng.random() ** 3 + 1e-3 for _ in tokens]
            table[prefix] = {tok: w / sum(weights) for tok, w in zip(tokens, weights, strict=True)}
    return table


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_beam_holding_every_hypothesis_equals_exhaustive_search(alpha, seed):
    max_len = 3
    model = PrefixModel({0: random_tables(seed, max_len)})
    candidates = []
    for length in range(max_len + 1):
        for toks in itertools.product([A, B, C], repeat=length):
            eos = length < max_len
            lp = model.logprob(0, toks, eos=eos)
            candidates.append((lp / (length + eos) ** alpha, toks))
    candidates.sort(reverse=True)
    hyps = beam(model, beam=64, nbest=5, max_length=max_len, length_penalty=alpha)
    assert [h.tokens for h in hyps] == [toks for _, toks in candidates[:5]]
    assert [h.score for h in hyps] == pytest.approx([s for s, _ in candidates[:5]], abs=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_nbest_is_sorted_unique_and_scored_right(seed):
    model = PrefixModel({0: random_tables(seed, 4)})
    hyps = beam(model, beam=5, nbest=5, max_length=6, length_penalty=0.7)
    assert 1 <= len(hyps) <= 5
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    assert len({h.tokens for h in hyps}) == len(hyps)
    for h in hyps:
        eos = h.stop_reason == "eos"
        assert h.logprob == pytest.approx(model.logprob(0, h.tokens, eos=eos), abs=1e-4)
        assert h.score == pytest.approx(h.logprob / (len(h.tokens) + eos) ** 0.7, abs=1e-5)


def test_batched_beam_equals_one_source_at_a_time():
    tables = {s: random_tables(10 + s, 4) for s in range(5)}
    tables[2] = GARDEN_PATH
    tables[3] = SHORT_OR_LONG
    config = BeamConfig(beam=3, nbest=2, max_length=7, length_penalty=0.5)
    model = PrefixModel(tables)
    batched = beam_search_batch(
        model.step, model.reorder, model.start(5), torch.full((5,), BOS), config=config, eos_id=EOS
    )
    for source in range(5):
        alone = PrefixModel({0: tables[source]})
        want = beam_search(
            alone.step, alone.reorder, alone.start(1), BOS, config=config, eos_id=EOS
        )
        assert [h.tokens for h in batched[source]] == [h.tokens for h in want]
        assert [h.score for h in batched[source]] == pytest.approx(
            [h.score for h in want], abs=1e-5
        )
    # One step call per step; the batch starts at one row per source, then beam rows
    # per source, and shrinks as sources finish.
    assert model.batch_sizes[0] == 5 and model.batch_sizes[1] == 15
    assert model.batch_sizes[-1] < 15
    assert len(model.batch_sizes) <= config.max_length


def test_beam_wider_than_the_vocabulary():
    model = PrefixModel({0: GARDEN_PATH})
    hyps = beam(model, beam=8, nbest=8, max_length=1, eos_id=None)
    assert [h.tokens for h in hyps][:2] == [(A,), (B,)]
    assert len({h.tokens for h in hyps}) == len(hyps) == V


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 4), width=st.integers(1, 70), zeros=st.integers(0, 69))
def test_draw_makes_the_draws_of_torch_multinomial(seed, rows, width, zeros):
    probs = torch.rand(rows, width, generator=torch.Generator().manual_seed(seed)) + 0.01
    probs[:, : min(zeros, width - 1)] = 0.0  # candidates cut by top-k/top-p
    probs = probs / probs.sum(-1, keepdim=True)
    expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(seed + 1))
    got = draw(probs, torch.Generator().manual_seed(seed + 1))
    assert torch.equal(got, expected)
