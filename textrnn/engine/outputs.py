"""The files a training run writes beside its best checkpoint, and the lock that keeps two
runs from writing the same ones: `x.ckpt` (best), `x.last.ckpt` (resumable),
`x.metrics.jsonl` (one JSON record per run start, progress report and validation: read
by `engine/metrics_log.py`), `x.ckpt.lock`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:  # POSIX; the lock falls back to O_EXCL without it (Windows)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

from textrnn.errors import TextrnnError
from textrnn.files import remove_quietly


def last_path(out: Path) -> Path:
    """Where the resumable 'last' checkpoint lives beside the best one: x.ckpt -> x.last.ckpt."""
    return out.with_name(out.stem + ".last" + out.suffix)


def metrics_path(out: Path) -> Path:
    return out.with_name(out.stem + ".metrics.jsonl")


def lock_path(out: Path) -> Path:
    """The lock file of a training that writes `out`: x.ckpt -> x.ckpt.lock."""
    return out.with_name(out.name + ".lock")


@contextmanager
def output_lock(out: Path) -> Iterator[Path]:
    """Hold `<out>.lock` (holding the PID) while a training writes `out` and its siblings.

    A second training into the same path fails with a message naming the lock and the
    PID that holds it. The lock is an flock on the file, so the kernel releases it when
    its holder dies, even by SIGKILL: a lock file left behind is simply taken over.
    Without flock (Windows) the file is created with O_EXCL and one left behind by a
    crash must be deleted by hand; the message says so.
    """
    path = lock_path(out)
    fd = _take_lock(path) if fcntl is not None else _take_lock_excl(path)
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as err:  # a full disk
            raise TextrnnError(
                f"cannot write the lock file {path}: {err.strerror or err}"
            ) from None
        yield path
    finally:
        if fcntl is not None:  # unlinked while still held: no one can take a file that goes away
            remove_quietly(path)
            os.close(fd)
        else:  # pragma: no cover - Windows cannot delete an open file
            os.close(fd)
            remove_quietly(path)


def _take_lock(path: Path) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise TextrnnError(
                f"cannot create the lock file {path}: {err.strerror or err}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise _locked_error(path, holder, stale_hint=False) from None
        except OSError:  # a filesystem without flock: the file still names the PID
            return fd
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed the file while we waited for it: start again


def _take_lock_excl(path: Path) -> int:  # pragma: no cover - platforms without flock
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        fd = os.open(path, os.O_RDONLY)
        holder = _lock_holder(fd)
        os.close(fd)
        raise _locked_error(path, holder, stale_hint=True) from None
    except OSError as err:
        raise TextrnnError(f"cannot create the lock file {path}: {err.strerror or err}") from None


def _lock_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def _locked_error(path: Path, holder: str, *, stale_hint: bool) -> TextrnnError:
    out = path.with_name(path.name.removesuffix(".lock"))
    hint = "; if that process has ended, delete the lock file" if stale_hint else ""
    return TextrnnError(
        f"another training (PID {holder}) is writing {out}: {path} is locked; "
        f"wait for it to finish or choose another --out{hint}"
    )


def open_log(path: Path):
    """The metrics log, unbuffered: a failed write leaves nothing behind to fail again at close."""
    try:
        return path.open("ab", buffering=0)
    except OSError as err:
        raise TextrnnError(f"cannot write the metrics log {path}: {err.strerror or err}") from None


def out_path_for(corpus: str | os.PathLike) -> Path:
    return Path("checkpoints") / (Path(corpus).stem + ".ckpt")
