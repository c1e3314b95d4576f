"""Tagging as a task for the training loop: bucketed sentence batches, word dropout, and dev
accuracy as the monitored figure.

Rare words are replaced by <unk> during training with probability alpha / (alpha + count)
(Kiperwasser & Goldberg 2016), so <unk> is trained on words like the unknown ones seen
later and the character model learns to carry them."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from textrnn.config import config_to_dict
from textrnn.data.batching import bucket_batches, length_batches
from textrnn.engine import distributed
from textrnn.engine.config import TrainConfig
from textrnn.formats.conllu import Sentence
from textrnn.models.tagger import UNK, Tagger
from textrnn.tasks.tag.batch import Batch, Encoder
from textrnn.tasks.tag.vocab import Vocab

WORD_DROPOUT_ALPHA = 1.0  # P(<unk> replaces a training word seen c times) = alpha / (alpha + c)


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
            "model_config": config_to_dict(self.model.config),
            "tokenizers": self.vocab.to_dict(),
            "data": self.data_info,
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
