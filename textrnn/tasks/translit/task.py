"""Transliteration as a task for the training loop: length-bucketed word batches, teacher
forcing (or scheduled sampling), and dev word accuracy as the monitored figure."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from textrnn.config import config_to_dict
from textrnn.data.batching import bucket_batches
from textrnn.engine import distributed
from textrnn.engine.config import TrainConfig
from textrnn.models.seq2seq import Ensemble, Seq2Seq
from textrnn.tasks.translit.batch import Batch, make_batch, sequence_loss
from textrnn.tasks.translit.config import TranslitOptions
from textrnn.tasks.translit.load import LoadedTransliterator
from textrnn.tasks.translit.vocab import Vocabs


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
        logits = self.model.teacher_forced(
            batch.src, batch.lengths, batch.tgt_in, teacher_forcing=tf
        )
        total, _ = sequence_loss(logits, batch, label_smoothing=self.options.label_smoothing)
        loss = total / max(share.global_weight, 1e-9)
        if share.stand_in:
            return loss * 0.0, 0
        return loss, batch.tokens

    def evaluate(self) -> dict[str, float]:
        loaded = LoadedTransliterator(self.model, self.vocabs, precision="fp32")
        result = loaded.evaluate_pairs(self.dev, beam=1, nbest=1)
        return {
            "val_loss": result["loss"],
            "val_accuracy": result["top1"],
            "val_cer": result["cer"],
        }

    def reset_epoch(self) -> None:
        pass

    def state_tensors(self) -> dict[str, Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        pass

    def checkpoint_meta(self) -> dict:
        return {
            "model_config": config_to_dict(self.model.config),
            "tokenizers": self.vocabs.to_dict(),
            "translit": config_to_dict(self.options),
            **self.meta,
        }
