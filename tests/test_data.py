"""Token arrays -> validation split -> batches: the parts of data.py under the LM loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from textrnn.data.corpus import VAL_BLOCKS, Spans, TokenStreams, split_validation
from textrnn.errors import DataError


@given(st.integers(1, 5000), st.floats(0, 0.9), st.integers(1, 300))
def test_split_validation_partitions_the_corpus(n, fraction, min_block):
    n_val = int(n * fraction)
    train, val = split_validation(n, n_val, min_block=min_block)
    covered = sorted(train + val)
    # Disjoint spans that tile 0..n exactly, with n_val tokens held out.
    assert covered[0][0] == 0 and covered[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))
    assert sum(b - a for a, b in val) == n_val
    assert len(val) <= VAL_BLOCKS
    if n_val:
        assert len(val) == 1 or min(b - a for a, b in val) >= min(min_block, n_val // len(val))


def test_validation_blocks_are_spread_over_the_corpus():
    train, val = split_validation(1_000_000, 50_000, min_block=512)
    assert len(val) == VAL_BLOCKS
    starts = [a for a, _ in val]
    assert starts[0] < 100_000 and starts[-1] > 900_000  # not just the tail
    assert all(b - a == 2_500 for a, b in val)


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20)), min_size=1, max_size=6), st.data())
def test_spans_take_matches_the_concatenated_array(cuts, data):
    ids = np.arange(100, dtype=np.int32)
    spans = [(a, min(100, a + k)) for a, k in cuts]
    view = Spans(ids, spans)
    flat = np.concatenate([ids[a:b] for a, b in spans])
    assert len(view) == len(flat)
    np.testing.assert_array_equal(view.array(), flat)
    if len(flat):
        start = data.draw(st.integers(0, len(flat) - 1))
        n = data.draw(st.integers(0, len(flat) - start))
        np.testing.assert_array_equal(view.take(start, n), flat[start : start + n])
    with pytest.raises(IndexError):
        view.take(len(flat), 1)


def test_streams_over_spans_skip_the_held_out_blocks():
    ids = np.arange(10_000, dtype=np.int32)
    train, val = split_validation(len(ids), 1_000, min_block=100)
    streams = TokenStreams(Spans(ids, train), batch_size=4, seq_len=16, seed=0)
    held = np.concatenate([ids[a:b] for a, b in val])
    seen = set()
    for epoch in range(2):
        for x, y in streams.batches(epoch):
            assert x.shape == y.shape == (4, 16)
            seen.update(x.flatten().tolist())
            # targets are the next training token, except where a stream jumps a held-out block
            jumps = (y - x).flatten()
            assert set(jumps.tolist()) <= {1} | {int(b - a) + 1 for a, b in val}
    assert not seen & set(held.tolist())


def test_streams_resume_mid_epoch_gives_the_same_batches():
    ids = np.random.default_rng(0).integers(0, 50, 5_000).astype(np.int32)
    streams = TokenStreams(ids, batch_size=3, seq_len=8, seed=7)
    full = list(streams.batches(1))
    resumed = list(streams.batches(1, start=5))
    assert len(resumed) == len(full) - 5
    for (x1, y1), (x2, y2) in zip(full[5:], resumed, strict=True):
        assert x1.equal(x2) and y1.equal(y2)
    # rows are contiguous text: row r of batch k+1 continues row r of batch k
    (_, y0), (x1, _) = full[0], full[1]
    assert y0[:, -1].equal(x1[:, 0])


def test_too_small_corpus_says_how_to_fix_it():
    with pytest.raises(DataError, match="--batch-size"):
        TokenStreams(np.arange(50), batch_size=4, seq_len=16, seed=0)
