"""Checkpoint format: round trips, atomic saves, and hostile files that must never run code."""

from __future__ import annotations

import errno
import json
import os
import pickle
from datetime import datetime, timezone
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

import textrnn
from textrnn.engine import checkpoint as ck
from textrnn.engine.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Checkpoint,
    describe,
    flatten_state,
    load_checkpoint,
    read_meta,
    save_checkpoint,
    unflatten_state,
)
from textrnn.errors import CheckpointError, DataError
from textrnn.files import fingerprint_file


def sample_tensors() -> dict[str, torch.Tensor]:
    return {
        "model.f32": torch.randn(3, 4),
        "model.bf16": torch.randn(5).to(torch.bfloat16),
        "state.i64": torch.arange(-3, 7, dtype=torch.int64),
        "state.u8": torch.tensor([0, 7, 255], dtype=torch.uint8),
        "state.flags": torch.tensor([True, False]),
        "state.scalar": torch.tensor(2.5),
        "state.empty": torch.zeros(0, 3),
    }


def sample_meta() -> dict:
    return {
        "model_config": {"vocab_size": 7, "cell": "lstm", "layers": 1, "hidden": 4},
        "tokenizers": {"text": {"kind": "char", "unit": "grapheme", "vocab": ["<pad>", "a", "क्ष", "é"]}},
        "training": {"step": 120, "epoch": 2},
        "metrics": {"best": {"val_loss": 1.25, "val_bpc": 1.8}},
        "history": [{"step": 60, "val_loss": 1.5}, {"step": 120, "val_loss": 1.25}],
        "data": {"train": {"name": "tiny.txt", "bytes": 12, "sha256": "ab" * 32}, "dev": None},
        "note": "a lone surrogate \ud800 is still a str",
    }


def save_raw(path: Path, document: object, tensors: dict | None = None) -> Path:
    """A safetensors file with an arbitrary textrnn document (to fake foreign/newer files)."""
    text = document if isinstance(document, str) else json.dumps(document)
    path.write_bytes(safetensors_bytes(tensors or {}, metadata={"textrnn": text}))
    return path


def document(**changes: object) -> dict:
    doc = {"format": FORMAT_NAME, "format_version": 1, "task": "lm", "meta": {}}
    doc.update(changes)
    return doc


def without_header(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k != "header"}


# --- round trips ----------------------------------------------------------------------


def test_round_trip_keeps_dtypes_values_and_meta(tmp_path):
    path = tmp_path / "c.safetensors"
    tensors, meta = sample_tensors(), sample_meta()
    save_checkpoint(path, Checkpoint(task="lm", meta=meta, tensors=tensors))
    loaded = load_checkpoint(path, task="lm")
    assert loaded.task == "lm"
    assert without_header(loaded.meta) == meta
    assert loaded.tensors.keys() == tensors.keys()
    for name, t in tensors.items():
        assert loaded.tensors[name].dtype == t.dtype, name
        assert loaded.tensors[name].shape == t.shape, name
        assert torch.equal(loaded.tensors[name], t), name


def test_save_writes_header_fields(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, Checkpoint("tagger", {"x": 1}, {"model.w": torch.ones(2)}))
    with safe_open(str(path), framework="pt") as f:  # a plain safetensors reader opens it
        doc = json.loads(f.metadata()["textrnn"])
        assert list(f.keys()) == ["model.w"]
    assert doc["format"] == FORMAT_NAME
    assert doc["format_version"] == FORMAT_VERSION
    assert doc["textrnn_version"] == textrnn.__version__
    assert doc["task"] == "tagger"
    assert doc["meta"] == {"x": 1}
    created = datetime.fromisoformat(doc["created"])
    assert created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 60


def test_read_meta_reports_header_facts_without_tensors(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, Checkpoint("translit", {"a": [1, 2]}, {"model.w": torch.ones(2, 3)}))
    task, meta = read_meta(path)
    assert task == "translit"
    assert meta["a"] == [1, 2]
    header = meta["header"]
    assert header["format_version"] == FORMAT_VERSION
    assert header["file_bytes"] == path.stat().st_size
    assert header["tensors"] == {"model.w": {"dtype": "F32", "shape": [2, 3]}}
    assert load_checkpoint(path, load_tensors=False).tensors == {}


def test_reloaded_checkpoint_can_be_saved_again(tmp_path):
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_checkpoint(first, Checkpoint("lm", sample_meta(), sample_tensors()))
    save_checkpoint(second, load_checkpoint(first))  # the stale "header" is replaced
    assert without_header(load_checkpoint(second).meta) == sample_meta()


def test_save_accepts_views_grad_and_tied_weights(tmp_path):
    emb = nn.Embedding(5, 3)
    head = nn.Linear(3, 5)
    head.weight = emb.weight  # tied, as in a language model with tie_weights
    base = torch.arange(12.0).reshape(3, 4)
    tensors = {
        "model.emb": emb.weight,  # requires grad
        "model.head": head.weight,  # same storage
        "state.transposed": base.t(),  # not contiguous
        "state.slice": base[1:],  # shares storage with base
        "state.base": base,
    }
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, Checkpoint("lm", {}, tensors))
    loaded = load_checkpoint(path).tensors
    for name, t in tensors.items():
        assert torch.equal(loaded[name], t.detach()), name
    # Loading both copies into a tied model keeps it tied.
    emb2, head2 = nn.Embedding(5, 3), nn.Linear(3, 5)
    head2.weight = emb2.weight
    emb2.load_state_dict({"weight": loaded["model.emb"]})
    head2.load_state_dict({"weight": loaded["model.head"], "bias": head.bias})
    assert head2.weight is emb2.weight
    assert torch.equal(emb2.weight, emb.weight)


def test_optimizer_and_rng_state_resume_identically(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 4), torch.randn(16, 2)

    def step(m: nn.Module, o: torch.optim.Optimizer) -> None:
        o.zero_grad()
        nn.functional.mse_loss(m(x), y).backward()
        o.step()

    for _ in range(3):
        step(model, opt)
    weights, _ = flatten_state(model.state_dict(), "model")
    optim, skeleton = flatten_state(opt.state_dict(), "optim")
    rng = torch.get_rng_state()
    path = tmp_path / "c.safetensors"
    meta = {"optimizer": skeleton}
    save_checkpoint(path, Checkpoint("lm", meta, {**weights, **optim, "rng.torch": rng}))
    expected_draw = torch.randn(5)

    ckpt = load_checkpoint(path, task="lm")
    restored = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    prefix = len("model.")
    restored.load_state_dict(
        {k[prefix:]: v for k, v in ckpt.tensors.items() if k.startswith("model.")}
    )
    restored_opt = torch.optim.AdamW(restored.parameters(), lr=0.5)  # lr comes from the state
    restored_opt.load_state_dict(unflatten_state(ckpt.meta["optimizer"], ckpt.tensors))
    torch.set_rng_state(ckpt.tensors["rng.torch"])
    assert torch.equal(torch.randn(5), expected_draw)

    step(model, opt)
    step(restored, restored_opt)
    for a, b in zip(model.parameters(), restored.parameters(), strict=True):
        assert torch.equal(a, b)
    assert restored_opt.param_groups[0]["lr"] == 0.01


def test_flatten_keeps_structure_exact():
    t1, t2 = torch.ones(2), torch.zeros(1)
    state = {
        "ints": {0: t1, 1: {"x": None}},
        "pair": (0.9, 0.999),
        "nested": [1, "two", [True, t2]],
        "__tensor__": "user data, not a placeholder",
        "lonely": {"__tensor__": "also user data"},
    }
    tensors, skeleton = flatten_state(state, "optim")
    assert tensors == {"optim.ints.0": t1, "optim.nested.2.1": t2}
    assert json.loads(json.dumps(skeleton)) == skeleton  # plain JSON
    assert unflatten_state(json.loads(json.dumps(skeleton)), tensors) == state


def test_flatten_makes_colliding_names_unique():
    a, b = torch.ones(1), torch.zeros(1)
    tensors, skeleton = flatten_state({"a.b": a, "a": {"b": b}}, "")
    assert len(tensors) == 2
    back = unflatten_state(skeleton, tensors)
    assert back["a.b"] is a and back["a"]["b"] is b


def test_flatten_refuses_objects_that_are_not_data():
    with pytest.raises(TypeError, match="device"):
        flatten_state({"where": torch.device("cpu")}, "x")
    with pytest.raises(TypeError, match="key"):
        flatten_state({(1, 2): 3}, "x")


@pytest.mark.parametrize(
    "skeleton",
    [
        {"__tensor__": "missing"},
        {"__tensor__": ["not", "a", "name"]},
        {"__tuple__": 5},
        {"__dict__": [[1]]},
        {"__dict__": [[[1], 2]]},
        {"__dict__": "x"},
    ],
)
def test_unflatten_rejects_bad_skeletons(skeleton):
    with pytest.raises(CheckpointError, match="ck.safetensors is corrupt"):
        unflatten_state(skeleton, {}, source="ck.safetensors")


def test_save_refuses_a_malformed_task_name_and_non_json_meta(tmp_path):
    for task in ("Parser", "", "lm tagger", "x" * 40):
        with pytest.raises(ValueError, match="task"):
            save_checkpoint(tmp_path / "c", Checkpoint(task, {}, {}))
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "c", Checkpoint("lm", {"path": Path("x")}, {}))
    assert not (tmp_path / "c").exists()


# --- atomic saves ---------------------------------------------------------------------


def test_save_creates_parent_directories(tmp_path):
    path = tmp_path / "runs" / "a" / "c.safetensors"
    save_checkpoint(path, Checkpoint("lm", {}, {"model.w": torch.ones(1)}))
    assert load_checkpoint(path).tensors["model.w"].item() == 1.0
    assert os.listdir(path.parent) == ["c.safetensors"]


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, Checkpoint("lm", {"v": 1}, {"model.w": torch.ones(3)}))
    temp_names = []

    def crash(src, dst):
        temp_names.append(Path(src).name)
        assert Path(src).stat().st_size > 0  # the new file was written in full first
        raise RuntimeError("power cut")

    monkeypatch.setattr(ck.os, "replace", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        save_checkpoint(path, Checkpoint("lm", {"v": 2}, {"model.w": torch.zeros(3)}))
    monkeypatch.undo()
    assert temp_names == [f".c.safetensors.tmp-{os.getpid()}"]
    assert os.listdir(tmp_path) == ["c.safetensors"]
    old = load_checkpoint(path)
    assert old.meta["v"] == 1 and torch.equal(old.tensors["model.w"], torch.ones(3))


def test_disk_full_raises_checkpoint_error_and_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, Checkpoint("lm", {"v": 1}, {}))
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck.os, "fsync", full)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, Checkpoint("lm", {"v": 2}, {"model.w": torch.ones(1000)}))
    monkeypatch.undo()
    assert str(err.value) == f"cannot write checkpoint {path}: No space left on device"
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.safetensors"]


def test_save_onto_a_directory_is_a_checkpoint_error(tmp_path):
    (tmp_path / "c").mkdir()
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_checkpoint(tmp_path / "c", Checkpoint("lm", {}, {}))
    assert os.listdir(tmp_path) == ["c"]


# --- hostile and foreign files --------------------------------------------------------


class CreatesFile:
    """Unpickling this object opens (creates) `marker` for writing: it runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def write_pickle(path: Path, obj: object) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f)


@pytest.mark.parametrize(
    ("write", "unpickle"),
    [
        (write_pickle, lambda p: pickle.loads(p.read_bytes())),
        (lambda p, obj: torch.save(obj, p), lambda p: torch.load(p, weights_only=False)),
        (
            lambda p, obj: torch.save(obj, p, _use_new_zipfile_serialization=False),
            lambda p: torch.load(p, weights_only=False),
        ),
    ],
    ids=["pickle", "torch.save", "torch.save-legacy"],
)
def test_pickles_are_refused_without_running_code(tmp_path, write, unpickle):
    # The payload is live: unpickling it does create its marker ...
    control = tmp_path / "control-marker"
    write(tmp_path / "control.pt", {"model": CreatesFile(control)})
    unpickle(tmp_path / "control.pt")
    assert control.exists()
    # ... but loading it as a checkpoint refuses it and runs nothing.
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    write(path, {"model": CreatesFile(marker)})
    for read in (load_checkpoint, read_meta, describe):
        with pytest.raises(CheckpointError) as err:
            read(path)
        assert str(err.value) == (
            f"{path} is not a textrnn checkpoint (it looks like a pickle / PyTorch .pt file; "
            "textrnn never loads pickles)"
        )
    assert not marker.exists()


def valid_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "valid.safetensors"
    save_checkpoint(path, Checkpoint("lm", sample_meta(), sample_tensors()))
    return path.read_bytes()


def header_file(path: Path, header: bytes, body: bytes = b"") -> Path:
    path.write_bytes(len(header).to_bytes(8, "little") + header + body)
    return path


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\x01\x02\x03", r"not a textrnn checkpoint \(not a safetensors file\)"),
        (bytes(range(200, 256)), r"not a safetensors file"),
        (b"hello, this is a text file\n" * 3, "not a safetensors file"),
        ((1 << 40).to_bytes(8, "little") + b"{}", "header claims 1099511627776 bytes"),
        ((100).to_bytes(8, "little") + b'{"a":1}', "is truncated"),
        ((2).to_bytes(8, "little") + b"{\xff", "header is not valid JSON"),
        ((2).to_bytes(8, "little") + b"{}", "without textrnn metadata"),
    ],
)
def test_foreign_and_broken_files(tmp_path, content, message):
    path = tmp_path / "c.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    data = valid_bytes(tmp_path)
    path = tmp_path / "cut.safetensors"
    for cut in (len(data) - 1, len(data) // 2, 20):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"{path} is truncated"):
            load_checkpoint(path)
    path.write_bytes(data + b"extra")
    with pytest.raises(CheckpointError, match="5 unexpected bytes at its end"):
        load_checkpoint(path)


def test_too_many_tensors_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "MAX_TENSORS", 2)
    entry = {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}
    header = json.dumps({f"t{i}": entry for i in range(3)}).encode()
    path = header_file(tmp_path / "c.safetensors", header, b"\0")
    with pytest.raises(CheckpointError, match="more than 2 tensors"):
        read_meta(path)


def test_deeply_nested_header_is_refused(tmp_path):
    path = header_file(
        tmp_path / "c.safetensors", b"{" + b'"a":[' * 100_000 + b"]" * 100_000 + b"}"
    )
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("not json {", "textrnn metadata is not valid JSON"),
        ("[1, 2]", "is not a textrnn checkpoint$"),
        (document(format="someone-else"), "is not a textrnn checkpoint$"),
        (document(format_version="1"), "invalid format version"),
        (document(format_version=True), "invalid format version"),
        (
            document(format_version=3),
            r"was written by a newer textrnn \(format version 3; this textrnn reads up to 2\): "
            "upgrade textrnn",
        ),
        (document(task="Parser!"), "its task is 'Parser!', not a task name"),
        (document(task=["lm"]), "not a task name"),
        (document(meta=[1]), "no meta object"),
    ],
)
def test_bad_textrnn_metadata(tmp_path, doc, message):
    path = save_raw(tmp_path / "c.safetensors", doc)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_safetensors_metadata_without_textrnn_key(tmp_path):
    path = tmp_path / "hf.safetensors"
    path.write_bytes(safetensors_bytes({"w": torch.ones(2)}, metadata={"format": "pt"}))
    with pytest.raises(CheckpointError, match="without textrnn metadata"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "entry",
    [
        {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]},  # size does not match shape
        {"dtype": "NOPE", "shape": [1], "data_offsets": [0, 4]},
        {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]},
        {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]},
        {"dtype": "F32", "shape": [1]},
        [1, 2],
    ],
)
def test_bad_tensor_entries(tmp_path, entry):
    header = json.dumps({"__metadata__": {"textrnn": json.dumps(document())}, "w": entry}).encode()
    path = header_file(tmp_path / "c.safetensors", header, b"\0" * 4)
    with pytest.raises(CheckpointError, match="c.safetensors is (corrupt|truncated)"):
        load_checkpoint(path)


def test_task_mismatch(tmp_path):
    path = tmp_path / "tagger.safetensors"
    save_checkpoint(path, Checkpoint("tagger", {}, {}))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, task="lm")
    assert str(err.value) == (
        f"{path} is a tagger checkpoint; this command needs a language model (lm) checkpoint"
    )
    with pytest.raises(CheckpointError, match="needs a transliteration"):
        load_checkpoint(path, task="translit")
    # A task this textrnn has no command for is refused by name, like any other task.
    save_checkpoint(path, Checkpoint("parser", {}, {}))
    with pytest.raises(CheckpointError, match="is a parser checkpoint; this command needs a tagger"):
        load_checkpoint(path, task="tagger")


# --- fuzzing --------------------------------------------------------------------------

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def load_never_crashes(path: Path, data: bytes) -> None:
    """Loading `data` gives a checkpoint or a CheckpointError of one clear line; any other
    exception (a crash) fails the test."""
    path.write_bytes(data)
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as err:  # the only acceptable failure
        assert_one_line(err)
    else:
        assert isinstance(ckpt, Checkpoint) and isinstance(ckpt.task, str)


def assert_one_line(err: Exception) -> None:
    message = str(err)
    assert message.strip() and "\n" not in message, repr(message)


@FUZZ
@given(data=st.binary(max_size=512))
def test_fuzz_random_bytes(tmp_path, data):
    load_never_crashes(tmp_path / "fuzz.safetensors", data)


@pytest.fixture(scope="module")
def valid_checkpoint_bytes(tmp_path_factory) -> bytes:
    return valid_bytes(tmp_path_factory.mktemp("valid"))


@FUZZ
@given(
    cut=st.integers(min_value=0),
    flips=st.lists(st.tuples(st.integers(0), st.integers(1, 255)), max_size=4),
)
def test_fuzz_mutated_checkpoints(tmp_path, valid_checkpoint_bytes, cut, flips):
    data = bytearray(valid_checkpoint_bytes[: cut % (len(valid_checkpoint_bytes) + 1)])
    for position, mask in flips:
        if data:
            data[position % len(data)] ^= mask
    load_never_crashes(tmp_path / "fuzz.safetensors", bytes(data))


sizes = st.lists(st.integers(min_value=-1, max_value=2**65), max_size=3)
tensor_entries = st.dictionaries(
    st.text(max_size=3),
    st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(["F32", "BF16", "I64", "U8", "BOOL", "F4", "NOPE"]),
            "shape": sizes,
            "data_offsets": sizes,
        }
    ),
    max_size=3,
)


@FUZZ
@given(entries=tensor_entries, body=st.binary(max_size=40))
def test_fuzz_tensor_headers(tmp_path, entries, body):
    header = {"__metadata__": {"textrnn": json.dumps(document())}, **entries}
    path = tmp_path / "fuzz.safetensors"
    load_never_crashes(
        path, len(json.dumps(header)).to_bytes(8, "little") + json.dumps(header).encode() + body
    )


skeletons = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3) | st.sampled_from(["t", "u"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["__tensor__", "__tuple__", "__dict__", "k"]), inner, max_size=2
        )
    ),
    max_leaves=12,
)


@FUZZ
@given(skeleton=skeletons)
def test_fuzz_unflatten(skeleton):
    try:
        unflatten_state(skeleton, {"t": torch.ones(1)})
    except CheckpointError as err:  # the only acceptable failure; any other exception fails
        assert_one_line(err)


# --- summaries ------------------------------------------------------------------------


def test_describe_summarises_a_checkpoint(tmp_path):
    path = tmp_path / "c.safetensors"
    tensors = {"model.w": torch.zeros(3, 4), "model.b": torch.zeros(4), "optim.m": torch.zeros(99)}
    save_checkpoint(path, Checkpoint("lm", sample_meta(), tensors))
    info = describe(path)
    assert json.loads(json.dumps(info)) == info
    assert info["path"] == str(path)
    assert info["file_bytes"] == path.stat().st_size
    assert info["format_version"] == FORMAT_VERSION
    assert info["textrnn_version"] == textrnn.__version__
    assert info["task"] == "lm"
    assert info["parameters"] == 16  # model.* only
    assert info["tensors"] == 3
    assert info["model_config"] == sample_meta()["model_config"]
    assert info["tokenizers"] == {"text": {"kind": "char", "unit": "grapheme", "vocab_size": 4}}
    assert (info["step"], info["epoch"]) == (120, 2)
    assert info["metrics"] == {"best": {"val_loss": 1.25, "val_bpc": 1.8}}
    assert info["data"]["train"]["sha256"] == "ab" * 32
    datetime.fromisoformat(info["created"])


def test_describe_summarises_each_tokenizer_of_a_translit_model(tmp_path):
    path = tmp_path / "c.safetensors"
    tokenizers = {
        "source": {"kind": "char", "vocab_size": 30},
        "target": {"kind": "char", "vocab": {"a": 0}},
    }
    save_checkpoint(path, Checkpoint("translit", {"tokenizers": tokenizers}, {}))
    info = describe(path)
    assert info["tokenizers"] == {
        "source": {"kind": "char", "vocab_size": 30},
        "target": {"kind": "char", "vocab_size": 1},
    }
    assert info["parameters"] == 0
    assert "step" not in info and "data" not in info


def test_fingerprint_file_streams_large_files(tmp_path, monkeypatch):
    import hashlib

    import textrnn.files

    monkeypatch.setattr(textrnn.files, "CHUNK_BYTES", 1000)
    data = os.urandom(2500)
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    assert fingerprint_file(path) == {
        "name": "corpus.txt",
        "bytes": 2500,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    with pytest.raises(DataError, match="cannot read"):
        fingerprint_file(tmp_path / "missing.txt")
