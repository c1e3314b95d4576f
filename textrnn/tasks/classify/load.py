"""A trained classifier: loading its checkpoint (`load`, metadata and weights checked before
use) into a `LoadedClassifier` that predicts, explains and evaluates."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from textrnn.config import config_from_dict
from textrnn.engine.checkpoint import Checkpoint, load_checkpoint
from textrnn.engine.devices import INFERENCE_PRECISIONS, check_precision, resolve_precision
from textrnn.engine.progress import Tick
from textrnn.engine.weights import check_weight_shapes, checkpoint_weights, load_weights
from textrnn.errors import CheckpointError, DataError, TextrnnError, UsageError
from textrnn.formats.tables import Row, read_table
from textrnn.models.classifier import ClassifierConfig, ClassifierModel, build_classifier
from textrnn.tasks.classify.batch import TextEncoder
from textrnn.tasks.classify.evaluate import score_rows, write_errors
from textrnn.tasks.classify.labels import Labels, check_known
from textrnn.tasks.classify.options import ClassifyOptions
from textrnn.tasks.classify.predict import READ_AHEAD, classify_texts, explain_text
from textrnn.tokenizers import Tokenizer, tokenizer_from_dict


@dataclass
class LoadedClassifier:
    """A classifier ready for inference: `predict` (class probabilities of texts, streaming),
    `explain` (which tokens drove a decision) and `evaluate` (scores on a labelled table)."""

    model: ClassifierModel
    tokenizer: Tokenizer
    labels: Labels
    checkpoint: Checkpoint | None
    options: ClassifyOptions
    precision: str = "fp32"  # fp32 | bf16: the arithmetic of classifying
    encoder: TextEncoder = field(init=False)

    def __post_init__(self) -> None:
        self.encoder = TextEncoder(self.tokenizer, buckets=self.model.config.ngram_buckets,
                                   max_tokens=self.options.max_tokens)  # fmt: skip

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, texts: Iterable[str], *, read_ahead: int = READ_AHEAD) -> Iterator[list[float]]:
        """Class probabilities (in `labels.names` order) of each text, in order, streaming:
        `read_ahead` texts are read, classified in batches of similar length and yielded
        before more input is read."""
        return classify_texts(self.model, self.encoder, texts, precision=self.precision, read_ahead=read_ahead)

    def explain(self, text: str) -> tuple[list[float], list[tuple[str, float]]]:
        """A text's class probabilities and a (token, weight) pair per token for the predicted
        class: the attention's weights with attention pooling, else how much the class's
        probability falls when that token alone is left out."""
        return explain_text(self.model, self.encoder, text, self.tokens(text), precision=self.precision)

    def tokens(self, text: str) -> list[str]:
        """The units a text is read as, one per token id (spaces shown as ▁)."""
        ids = self.encoder.encode(text).ids
        pieces = self.encoder.units(text)
        if len(pieces) != len(ids):
            pieces = self.encoder.pieces(ids)
        return [p.replace(" ", "\u2581") for p in pieces]

    def evaluate(
        self,
        path: str | Path,
        *,
        fmt: str = "auto",
        text_column: str | None = None,
        label_column: str | None = None,
        errors: str | Path | None = None,
        on_progress: Tick | None = None,
    ) -> dict:
        """`evaluate_rows` on a labelled table (layout detected unless given), with "file" and
        "layout"; `errors` names a file for the misclassified rows (JSON lines), and the
        result then says how many they were ("errors") and where ("errors_file").
        `on_progress` hears (texts classified, texts) as it goes."""
        rows, layout = read_table(path, fmt=fmt, text_column=text_column, label_column=label_column)
        result, probs = self._score(rows, name=str(path), on_progress=on_progress)
        result = {"file": str(path), "layout": layout.describe(), **result}
        if errors is not None:
            result["errors_file"] = str(errors)
            result["errors"] = write_errors(errors, self.labels, rows, probs)
        return result

    def evaluate_rows(
        self, rows: Sequence[Row], *, name: str = "<rows>", on_progress: Tick | None = None
    ) -> dict:
        """Accuracy, macro-F1, loss, per-class P/R/F1 and the confusion matrix against the
        rows' gold labels; a label the classifier does not know is a DataError naming the
        file (`name`) and line. `on_progress` hears (texts classified, texts) as it goes."""
        return self._score(rows, name=name, on_progress=on_progress)[0]

    def _score(
        self, rows: Sequence[Row], *, name: str, on_progress: Tick | None
    ) -> tuple[dict, list[list[float]]]:
        if not rows:
            raise DataError(f"{name}: no rows to evaluate")
        check_known(self.labels, rows, name=name)
        probs: list[list[float]] = []
        for p in self.predict(r.text for r in rows):
            probs.append(p)
            if on_progress is not None:
                on_progress(len(probs), len(rows))
        return score_rows(self.labels, rows, probs), probs


def model_from_checkpoint(ckpt: Checkpoint, *, source: str) -> tuple[ClassifierModel, Tokenizer, Labels]:
    """The checkpoint's classifier (with its weights), tokenizer and labels, every piece of
    metadata checked, and the weights' shapes checked before any allocation."""
    try:
        cfg = config_from_dict(ClassifierConfig, ckpt.meta["model_config"], what="model config")
        tokenizers = ckpt.meta["tokenizers"]
        tok = tokenizer_from_dict(tokenizers["text"])
        labels = Labels.from_dict(tokenizers["label"])
    except (KeyError, TypeError, ValueError, AttributeError, TextrnnError) as err:
        raise CheckpointError(f"{source}: checkpoint metadata is incomplete or invalid ({err})") from None
    if (tok.vocab_size, len(labels)) != (cfg.vocab_size, cfg.n_classes):
        raise CheckpointError(
            f"{source}: {tok.vocab_size} token ids and {len(labels)} labels do not match the model config"
        )
    weights = checkpoint_weights(ckpt)
    with torch.device("meta"):  # shapes only: a config claiming a huge model allocates nothing
        probe = build_classifier(cfg)
    check_weight_shapes(probe, {k: tuple(v.shape) for k, v in weights.items()}, source=source)
    model = build_classifier(cfg)
    load_weights(model, weights, source=source)
    return model, tok, labels


def load(
    path: str | Path, *, device: torch.device = torch.device("cpu"), precision: str = "fp32"
) -> LoadedClassifier:
    """Load a classifier checkpoint (refusing other tasks) ready for inference.

    `precision` "auto" classifies in bf16 where the hardware computes it natively, else fp32.
    """
    if precision not in INFERENCE_PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}")
    ckpt = load_checkpoint(path, task="classify")
    model, tok, labels = model_from_checkpoint(ckpt, source=str(path))
    try:
        options = config_from_dict(ClassifyOptions, ckpt.meta.get("classify") or {}, what="classify options")
    except (TypeError, ValueError, TextrnnError) as err:
        raise CheckpointError(f"{path}: checkpoint metadata is invalid ({err})") from None
    model.to(device).eval()
    resolved = resolve_precision(precision, device)
    check_precision(resolved, device)
    return LoadedClassifier(model, tok, labels, ckpt, options, precision=resolved)
