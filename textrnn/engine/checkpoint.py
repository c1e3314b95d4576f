"""The one checkpoint format of textrnn: a single safetensors file, saved atomically.

On disk a checkpoint is a standard safetensors file (any safetensors reader opens it):

    8 bytes    little-endian length N of the header
    N bytes    header JSON: one entry per tensor {"dtype", "shape", "data_offsets"} and
               "__metadata__": {"textrnn": "<the textrnn document, as a JSON string>"}
    rest       the raw tensor data

The textrnn document is
    {"format": "textrnn-checkpoint", "format_version": 1, "textrnn_version": "0.1.0",
     "task": "lm" | "tagger" | "translit", "created": "<UTC ISO 8601>", "meta": {...}}
where "meta" is the task's free-form JSON ("model_config", "tokenizer", "training", ...).
Tensor names carry their role as a prefix: "model.", "optim.", "rng.", "state.".

Loading executes no code: no pickle is ever read, the header is length-checked before it
is parsed, and every problem with a file becomes one `CheckpointError` line.

Nested state such as `optimizer.state_dict()` is stored with `flatten_state`: its tensors
go to the tensor section and the rest becomes a JSON skeleton to keep in `meta`:

    tensors, skeleton = flatten_state(optimizer.state_dict(), "optim")
    save_checkpoint(path, Checkpoint("lm", {"optimizer": skeleton, ...}, {**weights, **tensors}))
    ckpt = load_checkpoint(path, task="lm")
    optimizer.load_state_dict(unflatten_state(ckpt.meta["optimizer"], ckpt.tensors))

Tensors that share memory (tied weights) are written as separate copies; the model's
`load_state_dict` ties them again, because it copies both into the one shared parameter.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from textrnn import __version__
from textrnn.errors import CheckpointError
from textrnn.files import write_atomically

FORMAT_NAME = "textrnn-checkpoint"
FORMAT_VERSION = 2
# Version 2 gave every task the same metadata keys: "tokenizers" ({name: tokenizer}; a
# language model's one tokenizer is "text") and "data" ({"train": ..., "dev": ...}).
# Version 1 files are read as version 2 (see `_upgrade`); a tagger of version 1 also
# numbered <pad> 0 and <unk> 1, which its loader swaps.
# A task names itself ("lm", "tagger", "translit", ...): the format does not enumerate
# the tasks, so a new task needs no change here. A name is a short lowercase identifier.
TASK_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")

METADATA_KEY = "textrnn"  # the one key of the safetensors "__metadata__" that textrnn uses
HEADER_KEY = "header"  # meta key that read_meta/load_checkpoint fill with facts about the file
MAX_HEADER_BYTES = 64 << 20  # larger headers are refused before they are read or parsed
MAX_TENSORS = 100_000  # more tensor entries than this are refused before the header is parsed

_TASK_WORDS = {  # how messages call a task where its name alone is terse
    "lm": "language model (lm)",
    "translit": "transliteration (translit)",
    "classify": "sentence classifier (classify)",
}
_TENSOR, _TUPLE, _DICT = "__tensor__", "__tuple__", "__dict__"  # skeleton placeholders
_SCALARS = (str, int, float, bool, type(None))


@dataclass
class Checkpoint:
    task: str  # the task that wrote it: "lm" | "tagger" | "translit" | "classify"
    meta: dict  # JSON-able: "model_config", "tokenizer"/"tokenizers", "training", "metrics", ...
    tensors: dict[str, Tensor] = field(default_factory=dict)  # "model.<param>", "optim.<...>", ...


# --- saving ---------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint) -> None:
    """Write `ckpt` to `path` atomically: the old file stays whole until the new one is on disk.

    The header fields (format, versions, task, creation time) are filled in here; a
    `meta["header"]` left over from loading is dropped, as it describes the old file.
    The whole file is built in memory before it is written (safetensors' `save`).
    """
    path = Path(path)
    if not (isinstance(ckpt.task, str) and TASK_NAME.fullmatch(ckpt.task)):
        raise ValueError(f"checkpoint task must be a lowercase identifier, got {ckpt.task!r}")
    if not isinstance(ckpt.meta, dict):
        raise TypeError(f"checkpoint meta must be a dict, got {type(ckpt.meta).__name__}")
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "textrnn_version": __version__,
        "task": ckpt.task,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "meta": {k: v for k, v in ckpt.meta.items() if k != HEADER_KEY},
    }
    try:
        text = json.dumps(document)  # ASCII: any str, even a lone surrogate, survives
    except (TypeError, ValueError) as err:
        raise TypeError(f"checkpoint meta must be plain JSON data: {err}") from None
    data = safetensors_bytes(_prepare_tensors(ckpt.tensors), metadata={METADATA_KEY: text})
    try:
        write_atomically(path, data)
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path}: {err.strerror or err}") from None


def _prepare_tensors(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous CPU tensors, none sharing memory (safetensors refuses shared ones)."""
    out: dict[str, Tensor] = {}
    storages: set[int] = set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"invalid checkpoint tensor name {name!r}")
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f"checkpoint tensor {name!r} is a {type(tensor).__name__}, not a tensor"
            )
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in storages:  # e.g. tied embedding/output weights
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        if ptr:  # empty tensors have no storage to share
            storages.add(ptr)
        out[name] = t
    return out


# --- loading --------------------------------------------------------------------------


def load_checkpoint(
    path: str | os.PathLike, *, task: str | None = None, load_tensors: bool = True
) -> Checkpoint:
    """Read a checkpoint; with `task`, refuse a checkpoint of another task.

    `meta["header"]` holds facts about the file (see `read_meta`). With
    `load_tensors=False` only the header is read and `tensors` is empty.
    """
    path = Path(path)
    found, meta = read_meta(path)
    if task is not None and found != task:
        raise CheckpointError(
            f"{path} is a {found} checkpoint; this command needs a {_TASK_WORDS.get(task, task)} checkpoint"
        )
    tensors = _read_tensors(path) if load_tensors else {}
    return Checkpoint(task=found, meta=meta, tensors=tensors)


def read_meta(path: str | os.PathLike) -> tuple[str, dict]:
    """The task and meta of a checkpoint, reading only its header (no tensor data).

    The returned meta has one extra key, "header": format, format_version,
    textrnn_version, created, file_bytes and tensors ({name: {"dtype", "shape"}}).
    """
    path = Path(path)
    header, header_bytes, size = _read_header(path)
    document = _document(path, header)
    entries = _tensor_entries(path, header, header_bytes, size)
    meta = _upgrade(dict(document["meta"]), document["format_version"])
    meta[HEADER_KEY] = {
        "format": document["format"],
        "format_version": document["format_version"],
        "textrnn_version": document.get("textrnn_version"),
        "created": document.get("created"),
        "file_bytes": size,
        "tensors": entries,
    }
    return document["task"], meta


def _upgrade(meta: dict, version: int) -> dict:
    """Metadata of an older format version under the current version's keys."""
    if version < 2:
        if "tokenizer" in meta and "tokenizers" not in meta:
            meta["tokenizers"] = {"text": meta.pop("tokenizer")}
        if "corpus" in meta and "data" not in meta:
            corpus = meta.pop("corpus")
            # A language model named its one training file; a tagger its train and dev files.
            is_files = isinstance(corpus, dict) and "train" in corpus
            meta["data"] = corpus if is_files else {"train": corpus, "dev": None}
    return meta


def _read_header(path: Path) -> tuple[dict, int, int]:
    """The parsed safetensors header of `path`, its length in bytes, and the file size."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            length = _header_length(path, f.read(9), size)
            f.seek(8)
            raw = f.read(length)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    if len(raw) < length:  # the file shrank while we read it
        raise CheckpointError(f"{path} is truncated")
    return _parse_header(path, raw), length, size


def _header_length(path: Path, head: bytes, size: int) -> int:
    """Check the 8-byte header length against the limit and the file size, before any parsing."""
    length = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and length <= MAX_HEADER_BYTES and 8 + length <= size:
        return length
    if size == 0:
        raise CheckpointError(f"{path} is empty, not a textrnn checkpoint")
    if _looks_pickled(head):
        raise CheckpointError(
            f"{path} is not a textrnn checkpoint (it looks like a pickle / PyTorch .pt file; "
            "textrnn never loads pickles)"
        )
    if head[8:9] != b"{":
        raise CheckpointError(f"{path} is not a textrnn checkpoint (not a safetensors file)")
    if length > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{path} is not a usable checkpoint: its header claims {length} bytes, "
            f"more than the {MAX_HEADER_BYTES >> 20} MiB textrnn accepts"
        )
    raise CheckpointError(
        f"{path} is truncated: its header alone needs {8 + length} bytes but the file has {size}"
    )


def _looks_pickled(head: bytes) -> bool:
    """A pickle (protocol 2+, also old torch.save files) or a zip (torch.save since 1.6)."""
    pickle = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    return pickle or head[:4] == b"PK\x03\x04"


def _parse_header(path: Path, raw: bytes) -> dict:
    # Counted on the raw bytes so that a hostile header cannot make us build millions of objects.
    if raw.count(b'"data_offsets"') > MAX_TENSORS:
        raise CheckpointError(f"{path} has more than {MAX_TENSORS} tensors; textrnn refuses it")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # includes UnicodeDecodeError and JSONDecodeError
        raise CheckpointError(f"{path} is corrupt: its header is not valid JSON") from None
    return header  # a dict: _header_length saw it start with '{'


def _document(path: Path, header: dict) -> dict:
    """The validated textrnn document stored in the header's "__metadata__"."""
    metadata = header.get("__metadata__")
    text = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if not isinstance(text, str):
        raise CheckpointError(
            f"{path} is not a textrnn checkpoint (a safetensors file without textrnn metadata)"
        )
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise CheckpointError(
            f"{path} is corrupt: its textrnn metadata is not valid JSON"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a textrnn checkpoint")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path} is corrupt: invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer textrnn (format version {version}; this textrnn "
            f"reads up to {FORMAT_VERSION}): upgrade textrnn"
        )
    task = document.get("task")
    if not (isinstance(task, str) and TASK_NAME.fullmatch(task)):
        raise CheckpointError(f"{path} is corrupt: its task is {task!r}, not a task name")
    if not isinstance(document.get("meta"), dict):
        raise CheckpointError(f"{path} is corrupt: its textrnn metadata has no meta object")
    return document


def _tensor_entries(path: Path, header: dict, header_bytes: int, size: int) -> dict[str, dict]:
    """{name: {"dtype", "shape"}} of every tensor, after checking the file is not cut short."""
    entries: dict[str, dict] = {}
    end = 0  # where the tensor data ends, counted from the end of the header
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and _is_sizes(entry.get("shape"))
            and _is_sizes(offsets)
            and len(offsets) == 2
            and offsets[0] <= offsets[1]
        ):
            raise CheckpointError(f"{path} is corrupt: bad header entry for tensor {name!r}")
        entries[name] = {"dtype": entry["dtype"], "shape": entry["shape"]}
        end = max(end, offsets[1])
    expected = 8 + header_bytes + end
    if size < expected:
        raise CheckpointError(
            f"{path} is truncated: it should have {expected} bytes but has {size}"
        )
    if size > expected:
        raise CheckpointError(f"{path} is corrupt: {size - expected} unexpected bytes at its end")
    return entries


def _is_sizes(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    )


def _read_tensors(path: Path) -> dict[str, Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            # safetensors maps the file into memory; owned copies cannot crash (SIGBUS) if the
            # file is later overwritten in place, and do not keep it open (Windows).
            return {name: f.get_tensor(name).clone() for name in f.keys()}
    except Exception as err:  # SafetensorError, or torch refusing a dtype/shape: a corrupt file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path} is corrupt: {reason}") from err


# --- nested state (optimizer, RNG, ...) ----------------------------------------------


def flatten_state(obj: Any, prefix: str) -> tuple[dict[str, Tensor], Any]:
    """Split nested dicts/lists/tuples of tensors and JSON scalars into tensors and a skeleton.

    Each tensor becomes {"__tensor__": name} in the skeleton, named by its path under
    `prefix` ("optim.state.0.exp_avg"). Tuples and dicts with non-string keys (optimizer
    state is keyed by int) are kept exact as {"__tuple__": [...]} and
    {"__dict__": [[key, value], ...]}, so `unflatten_state` returns what was given.
    """
    tensors: dict[str, Tensor] = {}
    return tensors, _flatten(obj, prefix, tensors)


def _flatten(obj: Any, name: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        unique, n = name, 1
        while unique in tensors:  # only for keys that contain dots, e.g. {"a.b": x, "a": {"b": y}}
            unique, n = f"{name}~{n}", n + 1
        tensors[unique] = obj
        return {_TENSOR: unique}
    if isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, tuple):
        return {_TUPLE: [_flatten(v, _join(name, i), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, _join(name, i), tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        plain = all(isinstance(k, str) for k in obj) and not (
            len(obj) == 1 and next(iter(obj)) in (_TENSOR, _TUPLE, _DICT)
        )
        if plain:
            return {k: _flatten(v, _join(name, k), tensors) for k, v in obj.items()}
        for k in obj:
            if not isinstance(k, _SCALARS):
                raise TypeError(f"cannot store dict key {k!r} at {name!r} in a checkpoint")
        return {_DICT: [[k, _flatten(v, _join(name, k), tensors)] for k, v in obj.items()]}
    raise TypeError(
        f"cannot store a {type(obj).__name__} at {name!r} in a checkpoint "
        "(only tensors, dicts, lists, tuples, str, int, float, bool and None)"
    )


def _join(prefix: str, part: object) -> str:
    return f"{prefix}.{part}" if prefix else str(part)


def unflatten_state(
    skeleton: Any, tensors: dict[str, Tensor], *, source: str = "checkpoint"
) -> Any:
    """The inverse of `flatten_state`. The skeleton comes from a file, so it is checked:
    problems raise CheckpointError, with `source` (the file) in the message."""
    try:
        return _unflatten(skeleton, tensors, source)
    except RecursionError:
        raise CheckpointError(f"{source} is corrupt: its state is nested too deeply") from None


def _unflatten(node: Any, tensors: dict[str, Tensor], source: str) -> Any:
    if isinstance(node, list):
        return [_unflatten(v, tensors, source) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, value),) = node.items()
        if key == _TENSOR:
            if not isinstance(value, str) or value not in tensors:
                raise CheckpointError(
                    f"{source} is corrupt: its state needs a tensor {value!r} it lacks"
                )
            return tensors[value]
        if key == _TUPLE:
            if not isinstance(value, list):
                raise CheckpointError(f"{source} is corrupt: malformed {_TUPLE} in its state")
            return tuple(_unflatten(v, tensors, source) for v in value)
        if key == _DICT:
            pairs = value if isinstance(value, list) else None
            if pairs is None or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], _SCALARS) for p in pairs
            ):
                raise CheckpointError(f"{source} is corrupt: malformed {_DICT} in its state")
            return {k: _unflatten(v, tensors, source) for k, v in pairs}
    return {k: _unflatten(v, tensors, source) for k, v in node.items()}


def trained_on(meta: dict, *, source: str) -> tuple[str | None, str | None]:
    """The paths of the training and dev files a checkpoint's `data` names (None where it
    names none); CheckpointError when they are malformed (`source` names the file)."""
    data = meta.get("data")
    data = data if data is not None else {}
    paths = []
    for key in ("train", "dev"):
        entry = data.get(key) if isinstance(data, dict) else data
        path = entry.get("path") if isinstance(entry, dict) else entry
        if not (path is None or (isinstance(path, str) and path)):
            raise CheckpointError(f"{source}: checkpoint metadata is invalid (data.{key} {entry!r})")
        paths.append(path)
    return paths[0], paths[1]


# --- summaries ------------------------------------------------------------------------


def describe(path: str | os.PathLike) -> dict:
    """A JSON-able summary of a checkpoint for `textrnn info`, from its header alone.

    Keys (those the checkpoint has): path, file_bytes, format_version, textrnn_version,
    created, task, parameters (elements of "model." tensors), tensors (count),
    model_config, tokenizers ({name: {kind, unit, vocab_size}}), step, epoch, metrics,
    data (the training files), sizing (how a time budget chose the model's size).
    """
    task, meta = read_meta(path)
    header = meta[HEADER_KEY]
    shapes = [e["shape"] for name, e in header["tensors"].items() if name.startswith("model.")]
    summary: dict[str, Any] = {
        "path": str(path),
        "file_bytes": header["file_bytes"],
        "format_version": header["format_version"],
        "textrnn_version": header["textrnn_version"],
        "created": header["created"],
        "task": task,
        "parameters": sum(math.prod(shape) for shape in shapes),
        "tensors": len(header["tensors"]),
    }
    if "model_config" in meta:
        summary["model_config"] = meta["model_config"]
    if isinstance(meta.get("tokenizers"), dict):
        summary["tokenizers"] = {
            name: _tokenizer_summary(t)
            for name, t in meta["tokenizers"].items()
            if isinstance(t, dict)
        }
    training = meta.get("training")
    if isinstance(training, dict):
        summary.update({k: training[k] for k in ("step", "epoch") if k in training})
    for key in ("metrics", "data", "sizing"):
        if key in meta:
            summary[key] = meta[key]
    return summary


def _tokenizer_summary(tokenizer: dict) -> dict:
    """Kind, unit and vocabulary size of a tokenizer's `to_dict()`, as far as it says."""
    summary = {k: tokenizer[k] for k in ("kind", "unit") if k in tokenizer}
    if "vocab_size" in tokenizer:
        summary["vocab_size"] = tokenizer["vocab_size"]
    elif isinstance(tokenizer.get("vocab"), (list, dict)):
        summary["vocab_size"] = len(tokenizer["vocab"])
    return summary
