"""Language models over Devanagari graphemes and sentencepiece subwords, on real text."""

from __future__ import annotations

import pytest

from textrnn.engine.config import TrainConfig
from textrnn.formats.plain import iter_text_chunks
from textrnn.tasks.lm import GenerateConfig, generate, load, train
from textrnn.text import graphemes, is_combining_start
from textrnn.tokenizers import train_tokenizer

TINY = {"hidden": 64, "embed": 32, "layers": 1, "dropout": 0.0}


def conllu_text(path, limit_chars: int) -> str:
    """The `# text = ...` sentences of a CoNLL-U file, one per line."""
    lines, size = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# text = "):
            lines.append(line[len("# text = ") :])
            size += len(lines[-1]) + 1
            if size >= limit_chars:
                break
    return "\n".join(lines) + "\n"


@pytest.fixture
def hindi_corpus(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTRNN_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "hi.txt"
    path.write_text(conllu_text(shared_data("ud_hindi_pud/hi_pud-ud-first800.conllu"), 30_000), encoding="utf-8")
    return path


def _train(corpus, tok, out, steps=40):
    cfg = TrainConfig(batch_size=8, seq_len=32, max_steps=steps, lr=1e-2, warmup_steps=5, precision="fp32")
    return train(corpus, tokenizer=tok, out=out, model_overrides=TINY, train_cfg=cfg)


def test_hindi_grapheme_model_samples_no_orphan_marks(hindi_corpus, tmp_path):
    tok = train_tokenizer("char", iter_text_chunks(hindi_corpus), unit="grapheme")
    # The vocabulary itself holds whole aksharas: conjuncts with their matras are single units.
    pieces = {tok.id_to_piece(i) for i in range(tok.vocab_size)}
    assert any(len(p) >= 3 and "\u094d" in p for p in pieces), "expected virama conjuncts as single units"
    result = _train(hindi_corpus, tok, tmp_path / "hi.ckpt")
    lm = load(result.best)
    samples = generate(lm, prompt="भारत", config=GenerateConfig(length=400, num_samples=3, seed=7))
    text = "".join(s.text for s in samples)
    assert any("\u0900" <= ch <= "\u097f" for ch in text)
    # Re-segmenting the output: no grapheme starts with a matra, virama, nukta or joiner.
    orphans = [u for u in graphemes(text) if is_combining_start(u)]
    assert orphans == []


def test_codepoint_model_can_emit_orphans_where_grapheme_cannot(hindi_corpus):
    """The contrast that motivates grapheme units: code points split matras from consonants."""
    cp = train_tokenizer("char", iter_text_chunks(hindi_corpus), unit="codepoint")
    gr = train_tokenizer("char", iter_text_chunks(hindi_corpus), unit="grapheme")
    assert any(is_combining_start(cp.id_to_piece(i)) for i in range(cp.vocab_size))
    assert not any(is_combining_start(gr.id_to_piece(i)) for i in range(gr.vocab_size))


def test_bpe_language_model_trains_samples_and_reports_bits_per_char(hindi_corpus, tmp_path):
    tok = train_tokenizer("bpe", iter_text_chunks(hindi_corpus), vocab_size=400)
    result = _train(hindi_corpus, tok, tmp_path / "bpe.ckpt", steps=30)
    lm = load(result.best)
    assert lm.tokenizer.kind == "bpe"
    [sample] = generate(lm, prompt="भारत", config=GenerateConfig(length=50, seed=1))
    assert sample.text and "\ufffd" not in sample.text
    held_out = hindi_corpus.read_text(encoding="utf-8")[:3000]
    metrics = lm.evaluate_text(held_out)
    # Bits per character are normalised by characters, not subword tokens.
    chars_per_token = metrics["chars"] / metrics["tokens"]
    assert chars_per_token > 1.1
    assert metrics["bits_per_char"] == pytest.approx(
        metrics["loss_nats"] * metrics["tokens"] / metrics["chars"] / 0.6931471805599453, rel=1e-6
    )
