"""Transliteration (romanised <-> native script, one word at a time): data, training,
prediction and evaluation. The Python API behind `textrnn translit train | predict | eval`:

    from textrnn.translit import train_translit, load_translit, transliterate, evaluate

Data: TSV lexicons, one pair per line. The Dakshina layout (`latin<TAB>native<TAB>count`
in the released files, whatever the order of the first two columns) and plain
`source<TAB>target` both work: the first two columns are the pair, and whichever of
them is written in Latin script is the romanised side, so `--direction to-native`
(default) or `to-latin` picks source and target without knowing the column order.
`--source-column N --target-column M` (1-based) name the columns instead.

Attestation counts (Dakshina's third column: how many annotators wrote this romanisation)
are used, by default, as de-duplication only: each distinct (source, target) pair is
one training example per epoch, whatever its count (duplicate lines add up their
counts). Evaluation counts every row once too, so this matches what is measured; with
`counts="weight"` each example's loss is weighted by its count instead (mean weight 1),
which makes the model prefer the most common romanisation, useful for `to-latin`.

Units: the source is read as grapheme clusters (conjuncts whole, `textrnn.text`), the
target is written as code points: Hindi has 2,020 distinct grapheme clusters in the
training lexicon against 63 code points, and 0.7% of the dev set's clusters never occur
in training, so a grapheme decoder would get those words wrong for certain.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import regex
import torch
import torch.nn.functional as F
from torch import Tensor

from textrnn import decoding, distributed, metrics
from textrnn.checkpoint import Checkpoint, file_info, load_checkpoint
from textrnn.conll import iter_file_lines
from textrnn.data import check_text_file
from textrnn.errors import CheckpointError, DataError, TextrnnError, UsageError
from textrnn.lm import check_weight_shapes, checkpoint_weights, load_weights
from textrnn.models.seq2seq import BOS, EOS, PAD, UNK, Ensemble, Seq2Seq, Seq2SeqConfig, build_model
from textrnn.tagging import bucket_batches
from textrnn.text import graphemes, normalize
from textrnn.tokenizers import UNITS, CharTokenizer
from textrnn.train import (
    INFERENCE_PRECISIONS,
    Progress,
    TrainConfig,
    autocast,
    config_from_defaults,
    fit,
    resolve_precision,
    seed_everything,
)
from textrnn.train import TrainResult as BaseTrainResult

DIRECTIONS = ("to-native", "to-latin")
COUNTS = ("once", "weight")
SOURCE_SPECIALS = ("<unk>", "<pad>")  # ids UNK, PAD
TARGET_SPECIALS = ("<unk>", "<pad>", "<s>", "</s>")  # ids UNK, PAD, BOS, EOS
BANNED = (UNK, PAD, BOS)  # never generated
MAX_SOURCE_UNITS = 64  # longer words are cut (the longest Dakshina word has 20)
INFER_WORDS = 256  # words decoded together (times the beam width in rows)
READ_AHEAD = 1024  # input lines read before they are transliterated (streaming)
CACHE_WORDS = 100_000  # running text repeats words: their results are kept

# What a user who passes only --train/--dev gets (see the README section for the runs
# behind these choices).
DEFAULT_MODEL = {"embed": 128, "hidden": 256, "layers": 1, "dec_hidden": 512, "attention": "luong", "dropout": 0.25}
DEFAULT_TRAIN = {"batch_size": 128, "lr": 3e-3, "clip": 5.0, "epochs": 200, "patience": 8, "warmup_steps": 200}

_LATIN = regex.compile(r"\p{Latin}")
_LETTER = regex.compile(r"\p{L}")
_WORD = regex.compile(r"[\p{L}\p{M}\u200c\u200d]+")  # what --text transliterates


@dataclass(frozen=True)
class TranslitOptions:
    """Task settings besides the model shape and the shared TrainConfig (kept in checkpoints)."""

    teacher_forcing: float = 1.0  # probability of feeding the gold previous unit, after the decay
    sampling_decay: int = 0  # steps over which that probability falls linearly from 1 (0 = at once)
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    counts: str = "once"  # once (each pair once) | weight (loss weighted by attestation count)
    source_unit: str = "grapheme"  # grapheme | codepoint
    target_unit: str = "codepoint"  # grapheme | codepoint

    def __post_init__(self) -> None:
        if not (isinstance(self.teacher_forcing, int | float) and 0.0 <= self.teacher_forcing <= 1.0):
            raise UsageError(f"--teacher-forcing must be in [0, 1], got {self.teacher_forcing!r}")
        if isinstance(self.sampling_decay, bool) or not isinstance(self.sampling_decay, int) or self.sampling_decay < 0:
            raise UsageError(f"--sampling-decay must be an integer >= 0, got {self.sampling_decay!r}")
        if not (isinstance(self.label_smoothing, int | float) and 0.0 <= self.label_smoothing < 1.0):
            raise UsageError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.counts not in COUNTS:
            raise UsageError(f"--counts must be one of {', '.join(COUNTS)}, got {self.counts!r}")
        for name in ("source_unit", "target_unit"):
            if getattr(self, name) not in UNITS:
                raise UsageError(f"--{name.replace('_', '-')} must be one of {', '.join(UNITS)}, got {getattr(self, name)!r}")

    def teacher_forcing_at(self, step: int) -> float:
        """The probability of feeding the gold unit at optimizer step `step`."""
        if self.sampling_decay == 0 or step >= self.sampling_decay:
            return self.teacher_forcing
        return 1.0 - (1.0 - self.teacher_forcing) * step / self.sampling_decay

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TranslitOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ---- lexicon files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Which columns of a lexicon hold the source, the target and the count."""

    source: int  # 0-based column
    target: int
    count: int | None  # None: every row counts once

    def describe(self) -> str:
        count = f", count column {self.count + 1}" if self.count is not None else ""
        return f"source column {self.source + 1}, target column {self.target + 1}{count}"


@dataclass
class Lexicon:
    pairs: list[tuple[str, str]]  # (source, target), NFC, one per line
    counts: list[int]  # attestation count per pair (1 without a count column)
    layout: Layout
    path: str


def _fields(line: str) -> list[str]:
    return line.rstrip("\r").split("\t")


def _latin_share(words: Iterable[str]) -> float:
    letters = latin = 0
    for w in words:
        letters += len(_LETTER.findall(w))
        latin += len(_LATIN.findall(w))
    return latin / letters if letters else 0.0


def detect_layout(
    path: str | Path,
    *,
    direction: str = "to-native",
    source_column: int | None = None,
    target_column: int | None = None,
) -> Layout:
    """The layout of a lexicon: explicit columns (1-based), else the first two columns with
    the Latin-script one as the source for `to-native` and as the target for `to-latin`.

    When the script does not tell the two apart, column 1 -> 2 is `to-native`. The
    count is column 3 where the pair is columns 1 and 2 and line 1 has an integer there.
    """
    if direction not in DIRECTIONS:
        raise UsageError(f"--direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if (source_column is None) != (target_column is None):
        raise UsageError("--source-column and --target-column go together")
    first: list[list[str]] = []
    for line in iter_file_lines(check_text_file(path)):
        if line.strip():
            first.append(_fields(line))
            if len(first) == 200:
                break
    if not first:
        raise DataError(f"{path}: no lexicon lines")
    if source_column is not None:
        for name, col in (("--source-column", source_column), ("--target-column", target_column)):
            if col < 1:
                raise UsageError(f"{name} must be at least 1, got {col}")
        if source_column == target_column:
            raise UsageError("--source-column and --target-column must differ")
        return Layout(source_column - 1, target_column - 1, None)
    rows = [r for r in first if len(r) >= 2]
    share = [_latin_share(r[i] for r in rows) for i in (0, 1)]
    latin = 1 if share[1] > 0.5 >= share[0] else 0  # column 1 unless only column 2 is Latin
    native = 1 - latin
    src, tgt = (latin, native) if direction == "to-native" else (native, latin)
    count = 2 if len(first[0]) >= 3 and first[0][2].strip().isdigit() else None
    return Layout(src, tgt, count)


def read_lexicon(path: str | Path, layout: Layout, *, lowercase: bool = False) -> Lexicon:
    """Every (source, target) pair of a TSV lexicon; a malformed line is a DataError naming
    the file and line. Blank lines are skipped; sources are lowercased with `lowercase`."""
    pairs: list[tuple[str, str]] = []
    counts: list[int] = []
    need = max(layout.source, layout.target, -1 if layout.count is None else layout.count) + 1
    for number, line in enumerate(iter_file_lines(check_text_file(path)), 1):
        if not line.strip():
            continue
        cols = _fields(line)
        if len(cols) < need:
            raise DataError(f"{path}:{number}: expected at least {need} tab-separated columns, found {len(cols)}")
        src, tgt = cols[layout.source].strip(), cols[layout.target].strip()
        if not src or not tgt:
            side = "source" if not src else "target"
            raise DataError(f"{path}:{number}: empty {side} column")
        count = 1
        if layout.count is not None:
            text = cols[layout.count].strip()
            if not text.isdigit() or not text.isascii():
                raise DataError(f"{path}:{number}: count column holds {text!r}, expected a whole number")
            count = int(text)
        src = normalize(src, "nfc")
        pairs.append((src.lower() if lowercase else src, normalize(tgt, "nfc")))
        counts.append(count)
    if not pairs:
        raise DataError(f"{path}: no lexicon lines")
    return Lexicon(pairs, counts, layout, str(path))


def merge_duplicates(lexicon: Lexicon) -> tuple[list[tuple[str, str]], list[int]]:
    """Distinct pairs in first-seen order, with the counts of repeated lines added up."""
    total: dict[tuple[str, str], int] = {}
    for pair, count in zip(lexicon.pairs, lexicon.counts, strict=True):
        total[pair] = total.get(pair, 0) + count
    return list(total), list(total.values())


# ---- vocabularies ----------------------------------------------------------------------------------


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
        return {"source": self.source.to_dict(), "target": self.target.to_dict(), "lowercase": self.lowercase}

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
    source = CharTokenizer([*SOURCE_SPECIALS, *_units(sources, options.source_unit)], unit=options.source_unit)
    target = CharTokenizer([*TARGET_SPECIALS, *_units((t for _, t in pairs), options.target_unit)], unit=options.target_unit)
    return Vocabs(source, target, lowercase)


# ---- batches ---------------------------------------------------------------------------------------------


@dataclass
class Batch:
    src: Tensor  # (B, S) source ids, PAD after each word
    lengths: Tensor  # (B,)
    tgt_in: Tensor  # (B, T) <s> + target ids, PAD after
    tgt_out: Tensor  # (B, T) target ids + </s>, -100 after
    weights: Tensor  # (B,) loss weight per word

    def to(self, device: torch.device) -> Batch:
        return Batch(*(getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)))

    @property
    def tokens(self) -> int:
        return int((self.tgt_out >= 0).sum())


def pad_sources(ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Right-padded (B, S) source ids and their lengths (B,); an empty word reads as one <unk>."""
    rows = [list(r) or [UNK] for r in ids]
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    src = np.full((len(rows), int(lengths.max())), PAD, dtype=np.int64)
    src[np.arange(src.shape[1]) < lengths[:, None]] = [i for r in rows for i in r]
    return torch.from_numpy(src), torch.from_numpy(lengths)


def make_batch(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], weights: Sequence[float]) -> Batch:
    src, lengths = pad_sources(src_ids)
    B, T = len(tgt_ids), max(len(t) for t in tgt_ids) + 1
    tgt_in = np.full((B, T), PAD, dtype=np.int64)
    tgt_out = np.full((B, T), -100, dtype=np.int64)
    for b, t in enumerate(tgt_ids):
        tgt_in[b, : len(t) + 1] = [BOS, *t]
        tgt_out[b, : len(t) + 1] = [*t, EOS]
    return Batch(src, lengths, torch.from_numpy(tgt_in), torch.from_numpy(tgt_out), torch.tensor(weights, dtype=torch.float32))


def sequence_loss(logits: Tensor, batch: Batch, *, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
    """(weighted sum of token losses, weighted token count) of teacher-forced logits (B, T, V),
    or of an ensemble's (M, B, T, V), whose loss is the mean of the members'."""
    if logits.dim() == 4:
        sums = [sequence_loss(m, batch, label_smoothing=label_smoothing) for m in logits]
        return torch.stack([total for total, _ in sums]).mean(), sums[0][1]
    B, T, V = logits.shape
    token = F.cross_entropy(
        logits.float().reshape(B * T, V), batch.tgt_out.reshape(-1), ignore_index=-100,
        reduction="none", label_smoothing=label_smoothing,
    ).view(B, T)  # fmt: skip
    real = (batch.tgt_out >= 0).float()  # (B, T)
    w = batch.weights.unsqueeze(1)  # (B, 1)
    return (token * w).sum(), (real * w).sum()


# ---- the task the training loop runs ---------------------------------------------------------------


@dataclass
class Share:
    """This process's part of a global batch (all of it with one process)."""

    batch: Batch
    global_weight: float  # weighted target tokens of the whole global batch: the loss's denominator
    stand_in: bool = False  # the global batch had fewer words than processes: weighs nothing


class TranslitTask:
    """Transliteration as a task for `Trainer`: length-bucketed word batches, teacher forcing
    (or scheduled sampling), and dev word accuracy by greedy decoding as the monitored figure.

    With several processes, each global batch of `batch_size` words is cut into one
    contiguous share per process, and each share's loss is divided by the weighted target
    tokens of the whole global batch: the summed gradients are those of one process.
    """

    name = "translit"
    data_parallel = True
    monitor = "val_accuracy"
    higher_is_better = True

    def __init__(
        self,
        model: Seq2Seq | Ensemble,
        vocabs: Vocabs,
        train: Sequence[tuple[str, str]],
        train_counts: Sequence[int],
        dev: Sequence[tuple[str, str]],
        cfg: TrainConfig,
        options: TranslitOptions,
        *,
        meta: dict,
        device: torch.device,
    ) -> None:
        self.model, self.vocabs, self.cfg, self.options = model, vocabs, cfg, options
        self.meta, self.device = meta, device
        self.src = [vocabs.source_ids(s) for s, _ in train]
        self.tgt = [vocabs.target_ids(t) for _, t in train]
        if options.counts == "weight":
            c = np.asarray(train_counts, dtype=np.float64)
            self.weights = (c / c.mean()).tolist()
        else:
            self.weights = [1.0] * len(train)
        self.lengths = [len(s) + len(t) for s, t in zip(self.src, self.tgt, strict=True)]
        self.dev = list(dev)
        self._step = 0  # optimizer steps so far (for the scheduled-sampling decay)
        self.dist = distributed.context()

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.src) / self.cfg.batch_size)

    def batches(self, epoch: int, start: int) -> Iterator[Share]:
        order = bucket_batches(self.lengths, self.cfg.batch_size, seed=self.cfg.seed, epoch=epoch)
        for k, idx in enumerate(order[start:], start):
            self._step = epoch * len(order) + k
            total = sum(self.weights[i] * (len(self.tgt[i]) + 1) for i in idx)  # (+1: </s>)
            part = np.array_split(idx, self.dist.world)[self.dist.rank]
            # A rank must take part in every step: with no word of its own it reads one of
            # the batch's and weighs it 0.
            stand_in = len(part) == 0
            part = idx[:1] if stand_in else part
            batch = make_batch([self.src[i] for i in part], [self.tgt[i] for i in part],
                               [self.weights[i] for i in part])  # fmt: skip
            yield Share(batch.to(self.device), total, stand_in)

    def loss(self, share: Share) -> tuple[Tensor, int]:
        batch = share.batch
        tf = self.options.teacher_forcing_at(self._step)
        logits = self.model.teacher_forced(batch.src, batch.lengths, batch.tgt_in, teacher_forcing=tf)
        total, _ = sequence_loss(logits, batch, label_smoothing=self.options.label_smoothing)
        loss = total / max(share.global_weight, 1e-9)
        if share.stand_in:
            return loss * 0.0, 0
        return loss, batch.tokens

    def evaluate(self) -> dict[str, float]:
        loaded = Transliterator(self.model, self.vocabs, precision="fp32")
        result = score_pairs(loaded, self.dev, beam=1, nbest=1)
        return {"val_loss": result["loss"], "val_accuracy": result["top1"], "val_cer": result["cer"]}

    def reset_epoch(self) -> None:
        pass

    def state_tensors(self) -> dict[str, Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        pass

    def checkpoint_meta(self) -> dict:
        return {
            "model_config": self.model.config.to_dict(),
            "tokenizers": self.vocabs.to_dict(),
            "translit": self.options.to_dict(),
            **self.meta,
        }


# ---- decoding -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    text: str  # the transliteration
    score: float  # length-normalised log-probability (what candidates are ranked by)
    logprob: float  # total log-probability, end of word included


@dataclass
class Transliterator:
    """A model with its vocabularies, ready for inference."""

    model: Seq2Seq | Ensemble
    vocabs: Vocabs
    precision: str = "fp32"  # fp32 | bf16: the arithmetic of decoding
    checkpoint: Checkpoint | None = None
    length_penalty: float = 1.0  # alpha in logprob / length ** alpha when ranking beams
    cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def max_length(src_length: int) -> int:
    """Units a word of `src_length` source units may become: twice as many, plus four.

    Every word has its own limit, whatever else is in its batch, so that a word's
    candidates never depend on its neighbours (Dakshina's longest ratio is below 2).
    """
    return 2 * src_length + 4


def decode_ids(
    tr: Transliterator, src_ids: Sequence[Sequence[int]], *, beam: int = 5, nbest: int = 1
) -> list[list[tuple[tuple[int, ...], float, float]]]:
    """The `nbest` best (target ids, score, logprob) of each source (unit ids), best first, by
    greedy search (beam 1) or beam search through `textrnn.decoding`; words are decoded
    INFER_WORDS at a time, similar lengths together."""
    beam_config(beam, nbest, tr.length_penalty, 1)  # check the settings before any work
    out: list[list] = [[] for _ in src_ids]
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    model = tr.model
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(tr.precision, tr.device):
            for start in range(0, len(order), INFER_WORDS):
                idx = order[start : start + INFER_WORDS]
                src, lengths = pad_sources([src_ids[i] for i in idx])
                limits = [max_length(n) for n in lengths.tolist()]
                state = model.encode(src.to(tr.device), lengths.to(tr.device))
                first = torch.full((len(idx),), BOS, dtype=torch.long, device=tr.device)
                if beam == 1:
                    found = _greedy(model, state, first, limits, tr.length_penalty)
                else:
                    found = _beam(model, state, first, limits, beam_config(beam, nbest, tr.length_penalty, max(limits)))
                for i, cands in zip(idx, found, strict=True):
                    out[i] = cands
    finally:
        model.train(was_training)
    return out


def beam_config(beam: int, nbest: int, length_penalty: float, steps: int) -> decoding.BeamConfig:
    return decoding.BeamConfig(beam=beam, nbest=nbest, length_penalty=length_penalty, max_length=steps)


def _greedy(model: Seq2Seq | Ensemble, state, first: Tensor, limits: list[int], alpha: float) -> list[list[tuple]]:
    samples = decoding.greedy(
        model.step_logits, state, first, max_new_tokens=max(limits), banned_ids=BANNED, eos_id=EOS,
        is_done=lambda row, tokens: len(tokens) >= limits[row], reorder_fn=lambda s, i: s.reorder(i),
    )  # fmt: skip
    # Scored like a beam hypothesis: log-probability / (steps taken, </s> included) ** alpha.
    return [[(s.tokens, s.logprob / (len(s.tokens) + (s.stop_reason == "eos")) ** alpha, s.logprob)] for s in samples]


def _beam(model: Seq2Seq | Ensemble, state, first: Tensor, limits: list[int], config: decoding.BeamConfig) -> list[list[tuple]]:
    hyps = decoding.beam_search_batch(
        model.step_logits, lambda s, i: s.reorder(i), state, first, config=config, eos_id=EOS,
        is_done=lambda row, tokens: len(tokens) >= limits[row], banned_ids=BANNED,
    )  # fmt: skip
    return [[(h.tokens, h.score, h.logprob) for h in row] for row in hyps]


def transliterate(
    tr: Transliterator, words: Sequence[str], *, beam: int = 5, nbest: int = 1
) -> list[list[Candidate]]:
    """The `nbest` best transliterations of each word, best first; an empty word gives []."""
    todo = [i for i, w in enumerate(words) if w]
    found = decode_ids(tr, [tr.vocabs.source_ids(words[i]) for i in todo], beam=beam, nbest=nbest)
    out: list[list[Candidate]] = [[] for _ in words]
    for i, cands in zip(todo, found, strict=True):
        out[i] = [Candidate(tr.vocabs.target_text(t), float(s), float(lp)) for t, s, lp in cands]
    return out


def predict_words(
    tr: Transliterator, words: Iterable[str], *, beam: int = 5, nbest: int = 1, read_ahead: int = READ_AHEAD
) -> Iterator[list[Candidate]]:
    """Candidates for each word, in order, streaming: `read_ahead` words are read, decoded
    together and yielded before more input is read."""
    pending: list[str] = []
    for w in words:
        pending.append(w)
        if len(pending) >= read_ahead:
            yield from transliterate(tr, pending, beam=beam, nbest=nbest)
            pending = []
    if pending:
        yield from transliterate(tr, pending, beam=beam, nbest=nbest)


def transliterate_text(tr: Transliterator, lines: Sequence[str], *, beam: int = 5) -> list[str]:
    """Running text: every word (a run of letters and marks) whose units the model knows is
    transliterated; spacing, punctuation, digits and unknown-script words stay as they are.
    Results of words are cached (running text repeats them)."""
    words = [m.group() for line in lines for m in _WORD.finditer(line)]
    cache = tr.cache
    todo = list(dict.fromkeys(w for w in words if w not in cache and tr.vocabs.knows(w)))
    for w, cands in zip(todo, transliterate(tr, todo, beam=beam, nbest=1), strict=True):
        cache[w] = cands[0].text if cands else w
        if len(cache) > CACHE_WORDS:
            cache.popitem(last=False)
    return [_WORD.sub(lambda m: cache.get(m.group(), m.group()), line) for line in lines]


def attention_map(tr: Transliterator, word: str) -> tuple[list[str], list[str], list[list[float]]]:
    """Greedy transliteration of `word` with the attention weights of every output unit:
    (source units, output units (+ </s>), weights[output][source])."""
    ids = tr.vocabs.source_ids(word)
    if not ids:
        raise UsageError("--show-attention needs a non-empty word")
    if tr.model.config.attention == "none":
        raise UsageError("this model has no attention (--attention none)")
    src, lengths = pad_sources([ids])
    model = tr.model.eval()
    rows: list[list[float]] = []
    out: list[int] = []
    with torch.inference_mode():
        state = model.encode(src.to(tr.device), lengths.to(tr.device))
        prev = torch.tensor([BOS], device=tr.device)
        for _ in range(max_length(len(ids)) + 1):
            logits, state = model.step_logits(prev, state)
            logits[:, list(BANNED)] = -math.inf
            rows.append(state.alpha[0].float().tolist())
            prev = logits.argmax(-1)
            if int(prev) == EOS:
                break
            out.append(int(prev))
    source_units = [tr.vocabs.source.id_to_piece(i) if i != UNK else "?" for i in ids]
    target_units = [tr.vocabs.target.id_to_piece(i) for i in out] + ["</s>"]
    return source_units, target_units[: len(rows)], rows


# ---- evaluation -----------------------------------------------------------------------------------------


def score_pairs(tr: Transliterator, pairs: Sequence[tuple[str, str]], *, beam: int = 5, nbest: int = 5) -> dict:
    """Top-1 and top-k word accuracy, CER of the best candidate, accuracy where any reference
    of the same source counts, and the teacher-forced loss per target unit. Every row counts once."""
    if not pairs:
        raise DataError("no pairs to evaluate")
    sources = [s for s, _ in pairs]
    cands = transliterate(tr, sources, beam=beam, nbest=nbest)
    best = [c[0].text if c else "" for c in cands]
    refs: dict[str, set[str]] = {}
    for s, t in pairs:
        refs.setdefault(s, set()).add(t)
    top1 = sum(b == t for b, (_, t) in zip(best, pairs, strict=True))
    topk = sum(any(c.text == t for c in cs) for cs, (_, t) in zip(cands, pairs, strict=True))
    any_ref = sum(b in refs[s] for b, (s, _) in zip(best, pairs, strict=True))
    errors, chars = metrics.char_errors([t for _, t in pairs], best)
    n = len(pairs)
    return {
        "top1": top1 / n,
        "topk": topk / n,
        "k": nbest,
        "beam": beam,
        "cer": errors / chars if chars else 0.0,
        "any_reference_top1": any_ref / n,
        "loss": teacher_forced_loss(tr, pairs),
        "rows": n,
        "sources": len(refs),
        "predictions": best,
    }


def teacher_forced_loss(tr: Transliterator, pairs: Sequence[tuple[str, str]]) -> float:
    """Cross-entropy per target unit (</s> included), without label smoothing or dropout."""
    model, vocabs = tr.model, tr.vocabs
    was_training = model.training
    model.eval()
    total = count = 0.0
    src = [vocabs.source_ids(s) for s, _ in pairs]
    tgt = [vocabs.target_ids(t) for _, t in pairs]
    order = sorted(range(len(pairs)), key=lambda i: len(src[i]))
    try:
        with torch.inference_mode():
            for start in range(0, len(order), INFER_WORDS):
                idx = order[start : start + INFER_WORDS]
                batch = make_batch([src[i] for i in idx], [tgt[i] for i in idx], [1.0] * len(idx)).to(tr.device)
                logits = model.teacher_forced(batch.src, batch.lengths, batch.tgt_in)
                if logits.dim() == 4:  # an ensemble: the loss of its mean probabilities
                    logits = torch.logsumexp(logits.float().log_softmax(-1), dim=0) - math.log(logits.shape[0])
                s, c = sequence_loss(logits, batch)
                total, count = total + float(s), count + float(c)
    finally:
        model.train(was_training)
    return total / max(count, 1.0)


def evaluate(tr: Transliterator, path: str | Path, *, beam: int = 5, nbest: int = 5) -> dict:
    """`score_pairs` on a lexicon file read with the layout the model was trained with."""
    layout = layout_for(tr, path)
    lexicon = read_lexicon(path, layout, lowercase=tr.vocabs.lowercase)
    result = score_pairs(tr, lexicon.pairs, beam=beam, nbest=nbest)
    result.pop("predictions")
    return {"file": str(path), "layout": layout.describe(), **result}


def layout_for(tr: Transliterator, path: str | Path) -> Layout:
    """The layout of `path` for this model: its training columns, or its direction."""
    data = tr.checkpoint.meta.get("data") if tr.checkpoint is not None else None
    data = data if isinstance(data, dict) else {}
    cols, direction = data.get("columns"), data.get("direction", "to-native")
    if cols is not None and not (isinstance(cols, list) and len(cols) == 2 and all(type(c) is int and c >= 1 for c in cols)):
        raise CheckpointError(f"checkpoint is corrupt: data.columns is {cols!r}")
    if direction not in DIRECTIONS:
        raise CheckpointError(f"checkpoint is corrupt: data.direction is {direction!r}")
    if cols:
        return detect_layout(path, source_column=cols[0], target_column=cols[1])
    return detect_layout(path, direction=direction)


# ---- training -----------------------------------------------------------------------------------------------


@dataclass
class TrainResult(BaseTrainResult):
    vocabs: Vocabs


def default_train_config(**overrides) -> TrainConfig:
    """The transliterator's training defaults (TrainConfig's, with DEFAULT_TRAIN), plus `overrides`."""
    return config_from_defaults(DEFAULT_TRAIN, **overrides)


def train_translit(
    train: str | Path,
    dev: str | Path | None = None,
    *,
    out: str | Path,
    direction: str = "to-native",
    columns: tuple[int, int] | None = None,
    model_overrides: dict | None = None,
    options: TranslitOptions | None = None,
    train_cfg: TrainConfig | None = None,
    device: torch.device = torch.device("cpu"),
    on_progress: Callable[[Progress], None] | None = None,
    on_log: Callable[[str], None] = lambda msg: None,
    resume: Checkpoint | None = None,
) -> TrainResult:
    """Train (or resume) a transliterator on a TSV lexicon; return where it was saved.

    `columns` = (source, target), 1-based, overrides `direction`. Without `dev`, the last
    `val_fraction` of the distinct training pairs is held out.
    """
    cfg = train_cfg or default_train_config()
    options = options or TranslitOptions()
    src_col, tgt_col = columns if columns is not None else (None, None)
    layout = detect_layout(train, direction=direction, source_column=src_col, target_column=tgt_col)
    lexicon = read_lexicon(train, layout)
    pairs, counts = merge_duplicates(lexicon)
    if dev is not None:
        dev_layout = detect_layout(dev, direction=direction, source_column=src_col, target_column=tgt_col)
        dev_pairs = read_lexicon(dev, dev_layout).pairs
    else:
        n_dev = int(len(pairs) * cfg.val_fraction)
        if n_dev < 1:
            raise DataError(f"{train}: too few pairs to hold out a dev set; pass --dev FILE")
        rng = np.random.default_rng(cfg.seed)  # the lexicon is sorted: hold out a random sample
        held = set(rng.choice(len(pairs), n_dev, replace=False).tolist())
        dev_pairs = [p for i, p in enumerate(pairs) if i in held]
        counts = [c for i, c in enumerate(counts) if i not in held]
        pairs = [p for i, p in enumerate(pairs) if i not in held]
        on_log(f"no dev file: holding out {n_dev} random training pairs")
    seed_everything(cfg.seed)
    if resume is not None:
        model, vocabs = model_from_checkpoint(resume, source="checkpoint")
    else:
        vocabs = build_vocabs(pairs, options)
        model = build_model(Seq2SeqConfig(n_source=vocabs.source.vocab_size, n_target=vocabs.target.vocab_size,
                                      **{**DEFAULT_MODEL, **(model_overrides or {})}))  # fmt: skip
    if vocabs.lowercase:
        dev_pairs = [(s.lower(), t) for s, t in dev_pairs]
    model.to(device)
    meta = {
        "data": {
            "train": file_info(train), "dev": file_info(dev) if dev is not None else None,
            "direction": direction, "columns": list(columns) if columns is not None else None,
            "layout": layout.describe(), "pairs": len(pairs), "lines": len(lexicon.pairs),
        },
    }  # fmt: skip
    on_log(f"{len(pairs)} distinct training pairs ({layout.describe()}), {len(dev_pairs)} dev pairs; "
           f"{vocabs.source.vocab_size - 2} source and {vocabs.target.vocab_size - 4} target units")  # fmt: skip
    task = TranslitTask(model, vocabs, pairs, counts, dev_pairs, cfg, options, meta=meta, device=device)
    run = fit(task, cfg, out=out, device=device, on_progress=on_progress, resume=resume)
    return TrainResult(run.state, run.best, run.last, vocabs=vocabs)


# ---- loading ---------------------------------------------------------------------------------------------------


def model_from_checkpoint(ckpt: Checkpoint, *, source: str) -> tuple[Seq2Seq | Ensemble, Vocabs]:
    """The checkpoint's model (with its weights) and vocabularies, every piece of metadata
    checked, and the weights' shapes checked against the config before any allocation."""
    try:
        cfg = Seq2SeqConfig.from_dict(ckpt.meta["model_config"])
        vocabs = Vocabs.from_dict(ckpt.meta["tokenizers"])
    except (KeyError, TypeError, ValueError, AttributeError, TextrnnError) as err:
        raise CheckpointError(f"{source}: checkpoint metadata is incomplete or invalid ({err})") from None
    sizes = (vocabs.source.vocab_size, vocabs.target.vocab_size)
    if sizes != (cfg.n_source, cfg.n_target):
        raise CheckpointError(f"{source}: vocabulary sizes {sizes} do not match the model config")
    try:
        with torch.device("meta"):  # shapes only: a config claiming a huge model allocates nothing
            probe = build_model(cfg)
    except (RuntimeError, ValueError, OverflowError) as err:
        raise CheckpointError(f"{source}: checkpoint model config is unusable ({str(err).splitlines()[0]})") from None
    weights = checkpoint_weights(ckpt)
    check_weight_shapes(probe, {k: tuple(v.shape) for k, v in weights.items()}, source=source)
    model = build_model(cfg)
    load_weights(model, weights, source=source)
    return model, vocabs


def load_translit(
    path: str | Path,
    *,
    device: torch.device = torch.device("cpu"),
    precision: str = "fp32",
    length_penalty: float = 1.0,
) -> Transliterator:
    """Load a transliteration checkpoint (refusing other tasks) ready for inference."""
    if precision not in INFERENCE_PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}")
    if not math.isfinite(length_penalty):
        raise UsageError(f"--length-penalty must be a finite number, got {length_penalty}")
    ckpt = load_checkpoint(path, task="translit")
    model, vocabs = model_from_checkpoint(ckpt, source=str(path))
    model.to(device).eval()
    return Transliterator(model, vocabs, precision=resolve_precision(precision, device),
                          checkpoint=ckpt, length_penalty=length_penalty)  # fmt: skip
