"""Tables of texts with labels: TSV, CSV, JSON lines and fastText lines, read row by row
with the line each row starts on, so that a malformed row is one error naming file and line.

Any task that reads (text, label) examples starts here. The layouts:
- "tsv": tab-separated fields, no quoting (the GLUE files: `sentence<TAB>label`);
- "csv": comma-separated, RFC 4180 quoting (fields with commas, quotes and newlines);
- "jsonl": one JSON object per line (`{"text": ..., "label": ...}`);
- "fasttext": `__label__pos some text` (the label first, then the text);
- "lines": one text per line, no label (what `predict` reads from a plain file).

TSV and CSV may or may not start with a header. A first row is a header when one of its
fields is a known column name (text, sentence, label, ...) or the name of a column asked
for, or when its value in the label column occurs in no later row while the later rows'
labels repeat. JSON lines find their text and label under known names, or, with two
fields of which one is known, under the other. Columns are named by header name or by 1-based number; without either, the text is
the column whose values are longest on average and the label the one with the fewest
distinct values among the rest (the IITP reviews, `label,text` without a header).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice

from textrnn.errors import DataError, UsageError
from textrnn.formats.plain import check_text_file, iter_lines

FORMATS = ("tsv", "csv", "jsonl", "fasttext", "lines")
EXTENSIONS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
TEXT_NAMES = ("text", "sentence", "review", "content", "comment", "document", "tweet")
LABEL_NAMES = ("label", "labels", "class", "category", "sentiment", "target")
FASTTEXT_PREFIX = "__label__"
SNIFF_ROWS = 200  # rows read to detect a layout

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a long review is no error


@dataclass(frozen=True)
class Row:
    text: str
    label: str | None  # None when the table has no label column
    line: int  # 1-based line on which the row starts


@dataclass(frozen=True)
class Layout:
    """How to read a table: its format, whether a header comes first, and where text and label are."""

    fmt: str  # tsv | csv | jsonl | fasttext | lines
    text: int | str = 0  # 0-based column (tsv, csv) or key (jsonl)
    label: int | str | None = None  # likewise; None: no label
    header: tuple[str, ...] | None = None  # tsv/csv column names, when the first row holds them
    width: int = 0  # tsv/csv fields per row (0 = not checked)

    def describe(self) -> str:
        """How the layout was read, for logs and checkpoints: "csv, no header, text column 2, label column 1"."""
        if self.fmt in ("fasttext", "lines"):
            return self.fmt
        if self.fmt == "jsonl":
            return f"jsonl, text {self.text!r}, label {self.label!r}"

        def name(col: int | str | None) -> str:
            if col is None:
                return "none"
            return f"{self.header[col]!r}" if self.header else f"column {int(col) + 1}"

        head = "header" if self.header else "no header"
        return f"{self.fmt}, {head}, text {name(self.text)}, label {name(self.label)}"


def parse_column(spec: str | None) -> int | str | None:
    """A --text-column/--label-column value: a 1-based number becomes a 0-based index, else a name."""
    if spec is None:
        return None
    spec = spec.strip()
    if spec.isdigit():
        if int(spec) < 1:
            raise UsageError(f"column numbers start at 1, got {spec}")
        return int(spec) - 1
    if not spec:
        raise UsageError("a column name must not be empty")
    return spec


def read_table(
    path: str | os.PathLike,
    *,
    fmt: str = "auto",
    text_column: str | None = None,
    label_column: str | None = None,
    need_label: bool = True,
) -> tuple[list[Row], Layout]:
    """Every row of a validated table file, and the layout it was read with.

    `need_label`: the rows must have labels (training, evaluation): a table without a label
    column, or a row without a label, is a DataError.
    """
    p = check_text_file(path)
    lines = iter_lines(p)
    layout, lines = sniff(lines, name=str(p), fmt=fmt, suffix=p.suffix.lower(),
                          text_column=text_column, label_column=label_column, need_label=need_label)  # fmt: skip
    rows = list(iter_rows(lines, layout, name=str(p), need_label=need_label))
    if not rows:
        raise DataError(f"{p}: no rows")
    return rows, layout


def sniff(
    lines: Iterable[str],
    *,
    name: str,
    fmt: str = "auto",
    suffix: str = "",
    text_column: str | None = None,
    label_column: str | None = None,
    need_label: bool = False,
) -> tuple[Layout, Iterator[str]]:
    """Detect the layout of a table from its first lines; return it and all the lines again.

    `fmt` "auto" goes by the file's `suffix` (.tsv, .csv, .jsonl), else by the first
    non-blank line: `__label__` starts fastText, `{` JSON lines, a tab TSV; else a plain
    text per line (when no label is needed).
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise UsageError(f"--format must be auto or one of {', '.join(FORMATS)}, got {fmt!r}")
    it = iter(lines)
    head = list(islice(it, 4 * SNIFF_ROWS))
    text_col, label_col = parse_column(text_column), parse_column(label_column)
    if fmt == "auto":
        fmt = _guess_format(head, suffix, need_label=need_label, columns=(text_col, label_col), name=name)
    if fmt in ("fasttext", "lines"):
        if text_col is not None or label_col is not None:
            raise UsageError(f"--text-column and --label-column do not apply to {fmt} input")
        if fmt == "lines" and need_label:
            raise DataError(f"{name}: one text per line holds no labels; give a table (TSV, CSV, JSONL, fastText)")
        layout = Layout(fmt)
    elif fmt == "jsonl":
        layout = _jsonl_layout(head, text_col, label_col, name=name, need_label=need_label)
    else:
        layout = _table_layout(head, fmt, text_col, label_col, name=name, need_label=need_label)
    return layout, chain(head, it)


def iter_rows(
    lines: Iterable[str], layout: Layout, *, name: str, need_label: bool = False
) -> Iterator[Row]:
    """The rows of a table's lines (without their "\\n") under `layout`, streaming.

    Blank lines are skipped, except in "lines" input, where every line is a text (so
    that predictions stay line by line). A malformed row raises DataError "name:line: ...".
    """
    if layout.fmt in ("tsv", "csv"):
        rows = _split_rows(lines, layout.fmt, name)
        if layout.header is not None:
            next(rows, None)
        for line, fields in rows:
            yield _table_row(fields, layout, name=name, line=line, need_label=need_label)
        return
    for line, raw in enumerate(lines, 1):
        text = raw.removesuffix("\r")
        if layout.fmt == "lines":
            yield Row(text, None, line)
        elif not text.strip():
            continue
        elif layout.fmt == "jsonl":
            yield _json_row(text, layout, name=name, line=line, need_label=need_label)
        else:
            yield _fasttext_row(text, name=name, line=line, need_label=need_label)


# ---- detection ------------------------------------------------------------------------------


def _guess_format(
    head: Sequence[str], suffix: str, *, need_label: bool, columns: tuple, name: str
) -> str:
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    first = next((line for line in head if line.strip()), "")
    if first.startswith(FASTTEXT_PREFIX):
        return "fasttext"
    if first.lstrip().startswith("{"):
        return "jsonl"
    if "\t" in first:
        return "tsv"
    if need_label or any(c is not None for c in columns):
        raise DataError(
            f"{name}: cannot tell the table's format (no .tsv/.csv/.jsonl extension, no tab, "
            "JSON object or __label__ on its first line); pass --format tsv|csv|jsonl|fasttext"
        )
    return "lines"


def _split_rows(lines: Iterable[str], fmt: str, name: str) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of every non-blank TSV or CSV row; CSV rows may span several lines."""
    if fmt == "tsv":
        for line, raw in enumerate(lines, 1):
            raw = raw.removesuffix("\r")
            if raw.strip():
                yield line, raw.split("\t")
        return
    reader = csv.reader((line + "\n" for line in lines), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(f"{name}:{start}: malformed CSV row ({err})") from None
        if fields and any(f.strip() for f in fields):
            yield start, fields


def _table_layout(
    head: Sequence[str], fmt: str, text_col, label_col, *, name: str, need_label: bool
) -> Layout:
    rows = [fields for _, fields in islice(_split_rows(head, fmt, name), SNIFF_ROWS)]
    if not rows:
        raise DataError(f"{name}: no rows")
    first = [f.strip() for f in rows[0]]
    lowered = [f.lower() for f in first]
    width = len(first)
    asked = {c for c in (text_col, label_col) if isinstance(c, str)}
    is_header = bool(asked & set(first)) or any(f in TEXT_NAMES + LABEL_NAMES for f in lowered)
    if not is_header and len(rows) >= 3:  # a label column whose first value is like no other
        text_guess = text_col if isinstance(text_col, int) else _longest_column(rows[1:], width, exclude=label_col)
        lab = label_col if isinstance(label_col, int) else _fewest_values_column(rows[1:], width, exclude=text_guess)
        values = [r[lab].strip() for r in rows[1:] if lab is not None and lab < len(r)]
        is_header = bool(values) and first[lab] not in values and len(set(values)) < len(values)
    header = tuple(first) if is_header else None
    data = rows[1:] if is_header else rows

    def resolve(col: int | str | None, what: str) -> int | None:
        if col is None or isinstance(col, int):
            if isinstance(col, int) and col >= width:
                raise UsageError(f"{name}: --{what}-column {col + 1}, but rows have {width} fields")
            return col
        if header is None or col not in header:
            have = f"columns {', '.join(header)}" if header else "no header"
            raise UsageError(f"{name}: no column named {col!r} ({have})")
        return header.index(col)

    text, label = resolve(text_col, "text"), resolve(label_col, "label")
    if header is not None:
        if text is None:
            text = next((i for i, f in enumerate(lowered) if f in TEXT_NAMES and i != label), None)
        if label is None:
            label = next((i for i, f in enumerate(lowered) if f in LABEL_NAMES and i != text), None)
    if text is None:
        text = _longest_column(data, width, exclude=label)
    if label is None and width > 1:
        label = _fewest_values_column(data, width, exclude=text)
    if text is None:
        raise DataError(f"{name}: cannot tell which column holds the text; pass --text-column")
    if label is None and need_label:
        raise DataError(f"{name}: no label column; pass --label-column")
    return Layout(fmt, text=text, label=label, header=header, width=width)


def _longest_column(rows: list[list[str]], width: int, *, exclude: int | None) -> int | None:
    candidates = [c for c in range(width) if c != exclude]
    if not candidates:
        return None
    mean = {c: sum(len(r[c]) for r in rows if c < len(r)) / max(1, len(rows)) for c in candidates}
    return max(candidates, key=lambda c: (mean[c], -c))


def _fewest_values_column(rows: list[list[str]], width: int, *, exclude: int) -> int | None:
    candidates = [c for c in range(width) if c != exclude]
    if not candidates:
        return None
    distinct = {c: len({r[c].strip() for r in rows if c < len(r)}) for c in candidates}
    return min(candidates, key=lambda c: (distinct[c], c))


def _jsonl_layout(head: Sequence[str], text_col, label_col, *, name: str, need_label: bool) -> Layout:
    if isinstance(text_col, int) or isinstance(label_col, int):
        raise UsageError("JSON lines name their fields: give --text-column/--label-column as keys")
    line, first = next(((i, s) for i, s in enumerate(head, 1) if s.strip()), (0, ""))
    if not line:
        raise DataError(f"{name}: no rows")
    obj = _json_object(first.removesuffix("\r"), name=name, line=line)
    keys = [k for k in obj]
    text = text_col or next((k for k in keys if k.lower() in TEXT_NAMES), None)
    label = label_col or next((k for k in keys if k.lower() in LABEL_NAMES and k != text), None)
    if len(keys) == 2 and (text is None) != (label is None):  # two fields: the other one
        other = next(k for k in keys if k not in (text, label))
        text, label = (other, label) if text is None else (text, other)
    if text is None:
        raise DataError(f"{name}:{line}: no text field (one of {', '.join(TEXT_NAMES)}); pass --text-column")
    if label is None and need_label:
        raise DataError(f"{name}:{line}: no label field (one of {', '.join(LABEL_NAMES)}); pass --label-column")
    return Layout("jsonl", text=text, label=label)


# ---- rows ----------------------------------------------------------------------------------------


def _table_row(fields: list[str], layout: Layout, *, name: str, line: int, need_label: bool) -> Row:
    sep = "tab-separated" if layout.fmt == "tsv" else "comma-separated"
    if layout.width and len(fields) != layout.width:
        raise DataError(f"{name}:{line}: {len(fields)} {sep} fields, expected {layout.width}")
    text = fields[layout.text]
    label = None
    if layout.label is not None:
        label = fields[layout.label].strip()
        if not label and need_label:
            raise DataError(f"{name}:{line}: empty label")
    return Row(text, label, line)


def _json_object(text: str, *, name: str, line: int) -> dict:
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        reason = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
        raise DataError(f"{name}:{line}: not a JSON object ({reason})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{name}:{line}: not a JSON object")
    return obj


def _json_row(text: str, layout: Layout, *, name: str, line: int, need_label: bool) -> Row:
    obj = _json_object(text, name=name, line=line)
    value = obj.get(layout.text)
    if not isinstance(value, str):
        what = "no" if value is None else "a non-string"
        raise DataError(f"{name}:{line}: {what} {layout.text!r} text field")
    label = None
    if layout.label is not None and layout.label in obj:
        raw = obj[layout.label]
        if isinstance(raw, (dict, list)) or raw is None:
            raise DataError(f"{name}:{line}: label {layout.label!r} must be a string or a number")
        label = (raw if isinstance(raw, str) else json.dumps(raw)).strip()
    if need_label and not label:
        raise DataError(f"{name}:{line}: no {layout.label!r} label")
    return Row(value, label, line)


def _fasttext_row(text: str, *, name: str, line: int, need_label: bool) -> Row:
    words = text.split(" ")
    labels = []
    while words and words[0].startswith(FASTTEXT_PREFIX):
        labels.append(words.pop(0)[len(FASTTEXT_PREFIX) :])
    if len(labels) > 1:
        raise DataError(f"{name}:{line}: {len(labels)} labels; one label per text is supported")
    if labels and not labels[0]:
        raise DataError(f"{name}:{line}: empty label after {FASTTEXT_PREFIX}")
    if need_label and not labels:
        raise DataError(f"{name}:{line}: no {FASTTEXT_PREFIX}LABEL at the start of the line")
    return Row(" ".join(words), labels[0] if labels else None, line)

