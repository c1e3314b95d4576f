"""The sequence-tagging task (POS, NER): train, load, predict, evaluate.

This is the Python API behind `textrnn tag train | predict | eval`:

    from textrnn.tagging import train_tagger, load_tagger, predict, evaluate

Words are looked up by a *key* (NFC, lowercased, digits mapped to 0) so that the
word vocabulary generalises; the character model reads the untouched graphemes
(case included). Rare words are replaced by <unk> during training with probability
alpha / (alpha + count) (Kiperwasser & Goldberg 2016), so <unk> is trained on words
like the unknown ones seen later and the character model learns to carry them.

Defaults (DEFAULT_MODEL, DEFAULT_TRAIN) were chosen on UD English EWT with short CPU
runs: word 100 + character BiLSTM 2x100 (char emb 50) -> 2-layer BiLSTM 2x200, dropout
0.33, AdamW lr 3e-3 with warm-up and cosine decay, 32 sentences per batch, clipping 5,
bf16 autocast where the CPU has it (same accuracy per step as fp32, ~20% faster).
A larger model (2x256, char 2x128, dropout 0.4) or dropout 0.5 was no better at equal
time; lr 3e-3 learned faster than 2e-3; case-sensitive word keys were worse;
alpha = 1 gave the same accuracy as 0.25 with better unseen-word accuracy.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from textrnn import distributed, metrics
from textrnn.checkpoint import Checkpoint, file_info, load_checkpoint
from textrnn.conll import Sentence, iter_file_lines, load_sentences
from textrnn.data import check_text_file
from textrnn.errors import CheckpointError, DataError, UsageError
from textrnn.lm import checkpoint_weights, load_weights
from textrnn.models.tagger import UNK, Tagger, TaggerConfig
from textrnn.text import graphemes, normalize
from textrnn.train import (
    INFERENCE_PRECISIONS,
    Progress,
    TrainConfig,
    autocast,
    check_precision,
    config_from_defaults,
    fit,
    resolve_precision,
    seed_everything,
)
from textrnn.train import TrainResult as BaseTrainResult

SPECIALS = ("<pad>", "<unk>")  # ids PAD and UNK of the word and character vocabularies
MAX_UNITS = 24  # a longer word is read by its first and last MAX_UNITS // 2 graphemes
WORD_DROPOUT_ALPHA = 1.0  # P(<unk> replaces a training word seen c times) = alpha / (alpha + c)
READ_AHEAD = 2048  # sentences read, length-sorted and tagged together when predicting
BATCH_TOKENS = 8192  # padded positions per inference batch (at most MAX_BATCH sentences)
MAX_BATCH = 512

# What a user who passes only --train/--dev gets: sized so that a 15-minute CPU run on
# UD English EWT converges (about 30 s an epoch on 2 cores), regularised for small treebanks.
DEFAULT_MODEL = {
    "word_dim": 100,
    "char_dim": 50,
    "char_hidden": 100,
    "hidden": 200,
    "layers": 2,
    "dropout": 0.33,
}
DEFAULT_TRAIN = {
    "batch_size": 32,
    "lr": 3e-3,
    "clip": 5.0,
    "epochs": 100,
    "patience": 10,
    "warmup_steps": 200,
}

_DIGIT = re.compile(r"\d")


# ---- vocabularies ------------------------------------------------------------------------------


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


# ---- sentences -> padded batches -----------------------------------------------------------------


@dataclass
class Batch:
    words: Tensor  # (B, T) word ids, PAD after each sentence
    lengths: Tensor  # (B,)
    chars: Tensor  # (U, L) grapheme ids of the batch's distinct words
    char_lengths: Tensor  # (U,)
    types: Tensor  # (B, T) index into `chars` of each position
    tags: Tensor | None  # (B, T) tag ids, -100 at padding
    known: Tensor | None = None  # (B, T) True where the word occurred in training

    def to(self, device: torch.device) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(
            *(
                move(getattr(self, f))
                for f in ("words", "lengths", "chars", "char_lengths", "types", "tags", "known")
            )
        )

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())


class Encoder:
    """Turns word lists into `Batch`es, remembering each distinct word's ids (a bounded cache)."""

    def __init__(self, vocab: Vocab, *, cache_size: int = 500_000) -> None:
        self.vocab = vocab
        self.cache_size = cache_size
        self._cache: dict[str, tuple[int, list[int], bool]] = {}

    def lookup(self, word: str) -> tuple[int, list[int], bool]:
        hit = self._cache.get(word)
        if hit is None:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            wid = self.vocab.word_id(word)
            hit = (wid, self.vocab.char_ids(word), 2 <= wid < 2 + self.vocab.train_words)
            self._cache[word] = hit
        return hit

    def batch(
        self, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[str]] | None = None
    ) -> Batch:
        """A padded batch of non-empty sentences (with their tags, when given)."""
        B = len(sentences)
        lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=B)
        T = int(lengths.max())
        mask = np.arange(T) < lengths[:, None]  # (B, T): row-major order = the words in order
        flat = [w for s in sentences for w in s]
        cache = self._cache
        hits = [cache.get(w) or self.lookup(w) for w in flat]
        distinct: dict[str, int] = {}
        type_flat = [distinct.setdefault(w, len(distinct)) for w in flat]
        words = np.zeros((B, T), dtype=np.int64)
        words[mask] = [h[0] for h in hits]
        known = np.zeros((B, T), dtype=bool)
        known[mask] = [h[2] for h in hits]
        types = np.zeros((B, T), dtype=np.int64)
        types[mask] = type_flat
        rows = [(cache.get(w) or self.lookup(w))[1] for w in distinct]
        char_lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        chars = np.zeros((len(rows), int(char_lengths.max())), dtype=np.int64)
        chars[np.arange(chars.shape[1]) < char_lengths[:, None]] = [c for r in rows for c in r]
        tag_ids = None
        if tags is not None:
            index = self.vocab.tag_index
            tag_arr = np.full((B, T), -100, dtype=np.int64)
            tag_arr[mask] = [index.get(t, -100) for ts in tags for t in ts]
            tag_ids = torch.from_numpy(tag_arr)
        return Batch(
            torch.from_numpy(words),
            torch.from_numpy(lengths),
            torch.from_numpy(chars),
            torch.from_numpy(char_lengths),
            torch.from_numpy(types),
            tag_ids,
            torch.from_numpy(known),
        )


def bucket_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, pool: int = 50
) -> list[np.ndarray]:
    """Sentence indices cut into batches of similar length, in an order fixed by (seed, epoch).

    The sentences are shuffled, cut into pools of `pool` batches, sorted by length
    inside each pool and cut into batches; then the batches are shuffled. Every batch
    but the last of the last pool is full, so an epoch has ceil(n / batch_size) batches.
    """
    rng = np.random.default_rng([seed, epoch])
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    out = []
    size = pool * batch_size
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [out[i] for i in rng.permutation(len(out))]


# ---- the task the training loop runs -------------------------------------------------------------


@dataclass
class Shard:
    """This process's sentences of a global batch (all of it for a single process)."""

    batch: Batch
    global_tokens: int  # tokens of the whole global batch: the denominator of the mean loss
    stand_in: bool = False  # the global batch had fewer sentences than processes: weighs nothing


def token_loss(model: Tagger, emissions: Tensor, batch: Batch) -> Tensor:
    """Summed loss of a batch: CRF negative log-likelihood or per-token cross-entropy."""
    if model.crf is not None:
        mask = batch.tags >= 0
        return model.crf.nll(emissions.float(), batch.tags, mask)
    K = emissions.shape[-1]
    return F.cross_entropy(
        emissions.float().reshape(-1, K), batch.tags.reshape(-1), ignore_index=-100, reduction="sum"
    )


class TaggerTask:
    """Tagging as a task for `Trainer`: bucketed sentence batches, word dropout, dev accuracy.

    With several processes, each global batch of `batch_size` sentences is cut into one
    contiguous share per process, and each share's loss is divided by the tokens of the
    whole global batch: the summed gradients are those of the single-process batch.
    """

    name = "tagger"
    data_parallel = True
    monitor = "val_accuracy"  # best checkpoint and early stopping follow dev accuracy
    higher_is_better = True

    def __init__(
        self,
        model: Tagger,
        vocab: Vocab,
        train: Sequence[Sentence],
        dev: Sequence[Sentence],
        cfg: TrainConfig,
        *,
        counts: Counter[str],
        data_info: dict,
        device: torch.device,
    ) -> None:
        self.model, self.vocab, self.device, self.cfg = model, vocab, device, cfg
        self.data_info = data_info
        self.encoder = Encoder(vocab)
        self.train = [(s.words, s.tags) for s in train]
        self.dev = list(dev)
        self.lengths = [len(w) for w, _ in self.train]
        drop = torch.zeros(len(vocab.words))
        for i in range(2, 2 + vocab.train_words):
            drop[i] = WORD_DROPOUT_ALPHA / (WORD_DROPOUT_ALPHA + counts[vocab.words[i]])
        self.drop_p = drop.to(device)
        self.dist = distributed.context()

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.cfg.batch_size)

    def batches(self, epoch: int, start: int) -> Iterator[Shard]:
        order = bucket_batches(self.lengths, self.cfg.batch_size, seed=self.cfg.seed, epoch=epoch)
        for idx in order[start:]:
            total = sum(self.lengths[i] for i in idx)
            part = np.array_split(idx, self.dist.world)[self.dist.rank]
            # A rank must take part in every step: with no sentence of its own it reads
            # one of the batch's and weighs it 0.
            stand_in = len(part) == 0
            part = idx[:1] if stand_in else part
            words = [self.train[i][0] for i in part]
            tags = [self.train[i][1] for i in part]
            yield Shard(self.encoder.batch(words, tags).to(self.device), total, stand_in)

    def loss(self, shard: Shard) -> tuple[Tensor, int]:
        batch = shard.batch
        words = batch.words
        if self.model.training:
            unk = torch.rand(words.shape, device=words.device) < self.drop_p[words]
            words = words.masked_fill(unk, UNK)
        emissions = self.model(words, batch.lengths, batch.chars, batch.char_lengths, batch.types)
        loss = token_loss(self.model, emissions, batch) / shard.global_tokens
        if shard.stand_in:
            return loss * 0.0, 0
        return loss, batch.tokens

    def evaluate(self) -> dict[str, float]:
        if not self.dev:
            return {"val_loss": float("nan")}
        result = score_sentences(self.model, self.encoder, self.dev, device=self.device)
        metrics = {"val_loss": result["loss"], "val_accuracy": result["accuracy"]}
        if result["oov_tokens"]:  # (JSON has no NaN for "no unseen words")
            metrics["val_oov_accuracy"] = result["oov_accuracy"]
        return metrics

    def reset_epoch(self) -> None:
        pass

    def state_tensors(self) -> dict[str, Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        pass

    def checkpoint_meta(self) -> dict:
        return {
            "model_config": self.model.config.to_dict(),
            "tokenizers": self.vocab.to_dict(),
            "corpus": self.data_info,
        }


def score_sentences(
    model: Tagger, encoder: Encoder, sentences: Sequence[Sentence], *, device: torch.device
) -> dict:
    """Loss per token, accuracy and OOV accuracy of `model` on tagged sentences (fp32, eval mode)."""
    was_training = model.training
    model.eval()
    loss = 0.0
    tokens = correct = oov = oov_correct = 0
    try:
        with torch.inference_mode():
            for chunk in length_batches([len(s) for s in sentences]):
                batch = encoder.batch(
                    [sentences[i].words for i in chunk], [sentences[i].tags for i in chunk]
                ).to(device)
                emissions = model(
                    batch.words, batch.lengths, batch.chars, batch.char_lengths, batch.types
                )
                loss += token_loss(model, emissions, batch).item()
                pred = model.decode(emissions, batch.lengths)
                gold, known = batch.tags.tolist(), batch.known.tolist()
                for p, g, k in zip(pred, gold, known, strict=True):
                    for a, b, kn in zip(p, g, k, strict=False):
                        tokens += 1
                        correct += a == b
                        if not kn:
                            oov += 1
                            oov_correct += a == b
    finally:
        model.train(was_training)
    return {
        "loss": loss / max(1, tokens),
        "accuracy": correct / max(1, tokens),
        "oov_accuracy": oov_correct / oov if oov else float("nan"),
        "tokens": tokens,
        "oov_tokens": oov,
    }


def length_batches(
    lengths: Sequence[int], *, max_tokens: int = BATCH_TOKENS, max_sentences: int = MAX_BATCH
) -> list[list[int]]:
    """Indices cut into inference batches, longest sentences first, of similar length:
    each batch holds at most `max_tokens` padded positions, so padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]
        if current and ((len(current) + 1) * width > max_tokens or len(current) >= max_sentences):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


# ---- pretrained word vectors -------------------------------------------------------------------


def read_vectors(path: str | os.PathLike, *, limit: int = 0) -> tuple[list[str], np.ndarray]:
    """Words and vectors of a word2vec/fastText text file (an optional "count dim" first line).

    With `limit`, only the first `limit` vectors (the most frequent, in such files) are read.
    """
    check_text_file(path)
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    for lineno, line in enumerate(iter_file_lines(path), 1):
        parts = line.rstrip("\r\n").rstrip(" ").split(" ")
        if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            continue
        if len(parts) < 2:
            if not line.strip():
                continue
            raise DataError(f"{path}:{lineno}: expected 'word v1 v2 ...'")
        try:
            vec = np.asarray(parts[1:], dtype=np.float32)
        except ValueError:
            raise DataError(f"{path}:{lineno}: vector has a value that is not a number") from None
        if dim is None:
            dim = len(vec)
        elif len(vec) != dim:
            raise DataError(
                f"{path}:{lineno}: vector has {len(vec)} values, earlier ones have {dim}"
            )
        words.append(parts[0])
        rows.append(vec)
        if limit and len(words) >= limit:
            break
    if not words:
        raise DataError(f"{path}: no word vectors found")
    return words, np.stack(rows)


def init_pretrained(model: Tagger, vocab: Vocab, words: list[str], vectors: np.ndarray) -> int:
    """Copy vectors into the word embedding for every vocabulary key they cover; return how many."""
    weight = model.word_embedding.weight
    found = 0
    done = set()
    scale = float(vectors.std()) or 1.0
    with torch.no_grad():
        for w, v in zip(words, vectors, strict=True):
            k = vocab.key(w)
            i = vocab.word_index.get(k)
            if i is not None and i >= 2 and i not in done:
                weight[i] = torch.from_numpy(v) / scale / math.sqrt(len(v))
                done.add(i)
                found += 1
    return found


# ---- training -----------------------------------------------------------------------------------


@dataclass
class TrainResult(BaseTrainResult):
    vocab: Vocab


def default_train_config(**overrides) -> TrainConfig:
    """The tagger's training defaults (TrainConfig's, with DEFAULT_TRAIN), plus `overrides`."""
    return config_from_defaults(DEFAULT_TRAIN, **overrides)


def train_tagger(
    train: str | Path,
    dev: str | Path | None = None,
    *,
    out: str | Path,
    column: str = "upos",
    fmt: str = "auto",
    model_overrides: dict | None = None,
    train_cfg: TrainConfig | None = None,
    lowercase: bool = True,
    min_count: int = 1,
    embeddings: str | Path | None = None,
    embeddings_limit: int = 200_000,
    device: torch.device = torch.device("cpu"),
    on_progress: Callable[[Progress], None] | None = None,
    on_log: Callable[[str], None] = lambda msg: None,
    resume: Checkpoint | None = None,
) -> TrainResult:
    """Train (or resume training) a tagger on a CoNLL-U or two-column file; return where it was saved.

    Without `dev`, the last `val_fraction` of the training sentences is held out.
    """
    cfg = train_cfg or default_train_config()
    train_sents = load_sentences(train, fmt=fmt, column=column)
    if dev is not None:
        dev_sents = load_sentences(dev, fmt=fmt, column=column)
    else:
        n_dev = int(len(train_sents) * cfg.val_fraction)
        if n_dev < 1:
            raise DataError(f"{train}: too few sentences to hold out a dev set; pass --dev FILE")
        train_sents, dev_sents = train_sents[:-n_dev], train_sents[-n_dev:]
        on_log(f"no dev file: holding out the last {n_dev} training sentences")
    seed_everything(cfg.seed)
    if resume is not None:
        vocab = Vocab.from_dict(resume.meta["tokenizers"])
        model_cfg = TaggerConfig.from_dict(resume.meta["model_config"])
        counts = Counter(vocab.key(w) for s in train_sents for w in s.words)
        vectors = None
    else:
        vectors = (
            read_vectors(embeddings, limit=embeddings_limit) if embeddings is not None else None
        )
        extra = (
            (Vocab([], [], [], 0, lowercase=lowercase).key(w) for w in vectors[0])
            if vectors
            else ()
        )
        vocab, counts = build_vocab(
            train_sents, lowercase=lowercase, min_count=min_count, column=column, extra_words=extra
        )
        shape = {**DEFAULT_MODEL, **(model_overrides or {})}
        if vectors is not None:
            if model_overrides and model_overrides.get("word_dim") not in (
                None,
                vectors[1].shape[1],
            ):
                raise UsageError(
                    f"--word-dim must match the {vectors[1].shape[1]}-dimensional vectors of {embeddings}"
                )
            shape["word_dim"] = vectors[1].shape[1]
        model_cfg = TaggerConfig(
            n_words=len(vocab.words), n_chars=len(vocab.chars), n_tags=len(vocab.tags), **shape
        )
    unknown_tags = sorted({t for s in dev_sents for t in s.tags or ()} - set(vocab.tags))
    if unknown_tags:
        on_log(
            f"warning: dev tags never seen in training (always wrong): {', '.join(unknown_tags[:10])}"
        )
    model = Tagger(model_cfg)
    if resume is not None:
        load_weights(model, checkpoint_weights(resume))
    elif vectors is not None:
        found = init_pretrained(model, vocab, *vectors)
        on_log(
            f"pretrained vectors: {found} of {len(vocab.words) - 2} words initialised from {embeddings}"
        )
    _apply_constraints(model, vocab, train_sents, on_log)
    model.to(device)
    data_info = {"train": file_info(train), "dev": file_info(dev) if dev is not None else None,
                 "format": fmt, "column": column, "sentences": len(train_sents),
                 "tokens": sum(len(s) for s in train_sents)}  # fmt: skip
    if vectors is not None:
        data_info["embeddings"] = file_info(embeddings)
    task = TaggerTask(
        model, vocab, train_sents, dev_sents, cfg, counts=counts, data_info=data_info, device=device
    )
    run = fit(task, cfg, out=out, device=device, on_progress=on_progress, resume=resume)
    return TrainResult(run.state, run.best, run.last, vocab=vocab)


def _apply_constraints(
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


# ---- loading and using a trained tagger ----------------------------------------------------------


@dataclass
class LoadedTagger:
    model: Tagger
    vocab: Vocab
    checkpoint: Checkpoint
    precision: str = "fp32"  # fp32 | bf16: the arithmetic of tagging
    encoder: Encoder = field(init=False)

    def __post_init__(self) -> None:
        self.encoder = Encoder(self.vocab)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_tagger(
    path: str | Path, *, device: torch.device = torch.device("cpu"), precision: str = "fp32"
) -> LoadedTagger:
    """Load a tagger checkpoint (refusing other tasks) ready for inference.

    `precision` "auto" tags in bf16 where the hardware computes it natively (about
    twice as fast on a recent CPU; a few tags in 10,000 may change), else in fp16 on a
    CUDA GPU, else fp32.
    """
    if precision not in INFERENCE_PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}")
    ckpt = load_checkpoint(path, task="tagger")
    try:
        cfg = TaggerConfig.from_dict(ckpt.meta["model_config"])
        vocab = Vocab.from_dict(ckpt.meta["tokenizers"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: checkpoint metadata is incomplete ({err})") from None
    sizes = (len(vocab.words), len(vocab.chars), len(vocab.tags))
    if sizes != (cfg.n_words, cfg.n_chars, cfg.n_tags):
        raise CheckpointError(f"{path}: vocabulary sizes {sizes} do not match the model config")
    model = Tagger(cfg)
    load_weights(model, checkpoint_weights(ckpt))
    _apply_constraints(model, vocab, None, lambda m: None)
    model.to(device).eval()
    resolved = resolve_precision(precision, device)
    check_precision(resolved, device)
    return LoadedTagger(model=model, vocab=vocab, checkpoint=ckpt, precision=resolved)


def predict(
    tagger: LoadedTagger, sentences: Iterable[Sequence[str]], *, read_ahead: int = READ_AHEAD
) -> Iterator[list[str]]:
    """Tags for each sentence (a list of words), in order, streaming: `read_ahead` sentences
    are read, tagged in batches of similar length and yielded before more input is read.
    Empty sentences get no tags.
    """
    pending: list[Sequence[str]] = []
    for s in sentences:
        pending.append(s)
        if len(pending) >= read_ahead:
            yield from _tag_chunk(tagger, pending)
            pending = []
    if pending:
        yield from _tag_chunk(tagger, pending)


def _tag_chunk(tagger: LoadedTagger, sentences: list[Sequence[str]]) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in sentences]
    todo = [i for i, s in enumerate(sentences) if len(s)]
    model, tags = tagger.model, tagger.vocab.tags
    with torch.inference_mode(), autocast(tagger.precision, tagger.device):
        for batch_idx in length_batches([len(sentences[i]) for i in todo]):
            idx = [todo[k] for k in batch_idx]
            batch = tagger.encoder.batch([sentences[i] for i in idx]).to(tagger.device)
            emissions = model(
                batch.words, batch.lengths, batch.chars, batch.char_lengths, batch.types
            )
            for i, p in zip(idx, model.decode(emissions, batch.lengths), strict=True):
                out[i] = [tags[t] for t in p]
    return out


def evaluate(tagger: LoadedTagger, sentences: Sequence[Sentence]) -> dict:
    """Accuracy, accuracy on words unseen in training, per-tag P/R/F1 and (for BIO/BIOES tags) span P/R/F1.

    Returns a JSON-able dict: accuracy, oov_accuracy, tokens, oov_tokens, sentences,
    per_tag {tag: {precision, recall, f1, support, predicted}}, and when spans apply
    span_precision, span_recall, span_f1 and spans {type: {...}}.
    """
    if not sentences:
        raise DataError("no sentences to evaluate")
    gold = [list(s.tags or []) for s in sentences]
    pred = list(predict(tagger, [s.words for s in sentences]))
    known = [[tagger.vocab.is_known(w) for w in s.words] for s in sentences]
    unseen = [[not k for k in ks] for ks in known]
    correct, total = metrics.accuracy(gold, pred)
    oov_correct, oov_total = metrics.accuracy(gold, pred, mask=unseen)
    result: dict = {
        "accuracy": correct / total if total else 0.0,
        "oov_accuracy": oov_correct / oov_total if oov_total else None,
        "tokens": total,
        "oov_tokens": oov_total,
        "sentences": len(sentences),
        "per_tag": {t: prf.to_dict() for t, prf in metrics.per_tag(gold, pred).items()},
    }
    scheme = tagger.vocab.scheme or metrics.detect_scheme({t for g in gold for t in g})
    if scheme is not None:
        result["scheme"] = scheme
        result.update(metrics.span_scores(gold, pred).to_dict())
    return result
