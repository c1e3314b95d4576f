"""The benchmark scripts run and write what they promise (the figures themselves are not checked)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # benchmarks/ is not part of the installed package
    sys.path.insert(0, str(REPO))

from benchmarks import report  # noqa: E402
from benchmarks.__main__ import AREAS, parse_size  # noqa: E402
from benchmarks.common import alternate, compare  # noqa: E402

COMPARISON_KEYS = {"case", "unit", "textrnn", "reference", "ratio", "target_ratio", "meets_target"}
STATS_KEYS = {"median", "min", "max", "runs"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    cmd = [
        sys.executable, "-m", "benchmarks", "generate_speed", "tokenizer_speed",
        "--quick", "--tiny", "--out", str(out), "--results", str(out / "RESULTS.md"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _envelope(result: dict, area: str) -> None:
    assert result["area"] == area
    assert result["schema"] == 1
    assert result["command"].startswith(f"python -m benchmarks {area}")
    assert result["quick"] is True and result["tiny"] is True
    machine = result["machine"]
    assert {"cpu", "cores", "torch_threads", "torch", "python"} <= set(machine)
    assert machine["torch_threads"] == machine["cores"]  # set explicitly to os.cpu_count()


def test_generate_speed_json(tiny_run: Path):
    result = json.loads((tiny_run / "generate_speed.json").read_text())
    _envelope(result, "generate_speed")
    assert len(result["results"]) >= 4
    for row in result["results"]:
        assert COMPARISON_KEYS <= set(row)
        assert row["unit"] == "tokens/s"
        for who in ("textrnn", "reference", "ratio"):
            assert set(row[who]) == STATS_KEYS
            assert len(row[who]["runs"]) == result["settings"]["reps"] == 2
            assert row[who]["min"] <= row[who]["median"] <= row[who]["max"]


def test_tokenizer_speed_json(tiny_run: Path):
    result = json.loads((tiny_run / "tokenizer_speed.json").read_text())
    _envelope(result, "tokenizer_speed")
    seen = {(r["text"], r["tokenizer"]) for r in result["results"]}
    for text in ("english", "hindi"):
        for name in (
            "list(str)",
            "str.split",
            "char grapheme",
            "char codepoint",
            "word",
            "bpe",
            "unigram",
        ):
            assert (text, name) in seen
    for row in result["results"]:
        assert row["unit"] == "MB/s"
        assert set(row["speed"]) == STATS_KEYS
        assert row["speed"]["median"] > 0


def test_results_markdown(tiny_run: Path):
    text = (tiny_run / "RESULTS.md").read_text()
    assert text.startswith("# textrnn benchmark results")
    for needle in ("## Machine", "CPU:", "torch threads", "## generate_speed", "## tokenizer_speed",
                   "python -m benchmarks generate_speed --quick --tiny", "TINY run"):  # fmt: skip
        assert needle in text
    # The report depends on the JSON files only: regenerating it gives the same text.
    again = tiny_run / "again.md"
    report.write_results(tiny_run, again, AREAS)
    assert again.read_text() == text


def test_tagger_json(tmp_path):
    """The tagger area trains through the CLI, evaluates, and compares words/s with its reference."""
    from textrnn.errors import DataError
    from textrnn.paths import data_file

    try:
        data_file("ud_english_ewt/en_ewt-ud-train.conllu")
    except DataError as err:
        pytest.skip(str(err))
    cmd = [sys.executable, "-m", "benchmarks", "tagger", "--quick", "--tiny",
           "--out", str(tmp_path), "--results", str(tmp_path / "RESULTS.md")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "tagger.json").read_text())
    _envelope(result, "tagger")
    (quality,) = result["results"]["quality"]
    assert 0.0 < quality["accuracy"] <= 1.0 and quality["commands"][-1].startswith("textrnn tag eval")
    assert [r["case"] for r in result["results"]["throughput"]] == ["tag EWT dev, fp32", "tag EWT dev, bf16"]
    for row in result["results"]["throughput"]:
        assert COMPARISON_KEYS <= set(row) and row["unit"] == "words/s"
    assert "## tagger" in (tmp_path / "RESULTS.md").read_text()


def test_alternate_interleaves_and_reverses():
    calls = []
    runs = alternate(
        {"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0}, reps=3
    )
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B / B A / A B
    row = compare("x", "tokens/s", runs["a"], runs["b"], target=0.95)
    assert row["ratio"]["median"] == 0.5 and row["meets_target"] is False


def test_parse_size():
    assert parse_size("10M") == 10_000_000
    assert parse_size("1G") == 10**9
    assert parse_size("1.5MB") == 1_500_000
    assert parse_size("4096") == 4096


def test_help():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0
    for area in AREAS:
        assert area in proc.stdout


@pytest.mark.slow
def test_distributed_json(tmp_path):
    """The distributed area launches real 1- and 2-process trainings (torchrun) and reports tokens/s."""
    cmd = [sys.executable, "-m", "benchmarks", "distributed", "--quick", "--tiny",
           "--out", str(tmp_path), "--results", str(tmp_path / "RESULTS.md")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "distributed.json").read_text())
    _envelope(result, "distributed")
    cases = [r["case"] for r in result["results"]]
    assert any("2 processes (gloo) / 1 process" in c for c in cases)
    assert any("GPU / CPU" in c for c in cases) == (result["settings"]["gpus"] > 0)
    for row in result["results"]:
        assert COMPARISON_KEYS <= set(row) and row["unit"] == "tokens/s"
        assert row["textrnn"]["median"] > 0 and row["reference"]["median"] > 0
    assert "## distributed" in (tmp_path / "RESULTS.md").read_text()


@pytest.mark.slow
def test_translit_tiny_run(tmp_path):
    """The translit area end to end on a 440-pair sample (about 45 s: it starts 6 processes)."""
    from textrnn.errors import DataError
    from textrnn.paths import data_file

    try:
        data_file("dakshina_hi/hi.translit.sampled.train.tsv")
    except DataError as err:
        pytest.skip(str(err))
    cmd = [sys.executable, "-m", "benchmarks", "translit", "--quick", "--tiny", "--out", str(tmp_path),
           "--results", str(tmp_path / "RESULTS.md")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "translit.json").read_text())
    _envelope(result, "translit")
    r = result["results"]
    assert {"top1_beam5", "top5_beam5", "cer_beam5", "top1_greedy", "cer_greedy"} <= set(r)
    assert [row["attention"] for row in r["attention"]] == ["luong", "bahdanau", "none"]
    for row in r["speed"]:
        assert COMPARISON_KEYS <= set(row) and row["unit"] == "words/s" and row["textrnn"]["median"] > 0
    assert "## translit" in (tmp_path / "RESULTS.md").read_text()


# ---- peers: textrnn against nanoGPT and the PyTorch word example -----------------------------


def _peers_missing() -> str | None:
    """Why the peers run cannot happen here (no reference data, peers or requests), or None."""
    from benchmarks.peers import peers_dir
    from textrnn.errors import DataError
    from textrnn.paths import data_file

    try:
        data_file("tinyshakespeare/input.txt")
    except DataError as err:
        return str(err)
    if not (peers_dir() / "nanogpt" / "train.py").is_file():
        return f"no peer programs in {peers_dir()}"
    try:
        import requests  # noqa: F401  (nanoGPT's prepare.py imports it)
    except ImportError:
        return "nanoGPT's prepare.py needs requests: pip install requests"
    return None


@pytest.mark.slow
def test_peers_tiny_run(tmp_path):
    """The peers area end to end: 4 trainings, 2 probes skipped, 1 scorer check (about 40 s:
    it starts 9 processes)."""
    if why := _peers_missing():
        pytest.skip(why)
    cmd = [sys.executable, "-m", "benchmarks", "peers", "--quick", "--tiny", "--out", str(tmp_path),
           "--results", str(tmp_path / "RESULTS.md")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "peers.json").read_text())
    _envelope(result, "peers")
    split = result["settings"]["split"]
    corpus = split["train_chars"] + split["valid_chars"] + split["heldout_chars"]
    assert corpus == result["settings"]["corpus_chars"] and 29_900 < corpus <= 30_000
    assert [(r["level"], r["peer"]["program"]) for r in result["results"]] == [
        ("char", "nanogpt"), ("word", "word_language_model")]  # fmt: skip
    for r in result["results"]:
        assert "--time-budget 2" in r["textrnn"]["command"]
        assert ("--tokenizer word" in r["textrnn"]["command"]) == (r["level"] == "word")
        for who in ("textrnn", "peer"):
            held = r[who]["heldout"]
            assert held["chars"] == split["heldout_chars"]  # one text, one denominator
            assert "score" in held["command"]
            assert held["nats_per_char"] == pytest.approx(held["nats"] / held["chars"])
            assert 0 < held["nats_per_char"] < 10 and r[who]["tokens_per_s"] > 0
            if r["level"] == "char":
                assert held["tokens"] == held["chars"]
        assert r["tokens_per_s_ratio"] == pytest.approx(
            r["textrnn"]["tokens_per_s"] / r["peer"]["tokens_per_s"]
        )
        assert r["textrnn_leads"] == (r["nats_per_char_diff"] < 0)
    char, word = result["results"]
    recipe = "train.py config/train_shakespeare_char.py --device=cpu --compile=False"
    assert recipe in char["peer"]["command"] and "--max_iters=10" in char["peer"]["command"]
    assert word["peer"]["command"].endswith("main.py --data data --epochs 1")
    assert word["peer"]["epochs"] == 1
    check = result["scorer_check"]
    assert abs(check["difference"]) < 0.01
    assert "## peers" in (tmp_path / "RESULTS.md").read_text()


def _uniform(x: torch.Tensor, y: torch.Tensor, vocab: int = 7) -> torch.Tensor:
    return torch.zeros(*x.shape, vocab)  # (B, T, V): every token costs ln V


@given(st.integers(1, 300), st.integers(1, 40), st.integers(1, 40))
@hyp_settings(max_examples=60, deadline=None)
def test_window_nll_scores_every_target_once_with_enough_context(n, block, stride):
    """Uniform logits cost ln V per target: the total counts each target exactly once. A
    model that is right only with at least `block - stride` tokens of context (or from the
    text's start) costs nothing: no target is scored with less."""
    from benchmarks.peer_score import window_nll

    stride = min(stride, block)
    ids = torch.randint(0, 7, (n + 1,))
    assert window_nll(_uniform, ids, block, stride) == pytest.approx(n * math.log(7), rel=1e-5)

    positions = torch.arange(n + 1)  # each id is its own position

    def sighted(x, y):  # (B, T) -> (B, T, V): sure of the target where its context is long enough
        logits = torch.zeros(*x.shape, n + 1)
        enough = (x[:, :1] == 0) | (torch.arange(x.shape[1]) >= block - stride)  # (B, T)
        logits.scatter_(2, y[..., None], 60.0 * enough[..., None].float())
        return logits

    assert window_nll(sighted, positions, block, stride) < 1e-6 * n


def test_rows_nll_carries_state_and_ignores_padding():
    """A counting model knows the next id only from its carried state; rows of different
    lengths, chunks shorter than the rows: the total is ~0, and uniform scores cost ln V
    per real target (the padding costs nothing)."""
    from benchmarks.peer_score import rows_nll

    def counting(x, seen):  # (B, T) -> (B, T, V); state: tokens seen so far per row
        seen = torch.zeros(x.shape[0], dtype=torch.long) if seen is None else seen
        nxt = seen[:, None] + torch.arange(1, x.shape[1] + 1)  # (B, T) the id that comes next
        logits = torch.zeros(*x.shape, 12).scatter_(2, nxt.clamp(max=11)[..., None], 60.0)
        return logits, seen + x.shape[1]

    rows = [torch.arange(n) for n in (5, 12, 2)]
    assert rows_nll(counting, rows, chunk=3) < 1e-6
    uniform = rows_nll(lambda x, s: (torch.zeros(*x.shape, 12), s), rows, chunk=3)
    assert uniform == pytest.approx((4 + 11 + 1) * math.log(12), rel=1e-5)


@given(st.lists(st.text(alphabet="ab \n", max_size=12), min_size=1, max_size=60), st.integers(1, 9))
def test_pieces_cut_at_line_starts(lines, rows):
    from benchmarks.peer_score import pieces

    text = "\n".join(lines) + "\n"
    got = pieces(text, rows)
    assert "".join(got) == text and 1 <= len(got) <= rows
    assert all(p and (i == 0 or got[i - 1].endswith("\n")) for i, p in enumerate(got))


def test_split_is_nanogpts_split(tmp_path):
    """train + valid is nanoGPT's input.txt, and its prepare.py cuts it at 90%: exactly our
    train/valid cut; the held-out text starts a line and nothing of it is in train or valid."""
    from benchmarks.peer_runs import write_split

    text = "".join(f"line {i} {'x' * (i % 37)}\n" for i in range(2000))
    split, info = write_split(text, tmp_path)
    train, valid, test = (p.read_text() for p in (split.train, split.valid, split.test))
    assert train + valid + test == text
    assert len(train) == int(len(train + valid) * 0.9)  # prepare.py: data[:int(n*0.9)]
    assert test.startswith("line ") and valid.startswith("line ") and info["valid_starts_a_line"]
    assert 0.09 < len(test) / len(text) < 0.11 and info["heldout_chars"] == len(test)


def test_peer_progress_patterns():
    """The lines the pinned peers print (their formats), as the runners read them."""
    from benchmarks.peer_runs import _BATCHES, _EPOCH_END, _EVAL, _ITER, _TEST

    assert _ITER.findall("iter 12: loss 2.5678, time 81.82ms, mfu 0.01%\n") == [("12", "81.82")]
    evals = _EVAL.findall("step 250: train loss 1.9876, val loss 2.0543\nsaving checkpoint to o\n")
    assert evals == [("250", "1.9876", "2.0543", "saving checkpoint")]
    line = "| epoch   1 |    20/  280 batches | lr 20.00 | ms/batch 1137.15 | loss  9.85 | ppl 19030.53"
    assert _BATCHES.search(line).groups() == ("1", "20", "280", "1137.15")
    end = "| end of epoch   2 | time: 321.45s | valid loss  5.92 | valid ppl   372.61"
    assert _EPOCH_END.search(end).groups() == ("2", "321.45", "5.92")
    assert _TEST.search("| End of training | test loss  5.81 | test ppl   333.87")[1] == "5.81"
