"""The language-model API: train -> save -> load -> generate / beam_generate / evaluate,
and the checkpoints load must refuse."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from textrnn.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from textrnn.engine.config import TrainConfig
from textrnn.engine.decoding.beam import BeamConfig
from textrnn.engine.decoding.sampling import SamplingConfig
from textrnn.errors import CheckpointError, DataError, UsageError
from textrnn.formats.plain import iter_text_chunks
from textrnn.tasks.lm import (
    GenerateConfig,
    LoadedLM,
    beam_generate,
    check_lm_header,
    generate,
    load,
    train,
)
from textrnn.tokenizers import train_tokenizer

PROMPT = "ROMEO:\n"


@pytest.fixture(scope="session")
def shakespeare_text(shared_data):
    """`shakespeare_text(chars)`: the first `chars` characters of tiny-shakespeare."""
    text = shared_data("tinyshakespeare/input.txt").read_text(encoding="utf-8")
    return lambda chars: text[:chars]


def train_small(folder: Path, kind: str, text: str, *, steps: int, model: dict) -> Path:
    corpus = folder / f"{kind}.txt"
    corpus.write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEXTRNN_CACHE", str(folder / "cache"))
        tok = train_tokenizer(kind, iter_text_chunks(corpus))
        cfg = TrainConfig(batch_size=8, seq_len=32, lr=1e-2, max_steps=steps, precision="fp32")
        result = train(
            corpus, tokenizer=tok, out=folder / f"{kind}.ckpt", model_overrides=model, train_cfg=cfg
        )
    return result.best


@pytest.fixture(scope="module")
def char_ckpt(tmp_path_factory, shakespeare_text) -> Path:
    folder = tmp_path_factory.mktemp("char")
    model = {"hidden": 64, "layers": 2, "embed": 16, "dropout": 0.0}
    return train_small(folder, "char", shakespeare_text(20_000), steps=60, model=model)


@pytest.fixture(scope="module")
def word_ckpt(tmp_path_factory, shakespeare_text) -> Path:
    folder = tmp_path_factory.mktemp("word")
    model = {"hidden": 32, "layers": 1, "embed": 32, "dropout": 0.0, "tie_weights": True}  # tying survives loading
    return train_small(folder, "word", shakespeare_text(30_000), steps=20, model=model)


@pytest.fixture
def lm(char_ckpt) -> LoadedLM:
    return load(char_ckpt)


def fused_greedy(lm: LoadedLM, prompt: str, n: int) -> list[int]:
    """Reference greedy decoding: rerun the fused forward over the whole text at every step."""
    ids = lm.tokenizer.encode(prompt)
    banned = list(lm.tokenizer.special_ids)
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = lm.model(torch.tensor([ids + out]))[0][0, -1]  # (V,)
            logits[banned] = -math.inf
            out.append(int(logits.argmax()))
    return out


def sequence_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy in nats of `targets` (B, T) under `logits` (B, T, V)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")


def fused_logprob(lm: LoadedLM, prompt: str, continuation: list[int]) -> float:
    ids = lm.tokenizer.encode(prompt) + continuation
    with torch.no_grad():
        logits, _ = lm.model(torch.tensor([ids[:-1]]))
    n = len(continuation)
    return -sequence_nll(logits[:, -n:], torch.tensor([ids[-n:]])).item()


# ---- sampling -----------------------------------------------------------------------------------


def test_loaded_model_is_ready_for_inference(lm):
    assert not lm.model.training
    assert lm.tokenizer.kind == "char"
    assert lm.checkpoint.task == "lm"


def test_same_seed_same_text_and_different_seed_different_text(char_ckpt):
    def draw(seed: int) -> str:
        # A fresh load each time: the text depends on the file and the seed only.
        return generate(
            load(char_ckpt), prompt=PROMPT, config=GenerateConfig(length=120, seed=seed)
        )[0].text

    a = draw(1)
    assert len(a) == 120  # one character per char token
    assert draw(1) == a
    assert draw(2) != a


def test_num_samples_gives_that_many_samples(lm):
    results = generate(lm, prompt=PROMPT, config=GenerateConfig(length=40, num_samples=3, seed=5))
    assert len(results) == 3
    assert all(r.tokens == 40 and len(r.text) == 40 and r.logprob < 0 for r in results)
    assert len({r.text for r in results}) == 3


def test_stop_string_truncates_and_is_not_included(lm):
    full = generate(lm, prompt=PROMPT, config=GenerateConfig(length=200, seed=3))[0].text
    stop = full[60:62]  # a two-character stop string that this seed certainly produces
    cut = full.index(stop)
    streamed: list[str] = []
    result = generate(
        lm,
        prompt=PROMPT,
        config=GenerateConfig(length=200, seed=3, stop=stop),
        on_text=lambda row, text: streamed.append(text),
    )[0]
    assert result.text == full[:cut]
    assert stop not in result.text
    assert "".join(streamed) == result.text  # streaming never printed a part of the stop string
    assert result.tokens == cut + len(
        stop
    )  # generation ended as soon as the stop string was complete


def test_unknown_prompt_characters_are_named(lm):
    with pytest.raises(UsageError) as err:
        generate(lm, prompt="ROMEO: ☃ says ü", config=GenerateConfig(length=5))
    assert "☃" in str(err.value) and "ü" in str(err.value)
    with pytest.raises(UsageError, match="☃"):
        beam_generate(lm, prompt="☃", beam=BeamConfig(beam=2, max_length=5))


def test_greedy_equals_temperature_zero_and_the_fused_model(lm):
    greedy = generate(
        lm,
        prompt=PROMPT,
        config=GenerateConfig(length=30, seed=1),
        sampling=SamplingConfig(greedy=True),
    )
    cold = generate(
        lm,
        prompt=PROMPT,
        config=GenerateConfig(length=30, seed=2),
        sampling=SamplingConfig(temperature=0),
    )
    assert greedy[0].text == cold[0].text
    ref = fused_greedy(lm, PROMPT, 30)
    assert greedy[0].text == lm.tokenizer.decode(ref)
    assert greedy[0].logprob == pytest.approx(fused_logprob(lm, PROMPT, ref), abs=1e-3)


def test_no_prompt_starts_after_a_line_break(lm):
    results = generate(lm, config=GenerateConfig(length=20, seed=4))
    assert len(results[0].text) == 20


def test_beam_generate_returns_sorted_unique_nbest_with_scores(lm):
    beam = BeamConfig(beam=4, nbest=3, max_length=15, length_penalty=1.0)
    results = beam_generate(lm, prompt=PROMPT, beam=beam)
    assert len(results) == 3
    scores = [h.score for _, h in results]
    assert scores == sorted(scores, reverse=True)
    assert len({h.tokens for _, h in results}) == 3
    for text, h in results:
        assert (
            len(h.tokens) == 15
        )  # a language model has no end token: every hypothesis runs to max_length
        assert text == lm.tokenizer.decode(list(h.tokens))
        assert h.score == pytest.approx(h.logprob / 15)
        assert h.logprob == pytest.approx(fused_logprob(lm, PROMPT, list(h.tokens)), abs=1e-3)


def test_beam_generate_stop_string(lm):
    beam = BeamConfig(beam=3, nbest=2, max_length=40)
    free = beam_generate(lm, prompt=PROMPT, beam=beam)
    stop = free[0][0][10:12]
    for text, _ in beam_generate(lm, prompt=PROMPT, beam=beam, stop=stop):
        assert stop not in text


# ---- evaluation ---------------------------------------------------------------------------------


def test_evaluate_text_figures_are_consistent(lm, shakespeare_text):
    text = shakespeare_text(25_000)[20_000:]  # text the model did not train on
    m = lm.evaluate_text(text)
    assert m["tokens"] == len(text) - 1
    assert m["chars"] == len(text) - 1  # char model: every predicted token is one character
    assert m["perplexity"] == pytest.approx(math.exp(m["loss_nats"]), rel=1e-9)
    assert m["bits_per_char"] == pytest.approx(m["loss_nats"] / math.log(2))
    assert m["nats_per_char"] == pytest.approx(m["loss_nats"])
    assert m["unknown"] == 0
    assert m["loss_nats"] < math.log(lm.tokenizer.vocab_size)


def test_evaluate_text_equals_one_fused_pass_on_short_text(lm):
    text = "ROMEO:\nWhat say you to the king?\n"
    ids = lm.tokenizer.encode(text)
    with torch.no_grad():
        logits, _ = lm.model(torch.tensor([ids[:-1]]))
    nats = sequence_nll(logits, torch.tensor([ids[1:]])).item()
    m = lm.evaluate_text(text)
    assert m["loss_nats"] == pytest.approx(nats / (len(ids) - 1), rel=1e-5)


def test_evaluate_file_matches_evaluate_text(lm, tmp_path, shakespeare_text):
    text = shakespeare_text(22_000)[20_000:]
    path = tmp_path / "held.txt"
    path.write_text(text, encoding="utf-8")
    from_file = lm.evaluate(path)
    from_text = lm.evaluate_text(text)
    assert from_file["loss_nats"] == pytest.approx(from_text["loss_nats"], rel=1e-9)
    assert from_file["file"] == str(path)


def test_evaluate_counts_unknown_and_refuses_too_short_text(lm):
    assert lm.evaluate_text("ROMEO ☃ said ☃\n")["unknown"] == 2
    with pytest.raises(DataError, match="too short"):
        lm.evaluate_text("R")


def test_word_model_trains_samples_and_evaluates(word_ckpt, shakespeare_text):
    lm = load(word_ckpt)
    assert lm.tokenizer.kind == "word"
    assert lm.model.head.weight is lm.model.embedding.weight  # tied weights stay tied after loading

    a = generate(lm, prompt="First Citizen:", config=GenerateConfig(length=25, seed=9))[0]
    assert a.tokens == 25 and a.text.strip()
    assert "<unk>" not in a.text  # the unknown id is never generated
    assert (
        generate(lm, prompt="First Citizen:", config=GenerateConfig(length=25, seed=9))[0].text
        == a.text
    )

    text = shakespeare_text(32_000)[30_000:]
    m = lm.evaluate_text(text)
    first = lm.tokenizer.decode(lm.tokenizer.encode(text)[:1])
    assert m["tokens"] == len(lm.tokenizer.encode(text)) - 1
    assert m["chars"] == len(text) - len(first)  # bits per *character*, not per word
    assert m["chars"] > 2 * m["tokens"]
    assert m["bits_per_char"] == pytest.approx(
        m["loss_nats"] * m["tokens"] / m["chars"] / math.log(2)
    )
    assert m["perplexity"] == pytest.approx(math.exp(m["loss_nats"]))


# ---- checkpoints load refuses ---------------------------------------------------------------------


def test_checkpoint_of_another_task_is_refused(tmp_path):
    path = tmp_path / "tagger.ckpt"
    save_checkpoint(
        path,
        Checkpoint(task="tagger", meta={"model_config": {}}, tensors={"model.w": torch.zeros(2)}),
    )
    with pytest.raises(CheckpointError, match="tagger"):
        load(path)


def _altered(char_ckpt: Path, tmp_path: Path, *, meta=None, drop: str = "") -> Path:
    ckpt = load_checkpoint(char_ckpt)
    tensors = {k: v for k, v in ckpt.tensors.items() if k != drop}
    path = tmp_path / "altered.ckpt"
    save_checkpoint(
        path, Checkpoint(task="lm", meta={**ckpt.meta, **(meta or {})}, tensors=tensors)
    )
    return path


def test_tensor_shapes_that_do_not_match_the_config_are_refused(char_ckpt, tmp_path):
    cfg = load_checkpoint(char_ckpt, load_tensors=False).meta["model_config"]
    path = _altered(
        char_ckpt, tmp_path, meta={"model_config": {**cfg, "hidden": cfg["hidden"] * 2}}
    )
    with pytest.raises(CheckpointError, match="shape"):
        load(path)


def test_checkpoint_of_the_stacked_layout_loads_the_same_model(char_ckpt, tmp_path):
    """textrnn 0.1.0 named the recurrent weights of layer k `rnn.weight_ih_l{k}` (one stacked
    module); such a checkpoint still loads, into the per-layer modules."""
    ckpt = load_checkpoint(char_ckpt)
    old = {}
    for name, t in ckpt.tensors.items():
        if name.startswith("model.rnn."):
            _, _, k, param = name.split(".")  # model.rnn.<k>.weight_ih_l0
            name = f"model.rnn.{param[: -len('l0')]}l{k}"
        old[name] = t
    assert "model.rnn.weight_hh_l1" in old
    path = tmp_path / "stacked.ckpt"
    save_checkpoint(path, Checkpoint(task="lm", meta=ckpt.meta, tensors=old))
    check_lm_header(path)  # (what `textrnn sample` checks before loading) passes too
    new, legacy = load(char_ckpt), load(path)
    for (name, a), (_, b) in zip(new.model.state_dict().items(), legacy.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_missing_tensor_is_refused(char_ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        load(_altered(char_ckpt, tmp_path, drop="model.head.bias"))


def test_tokenizer_that_does_not_match_the_model_is_refused(char_ckpt, tmp_path):
    cfg = load_checkpoint(char_ckpt, load_tensors=False).meta["model_config"]
    path = _altered(
        char_ckpt, tmp_path, meta={"model_config": {**cfg, "vocab_size": cfg["vocab_size"] + 1}}
    )
    with pytest.raises(CheckpointError, match="ids"):
        load(path)


def test_incomplete_metadata_is_a_checkpoint_error(char_ckpt, tmp_path):
    cfg = load_checkpoint(char_ckpt, load_tensors=False).meta["model_config"]
    path = _altered(char_ckpt, tmp_path, meta={"model_config": {**cfg, "bogus": 1}})
    with pytest.raises(CheckpointError, match="incomplete"):
        load(path)


# ---- TextStream: what `textrnn sample` prints while it generates ---------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from textrnn.tasks.lm import TextStream  # noqa: E402

_CORPUS = (Path(__file__).resolve().parent.parent / "corpora/english.txt").read_text(encoding="utf-8")
_STREAM_TOKENIZERS = {
    "char": train_tokenizer("char", [_CORPUS]),
    "word": train_tokenizer("word", [_CORPUS]),
    "bpe": train_tokenizer("bpe", [_CORPUS], vocab_size=400),
}


def _stream(tok, ids: list[int], stop: str) -> tuple[TextStream, list[str]]:
    emitted: list[str] = []
    stream = TextStream(tok, [], stop, emitted.append)
    for i in ids:
        if stream.add(i):
            break
    stream.finish()
    return stream, emitted


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(_STREAM_TOKENIZERS)), start=st.integers(0, 5000), n=st.integers(0, 80),
       stop=st.sampled_from(["", "e", "the", "\n\n", ", and"]))  # fmt: skip
def test_text_stream_prints_the_decoded_text_up_to_the_stop_string(kind, start, n, stop):
    tok = _STREAM_TOKENIZERS[kind]
    ids = tok.encode(_CORPUS[start : start + 4 * n])[:n]
    stream, emitted = _stream(tok, ids, stop)
    whole = tok.decode(ids)
    expected = whole[: whole.index(stop)] if stop and stop in whole else whole
    assert "".join(emitted) == stream.text == expected


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.integers(0, 399), max_size=40), stop=st.sampled_from(["", "e", "\ufffd"]))
def test_text_stream_never_takes_back_what_it_printed(ids, stop):
    """Arbitrary subword ids (byte pieces that do not complete a character included)."""
    stream, emitted = _stream(_STREAM_TOKENIZERS["bpe"], ids, stop)
    assert "".join(emitted) == stream.text
    assert not stop or stop not in stream.text
