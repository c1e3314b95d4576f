"""Unicode normalisation and grapheme segmentation: the one place textrnn handles Unicode.

A "character" for textrnn is a user-perceived character, an extended grapheme cluster
(UAX #29) including the Unicode 15.1 conjunct rule GB9c: a Devanagari consonant cluster
joined by virama (क्ष, स्त्र, च्छे) is one unit, so a char-level model never generates an
orphan matra or a dangling virama. The `regex` module's `\\X` implements this (regex
2026.11 follows Unicode 18.0; GB9c arrived with Unicode 15.1); for an older `regex`
without GB9c, clusters are merged here (see `_merge_conjuncts`). Normalisation uses
Python's `unicodedata`, whose Unicode version is the interpreter's (14.0 for Python 3.11).

Normalisation never drops marks: NFC and NFKC keep nukta, ZWJ/ZWNJ, danda, Devanagari
digits, chandrabindu, anusvara and visarga. Note that NFC *decomposes* the precomposed
nukta letters क़ ख़ ग़ ज़ ड़ ढ़ फ़ य़ (U+0958..U+095F, composition exclusions) into consonant +
U+093C, so both spellings of a nukta letter end up as the same code points.
"""

from __future__ import annotations

import unicodedata

import regex

from textrnn.errors import UsageError

NORMAL_FORMS = ("nfc", "nfkc", "none")
_UNICODEDATA_FORM = {"nfc": "NFC", "nfkc": "NFKC"}

ZWJ = "\u200d"
ZWNJ = "\u200c"

_GRAPHEME = regex.compile(r"\X")


def check_form(form: str) -> str:
    """Return `form` if it is a known normal form, else raise UsageError listing the valid ones."""
    if form not in NORMAL_FORMS:
        raise UsageError(f"unknown normalisation {form!r}; choose one of {', '.join(NORMAL_FORMS)}")
    return form


def normalize(text: str, form: str = "nfc") -> str:
    """`text` in Unicode normal form `form` ("nfc", "nfkc" or "none")."""
    if check_form(form) == "none":
        return text
    name = _UNICODEDATA_FORM[form]
    if unicodedata.is_normalized(name, text):  # the common case, and much cheaper
        return text
    return unicodedata.normalize(name, text)


def graphemes(text: str) -> list[str]:
    """Split `text` into extended grapheme clusters, conjuncts (GB9c) kept whole.

    "\\r\\n" is one cluster. ASCII text without "\\r" takes a fast path: there every
    code point is its own cluster.
    """
    if text.isascii() and "\r" not in text:
        return list(text)
    clusters = _GRAPHEME.findall(text)
    return clusters if _REGEX_HAS_GB9C else _merge_conjuncts(clusters)


def is_combining_start(unit: str) -> bool:
    """True if `unit` begins with a combining mark, virama or joiner: an orphan if it starts a cluster."""
    if not unit:
        return False
    first = unit[0]
    return unicodedata.category(first).startswith("M") or first in (ZWJ, ZWNJ)


# --- GB9c for a `regex` that predates Unicode 15.1 -------------------------------------
# Indic_Conjunct_Break as defined by Unicode 15.1 (DerivedCoreProperties.txt), which
# covers Devanagari, Bengali, Gujarati, Oriya, Telugu and Malayalam. Later versions add
# more scripts; a `regex` that knows them already implements GB9c and skips this code.
_INCB_LINKER = frozenset("\u094d\u09cd\u0acd\u0b4d\u0c4d\u0d4d")  # the six viramas
_INCB_CONSONANT = regex.compile(
    "[\u0915-\u0939\u0958-\u095f\u0978-\u097f"  # Devanagari
    "\u0995-\u09a8\u09aa-\u09b0\u09b2\u09b6-\u09b9\u09dc\u09dd\u09df\u09f0\u09f1"  # Bengali
    "\u0a95-\u0aa8\u0aaa-\u0ab0\u0ab2\u0ab3\u0ab5-\u0ab9\u0af9"  # Gujarati
    "\u0b15-\u0b28\u0b2a-\u0b30\u0b32\u0b33\u0b35-\u0b39\u0b5c\u0b5d\u0b5f\u0b71"  # Oriya
    "\u0c15-\u0c28\u0c2a-\u0c39\u0c58-\u0c5a"  # Telugu
    "\u0d15-\u0d3a]"  # Malayalam
)


def _is_incb_extend(ch: str) -> bool:
    # InCB=Extend is (nearly) Grapheme_Extend plus ZWJ; nonspacing marks and ZWJ cover it.
    return ch == ZWJ or unicodedata.category(ch) in ("Mn", "Me")


def _ends_in_linked_consonant(cluster: str) -> bool:
    """True if `cluster` ends with Consonant [Extend Linker]* Linker [Extend Linker]* (GB9c's left side)."""
    i, seen_linker = len(cluster) - 1, False
    while i >= 0 and (cluster[i] in _INCB_LINKER or _is_incb_extend(cluster[i])):
        seen_linker = seen_linker or cluster[i] in _INCB_LINKER
        i -= 1
    return seen_linker and i >= 0 and _INCB_CONSONANT.match(cluster[i]) is not None


def _merge_conjuncts(clusters: list[str]) -> list[str]:
    """Apply GB9c to clusters cut without it: join a consonant to a preceding linked consonant."""
    out: list[str] = []
    for cluster in clusters:
        if out and _INCB_CONSONANT.match(cluster) and _ends_in_linked_consonant(out[-1]):
            out[-1] += cluster
        else:
            out.append(cluster)
    return out


_REGEX_HAS_GB9C = _GRAPHEME.fullmatch("\u0915\u094d\u0937") is not None  # क्ष
