"""Char / word / subword tokenizers behind one small protocol.

Every tokenizer normalises its input (NFC by default, recorded in the tokenizer), turns
text into ids and back, and becomes plain JSON-able data with `to_dict()` so that it can
live inside a checkpoint or a tokenizer file; `tokenizer_from_dict` rebuilds it.

Kinds:
- "char": grapheme clusters (default) or code points (`char.py`).
- "word": words, numbers and punctuation, plus a "\\n" token so line structure
  survives; spaces are not tokens and decoding restores natural spacing (`word.py`).
- "bpe" / "unigram": sentencepiece models trained here (or imported from a `.model`
  file), with byte fallback by default so that no text is unknown (`subword.py`).

Modules: `base` (the `Tokenizer` protocol, the ids convention `UNK_ID`/`PAD_ID`, the
vocabulary machinery), the three kinds, `training` (`train_tokenizer`, `corpus_stats`),
`serial` (to and from plain data and files), `pieces` (token sequences as lines of text,
as `textrnn tokenize encode` writes them and `decode` reads them).
"""

from textrnn.tokenizers.base import (
    KINDS,
    NEWLINE,
    PAD,
    PAD_ID,
    TOKENIZER_FORMAT,
    UNITS,
    UNK,
    UNK_ID,
    UNKNOWN_CHAR,
    Tokenizer,
)
from textrnn.tokenizers.char import CharTokenizer
from textrnn.tokenizers.pieces import (
    format_pieces,
    marks_spaces,
    parse_pieces,
    read_piece,
    show_piece,
)
from textrnn.tokenizers.serial import load_tokenizer, save_tokenizer, tokenizer_from_dict
from textrnn.tokenizers.subword import SubwordTokenizer, load_sentencepiece_model
from textrnn.tokenizers.training import DEFAULT_SUBWORD_VOCAB, corpus_stats, train_tokenizer
from textrnn.tokenizers.word import WORD_PATTERN, WordTokenizer, detokenize

__all__ = [
    "DEFAULT_SUBWORD_VOCAB",
    "KINDS",
    "NEWLINE",
    "PAD",
    "PAD_ID",
    "TOKENIZER_FORMAT",
    "UNITS",
    "UNK",
    "UNK_ID",
    "UNKNOWN_CHAR",
    "WORD_PATTERN",
    "CharTokenizer",
    "SubwordTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "corpus_stats",
    "detokenize",
    "format_pieces",
    "load_sentencepiece_model",
    "load_tokenizer",
    "marks_spaces",
    "parse_pieces",
    "read_piece",
    "save_tokenizer",
    "show_piece",
    "tokenizer_from_dict",
    "train_tokenizer",
]
