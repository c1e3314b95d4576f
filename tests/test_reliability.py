"""Bad input, crashes and hostile files never cost a user their work.

- The bad-input matrix: every command against missing, directory, empty, binary and
  non-UTF-8 files, corpora too small or of one symbol, broken, foreign, newer,
  mismatched and hostile checkpoints, and nonsense options. Each cell must end with one
  line on stderr naming the problem, exit 2 (usage) or 1 (runtime), no traceback.
  tests/test_cli_lm.py holds the first cells for train/sample/eval/info; this file
  adds the rest. The cells run through `textrnn.cli.main` in this process (fast).
- Crash safety: saves are sequential (a whole checkpoint always exists), SIGKILL at
  random moments (some in the middle of a save), SIGTERM, a full disk, and two
  trainings into the same output.
- Hostile files: pickles that would run code, metadata that would crash a loader.

Training processes here are forked from one helper process that has imported torch
and textrnn once (`ForkServer`): each child runs `textrnn.cli.main(ARGS)` exactly as
the `textrnn` console script does, without paying two seconds of imports per process.
One SIGTERM test runs a real `python -m textrnn` process as well.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import pickle
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from textrnn.cli import main
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint, read_meta, save_checkpoint
from textrnn.engine.config import TrainConfig
from textrnn.engine.outputs import last_path, lock_path, output_lock
from textrnn.errors import TextrnnError
from textrnn.formats.plain import iter_text_chunks
from textrnn.tasks.lm import train
from textrnn.tokenizers import save_tokenizer, train_tokenizer

REPO = Path(__file__).resolve().parent.parent
ENGLISH = REPO / "corpora" / "english.txt"
TINY = ["--hidden", "16", "--layers", "1", "--embed", "16", "--batch-size", "4", "--seq-len", "16"]
KILLS = 30  # SIGKILL trials in the default run; the slow run does SLOW_KILLS
SLOW_KILLS = 200


# ---- running the CLI ---------------------------------------------------------------------------


def cli(args: list[str] | str, *, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """`textrnn ARGS` through `textrnn.cli.main` in this process; stdout/stderr captured."""
    args = shlex.split(args) if isinstance(args, str) else [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(args)
                code = 0
            except SystemExit as exit_:  # anything else escaping main is a bug
                code = exit_.code
    finally:
        sys.stdin = saved_stdin
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def assert_one_line_error(res: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("textrnn: error: "), res.stderr
    assert res.returncode == code, res.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


# ---- files that the matrix uses -----------------------------------------------------------------


def altered(src: Path, dst: Path, *, meta=None, tensors=None, document=None) -> Path:
    """A copy of checkpoint `src` with meta/tensors changed by the given functions."""
    ckpt = load_checkpoint(src)
    m = {k: v for k, v in ckpt.meta.items() if k != "header"}
    t = dict(ckpt.tensors)
    if meta:
        m = meta(m) or m
    if tensors:
        tensors(t)
    if document is None:
        save_checkpoint(dst, Checkpoint(task=ckpt.task, meta=m, tensors=t))
    else:  # a raw document, to fake a format this textrnn does not write
        doc = {"format": "textrnn-checkpoint", "task": ckpt.task, "meta": m, **document}
        body = {k: v.contiguous() for k, v in t.items()}
        dst.write_bytes(safetensors_bytes(body, metadata={"textrnn": json.dumps(doc)}))
    return dst


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a tiny trained model (m.ckpt, m.last.ckpt), its tokenizer and bad inputs."""
    folder = tmp_path_factory.mktemp("reliability")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEXTRNN_CACHE", str(folder / "cache"))
        corpus = folder / "corpus.txt"
        shutil.copy(ENGLISH, corpus)
        tok = train_tokenizer("char", iter_text_chunks(corpus))
        save_tokenizer(tok, folder / "tok.json")
        train(
            corpus,
            tokenizer=tok,
            out=folder / "m.ckpt",
            model_overrides={"hidden": 16, "layers": 1, "embed": 16},
            train_cfg=TrainConfig(batch_size=4, seq_len=16, max_steps=3, eval_every=3),
            fit_small_corpus=False,
        )
    best, last = folder / "m.ckpt", folder / "m.last.ckpt"

    (folder / "adir").mkdir()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.bin").write_bytes(b"\x7fELF\x00\x01" + bytes(range(256)))
    (folder / "latin1.txt").write_bytes("first line\nsecond: caf\u00e9\n".encode("latin-1"))
    (folder / "one.txt").write_text("a" * 3000, encoding="utf-8")  # one distinct symbol
    (folder / "short.txt").write_text("a", encoding="utf-8")  # one token: nothing to score
    (folder / "tiny.txt").write_text("To be.\n", encoding="utf-8")
    (folder / "ids_bad.txt").write_text("1 x 3\n", encoding="utf-8")
    (folder / "ids_range.txt").write_text("99999\n", encoding="utf-8")
    (folder / "tok_bad.json").write_text('{"format": 1, "kind": "char"}', encoding="utf-8")
    (folder / "tok_kind.json").write_text('{"format": 1, "kind": "morse"}', encoding="utf-8")
    (folder / "tok_notjson.json").write_text("{{{", encoding="utf-8")
    (folder / "tiny.conllu").write_text(
        "1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tdog\tdog\tNOUN\tNN\t_\t0\troot\t_\t_\n\n",
        encoding="utf-8",
    )

    data = best.read_bytes()
    (folder / "trunc.ckpt").write_bytes(data[: len(data) // 2])
    (folder / "random.ckpt").write_bytes(random.Random(0).randbytes(4096))
    (folder / "pickle.ckpt").write_bytes(pickle.dumps({"model": [1.0, 2.0]}))
    save_checkpoint(
        folder / "tagger.ckpt",
        Checkpoint(task="tagger", meta={}, tensors={"model.w": torch.zeros(3)}),
    )
    altered(best, folder / "newer.ckpt", document={"format_version": 99})
    altered(last, folder / "newer.last.ckpt", document={"format_version": 99})

    def wider(m):
        m["model_config"]["hidden"] *= 2

    altered(best, folder / "shape.ckpt", meta=wider)
    altered(last, folder / "shape.last.ckpt", meta=wider)
    for name, (meta, tensors, _) in HOSTILE.items():
        altered(last, folder / hostile_file(name), meta=meta, tensors=tensors)
    return folder


# ---- the bad-input matrix -------------------------------------------------------------------------

T = " ".join(TINY) + " --max-steps 1"  # a cell that wrongly trained would still end at once
SAMPLE = "sample --length 5 -c"

# (command, args, exit code, words the error line must contain). Files are in `work`.
# fmt: off
MATRIX: list[tuple[str, str, int, tuple[str, ...]]] = [
    # train: inputs (missing/dir/empty/binary/UTF-8/too small are in test_cli_lm.py)
    ("train", f"train one.txt {T}", 1, ("one.txt", "one token", "'a'")),
    ("train", "train 'new\nline.txt'", 1, ("new\\nline.txt", "no such file")),  # still one line
    ("train", f"train corpus.txt {T} --tokenizer-file missing.json", 1, ("missing.json",)),
    ("train", f"train corpus.txt {T} --tokenizer-file adir", 1, ("adir", "directory")),
    ("train", f"train corpus.txt {T} --tokenizer-file tok_bad.json", 1, ("tok_bad.json", "vocab")),
    ("train", f"train corpus.txt {T} --tokenizer-model corpus.txt", 1, ("sentencepiece",)),
    ("train", f"train corpus.txt {T} --tokenizer-model adir", 1, ("adir",)),
    # train: checkpoints to resume from
    ("train", "train --resume missing.ckpt", 1, ("missing.ckpt", "no such")),
    ("train", "train --resume adir", 1, ("adir", "directory")),
    ("train", "train --resume empty.txt", 1, ("empty.txt", "empty")),
    ("train", "train --resume trunc.ckpt", 1, ("trunc.ckpt", "truncated")),
    ("train", "train --resume random.ckpt", 1, ("random.ckpt", "not a textrnn checkpoint")),
    ("train", "train --resume pickle.ckpt", 1, ("pickle.ckpt", "pickle")),
    ("train", "train --resume tagger.ckpt", 1, ("tagger",)),
    ("train", "train --resume newer.last.ckpt", 1, ("newer", "format version 99", "upgrade")),
    ("train", "train --resume shape.last.ckpt --out r.ckpt", 1, ("shape", "model config")),
    ("train", "train --resume m.last.ckpt --batch-size 2", 2, ("--batch-size", "cannot change")),
    ("train", "train --resume m.last.ckpt --seq-len 8", 2, ("--seq-len", "cannot change")),
    # train: nonsense options
    ("train", f"train corpus.txt {T} --hidden -3", 2, ("--hidden", "-3")),
    ("train", f"train corpus.txt {T} --layers 0", 2, ("--layers",)),
    ("train", f"train corpus.txt {T} --embed 0", 2, ("--embed",)),
    ("train", f"train corpus.txt {T} --batch-size -1", 2, ("--batch-size", "-1")),
    ("train", f"train corpus.txt {T} --dropout 1.5", 2, ("--dropout",)),
    ("train", f"train corpus.txt {T} --lr -1", 2, ("--lr",)),
    ("train", f"train corpus.txt {T} --lr nan", 2, ("--lr", "nan")),
    ("train", f"train corpus.txt {T} --epochs 0", 2, ("--epochs",)),
    ("train", f"train corpus.txt {T} --max-steps -1", 2, ("--max-steps",)),
    ("train", f"train corpus.txt {T} --eval-every -1", 2, ("--eval-every",)),
    ("train", f"train corpus.txt {T} --patience -1", 2, ("--patience",)),
    ("train", f"train corpus.txt {T} --clip nan", 2, ("--clip", "nan")),
    ("train", f"train corpus.txt {T} --weight-decay inf", 2, ("--weight-decay", "inf")),
    ("train", f"train corpus.txt {T} --time-budget -5", 2, ("--time-budget",)),
    ("train", f"train corpus.txt {T} --val-fraction 1", 2, ("--val-fraction",)),
    ("train", f"train corpus.txt {T} --vocab-size 1", 2, ("vocabulary size",)),
    ("train", f"train corpus.txt {T} --min-count 0", 2, ("min count",)),
    ("train", f"train corpus.txt {T} --unit syllable", 2, ("unit", "syllable")),
    ("train", f"train corpus.txt {T} --normalize nfd", 2, ("nfd",)),
    ("train", f"train corpus.txt {T} --tokenizer morse", 2, ("--tokenizer", "morse")),
    # sample
    ("sample", f"{SAMPLE} adir", 1, ("adir", "directory")),
    ("sample", f"{SAMPLE} empty.txt", 1, ("empty.txt", "empty")),
    ("sample", f"{SAMPLE} binary.bin", 1, ("binary.bin", "not a textrnn checkpoint")),
    ("sample", f"{SAMPLE} trunc.ckpt", 1, ("trunc.ckpt", "truncated")),
    ("sample", f"{SAMPLE} newer.ckpt", 1, ("newer.ckpt", "newer textrnn")),
    ("sample", f"{SAMPLE} shape.ckpt", 1, ("shape", "model config")),
    ("sample", f"{SAMPLE} m.ckpt --top-p 0", 2, ("--top-p",)),
    ("sample", f"{SAMPLE} m.ckpt --top-p -0.5", 2, ("--top-p",)),
    ("sample", f"{SAMPLE} m.ckpt --top-k -1", 2, ("--top-k",)),
    ("sample", f"{SAMPLE} m.ckpt --temperature nan", 2, ("--temperature",)),
    ("sample", f"{SAMPLE} m.ckpt --repetition-penalty 0", 2, ("--repetition-penalty",)),
    ("sample", f"{SAMPLE} m.ckpt --num-samples 0", 2, ("--num-samples",)),
    ("sample", f"{SAMPLE} m.ckpt --beam -2", 2, ("--beam",)),
    ("sample", f"{SAMPLE} m.ckpt --beam 2 --nbest 5", 2, ("--nbest",)),
    ("sample", f"{SAMPLE} m.ckpt --length -5", 2, ("--length",)),
    ("sample", f"{SAMPLE} m.ckpt --device tpu", 2, ("--device", "tpu")),
    # eval
    ("eval", "eval missing.txt -c m.ckpt", 1, ("missing.txt", "no such file")),
    ("eval", "eval adir -c m.ckpt", 1, ("adir", "directory")),
    ("eval", "eval empty.txt -c m.ckpt", 1, ("empty.txt", "empty")),
    ("eval", "eval binary.bin -c m.ckpt", 1, ("binary.bin", "binary")),
    ("eval", "eval short.txt -c m.ckpt", 1, ("short.txt", "too short")),
    ("eval", "eval corpus.txt -c missing.ckpt", 1, ("missing.ckpt",)),
    ("eval", "eval corpus.txt -c adir", 1, ("adir", "directory")),
    ("eval", "eval corpus.txt -c trunc.ckpt", 1, ("trunc.ckpt", "truncated")),
    ("eval", "eval corpus.txt -c random.ckpt", 1, ("random.ckpt", "not a textrnn checkpoint")),
    ("eval", "eval corpus.txt -c pickle.ckpt", 1, ("pickle",)),
    ("eval", "eval corpus.txt -c newer.ckpt", 1, ("newer textrnn",)),
    ("eval", "eval corpus.txt -c shape.ckpt", 1, ("shape", "model config")),
    ("eval", "eval corpus.txt -c m.ckpt --device tpu", 2, ("--device",)),
    # info
    ("info", "info missing.ckpt", 1, ("missing.ckpt", "no such")),
    ("info", "info adir", 1, ("adir", "directory")),
    ("info", "info empty.txt", 1, ("empty.txt", "empty")),
    ("info", "info binary.bin", 1, ("binary.bin", "not a textrnn checkpoint")),
    ("info", "info latin1.txt", 1, ("latin1.txt", "not a textrnn checkpoint")),
    ("info", "info trunc.ckpt", 1, ("trunc.ckpt", "truncated")),
    ("info", "info pickle.ckpt", 1, ("pickle.ckpt", "pickle")),
    ("info", "info newer.ckpt", 1, ("newer.ckpt", "format version 99")),
    ("info", "info shape.ckpt", 1, ("shape", "model config")),
    ("info", "info", 2, ("checkpoint",)),
    # tokenize train
    ("tokenize train", "tokenize train missing.txt -o t.json", 1, ("missing.txt", "no such file")),
    ("tokenize train", "tokenize train adir -o t.json", 1, ("adir", "directory")),
    ("tokenize train", "tokenize train empty.txt -o t.json", 1, ("empty.txt", "empty")),
    ("tokenize train", "tokenize train binary.bin -o t.json", 1, ("binary.bin", "binary")),
    ("tokenize train", "tokenize train latin1.txt -o t.json", 1, ("latin1.txt", "byte 22", "line 2")),
    ("tokenize train", "tokenize train corpus.txt -o adir", 1, ("adir", "cannot write")),
    ("tokenize train", "tokenize train corpus.txt -o tiny.txt/t.json", 1, ("tiny.txt/t.json", "cannot write")),
    ("tokenize train", "tokenize train --tokenizer-model corpus.txt -o t.json", 1, ("sentencepiece",)),
    ("tokenize train", "tokenize train corpus.txt", 2, ("--out",)),
    ("tokenize train", "tokenize train corpus.txt --tokenizer-model x.model -o t.json", 2, ("not both",)),
    ("tokenize train", "tokenize train corpus.txt -o t.json --vocab-size -1", 2, ("vocabulary size",)),
    ("tokenize train", "tokenize train corpus.txt -o t.json --kind morse", 2, ("morse",)),
    ("tokenize train", "tokenize train corpus.txt -o t.json --min-count 0", 2, ("min count",)),
    ("tokenize train", "tokenize train corpus.txt -o t.json --kind bpe --character-coverage 0", 2, ("coverage",)),
    # tokenize encode
    ("tokenize encode", "tokenize encode -t tok.json missing.txt", 1, ("missing.txt", "no such file")),
    ("tokenize encode", "tokenize encode -t tok.json adir", 1, ("adir", "directory")),
    ("tokenize encode", "tokenize encode -t tok.json empty.txt", 1, ("empty.txt", "empty")),
    ("tokenize encode", "tokenize encode -t tok.json binary.bin", 1, ("binary.bin", "binary")),
    ("tokenize encode", "tokenize encode -t tok.json latin1.txt", 1, ("latin1.txt", "byte 22", "line 2")),
    ("tokenize encode", "tokenize encode -t missing.json tiny.txt", 1, ("missing.json",)),
    ("tokenize encode", "tokenize encode -t adir tiny.txt", 1, ("adir", "directory")),
    ("tokenize encode", "tokenize encode -t empty.txt tiny.txt", 1, ("empty.txt", "not a textrnn tokenizer")),
    ("tokenize encode", "tokenize encode -t binary.bin tiny.txt", 1, ("binary.bin", "not a textrnn tokenizer")),
    ("tokenize encode", "tokenize encode -t tok_notjson.json tiny.txt", 1, ("tok_notjson.json",)),
    ("tokenize encode", "tokenize encode -t tok_bad.json tiny.txt", 1, ("tok_bad.json", "vocab")),
    ("tokenize encode", "tokenize encode -t tok_kind.json tiny.txt", 1, ("morse",)),
    ("tokenize encode", "tokenize encode -c trunc.ckpt tiny.txt", 1, ("trunc.ckpt", "truncated")),
    ("tokenize encode", "tokenize encode -c random.ckpt tiny.txt", 1, ("random.ckpt",)),
    ("tokenize encode", "tokenize encode -c pickle.ckpt tiny.txt", 1, ("pickle",)),
    ("tokenize encode", "tokenize encode -c newer.ckpt tiny.txt", 1, ("newer textrnn",)),
    ("tokenize encode", "tokenize encode -c tagger.ckpt tiny.txt", 1, ("tagger.ckpt", "tokenizer")),
    ("tokenize encode", "tokenize encode tiny.txt", 2, ("--tokenizer", "--checkpoint")),
    ("tokenize encode", "tokenize encode -t tok.json -c m.ckpt tiny.txt", 2, ("exactly one",)),
    # tokenize decode
    ("tokenize decode", "tokenize decode --ids -t tok.json ids_bad.txt", 1, ("ids_bad.txt:1", "token ids")),
    ("tokenize decode", "tokenize decode --ids -t tok.json ids_range.txt", 1, ("ids_range.txt:1", "99999")),
    ("tokenize decode", "tokenize decode -t tok.json missing.txt", 1, ("missing.txt",)),
    ("tokenize decode", "tokenize decode -t tok.json binary.bin", 1, ("binary.bin", "binary")),
    ("tokenize decode", "tokenize decode -t tok.json latin1.txt", 1, ("latin1.txt", "UTF-8")),
    ("tokenize decode", "tokenize decode -c pickle.ckpt tiny.txt", 1, ("pickle",)),
    ("tokenize decode", "tokenize decode -c newer.ckpt tiny.txt", 1, ("newer textrnn",)),
    ("tokenize decode", "tokenize decode -t tok_bad.json tiny.txt", 1, ("tok_bad.json",)),
    # tokenize stats
    ("tokenize stats", "tokenize stats missing.txt", 1, ("missing.txt", "no such file")),
    ("tokenize stats", "tokenize stats adir", 1, ("adir", "directory")),
    ("tokenize stats", "tokenize stats empty.txt", 1, ("empty.txt", "empty")),
    ("tokenize stats", "tokenize stats binary.bin", 1, ("binary.bin", "binary")),
    ("tokenize stats", "tokenize stats latin1.txt", 1, ("latin1.txt", "byte 22")),
    ("tokenize stats", "tokenize stats corpus.txt -c random.ckpt", 1, ("random.ckpt",)),
    ("tokenize stats", "tokenize stats corpus.txt -c trunc.ckpt", 1, ("truncated",)),
    ("tokenize stats", "tokenize stats corpus.txt -c newer.ckpt", 1, ("newer textrnn",)),
    ("tokenize stats", "tokenize stats corpus.txt -t tok_bad.json", 1, ("tok_bad.json",)),
    ("tokenize stats", "tokenize stats corpus.txt --top -1", 2, ("--top",)),
    ("tokenize stats", "tokenize stats corpus.txt --vocab-size 0", 2, ("vocabulary size",)),
    ("tokenize stats", "tokenize stats corpus.txt --kind morse", 2, ("morse",)),
    ("tokenize stats", "tokenize stats corpus.txt --kind char -t tok.json", 2, ("--kind",)),
    # tag (the tagger's commands; skipped where this textrnn has none)
    ("tag", "tag train missing.conllu", 1, ("missing.conllu", "no such file")),
    ("tag", "tag train adir", 1, ("adir", "directory")),
    ("tag", "tag train empty.txt", 1, ("empty.txt", "empty")),
    ("tag", "tag train binary.bin", 1, ("binary.bin", "binary")),
    ("tag", "tag train latin1.txt", 1, ("latin1.txt", "UTF-8")),
    ("tag", "tag train --resume m.last.ckpt", 1, ("m.last.ckpt", "tagger")),
    ("tag", "tag train tiny.conllu --dev tiny.conllu --batch-size 0", 2, ("--batch-size",)),
    ("tag", "tag train tiny.conllu --dev tiny.conllu --precision fp8", 2, ("--precision",)),
    ("tag", "tag train tiny.conllu --dev tiny.conllu --device tpu", 2, ("--device",)),
    ("tag", "tag eval tiny.conllu -c m.ckpt", 1, ("m.ckpt", "tagger")),
    ("tag", "tag eval tiny.conllu -c pickle.ckpt", 1, ("pickle",)),
    ("tag", "tag eval tiny.conllu -c newer.ckpt", 1, ("newer textrnn",)),
    ("tag", "tag eval tiny.conllu -c trunc.ckpt", 1, ("truncated",)),
    ("tag", "tag eval tiny.conllu -c random.ckpt", 1, ("random.ckpt",)),
    ("tag", "tag predict tiny.txt -c m.ckpt", 1, ("m.ckpt", "tagger")),
    ("tag", "tag split missing.conllu --out-dir sp", 1, ("missing.conllu",)),
    ("tag", "tag split adir --out-dir sp", 1, ("adir", "directory")),
    ("tag", "tag split latin1.txt --out-dir sp", 1, ("latin1.txt", "UTF-8")),
    # translit (transliteration; skipped where this textrnn has none)
    ("translit", "translit train missing.tsv", 1, ("missing.tsv", "no such file")),
    ("translit", "translit train adir", 1, ("adir", "directory")),
    ("translit", "translit train empty.txt", 1, ("empty.txt", "empty")),
    ("translit", "translit train binary.bin", 1, ("binary.bin", "binary")),
    ("translit", "translit train latin1.txt", 1, ("latin1.txt", "UTF-8")),
    ("translit", "translit train tiny.txt", 1, ("tiny.txt:1:", "columns")),
    ("translit", "translit train --resume m.last.ckpt", 1, ("m.last.ckpt", "transliteration")),
    ("translit", "translit train tiny.txt --teacher-forcing 2", 2, ("--teacher-forcing",)),
    ("translit", "translit eval tiny.txt -c m.ckpt", 1, ("m.ckpt", "transliteration")),
    ("translit", "translit eval tiny.txt -c pickle.ckpt", 1, ("pickle",)),
    ("translit", "translit eval tiny.txt -c trunc.ckpt", 1, ("truncated",)),
    ("translit", "translit predict tiny.txt -c tagger.ckpt", 1, ("tagger.ckpt", "transliteration")),
    ("translit", "translit predict tiny.txt -c m.ckpt --beam 0", 2, ("--beam",)),
    # classify (sentence classification; skipped where this textrnn has none)
    ("classify", "classify train missing.tsv", 1, ("missing.tsv", "no such file")),
    ("classify", "classify train adir", 1, ("adir", "directory")),
    ("classify", "classify train empty.txt", 1, ("empty.txt", "empty")),
    ("classify", "classify train binary.bin", 1, ("binary.bin", "binary")),
    ("classify", "classify train latin1.txt", 1, ("latin1.txt", "UTF-8")),
    ("classify", "classify train tiny.txt", 1, ("tiny.txt", "--format")),
    ("classify", "classify train tiny.txt --format tsv", 1, ("tiny.txt", "--label-column")),
    ("classify", "classify train --resume m.last.ckpt", 1, ("m.last.ckpt", "sentence classifier")),
    ("classify", "classify train tiny.txt --word-dropout 1", 2, ("--word-dropout",)),
    ("classify", "classify eval tiny.txt -c m.ckpt", 1, ("m.ckpt", "sentence classifier")),
    ("classify", "classify eval tiny.txt -c pickle.ckpt", 1, ("pickle",)),
    ("classify", "classify eval tiny.txt -c trunc.ckpt", 1, ("truncated",)),
    ("classify", "classify predict tiny.txt -c tagger.ckpt", 1, ("tagger.ckpt", "sentence classifier")),
    ("classify", "classify predict tiny.txt -c m.ckpt --top -1", 2, ("--top",)),
]

# Cells whose input comes on stdin: (command, args, stdin, exit code, words).
STDIN_MATRIX: list[tuple[str, str, bytes, int, tuple[str, ...]]] = [
    ("sample", f"{SAMPLE} m.ckpt", b"caf\xe9", 1, ("stdin", "UTF-8", "byte 3")),
    ("eval", "eval -c m.ckpt", b"ab\ncaf\xe9\n", 1, ("stdin", "UTF-8", "byte 6")),
    ("eval", "eval -c m.ckpt", b"", 1, ("stdin", "empty")),
    ("tokenize encode", "tokenize encode -t tok.json", b"ok\ncaf\xe9\n", 1, ("<stdin>:2", "UTF-8")),
    ("tokenize decode", "tokenize decode --ids -t tok.json", b"1 2 z\n", 1, ("<stdin>:1", "token ids")),
]
# fmt: on


def set_in(*path, value=None, delete=False):
    """A meta change for HOSTILE: set (or delete) the value at `path` in the meta."""

    def change(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return change


def set_tensor(name, make):
    """A tensor change for HOSTILE: replace tensor `name` with `make(old tensor)`."""

    def change(t):
        t[name] = make(t.get(name))

    return change


def drop_optimizer_tensors(t):
    for name in [k for k in t if k.startswith("optim.")]:
        del t[name]


NAN = float("nan")
ALL = ("info", "sample", "resume")
# Last checkpoints whose metadata or tensors would crash a careless loader:
# {name: (meta change, tensor change, commands that must refuse it)}.
# fmt: off
HOSTILE = {
    "no model config": (set_in("model_config", delete=True), None, ALL),
    "model config not a dict": (set_in("model_config", value="lstm"), None, ALL),
    "unknown config key": (set_in("model_config", "bogus", value=1), None, ALL),
    "negative hidden": (set_in("model_config", "hidden", value=-1), None, ALL),
    "hidden as text": (set_in("model_config", "hidden", value="16"), None, ALL),
    "huge model": (set_in("model_config", "hidden", value=10**9), None, ALL),
    "no tokenizer": (set_in("tokenizers", "text", delete=True), None, ("sample", "resume")),
    "tokenizer not a dict": (set_in("tokenizers", "text", value=[1, 2]), None, ("sample", "resume")),
    "tokenizers not a dict": (set_in("tokenizers", value=[1, 2]), None, ("sample", "resume")),
    "NaN weights": (None, set_tensor("model.head.weight", lambda w: torch.full_like(w, NAN)), ("sample", "resume")),
    "no train config": (set_in("train_config", delete=True), None, ("resume",)),
    "train config not a dict": (set_in("train_config", value="fast"), None, ("resume",)),
    "training not a dict": (set_in("training", value=7), None, ("resume",)),
    "step as text": (set_in("training", "step", value="3"), None, ("resume",)),
    "negative step": (set_in("training", "step", value=-4), None, ("resume",)),
    "lr scale NaN": (set_in("training", "lr_scale", value=NAN), None, ("resume",)),
    "history not a list": (set_in("history", value="long"), None, ("resume",)),
    "data not a dict": (set_in("data", value=7), None, ("resume",)),
    "train file not a dict": (set_in("data", "train", value=["corpus.txt"]), None, ("resume",)),
    "optimizer garbage": (set_in("optimizer", value={"state": 5}), None, ("resume",)),
    "optimizer tensors gone": (None, drop_optimizer_tensors, ("resume",)),
    "moment of wrong shape": (None, set_tensor("optim.state.0.exp_avg", lambda t: torch.zeros(3)), ("resume",)),
    "rng state cut": (None, set_tensor("rng.torch", lambda t: t[:10]), ("resume",)),
    "carried state of wrong shape": (None, set_tensor("state.hidden.0", lambda t: torch.zeros(7, 7)), ("resume",)),
}
# fmt: on
HOSTILE_COMMANDS = {
    "info": "info {f}",
    "sample": "sample --length 5 -c {f}",
    "resume": "train corpus.txt --resume {f} --out resumed.ckpt --max-steps 5",
}
HOSTILE_CELLS = [(name, cmd) for name, (_, _, cmds) in HOSTILE.items() for cmd in cmds]


def hostile_file(name: str) -> str:
    return "hostile-" + name.replace(" ", "-") + ".ckpt"


def _matrix_id(cell) -> str:
    return cell[1] if len(cell[1]) < 70 else cell[1][:67] + "..."


@pytest.mark.parametrize("cell", MATRIX, ids=_matrix_id)
def test_bad_input_matrix(work, monkeypatch, cell):
    _, args, code, needles = cell  # every command of the matrix must exist: no skip
    monkeypatch.chdir(work)
    monkeypatch.setenv("TEXTRNN_CACHE", str(work / "cache"))
    assert_one_line_error(cli(args), code, *needles)


@pytest.mark.parametrize("cell", STDIN_MATRIX, ids=lambda c: f"{c[1]} <{c[2][:12]!r}")
def test_bad_input_on_stdin(work, monkeypatch, cell):
    _, args, stdin, code, needles = cell
    monkeypatch.chdir(work)
    assert_one_line_error(cli(args, stdin=stdin), code, *needles)


@pytest.mark.parametrize("name, command", HOSTILE_CELLS, ids=lambda x: x)
def test_hostile_checkpoint_metadata(work, monkeypatch, name, command):
    monkeypatch.chdir(work)
    monkeypatch.setenv("TEXTRNN_CACHE", str(work / "cache"))
    f = hostile_file(name)
    res = cli(HOSTILE_COMMANDS[command].format(f=f))
    assert_one_line_error(res, 1, f if command != "resume" else "")
    assert not (work / "resumed.ckpt").exists()


def test_one_symbol_corpus_is_fine_where_nothing_is_learned(work, monkeypatch, tmp_path):
    """The one-symbol corpus is refused by `train` only: a tokenizer or statistics of it make sense."""
    monkeypatch.chdir(work)
    assert cli(f"tokenize train one.txt -o {tmp_path / 'one.json'}").returncode == 0
    assert cli("tokenize stats one.txt --json").returncode == 0
    assert cli("eval one.txt -c m.ckpt --json").returncode == 0


def existing_cells() -> int:
    """The bad-input cells that tests/test_cli_lm.py holds (its ERRORS table)."""
    spec = importlib.util.spec_from_file_location(
        "_cli_lm_cells", Path(__file__).with_name("test_cli_lm.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return len(module.ERRORS)


# The figures the README cites; update them with the tables.
MATRIX_CELLS = 221  # this file: MATRIX + STDIN_MATRIX + HOSTILE_CELLS
CLI_LM_CELLS = 32  # tests/test_cli_lm.py


def test_the_matrix_covers_every_command_and_its_size_is_what_the_readme_says():
    commands = {c for c, *_ in MATRIX} | {c for c, *_ in STDIN_MATRIX}
    expected = {
        "train",
        "sample",
        "eval",
        "info",
        "tokenize train",
        "tokenize encode",
        "tokenize decode",
        "tokenize stats",
        "tag",
        "translit",
        "classify",
    }
    assert expected <= commands
    for command in expected - {"tag", "translit", "classify"}:
        codes = {code for c, _, code, _ in MATRIX if c == command}
        assert codes <= {1, 2}
        files = [
            args
            for c, args, *_ in MATRIX
            if c == command and (".ckpt" in args or ".txt" in args or "adir" in args)
        ]
        assert files, f"no bad-file cell for {command}"
    total = len(MATRIX) + len(STDIN_MATRIX) + len(HOSTILE_CELLS)
    assert total == MATRIX_CELLS, (
        f"the matrix has {total} cells; update MATRIX_CELLS and the README"
    )
    assert existing_cells() == CLI_LM_CELLS, "test_cli_lm.py's ERRORS changed; update the README"
    print(f"bad-input matrix: {total} cells here + {CLI_LM_CELLS} in test_cli_lm.py")


# ---- hostile files: pickles never run ------------------------------------------------------------


class _Payload:
    """Unpickling this creates the marker file: proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("form", ["pickle", "torch.save"])
def test_pickle_payload_is_refused_by_the_cli_without_running(tmp_path, monkeypatch, form):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    if form == "pickle":
        path.write_bytes(pickle.dumps({"model": _Payload(marker)}))
    else:
        torch.save({"model": _Payload(marker)}, path)
    assert not marker.exists()
    monkeypatch.chdir(tmp_path)
    for args in (
        "info evil.ckpt",
        "sample -c evil.ckpt --length 5",
        "eval evil.ckpt -c evil.ckpt",
        "tokenize encode -c evil.ckpt evil.ckpt",
        "train --resume evil.ckpt",
    ):
        assert_one_line_error(cli(args), 1, "evil.ckpt", "pickle")
    assert not marker.exists()


# ---- crash safety: sequential saves ---------------------------------------------------------------


def test_best_and_last_are_never_in_flux_together(tmp_path, monkeypatch):
    """Saves happen one at a time, and while one is written the other file is whole."""
    import textrnn.engine.checkpointing

    monkeypatch.setenv("TEXTRNN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "m.ckpt"
    writing: list[Path] = []
    saves = []
    real_save = textrnn.engine.checkpointing.save_checkpoint

    def watched_save(path, ckpt):
        assert not writing, f"{path} saved while {writing[0]} is being saved"
        for other in (out, last_path(out)):
            if other != Path(path) and other.exists():
                load_checkpoint(other)  # whole while `path` is in flux
        writing.append(Path(path))
        try:
            real_save(path, ckpt)
        finally:
            writing.pop()
        load_checkpoint(path)
        saves.append(Path(path).name)

    monkeypatch.setattr(textrnn.engine.checkpointing, "save_checkpoint", watched_save)
    corpus = tmp_path / "corpus.txt"
    shutil.copy(ENGLISH, corpus)
    tok = train_tokenizer("char", iter_text_chunks(corpus))
    cfg = TrainConfig(batch_size=4, seq_len=16, max_steps=6, eval_every=1)
    train(corpus, tokenizer=tok, out=out, model_overrides={"hidden": 16, "layers": 1}, train_cfg=cfg)
    assert saves.count("m.last.ckpt") >= 6 and "m.ckpt" in saves


# ---- processes forked from one that has imported textrnn --------------------------------------------

FORKSERVER = r"""
import json, os, resource, signal, sys, time, traceback
import torch
import torch._dynamo  # what torch.optim imports on first use: seconds that each child would pay
torch.set_num_threads(1)
from textrnn.cli import main

def child(req):
    os.chdir(req["cwd"])
    os.environ.update(req["env"])
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    sys.stdin = open(os.devnull)
    sys.dont_write_bytecode = True  # a size limit must never leave truncated .pyc files behind
    if req["fsize"]:  # a "disk" that takes no file larger than this: writes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize"], req["fsize"]))
    code = 1
    try:
        main(req["args"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)

print(json.dumps({"ready": os.getpid()}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "run":
        pid = os.fork()
        if pid == 0:
            child(req)
        print(json.dumps({"pid": pid}), flush=True)
    else:  # wait
        deadline = time.monotonic() + req["timeout"]
        while True:
            done, status = os.waitpid(req["pid"], os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(req["pid"], signal.SIGKILL)
            time.sleep(0.002)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)
"""


@dataclass
class Child:
    pid: int
    args: list[str]
    stdout: Path
    stderr: Path


class ForkServer:
    """Starts `textrnn ARGS` processes by forking a process that has imported textrnn."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORKSERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        self._read()  # ready: imports done

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        return json.loads(line)

    def _ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def start(
        self, args: list[str], cwd: Path, *, fsize: int = 0, cache: Path | None = None
    ) -> Child:
        self.count += 1
        out, err = self.folder / f"{self.count}.out", self.folder / f"{self.count}.err"
        env = {"TEXTRNN_CACHE": str(cache or cwd / "cache"), "OMP_NUM_THREADS": "1"}
        request = dict(
            op="run",
            args=[str(a) for a in args],
            cwd=str(cwd),
            env=env,
            stdout=str(out),
            stderr=str(err),
            fsize=fsize,
        )
        return Child(self._ask(request)["pid"], request["args"], out, err)

    def wait(self, child: Child, *, timeout: float = 300) -> subprocess.CompletedProcess:
        code = self._ask({"op": "wait", "pid": child.pid, "timeout": timeout})["returncode"]
        return subprocess.CompletedProcess(
            child.args, code, child.stdout.read_text(), child.stderr.read_text()
        )

    def run(self, args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
        return self.wait(self.start(args, cwd, **kw))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def forks(tmp_path_factory):
    if not hasattr(os, "fork"):
        pytest.skip("the crash tests fork training processes (POSIX only)")
    server = ForkServer(tmp_path_factory.mktemp("forks"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def trained(forks, tmp_path_factory) -> Path:
    """A folder with corpus.txt, its token cache and a tiny model trained 4 steps (m.ckpt, m.last.ckpt)."""
    folder = tmp_path_factory.mktemp("trained")
    shutil.copy(ENGLISH, folder / "corpus.txt")
    args = [
        "train",
        "corpus.txt",
        *TINY,
        "--max-steps",
        "4",
        "--eval-every",
        "2",
        "--out",
        "m.ckpt",
    ]
    res = forks.run(args, folder)
    assert res.returncode == 0, res.stderr
    return folder


def copy_of(trained: Path, dst: Path) -> Path:
    shutil.copytree(trained, dst)
    return dst


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def wait_for(condition, timeout: float, poll: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return False


def lock_holder(folder: Path) -> str:
    try:
        return (folder / "m.ckpt.lock").read_text().strip()
    except OSError:
        return ""


# ---- crash safety: SIGKILL ---------------------------------------------------------------------


@pytest.mark.parametrize("kills", [KILLS, pytest.param(SLOW_KILLS, marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_never_costs_the_checkpoints(forks, tmp_path, kills):
    """Kill `textrnn train` (saving after every step) at random moments: at start-up, while
    training, and the instant a save has begun. After each kill every checkpoint on disk
    loads; the next run resumes from the last one (a stale lock and half-written temp
    files are taken over and cleaned up); every fifth resume runs to its end."""
    shutil.copy(ENGLISH, tmp_path / "corpus.txt")
    last = tmp_path / "m.last.ckpt"
    rng = random.Random(kills)
    modes = ["start-up", "training", "save", "save"]
    landed = {mode: 0 for mode in modes}
    in_save = 0
    for trial in range(kills):
        if last.exists():
            args = ["train", "corpus.txt", "--resume", "m.last.ckpt", "--out", "m.ckpt"]
        else:
            args = ["train", "corpus.txt", *TINY, "--eval-every", "1", "--out", "m.ckpt"]
        child = forks.start(
            [*args, "--max-steps", "1000000", "--epochs", "100000", "--patience", "0"], tmp_path
        )
        mode = modes[trial % len(modes)]
        if mode == "start-up":
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            wait_for(lambda pid=child.pid: lock_holder(tmp_path) == str(pid), 60)
            if mode == "training":
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                suffix = f"-{child.pid}"
                saving = lambda s=suffix: any(n.endswith(s) for n in temp_files(tmp_path))  # noqa: E731
                wait_for(saving, 10, poll=0.0005)
        in_flux = [n for n in temp_files(tmp_path) if n.endswith(f"-{child.pid}")]
        os.kill(child.pid, signal.SIGKILL)
        res = forks.wait(child)
        assert res.returncode == -signal.SIGKILL, f"trial {trial} ended by itself: {res.stderr}"
        assert "error" not in res.stderr and "Traceback" not in res.stderr, res.stderr
        landed[mode] += 1
        in_save += bool(in_flux)
        for path in (tmp_path / "m.ckpt", last):
            if path.exists():
                load_checkpoint(path, task="lm")  # whole, whatever the moment of the kill
        if last.exists() and (trial % 5 == 4 or trial == kills - 1):
            step = read_meta(last)[1]["training"]["step"]
            resume = ["train", "corpus.txt", "--resume", "m.last.ckpt", "--out", "m.ckpt"]
            res = forks.run([*resume, "--max-steps", str(step + 2)], tmp_path)
            assert res.returncode == 0, res.stderr
            assert read_meta(last)[1]["training"]["step"] == step + 2
            assert temp_files(tmp_path) == [] and not (tmp_path / "m.ckpt.lock").exists()
    assert last.exists()
    assert in_save >= 1, "no kill landed during a save"
    print(f"{kills} kills survived ({landed}); {in_save} of them during a save")


# ---- crash safety: SIGTERM ----------------------------------------------------------------------


def test_sigterm_saves_a_resumable_checkpoint_and_says_how_to_resume(tmp_path, monkeypatch):
    """A real `python -m textrnn train` process, as a scheduler or `docker stop` would end it."""
    shutil.copy(ENGLISH, tmp_path / "corpus.txt")
    env = {**os.environ, "TEXTRNN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    args = [
        "train",
        "corpus.txt",
        *TINY,
        "--eval-every",
        "3",
        "--max-steps",
        "1000000",
        "--out",
        "m.ckpt",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "textrnn", *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = tmp_path / "m.last.ckpt"
    try:
        assert wait_for(lambda: last.exists() or proc.poll() is not None, 120, poll=0.05)
        assert last.exists(), "training wrote no last checkpoint"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and stdout == ""
    last_line = stderr.splitlines()[-1]
    assert "interrupted by SIGTERM" in last_line
    assert "resume with: textrnn train --resume m.last.ckpt" in last_line
    assert not (tmp_path / "m.ckpt.lock").exists()
    step = read_meta(last)[1]["training"]["step"]
    assert step >= 3

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEXTRNN_CACHE", str(tmp_path / "cache"))
    res = cli(
        ["train", "--resume", "m.last.ckpt", "--max-steps", str(step + 2), "--json", "--quiet"]
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["steps"] == step + 2


# ---- crash safety: a full disk --------------------------------------------------------------------


def _full_disk_case(
    trained: Path, folder: Path, case: str
) -> tuple[list[str], int, Path | None, str]:
    """(args, file-size limit, token cache, words of the error) for one way the disk fills."""
    best, last = (trained / "m.ckpt").stat().st_size, (trained / "m.last.ckpt").stat().st_size
    resume = [
        "train",
        "corpus.txt",
        "--resume",
        "m.last.ckpt",
        "--out",
        "m.ckpt",
        "--max-steps",
        "8",
        "-q",  # the error alone: it follows the start of training
    ]
    if case == "checkpoint":  # the best checkpoint fits, the last does not
        return resume, (best + last) // 2, None, "cannot write checkpoint"
    if case == "metrics log":  # smaller than the metrics log already is
        return resume, (trained / "m.metrics.jsonl").stat().st_size - 1, None, "metrics log"
    if case == "token cache":  # a new cache: the corpus cannot even be encoded
        return resume, 4096, folder / "fresh-cache", "encoded corpus"  # ids take 14 kB
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["checkpoint", "metrics log", "token cache"])
def test_full_disk_gives_one_line_and_keeps_the_checkpoints(forks, trained, tmp_path, case):
    folder = copy_of(trained, tmp_path / "run")
    before = {name: (folder / name).read_bytes() for name in ("m.ckpt", "m.last.ckpt")}
    args, fsize, cache, words = _full_disk_case(trained, folder, case)
    res = forks.run(args, folder, fsize=fsize, cache=cache)
    assert_one_line_error(res, 1, words)
    assert "File too large" in res.stderr
    for name in ("m.ckpt", "m.last.ckpt"):
        load_checkpoint(folder / name, task="lm")
    assert (folder / "m.last.ckpt").read_bytes() == before["m.last.ckpt"]
    assert temp_files(folder) == [] and not (folder / "m.ckpt.lock").exists()
    # With space again, training resumes from the checkpoint the full disk left intact.
    res = forks.run(args, folder)
    assert res.returncode == 0, res.stderr
    assert read_meta(folder / "m.last.ckpt")[1]["training"]["step"] == 8


def test_full_tmpfs_gives_one_line_and_keeps_the_checkpoints(forks, trained, tmp_path):
    """A real ENOSPC: a 1 MiB tmpfs, filled up. Needs the right to mount (root); else skipped."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the RLIMIT_FSIZE tests cover a full disk")
    try:
        for name in ("corpus.txt", "m.ckpt", "m.last.ckpt", "m.metrics.jsonl"):
            shutil.copy(trained / name, disk / name)
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        args = [
            "train",
            "corpus.txt",
            "--resume",
            "m.last.ckpt",
            "--out",
            "m.ckpt",
            "--max-steps",
            "40",
        ]
        res = forks.run(args, disk, cache=trained / "cache")
        assert_one_line_error(res, 1)
        assert "No space left on device" in res.stderr
        for name in ("m.ckpt", "m.last.ckpt"):
            load_checkpoint(disk / name, task="lm")
        assert temp_files(disk) == [] and not (disk / "m.ckpt.lock").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# ---- one training per output ------------------------------------------------------------------------


def test_second_training_into_the_same_output_is_refused(forks, trained, tmp_path, monkeypatch):
    folder = copy_of(trained, tmp_path / "run")
    args = [
        "train",
        "corpus.txt",
        "--resume",
        "m.last.ckpt",
        "--out",
        "m.ckpt",
        "--max-steps",
        "1000000",
    ]
    first = forks.start(args, folder)
    try:
        assert wait_for(lambda: lock_holder(folder) == str(first.pid), 60)
        monkeypatch.chdir(folder)
        monkeypatch.setenv("TEXTRNN_CACHE", str(folder / "cache"))
        second = cli(["train", "corpus.txt", *TINY, "--max-steps", "2", "--out", "m.ckpt"])
        assert_one_line_error(second, 1, "m.ckpt.lock", f"PID {first.pid}", "another training")
        assert lock_holder(folder) == str(first.pid)  # the refused run left the lock alone
    finally:
        os.kill(first.pid, signal.SIGTERM)
        res = forks.wait(first)
    assert res.returncode == 128 + signal.SIGTERM, res.stderr
    assert not (folder / "m.ckpt.lock").exists()
    again = cli(["train", "corpus.txt", *TINY, "--max-steps", "2", "--out", "m.ckpt"])
    assert again.returncode == 0, again.stderr
    assert not (folder / "m.ckpt.lock").exists()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("content", ["dead", "", "garbage\n"])
def test_a_stale_lock_is_taken_over(work, tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEXTRNN_CACHE", str(work / "cache"))
    shutil.copy(work / "corpus.txt", tmp_path / "corpus.txt")
    lock = tmp_path / "m.ckpt.lock"
    lock.write_text(f"{dead_pid()}\n" if content == "dead" else content)
    res = cli(["train", "corpus.txt", *TINY, "--max-steps", "2", "--out", "m.ckpt"])
    assert res.returncode == 0, res.stderr
    assert not lock.exists()


def test_the_lock_is_released_on_errors_and_is_exclusive_in_one_process(tmp_path):
    out = tmp_path / "m.ckpt"
    with pytest.raises(RuntimeError), output_lock(out):
        assert lock_path(out).read_text() == f"{os.getpid()}\n"
        raise RuntimeError("training failed")
    assert not lock_path(out).exists()
    with output_lock(out):
        with pytest.raises(TextrnnError, match=f"PID {os.getpid()}"), output_lock(out):
            pass
        assert lock_path(out).exists()  # the refused attempt did not remove the holder's lock
    assert not lock_path(out).exists()


def test_a_failed_training_removes_its_lock(work, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEXTRNN_CACHE", str(work / "cache"))
    shutil.copy(work / "corpus.txt", tmp_path / "corpus.txt")
    args = [
        "train",
        "corpus.txt",
        *TINY,
        "--lr",
        "1e6",
        "--eval-every",
        "5",
        "--max-steps",
        "200",
        "--out",
        "m.ckpt",
        "-q",  # the error alone: it follows the start of training
    ]
    res = cli(args)
    assert_one_line_error(res, 1, "diverged")
    assert not (tmp_path / "m.ckpt.lock").exists()
    load_checkpoint(tmp_path / "m.last.ckpt", task="lm")
