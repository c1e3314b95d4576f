"""The transliteration task and API (textrnn.tasks.translit): lexicons, training, decoding, evaluation."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import regex
import torch

from textrnn.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from textrnn.errors import CheckpointError, DataError, UsageError
from textrnn.tasks import translit
from textrnn.tasks.translit import (
    Layout,
    TranslitOptions,
    default_train_config,
    detect_layout,
    read_lexicon,
)
from textrnn.tasks.translit.batch import make_batch, sequence_loss
from textrnn.tasks.translit.decode import decode_ids
from textrnn.tasks.translit.lexicon import merge_duplicates
from textrnn.tasks.translit.task import TranslitTask

TINY = {"embed": 24, "hidden": 32, "layers": 1, "dec_hidden": 48, "dropout": 0.1}
LATIN = regex.compile(r"^[a-z]+$")
DEVANAGARI = regex.compile(r"^[\u0900-\u097f]+$")


@pytest.fixture(scope="module")
def lexicons(tmp_path_factory, shared_data) -> Path:
    """Every 100th Dakshina Hindi training row (442, all initial letters) and every 40th dev row."""
    train = shared_data("dakshina_hi/hi.translit.sampled.train.tsv").read_text(encoding="utf-8").splitlines()
    dev = shared_data("dakshina_hi/hi.translit.sampled.dev.tsv").read_text(encoding="utf-8").splitlines()
    folder = tmp_path_factory.mktemp("translit")
    (folder / "train.tsv").write_text("\n".join(train[::100]) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("\n".join(dev[::40]) + "\n", encoding="utf-8")
    swapped = [line.split("\t") for line in train[::100]]
    (folder / "swapped.tsv").write_text("".join(f"{n}\t{lat}\n" for lat, n, _ in swapped), encoding="utf-8")
    return folder


def tiny_config(**kw):
    base = dict(batch_size=32, max_steps=150, lr=1e-2, warmup_steps=10, eval_every=75, precision="fp32", log_every=25)
    return default_train_config(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(lexicons: Path):
    out = lexicons / "m.ckpt"
    result = translit.train(lexicons / "train.tsv", lexicons / "dev.tsv", out=out, model_overrides=TINY,
                            train_cfg=tiny_config(max_steps=300, eval_every=150))  # fmt: skip
    return result


# ---- lexicon files ----------------------------------------------------------------------------------


def test_layout_follows_the_latin_column_whatever_its_position(lexicons):
    assert detect_layout(lexicons / "train.tsv") == Layout(0, 1, 2)
    assert detect_layout(lexicons / "train.tsv", direction="to-latin") == Layout(1, 0, 2)
    assert detect_layout(lexicons / "swapped.tsv") == Layout(1, 0, None)  # native first, no counts
    assert detect_layout(lexicons / "swapped.tsv", direction="to-latin") == Layout(0, 1, None)
    assert detect_layout(lexicons / "train.tsv", source_column=2, target_column=1) == Layout(1, 0, None)
    a = read_lexicon(lexicons / "train.tsv", detect_layout(lexicons / "train.tsv"))
    b = read_lexicon(lexicons / "swapped.tsv", detect_layout(lexicons / "swapped.tsv"))
    assert a.pairs == b.pairs and LATIN.match(a.pairs[0][0]) and DEVANAGARI.match(a.pairs[0][1])
    assert set(b.counts) == {1} and max(a.counts) > 1
    with pytest.raises(UsageError, match="go together"):
        detect_layout(lexicons / "train.tsv", source_column=1)
    with pytest.raises(UsageError, match="--direction"):
        detect_layout(lexicons / "train.tsv", direction="sideways")


@pytest.mark.parametrize(
    "line, message",
    [("onlyone", "at least 3 tab-separated columns, found 1"), ("abc\t\t2", "empty target"),
     ("abc\tअ\tmany", "count column holds 'many'"), ("\tअ\t1", "empty source")],
)  # fmt: skip
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.tsv"
    path.write_text(f"ab\tअब\t1\n\ncd\tकड\t2\n{line}\nef\tएफ\t1\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_lexicon(path, detect_layout(path))
    assert str(info.value).startswith(f"{path}:4: ") and message in str(info.value)


def test_duplicates_merge_and_windows_line_endings(tmp_path):
    path = tmp_path / "dup.tsv"
    path.write_bytes("ab\tअब\t1\r\nab\tअब\t2\r\ncd\tकड\t3\r\n".encode())
    pairs, counts = merge_duplicates(read_lexicon(path, detect_layout(path)))
    assert pairs == [("ab", "अब"), ("cd", "कड")] and counts == [3, 3]


def test_options_are_checked():
    for bad in ({"teacher_forcing": 1.5}, {"teacher_forcing": -0.1}, {"label_smoothing": 1.0},
                {"counts": "sum"}, {"source_unit": "byte"}, {"sampling_decay": -1}):  # fmt: skip
        with pytest.raises(UsageError):
            TranslitOptions(**bad)
    decay = TranslitOptions(teacher_forcing=0.5, sampling_decay=100)
    assert [decay.teacher_forcing_at(s) for s in (0, 50, 100, 500)] == [1.0, 0.75, 0.5, 0.5]


# ---- train -> save -> load -> predict on real data -----------------------------------------------------


def test_train_save_load_predict_evaluate(trained, lexicons):
    st = trained.state
    assert st.step == 300 and [h["step"] for h in st.history] == [150, 300]
    accs = [h["val_accuracy"] for h in st.history]
    assert st.best_step == st.history[accs.index(max(accs))]["step"]
    cer = [h["val_cer"] for h in st.history]
    assert cer[1] < cer[0] and cer[1] < 0.7  # learning: an untrained model's CER is about 1

    ckpt = load_checkpoint(trained.best)
    assert ckpt.task == "translit"
    tok = ckpt.meta["tokenizers"]
    assert tok["source"]["vocab"][:2] == ["<unk>", "<pad>"] and "a" in tok["source"]["vocab"]
    assert tok["target"]["vocab"][:4] == ["<unk>", "<pad>", "<s>", "</s>"] and "\u094d" in tok["target"]["vocab"]

    tr = translit.load(trained.best)
    greedy = tr.evaluate(lexicons / "dev.tsv", beam=1, nbest=1)
    assert greedy["top1"] == pytest.approx(max(accs))  # the figure training reported
    beam = tr.evaluate(lexicons / "dev.tsv", beam=5, nbest=5)
    assert {"top1", "topk", "cer", "any_reference_top1", "rows", "loss"} <= set(beam)
    assert beam["top1"] <= beam["any_reference_top1"] and beam["top1"] <= beam["topk"]
    words = ["namaste", "", "Bharat"]
    cands = list(tr.predict(words, beam=5, nbest=3))
    assert cands[1] == [] and all(len(c) == 3 for c in (cands[0], cands[2]))
    assert all(DEVANAGARI.match(c.text) for c in cands[0])
    alone = list(tr.predict(["bharat"], beam=5, nbest=3))[0]  # sources were all lowercase
    assert [c.text for c in cands[2]] == [c.text for c in alone]
    streamed = list(tr.predict(iter(words * 3), beam=5, nbest=3, read_ahead=2))
    texts = lambda found: [[c.text for c in cs] for cs in found]  # noqa: E731 (scores differ in the last bits)
    assert texts(streamed) == texts(cands) * 3


def test_beam_finds_more_probable_words_than_greedy(trained, lexicons):
    """With raw log-probabilities (length penalty 0) the beam's best word is at least as
    probable as the greedy one for nearly every word, and more probable on the whole.

    Not for every word: when k other prefixes outscore the greedy prefix it falls out of
    the beam, and the beam may then end lower (a search error, seen on a few dev words)."""
    tr = translit.load(trained.best, length_penalty=0.0)
    pairs = read_lexicon(lexicons / "dev.tsv", detect_layout(lexicons / "dev.tsv")).pairs
    src = [tr.vocabs.source_ids(s) for s, _ in pairs]
    greedy, wide = decode_ids(tr, src, beam=1), decode_ids(tr, src, beam=5, nbest=5)
    gains = [w[0][2] - g[0][2] for g, w in zip(greedy, wide, strict=True)]
    assert sum(g >= -1e-4 for g in gains) >= 0.9 * len(gains)
    assert sum(gains) > 0 and max(gains) > 0.01
    for cands in wide:
        scores = [c[1] for c in cands]
        assert scores == sorted(scores, reverse=True) and len({c[0] for c in cands}) == len(cands)


def test_running_text_keeps_everything_but_the_words(trained):
    tr = translit.load(trained.best)
    lines = ["Hello,  rahul! 42 ghar-ghar; नमस्ते (dost)\t.", "", "  123 ...  "]
    out = tr.predict_text(lines, beam=1)
    word = regex.compile(r"[\p{L}\p{M}]+")
    assert [word.sub("W", o) for o in out] == [word.sub("W", line) for line in lines]
    assert "नमस्ते" in out[0] and out[1:] == lines[1:]  # a word in an unknown script stays
    assert not regex.search(r"[a-z]", out[0])


def test_resume_after_interrupt_is_exact(lexicons, tmp_path):
    """N steps, Ctrl-C, resume, M more == N + M steps straight (across an epoch boundary,
    with dropout and scheduled sampling drawing random numbers)."""
    train, dev = lexicons / "train.tsv", lexicons / "dev.tsv"
    cfg = tiny_config(batch_size=64, max_steps=12, eval_every=100, log_every=1, seed=3)
    options = TranslitOptions(teacher_forcing=0.5, sampling_decay=8)
    straight = translit.train(train, dev, out=tmp_path / "a.ckpt", model_overrides=TINY, options=options, train_cfg=cfg)
    assert straight.state.epoch >= 1

    def interrupt(p):
        if p.event == "step" and p.step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    first = translit.train(train, dev, out=tmp_path / "b.ckpt", model_overrides=TINY, options=options,
                           train_cfg=cfg, on_progress=interrupt)  # fmt: skip
    assert first.state.stopped == "interrupted" and first.state.step == 5
    resumed = translit.train(train, dev, out=tmp_path / "b.ckpt", options=options, train_cfg=cfg,
                             resume=load_checkpoint(first.last))  # fmt: skip
    assert resumed.state.step == straight.state.step == 12
    a, b = load_checkpoint(straight.last).tensors, load_checkpoint(resumed.last).tensors
    for name in a:
        if name.startswith("model."):
            torch.testing.assert_close(a[name], b[name], atol=0, rtol=0, msg=name)


def test_reverse_direction_writes_latin(lexicons, tmp_path):
    result = translit.train(lexicons / "train.tsv", lexicons / "dev.tsv", out=tmp_path / "r.ckpt", direction="to-latin",
                            model_overrides=TINY, train_cfg=tiny_config(max_steps=60, eval_every=60))  # fmt: skip
    tr = translit.load(result.best)
    assert tr.vocabs.source.encode("क") != [0] and tr.vocabs.target.encode("k") != [0]
    out = list(tr.predict(["भारत", "नमस्ते"], beam=3))
    assert all(LATIN.match(c[0].text) for c in out)
    report = tr.evaluate(lexicons / "dev.tsv", beam=3, nbest=3)  # the dev file is read to-latin too
    assert report["layout"].startswith("source column 2, target column 1")


def test_wrong_task_checkpoint_is_refused(tmp_path):
    path = tmp_path / "tagger.ckpt"
    save_checkpoint(path, Checkpoint(task="tagger", meta={}, tensors={"model.w": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match="needs a transliteration"):
        translit.load(path)


def test_label_smoothing_mixes_the_uniform_target_into_the_loss():
    """--label-smoothing e: each unit's loss is (1 - e) x its negative log-likelihood plus e x the
    mean negative log-probability over the vocabulary; padding positions count for nothing."""
    torch.manual_seed(0)
    batch = make_batch([[4, 5], [6]], [[7, 8, 9], [10]], [1.0, 1.0])
    logits = torch.randn(2, batch.tgt_out.shape[1], 12)  # (B, T, V)
    logp = logits.log_softmax(-1)
    real = batch.tgt_out >= 0
    nll = -logp.gather(-1, batch.tgt_out.clamp_min(0)[..., None])[..., 0][real].sum()
    uniform = -logp.mean(-1)[real].sum()
    plain, units = sequence_loss(logits, batch, label_smoothing=0.0)
    smoothed, _ = sequence_loss(logits, batch, label_smoothing=0.2)
    assert units == real.sum() == 6  # 3 + 1 units and their </s>
    assert plain == pytest.approx(float(nll), rel=1e-5)
    assert smoothed == pytest.approx(float(0.8 * nll + 0.2 * uniform), rel=1e-5)


def test_count_weighting(lexicons, tmp_path):
    cfg = tiny_config(max_steps=2, eval_every=100)
    result = translit.train(lexicons / "train.tsv", lexicons / "dev.tsv", out=tmp_path / "w.ckpt", model_overrides=TINY,
                            options=TranslitOptions(counts="weight"), train_cfg=cfg)  # fmt: skip
    assert load_checkpoint(result.best).meta["translit"]["counts"] == "weight"


def test_count_weighting_weights_each_pair_loss_by_its_count(lexicons, trained):
    """--counts weight: a batch's loss is sum(w_i * loss_i) / sum(w_i * units_i) with w_i the
    pair's attestation count over the mean count; --counts once weighs every pair 1."""
    tr = translit.load(trained.best)
    tr.model.eval()  # no dropout: the same pair gives the same loss in every batch
    path = lexicons / "train.tsv"
    pairs, counts = merge_duplicates(read_lexicon(path, detect_layout(path)))
    pairs, counts = pairs[:48], counts[:48]
    assert len(set(counts)) > 1  # real Dakshina rows: counts from 1 to several

    def loss(chosen: list[int], counts_option: str) -> float:
        task = TranslitTask(tr.model, tr.vocabs, [pairs[i] for i in chosen], [counts[i] for i in chosen], [],
                            tiny_config(batch_size=len(pairs)), TranslitOptions(counts=counts_option),
                            meta={}, device=torch.device("cpu"))  # fmt: skip
        (share,) = list(task.batches(0, 0))  # one batch holds them all
        with torch.no_grad():
            return float(task.loss(share)[0])

    units = [len(tr.vocabs.target_ids(t)) + 1 for _, t in pairs]  # (+1: </s>)
    summed = [loss([i], "once") * units[i] for i in range(len(pairs))]  # each pair's summed token loss
    w = [c * len(counts) / sum(counts) for c in counts]
    everyone = list(range(len(pairs)))
    unweighted, weighted = loss(everyone, "once"), loss(everyone, "weight")
    assert unweighted == pytest.approx(sum(summed) / sum(units), rel=1e-5)
    expected = sum(wi * si for wi, si in zip(w, summed, strict=True)) / sum(wi * ui for wi, ui in zip(w, units, strict=True))
    assert weighted == pytest.approx(expected, rel=1e-5)
    assert abs(weighted - unweighted) > 1e-3  # the counts move the loss, the way they weigh the pairs


def test_an_ensemble_trains_saves_and_loads(lexicons, tmp_path):
    cfg = tiny_config(max_steps=20, eval_every=20)
    result = translit.train(lexicons / "train.tsv", lexicons / "dev.tsv", out=tmp_path / "e.ckpt",
                            model_overrides={**TINY, "members": 2}, train_cfg=cfg)  # fmt: skip
    ckpt = load_checkpoint(result.best)
    assert ckpt.meta["model_config"]["members"] == 2
    assert any(k.startswith("model.members.1.") for k in ckpt.tensors)
    tr = translit.load(result.best)
    report = tr.evaluate(lexicons / "dev.tsv", beam=3, nbest=3)
    assert report["top1"] == pytest.approx(tr.evaluate(lexicons / "dev.tsv", beam=3, nbest=3)["top1"])
    assert report["loss"] > 0 and len(list(tr.predict(["ghar"], beam=3, nbest=3))[0]) == 3
