"""Next-word candidates (textrnn.tasks.lm.next, `textrnn sample --next K`): the K most
probable next units, with the probabilities that `eval`'s scorer gives the same text."""

from __future__ import annotations

import io
import json
import math
import os
import sys
from pathlib import Path

import pytest

from textrnn.cli import main
from textrnn.engine.config import TrainConfig
from textrnn.errors import DataError, UsageError
from textrnn.formats.plain import iter_text_chunks
from textrnn.paths import data_file
from textrnn.tasks import lm
from textrnn.text import graphemes
from textrnn.tokenizers import train_tokenizer

PROMPT = "First Citizen :\nBefore we proceed any"  # words of the corpus, ending mid-sentence


def text_of(relative: str, chars: int) -> str:
    try:
        path = data_file(relative)
    except DataError as err:
        if os.environ.get("CI"):
            pytest.fail(str(err))
        pytest.skip(str(err))
    return path.read_text(encoding="utf-8")[:chars]


def train_small(folder: Path, kind: str, text: str, **tokenizer) -> Path:
    corpus = folder / f"{kind}.txt"
    corpus.write_text(text, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEXTRNN_CACHE", str(folder / "cache"))
        tok = train_tokenizer(kind, iter_text_chunks(corpus), **tokenizer)
        cfg = TrainConfig(batch_size=8, seq_len=32, lr=1e-2, max_steps=40, precision="fp32")
        model = {"hidden": 32, "layers": 1, "embed": 32, "dropout": 0.0}
        return lm.train(corpus, out=folder / f"{kind}.ckpt", tokenizer=tok, model_overrides=model, train_cfg=cfg).best


@pytest.fixture(scope="module")
def word_ckpt(tmp_path_factory) -> Path:
    return train_small(tmp_path_factory.mktemp("word"), "word", text_of("tinyshakespeare/input.txt", 30_000))


def nats(model: lm.LoadedLM, text: str) -> float:
    """The summed negative log-likelihood that `eval` gives `text`."""
    m = model.evaluate_text(text)
    return m["loss_nats"] * m["tokens"]


def run(capsys, monkeypatch, args: list[str], stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8"))))
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_next_5_words_match_the_scorer(word_ckpt, capsys, monkeypatch):
    code, out, err = run(capsys, monkeypatch, ["sample", "-c", word_ckpt, "--prompt", PROMPT, "--next", 5])
    assert code == 0 and err == ""
    rows = [line.split("\t") for line in out.splitlines()]
    words, probs = [w for w, _ in rows], [float(p) for _, p in rows]
    assert len(words) == 5 == len(set(words)) and all(w and " " not in w for w in words)
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    model = lm.load(word_ckpt)
    base = nats(model, PROMPT)
    for word, p in zip(words, probs, strict=True):  # P(w | prompt) = exp(nats(prompt) - nats(prompt w))
        text = PROMPT + " " + word.replace("\\n", "\n")
        assert p == pytest.approx(math.exp(base - nats(model, text)), rel=1e-4), word
    # the API: the same candidates, and the exact text that follows the prompt
    (found,) = model.predict([PROMPT], k=5)
    assert [c.token.replace("\n", "\\n") for c in found] == words
    for c in found:
        assert c.probability == pytest.approx(math.exp(base - nats(model, PROMPT + c.text)), rel=1e-5)


def test_prompts_from_stdin_give_a_block_each(word_ckpt, capsys, monkeypatch):
    prompts = "First Citizen :\nWe are accounted\n"
    _, out, _ = run(capsys, monkeypatch, ["sample", "-c", word_ckpt, "--next", 3], stdin=prompts)
    blocks = out.split("\n\n")
    assert len(blocks) == 2 and all(len(b.strip("\n").split("\n")) == 3 for b in blocks)
    _, single, _ = run(capsys, monkeypatch, ["sample", "-c", word_ckpt, "--next", 3, "--prompt", "We are accounted"])
    assert blocks[1] == single
    _, out, _ = run(capsys, monkeypatch, ["sample", "-c", word_ckpt, "--next", 3, "--json"], stdin=prompts)
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["prompt"] for o in objects] == ["First Citizen :", "We are accounted"]
    shown = [f"{c['token']}\t{c['probability']:.6g}".replace("\n", "\\n", 1) for c in objects[1]["next"]]
    assert shown == single.splitlines()


def test_next_refuses_sampling_options_and_zero(word_ckpt, capsys, monkeypatch):
    for extra in (["--temperature", "0.5"], ["--beam", "3"], ["--num-samples", "2"]):
        code, out, err = run(capsys, monkeypatch, ["sample", "-c", word_ckpt, "--prompt", "We", "--next", 3, *extra])
        assert code == 2 and out == "" and "--next" in err and err.count("\n") == 1
    with pytest.raises(UsageError, match="--next"):
        next(lm.load(word_ckpt).predict(["We"], k=0))


def test_char_model_candidates_are_whole_grapheme_clusters(tmp_path):
    text = text_of("ud_hindi_pud/hi_pud-ud-first800.conllu", 200_000)
    lines = "\n".join(line[len("# text = ") :] for line in text.splitlines() if line.startswith("# text = "))
    model = lm.load(train_small(tmp_path, "char", lines[:20_000]))
    prompt = lines[:40]
    (found,) = model.predict([prompt], k=8)
    assert len(found) == 8 and all(len(graphemes(c.text)) == 1 for c in found)
    base = nats(model, prompt)
    for c in found:  # one token each: the same identity as for words
        assert c.probability == pytest.approx(math.exp(base - nats(model, prompt + c.text)), rel=1e-4)


def test_subword_candidates_are_whole_words(tmp_path):
    model = lm.load(train_small(tmp_path, "bpe", text_of("tinyshakespeare/input.txt", 30_000), vocab_size=500))
    prompt = "Before we proceed any"
    (found,) = model.predict([prompt], k=6)
    probs = [c.probability for c in found]
    assert len(found) == 6 and probs == sorted(probs, reverse=True) and sum(probs) <= 1
    base = nats(model, prompt)
    for c in found:  # a new word (or a line break), never part of one
        assert c.text == "\n" or (c.text.startswith(" ") and " " not in c.token)
        # its pieces and then a word boundary: at most the probability of its pieces
        assert c.probability <= math.exp(base - nats(model, prompt + c.text)) * 1.0001
    several = [c for c in found if len(model.tokenizer.encode(c.text)) > 1]
    assert several, "no candidate of several pieces: the test shows nothing"
