"""The source and target unit vocabularies of a transliterator."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from textrnn.models.seq2seq import PAD, UNK
from textrnn.tasks.translit.config import TranslitOptions
from textrnn.text import graphemes
from textrnn.tokenizers import CharTokenizer

SOURCE_SPECIALS = ("<unk>", "<pad>")  # ids UNK, PAD


TARGET_SPECIALS = ("<unk>", "<pad>", "<s>", "</s>")  # ids UNK, PAD, BOS, EOS


MAX_SOURCE_UNITS = 64  # longer words are cut (the longest Dakshina word has 20)


@dataclass
class Vocabs:
    """The source and target unit vocabularies (CharTokenizers) of a transliterator."""

    source: CharTokenizer  # ids: <unk> 0, <pad> 1, then units
    target: CharTokenizer  # ids: <unk> 0, <pad> 1, <s> 2, </s> 3, then units
    lowercase: bool  # sources are lowercased (training sources had no capitals)

    def source_ids(self, word: str) -> list[int]:
        word = word.lower() if self.lowercase else word
        ids = self.source.encode(word)
        if len(ids) > MAX_SOURCE_UNITS:
            ids = ids[: MAX_SOURCE_UNITS // 2] + ids[-(MAX_SOURCE_UNITS // 2) :]
        return ids

    def target_ids(self, word: str) -> list[int]:
        return self.target.encode(word)

    def target_text(self, ids: Iterable[int]) -> str:
        return self.target.decode(ids)

    def knows(self, word: str) -> bool:
        """True if some unit of `word` is a known source unit (else --text leaves it alone)."""
        return any(i != UNK for i in self.source_ids(word))

    def to_dict(self) -> dict:
        return {
            "source": self.source.to_dict(),
            "target": self.target.to_dict(),
            "lowercase": self.lowercase,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Vocabs:
        source, target = CharTokenizer.from_dict(d["source"]), CharTokenizer.from_dict(d["target"])
        if source.id_to_piece(PAD) != "<pad>":
            raise ValueError("the source vocabulary does not start with <unk> <pad>")
        if [target.id_to_piece(i) for i in range(4)] != list(TARGET_SPECIALS):
            raise ValueError("the target vocabulary does not start with <unk> <pad> <s> </s>")
        return cls(source, target, bool(d.get("lowercase", False)))


def _units(words: Iterable[str], unit: str) -> list[str]:
    counts: Counter[str] = Counter()
    for w in words:
        counts.update(graphemes(w) if unit == "grapheme" else w)
    return sorted(counts)


def build_vocabs(pairs: Sequence[tuple[str, str]], options: TranslitOptions) -> Vocabs:
    sources = [s for s, _ in pairs]
    lowercase = all(s == s.lower() for s in sources)
    source = CharTokenizer(
        [*SOURCE_SPECIALS, *_units(sources, options.source_unit)], unit=options.source_unit
    )
    target = CharTokenizer(
        [*TARGET_SPECIALS, *_units((t for _, t in pairs), options.target_unit)],
        unit=options.target_unit,
    )
    return Vocabs(source, target, lowercase)
