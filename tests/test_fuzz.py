"""Fuzzing the readers of everything a user can hand textrnn: corpora, tokenizer files and
data, CoNLL-U / TSV files, and the metadata of language-model checkpoints.

Each reader either parses its input or raises one of textrnn's own errors (a
`TextrnnError`, which the CLI turns into one line); anything else is a bug. The default
run tries FUZZ_EXAMPLES inputs per reader; `-m slow` tries SLOW_EXAMPLES (set
TEXTRNN_FUZZ_EXAMPLES to change the slow figure). The checkpoint container itself is
fuzzed in tests/test_checkpoint.py.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textrnn.cli import main
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint, read_meta, save_checkpoint
from textrnn.engine.config import TrainConfig
from textrnn.errors import DataError, TextrnnError
from textrnn.formats import conllu as conll
from textrnn.formats.plain import iter_text_chunks
from textrnn.tasks.lm import GenerateConfig, generate, load, train
from textrnn.tokenizers import (
    KINDS,
    format_pieces,
    load_tokenizer,
    parse_pieces,
    tokenizer_from_dict,
    train_tokenizer,
)

ENGLISH = Path(__file__).resolve().parent.parent / "corpora" / "english.txt"
FUZZ_EXAMPLES = 200  # per reader, default run
SLOW_EXAMPLES = int(os.environ.get("TEXTRNN_FUZZ_EXAMPLES", "5000"))  # per reader, -m slow
RESUME_EXAMPLES = 100  # checkpoint metadata: each example loads, samples and resumes a model
RUNS = [
    pytest.param(FUZZ_EXAMPLES, id="default"),
    pytest.param(SLOW_EXAMPLES, id="slow", marks=pytest.mark.slow),
]
SAMPLES = ["Hello, world!\nthe lamp\tlit 😀", "क्षण शास्त्र।", "", "\n\n", "<unk> ▁ \ufeff\u200d"]


def fuzz(examples: int, strategy, check) -> int:
    """Run `check(value)` on `examples` values drawn from `strategy`; return how many ran."""
    ran = 0

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(strategy)
    def run(value):
        nonlocal ran
        ran += 1
        check(value)

    run()
    assert ran >= examples, f"hypothesis ran {ran} of {examples} examples"
    print(f"{ran} examples")
    return ran


@pytest.fixture(scope="module")
def scratch():
    folder = Path(tempfile.mkdtemp(prefix="textrnn-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# ---- corpus reader ------------------------------------------------------------------------------

utf8_text = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from("\n\r\t\ufeff é क्ष😀")),
    max_size=80,
)


@st.composite
def corpus_bytes(draw) -> bytes:
    """Valid UTF-8, UTF-8 with bytes spliced in or cut short, or anything at all."""
    kind = draw(st.sampled_from(["text", "spliced", "cut", "bom", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=120))
    data = draw(utf8_text).encode("utf-8")
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "spliced":
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.binary(min_size=1, max_size=3)) + data[at:]
    return data


def check_corpus(scratch: Path, case: tuple[bytes, int]) -> None:
    data, chunk = case
    path = scratch / "corpus.txt"
    path.write_bytes(data)
    try:
        chunks = list(iter_text_chunks(path, chunk_bytes=chunk))
    except DataError as err:
        message = str(err)
        if not data:
            assert "empty" in message
        elif b"\0" in data[:8192]:
            assert "binary" in message
        else:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as bad:  # the error must say where, exactly
                line = data[: bad.start].count(b"\n") + 1
                assert f"at byte {bad.start} (line {line})" in message, (message, bad)
            else:
                raise AssertionError(f"valid UTF-8 refused: {message}") from None
        return
    assert data and b"\0" not in data[:8192]
    assert "".join(chunks) == data.decode("utf-8").removeprefix("\ufeff")
    assert all(c.endswith("\n") for c in chunks[:-1])  # chunks end on line boundaries


@pytest.mark.parametrize("examples", RUNS)
def test_corpus_reader(scratch, examples):
    fuzz(
        examples, st.tuples(corpus_bytes(), st.integers(1, 64)), lambda c: check_corpus(scratch, c)
    )


# ---- tokenizers -----------------------------------------------------------------------------------


@functools.cache
def tokenizer_dicts() -> tuple[dict, ...]:
    text = ENGLISH.read_text(encoding="utf-8")
    return tuple(
        train_tokenizer(kind, [text], **extra).to_dict()
        for kind, extra in [
            ("char", {}),
            ("char", {"unit": "codepoint", "user_symbols": ["<sep>"]}),
            ("word", {}),
            ("bpe", {"vocab_size": 400}),
            ("unigram", {"vocab_size": 400}),
        ]
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = ["format", "kind", "unit", "normalize", "user_symbols", "vocab_size", "vocab", "model"]
edits = st.lists(
    st.one_of(
        st.tuples(st.just("delete"), st.sampled_from(FIELDS)),
        st.tuples(st.just("set"), st.sampled_from([*FIELDS, "extra"]), json_values),
        st.tuples(st.just("kind"), st.sampled_from([*KINDS, "morse"])),
        st.tuples(
            st.just("vocab"), st.integers(0, 10**6), st.one_of(st.text(max_size=3), json_values)
        ),
        st.tuples(st.just("model"), st.integers(0, 10**6), st.integers(1, 255)),
        st.tuples(st.just("cut model"), st.integers(0, 10**6)),
    ),
    min_size=1,
    max_size=4,
)


def apply_edits(d: dict, edits: list[tuple]) -> dict:
    d = copy.deepcopy(d)
    for edit in edits:
        op = edit[0]
        if op == "delete":
            d.pop(edit[1], None)
        elif op == "set":
            d[edit[1]] = edit[2]
        elif op == "kind":
            d["kind"] = edit[1]
        elif op == "vocab" and isinstance(d.get("vocab"), list) and d["vocab"]:
            d["vocab"][edit[1] % len(d["vocab"])] = edit[2]
        elif op in ("model", "cut model") and isinstance(d.get("model"), str):
            try:  # an earlier "set" edit may have put any string there
                model = bytearray(base64.b64decode(d["model"]))
            except ValueError:  # (binascii.Error is one)
                continue
            if model and op == "model":
                model[edit[1] % len(model)] ^= edit[2]
            elif op == "cut model":
                model = model[: edit[1] % (len(model) + 1)]
            d["model"] = base64.b64encode(bytes(model)).decode("ascii")
    return d


def exercise(tok) -> None:
    """A tokenizer that loaded must work: encode anything, decode its ids, refuse others."""
    for text in SAMPLES:
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        tok.decode(ids)
        assert parse_pieces(tok, format_pieces(tok, ids)) == ids  # what `tokenize decode` reads
        tok.tokenize(text)
        tok.unknown_units(text)
        tok.count_chars(text)
    tok.decode(range(tok.vocab_size))
    tok.id_to_piece(tok.vocab_size - 1)
    with pytest.raises(DataError):
        tok.decode([tok.vocab_size])


def check_tokenizer_dict(case) -> None:
    base, changes = case
    d = apply_edits(tokenizer_dicts()[base], changes)
    try:
        tok = tokenizer_from_dict(d)
    except TextrnnError:
        return
    exercise(tok)


@pytest.mark.parametrize("examples", RUNS)
def test_tokenizer_from_dict_on_mutated_data(examples):
    strategy = st.tuples(st.integers(0, len(tokenizer_dicts()) - 1), edits)
    fuzz(examples, strategy, check_tokenizer_dict)


@pytest.mark.parametrize("examples", RUNS)
def test_tokenizer_from_dict_on_random_data(examples):
    def check(d) -> None:
        try:
            tok = tokenizer_from_dict(d)
        except TextrnnError:
            return
        exercise(tok)

    fixed = st.fixed_dictionaries(
        {"format": st.sampled_from([1, 1, 2, "1"]), "kind": st.sampled_from([*KINDS, "x"])},
        optional={f: json_values for f in FIELDS[2:]},
    )
    fuzz(examples, st.one_of(json_values, fixed), check)


@st.composite
def tokenizer_files(draw) -> bytes:
    base = draw(st.integers(0, len(tokenizer_dicts()) - 1))
    data = bytearray(json.dumps(tokenizer_dicts()[base], ensure_ascii=False).encode("utf-8"))
    kind = draw(st.sampled_from(["flip", "cut", "insert", "deep", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.integers(1, 200_000))
        return b"[" * depth + b"]" * depth
    if kind == "cut":
        return bytes(data[: draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@pytest.mark.parametrize("examples", RUNS)
def test_tokenizer_files(scratch, examples):
    def check(data: bytes) -> None:
        path = scratch / "tok.json"
        path.write_bytes(data)
        try:
            tok = load_tokenizer(path)
        except DataError:  # load_tokenizer names the file: always a DataError
            return
        exercise(tok)

    fuzz(examples, tokenizer_files(), check)


# ---- CoNLL-U and token<TAB>tag files ----------------------------------------------------------------

field = st.one_of(
    st.sampled_from(["_", "NOUN", "DET", "", "a=b|NER=B-PER", "0", "root", "NER=O"]),
    st.text(alphabet=st.characters(blacklist_characters="\t\n\r"), max_size=5),
)
conllu_id = st.one_of(
    st.sampled_from(["1", "2", "3", "1-2", "2.1", "0", "01", "x", "", "1-", "-1", "4.5.6"]),
    st.text(alphabet=st.characters(blacklist_characters="\t\n\r"), max_size=3),
)
tagged_line = st.one_of(
    st.builds(
        lambda i, cols: "\t".join([i, *cols]), conllu_id, st.lists(field, min_size=8, max_size=10)
    ),
    st.builds(lambda w, t: f"{w}\t{t}", field, field),
    st.sampled_from(["", "# sent_id = 1", "# text = The dog", "-DOCSTART-\tO", " ", "\r"]),
    st.text(max_size=12),
)
tagged_files = st.builds(
    lambda lines, crlf: ("\r\n" if crlf else "\n").join(lines),
    st.lists(tagged_line, max_size=14),
    st.booleans(),
)
COLUMNS = ["upos", "xpos", "deprel", "misc:NER", "misc:", "lemma"]


def check_tagged_file(scratch: Path, case) -> None:
    text, fmt, column, suffix = case
    path = scratch / f"data{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        sentences = conll.load_sentences(path, fmt=fmt, column=column, keep_rows=True)
    except TextrnnError:
        return
    for s in sentences:
        assert s.words and len(s.words) == len(s.tags)
        if s.rows:  # CoNLL-U written back reads as the same words
            again = list(conll.parse_conllu(conll.format_conllu(s).split("\n"), column=column))
            assert [x.words for x in again] == [s.words]


@pytest.mark.parametrize("examples", RUNS)
def test_conllu_and_tsv_readers(scratch, examples):
    strategy = st.tuples(
        tagged_files,
        st.sampled_from(["auto", "conllu", "tsv"]),
        st.sampled_from(COLUMNS),
        st.sampled_from([".conllu", ".tsv", ".txt"]),
    )
    fuzz(examples, strategy, lambda c: check_tagged_file(scratch, c))


@pytest.mark.parametrize("ident", ["\u00b2", "\u0663", "1-\u00b2", "\u00b2.1"])
def test_conllu_word_id_with_a_non_ascii_digit_is_a_data_error(ident):
    """Found by the fuzzer: str.isdigit() accepts '²', and int() then failed on it."""
    with pytest.raises(DataError, match="ID"):
        list(conll.parse_conllu([f"{ident}\tx" + "\t_" * 8]))


# ---- language-model checkpoint metadata --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A folder with corpus.txt and a tiny model's last checkpoint (m.last.ckpt)."""
    folder = tmp_path_factory.mktemp("fuzz-lm")
    shutil.copy(ENGLISH, folder / "corpus.txt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEXTRNN_CACHE", str(folder / "cache"))
        tok = train_tokenizer("char", iter_text_chunks(folder / "corpus.txt"))
        cfg = TrainConfig(batch_size=2, seq_len=8, max_steps=2, eval_every=2)
        shape = {"hidden": 8, "layers": 1, "embed": 8}
        train(
            folder / "corpus.txt", tokenizer=tok, out=folder / "m.ckpt", model_overrides=shape, train_cfg=cfg
        )
    return folder


META_PATHS = [
    ("model_config",), ("model_config", "hidden"), ("model_config", "vocab_size"), ("model_config", "cell"),
    ("model_config", "tie_weights"), ("model_config", "layers"), ("tokenizers",), ("tokenizers", "text"),
    ("tokenizers", "text", "vocab"), ("tokenizers", "text", "kind"), ("train_config",), ("train_config", "batch_size"), ("train_config", "seq_len"),
    ("train_config", "lr"), ("training",), ("training", "step"), ("training", "epoch"),
    ("training", "batch_in_epoch"), ("training", "best_val_loss"), ("training", "lr_scale"),
    ("training", "has_training_state"), ("history",), ("data",), ("data", "train"), ("data", "train", "path"), ("optimizer",),
    ("optimizer", "state"), ("optimizer", "param_groups"), ("metrics",),
]  # fmt: skip
TENSORS = [
    "model.head.weight",
    "model.embedding.weight",
    "optim.state.0.exp_avg",
    "rng.torch",
    "state.hidden.0",
]
plausible = st.one_of(
    st.integers(-2, 70),
    st.floats(-1, 3),
    st.booleans(),
    st.sampled_from(["lstm", "gru", "char", "nfc"]),
)
meta_edits = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(META_PATHS), json_values),
        st.tuples(st.just("set"), st.sampled_from(META_PATHS), plausible),
        st.tuples(st.just("delete"), st.sampled_from(META_PATHS)),
        st.tuples(st.just("drop tensor"), st.sampled_from(TENSORS)),
        st.tuples(
            st.just("tensor"),
            st.sampled_from(TENSORS),
            st.lists(st.integers(0, 9), max_size=3),
            st.sampled_from([torch.float32, torch.int64, torch.uint8, torch.bfloat16]),
        ),
    ),
    min_size=1,
    max_size=3,
)


def edit_checkpoint(meta: dict, tensors: dict, edits: list[tuple]) -> None:
    for edit in edits:
        op = edit[0]
        if op in ("set", "delete"):
            *parents, key = edit[1]
            node = meta
            for name in parents:
                node = node.get(name) if isinstance(node, dict) else None
            if isinstance(node, dict):
                if op == "set":
                    node[key] = edit[2]
                else:
                    node.pop(key, None)
        elif op == "drop tensor":
            tensors.pop(edit[1], None)
        else:
            tensors[edit[1]] = torch.zeros(edit[2], dtype=edit[3])


OUTCOMES: dict = {}


def check_checkpoint(folder: Path, edits: list[tuple]) -> None:
    """load + a few sampled tokens, and `textrnn train --resume` for one step, either
    work or fail with one error line."""
    base = load_checkpoint(folder / "m.last.ckpt")
    meta = copy.deepcopy({k: v for k, v in base.meta.items() if k != "header"})
    tensors = dict(base.tensors)
    edit_checkpoint(meta, tensors, edits)
    path = folder / "fuzzed.ckpt"
    save_checkpoint(path, Checkpoint(task="lm", meta=meta, tensors=tensors))
    try:
        lm = load(path)
    except TextrnnError:
        pass
    else:
        try:
            generate(lm, config=GenerateConfig(length=3, seed=0))
        except TextrnnError:
            pass
    training = read_meta(path)[1].get("training")
    step = training.get("step") if isinstance(training, dict) else None
    step = step if isinstance(step, int) and 0 <= step < 10**6 else 0
    args = [
        "train",
        str(folder / "corpus.txt"),
        "--resume",
        str(path),
        "--out",
        str(folder / "r.ckpt"),
    ]
    with pytest.raises(SystemExit) as exit_:  # anything else escaping main is a bug
        main([*args, "--max-steps", str(step + 1), "--quiet"])
    assert exit_.value.code in (0, 1, 2)
    OUTCOMES[exit_.value.code] = OUTCOMES.get(exit_.value.code, 0) + 1


@pytest.mark.parametrize(
    "examples",
    [
        pytest.param(RESUME_EXAMPLES, id="default"),
        pytest.param(SLOW_EXAMPLES // 5, id="slow", marks=pytest.mark.slow),
    ],
)
def test_lm_checkpoint_metadata(tiny_lm, monkeypatch, capsys, examples):
    monkeypatch.setenv("TEXTRNN_CACHE", str(tiny_lm / "cache"))

    def check(edits) -> None:
        check_checkpoint(tiny_lm, edits)
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.splitlines()) <= 1, err

    OUTCOMES.clear()
    fuzz(examples, meta_edits, check)
    print("`train --resume` exit codes:", OUTCOMES)
