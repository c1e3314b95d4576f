"""Checkpoints written by textrnn 0.1.0 (format version 1) still load and predict what they
predicted then: a language model, a tagger and a transliterator (tests/fixtures/format1/,
with the outputs 0.1.0 gave in expected.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textrnn.cli import main
from textrnn.engine.checkpoint import load_checkpoint
from textrnn.engine.decoding.sampling import SamplingConfig
from textrnn.tasks import tag, translit
from textrnn.tasks.lm import GenerateConfig, generate, load

HERE = Path(__file__).parent / "fixtures" / "format1"
ENGLISH = Path(__file__).parent.parent / "corpora" / "english.txt"
EXPECTED = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))


def test_the_fixtures_are_format_1():
    for name in ("lm", "tagger", "translit"):
        ckpt = load_checkpoint(HERE / f"{name}.ckpt", load_tensors=False)
        assert ckpt.meta["header"]["format_version"] == 1
        assert "tokenizers" in ckpt.meta and "data" in ckpt.meta  # read under today's keys


def test_language_model_scores_and_generates_as_it_did():
    lm = load(HERE / "lm.ckpt", precision="fp32")
    want = EXPECTED["lm"]
    text = ENGLISH.read_text(encoding="utf-8")[:2000]
    assert lm.evaluate_text(text)["loss_nats"] == pytest.approx(want["loss_nats"], rel=1e-5)
    got = generate(lm, prompt=want["prompt"], config=GenerateConfig(length=40, seed=3),
                   sampling=SamplingConfig(greedy=True))  # fmt: skip
    assert got[0].text == want["greedy40"]


def test_tagger_tags_as_it_did():
    """Format 1 numbered <pad> 0 and <unk> 1: the loader swaps them, and the tags stay."""
    tagger = tag.load(HERE / "tagger.ckpt")
    assert tagger.vocab.words[:2] == ["<unk>", "<pad>"]
    want = EXPECTED["tagger"]
    assert list(map(list, tagger.predict(want["sentences"]))) == want["tags"]
    unseen = [["Zqxwv", "blorfed", "the", "grumpkin", "."]]  # unknown words read as <unk>
    assert len(list(tagger.predict(unseen))[0]) == 5


def test_transliterator_decodes_as_it_did():
    tr = translit.load(HERE / "translit.ckpt", length_penalty=1.0)  # what the expectations were decoded with
    want = EXPECTED["translit"]
    got = list(tr.predict(want["words"], beam=3, nbest=3))
    for cands, expected in zip(got, want["nbest3"], strict=True):
        assert [c.text for c in cands] == [text for text, _ in expected]
        assert [c.logprob for c in cands] == pytest.approx([lp for _, lp in expected], abs=1e-4)


@pytest.mark.parametrize("name", ["lm", "tagger", "translit"])
def test_info_describes_a_format_1_checkpoint(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["info", str(HERE / f"{name}.ckpt"), "--json"])
    assert exit_.value.code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format_version"] == 1 and info["data"]["train"]["name"]
