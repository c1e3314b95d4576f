"""A tagger checkpoint -> its model (weights loaded) and vocabularies, every piece of
metadata checked first (the file may come from anywhere).

Checkpoints of format version 1 numbered <pad> 0 and <unk> 1 in the word and character
vocabularies; every vocabulary now has <unk> 0 and <pad> 1, so those two entries and
the embedding rows behind them are swapped on load.
"""

from __future__ import annotations

from torch import Tensor

from textrnn.config import config_from_dict
from textrnn.engine.checkpoint import HEADER_KEY, Checkpoint
from textrnn.engine.weights import checkpoint_weights, load_weights
from textrnn.errors import CheckpointError
from textrnn.models.tagger import Tagger, TaggerConfig
from textrnn.tasks.tag.vocab import SPECIALS, Vocab


def model_from_checkpoint(ckpt: Checkpoint, *, source: str) -> tuple[Tagger, Vocab]:
    """The checkpoint's tagger (its weights loaded, on the CPU) and vocabularies."""
    try:
        cfg = config_from_dict(TaggerConfig, ckpt.meta["model_config"], what="model config")
        tokenizers = ckpt.meta["tokenizers"]
        vocab = Vocab.from_dict(tokenizers)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: checkpoint metadata is incomplete ({err})") from None
    sizes = (len(vocab.words), len(vocab.chars), len(vocab.tags))
    if sizes != (cfg.n_words, cfg.n_chars, cfg.n_tags):
        raise CheckpointError(f"{source}: vocabulary sizes {sizes} do not match the model config")
    weights = checkpoint_weights(ckpt)
    header = ckpt.meta.get(HEADER_KEY, {})
    if header.get("format_version", 2) < 2:
        vocab, weights = _swap_specials(vocab, weights, source=source)
    if vocab.words[:2] != list(SPECIALS) or vocab.chars[:2] != list(SPECIALS):
        raise CheckpointError(f"{source}: its vocabularies do not start with {' '.join(SPECIALS)}")
    model = Tagger(cfg)
    load_weights(model, weights, source=source)
    return model, vocab


def _swap_specials(
    vocab: Vocab, weights: dict[str, Tensor], *, source: str
) -> tuple[Vocab, dict[str, Tensor]]:
    """A format-1 tagger's vocabularies and embeddings with ids 0 and 1 exchanged."""
    if vocab.words[:2] != ["<pad>", "<unk>"] or vocab.chars[:2] != ["<pad>", "<unk>"]:
        raise CheckpointError(f"{source}: a version-1 tagger's vocabularies start with <pad> <unk>")
    swapped = Vocab(
        words=[vocab.words[1], vocab.words[0], *vocab.words[2:]],
        chars=[vocab.chars[1], vocab.chars[0], *vocab.chars[2:]],
        tags=vocab.tags,
        train_words=vocab.train_words,
        lowercase=vocab.lowercase,
        scheme=vocab.scheme,
        column=vocab.column,
    )
    weights = dict(weights)
    for name in ("word_embedding.weight", "char_embedding.weight"):
        if name in weights and weights[name].shape[0] >= 2:
            weights[name] = weights[name][[1, 0, *range(2, weights[name].shape[0])]]
    return swapped, weights
