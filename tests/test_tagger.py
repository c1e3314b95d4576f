"""The BiLSTM(-CRF) tagger (textrnn.models.tagger) and the tagging task/API (textrnn.tasks.tag)."""

from __future__ import annotations

import itertools
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from textrnn.data.batching import bucket_batches, length_batches
from textrnn.engine.checkpoint import load_checkpoint
from textrnn.engine.metrics import allowed_transition
from textrnn.errors import CheckpointError
from textrnn.formats.conllu import load_sentences, write_sentences
from textrnn.models.blocks import BiLSTM, reverse_index
from textrnn.models.tagger import CRF, Tagger, TaggerConfig, viterbi
from textrnn.tasks import tag
from textrnn.tasks.tag import TagOptions, Vocab, build_vocab, default_train_config
from textrnn.tasks.tag.batch import Encoder
from textrnn.tasks.tag.vocab import transition_masks

TINY = {"word_dim": 16, "char_dim": 8, "char_hidden": 8, "hidden": 24, "layers": 1, "dropout": 0.1}


# ---- CRF against brute force --------------------------------------------------------------------


def brute_force(emissions, length, trans, start, end):
    """Every tag sequence of one sentence with its score."""
    K = emissions.shape[-1]
    out = {}
    for seq in itertools.product(range(K), repeat=length):
        s = start[seq[0]] + sum(emissions[t, seq[t]] for t in range(length))
        s = s + sum(trans[seq[t - 1], seq[t]] for t in range(1, length)) + end[seq[-1]]
        out[seq] = float(s)
    return out


def random_crf(K: int, seed: int) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(K)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crf_log_partition_score_and_viterbi_match_brute_force(seed):
    K, lengths = 3, torch.tensor([4, 1, 3])
    crf = random_crf(K, seed)
    emissions = torch.randn(3, 4, K)
    mask = torch.arange(4)[None, :] < lengths[:, None]
    tags = torch.randint(0, K, (3, 4))
    log_z = crf.log_partition(emissions, mask)
    gold = crf.score(emissions, tags, mask)
    paths, best = viterbi(
        emissions, lengths, transitions=crf.transitions, start=crf.start, end=crf.end
    )
    for b, n in enumerate(lengths.tolist()):
        table = brute_force(
            emissions[b], n, crf.transitions.detach(), crf.start.detach(), crf.end.detach()
        )
        assert log_z[b].item() == pytest.approx(
            math.log(sum(math.exp(v) for v in table.values())), abs=1e-4
        )
        assert gold[b].item() == pytest.approx(table[tuple(tags[b, :n].tolist())], abs=1e-4)
        argmax = max(table, key=table.get)
        assert tuple(paths[b]) == argmax
        assert best[b].item() == pytest.approx(table[argmax], abs=1e-4)
    nll = crf.nll(emissions, tags, mask)
    assert nll.item() == pytest.approx((log_z - gold).sum().item(), abs=1e-4)
    assert nll.item() > 0


def test_viterbi_on_a_hand_written_table():
    # Tag 1 is best alone at t=1, but 0 -> 1 is forbidden, so the best path is 0 0.
    emissions = torch.tensor([[[5.0, 0.0], [0.0, 1.0]]])
    trans = torch.tensor([[0.0, -100.0], [0.0, 0.0]])
    paths, score = viterbi(emissions, torch.tensor([2]), transitions=trans)
    assert paths == [[0, 0]] and score.item() == pytest.approx(5.0)


# ---- BIO constraints -------------------------------------------------------------------------------

BIO_TAGS = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]


def bio_model(crf: bool) -> Tagger:
    torch.manual_seed(0)
    model = Tagger(TaggerConfig(n_words=10, n_chars=10, n_tags=len(BIO_TAGS), crf=crf, **TINY))
    vocab = Vocab(["<pad>", "<unk>"], ["<pad>", "<unk>"], BIO_TAGS, 0, scheme="BIO")
    model.set_constraints(*transition_masks(vocab))
    if crf:
        with torch.no_grad():  # transitions that would love I-X after O
            model.crf.transitions.normal_(std=3.0)
            model.crf.transitions[BIO_TAGS.index("O"), BIO_TAGS.index("I-PER")] = 20.0
    return model.eval()


@pytest.mark.parametrize("crf", [False, True])
def test_decoding_never_breaks_bio_rules(crf):
    model = bio_model(crf)
    gen = torch.Generator().manual_seed(1)
    emissions = torch.randn(64, 7, len(BIO_TAGS), generator=gen) * 5
    emissions[:, :, BIO_TAGS.index("I-PER")] += 4  # unconstrained, I-PER would be everywhere
    lengths = torch.randint(1, 8, (64,), generator=gen)
    for path in model.decode(emissions, lengths):
        prev = None
        for t in path:
            assert allowed_transition("BIO", prev, BIO_TAGS[t]), [BIO_TAGS[i] for i in path]
            prev = BIO_TAGS[t]
    unconstrained = emissions.argmax(-1)
    assert (unconstrained == BIO_TAGS.index("I-PER")).any()  # the constraint had work to do


# ---- masking -------------------------------------------------------------------------------------


def test_reverse_index_reverses_within_length_and_is_its_own_inverse():
    rev = reverse_index(torch.tensor([3, 1, 4]), 4)
    assert rev.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [3, 2, 1, 0]]
    assert rev.gather(1, rev).tolist() == [list(range(4))] * 3


def test_bilstm_outputs_ignore_padding():
    torch.manual_seed(0)
    lstm = BiLSTM(5, 7, 2, 0.0).eval()
    x = torch.randn(2, 6, 5)
    alone = lstm(x[:1, :3], torch.tensor([3]))
    x2 = x.clone()
    x2[0, 3:] = 1e3  # garbage in the padding of row 0
    padded = lstm(x2, torch.tensor([3, 6]))
    torch.testing.assert_close(padded[0, :3], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("crf", [False, True])
def test_same_sentence_alone_or_in_a_padded_batch(crf):
    """Scores and tags of a sentence do not depend on what else is in its batch: longer
    sentences, longer words, or enough distinct words to read characters in groups."""
    words = [f"w{i}" for i in range(300)]
    sents = [
        ["The", "cat", "sat", "."],
        ["A", "much", "longer", "sentence", "with", "extraordinarily", "long", "words", "!"],
        words,
    ]
    vocab = Vocab(
        ["<pad>", "<unk>", "the", "cat"],
        ["<pad>", "<unk>", *"Thecatsw0123456789"],
        ["N", "V", "X"],
        2,
    )
    torch.manual_seed(0)
    model = Tagger(
        TaggerConfig(n_words=4, n_chars=len(vocab.chars), n_tags=3, crf=crf, **TINY)
    ).eval()
    enc = Encoder(vocab)
    alone = enc.batch(sents[:1])
    batch = enc.batch(sents)
    assert batch.chars.shape[0] >= 128  # the grouped character path is used
    with torch.inference_mode():
        e1 = model(alone.words, alone.lengths, alone.chars, alone.char_lengths, alone.types)
        e2 = model(batch.words, batch.lengths, batch.chars, batch.char_lengths, batch.types)
        torch.testing.assert_close(e2[0, :4], e1[0], atol=1e-5, rtol=1e-5)
        assert model.decode(e2, batch.lengths)[0] == model.decode(e1, alone.lengths)[0]


# ---- batching --------------------------------------------------------------------------------------


def test_bucket_batches_are_reproducible_complete_and_similar_in_length():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=1000).tolist()
    a = bucket_batches(lengths, 32, seed=7, epoch=3)
    assert [x.tolist() for x in a] == [
        x.tolist() for x in bucket_batches(lengths, 32, seed=7, epoch=3)
    ]
    assert [x.tolist() for x in a] != [
        x.tolist() for x in bucket_batches(lengths, 32, seed=7, epoch=4)
    ]
    assert len(a) == math.ceil(1000 / 32)
    assert sorted(np.concatenate(a).tolist()) == list(range(1000))
    spread = np.mean([np.ptp(np.asarray(lengths)[b]) for b in a])
    assert spread < 10  # random batches would spread over ~55


def test_length_batches_limit_padded_tokens():
    lengths = [5] * 100 + [50] * 10
    batches = length_batches(lengths, max_tokens=200, max_sentences=30)
    assert sorted(i for b in batches for i in b) == list(range(110))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 200 or len(b) == 1
        assert len(b) <= 30


# ---- train -> save -> load -> predict on real data ---------------------------------------------------


@pytest.fixture(scope="module")
def ewt_sample(tmp_path_factory, shared_data):
    train = load_sentences(shared_data("ud_english_ewt/en_ewt-ud-train.conllu"), keep_rows=True)
    dev = load_sentences(shared_data("ud_english_ewt/en_ewt-ud-dev.conllu"), keep_rows=True)
    train, dev = train[:300], dev[:100]
    folder = tmp_path_factory.mktemp("ewt")
    write_sentences(folder / "train.conllu", train)
    write_sentences(folder / "dev.conllu", dev)
    return folder


def test_train_save_load_predict(ewt_sample: Path):
    out = ewt_sample / "t.ckpt"
    cfg = default_train_config(
        max_steps=120, lr=1e-2, warmup_steps=10, eval_every=60, precision="fp32", log_every=10
    )
    result = tag.train(
        ewt_sample / "train.conllu",
        ewt_sample / "dev.conllu",
        out=out,
        model_overrides=TINY,
        train_cfg=cfg,
    )
    st = result.state
    assert st.step == 120 and len(st.history) == 2
    accs = [h["val_accuracy"] for h in st.history]
    assert (
        st.best_step == st.history[accs.index(max(accs))]["step"]
    )  # the best is the most accurate
    assert max(accs) > 0.5  # far above the most frequent tag (~17%)

    ckpt = load_checkpoint(out)
    assert ckpt.task == "tagger"
    vocab = ckpt.meta["tokenizers"]
    assert vocab["tag"]["vocab"][:3] == ["ADJ", "ADP", "ADV"]
    assert vocab["word"]["vocab"][:2] == vocab["char"]["vocab"][:2] == ["<unk>", "<pad>"]

    tagger = tag.load(out)
    dev = load_sentences(ewt_sample / "dev.conllu")
    tags = list(tagger.predict([s.words for s in dev]))
    assert [len(t) for t in tags] == [len(s) for s in dev]
    report = tagger.evaluate_sentences(dev)
    assert report["accuracy"] == pytest.approx(max(accs))  # the same figure as training reported
    assert (
        set(report) >= {"accuracy", "oov_accuracy", "per_tag", "tokens"} and "span_f1" not in report
    )
    assert list(tagger.predict([[], ["Hello", "world"], []]))[0] == []

    assert tagger.evaluate(ewt_sample / "dev.conllu") == {"file": str(ewt_sample / "dev.conllu"), **report}

    with pytest.raises(CheckpointError, match="is a tagger checkpoint"):
        from textrnn.tasks import lm

        lm.load(out)


def test_resume_after_interrupt_is_exact(ewt_sample: Path, tmp_path: Path):
    """N steps, Ctrl-C mid-epoch, resume, M more == N + M steps straight (across an epoch
    boundary, with dropout and word dropout drawing random numbers)."""
    train, dev = ewt_sample / "train.conllu", ewt_sample / "dev.conllu"
    cfg = default_train_config(
        batch_size=16,
        max_steps=30,
        warmup_steps=5,
        eval_every=100,
        log_every=1,
        precision="fp32",
        seed=3,
    )
    straight = tag.train(
        train, dev, out=tmp_path / "a.ckpt", model_overrides=TINY, train_cfg=cfg
    )
    assert straight.state.epoch >= 1

    def interrupt(p):
        if p.event == "step" and p.step == 13:
            os.kill(os.getpid(), signal.SIGINT)

    first = tag.train(
        train,
        dev,
        out=tmp_path / "b.ckpt",
        model_overrides=TINY,
        train_cfg=cfg,
        on_progress=interrupt,
    )
    assert first.state.stopped == "interrupted" and first.state.step == 13
    resumed = tag.train(
        train, dev, out=tmp_path / "b.ckpt", train_cfg=cfg, resume=load_checkpoint(first.last)
    )
    assert resumed.state.step == straight.state.step == 30
    a, b = load_checkpoint(straight.last).tensors, load_checkpoint(resumed.last).tensors
    for name in a:
        if name.startswith("model."):
            torch.testing.assert_close(a[name], b[name], atol=0, rtol=0, msg=name)


def test_pretrained_vectors_extend_the_vocabulary(ewt_sample: Path, tmp_path: Path):
    vectors = tmp_path / "vec.txt"
    vectors.write_text("3 4\nthe 1 0 0 0\nZebra 0 1 0 0\nquokka 0 0 1 0.5\n", encoding="utf-8")
    cfg = default_train_config(max_steps=2, eval_every=100, precision="fp32")
    result = tag.train(ewt_sample / "train.conllu", ewt_sample / "dev.conllu", out=tmp_path / "v.ckpt",
                          model_overrides={**TINY, "word_dim": 4}, train_cfg=cfg, options=TagOptions(embeddings=vectors))  # fmt: skip
    tagger = tag.load(result.best)
    v = tagger.vocab
    assert "quokka" in v.word_index and "zebra" in v.word_index  # keys are lowercased
    assert not v.is_known("quokka") and v.is_known("the")
    assert tagger.model.config.word_dim == 4


def test_vocab_keys_and_round_trip():
    sents = load_sentences_from_words([["The", "CAT", "sat", "in", "1999"], ["the", "cat"]])
    vocab, counts = build_vocab(sents)
    assert counts["the"] == 2 and counts["0000"] == 1
    assert vocab.word_id("THE") == vocab.word_id("the") != 1
    assert vocab.word_id("2024") == vocab.word_id("1999")
    assert vocab.char_ids("CAT") != vocab.char_ids("cat")  # characters keep case
    again = Vocab.from_dict(vocab.to_dict())
    assert again.words == vocab.words and again.chars == vocab.chars and again.tags == vocab.tags


def load_sentences_from_words(word_lists):
    from textrnn.formats.conllu import Sentence

    return [Sentence(w, ["X"] * len(w)) for w in word_lists]
