"""A tagger's vocabularies (words by a normalised key, grapheme characters, tags) and the
BIO/BIOES transition constraints they imply.

Words are looked up by a *key* (NFC, lowercased, digits mapped to 0) so that the word
vocabulary generalises; the character model reads the untouched graphemes (case
included)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from textrnn.engine import metrics
from textrnn.formats.conllu import Sentence
from textrnn.models.tagger import UNK, Tagger
from textrnn.text import graphemes, normalize

SPECIALS = ("<unk>", "<pad>")  # ids UNK and PAD of the word and character vocabularies


MAX_UNITS = 24  # a longer word is read by its first and last MAX_UNITS // 2 graphemes


_DIGIT = re.compile(r"\d")


@dataclass
class Vocab:
    """The word, character and tag vocabularies of a tagger, as plain data for the checkpoint."""

    # Word keys: <pad>, <unk>, the training words (most frequent first), pretrained-only words.
    words: list[str]
    chars: list[str]  # grapheme units; ids 0, 1 are <pad>, <unk>
    tags: list[str]  # no padding or unknown tag
    train_words: int  # words[2 : 2 + train_words] occurred in the training data
    lowercase: bool = True  # word keys are lowercased
    scheme: str | None = None  # "BIO" | "BIOES" when the tags are spans, else None
    column: str = "upos"  # CoNLL-U column the tags came from
    word_index: dict[str, int] = field(init=False, repr=False)
    char_index: dict[str, int] = field(init=False, repr=False)
    tag_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.word_index = {w: i for i, w in enumerate(self.words)}
        self.char_index = {c: i for i, c in enumerate(self.chars)}
        self.tag_index = {t: i for i, t in enumerate(self.tags)}

    def key(self, word: str) -> str:
        """The form a word is looked up by: NFC, lowercased (optional), every digit 0."""
        w = normalize(word, "nfc")
        return _DIGIT.sub("0", w.lower() if self.lowercase else w)

    def word_id(self, word: str) -> int:
        return self.word_index.get(self.key(word), UNK)

    def char_ids(self, word: str) -> list[int]:
        units = graphemes(normalize(word, "nfc"))
        if len(units) > MAX_UNITS:
            units = units[: MAX_UNITS // 2] + units[-(MAX_UNITS // 2) :]
        return [self.char_index.get(u, UNK) for u in units] or [UNK]

    def is_known(self, word: str) -> bool:
        """True if the word's key occurred in the training data."""
        return 2 <= self.word_index.get(self.key(word), UNK) < 2 + self.train_words

    def to_dict(self) -> dict:
        return {
            "word": {"kind": "word", "vocab": self.words, "train_words": self.train_words,
                     "lowercase": self.lowercase, "digits": "0", "normalize": "nfc"},
            "char": {"kind": "char", "unit": "grapheme", "normalize": "nfc", "max_units": MAX_UNITS, "vocab": self.chars},
            "tag": {"kind": "tag", "vocab": self.tags, "scheme": self.scheme, "column": self.column},
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        w, c, t = d["word"], d["char"], d["tag"]
        return cls(
            words=list(w["vocab"]),
            chars=list(c["vocab"]),
            tags=list(t["vocab"]),
            train_words=int(w["train_words"]),
            lowercase=bool(w["lowercase"]),
            scheme=t.get("scheme"),
            column=t.get("column", "upos"),
        )


def build_vocab(
    sentences: Sequence[Sentence],
    *,
    lowercase: bool = True,
    min_count: int = 1,
    column: str = "upos",
    extra_words: Iterable[str] = (),
) -> tuple[Vocab, Counter[str]]:
    """Vocabularies from training sentences (+ `extra_words` keys, e.g. pretrained ones); also the key counts."""
    probe = Vocab(list(SPECIALS), list(SPECIALS), [], 0, lowercase=lowercase)
    counts: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    for s in sentences:
        for w in s.words:
            counts[probe.key(w)] += 1
            chars.update(graphemes(normalize(w, "nfc")))
        tags.update(s.tags or ())
    train = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    seen = set(train)
    extra = []
    for w in extra_words:
        if w not in seen:
            seen.add(w)
            extra.append(w)
    tag_list = sorted(tags)
    vocab = Vocab(
        words=[*SPECIALS, *train, *extra],
        chars=[*SPECIALS, *sorted(chars)],
        tags=tag_list,
        train_words=len(train),
        lowercase=lowercase,
        scheme=metrics.detect_scheme(tag_list),
        column=column,
    )
    return vocab, counts


def transition_masks(vocab: Vocab) -> tuple[Tensor, Tensor, Tensor]:
    """Allowed (K, K) transitions, allowed first and allowed last tags under the vocabulary's scheme."""
    tags, scheme = vocab.tags, vocab.scheme
    K = len(tags)
    if scheme is None:
        return (
            torch.ones(K, K, dtype=torch.bool),
            torch.ones(K, dtype=torch.bool),
            torch.ones(K, dtype=torch.bool),
        )
    allowed = torch.tensor([[metrics.allowed_transition(scheme, a, b) for b in tags] for a in tags])
    start = torch.tensor([metrics.allowed_transition(scheme, None, b) for b in tags])
    end = torch.tensor([metrics.allowed_transition(scheme, a, None) for a in tags])
    return allowed, start, end


def valid_sequences(sentences: Sequence[Sentence], scheme: str) -> bool:
    """True if every tag sequence is well formed under `scheme` (IOB1 data, for instance, is not)."""
    for s in sentences:
        prev = None
        for t in s.tags or ():
            if not metrics.allowed_transition(scheme, prev, t):
                return False
            prev = t
        if prev is not None and not metrics.allowed_transition(scheme, prev, None):
            return False
    return True


def apply_constraints(
    model: Tagger, vocab: Vocab, train: Sequence[Sentence] | None, on_log
) -> None:
    """Constrain decoding to the BIO/BIOES scheme when the training tags follow it."""
    if vocab.scheme is None:
        return
    if train is not None and not valid_sequences(train, vocab.scheme):
        on_log(
            f"tags look like {vocab.scheme} but the training data breaks its rules (IOB1?): decoding is unconstrained"
        )
        vocab.scheme = None
        return
    model.set_constraints(*transition_masks(vocab))
