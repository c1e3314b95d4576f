"""Lexicon files: TSV, one (source, target[, count]) pair per line, the columns told apart
by script (the Latin-script column is the romanised side) or named explicitly."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import regex

from textrnn.errors import DataError, UsageError
from textrnn.formats.plain import check_text_file, iter_lines
from textrnn.tasks.translit.config import DIRECTIONS
from textrnn.text import normalize

_LATIN = regex.compile(r"\p{Latin}")


_LETTER = regex.compile(r"\p{L}")


@dataclass(frozen=True)
class Layout:
    """Which columns of a lexicon hold the source, the target and the count."""

    source: int  # 0-based column
    target: int
    count: int | None  # None: every row counts once

    def describe(self) -> str:
        count = f", count column {self.count + 1}" if self.count is not None else ""
        return f"source column {self.source + 1}, target column {self.target + 1}{count}"


@dataclass
class Lexicon:
    pairs: list[tuple[str, str]]  # (source, target), NFC, one per line
    counts: list[int]  # attestation count per pair (1 without a count column)
    layout: Layout
    path: str


def _fields(line: str) -> list[str]:
    return line.rstrip("\r").split("\t")


def _latin_share(words: Iterable[str]) -> float:
    letters = latin = 0
    for w in words:
        letters += len(_LETTER.findall(w))
        latin += len(_LATIN.findall(w))
    return latin / letters if letters else 0.0


def detect_layout(
    path: str | Path,
    *,
    direction: str = "to-native",
    source_column: int | None = None,
    target_column: int | None = None,
) -> Layout:
    """The layout of a lexicon: explicit columns (1-based), else the first two columns with
    the Latin-script one as the source for `to-native` and as the target for `to-latin`.

    When the script does not tell the two apart, column 1 -> 2 is `to-native`. The
    count is column 3 where the pair is columns 1 and 2 and line 1 has an integer there.
    """
    if direction not in DIRECTIONS:
        raise UsageError(f"--direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if (source_column is None) != (target_column is None):
        raise UsageError("--source-column and --target-column go together")
    first: list[list[str]] = []
    for line in iter_lines(check_text_file(path)):
        if line.strip():
            first.append(_fields(line))
            if len(first) == 200:
                break
    if not first:
        raise DataError(f"{path}: no lexicon lines")
    if source_column is not None:
        for name, col in (("--source-column", source_column), ("--target-column", target_column)):
            if col < 1:
                raise UsageError(f"{name} must be at least 1, got {col}")
        if source_column == target_column:
            raise UsageError("--source-column and --target-column must differ")
        return Layout(source_column - 1, target_column - 1, None)
    rows = [r for r in first if len(r) >= 2]
    share = [_latin_share(r[i] for r in rows) for i in (0, 1)]
    latin = 1 if share[1] > 0.5 >= share[0] else 0  # column 1 unless only column 2 is Latin
    native = 1 - latin
    src, tgt = (latin, native) if direction == "to-native" else (native, latin)
    count = 2 if len(first[0]) >= 3 and first[0][2].strip().isdigit() else None
    return Layout(src, tgt, count)


def read_lexicon(path: str | Path, layout: Layout, *, lowercase: bool = False) -> Lexicon:
    """Every (source, target) pair of a TSV lexicon; a malformed line is a DataError naming
    the file and line. Blank lines are skipped; sources are lowercased with `lowercase`."""
    pairs: list[tuple[str, str]] = []
    counts: list[int] = []
    need = max(layout.source, layout.target, -1 if layout.count is None else layout.count) + 1
    for number, line in enumerate(iter_lines(check_text_file(path)), 1):
        if not line.strip():
            continue
        cols = _fields(line)
        if len(cols) < need:
            raise DataError(
                f"{path}:{number}: expected at least {need} tab-separated columns, found {len(cols)}"
            )
        src, tgt = cols[layout.source].strip(), cols[layout.target].strip()
        if not src or not tgt:
            side = "source" if not src else "target"
            raise DataError(f"{path}:{number}: empty {side} column")
        count = 1
        if layout.count is not None:
            text = cols[layout.count].strip()
            if not text.isdigit() or not text.isascii():
                raise DataError(
                    f"{path}:{number}: count column holds {text!r}, expected a whole number"
                )
            count = int(text)
        src = normalize(src, "nfc")
        pairs.append((src.lower() if lowercase else src, normalize(tgt, "nfc")))
        counts.append(count)
    if not pairs:
        raise DataError(f"{path}: no lexicon lines")
    return Lexicon(pairs, counts, layout, str(path))


def merge_duplicates(lexicon: Lexicon) -> tuple[list[tuple[str, str]], list[int]]:
    """Distinct pairs in first-seen order, with the counts of repeated lines added up."""
    total: dict[tuple[str, str], int] = {}
    for pair, count in zip(lexicon.pairs, lexicon.counts, strict=True):
        total[pair] = total.get(pair, 0) + count
    return list(total), list(total.values())
