"""Plain UTF-8 text files: validated (missing, directory, empty, binary and invalid UTF-8
files each become one `DataError` naming the file, and the line and byte where it
applies), read in chunks that end on line boundaries, or line by line. Every reader of
every format in textrnn starts here."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path

from textrnn.errors import DataError

CHUNK_BYTES = 1 << 20  # read corpora 1 MiB at a time so that memory stays flat


def check_text_file(path: str | os.PathLike) -> Path:
    """Return `path` as a Path if it is a readable, non-empty text file; else raise DataError."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a text file")
    try:
        with p.open("rb") as f:
            head = f.read(8192)
    except OSError as err:
        raise DataError(f"{p}: cannot read ({err.strerror})") from None
    if not head:
        raise DataError(f"{p}: file is empty")
    if b"\x00" in head:
        raise DataError(f"{p}: looks like a binary file (contains NUL bytes), expected UTF-8 text")
    return p


def iter_text_chunks(path: str | os.PathLike, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """Yield the UTF-8 text of `path` in chunks that end on a line boundary.

    Chunks end after a newline so that no grapheme cluster or word is split between
    two chunks. Invalid UTF-8 raises DataError naming the line and byte offset.
    """
    p = check_text_file(path)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0  # bytes consumed so far
    line = 1  # line number at the start of the current chunk
    pending = ""
    with p.open("rb") as f:
        first = True
        while True:
            raw = f.read(chunk_bytes)
            final = not raw
            held = decoder.getstate()[0]  # the start of a character cut by the last chunk
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as err:  # err.start counts from the held bytes
                bad_at = offset - len(held) + err.start
                bad_line = line + pending.count("\n") + (held + raw)[: err.start].count(b"\n")
                raise DataError(
                    f"{p}: invalid UTF-8 at byte {bad_at} (line {bad_line}); "
                    "textrnn reads UTF-8 text only"
                ) from None
            if first and text:  # (a chunk may end inside the mark: wait for decoded text)
                text = text.removeprefix(
                    "\ufeff"
                )  # a UTF-8 byte-order mark is not part of the text
                first = False
            offset += len(raw)
            pending += text
            if final:
                if pending:
                    yield pending
                return
            cut = pending.rfind("\n") + 1
            if cut:
                chunk, pending = pending[:cut], pending[cut:]
                line += chunk.count("\n")
                yield chunk


def read_text(path: str | os.PathLike) -> str:
    """The whole validated text of a (small) file."""
    return "".join(iter_text_chunks(path))


def iter_lines(path: str | os.PathLike) -> Iterator[str]:
    """Lines of a validated UTF-8 file without their "\n"; only "\n" ends a line.

    (str.splitlines would also cut at U+0085, U+2028 and other characters that can
    occur inside a token.) A "\r" before the "\n" is left for the parsers to strip.
    """
    pending = ""
    for chunk in iter_text_chunks(path):
        *lines, pending = (pending + chunk).split("\n")
        yield from lines
    if pending:
        yield pending
