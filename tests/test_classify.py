"""The recurrent classifier (textrnn.models.classifier, the Pooling block) and the
classification task/API (textrnn.tasks.classify)."""

from __future__ import annotations

import json
import os
import random
import signal
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textrnn.engine.checkpoint import load_checkpoint
from textrnn.engine.config import TrainConfig
from textrnn.errors import CheckpointError, DataError, UsageError
from textrnn.formats.tables import read_table
from textrnn.models.blocks import Pooling
from textrnn.models.classifier import (
    Classifier,
    ClassifierConfig,
    ClassifierEnsemble,
    build_classifier,
)
from textrnn.tasks import classify
from textrnn.tasks.classify import ClassifyOptions, Labels, default_train_config
from textrnn.tasks.classify.batch import TextEncoder, char_ngrams
from textrnn.tasks.classify.labels import class_weights
from textrnn.tasks.classify.task import ClassifierTask, Share
from textrnn.tokenizers import train_tokenizer

TINY = {"embed": 16, "hidden": 16, "layers": 1, "dropout": 0.1}

GOOD = ["good", "great", "fine", "lovely", "superb"]
BAD = ["bad", "awful", "dull", "poor", "boring"]
FILL = ["the", "film", "was", "a", "story", "and", "plot", "very", "really", "it"]


def toy_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Sentences whose label is the kind of the one sentiment word they hold."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(FILL) for _ in range(rng.randint(2, 8))]
        words.insert(rng.randint(0, len(words)), rng.choice(GOOD if label == "pos" else BAD))
        rows.append((" ".join(words), label))
    return rows


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("toy")
    write_tsv(folder / "train.tsv", toy_rows(300, seed=1))
    write_tsv(folder / "dev.tsv", toy_rows(60, seed=2))
    return folder


def tiny_config(**overrides) -> TrainConfig:
    return default_train_config(**{"precision": "fp32", "warmup_steps": 5, "log_every": 1, **overrides})


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "toy.ckpt"
    classify.train(toy / "train.tsv", toy / "dev.tsv", out=out, model_overrides=TINY,
                     train_cfg=tiny_config(epochs=15, lr=5e-3, patience=0))  # fmt: skip
    return out


# ---- the model -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["max", "mean", "last", "attention"])
@pytest.mark.parametrize(("cell", "bidirectional", "buckets"), [("lstm", True, 0), ("gru", True, 0), ("lstm", False, 0), ("lstm", True, 64)])
def test_padding_never_changes_a_prediction(pool, cell, bidirectional, buckets):
    torch.manual_seed(0)
    tok = train_tokenizer("word", ["the film was superb and the plot dull"])
    config = ClassifierConfig(vocab_size=tok.vocab_size, n_classes=3, embed=8, hidden=6, layers=2, pool=pool,
                              cell=cell, bidirectional=bidirectional, ngram_buckets=buckets)  # fmt: skip
    model = Classifier(config).eval()
    encoder = TextEncoder(tok, buckets=buckets)
    items = [encoder.encode(t) for t in ("the film", "the plot was superb and unseen words abound", "dull")]
    batch = encoder.batch(items)
    together = model(*batch.inputs)
    for i, item in enumerate(items):
        alone = model(*encoder.batch([item]).inputs)
        torch.testing.assert_close(together[i], alone[0], rtol=1e-5, atol=1e-6)
    # Other ids at the padding positions change nothing either.
    noisy = batch.ids.masked_fill(torch.arange(batch.ids.shape[1])[None] >= batch.lengths[:, None], 3)
    torch.testing.assert_close(model(noisy, batch.lengths, batch.grams, batch.types), together, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pool", ["max", "attention"])
def test_an_ensemble_averages_its_members_probabilities(pool):
    torch.manual_seed(0)
    tok = train_tokenizer("word", ["the film was superb and the plot dull"])
    config = ClassifierConfig(vocab_size=tok.vocab_size, n_classes=3, embed=8, hidden=6, pool=pool, members=3)
    model = build_classifier(config).eval()
    assert isinstance(model, ClassifierEnsemble) and len(model.each()) == 3
    encoder = TextEncoder(tok)
    batch = encoder.batch([encoder.encode(t) for t in ("the film", "dull plot was superb")])
    mean = torch.stack([torch.softmax(m(*batch.inputs), -1) for m in model.each()]).mean(0)
    torch.testing.assert_close(torch.softmax(model(*batch.inputs), -1), mean)
    assert model.member_logits(*batch.inputs).shape == (3, 2, 3)
    if pool == "attention":
        scores, weights = model.attention(*batch.inputs)
        torch.testing.assert_close(torch.softmax(scores, -1), mean)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    assert isinstance(build_classifier(ClassifierConfig(vocab_size=5, n_classes=2)), Classifier)


def test_ensemble_members_learn_on_their_own_losses(toy, tmp_path):
    """Trained, saved and loaded: the members differ (own starts), and each one alone has
    learnt the task, as members trained apart would."""
    result = classify.train(toy / "train.tsv", toy / "dev.tsv", out=tmp_path / "e.ckpt",
                            model_overrides={**TINY, "members": 2}, train_cfg=tiny_config(epochs=15, lr=5e-3, patience=0))  # fmt: skip
    clf = classify.load(result.best)
    first, second = clf.model.each()
    assert not torch.equal(first.embedding.weight, second.embedding.weight)
    batch = clf.encoder.batch([clf.encoder.encode(t) for t in ("the film was superb", "a really boring plot")])
    with torch.inference_mode():
        for member in (first, second):
            assert member(*batch.inputs).argmax(-1).tolist() == [1, 0]
    assert clf.evaluate(toy / "dev.tsv")["accuracy"] > 0.9


def test_unseen_words_are_read_by_their_character_ngrams():
    tok = train_tokenizer("word", ["a good film"])
    encoder = TextEncoder(tok, buckets=1000)
    item = encoder.encode("a goodish film")
    assert item.ids[1] == tok.unk_id and item.units == ("a", "goodish", "film")
    assert char_ngrams("goodish", 1000)[:2] == char_ngrams("good", 1000)[:2]  # "<go", "goo" shared
    assert char_ngrams("goodish", 1000) == char_ngrams("goodish", 1000)  # CRC-32: the same every run
    batch = encoder.batch([item, encoder.encode("film film")])
    assert batch.grams.shape[0] == 3  # distinct tokens: a, goodish, film
    assert batch.types.tolist() == [[0, 1, 2], [2, 2, 0]]  # (padding points anywhere)
    assert (batch.grams == 1000).any()  # shorter rows are padded with the extra bucket


ENCODER_TEXTS = ["a good film , really", "Unseen WORDS abound; हिंदी में भी", "the plot\nwas dull"]


@pytest.fixture(scope="module", params=["word", "char", "bpe"])
def any_tokenizer(request):
    return train_tokenizer(request.param, ENCODER_TEXTS * 20, **({"vocab_size": 320} if request.param == "bpe" else {}))


@given(st.lists(st.sampled_from(ENCODER_TEXTS + ["", "film", "ü?", "\u0915\u094d\u0937"]), max_size=4).map(" ".join))
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_encoder_reads_a_text_as_its_tokenizer_does(any_tokenizer, text):
    """The n-gram encoder tokenizes once and looks the tokens up itself: the ids must be
    the tokenizer's own (an empty text reads as one <unk>)."""
    item = TextEncoder(any_tokenizer, buckets=50).encode(text)
    plain = TextEncoder(any_tokenizer).encode(text)
    assert item.ids == plain.ids == (any_tokenizer.encode(text.replace("\n", " ")) or [any_tokenizer.unk_id])
    assert len(item.units) == len(item.ids)


def test_ngram_means_are_the_padded_bags_means():
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(vocab_size=5, n_classes=2, embed=4, hidden=3, ngram_buckets=7))
    grams = torch.tensor([[1, 2, 7, 7], [3, 7, 7, 7], [4, 5, 6, 0]])
    padded = torch.nn.functional.embedding_bag(grams, model.ngram_embedding.weight, mode="mean", padding_idx=7)
    torch.testing.assert_close(model.ngram_means(grams), padded)


def test_pooling_reads_only_real_positions():
    h = torch.tensor([[[1.0, -1.0], [3.0, 5.0], [9.0, 9.0]], [[2.0, 4.0], [0.0, 0.0], [0.0, 0.0]]])
    lengths = torch.tensor([2, 1])
    assert Pooling("max", 2)(h, lengths).tolist() == [[3.0, 5.0], [2.0, 4.0]]
    assert Pooling("mean", 2)(h, lengths).tolist() == [[2.0, 2.0], [2.0, 4.0]]
    # "last": the forward half at the last position, the backward half at the first.
    assert Pooling("last", 2)(h, lengths).tolist() == [[3.0, -1.0], [2.0, 4.0]]
    assert Pooling("last", 2, bidirectional=False)(h, lengths).tolist() == [[3.0, 5.0], [2.0, 4.0]]
    att = Pooling("attention", 2)
    mask = torch.arange(3)[None] < lengths[:, None]
    weights = att.attention_weights(h, mask)
    assert weights[:, 2].tolist() == [0.0, 0.0] and weights[1, 1] == 0.0
    torch.testing.assert_close(weights.sum(1), torch.ones(2))
    for kind in ("max", "mean", "last", "attention"):  # an empty sequence pools to zeros
        assert Pooling(kind, 2)(h[:1], torch.tensor([0])).tolist() == [[0.0, 0.0]]


def test_config_checks_name_the_option():
    with pytest.raises(UsageError, match="--pool must be one of"):
        ClassifierConfig(vocab_size=5, n_classes=2, pool="sum")
    with pytest.raises(UsageError, match="at least 2 classes"):
        ClassifierConfig(vocab_size=5, n_classes=1)
    with pytest.raises(UsageError, match="--word-dropout"):
        ClassifyOptions(word_dropout=1.0)


# ---- labels and weights ------------------------------------------------------------------------------


def test_labels_order_numbers_numerically_and_round_trip():
    labels = Labels.from_counts(Counter({"10": 1, "2": 3, "-1": 1}))
    assert labels.names == ["-1", "2", "10"]
    assert Labels.from_dict(labels.to_dict()).names == labels.names
    assert Labels.from_counts(Counter({"positive": 1, "negative": 2, "neutral": 3})).names == [
        "negative", "neutral", "positive"]  # fmt: skip


def test_balanced_class_weights_give_each_class_the_same_total():
    counts = Counter({"a": 90, "b": 10})
    labels = Labels.from_counts(counts)
    w = class_weights(labels, counts, "balanced")
    assert w[0] * 90 == pytest.approx(w[1] * 10) == pytest.approx(50.0)
    assert class_weights(labels, counts, "none") == [1.0, 1.0]


# ---- training, prediction, evaluation ----------------------------------------------------------------


def test_train_save_load_predict_evaluate(trained, toy, tmp_path):
    clf = classify.load(trained)
    assert clf.labels.names == ["neg", "pos"]
    probs = list(clf.predict(["the film was superb", "a really boring plot", ""]))
    assert len(probs) == 3 and all(abs(sum(p) - 1) < 1e-5 for p in probs)
    assert probs[0][1] > 0.5 > probs[1][1]
    result = clf.evaluate(toy / "dev.tsv", errors=tmp_path / "errors.jsonl")
    assert result["file"] == str(toy / "dev.tsv") and result["layout"]
    assert result["accuracy"] > 0.9 and result["rows"] == 60
    wrong = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert result["errors"] == len(wrong) == round(60 * (1 - result["accuracy"]))
    rows, _ = read_table(toy / "dev.tsv")
    assert clf.evaluate_rows(rows) == {k: result[k] for k in result if k not in ("file", "layout", "errors", "errors_file")}
    assert sum(map(sum, result["confusion"]["matrix"])) == 60
    assert set(result["per_class"]) == {"neg", "pos"}
    meta = load_checkpoint(trained).meta
    assert meta["data"]["classes"] == dict(Counter(y for _, y in toy_rows(300, seed=1)))
    assert meta["metrics"]["val_accuracy"] == pytest.approx(result["accuracy"], abs=1e-6)


def test_predictions_stream_in_input_order(trained):
    clf = classify.load(trained)
    texts = ["good"] * 3 + ["a very very long and dull story about the film"] + ["bad"]
    streamed = list(clf.predict(iter(texts), read_ahead=2))
    torch.testing.assert_close(torch.tensor(streamed), torch.tensor(list(clf.predict(texts))))


def test_an_unknown_label_is_an_error_naming_the_line(trained, tmp_path):
    clf = classify.load(trained)
    rows, _ = read_table(write_tsv(tmp_path / "x.tsv", [("good", "pos"), ("meh", "neutral")]))
    with pytest.raises(DataError, match=r"x.tsv:3: label 'neutral' is not one of the classifier's classes \(neg, pos\)"):
        clf.evaluate_rows(rows, name="x.tsv")


def test_explanations_weigh_every_token(trained, tmp_path, toy):
    clf = classify.load(trained)
    probs, weights = clf.explain("the plot was superb")
    assert [t for t, _ in weights] == ["the", "plot", "was", "superb"]
    assert max(weights, key=lambda tw: tw[1])[0] == "superb"  # leaving it out costs the most
    assert probs[1] > 0.5
    attentive = tmp_path / "att.ckpt"
    classify.train(toy / "train.tsv", toy / "dev.tsv", out=attentive, model_overrides={**TINY, "pool": "attention"},
                     train_cfg=tiny_config(epochs=2))  # fmt: skip
    _, weights = classify.load(attentive).explain("the plot was superb")
    assert sum(w for _, w in weights) == pytest.approx(1.0, abs=1e-5)


def test_a_dev_class_unseen_in_training_is_reported(toy, tmp_path):
    dev = write_tsv(tmp_path / "dev.tsv", [("fine", "pos"), ("so so", "mixed")])
    logs = []
    result = classify.train(toy / "train.tsv", dev, out=tmp_path / "m.ckpt", model_overrides=TINY,
                              train_cfg=tiny_config(max_steps=2), on_log=logs.append)  # fmt: skip
    assert any("never seen in training" in m and "mixed" in m for m in logs)
    assert result.labels.names == ["neg", "pos"]


def test_one_class_is_not_a_classifier(tmp_path):
    train = write_tsv(tmp_path / "t.tsv", [("a", "x"), ("b", "x")])
    with pytest.raises(DataError, match="two classes or more"):
        classify.train(train, train, out=tmp_path / "m.ckpt", model_overrides=TINY)


def test_resume_after_interrupt_is_exact(toy, tmp_path):
    """N steps, Ctrl-C, resume, M more == N + M steps straight (across an epoch boundary,
    with dropout and word dropout drawing random numbers)."""
    cfg = tiny_config(batch_size=32, max_steps=14, eval_every=100, seed=3)
    args = dict(model_overrides=TINY, train_cfg=cfg)
    straight = classify.train(toy / "train.tsv", toy / "dev.tsv", out=tmp_path / "a.ckpt", **args)
    assert straight.state.epoch >= 1

    def interrupt(p):
        if p.event == "step" and p.step == 6:
            os.kill(os.getpid(), signal.SIGINT)

    first = classify.train(toy / "train.tsv", toy / "dev.tsv", out=tmp_path / "b.ckpt", on_progress=interrupt, **args)
    assert first.state.stopped == "interrupted" and first.state.step == 6
    resumed = classify.train(toy / "train.tsv", toy / "dev.tsv", out=tmp_path / "b.ckpt", train_cfg=cfg,
                               resume=load_checkpoint(first.last))  # fmt: skip
    assert resumed.state.step == straight.state.step == 14
    a, b = load_checkpoint(straight.last).tensors, load_checkpoint(resumed.last).tensors
    for name in a:
        if name.startswith("model."):
            torch.testing.assert_close(a[name], b[name], atol=0, rtol=0, msg=name)


def test_other_tasks_checkpoints_are_refused(tmp_path):
    from textrnn.engine.checkpoint import Checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "lm.ckpt", Checkpoint(task="lm", meta={}, tensors={"x": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match=r"needs a sentence classifier \(classify\) checkpoint"):
        classify.load(tmp_path / "lm.ckpt")


def test_shares_add_up_to_the_single_process_loss_and_gradient(toy):
    """Each share is divided by the global batch's summed class weights: the shares'
    gradients sum to the whole batch's (here with balanced weights)."""
    rows, _ = read_table(toy / "train.tsv")
    rows = [r for r in rows if r.label == "pos"][:4] + [r for r in rows if r.label == "neg"][:3]
    labels = Labels.from_counts(Counter(r.label for r in rows))
    encoder = TextEncoder(train_tokenizer("word", [r.text for r in rows]), buckets=32)
    items = [encoder.encode(r.text) for r in rows]
    ys = labels.ids(r.label for r in rows)
    weights = class_weights(labels, Counter(r.label for r in rows), "balanced")
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(vocab_size=encoder.tokenizer.vocab_size, n_classes=2, ngram_buckets=32, **TINY))
    task = ClassifierTask(model, encoder, (items, ys), ([], []), TrainConfig(batch_size=7), ClassifyOptions(),
                          weights=weights, meta={}, device=torch.device("cpu"))  # fmt: skip
    model.eval()  # no dropout and no word dropout: the comparison is deterministic
    total = sum(weights[y] for y in ys)

    def share(idx: list[int], stand_in: bool = False) -> Share:
        return Share(encoder.batch([items[i] for i in idx], [ys[i] for i in idx]), total, stand_in)

    def grads(shares: list[Share]) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        value = 0.0
        for s in shares:
            loss, _ = task.loss(s)
            loss.backward()
            value += loss.item()
        return value, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    whole = grads([share(list(range(7)))])
    split = grads([share([0, 1, 2, 3]), share([4, 5, 6]), share([0], stand_in=True)])
    assert split[0] == pytest.approx(whole[0], rel=1e-6)
    for a, b in zip(split[1], whole[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# ---- starting from a language model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def language_model(toy, tmp_path_factory) -> Path:
    """A tiny word LSTM language model of `textrnn train` on the toy training texts."""
    from textrnn.cli import main

    folder = tmp_path_factory.mktemp("lm")
    corpus = folder / "text.txt"
    corpus.write_text("".join(t + "\n" for t, _ in toy_rows(300, seed=1)), encoding="utf-8")
    args = ["train", str(corpus), "--tokenizer", "word", "--layers", "1", "--hidden", "16", "--embed", "16",
            "--max-steps", "3", "--batch-size", "4", "--seq-len", "16", "--out", str(folder / "lm.ckpt"), "--quiet"]  # fmt: skip
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 0
    return folder / "lm.ckpt"


def test_init_from_a_language_model_takes_its_tokenizer_and_weights(language_model, toy, tmp_path):
    lm = load_checkpoint(language_model)
    result = classify.train(toy / "train.tsv", toy / "dev.tsv", out=tmp_path / "c.ckpt", init_from=language_model,
                              model_overrides={"pool": "mean"}, train_cfg=tiny_config(max_steps=1, lr=1e-9))  # fmt: skip
    meta = load_checkpoint(result.best).meta
    assert meta["tokenizers"]["text"] == lm.meta.get("tokenizers", {}).get("text", lm.meta.get("tokenizer"))
    assert meta["model_config"]["bidirectional"] is False and meta["model_config"]["hidden"] == 16
    assert meta["data"]["init_from"]["sha256"] == json.loads(json.dumps(meta["data"]["init_from"]))["sha256"]
    clf = classify.load(result.best)
    lm_weights = {k[len("model."):]: v for k, v in lm.tensors.items() if k.startswith("model.")}
    for member in clf.model.each():  # every member of the default ensemble starts from it
        own = member.state_dict()
        for name in ("embedding.weight", "rnn.0.weight_ih_l0", "rnn.0.weight_hh_l0"):
            torch.testing.assert_close(own[name], lm_weights[name], rtol=0, atol=1e-6)  # lr 1e-9: unchanged
    with pytest.raises(UsageError, match="--hidden is set by the language model"):
        classify.train(toy / "train.tsv", toy / "dev.tsv", out=tmp_path / "d.ckpt", init_from=language_model,
                         model_overrides={"hidden": 32})  # fmt: skip


def test_init_from_refuses_a_checkpoint_of_another_task(trained, toy, tmp_path):
    with pytest.raises(CheckpointError, match="needs a language model"):
        classify.train(toy / "train.tsv", toy / "dev.tsv", out=tmp_path / "e.ckpt", init_from=trained)


# ---- the real data ---------------------------------------------------------------------------------


def test_sst2_and_hindi_slices_train_in_seconds(shared_data, tmp_path):
    """A few steps on the first rows of each reference set: the readers find their layouts,
    the Hindi reviews read as grapheme characters, and three classes come out."""
    sst = shared_data("sst2/train.tsv")
    hindi = shared_data("iitp_hindi_product_reviews/hi-train.csv")
    lines = sst.read_text(encoding="utf-8").splitlines()
    (tmp_path / "sst.tsv").write_text("\n".join(lines[:201]) + "\n", encoding="utf-8")
    (tmp_path / "hi.csv").write_text("".join(hindi.read_text(encoding="utf-8").splitlines(True)[:200]), encoding="utf-8")
    for name, tokenizer in (("sst.tsv", {"kind": "word"}), ("hi.csv", {"kind": "char"})):
        result = classify.train(tmp_path / name, None, out=tmp_path / f"{name}.ckpt", tokenizer=tokenizer,
                                  model_overrides=TINY, train_cfg=tiny_config(max_steps=3, val_fraction=0.1))  # fmt: skip
        assert result.tokenizer.kind == tokenizer["kind"]
    assert result.labels.names == ["negative", "neutral", "positive"]
    clf = classify.load(tmp_path / "hi.csv.ckpt")
    assert clf.tokens("अच्छा")[:2] == ["अ", "च्छा"]  # whole grapheme clusters
