"""The benchmark scripts run and write what they promise (the figures themselves are not checked),
every committed figure is generated from the JSON files, and every JSON field is one that code writes."""

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

from benchmarks import generate_speed, report, schema  # noqa: E402
from benchmarks.__main__ import AREAS, parse_size  # noqa: E402
from benchmarks.common import CHOSE_CHECKPOINT, CHOSE_CHECKPOINT_AND_DEFAULTS, alternate, compare  # noqa: E402

OUT = REPO / "benchmarks" / "out"

COMPARISON_KEYS = {"case", "unit", "textrnn", "reference", "ratio", "target_ratio", "meets_target"}
STATS_KEYS = {"median", "min", "max", "runs"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, "-m", "benchmarks", "generate_speed", "tokenizer_speed", "--quick", "--tiny", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _envelope(result: dict, area: str) -> None:
    assert result["area"] == area
    assert result["schema"] == 2
    assert result["command"].startswith(f"python -m benchmarks {area}")
    assert result["quick"] is True and result["tiny"] is True
    machine, conditions = result["machine"], result["conditions"]
    assert {"cpu", "cores", "torch_threads", "torch", "python"} <= set(machine)
    assert machine["torch_threads"] == conditions["threads"] == len(conditions["cpus_allowed"])
    assert conditions["pinned"] is False and conditions["other_cpu_s"] >= 0
    assert len(conditions["git_commit"]) == 40 and isinstance(conditions["git_dirty"], bool)
    assert schema.errors(result, schema.area_schema(AREAS[area].FIELDS)) == []


def test_generate_speed_json(tiny_run: Path):
    result = json.loads((tiny_run / "generate_speed.json").read_text())
    _envelope(result, "generate_speed")
    models = result["settings"]["models"]
    assert [m["cell"] for m in models] == ["gru", "lstm"]  # the default char model first
    threads = result["settings"]["reference_threads"]
    cases = {}
    for row in result["results"]:
        assert COMPARISON_KEYS <= set(row)
        assert row["unit"] == "tokens/s"
        for who in ("textrnn", "reference", "ratio"):
            assert set(row[who]) == STATS_KEYS
            assert len(row[who]["runs"]) == result["settings"]["reps"] == 2
            assert row[who]["min"] <= row[who]["median"] <= row[who]["max"]
        cases.setdefault((row["model"], row["task"], row["precision"]), set()).add((row["against"], row["against_threads"]))
    # every case against every reference at every thread count
    every = {(kind, n) for kind in generate_speed.REFERENCES for n in threads}
    assert {task for _, task, _ in cases} == {"sample", "batch", "beam"}
    assert all(refs == every for refs in cases.values()) and len(cases) >= 6
    # the headline of each case is its ratio against the fastest reference
    for best, rows in generate_speed.fastest(result):
        assert best["reference"]["median"] == max(r["reference"]["median"] for r in rows)
    lines = generate_speed.headline(result)
    assert [line[0].split(",")[0] for line in lines] == ["sample", "sample", "beam search"]
    assert all(models[0]["name"] in line[0] and "fastest of 6" in line[3] for line in lines)


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
                   "python -m benchmarks generate_speed --quick --tiny", "TINY run", "not pinned",
                   "nn.GRUCell loop", "bf16 autocast"):  # fmt: skip
        assert needle in text
    # A scratch --out gets its own README holding the block; the repository's is untouched.
    readme = (tiny_run / "README.md").read_text()
    assert readme.startswith(report.BEGIN) and "| sample, batch 1, char GRU 2x32 (default)" in readme
    # The report depends on the JSON files only: regenerating it gives the same text.
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--render", "--out", str(tiny_run)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tiny_run / "RESULTS.md").read_text() == text and (tiny_run / "README.md").read_text() == readme


def test_committed_results_and_readme_are_generated_from_the_json():
    """RESULTS.md and the README's benchmark block are exactly what benchmarks/out/*.json
    generate: a figure edited by hand, or a run not rendered, fails here."""
    readme = REPO / "README.md"
    results, expected_readme = report.expected(OUT, readme.read_text(encoding="utf-8"), AREAS)
    hint = "regenerate with `python -m benchmarks --render`"
    assert (REPO / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8") == results, hint
    assert readme.read_text(encoding="utf-8") == expected_readme, hint


@pytest.mark.parametrize("area", list(AREAS))
def test_every_area_declares_what_it_writes(area):
    module = AREAS[area]
    assert isinstance(getattr(module, "FIELDS", None), dict), f"{area}: no FIELDS (see benchmarks/schema.py)"
    assert callable(module.run) and callable(module.table)


@pytest.mark.parametrize("path", sorted(OUT.glob("*.json")), ids=lambda p: p.name)
def test_every_committed_json_field_is_written_by_code(path: Path):
    result = json.loads(path.read_text(encoding="utf-8"))
    assert result["area"] == path.stem and result["area"] in AREAS
    assert schema.errors(result, schema.area_schema(AREAS[result["area"]].FIELDS)) == []


def test_schema_check_names_fields_no_code_writes():
    declared = {"settings": {"reps": schema.VALUE}, "results": [schema.comparison("words")],
                "texts": {schema.ANY_NAME: {"bytes": schema.VALUE}}}  # fmt: skip
    row = compare("x", "words/s", [1.0], [2.0], words=3)
    good = {"settings": {"reps": 2}, "results": [row], "texts": {"english": {"bytes": 1}}}
    assert schema.errors(good, declared) == []
    bad = {**good, "notes": ["typed in"], "settings": {"reps": 2, "pinned": True},
           "results": [{**row, "load": 1}], "texts": {"hindi": {"bytes": 1, "by_hand": 1}}}  # fmt: skip
    assert sorted(schema.errors(bad, declared)) == [
        "notes: no code writes this field",
        "results[0].load: no code writes this field",
        "settings.pinned: no code writes this field",
        "texts.hindi.by_hand: no code writes this field",
    ]
    assert schema.errors({"settings": {"reps": {"n": 2}}}, declared) == ["settings.reps: an object where a value is declared"]


def test_pin_records_the_cpus(tmp_path):
    """--pin runs the area on the named CPUs with one torch thread each, and says so in the JSON."""
    cmd = [sys.executable, "-m", "benchmarks", "tokenizer_speed", "--quick", "--tiny", "--reps", "1", "--pin", "0",
           "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "tokenizer_speed.json").read_text())
    c = result["conditions"]
    assert c["pinned"] is True and c["cpus_allowed"] == [0] and c["threads"] == 1 and c["omp_num_threads"] == "1"
    assert "--pin 0" in result["command"] and "(pinned with --pin)" in (tmp_path / "RESULTS.md").read_text()


def test_tagger_json(tmp_path, shared_data):
    """The tagger area trains through the CLI, evaluates, and compares words/s with its reference."""
    shared_data("ud_english_ewt/en_ewt-ud-train.conllu")  # skips (fails in CI) without the data set
    cmd = [sys.executable, "-m", "benchmarks", "tagger", "--quick", "--tiny", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "tagger.json").read_text())
    _envelope(result, "tagger")
    (quality,) = result["results"]["quality"]  # Marathi: test, and dev beside it
    assert [(s["split"], s["role"]) for s in quality["scores"]] == [("test", "never seen"), ("dev", CHOSE_CHECKPOINT)]
    assert all(0.0 < s["accuracy"] <= 1.0 for s in quality["scores"])
    assert quality["commands"][-1].startswith("textrnn tag eval")
    throughput = result["results"]["throughput"]
    assert [(r["precision"], r["against"]) for r in throughput] == [
        ("fp32", "file order"), ("fp32", "sorted"), ("bf16", "file order"), ("bf16", "sorted")]
    for row in throughput:
        assert COMPARISON_KEYS <= set(row) and row["unit"] == "words/s"
    assert "## tagger" in (tmp_path / "RESULTS.md").read_text()


def test_libraries_json(tmp_path, shared_data):
    """The libraries area times textrnn's code against rapidfuzz's predecessor, conllu and seqeval,
    and finds the same results."""
    shared_data("ud_english_ewt/en_ewt-ud-dev.conllu")  # skip (fail in CI) without the data sets
    shared_data("dakshina_hi/hi.translit.sampled.dev.tsv")
    cmd = [sys.executable, "-m", "benchmarks", "libraries", "--quick", "--tiny",
           "--out", str(tmp_path), "--results", str(tmp_path / "RESULTS.md")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "libraries.json").read_text())
    _envelope(result, "libraries")
    assert [r["unit"] for r in result["results"]] == ["pairs/s", "words/s", "tokens/s"]
    for row in result["results"]:
        assert COMPARISON_KEYS <= set(row) and row["same_result"] is True
        assert row["textrnn"]["median"] > 0 and row["reference"]["median"] > 0
    assert "## libraries" in (tmp_path / "RESULTS.md").read_text()


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
    cmd = [sys.executable, "-m", "benchmarks", "distributed", "--quick", "--tiny", "--out", str(tmp_path)]
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
def test_translit_tiny_run(tmp_path, shared_data):
    """The translit area end to end on a 440-pair sample (about 45 s: it starts 6 processes)."""
    shared_data("dakshina_hi/hi.translit.sampled.train.tsv")  # skips (fails in CI) without the data set
    cmd = [sys.executable, "-m", "benchmarks", "translit", "--quick", "--tiny", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "translit.json").read_text())
    _envelope(result, "translit")
    r = result["results"]
    assert {"top1_beam5", "top5_beam5", "cer_beam5", "top1_greedy", "cer_greedy"} <= set(r)
    assert [row["attention"] for row in r["attention"]] == ["luong", "bahdanau", "none"]
    assert r["split"] == "dev" and r["role"] == CHOSE_CHECKPOINT_AND_DEFAULTS
    assert [(row["beam"], row["against"]) for row in r["speed"]] == [(5, "one word"), (1, "one word"), (1, "batched")]
    for row in r["speed"]:
        assert COMPARISON_KEYS <= set(row) and row["unit"] == "words/s" and row["textrnn"]["median"] > 0
    assert "## translit" in (tmp_path / "RESULTS.md").read_text()


@pytest.mark.slow
def test_classify_tiny_run(tmp_path, shared_data):
    """The classify area end to end on 300-row slices (about a minute): both data sets through
    the CLI against the bag-of-words reference, --init-from, prediction and loop speed."""
    shared_data("sst2/train.tsv")  # skips (fails in CI) without the data sets
    shared_data("iitp_hindi_product_reviews/hi-train.csv")
    cmd = [sys.executable, "-m", "benchmarks", "classify", "--quick", "--tiny", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "classify.json").read_text())
    _envelope(result, "classify")
    r = result["results"]
    assert [(q["dataset"], q["split"], q["role"]) for q in r["quality"]] == [
        ("SST-2", "dev", CHOSE_CHECKPOINT_AND_DEFAULTS),
        ("IITP Hindi product reviews", "valid", CHOSE_CHECKPOINT_AND_DEFAULTS),
    ]
    for q in r["quality"]:
        assert 0.0 < q["accuracy"] <= 1.0 and 0.0 < q["reference"]["accuracy"] <= 1.0
        assert q["commands"][0].startswith("textrnn classify train tiny-") and " --dev " in q["commands"][0]
        assert q["commands"][1].startswith("textrnn classify eval tiny-")
    assert all("--init-from" in q["commands"][1] for q in r["pretraining"])
    assert r["predict"]["unit"] == "sentences/s" and r["predict"]["textrnn"]["median"] > 0
    assert [row["unit"] for row in r["train_loop"]] == ["tokens/s", "tokens/s"]
    assert "## classify" in (tmp_path / "RESULTS.md").read_text()
    assert "textrnn classify train --time-budget 3" in (tmp_path / "README.md").read_text()


@pytest.mark.slow
def test_quality_tiny_run(tmp_path):
    """The quality area end to end: train on the first 80%, score validation and test, and the
    test slice stepped with each precision of the generation weights."""
    cmd = [sys.executable, "-m", "benchmarks", "quality", "--quick", "--tiny", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "quality.json").read_text())
    _envelope(result, "quality")
    r = result["results"]
    assert [s["split"] for s in r["splits"]] == ["validation", "test"]
    assert r["precisions"][0]["precision"] == "fp32" and abs(r["precisions"][0]["minus_eval"]) < 1e-4
    assert "stepped with int8" in (tmp_path / "RESULTS.md").read_text() or len(r["precisions"]) < 3


def test_stepped_loss_equals_textrnn_eval(tmp_path):
    """The quality area's generation-weights rows step `LMStepper` over the rows `textrnn eval`
    scores: in fp32 they give its loss; int8 weights move it a little, not a lot."""
    import numpy as np
    import torch

    from benchmarks.quality import stepped_nll
    from textrnn.config import config_to_dict
    from textrnn.engine.checkpoint import Checkpoint, save_checkpoint
    from textrnn.formats.plain import read_text
    from textrnn.models.lm import LanguageModel, LMConfig
    from textrnn.tasks.lm import load, stream_nll
    from textrnn.tokenizers import train_tokenizer

    text = read_text(REPO / "corpora" / "english.txt")[:3000]
    tok = train_tokenizer(texts=[text], kind="char")
    torch.manual_seed(0)  # int8 needs matrices of 2^18 weights or more: 320 x 960
    model = LanguageModel(LMConfig(vocab_size=tok.vocab_size, cell="gru", hidden=320, embed=32, layers=2))
    meta = {"model_config": config_to_dict(model.config), "tokenizers": {"text": tok.to_dict()}}
    path = tmp_path / "m.ckpt"
    save_checkpoint(path, Checkpoint("lm", meta, {f"model.{k}": v for k, v in model.state_dict().items()}))
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    fused, count = stream_nll(load(path).model, ids, device=torch.device("cpu"))
    stepped, stepped_count = stepped_nll(load(path, precision="fp32"), ids)
    assert stepped_count == count and stepped == pytest.approx(fused, rel=1e-5)
    int8 = load(path, precision="int8")
    if int8.precision == "int8":  # x86: fbgemm
        moved = stepped_nll(int8, ids)[0]
        assert moved != stepped and moved == pytest.approx(stepped, rel=1e-2)


# ---- peers: textrnn against nanoGPT and the PyTorch word example -----------------------------


@pytest.mark.slow
def test_peers_tiny_run(tmp_path, shared_data):
    """The peers area end to end on both texts: 8 trainings, the probes skipped, 1 scorer
    check (about 80 s: it starts 17 processes)."""
    import os

    from benchmarks.peers import peers_dir

    shared_data("tinyshakespeare/input.txt")  # skips (fails in CI) without the data set
    if not (peers_dir() / "nanogpt" / "train.py").is_file():  # they sit beside the data
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"no peer programs in {peers_dir()}")
    cmd = [sys.executable, "-m", "benchmarks", "peers", "--quick", "--tiny", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "peers.json").read_text())
    _envelope(result, "peers")
    texts = result["settings"]["texts"]
    assert list(texts) == ["tinyshakespeare", "hindi_reviews"]
    for about in texts.values():
        split = about["split"]
        corpus = split["train_chars"] + split["valid_chars"] + split["heldout_chars"]
        assert corpus == about["corpus_chars"] and 29_000 < corpus <= 30_000
    assert [(r["text"], r["level"], r["peer"]["program"]) for r in result["results"]] == [
        (text, level, peer) for text in texts
        for level, peer in (("char", "nanogpt"), ("word", "word_language_model"))]  # fmt: skip
    for r in result["results"]:
        split = texts[r["text"]]["split"]
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
    char, word = result["results"][:2]
    recipe = "train.py config/train_shakespeare_char.py --device=cpu --compile=False"
    assert recipe in char["peer"]["command"] and "--max_iters=10" in char["peer"]["command"]
    assert word["peer"]["command"].endswith("main.py --data data --epochs 1")
    assert word["peer"]["epochs"] == 1
    check = result["scorer_check"]
    assert abs(check["difference"]) < 0.01
    assert schema.errors(result, schema.area_schema(AREAS["peers"].FIELDS)) == []
    assert "## peers" in (tmp_path / "RESULTS.md").read_text()
    assert "held-out nats/char, one scorer, against nanogpt" in (tmp_path / "README.md").read_text()


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
