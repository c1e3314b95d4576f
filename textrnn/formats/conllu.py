"""Tagged-sentence files: CoNLL-U and the two-column `token<TAB>tag` format.

CoNLL-U (https://universaldependencies.org/format.html): ten tab-separated columns per
word, `#` comment lines, a blank line after each sentence. Multi-word-token ranges
(`1-2`) and empty nodes (`8.1`) are kept for writing back but are not tagged, as in
the UD evaluation script. The tag comes from one column: `upos` (default), `xpos`,
`deprel`, or `misc:KEY` (the value of KEY=VALUE in MISC; `_` where KEY is absent).

Two-column (CoNLL-2003 style, for NER with BIO/BIOES tags): `token<TAB>tag` per line,
a blank line between sentences; `-DOCSTART-` lines are skipped.

Both readers stream, accept a missing final blank line and Windows line endings, and
report a malformed line as a `DataError` naming the file and line number.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from textrnn.errors import DataError, UsageError
from textrnn.formats.plain import check_text_file, iter_lines

FORMATS = ("conllu", "tsv")
CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
TAG_COLUMNS = ("upos", "xpos", "deprel")  # plus "misc:KEY"
_COLUMN_INDEX = {name: i for i, name in enumerate(CONLLU_COLUMNS)}
DOCSTART = "-DOCSTART-"


@dataclass
class Sentence:
    """One sentence: its words and (when the file has them) their tags.

    `rows` keeps a CoNLL-U sentence's original lines (comments, ranges, empty nodes
    included, split into columns for token lines) so that it can be written back
    with only the tag column changed; `word_rows[i]` is the row of word i.
    """

    words: list[str]
    tags: list[str] | None = None
    line: int = 0  # line number of the sentence's first line in its file (1-based)
    rows: list[str | list[str]] = field(default_factory=list)
    word_rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.words)


def check_column(column: str) -> str:
    """Return `column` if it names a tag column (upos, xpos, deprel, misc:KEY), else raise UsageError."""
    if column in TAG_COLUMNS or (column.startswith("misc:") and len(column) > 5):
        return column
    raise UsageError(
        f"--column must be one of {', '.join(TAG_COLUMNS)} or misc:KEY, got {column!r}"
    )


def check_format(fmt: str) -> str:
    if fmt not in (*FORMATS, "auto"):
        raise UsageError(f"data format must be one of auto, {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def detect_format(path: str | os.PathLike) -> str:
    """`conllu` for a .conllu file or one whose first token line has 10 columns, else `tsv`."""
    p = Path(path)
    if p.suffix.lower() in (".conllu", ".conll"):
        return "conllu"
    for raw in iter_lines(p):
        line = raw.rstrip("\r\n")
        if line.strip() and not line.startswith("#"):
            return "conllu" if line.count("\t") == 9 else "tsv"
    return "tsv"


def read_sentences(
    path: str | os.PathLike, *, fmt: str = "auto", column: str = "upos"
) -> Iterator[Sentence]:
    """Stream the sentences of a CoNLL-U or two-column file (see the module docstring)."""
    check_format(fmt)
    check_text_file(path)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "conllu":
        return parse_conllu(iter_lines(path), name=str(path), column=check_column(column))
    return parse_tsv(iter_lines(path), name=str(path))


def load_sentences(
    path: str | os.PathLike, *, fmt: str = "auto", column: str = "upos", keep_rows: bool = False
) -> list[Sentence]:
    """All sentences of a file, tagged; an empty file or an untagged word is a DataError.

    Without `keep_rows` the original CoNLL-U lines are dropped to save memory.
    """
    sentences = []
    for s in read_sentences(path, fmt=fmt, column=column):
        if not keep_rows:
            s.rows, s.word_rows = [], []
        sentences.append(s)
    if not sentences:
        raise DataError(f"{path}: no sentences found")
    return sentences


# ---- CoNLL-U ------------------------------------------------------------------------------

# Ours rather than the `conllu` library's: tests/test_conll.py proves the same words and tag
# columns on random files. Kept because conllu reads EWT several times slower (it parses every
# column; `python -m benchmarks libraries`), names no line in its errors, checks neither the
# column count nor the order of IDs, splits columns at two spaces as well as at tabs,
# cuts a MISC value at a second "=", and keeps no original lines to write back.


def _tag_of(cols: list[str], column: str) -> str:
    if column.startswith("misc:"):
        key = column[5:]
        for item in cols[9].split("|"):
            k, sep, v = item.partition("=")
            if sep and k == key:
                return v
        return "_"
    return cols[_COLUMN_INDEX[column]]


def parse_conllu(
    lines: Iterable[str], *, name: str = "<input>", column: str = "upos"
) -> Iterator[Sentence]:
    """Sentences of CoNLL-U `lines` (with or without line endings); `name` labels errors."""
    rows: list[str | list[str]] = []
    words: list[str] = []
    tags: list[str] = []
    word_rows: list[int] = []
    start = 0
    lineno = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if rows:
                if not words:
                    raise DataError(f"{name}:{start}: sentence has no word lines")
                yield Sentence(words, tags, start, rows, word_rows)
                rows, words, tags, word_rows = [], [], [], []
            continue
        if not rows:
            start = lineno
        if line.startswith("#"):
            if words:
                raise DataError(
                    f"{name}:{lineno}: comment line inside a sentence (missing blank line before it?)"
                )
            rows.append(line)
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DataError(
                f"{name}:{lineno}: expected 10 tab-separated CoNLL-U columns, found {len(cols)}"
            )
        ident = cols[0]
        if "-" in ident or "." in ident:  # multi-word token range or empty node: not tagged
            _check_compound_id(ident, name, lineno)
            rows.append(cols)
            continue
        if not _is_number(ident) or int(ident) != len(words) + 1:
            raise DataError(
                f"{name}:{lineno}: word ID {ident!r} out of sequence (expected {len(words) + 1})"
            )
        if not cols[1]:
            raise DataError(f"{name}:{lineno}: empty FORM column")
        word_rows.append(len(rows))
        rows.append(cols)
        words.append(cols[1])
        tags.append(_tag_of(cols, column))
    if rows:  # no blank line after the last sentence
        if not words:
            raise DataError(f"{name}:{start}: sentence has no word lines")
        yield Sentence(words, tags, start, rows, word_rows)


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and '٣', which are no CoNLL-U IDs."""
    return text.isascii() and text.isdigit()


def _check_compound_id(ident: str, name: str, lineno: int) -> None:
    sep = "-" if "-" in ident else "."
    a, _, b = ident.partition(sep)
    if not (_is_number(a) and _is_number(b)):
        raise DataError(f"{name}:{lineno}: malformed ID {ident!r}")


def set_tags(sentence: Sentence, tags: list[str], *, column: str = "upos") -> None:
    """Write `tags` into the tag column of a CoNLL-U sentence's rows (everything else kept)."""
    if len(tags) != len(sentence.word_rows):
        raise ValueError(f"{len(tags)} tags for a sentence of {len(sentence.word_rows)} words")
    for row, tag in zip(sentence.word_rows, tags, strict=True):
        cols = sentence.rows[row]
        if column.startswith("misc:"):
            cols[9] = _set_misc(cols[9], column[5:], tag)
        else:
            cols[_COLUMN_INDEX[column]] = tag
    sentence.tags = list(tags)


def _set_misc(misc: str, key: str, value: str) -> str:
    items = [] if misc == "_" else misc.split("|")
    items = [i for i in items if i.partition("=")[0] != key]
    items.append(f"{key}={value}")
    return "|".join(sorted(items, key=str.lower))


def format_conllu(sentence: Sentence, *, column: str = "upos") -> str:
    """One sentence as CoNLL-U text, ending in its blank line.

    A sentence read from CoNLL-U keeps its lines; one built from words alone gets
    ID, FORM and the tag column, with `_` elsewhere.
    """
    if not sentence.rows:
        tags = list(sentence.tags or []) or ["_"] * len(sentence.words)
        sentence = conllu_skeleton(sentence.words)
        set_tags(sentence, tags, column=column)
    lines = [r if isinstance(r, str) else "\t".join(r) for r in sentence.rows]
    return "\n".join(lines) + "\n\n"


def conllu_skeleton(words: list[str]) -> Sentence:
    """A CoNLL-U sentence with only ID and FORM filled in."""
    rows: list[str | list[str]] = [[str(i + 1), w, *("_",) * 8] for i, w in enumerate(words)]
    return Sentence(list(words), None, 0, rows, list(range(len(words))))


# ---- two columns: token<TAB>tag -------------------------------------------------------------


def parse_tsv(lines: Iterable[str], *, name: str = "<input>") -> Iterator[Sentence]:
    """Sentences of `token<TAB>tag` lines separated by blank lines (`-DOCSTART-` skipped)."""
    words: list[str] = []
    tags: list[str] = []
    start = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if words:
                yield Sentence(words, tags, start)
                words, tags = [], []
            continue
        cols = line.split("\t")
        if len(cols) != 2 or not cols[0] or not cols[1]:
            raise DataError(
                f"{name}:{lineno}: expected 'token<TAB>tag', found {len(cols)} tab-separated field(s)"
                if len(cols) != 2
                else f"{name}:{lineno}: empty token or tag"
            )
        if cols[0] == DOCSTART:
            continue
        if not words:
            start = lineno
        words.append(cols[0])
        tags.append(cols[1])
    if words:
        yield Sentence(words, tags, start)


def format_tsv(sentence: Sentence) -> str:
    """One sentence as `token<TAB>tag` lines followed by a blank line."""
    tags = sentence.tags or ["_"] * len(sentence.words)
    return "".join(f"{w}\t{t}\n" for w, t in zip(sentence.words, tags, strict=True)) + "\n"


def write_sentences(
    path: str | os.PathLike,
    sentences: Iterable[Sentence],
    *,
    fmt: str = "conllu",
    column: str = "upos",
) -> None:
    """Write sentences as CoNLL-U or two-column text (UTF-8, `\\n` line endings)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for s in sentences:
            f.write(format_conllu(s, column=column) if fmt == "conllu" else format_tsv(s))


# ---- splits -------------------------------------------------------------------------------------


def split_sentences(
    sentences: list[Sentence], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[list[Sentence], list[Sentence], list[Sentence]]:
    """Deterministic train/dev/test split in file order: the first 80%, the next 10%, the rest.

    Used for treebanks that ship as one file (Hindi PUD's first 800 sentences gives
    640 / 80 / 80).
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or any(f < 0 for f in fractions):
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    n = len(sentences)
    a = round(n * fractions[0])
    b = a + round(n * fractions[1])
    return sentences[:a], sentences[a:b], sentences[b:]


def split_file(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> tuple[Path, Path, Path]:
    """Split a CoNLL-U file into <stem>-train/-dev/-test.conllu in `out_dir` (lines kept verbatim)."""
    sentences = list(read_sentences(path, fmt="conllu"))
    if not sentences:
        raise DataError(f"{path}: no sentences found")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(path).stem
    paths = tuple(out / f"{stem}-{part}.conllu" for part in ("train", "dev", "test"))
    for p, part in zip(paths, split_sentences(sentences, fractions), strict=True):
        write_sentences(p, part, fmt="conllu")
    return paths  # type: ignore[return-value]
