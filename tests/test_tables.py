"""Tables of texts and labels (textrnn.formats.tables): layouts, detection, line-numbered errors,
and round trips of any text through each format (property tests)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textrnn.errors import DataError, UsageError
from textrnn.formats.tables import Layout, Row, iter_rows, parse_column, read_table, sniff


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def pairs(rows: list[Row]) -> list[tuple[str, str | None]]:
    return [(r.text, r.label) for r in rows]


def test_glue_tsv_with_a_header(tmp_path):
    path = write(tmp_path, "train.tsv", "sentence\tlabel\na fine film .\t1\ndull\t0\n")
    rows, layout = read_table(path)
    assert pairs(rows) == [("a fine film .", "1"), ("dull", "0")]
    assert [r.line for r in rows] == [2, 3]
    assert layout == Layout("tsv", text=0, label=1, header=("sentence", "label"), width=2)


def test_text_label_header_in_either_order(tmp_path):
    path = write(tmp_path, "x.tsv", "label\ttext\npos\tgood\nneg\tbad\n")
    assert pairs(read_table(path)[0]) == [("good", "pos"), ("bad", "neg")]


def test_headerless_csv_finds_the_text_and_the_label_column(tmp_path):
    # The IITP layout: label,text without a header, the text quoted where it holds a comma.
    body = 'negative,"यह फ़ोन, सच में, धीमा है ।"\npositive,बहुत अच्छा है ।\nneutral,"एक ""उद्धरण"" भी"\n'
    rows, layout = read_table(write(tmp_path, "hi.csv", body))
    assert pairs(rows) == [("यह फ़ोन, सच में, धीमा है ।", "negative"), ("बहुत अच्छा है ।", "positive"),
                           ('एक "उद्धरण" भी', "neutral")]  # fmt: skip
    assert (layout.header, layout.text, layout.label) == (None, 1, 0)
    assert layout.describe() == "csv, no header, text column 2, label column 1"


def test_csv_fields_may_span_lines_and_rows_keep_their_first_line(tmp_path):
    path = write(tmp_path, "x.csv", 'text,label\n"two\nlines",a\nthird,b\n')
    rows, _ = read_table(path)
    assert pairs(rows) == [("two\nlines", "a"), ("third", "b")]
    assert [r.line for r in rows] == [2, 4]


def test_columns_by_name_or_number(tmp_path):
    body = "id\tstars\tbody\n1\t5\tloved it\n2\t1\thated it\n3\t5\tfine\n"
    path = write(tmp_path, "x.tsv", body)
    by_name, _ = read_table(path, text_column="body", label_column="stars")
    # By number: "stars" is a header, since no later row has that label and labels repeat.
    by_number, _ = read_table(path, text_column="3", label_column="2")
    assert pairs(by_name) == pairs(by_number) == [("loved it", "5"), ("hated it", "1"), ("fine", "5")]
    with pytest.raises(UsageError, match="no column named 'review'"):
        read_table(path, text_column="review", label_column="stars")
    with pytest.raises(UsageError, match="--label-column 7, but rows have 3 fields"):
        read_table(path, text_column="3", label_column="7")
    with pytest.raises(UsageError, match="start at 1"):
        parse_column("0")


def test_jsonl_with_any_label_type(tmp_path):
    lines = [{"text": "ok", "label": 1}, {"text": "meh", "label": "neutral"}, {"text": "no", "label": True}]
    path = write(tmp_path, "x.jsonl", "".join(json.dumps(x) + "\n" for x in lines) + "\n")
    assert pairs(read_table(path)[0]) == [("ok", "1"), ("meh", "neutral"), ("no", "true")]
    custom = write(tmp_path, "y.jsonl", '{"review": "fine", "stars": 4}\n')  # stars: the other field
    assert pairs(read_table(custom)[0]) == [("fine", "4")]


def test_fasttext_lines(tmp_path):
    path = write(tmp_path, "x.txt", "__label__pos a fine film\n\n__label__neg  dull , slow\n")
    rows, layout = read_table(path)
    assert layout.fmt == "fasttext"
    assert pairs(rows) == [("a fine film", "pos"), (" dull , slow", "neg")]


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("x.tsv", "sentence\tlabel\ngood\t1\nbad\n", r"x.tsv:3: 1 tab-separated fields, expected 2"),
        ("x.tsv", "sentence\tlabel\ngood\t1\nbad\t\n", r"x.tsv:3: empty label"),
        ("x.csv", 'text,label\n"unterminated,a\n', r"x.csv:2: malformed CSV row"),
        ("x.csv", "text,label\na,b,c\n", r"x.csv:2: 3 comma-separated fields, expected 2"),
        ("x.jsonl", '{"text": "a", "label": 1}\n{"text": "b"\n', r"x.jsonl:2: not a JSON object"),
        ("x.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', r"x.jsonl:2: no 'label' label"),
        ("x.jsonl", '{"text": "a", "label": 1}\n{"text": 3, "label": 1}\n', r"x.jsonl:2: a non-string 'text'"),
        ("x.jsonl", '{"text": "a", "label": 1}\n[1]\n', r"x.jsonl:2: not a JSON object"),
        ("x.txt", "__label__a x\nno label here\n", r"x.txt:2: no __label__LABEL"),
        ("x.txt", "__label__a __label__b x\n", r"x.txt:1: 2 labels"),
        ("x.txt", "just text\n", r"cannot tell the table's format"),
    ],
)
def test_a_malformed_row_is_one_error_naming_file_and_line(tmp_path, name, body, message):
    with pytest.raises(DataError, match=message):
        read_table(write(tmp_path, name, body))


def test_unreadable_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.tsv")
    (tmp_path / "bin.tsv").write_bytes(b"a\x00b\t1\n")
    with pytest.raises(DataError, match="binary"):
        read_table(tmp_path / "bin.tsv")
    (tmp_path / "latin1.csv").write_bytes("caf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="invalid UTF-8"):
        read_table(tmp_path / "latin1.csv")


def test_plain_lines_for_prediction_keep_every_line():
    layout, lines = sniff(["first text", "", "third"], name="<stdin>")
    assert layout.fmt == "lines"
    assert pairs(list(iter_rows(lines, layout, name="<stdin>"))) == [("first text", None), ("", None), ("third", None)]


def test_prediction_reads_the_text_column_of_a_table_without_labels():
    layout, lines = sniff(["sentence\tlabel", "good\t1", "bad\t0"], name="<stdin>", fmt="tsv")
    assert [r.text for r in iter_rows(lines, layout, name="<stdin>")] == ["good", "bad"]
    layout, lines = sniff(['{"text": "fine"}'], name="<stdin>")
    assert [r.text for r in iter_rows(lines, layout, name="<stdin>")] == ["fine"]


# ---- property tests: any text survives each format -----------------------------------------------

texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40
)
labels = st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=8)
examples = st.lists(st.tuples(texts, labels), min_size=1, max_size=8)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(rows=examples)
def test_csv_round_trip(tmp_path, rows):
    buf = io.StringIO()
    writer = csv.writer(buf)  # RFC 4180: \r\n line ends, fields with \r or \n quoted
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    path = write(tmp_path, "rt.csv", buf.getvalue())
    assert pairs(read_table(path)[0]) == rows


@SETTINGS
@given(rows=examples)
def test_jsonl_round_trip(tmp_path, rows):
    body = "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows)
    path = write(tmp_path, "rt.jsonl", body)
    assert pairs(read_table(path)[0]) == rows


@SETTINGS
@given(rows=examples)
def test_tsv_and_fasttext_round_trip_texts_without_separators(tmp_path, rows):
    clean = [(" ".join(t.replace("\t", " ").split()) or "x", y) for t, y in rows]
    tsv = write(tmp_path, "rt.tsv", "text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in clean))
    assert pairs(read_table(tsv)[0]) == clean
    ft = write(tmp_path, "rt.txt", "".join(f"__label__{y} {t}\n" for t, y in clean))
    assert pairs(read_table(ft, fmt="fasttext")[0]) == clean


@SETTINGS
@given(body=st.text(max_size=200), fmt=st.sampled_from(["tsv", "csv", "jsonl", "fasttext"]))
def test_any_input_reads_or_fails_with_a_data_error(tmp_path, body, fmt):
    path = write(tmp_path, f"any.{fmt}", body)
    try:
        rows, _ = read_table(path, fmt=fmt)
    except (DataError, UsageError):
        return
    assert rows and all(isinstance(r.text, str) and r.label for r in rows)
