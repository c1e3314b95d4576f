"""A language model's corpus: text -> one token-id array -> batch streams.

The text is encoded once into a compact numpy id array, cached (keyed by the corpus's
content and the tokenizer) and memory-mapped, so that a 1 GB corpus costs little
memory; a slice spread over the corpus is held out for validation; the rest is cut
into contiguous streams for truncated back-propagation through time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from textrnn.errors import DataError
from textrnn.files import atomic_file
from textrnn.formats.plain import iter_text_chunks


@dataclass(frozen=True)
class EncodedCorpus:
    """A corpus as one flat token-id array (memory-mapped from the cache) plus its sizes."""

    ids: np.ndarray  # (N,) uint16 or uint32, read-only memmap
    chars: int  # characters (code points) the ids cover, for bits-per-character
    path: str

    @property
    def tokens(self) -> int:
        return int(self.ids.shape[0])


def cache_dir() -> Path:
    """$TEXTRNN_CACHE, else ~/.cache/textrnn: where encoded corpora are kept."""
    env = os.environ.get("TEXTRNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "textrnn"


def id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def encode_corpus(path: str | os.PathLike, tokenizer, *, corpus_sha256: str) -> EncodedCorpus:
    """Tokenize `path` once into a cached id file and memory-map it.

    The cache key is the corpus content hash plus the tokenizer's serialized form,
    so a changed corpus or tokenizer is re-encoded. Encoding streams the file in
    chunks: memory stays flat however large the corpus is.
    """
    key_src = corpus_sha256 + json.dumps(tokenizer.to_dict(), sort_keys=True)
    key = hashlib.sha256(key_src.encode("utf-8")).hexdigest()[:24]
    dtype = id_dtype(tokenizer.vocab_size)
    folder = cache_dir() / "tokens"
    ids_file = folder / f"{key}.{dtype.name}"
    info_file = folder / f"{key}.json"
    info = _cached_info(ids_file, info_file, dtype)
    if info is None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            info = _encode_to(path, tokenizer, dtype, ids_file, info_file)
        except OSError:  # read-only home, full disk: fall back to a private temp folder
            private = None
            try:
                private = Path(tempfile.mkdtemp(prefix="textrnn-tokens-"))
                ids_file, info_file = private / ids_file.name, private / info_file.name
                info = _encode_to(path, tokenizer, dtype, ids_file, info_file)
            except OSError as err:
                if private is not None:
                    shutil.rmtree(private, ignore_errors=True)
                raise DataError(
                    f"{path}: cannot write the encoded corpus to {cache_dir()} or a temp folder "
                    f"({err.strerror or err}); free some disk space or set TEXTRNN_CACHE"
                ) from None
    if info["tokens"] == 0:
        raise DataError(f"{path}: no tokens after tokenization")
    ids = np.memmap(ids_file, dtype=dtype, mode="r", shape=(info["tokens"],))
    return EncodedCorpus(ids=ids, chars=info["chars"], path=str(path))


def _cached_info(ids_file: Path, info_file: Path, dtype: np.dtype) -> dict | None:
    """The {"tokens", "chars"} of a complete cache entry; None when it is absent or damaged
    (a process killed while writing it, a disk that filled up): it is then encoded again."""
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
        counts = [info["tokens"], info["chars"]]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
            return None
        return info if ids_file.stat().st_size == info["tokens"] * dtype.itemsize else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _encode_to(path, tokenizer, dtype: np.dtype, ids_file: Path, info_file: Path) -> dict:
    """Encode `path` into `ids_file` and its sizes into `info_file`. Each is replaced whole
    (`atomic_file`) and the sizes come last, so a reader never sees a partial entry."""
    tokens = chars = 0
    with atomic_file(ids_file, durable=False) as f:
        for chunk in iter_text_chunks(path):
            ids = np.asarray(tokenizer.encode(chunk), dtype=dtype)
            f.write(ids.tobytes())  # not tofile(): its OSError loses the errno (disk full)
            tokens += ids.shape[0]
            chars += tokenizer.count_chars(chunk)
    info = {"tokens": tokens, "chars": chars}
    with atomic_file(info_file, durable=False) as f:
        f.write(json.dumps(info).encode("utf-8"))
    return info


VAL_BLOCKS = 20  # held-out text is taken from this many places spread over the corpus


class Spans:
    """Some (start, stop) slices of a token array, read as one array without copying it.

    The training text is the corpus with the validation blocks cut out; keeping it as
    spans of the memory-mapped ids means a 1 GB corpus never has to be in memory.
    """

    def __init__(self, ids: np.ndarray, spans: list[tuple[int, int]]) -> None:
        self.ids = ids
        self.spans = [(a, b) for a, b in spans if b > a]
        self.starts = np.cumsum(
            [0] + [b - a for a, b in self.spans]
        )  # position of each span in the view

    def __len__(self) -> int:
        return int(self.starts[-1])

    def take(self, start: int, n: int) -> np.ndarray:
        """The `n` tokens from view position `start` (a view into the array when one span holds them)."""
        if start < 0 or start + n > len(self):
            raise IndexError(f"tokens {start}..{start + n} outside 0..{len(self)}")
        if n == 0:
            return self.ids[:0]
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        parts = []
        while n > 0:
            a, b = self.spans[i]
            lo = a + start - int(self.starts[i])
            k = min(n, b - lo)
            parts.append(self.ids[lo : lo + k])
            n, start, i = n - k, start + k, i + 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def array(self) -> np.ndarray:
        """All the tokens, copied into one array."""
        return (
            np.concatenate([self.ids[a:b] for a, b in self.spans]) if self.spans else self.ids[:0]
        )


def split_validation(
    n_tokens: int, n_val: int, *, min_block: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Train and validation spans of a corpus of `n_tokens`, `n_val` of them held out.

    The corpus is cut into up to VAL_BLOCKS equal parts and the end of each part is held
    out, so validation samples the whole text (a novel's last chapter is not its average)
    and the training text keeps the neighbourhood of every held-out block. Blocks hold
    at least `min_block` tokens so that a few boundaries do not dominate the score.
    """
    if n_val <= 0:
        return [(0, n_tokens)], []
    blocks = max(1, min(VAL_BLOCKS, n_val // max(1, min_block)))
    while blocks > 1 and -(-n_val // blocks) > n_tokens // blocks:  # a block cannot hold
        blocks -= 1  # out more than its part (a validation fraction above a half)
    part = n_tokens // blocks
    train, val = [], []
    for i in range(blocks):
        start, stop = i * part, (n_tokens if i == blocks - 1 else (i + 1) * part)
        held = n_val // blocks + (1 if i < n_val % blocks else 0)
        train.append((start, stop - held))
        val.append((stop - held, stop))
    return train, val


class TokenStreams:
    """`batch_size` contiguous streams over a token array, cut into `seq_len` windows.

    Window k of every stream follows window k-1 in the text, so a recurrent state
    carried from one batch to the next sees one unbroken text per row (stateful
    truncated back-propagation, as in char-rnn). Each epoch starts the streams at
    a different offset in [0, seq_len), drawn from (seed, epoch), so window
    boundaries move between epochs while any epoch's batches can be regenerated
    exactly on resume. `ids` is an array or the `Spans` left for training.
    """

    def __init__(
        self, ids: np.ndarray | Spans, *, batch_size: int, seq_len: int, seed: int
    ) -> None:
        self.ids = ids if isinstance(ids, Spans) else Spans(ids, [(0, len(ids))])
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        n = len(self.ids)
        self.row_len = (n - 1 - seq_len) // batch_size  # room for any offset < seq_len
        if self.row_len < seq_len:
            raise DataError(
                f"corpus too small: {n} training tokens, need at least "
                f"{batch_size * seq_len + seq_len + 1} for one batch of {batch_size} x {seq_len}; "
                "use a smaller --batch-size or --seq-len, or a larger corpus"
            )

    def steps_per_epoch(self) -> int:
        return self.row_len // self.seq_len

    def offset(self, epoch: int) -> int:
        return (
            int(np.random.default_rng([self.seed, epoch]).integers(0, self.seq_len)) if epoch else 0
        )

    def batches(
        self, epoch: int, start: int = 0, *, rows: slice = slice(None)
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (inputs, targets), each (B, T) int64, from window `start` of `epoch` on.

        `rows` picks some of the B streams (a process's share when several train together).
        """
        B, T, L = self.batch_size, self.seq_len, self.row_len
        row_starts = (self.offset(epoch) + L * np.arange(B))[rows]  # this process's streams
        for k in range(start, self.steps_per_epoch()):
            # Only this batch's windows of T + 1 tokens are read from the memmap.
            w = np.stack([self.ids.take(int(s) + k * T, T + 1) for s in row_starts]).astype(
                np.int64
            )  # (b, T+1)
            yield (
                torch.from_numpy(np.ascontiguousarray(w[:, :-1])),
                torch.from_numpy(np.ascontiguousarray(w[:, 1:])),
            )


def fit_batch_shape(n_tokens: int, batch_size: int, seq_len: int) -> tuple[int, int]:
    """Shrink a default batch shape so a small corpus still gives about 8 batches per epoch."""
    B, T = batch_size, seq_len
    while T > 16 and n_tokens < (B * 8 + 1) * T:
        T //= 2
    while B > 1 and n_tokens < (B * 8 + 1) * T:
        B //= 2
    return B, T
