"""CoNLL-U and two-column readers/writers (textrnn.formats.conllu).

The CoNLL-U reader is proved against the `conllu` library (a dev dependency) on random files."""

from __future__ import annotations

from pathlib import Path

import conllu
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textrnn.errors import DataError, UsageError
from textrnn.formats.conllu import (
    Sentence,
    check_column,
    detect_format,
    format_conllu,
    load_sentences,
    parse_conllu,
    parse_tsv,
    read_sentences,
    set_tags,
    split_file,
    split_sentences,
    write_sentences,
)

CONLLU = """\
# newdoc id = d1
# sent_id = 1
# text = Don't stop.
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\tNE=O
3\tstop\tstop\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No|NE=B-ACT
3.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t3:conj\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = 2
1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def write(tmp_path: Path, text: str, name: str = "x.conllu", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def test_conllu_skips_ranges_empty_nodes_and_comments(tmp_path):
    sents = load_sentences(write(tmp_path, CONLLU))
    assert [s.words for s in sents] == [["Do", "n't", "stop", "."], ["Hi"]]
    assert [s.tags for s in sents] == [["AUX", "PART", "VERB", "PUNCT"], ["INTJ"]]
    assert [s.line for s in sents] == [1, 11]


def test_missing_final_blank_line_and_windows_line_endings(tmp_path):
    text = CONLLU.rstrip("\n")  # no blank line after the last sentence
    for newline in ("\n", "\r\n"):
        sents = load_sentences(write(tmp_path, text, newline=newline))
        assert [s.words for s in sents] == [["Do", "n't", "stop", "."], ["Hi"]]
        assert sents[0].tags == ["AUX", "PART", "VERB", "PUNCT"]  # no "\r" left in the last column


@pytest.mark.parametrize(
    ("column", "tags"),
    [
        ("upos", ["AUX", "PART", "VERB", "PUNCT"]),
        ("xpos", ["VBP", "RB", "VB", "."]),
        ("deprel", ["aux", "advmod", "root", "punct"]),
        ("misc:NE", ["_", "O", "B-ACT", "_"]),
    ],
)
def test_tag_column(tmp_path, column, tags):
    assert load_sentences(write(tmp_path, CONLLU), column=column)[0].tags == tags


def test_unknown_column_is_a_usage_error():
    with pytest.raises(UsageError, match="--column"):
        check_column("lemma")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2\tbad\tline", "expected 10 tab-separated CoNLL-U columns, found 3"),
        ("5\tword\t_\tX\t_\t_\t_\t_\t_\t_", "word ID '5' out of sequence"),
        ("x-y\tword\t_\tX\t_\t_\t_\t_\t_\t_", "malformed ID 'x-y'"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    text = "# sent_id = 1\n1\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n" + line + "\n\n"
    path = write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_sentences(path)
    assert f"{path}:3:" in str(info.value)
    assert message in str(info.value)


def test_token_with_line_separator_characters_stays_one_line(tmp_path):
    odd = "a\u2028b\x85c"  # str.splitlines would cut here
    text = f"1\t{odd}\t_\tX\t_\t_\t0\troot\t_\t_\n\n"
    assert load_sentences(write(tmp_path, text))[0].words == [odd]


def test_conllu_write_back_changes_only_the_tag_column(tmp_path):
    sents = list(read_sentences(write(tmp_path, CONLLU)))
    set_tags(sents[0], ["A", "B", "C", "D"])
    text = format_conllu(sents[0])
    lines = text.splitlines()
    assert lines[:4] == CONLLU.splitlines()[:4]  # comments and the range line kept
    assert lines[4].split("\t")[3] == "A"
    assert lines[4].split("\t")[4] == "VBP"  # other columns untouched
    assert lines[7].startswith("3.1\tgo")  # the empty node kept
    assert text.endswith("\n\n")
    set_tags(sents[1], ["B-X"], column="misc:NE")
    assert format_conllu(sents[1]).splitlines()[1].split("\t")[9] == "NE=B-X"


def test_conllu_from_words_alone():
    text = format_conllu(Sentence(["a", "b"], ["X", "Y"]))
    assert text == "1\ta\t_\tX\t_\t_\t_\t_\t_\t_\n2\tb\t_\tY\t_\t_\t_\t_\t_\t_\n\n"


def test_tsv_reader(tmp_path):
    text = "-DOCSTART-\tO\n\nEU\tB-ORG\nrejects\tO\r\n\n\nPeter\tB-PER\nBlackburn\tI-PER"
    sents = load_sentences(write(tmp_path, text, "ner.tsv"))
    assert [s.words for s in sents] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.tags for s in sents] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert detect_format(tmp_path / "ner.tsv") == "tsv"


def test_tsv_malformed_line(tmp_path):
    path = write(tmp_path, "EU\tB-ORG\nrejects O\n", "ner.tsv")
    with pytest.raises(DataError, match=rf"{path}:2: expected 'token<TAB>tag'"):
        load_sentences(path)


def test_detect_format_by_content(tmp_path):
    assert detect_format(write(tmp_path, CONLLU, "data.txt")) == "conllu"


def test_empty_file_and_file_without_sentences(tmp_path):
    with pytest.raises(DataError, match="empty"):
        load_sentences(write(tmp_path, ""))
    with pytest.raises(DataError, match="no sentences"):
        load_sentences(write(tmp_path, "\n\n"))
    with pytest.raises(DataError, match=r"x.conllu:1: sentence has no word lines"):
        load_sentences(write(tmp_path, "# only a comment\n\n"))


def test_parsers_accept_plain_line_lists():
    assert next(parse_conllu(["1\tx\t_\tX\t_\t_\t_\t_\t_\t_"])).words == ["x"]
    assert next(parse_tsv(["x\tO"])).tags == ["O"]


def test_split_is_deterministic_80_10_10(tmp_path):
    sents = [Sentence([f"w{i}"], ["X"]) for i in range(20)]
    train, dev, test = split_sentences(sents)
    assert [len(train), len(dev), len(test)] == [16, 2, 2]
    assert train[0].words == ["w0"] and dev[0].words == ["w16"] and test[-1].words == ["w19"]
    src = tmp_path / "all.conllu"
    write_sentences(src, sents)
    paths = split_file(src, tmp_path / "out")
    assert [p.name for p in paths] == ["all-train.conllu", "all-dev.conllu", "all-test.conllu"]
    assert [len(load_sentences(p)) for p in paths] == [16, 2, 2]
    assert paths[1].read_text() == format_conllu(sents[16]) + format_conllu(sents[17])


# ---- the same words and tags as the `conllu` library ------------------------------------------

# Text both readers take alike: no tab, line break or other control character, single spaces
# only (conllu also splits columns at two spaces), and no "=" or "|" (MISC's own syntax).
_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Zs"), blacklist_characters="=|")
WORD = st.lists(st.text(_CHARS, min_size=1, max_size=4), min_size=1, max_size=2).map(" ".join)
VALUE = st.one_of(st.just("_"), WORD)
KEYS = ("NE", "SpaceAfter", "Translit")


@st.composite
def conllu_sentence(draw) -> str:
    """One CoNLL-U sentence with comments, multi-word ranges and empty nodes, and its blank line."""
    n = draw(st.integers(1, 5))
    lines = [f"# {draw(WORD)}" for _ in range(draw(st.integers(0, 2)))]
    for i in range(1, n + 1):
        if i < n and draw(st.booleans()):
            lines.append(f"{i}-{i + 1}\t{draw(WORD)}" + "\t_" * 8)
        keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=2))
        misc = "|".join(f"{k}={draw(WORD)}" for k in sorted(keys)) or "_"
        head = str(draw(st.integers(0, n)))
        cols = [str(i), draw(WORD), draw(VALUE), draw(VALUE), draw(VALUE), "_", head, draw(VALUE), "_", misc]
        lines.append("\t".join(cols))
        if draw(st.booleans()):
            lines.append(f"{i}.1\t{draw(WORD)}" + "\t_" * 6 + f"\t{i}:dep\t_")
    return "\n".join(lines) + "\n\n"


def _conllu_library(text: str, column: str) -> list[tuple[list[str], list[str]]]:
    """(words, tags) per sentence as the conllu library reads them (None and absent = "_")."""
    out = []
    for sentence in conllu.parse(text):
        words = [t for t in sentence if isinstance(t["id"], int)]  # no ranges, no empty nodes
        if column.startswith("misc:"):
            tags = [(t["misc"] or {}).get(column[5:]) for t in words]
        else:
            tags = [t[column] for t in words]
        out.append(([t["form"] for t in words], [tag or "_" for tag in tags]))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(conllu_sentence(), min_size=1, max_size=4).map("".join))
def test_conllu_reader_equals_the_conllu_library(text):
    for column in ("upos", "xpos", "deprel", "misc:NE", "misc:Translit"):
        ours = [(s.words, s.tags) for s in parse_conllu(text.split("\n"), column=column)]
        assert ours == _conllu_library(text, column), column
    # and, unlike conllu's TokenLists, the sentences write back to the very same text
    assert "".join(map(format_conllu, parse_conllu(text.split("\n")))) == text


def test_conllu_reader_keeps_what_the_conllu_library_misreads(tmp_path):
    """Why textrnn reads CoNLL-U itself (besides line-numbered errors and speed): conllu splits
    columns at two spaces as well as at tabs, and cuts a MISC value at its first "="."""
    text = "1\tNew  York\t_\tPROPN\t_\t_\t0\troot\t_\tGloss=a=b\n\n"
    (s,) = load_sentences(write(tmp_path, text), column="misc:Gloss")
    assert s.words == ["New  York"] and s.tags == ["a=b"]
