"""The attentional encoder-decoder (textrnn.models.seq2seq) and decoding through textrnn.engine.decoding."""

from __future__ import annotations

import pytest
import torch

from textrnn.config import config_from_dict
from textrnn.engine.decoding.beam import BeamConfig, beam_search_batch
from textrnn.errors import UsageError
from textrnn.models.seq2seq import (
    ATTENTIONS,
    BOS,
    EOS,
    PAD,
    Ensemble,
    Seq2Seq,
    Seq2SeqConfig,
    build_model,
)
from textrnn.tasks.translit import LoadedTransliterator
from textrnn.tasks.translit.batch import make_batch, pad_sources, sequence_loss
from textrnn.tasks.translit.decode import BANNED, decode_ids, max_length

TINY = {"embed": 12, "hidden": 16, "layers": 2, "dec_hidden": 20, "dropout": 0.3}


def model(attention: str, seed: int = 0, n_source: int = 9, n_target: int = 11) -> Seq2Seq:
    torch.manual_seed(seed)
    m = Seq2Seq(Seq2SeqConfig(n_source=n_source, n_target=n_target, attention=attention, **TINY))
    with torch.no_grad():  # sharper than the initial weights, so that decisions are not ties
        m.out.weight.mul_(8.0)
    return m.eval()


SOURCES = [[2, 3, 4], [5, 6, 7, 8, 2, 3], [4], [8, 7, 6, 5, 4, 3, 2, 8, 7]]
TARGETS = [[4, 5], [6, 7, 8, 9, 10], [4], [10, 9, 8, 7, 6, 5, 4]]


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_teacher_forced_logits_are_the_step_by_step_decoder(attention):
    """Training and inference share `step`: teacher-forced logits equal feeding the gold
    units one `step_logits` call at a time, and so do the losses."""
    m = model(attention)
    batch = make_batch(SOURCES, TARGETS, [1.0] * 4)
    with torch.no_grad():
        forced = m.teacher_forced(batch.src, batch.lengths, batch.tgt_in)  # (B, T, V)
        state = m.encode(batch.src, batch.lengths)
        stepped = []
        for t in range(batch.tgt_in.shape[1]):
            logits, state = m.step_logits(batch.tgt_in[:, t], state)
            stepped.append(logits)
        stepped = torch.stack(stepped, dim=1)
    torch.testing.assert_close(forced, stepped, atol=1e-5, rtol=1e-5)
    loss_a, n_a = sequence_loss(forced, batch)
    loss_b, n_b = sequence_loss(stepped, batch)
    assert n_a == n_b == sum(len(t) + 1 for t in TARGETS)  # every unit and </s>
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-5)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_padding_never_changes_a_prediction(attention):
    """A word alone, or padded in a batch of longer words (with garbage in its padding),
    gets the same logits and the same greedy and beam candidates."""
    m = model(attention, seed=1)
    alone = make_batch(SOURCES[:1], TARGETS[:1], [1.0])
    batch = make_batch(SOURCES, TARGETS, [1.0] * 4)
    batch.src[0, 3:] = 7  # real ids where PAD should be: the mask must hide them
    with torch.no_grad():
        a = m.teacher_forced(alone.src, alone.lengths, alone.tgt_in)
        b = m.teacher_forced(batch.src, batch.lengths, batch.tgt_in)
    torch.testing.assert_close(b[0, : a.shape[1]], a[0], atol=1e-5, rtol=1e-5)
    tr = LoadedTransliterator(m, vocabs=None)  # decode_ids needs no vocabulary
    for beam in (1, 4):
        single = decode_ids(tr, SOURCES[:1], beam=beam, nbest=beam)[0]
        together = decode_ids(tr, SOURCES, beam=beam, nbest=beam)[0]
        assert [c[0] for c in single] == [c[0] for c in together]
        assert [c[1] for c in single] == pytest.approx([c[1] for c in together], abs=1e-4)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_beam_one_is_greedy_and_wider_beams_score_at_least_as_well(attention):
    """Beam 1 finds exactly the greedy word; with raw log-probabilities (length penalty 0)
    the best of a 6-wide beam is never less probable than the greedy word here, and
    every n-best list is sorted, unique and has `nbest` entries. (test_translit checks
    the same on a trained model, where the beam does find better words.)"""
    m = model(attention, seed=2)
    sources = [[2 + (i * 7 + j * 3) % 7 for j in range(1 + i % 6)] for i in range(40)]
    tr = LoadedTransliterator(m, vocabs=None, length_penalty=0.0)
    greedy = decode_ids(tr, sources, beam=1)
    beam1 = _beam_only(m, sources, beam=1, nbest=1)
    wide = decode_ids(tr, sources, beam=6, nbest=6)
    for g, b1, w in zip(greedy, beam1, wide, strict=True):
        assert b1[0][0] == g[0][0] and b1[0][2] == pytest.approx(g[0][2], abs=1e-4)
        assert w[0][2] >= g[0][2] - 1e-4
        scores = [c[1] for c in w]
        assert scores == sorted(scores, reverse=True)
        assert len({c[0] for c in w}) == len(w) == 6
        assert all(BOS not in c[0] and PAD not in c[0] and EOS not in c[0] for c in w)


def _beam_only(m: Seq2Seq, sources, *, beam: int, nbest: int):
    """beam_search_batch called directly, bypassing decode_ids' greedy shortcut."""
    src, lengths = pad_sources(sources)
    limits = [max_length(n) for n in lengths.tolist()]
    with torch.inference_mode():
        state = m.encode(src, lengths)
        start = torch.full((len(sources),), BOS, dtype=torch.long)
        config = BeamConfig(beam=beam, nbest=nbest, length_penalty=0.0, max_length=max(limits))
        hyps = beam_search_batch(m.step_logits, lambda s, i: s.reorder(i), state, start, config=config,
                                          eos_id=EOS, banned_ids=BANNED, is_done=lambda r, t: len(t) >= limits[r])  # fmt: skip
    return [[(h.tokens, h.score, h.logprob) for h in row] for row in hyps]


def test_scheduled_sampling_feeds_the_models_own_guesses():
    m = model("luong", seed=3)
    batch = make_batch(SOURCES, TARGETS, [1.0] * 4)
    with torch.no_grad():
        gold = m.teacher_forced(batch.src, batch.lengths, batch.tgt_in, teacher_forcing=1.0)
        own = m.teacher_forced(batch.src, batch.lengths, batch.tgt_in, teacher_forcing=0.0)
        state = m.encode(batch.src, batch.lengths)
        prev, free = batch.tgt_in[:, 0], []
        for _ in range(batch.tgt_in.shape[1]):  # free-running greedy decoding, by hand
            logits, state = m.step_logits(prev, state)
            free.append(logits)
            prev = logits.argmax(-1)
    torch.testing.assert_close(own, torch.stack(free, dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(own[:, 0], gold[:, 0])  # the first input is <s> either way
    assert not torch.allclose(own, gold)


def test_reorder_selects_and_repeats_rows():
    m = model("bahdanau")
    src, lengths = pad_sources(SOURCES)
    state = m.encode(src, lengths)
    picked = state.reorder(torch.tensor([2, 2, 0]))
    assert picked.memory.shape[0] == 3 and picked.mask[0].sum() == 1 == picked.mask[1].sum()
    torch.testing.assert_close(picked.h[2], state.h[0])


@pytest.mark.parametrize("bad", [{"attention": "dot"}, {"dropout": 1.0}, {"hidden": 0}, {"n_target": 3}, {"layers": "2"},
                                 {"members": 0}])  # fmt: skip
def test_config_is_checked(bad):
    args = {"n_source": 5, "n_target": 9, **bad}
    with pytest.raises(UsageError):
        Seq2SeqConfig(**args)
    with pytest.raises(ValueError, match="unknown"):
        config_from_dict(Seq2SeqConfig, {"n_source": 5, "n_target": 9, "heads": 4})


# ---- ensembles ---------------------------------------------------------------------------------------


def ensemble(seed: int = 0, members: int = 3) -> Ensemble:
    torch.manual_seed(seed)
    m = build_model(Seq2SeqConfig(n_source=9, n_target=11, attention="luong", members=members, **TINY))
    with torch.no_grad():
        for member in m.members:
            member.out.weight.mul_(8.0)
    return m.eval()


def test_an_ensemble_of_identical_members_decodes_like_one_member():
    """log(mean of equal probabilities) is the member's log-probability: same candidates, same scores."""
    ens = ensemble(members=2)
    ens.members[1].load_state_dict(ens.members[0].state_dict())
    single = ens.members[0]
    for beam in (1, 3):
        a = decode_ids(LoadedTransliterator(ens, vocabs=None), SOURCES, beam=beam, nbest=beam)
        b = decode_ids(LoadedTransliterator(single, vocabs=None), SOURCES, beam=beam, nbest=beam)
        assert [[c[0] for c in x] for x in a] == [[c[0] for c in x] for x in b]
        assert [c[2] for x in a for c in x] == pytest.approx([c[2] for x in b for c in x], abs=1e-4)


def test_ensemble_members_differ_train_on_the_mean_loss_and_decode_the_mean_probability():
    ens = ensemble(seed=4)
    assert isinstance(ens, Ensemble) and isinstance(build_model(Seq2SeqConfig(n_source=9, n_target=11)), Seq2Seq)
    batch = make_batch(SOURCES, TARGETS, [1.0] * 4)
    with torch.no_grad():
        logits = ens.teacher_forced(batch.src, batch.lengths, batch.tgt_in)  # (M, B, T, V)
        assert logits.shape[0] == 3 and not torch.allclose(logits[0], logits[1])  # own initialisations
        for m, member in enumerate(ens.members):
            torch.testing.assert_close(logits[m], member.teacher_forced(batch.src, batch.lengths, batch.tgt_in))
        total, count = sequence_loss(logits, batch)
        singles = [sequence_loss(lg, batch)[0] for lg in logits]
        assert total.item() == pytest.approx(sum(x.item() for x in singles) / 3, rel=1e-5)
        state = ens.encode(batch.src, batch.lengths)
        mean, state = ens.step_logits(batch.tgt_in[:, 0], state)
        probs = torch.stack([member.step_logits(batch.tgt_in[:, 0], member.encode(batch.src, batch.lengths))[0]
                             .softmax(-1) for member in ens.members]).mean(0)  # fmt: skip
        torch.testing.assert_close(mean.exp(), probs, atol=1e-5, rtol=1e-4)
        assert state.alpha.shape == (4, batch.src.shape[1])


def test_padding_never_changes_an_ensembles_prediction():
    ens = ensemble(seed=5)
    tr = LoadedTransliterator(ens, vocabs=None)
    for beam in (1, 4):
        single = decode_ids(tr, SOURCES[1:2], beam=beam, nbest=beam)[0]
        together = decode_ids(tr, SOURCES, beam=beam, nbest=beam)[1]
        assert [c[0] for c in single] == [c[0] for c in together]
