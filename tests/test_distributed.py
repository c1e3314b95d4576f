"""Data-parallel training: 2 processes over loopback (torchrun, gloo) against 1 process.

The runs are real `torchrun -m textrnn train` commands on tiny models; every rank writes
a digest of its weights after each step ($TEXTRNN_WEIGHT_DIGESTS), so "the replicas held
identical weights after every step" is read from the ranks themselves. fp32 and dropout 0:
dropout masks differ between ranks by design, and bf16 rounding differs with the shapes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from textrnn.data.corpus import encode_corpus
from textrnn.engine import distributed
from textrnn.engine.checkpoint import load_checkpoint
from textrnn.engine.config import TrainConfig
from textrnn.engine.distributed import Dist
from textrnn.engine.outputs import metrics_path
from textrnn.errors import UsageError
from textrnn.files import fingerprint_file
from textrnn.formats.conllu import Sentence
from textrnn.formats.plain import iter_text_chunks
from textrnn.models.lm import LanguageModel, LMConfig
from textrnn.models.tagger import Tagger, TaggerConfig
from textrnn.tasks import tag
from textrnn.tasks.lm import LMTask
from textrnn.tasks.tag import build_vocab
from textrnn.tasks.tag.task import Shard, TaggerTask
from textrnn.tokenizers import train_tokenizer

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpora" / "english.txt"
# fp32, no dropout: a 2-process step must equal the 1-process step up to float rounding.
LM = "--hidden 32 --layers 1 --embed 16 --dropout 0 --precision fp32 --batch-size 8 --seq-len 32".split()
CLOSE = {"rtol": 1e-4, "atol": 2e-5}


def env(folder: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "TEXTRNN_CACHE": str(folder / "cache"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": path,
        **extra,
    }


def textrnn_cmd(args: list, nproc: int = 1) -> list[str]:
    """`textrnn ARGS`, under torchrun (standalone: a free loopback port) for nproc > 1."""
    if nproc == 1:
        return [sys.executable, "-m", "textrnn", *map(str, args)]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return [sys.executable, *launcher, "-m", "textrnn", *map(str, args)]


def start(args: list, folder: Path, *, nproc: int = 1, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        textrnn_cmd(args, nproc), cwd=folder, env=env(folder, **extra), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 180) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def digests(folder: Path) -> list[list[str]]:
    """Each rank's "step digest" lines, in rank order."""
    return [p.read_text().splitlines() for p in sorted(folder.glob("rank*.txt"))]


def assert_same_training(a: Path, b: Path) -> None:
    """Two last checkpoints hold the same weights, optimizer moments and carried state."""
    ta, tb = load_checkpoint(a).tensors, load_checkpoint(b).tensors
    names = sorted(k for k in ta if k.startswith(("model.", "optim.", "state.")))
    assert names == sorted(k for k in tb if k.startswith(("model.", "optim.", "state.")))
    for name in names:
        assert ta[name].shape == tb[name].shape, name
        torch.testing.assert_close(ta[name], tb[name], **CLOSE, msg=lambda m, n=name: f"{n}: {m}")
    ma, mb = load_checkpoint(a).meta, load_checkpoint(b).meta
    assert ma["training"]["step"] == mb["training"]["step"]
    assert [h["step"] for h in ma["history"]] == [h["step"] for h in mb["history"]]
    for ha, hb in zip(ma["history"], mb["history"], strict=True):
        assert ha["val_loss"] == pytest.approx(hb["val_loss"], abs=1e-5)


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory) -> Path:
    """6 steps of the same command on 2 processes (two.ckpt) and on 1 (one.ckpt), run side by side."""
    folder = tmp_path_factory.mktemp("ddp")
    common = [CORPUS, *LM, "--max-steps", 6, "--eval-every", 3, "--json"]
    two = start(
        ["train", *common, "--out", "two.ckpt"],
        folder,
        nproc=2,
        TEXTRNN_WEIGHT_DIGESTS=str(folder / "digests"),
    )
    one = start(["train", *common, "--out", "one.ckpt"], folder)
    results = {"two": finish(two), "one": finish(one)}
    for name, res in results.items():
        (folder / f"{name}.json").write_text(res.stdout)
    return folder


# ---- the must-hold test --------------------------------------------------------------------------


def test_two_processes_keep_identical_replicas_and_match_one_process(lm_runs):
    ranks = digests(lm_runs / "digests")
    assert len(ranks) == 2
    assert [line.split()[0] for line in ranks[0]] == [
        str(s) for s in range(1, 7)
    ]  # one line per step
    assert ranks[0] == ranks[1]  # bitwise-identical replicas after every step
    assert len(set(ranks[0])) == 6  # (the weights did change at every step)

    assert_same_training(lm_runs / "two.last.ckpt", lm_runs / "one.last.ckpt")
    two = load_checkpoint(lm_runs / "two.last.ckpt")
    assert two.tensors["state.hidden.0"].shape == (
        1,
        8,
        32,
    )  # all 8 streams, gathered from both ranks
    assert {"rng.torch", "rng.rank1.torch"} <= set(two.tensors)  # each rank's random state

    # Rank 0 alone printed the result and wrote the log: each validation once.
    out = (lm_runs / "two.json").read_text().splitlines()
    assert (
        len(out) == 1
        and json.loads(out[0])["steps"] == 6
        and json.loads(out[0])["tokens"] == 6 * 8 * 32
    )
    log = [json.loads(line) for line in metrics_path(lm_runs / "two.ckpt").read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "eval"] == [3, 6]


def test_resume_with_a_different_number_of_processes(lm_runs):
    """1 -> 2 and 2 -> 1 processes continue exactly as 1 -> 1 does (the streams are re-split)."""
    folder = lm_runs
    more = ["--max-steps", 10, "--json"]
    procs = {
        "one_to_two": start(
            ["train", "--resume", "one.last.ckpt", "--out", "one_to_two.ckpt", *more],
            folder,
            nproc=2,
        ),
        "two_to_one": start(
            ["train", "--resume", "two.last.ckpt", "--out", "two_to_one.ckpt", *more], folder
        ),
        "one_to_one": start(
            ["train", "--resume", "one.last.ckpt", "--out", "one_to_one.ckpt", *more], folder
        ),
    }
    for proc in procs.values():
        finish(proc)
    for name in ("one_to_two", "two_to_one"):
        assert_same_training(folder / f"{name}.last.ckpt", folder / "one_to_one.last.ckpt")
    assert load_checkpoint(folder / "two_to_one.last.ckpt").meta["training"]["step"] == 10


def test_ctrl_c_to_torchrun_stops_every_rank_at_the_same_step(tmp_path):
    """torchrun passes SIGINT on to its workers; they agree on the step, save and exit."""
    args = ["train", CORPUS, *LM, "--max-steps", 100_000, "--eval-every", 2, "--out", "i.ckpt"]
    proc = start(args, tmp_path, nproc=2, TEXTRNN_WEIGHT_DIGESTS=str(tmp_path / "digests"))
    log = metrics_path(tmp_path / "i.ckpt")
    deadline = time.monotonic() + 90
    evals = '"event": "eval"'  # two validations: the ranks are well into training
    while not (log.exists() and log.read_text().count(evals) >= 2) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)  # no rank may hang in a collective
    ckpt = load_checkpoint(tmp_path / "i.last.ckpt")
    step = ckpt.meta["training"]["step"]
    assert ckpt.meta["training"]["stopped"] == "interrupted" and step >= 4
    ranks = digests(tmp_path / "digests")
    assert len(ranks) == 2 and ranks[0] == ranks[1]
    assert ranks[0][-1].split()[0] == str(step)  # both stopped after the checkpoint's step
    assert err.count(f"interrupted by SIGINT at step {step}; resume with") == 1  # rank 0 alone says so


RESUME_SCRIPT = """
import os, signal, sys
import torch
from textrnn.engine import distributed
from textrnn.engine.checkpoint import load_checkpoint
from textrnn.formats.plain import iter_text_chunks
from textrnn.tasks.lm import train
from textrnn.tokenizers import train_tokenizer
from textrnn.engine.config import TrainConfig

corpus, out, stop_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
_, device = distributed.join(torch.device("cpu"))  # the Python API under torchrun: join, then train
cfg = TrainConfig(batch_size=8, seq_len=32, max_steps=12, eval_every=5, log_every=1, precision="fp32", seed=3)
model = {"hidden": 32, "layers": 2, "embed": 16, "dropout": 0.3}  # dropout: the random state matters

def interrupt(p):  # called on rank 0 only; the other rank learns of it through the loop
    if p.event == "step" and p.step == stop_at:
        os.kill(os.getpid(), signal.SIGINT)

tok = train_tokenizer("char", iter_text_chunks(corpus))
ckpt = load_checkpoint(resume[0]) if resume else None
train(corpus, tokenizer=tok, out=out, model_overrides=None if ckpt else model, train_cfg=cfg, device=device,
      on_progress=interrupt if stop_at else None, resume=ckpt)
"""


def test_resume_on_the_same_number_of_processes_is_bitwise_exact(tmp_path):
    """2 processes with dropout: 12 steps straight == 5 steps, Ctrl-C on rank 0, resume to 12."""
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(script),
        str(CORPUS),
    ]

    def run(*args) -> None:
        res = subprocess.run(
            [*launch, *map(str, args)],
            cwd=tmp_path,
            env=env(tmp_path),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert res.returncode == 0, res.stderr[-4000:]

    run("a.ckpt", 0)
    run("b.ckpt", 5)
    first = load_checkpoint(tmp_path / "b.last.ckpt")
    assert (
        first.meta["training"]["stopped"] == "interrupted" and first.meta["training"]["step"] == 5
    )
    run("b.ckpt", 0, "b.last.ckpt")
    a, b = (
        load_checkpoint(tmp_path / "a.last.ckpt").tensors,
        load_checkpoint(tmp_path / "b.last.ckpt").tensors,
    )
    names = [k for k in a if k.startswith(("model.", "optim.", "state."))]
    assert names and sorted(names) == sorted(
        k for k in b if k.startswith(("model.", "optim.", "state."))
    )
    for name in names:
        assert torch.equal(a[name], b[name]), name


# ---- the tagger ----------------------------------------------------------------------------------

NOUNS, VERBS, DETS = ["cat", "dog", "bird", "Anna", "tree"], ["sees", "likes", "eats"], ["the", "a"]


def toy_sentences(n: int, seed: int) -> list[Sentence]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(1, 3)):
            words += [rng.choice(DETS), rng.choice(NOUNS), rng.choice(VERBS)]
            tags += ["DET", "NOUN", "VERB"]
        out.append(Sentence(words=words, tags=tags))
    return out


def write_tsv(path: Path, sentences: list[Sentence]) -> Path:
    lines = [
        "\n".join(f"{w}\t{t}" for w, t in zip(s.words, s.tags, strict=True)) for s in sentences
    ]
    path.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_tagger_on_two_processes_stops_early_together_after_a_batch_smaller_than_the_world(
    tmp_path,
):
    # 25 sentences in batches of 8: the 4th (last) global batch has one sentence, so rank 1
    # takes part in that step with a stand-in that weighs nothing. A learning rate too small
    # to change a tag makes dev accuracy flat: patience 1 stops both ranks at the 2nd validation.
    train = write_tsv(tmp_path / "train.tsv", toy_sentences(25, seed=1))
    dev = write_tsv(tmp_path / "dev.tsv", toy_sentences(8, seed=2))
    args = ["tag", "train", train, "--dev", dev, "--out", "t.ckpt", "--batch-size", 8,
            "--max-steps", 20, "--eval-every", 2, "--patience", 1, "--lr", 1e-9, "--hidden", 16,
            "--char-hidden", 8, "--word-dim", 8, "--char-dim", 8, "--layers", 1, "--precision", "fp32", "--json"]  # fmt: skip
    res = finish(start(args, tmp_path, nproc=2, TEXTRNN_WEIGHT_DIGESTS=str(tmp_path / "digests")))
    summary = json.loads(res.stdout)
    assert (summary["stopped"], summary["steps"], summary["best_step"]) == ("early_stopping", 4, 2)
    ranks = digests(tmp_path / "digests")
    assert len(ranks) == 2 and len(ranks[0]) == 4 and ranks[0] == ranks[1]
    assert summary["tokens"] == sum(
        len(s.words) for s in toy_sentences(25, seed=1)
    )  # one epoch, no stand-in
    tagger = tag.load(tmp_path / "t.ckpt")
    assert len(next(iter(tagger.predict([["the", "cat", "sees"]])))) == 3


def test_tagger_shares_add_up_to_the_single_process_loss_and_gradient():
    """Each share is divided by the global batch's tokens: the shares' gradients sum to the whole's."""
    sentences = toy_sentences(6, seed=3)
    vocab, counts = build_vocab(sentences)
    config = TaggerConfig(n_words=len(vocab.words), n_chars=len(vocab.chars), n_tags=len(vocab.tags),
                          word_dim=8, char_dim=8, char_hidden=8, hidden=16, layers=1, dropout=0.0)  # fmt: skip
    torch.manual_seed(0)
    task = TaggerTask(Tagger(config), vocab, sentences, [], TrainConfig(batch_size=6), counts=counts,
                      data_info={}, device=torch.device("cpu"))  # fmt: skip
    task.model.eval()  # no word dropout: the comparison is deterministic
    total = sum(len(s.words) for s in sentences)

    def grads(shards: list[Shard]) -> tuple[float, list[torch.Tensor]]:
        return _summed_grads(task, shards)

    def shard(part: list[Sentence], stand_in: bool = False) -> Shard:
        return Shard(
            task.encoder.batch([s.words for s in part], [s.tags for s in part]), total, stand_in
        )

    whole = grads([shard(sentences)])
    split = grads([shard(sentences[:4]), shard(sentences[4:]), shard(sentences[:1], stand_in=True)])
    assert split[0] == pytest.approx(whole[0], rel=1e-6)
    for a, b in zip(split[1], whole[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# ---- sharding by one rank's view (no processes) -----------------------------------------------------


def lm_task(cfg: TrainConfig) -> LMTask:
    tok = train_tokenizer("char", iter_text_chunks(CORPUS))
    encoded = encode_corpus(CORPUS, tok, corpus_sha256=fingerprint_file(CORPUS)["sha256"])
    torch.manual_seed(cfg.seed)
    model = LanguageModel(
        LMConfig(vocab_size=tok.vocab_size, hidden=16, layers=1, embed=8, dropout=0.0)
    )
    return LMTask(model, tok, encoded, cfg, corpus_info={}, device=torch.device("cpu"))


@pytest.fixture
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTRNN_CACHE", str(tmp_path / "cache"))


def test_lm_rank_reads_its_streams_and_takes_its_share_of_the_loss(monkeypatch, _cache):
    cfg = TrainConfig(batch_size=8, seq_len=16, precision="fp32")
    whole = lm_task(cfg)
    monkeypatch.setattr(distributed, "context", lambda: Dist(rank=1, world=2))
    part = lm_task(cfg)
    (xw, yw), (xp, yp) = next(whole.batches(1, 2)), next(part.batches(1, 2))
    assert torch.equal(xp, xw[4:]) and torch.equal(yp, yw[4:])  # streams 4..7 of the same window
    loss, tokens = part.loss((xp, yp))
    alone = torch.nn.functional.cross_entropy(
        part.model(xp)[0].reshape(-1, part.model.config.vocab_size), yp.reshape(-1)
    )
    assert tokens == 4 * 16 and loss.item() == pytest.approx(alone.item() / 2)
    # A checkpoint holds all 8 streams' state; this rank carries on with streams 4..7.
    state = {
        "hidden.0": torch.arange(8.0).view(1, 8, 1).expand(1, 8, 16).contiguous(),
        "hidden.1": torch.zeros(1, 8, 16),
    }
    part.load_state_tensors(state)
    assert part.hidden[0][0, :, 0].tolist() == [4.0, 5.0, 6.0, 7.0]


def test_lm_batch_that_does_not_divide_among_the_processes_is_refused(monkeypatch, _cache):
    monkeypatch.setattr(distributed, "context", lambda: Dist(rank=0, world=3))
    with pytest.raises(UsageError, match="--batch-size 8 is the batch of all 3 processes together"):
        lm_task(TrainConfig(batch_size=8, seq_len=16))


def test_placement_from_torchruns_environment():
    assert distributed.from_env({}) == Dist()
    assert distributed.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Dist(
        3, 4, 1
    )
    with pytest.raises(UsageError, match="must be integers"):
        distributed.from_env({"WORLD_SIZE": "two"})
    with pytest.raises(UsageError, match="rank 4 of 4"):
        distributed.from_env({"RANK": "4", "WORLD_SIZE": "4"})
    assert [Dist(r, 4).rows(8) for r in range(4)] == [
        slice(0, 2),
        slice(2, 4),
        slice(4, 6),
        slice(6, 8),
    ]


def test_a_single_process_joins_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    placement, device = distributed.join(torch.device("cpu"))
    assert placement == Dist() and device == torch.device("cpu")
    assert not torch.distributed.is_initialized()
    assert distributed.all_sum([1.5, 2.0]) == [1.5, 2.0] and distributed.broadcast_object(
        {"a": 1}
    ) == {"a": 1}


def test_a_collective_returns_once_the_process_group_has_let_go_of_its_tensors():
    """gloo's worker thread keeps a collective's tensors a moment after the call has returned;
    freeing them then, at exit, aborted the process (see distributed._leave)."""
    dist = torch.distributed
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        # A stand-in for the worker: an autograd graph holds the tensor for 0.1 s after the call.
        t, graph = torch.zeros(2), []

        def collective() -> None:
            graph.append(torch.zeros(2, requires_grad=True) * t)  # saves t for backward
            threading.Timer(0.1, graph.clear).start()

        start = time.monotonic()
        distributed._collective(collective, t)
        assert t._use_count() == 1 and time.monotonic() - start >= 0.1
        for _ in range(200):  # the real worker
            t, parts = torch.zeros(4), [torch.empty(4)]
            distributed._collective(lambda t=t, parts=parts: dist.all_gather(parts, t), t, *parts)
            assert t._use_count() == 1 and parts[0]._use_count() == 1
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_over_loopback_with_c10d_rendezvous(lm_runs, tmp_path):
    """The README's multi-node command, as two 1-process "nodes" on this machine: ranks
    come from the rendezvous (RANK 1 has LOCAL_RANK 0), and the result is the 2-process one."""
    endpoint = f"127.0.0.1:{free_port()}"
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
            "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=readme", "-m", "textrnn",
            "train", str(CORPUS), *LM, "--max-steps=6", "--eval-every=3", "--out", "nodes.ckpt"]  # fmt: skip
    procs = [subprocess.Popen(node, cwd=tmp_path, env=env(tmp_path), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    for proc in procs:
        finish(proc)
    assert_same_training(tmp_path / "nodes.last.ckpt", lm_runs / "two.last.ckpt")


# ---- transliteration -------------------------------------------------------------------------------


def translit_lexicon(shared_data, folder: Path) -> tuple[Path, Path]:
    """A small real Dakshina sample (`shared_data` skips, or fails in CI, without the data set)."""
    source = shared_data("dakshina_hi/hi.translit.sampled.train.tsv")
    lines = source.read_text(encoding="utf-8").splitlines()
    train, dev = folder / "train.tsv", folder / "dev.tsv"
    train.write_text("\n".join(lines[::200]) + "\n", encoding="utf-8")
    dev.write_text("\n".join(lines[7::400]) + "\n", encoding="utf-8")
    return train, dev


def test_translit_shares_add_up_to_the_single_process_loss_and_gradient(tmp_path, monkeypatch, shared_data):
    from textrnn.tasks import translit
    from textrnn.tasks.translit.batch import Batch
    from textrnn.tasks.translit.task import Share

    train, dev = translit_lexicon(shared_data, tmp_path)
    tasks = []  # the task a real (one-step) training run builds: its model, vocabularies, batches

    import textrnn.tasks.translit.training as tl

    class Keep(tl.TranslitTask):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            tasks.append(self)

    monkeypatch.setattr(tl, "TranslitTask", Keep)
    cfg = TrainConfig(batch_size=6, max_steps=1, precision="fp32", eval_every=1)
    shape = {"embed": 8, "hidden": 8, "dec_hidden": 16, "dropout": 0.0}
    translit.train(train, dev, out=tmp_path / "m.ckpt", model_overrides=shape, train_cfg=cfg)
    task = tasks[0]
    task.model.eval()
    whole = next(task.batches(0, 0))
    idx = list(range(whole.batch.src.shape[0]))

    def grads(shares: list[Share]) -> tuple[float, list[torch.Tensor]]:
        return _summed_grads(task, shares)

    def part(rows: list[int], stand_in: bool = False) -> Share:
        b = whole.batch
        sub = Batch(b.src[rows], b.lengths[rows], b.tgt_in[rows], b.tgt_out[rows], b.weights[rows])
        return Share(sub, whole.global_weight, stand_in)

    one = grads([whole])
    split = grads([part(idx[:4]), part(idx[4:]), part(idx[:1], stand_in=True)])
    assert split[0] == pytest.approx(one[0], rel=1e-5)
    for a, b in zip(split[1], one[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_translit_train_on_two_processes_matches_one(tmp_path, shared_data):
    """`torchrun ... -m textrnn translit train` trains the same model as one process."""
    train, dev = translit_lexicon(shared_data, tmp_path)
    common = ["translit", "train", train, "--dev", dev, "--embed", 8, "--hidden", 8,
              "--dec-hidden", 16, "--dropout", 0, "--precision", "fp32", "--batch-size", 8,
              "--max-steps", 4, "--eval-every", 2, "--json"]  # fmt: skip
    two = start([*common, "--out", "two.ckpt"], tmp_path, nproc=2)
    one = start([*common, "--out", "one.ckpt"], tmp_path)
    two_res, one_res = finish(two), finish(one)
    assert len(two_res.stdout.strip().splitlines()) == 1  # only rank 0 prints
    assert json.loads(two_res.stdout)["steps"] == json.loads(one_res.stdout)["steps"] == 4
    assert_same_training(tmp_path / "two.last.ckpt", tmp_path / "one.last.ckpt")


def _summed_grads(task, parts: list) -> tuple[float, list[torch.Tensor]]:
    """The summed loss of `parts` (each rank's share of one batch) and the gradients it leaves."""
    task.model.zero_grad()
    value = 0.0
    for part in parts:
        loss, _ = task.loss(part)
        loss.backward()
        value += loss.item()
    return value, [p.grad.clone() for p in task.model.parameters() if p.grad is not None]
