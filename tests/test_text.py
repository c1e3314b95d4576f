"""Unicode normalisation and grapheme segmentation (textrnn.text)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from textrnn import text as T
from textrnn.errors import UsageError
from textrnn.text import graphemes, is_combining_start, normalize

CORPORA = Path(__file__).resolve().parent.parent / "corpora"
NUKTA, VIRAMA, ZWJ, ZWNJ = "\u093c", "\u094d", "\u200d", "\u200c"
KEEP = {
    "nukta": NUKTA,
    "zwj": ZWJ,
    "zwnj": ZWNJ,
    "danda": "।",
    "double danda": "॥",
    "devanagari digits": "०१२३४५६७८९",
    "chandrabindu": "ँ",
    "anusvara": "ं",
    "visarga": "ः",
}


@pytest.mark.parametrize("form", ["nfc", "nfkc", "none"])
@pytest.mark.parametrize("name", sorted(KEEP))
def test_normalize_keeps_indic_marks(form: str, name: str) -> None:
    sample = f"क्{ZWJ}ष क्{ZWNJ}ष ज{NUKTA}रा माँ हिंदी दुःख। इति॥ ०१२३४५६७८९"
    out = normalize(sample, form)
    for ch in KEEP[name]:
        assert out.count(ch) == sample.count(ch), (name, form)


@pytest.mark.parametrize("form", ["nfc", "nfkc"])
def test_nukta_letters_normalize_to_one_spelling(form: str) -> None:
    # क़ (U+0958) is a composition exclusion: NFC and NFKC both give क + nukta.
    precomposed, decomposed = "\u0958", "\u0915\u093c"
    assert normalize(precomposed, form) == normalize(decomposed, form) == decomposed
    assert graphemes(normalize("\u0958\u094d\u0937", form)) == ["\u0915\u093c\u094d\u0937"]


def test_normalize_forms() -> None:
    assert normalize("e\u0301") == "\u00e9"  # NFC composes
    assert normalize("ﬁ", "nfkc") == "fi"
    assert normalize("ﬁ", "nfc") == "ﬁ"
    assert normalize("e\u0301", "none") == "e\u0301"
    with pytest.raises(UsageError, match="nfc, nfkc, none"):
        normalize("x", "nfd")


@pytest.mark.parametrize(
    "word",
    ["क्ष", "स्त्र", "च्छे", "स्त्री", f"क्{ZWJ}ष", f"क{NUKTA}्ष", "द्ध्र्य", "ক্ষ", "ക്ഷ", "ક્ષ"],
)
def test_conjuncts_are_one_grapheme(word: str) -> None:
    assert graphemes(word) == [word]


def test_grapheme_examples() -> None:
    assert graphemes("नमस्ते") == ["न", "म", "स्ते"]
    assert graphemes("हिंदी। ॥") == ["हिं", "दी", "।", " ", "॥"]
    assert graphemes(f"क्{ZWNJ}ष") == [f"क्{ZWNJ}", "ष"]  # ZWNJ asks for no conjunct
    assert graphemes("a\r\nb") == ["a", "\r\n", "b"]
    assert graphemes("\r\n\n") == ["\r\n", "\n"]
    assert graphemes("🇮🇳👍🏽👨‍👩‍👧") == ["🇮🇳", "👍🏽", "👨‍👩‍👧"]
    assert graphemes("") == []


def test_ascii_fast_path_agrees_with_regex() -> None:
    s = "Hello, world!\n\tTabs & ~symbols~ 123\x00\x7f"
    assert graphemes(s) == regex.findall(r"\X", s) == list(s)


def test_is_combining_start() -> None:
    assert is_combining_start("ि")
    assert is_combining_start(VIRAMA + "ष")
    assert is_combining_start(NUKTA)
    assert is_combining_start(ZWJ)
    assert is_combining_start("\u0301")
    assert not is_combining_start("कि")
    assert not is_combining_start("a")
    assert not is_combining_start("")


def test_regex_implements_gb9c() -> None:
    # textrnn relies on the fast path; the fallback below exists for older `regex`.
    assert T._REGEX_HAS_GB9C


def _split_without_gb9c(text: str) -> list[str]:
    """Clusters as a pre-15.1 segmenter cuts them: a break after virama before a consonant."""
    out = []
    for cluster in regex.findall(r"\X", text):
        out.extend(
            regex.split(r"(?<=[\u094d\u09cd\u0acd\u0b4d\u0c4d\u0d4d]\u200d?)(?=\p{L})", cluster)
        )
    return out


def test_fallback_merge_matches_regex() -> None:
    text = (CORPORA / "hindi.txt").read_text(encoding="utf-8") + " ক্ষ ക്ഷ ક્ષ କ୍ଷ క్ష क्\u200dष"
    legacy = _split_without_gb9c(text)
    assert len(legacy) > len(graphemes(text))
    assert T._merge_conjuncts(legacy) == graphemes(text)
    assert T._merge_conjuncts([f"क्{ZWNJ}", "ष"]) == [f"क्{ZWNJ}", "ष"]


def test_fallback_consonants_match_unicode_15_1() -> None:
    try:
        incb = regex.compile(r"\p{InCB=Consonant}")
    except regex.error:
        pytest.skip("this regex has no Indic_Conjunct_Break property")
    for block in (0x0900, 0x0980, 0x0A80, 0x0B00, 0x0C00, 0x0D00):
        for cp in range(block, block + 0x80):
            ch = chr(cp)
            assert bool(T._INCB_CONSONANT.match(ch)) == bool(incb.match(ch)), hex(cp)


MIXED = st.text(
    alphabet=st.sampled_from(
        list("abc XYZ,.!?'\"\n\r\t")
        + list("कखगषसतरनमदछच")
        + list("ािीुूेैोौंँः़्।॥०९")
        + [ZWJ, ZWNJ, "😀", "🇮", "🇳", "\u0301"]
    ),
    max_size=40,
)


@given(MIXED)
def test_graphemes_partition_the_text(s: str) -> None:
    units = graphemes(s)
    assert "".join(units) == s
    assert all(units)


@given(st.text(max_size=30))
def test_graphemes_partition_any_text(s: str) -> None:
    assert "".join(graphemes(s)) == s


@given(MIXED)
def test_normalize_is_idempotent(s: str) -> None:
    for form in ("nfc", "nfkc"):
        once = normalize(s, form)
        assert normalize(once, form) == once
        assert unicodedata.is_normalized(form.upper(), once)


# --- real data -------------------------------------------------------------------------------


def _conllu_texts(path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line[len("# text = ") :].strip() for line in f if line.startswith("# text = ")]


def test_no_orphan_marks_in_hindi_pud(shared_data) -> None:
    texts = _conllu_texts(shared_data("ud_hindi_pud/hi_pud-ud-first800.conllu"))
    assert len(texts) == 800
    units = [u for t in texts for u in graphemes(normalize(t))]
    assert not [u for u in units if is_combining_start(u)]
    assert any(len(u) >= 4 and VIRAMA in u for u in units)  # conjuncts with a matra stay whole


def test_no_orphan_marks_in_marathi(shared_data) -> None:
    texts = _conllu_texts(shared_data("ud_marathi_ufal/mr_ufal-ud-train.conllu"))
    units = [u for t in texts for u in graphemes(normalize(t))]
    assert units and not [u for u in units if is_combining_start(u)]


def test_dakshina_words_segment_cleanly(shared_data) -> None:
    path = shared_data("dakshina_hi/hi.translit.sampled.train.tsv")
    with open(path, encoding="utf-8") as f:  # latin<TAB>devanagari<TAB>count
        words = {w for line in f for w in line.split("\t")[:2] if regex.match(r"\p{Devanagari}", w)}
    assert len(words) > 10_000
    for word in words:
        units = graphemes(normalize(word))
        assert "".join(units) == normalize(word)
        assert not is_combining_start(units[0]), word
    assert graphemes("क्षत्रिय") == ["क्ष", "त्रि", "य"]
