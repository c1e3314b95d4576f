"""Reading the input of the streaming commands (`tag predict`, `translit predict`, `tokenize encode`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from textrnn.errors import DataError

T = TypeVar("T")


def stdin_lines() -> Iterator[str]:
    """Lines of stdin (UTF-8 checked), each without its "\\n"."""
    if sys.stdin is None:
        return
    if not hasattr(sys.stdin, "buffer"):  # a text stream put in place by a caller
        for line in sys.stdin:
            yield line.removesuffix("\n")
        return
    for number, raw in enumerate(sys.stdin.buffer, start=1):  # bytes lines end at b"\n" only
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(
                f"<stdin>:{number}: invalid UTF-8; textrnn reads UTF-8 text only"
            ) from None
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark is no text
            if not line:  # stdin held a byte-order mark and nothing else: no line at all
                return
        yield line.removesuffix("\n")


def interactive() -> bool:
    """Whether stdin is a terminal: someone types, and waits for each line's answer."""
    return sys.stdin is not None and hasattr(sys.stdin, "isatty") and sys.stdin.isatty()


def shown_as_it_goes(file: object) -> bool:
    """Whether a streaming command's output is its own progress: someone types its input
    (no FILE, stdin a terminal), or its output goes to a terminal."""
    out = sys.stdout
    return (file is None and interactive()) or (hasattr(out, "isatty") and out.isatty())


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter), taken as they come: output can follow input."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
