"""Writing files so that a crash never leaves a half-written one, and naming a file by its content.

Every file textrnn writes for later (checkpoints, tokenizer files, the token-id cache)
goes through `atomic_file`: the bytes go to `.<name>.tmp-<pid>` beside the target,
are fsynced, and the temporary file is renamed over the target, so a reader sees the
old file or the new one, never a mix. Failures surface as `OSError`; each caller words
its own one-line error (a checkpoint, a tokenizer file, a cache entry).
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from textrnn.errors import DataError

CHUNK_BYTES = 1 << 20  # fingerprint_file reads this much at a time


def temp_path(path: Path, pid: int | str) -> Path:
    """Where a save of `path` by process `pid` writes before the rename."""
    return path.with_name(f".{path.name}.tmp-{pid}")


@contextmanager
def atomic_file(path: str | os.PathLike, *, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary file to write; when the block ends without an error it replaces `path`.

    With `durable` the data and the rename are fsynced (checkpoints, tokenizer files);
    without, a crash may lose the new file but never exposes a partial one (caches).
    """
    path = Path(path)
    tmp = temp_path(path, os.getpid())
    done = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            remove_quietly(tmp)
    if durable:
        _fsync_dir(path.parent)


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` with `data` (see `atomic_file`). Raises OSError."""
    with atomic_file(path) as f:
        f.write(data)


def remove_partial_saves(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that saves of `path` killed mid-write (SIGKILL, power cut)
    left beside it; return them. Call it only when no save of `path` can be in progress
    (the training loop holds a lock on its output)."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(glob.escape(temp_path(path, "").name) + "*"):
        remove_quietly(tmp)
        removed.append(tmp)
    return removed


def remove_quietly(path: Path) -> None:
    """Delete `path` if it is there; a failure is not worth reporting (a save already failed)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable. Best effort: some systems cannot fsync a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fingerprint_file(path: str | os.PathLike) -> dict:
    """{"name", "bytes", "sha256"} of a file (e.g. the training corpus), read 1 MiB at a time."""
    path = Path(path)
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    return {"name": path.name, "bytes": size, "sha256": digest.hexdigest()}


def file_info(path: str | os.PathLike) -> dict:
    """fingerprint_file's record plus the absolute path: how a checkpoint names its training data."""
    return {**fingerprint_file(path), "path": str(Path(path).resolve())}
