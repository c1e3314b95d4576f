"""Classification as a task for the training loop: length-bucketed batches of texts, word
dropout, class weights, and dev accuracy as the monitored figure."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from textrnn.config import config_to_dict
from textrnn.data.batching import bucket_batches
from textrnn.engine import distributed
from textrnn.engine.config import TrainConfig
from textrnn.models.classifier import ClassifierModel
from textrnn.tasks.classify.batch import Batch, Encoded, TextEncoder
from textrnn.tasks.classify.options import ClassifyOptions
from textrnn.tasks.classify.scoring import class_probabilities, scores


@dataclass
class Share:
    """This process's part of a global batch (all of it with one process)."""

    batch: Batch
    global_weight: float  # summed class weights of the global batch's rows: the loss's denominator
    stand_in: bool = False  # the global batch had fewer rows than processes: weighs nothing


class ClassifierTask:
    """Classification for `Trainer`: bucketed batches, word dropout, class weights, dev accuracy.

    With several processes, each global batch of `batch_size` texts is cut into one
    contiguous share per process, and each share's loss is divided by the summed class
    weights of the whole global batch: the shares' gradients sum to one process's.
    """

    name = "classify"
    data_parallel = True
    monitor = "val_accuracy"  # best checkpoint and early stopping follow dev accuracy
    higher_is_better = True

    def __init__(
        self,
        model: ClassifierModel,
        encoder: TextEncoder,
        train: tuple[Sequence[Encoded], Sequence[int]],
        dev: tuple[Sequence[Encoded], Sequence[int]],
        cfg: TrainConfig,
        options: ClassifyOptions,
        *,
        weights: Sequence[float],
        meta: dict,
        device: torch.device,
    ) -> None:
        self.model, self.cfg, self.options, self.meta, self.device = model, cfg, options, meta, device
        self.encoder = encoder
        self.items, self.labels = list(train[0]), list(train[1])
        self.dev_items, self.dev_labels = list(dev[0]), list(dev[1])
        self.lengths = [len(e.ids) for e in self.items]
        self.row_weight = [weights[y] for y in self.labels]
        self.weights = torch.tensor(weights, dtype=torch.float32, device=device)
        self.dist = distributed.context()
        self._epoch = 0

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.items) / self.cfg.batch_size)

    def batches(self, epoch: int, start: int) -> Iterator[Share]:
        self._epoch = epoch
        order = bucket_batches(self.lengths, self.cfg.batch_size, seed=self.cfg.seed, epoch=epoch)
        for idx in order[start:]:
            total = sum(self.row_weight[i] for i in idx)
            part = np.array_split(idx, self.dist.world)[self.dist.rank]
            # A rank must take part in every step: with no text of its own it reads one of
            # the batch's and weighs it 0.
            stand_in = len(part) == 0
            part = idx[:1] if stand_in else part
            batch = self.encoder.batch([self.items[i] for i in part], [self.labels[i] for i in part])
            yield Share(batch.to(self.device), total, stand_in)

    def loss(self, share: Share) -> tuple[Tensor, int]:
        batch = share.batch
        ids = batch.ids
        p = self.options.word_dropout
        if self.model.training and p > 0:
            # (the token's n-grams stay: its spelling is still read)
            unk = self.encoder.tokenizer.unk_id
            ids = ids.masked_fill(torch.rand(ids.shape, device=ids.device) < p, unk)
        # Each member learns on its own loss (their mean), as separately trained members would.
        logits = self.model.member_logits(ids, batch.lengths, batch.grams, batch.types)  # (M, B, K)
        m = logits.shape[0]
        labels = batch.labels.repeat(m)
        summed = F.cross_entropy(logits.float().flatten(0, 1), labels, weight=self.weights, reduction="sum") / m
        loss = summed / share.global_weight
        if share.stand_in:
            return loss * 0.0, 0
        return loss, int(batch.lengths.sum())

    def evaluate(self) -> dict[str, float]:
        if not self.dev_items:
            return {"val_loss": float("nan")}
        probs = class_probabilities(self.model, self.encoder, self.dev_items, device=self.device)
        s = scores(probs, self.dev_labels, n_classes=self.model.config.n_classes)
        return {"val_loss": s["loss"], "val_accuracy": s["accuracy"], "val_macro_f1": s["macro_f1"]}

    def reset_epoch(self) -> None:
        pass

    def state_tensors(self) -> dict[str, Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        pass

    def checkpoint_meta(self) -> dict:
        return {
            "model_config": config_to_dict(self.model.config),
            "classify": config_to_dict(self.options),
            **self.meta,
        }
