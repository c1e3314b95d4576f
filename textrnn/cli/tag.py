"""`textrnn tag train | predict | eval | split`: BiLSTM(-CRF) sequence taggers (POS, NER)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from textrnn.cli.display import TrainDisplay, log, pct, stderr_console
from textrnn.cli.io import chunks, interactive, stdin_lines
from textrnn.cli.options import Device, JsonOut, MaxSteps, Quiet, Resume, TimeBudget
from textrnn.cli.outcome import best_validation, exit_if_interrupted, summary
from textrnn.engine import distributed
from textrnn.engine.checkpoint import load_checkpoint, trained_on
from textrnn.engine.config import TrainConfig, config_with_overrides, saved_train_config
from textrnn.engine.devices import default_device, set_threads
from textrnn.engine.outputs import out_path_for
from textrnn.errors import UsageError
from textrnn.formats.conllu import (
    Sentence,
    check_column,
    conllu_skeleton,
    format_conllu,
    format_tsv,
    load_sentences,
    parse_conllu,
    set_tags,
    split_file,
)
from textrnn.formats.plain import check_text_file, iter_lines
from textrnn.tasks.tag import (
    DEFAULT_MODEL,
    DEFAULT_TRAIN,
    READ_AHEAD,
    LoadedTagger,
    evaluate,
    load_tagger,
    predict,
    train_tagger,
)

app = typer.Typer(help="Sequence taggers (POS, NER): train, predict, eval.", no_args_is_help=True)

CheckpointOpt = Annotated[Path, typer.Option("--checkpoint", "-c", help="Tagger checkpoint.")]
Threads = Annotated[
    int,
    typer.Option(
        help="CPU threads (0 = PyTorch's default, one per core). A tagger's small matrix "
        "products gain little from more threads and lose much when other programs share the "
        "cores (on 2 cores: 1.3x faster idle, 5-19x slower busy), hence 1."
    ),
]


class DataFormat(str, Enum):
    auto = "auto"
    conllu = "conllu"
    tsv = "tsv"


class InputFormat(str, Enum):
    text = "text"
    conllu = "conllu"


class OutputFormat(str, Enum):
    slash = "slash"
    tsv = "tsv"
    conllu = "conllu"
    json = "json"


# ---- train ------------------------------------------------------------------------------------


def _dev_accuracy(val: dict) -> str:
    """A tagger's validation for the training display: accuracy, and on words unseen in training."""
    return f"dev acc {pct(val.get('val_accuracy'))} (unseen words {pct(val.get('val_oov_accuracy'))})"


@app.command()
def train(
    train: Annotated[
        Path | None,
        typer.Option(
            "--train",
            help="Training data: CoNLL-U or token<TAB>tag lines (optional with --resume).",
        ),
    ] = None,
    dev: Annotated[
        Path | None,
        typer.Option(
            "--dev",
            help="Development data for validation each epoch (default: hold out the last 5% of --train).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Best checkpoint (default: checkpoints/<train>.ckpt); the last one goes beside it as <name>.last.ckpt."
        ),
    ] = None,
    resume: Resume = None,
    data_format: Annotated[
        DataFormat,
        typer.Option("--format", help="Data format (auto: .conllu or 10 columns -> conllu)."),
    ] = DataFormat.auto,
    column: Annotated[
        str, typer.Option(help="CoNLL-U tag column: upos | xpos | deprel | misc:KEY.")
    ] = "upos",
    crf: Annotated[
        bool,
        typer.Option("--crf/--no-crf", help="Add a CRF layer (Viterbi decoding); useful for NER."),
    ] = False,
    embeddings: Annotated[
        Path | None, typer.Option(help="Pretrained word vectors, word2vec/fastText text format.")
    ] = None,
    embeddings_limit: Annotated[
        int, typer.Option(help="Read at most this many vectors (0 = all).")
    ] = 200_000,
    lowercase: Annotated[
        bool,
        typer.Option(
            "--lowercase/--no-lowercase",
            help="Look words up lowercased (the character model still sees case).",
        ),
    ] = True,
    min_count: Annotated[
        int, typer.Option(help="Words seen fewer times get no embedding of their own.")
    ] = 1,
    word_dim: Annotated[
        int | None,
        typer.Option(help=f"Word embedding size (default: {DEFAULT_MODEL['word_dim']})."),
    ] = None,
    char_dim: Annotated[
        int | None,
        typer.Option(help=f"Character embedding size (default: {DEFAULT_MODEL['char_dim']})."),
    ] = None,
    char_hidden: Annotated[
        int | None,
        typer.Option(
            help=f"Character BiLSTM units per direction, 0 = none (default: {DEFAULT_MODEL['char_hidden']})."
        ),
    ] = None,
    hidden: Annotated[
        int | None,
        typer.Option(
            help=f"Sentence BiLSTM units per direction (default: {DEFAULT_MODEL['hidden']})."
        ),
    ] = None,
    layers: Annotated[
        int | None,
        typer.Option(help=f"Sentence BiLSTM layers (default: {DEFAULT_MODEL['layers']})."),
    ] = None,
    dropout: Annotated[
        float | None, typer.Option(help=f"Dropout (default: {DEFAULT_MODEL['dropout']}).")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help=f"Sentences per step, all processes together (default: {DEFAULT_TRAIN['batch_size']})."),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help=f"Peak learning rate (default: {DEFAULT_TRAIN['lr']}).")
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option(help="AdamW weight decay (default: 0.01).")
    ] = None,
    clip: Annotated[
        float | None,
        typer.Option(help=f"Gradient-norm clipping, 0 = off (default: {DEFAULT_TRAIN['clip']})."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help=f"Passes over the data (default: {DEFAULT_TRAIN['epochs']}).")
    ] = None,
    max_steps: MaxSteps = None,
    time_budget: TimeBudget = None,
    eval_every: Annotated[
        int | None, typer.Option(help="Validate every N steps (default: each epoch).")
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            help=f"Early stopping: validations without a better dev accuracy (default: {DEFAULT_TRAIN['patience']}; 0 = off; off with --time-budget)."
        ),
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="auto | fp32 | bf16 | fp16 (CUDA; with a gradient scaler) (default: auto: bf16 where supported, else fp16 on CUDA, else fp32).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: 1234).")] = None,
    device: Device = "auto",
    threads: Threads = 1,
    quiet: Quiet = False,
    json_out: JsonOut = False,
) -> None:
    """Train a BiLSTM tagger (word + character BiLSTM, optional CRF) on CoNLL-U or token<TAB>tag data.

    The best checkpoint is the one with the highest dev accuracy. Several processes:
    torchrun --nproc-per-node 2 -m textrnn tag train ...; --batch-size is then the batch
    of all processes together.

    Example: textrnn tag train --train en_ewt-ud-train.conllu --dev en_ewt-ud-dev.conllu --time-budget 900
    """
    group, dev_ = distributed.join(default_device(device))
    console = stderr_console(quiet or not group.main)
    set_threads(threads)
    overrides = dict(
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, clip=clip, epochs=epochs, max_steps=max_steps,
        time_budget=time_budget, eval_every=eval_every, patience=patience, precision=precision, seed=seed,
    )  # fmt: skip
    model_overrides = {
        k: v
        for k, v in dict(word_dim=word_dim, char_dim=char_dim, char_hidden=char_hidden, hidden=hidden,
                         layers=layers, dropout=dropout).items()
        if v is not None
    }  # fmt: skip
    if crf:
        model_overrides["crf"] = True
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume, task="tagger")
        if model_overrides or embeddings is not None:
            raise UsageError(
                "model options (--hidden, --crf, --embeddings, ...) cannot change when resuming"
            )
        saved_train, saved_dev = trained_on(ckpt.meta, source=str(resume))
        train = train or Path(saved_train or "")
        if dev is None and saved_dev:
            dev = Path(saved_dev)
        column = (ckpt.meta.get("tokenizers", {}).get("tag", {}) or {}).get("column", column)
        cfg = config_with_overrides(saved_train_config(ckpt.meta, source=str(resume)), **overrides)
        out = out or Path(ckpt.meta["training"].get("best_checkpoint") or out_path_for(train))
    else:
        if train is None:
            raise UsageError("missing --train FILE (or --resume CHECKPOINT)")
        cfg = config_with_overrides(TrainConfig(**DEFAULT_TRAIN), **overrides)
        out = out or out_path_for(train)
    check_column(column)
    for path in (train, dev, embeddings):
        if path is not None:
            check_text_file(path)
    if min_count < 1:
        raise UsageError(f"--min-count must be at least 1, got {min_count}")
    out.parent.mkdir(parents=True, exist_ok=True)
    log(console, f"training a tagger on {train} (column {column}) -> {out}")
    with TrainDisplay(console, _dev_accuracy) as display:
        result = train_tagger(
            train, dev, out=out, column=column, fmt=data_format.value, model_overrides=model_overrides,
            train_cfg=cfg, lowercase=lowercase, min_count=min_count, embeddings=embeddings,
            embeddings_limit=embeddings_limit, device=dev_, on_progress=display,
            on_log=lambda m: log(console, m), resume=ckpt,
        )  # fmt: skip
    st = result.state
    exit_if_interrupted(st, result.last, group, "textrnn tag train")
    best = best_validation(st)
    log(
        console,
        f"done ({st.stopped}) after {st.step} steps; best dev accuracy {pct(best.get('val_accuracy'))} at step {st.best_step}: {result.best}",
    )
    if json_out and group.main:
        metrics = ("val_accuracy", "val_oov_accuracy", "val_loss")
        print(json.dumps(summary(st, result.best, result.last, metrics)))


# ---- predict ------------------------------------------------------------------------------------


def _render(sentence: Sentence, fmt: str, column: str) -> str:
    words, tags = sentence.words, sentence.tags or []
    if fmt == "slash":
        return " ".join(f"{w}/{t}" for w, t in zip(words, tags, strict=True)) + "\n"
    if fmt == "tsv":
        return format_tsv(sentence)
    if fmt == "json":
        return json.dumps({"words": words, "tags": tags}, ensure_ascii=False) + "\n"
    if not sentence.rows:
        sentence = replace(conllu_skeleton(words), tags=tags)
    set_tags(sentence, list(tags), column=column)
    return format_conllu(sentence, column=column)


@app.command("predict")
def predict_(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="Input (default: stdin): one whitespace-tokenized sentence per line, or CoNLL-U."
        ),
    ] = None,
    checkpoint: CheckpointOpt = ...,  # type: ignore[assignment]
    input_format: Annotated[
        InputFormat,
        typer.Option(help="text: a sentence per line; conllu: fill the tag column, keep the rest."),
    ] = InputFormat.text,
    out_format: Annotated[
        OutputFormat | None,
        typer.Option(
            "--format",
            help="slash (word/TAG) | tsv | conllu | json (a JSON object per sentence) (default: slash; conllu for CoNLL-U input).",
        ),
    ] = None,
    column: Annotated[
        str | None,
        typer.Option(help="CoNLL-U column to fill (default: the one the tagger was trained on)."),
    ] = None,
    read_ahead: Annotated[
        int,
        typer.Option(
            help="Sentences read, then tagged together in batches of similar length (1 when stdin is a terminal)."
        ),
    ] = READ_AHEAD,
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 where the CPU/GPU has it: about twice as fast, a few tags in 10,000 may differ; else fp16 on CUDA) | fp32 | bf16 | fp16 (CUDA)."
        ),
    ] = "auto",
    device: Device = "cpu",
    threads: Threads = 1,
) -> None:
    """Tag sentences, streaming: output follows input batch by batch.

    Example: echo "I saw her duck ." | textrnn tag predict -c checkpoints/en_ewt-ud-train.ckpt
    """
    if read_ahead < 1:
        raise UsageError(f"--read-ahead must be at least 1, got {read_ahead}")
    set_threads(threads)
    tagger = load_tagger(checkpoint, device=default_device(device), precision=precision)
    column = check_column(column or tagger.vocab.column)
    fmt = (
        out_format.value
        if out_format
        else ("conllu" if input_format == InputFormat.conllu else "slash")
    )
    if file is None and interactive():
        read_ahead = 1
    name = "<stdin>" if file is None else str(file)
    lines = stdin_lines() if file is None else iter_lines(check_text_file(file))
    if input_format == InputFormat.conllu:
        sentences: Iterable[Sentence] = parse_conllu(lines, name=name, column=column)
    else:
        sentences = (Sentence(line.split()) for line in lines)
    out = sys.stdout
    for chunk in chunks(sentences, read_ahead):
        tags = predict(tagger, [s.words for s in chunk], read_ahead=read_ahead)
        out.write(
            "".join(
                _render(replace(s, tags=t), fmt, column) for s, t in zip(chunk, tags, strict=True)
            )
        )
        out.flush()


# ---- eval ---------------------------------------------------------------------------------------------


@app.command("eval")
def eval_(
    file: Annotated[Path, typer.Argument(help="Tagged data: CoNLL-U or token<TAB>tag lines.")],
    checkpoint: CheckpointOpt = ...,  # type: ignore[assignment]
    data_format: Annotated[
        DataFormat,
        typer.Option("--format", help="Data format (auto: .conllu or 10 columns -> conllu)."),
    ] = DataFormat.auto,
    column: Annotated[
        str | None,
        typer.Option(help="CoNLL-U gold column (default: the one the tagger was trained on)."),
    ] = None,
    precision: Annotated[
        str, typer.Option(help="fp32 (the figure training reported) | bf16 | fp16 (CUDA) | auto.")
    ] = "fp32",
    device: Device = "cpu",
    threads: Threads = 1,
    json_out: JsonOut = False,
) -> None:
    """Score a tagger on gold data: accuracy, unseen-word accuracy, per-tag and span F1.

    Reports token accuracy, accuracy on words unseen in training, per-tag
    precision/recall/F1 and, for BIO/BIOES tags, span precision/recall/F1 with
    conlleval semantics.

    Example: textrnn tag eval -c checkpoints/en_ewt-ud-train.ckpt en_ewt-ud-dev.conllu --json
    """
    set_threads(threads)
    tagger = load_tagger(checkpoint, device=default_device(device), precision=precision)
    column = check_column(column or tagger.vocab.column)
    sentences = load_sentences(file, fmt=data_format.value, column=column)
    result = {"file": str(file), **evaluate(tagger, sentences)}
    if json_out:
        print(json.dumps(result, ensure_ascii=False))
        return
    _print_eval(result, tagger)


def _print_eval(result: dict, tagger: LoadedTagger) -> None:
    console = Console(file=sys.stdout, highlight=False, soft_wrap=False)
    summary = Table(
        title=f"{result['file']}: {result['sentences']} sentences, {result['tokens']} tokens",
        show_header=False,
    )
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_row("accuracy", pct(result["accuracy"]))
    summary.add_row(
        f"unseen-word accuracy ({result['oov_tokens']} tokens)", pct(result["oov_accuracy"])
    )
    if "span_f1" in result:
        summary.add_row(f"span precision ({result['scheme']})", pct(result["span_precision"]))
        summary.add_row("span recall", pct(result["span_recall"]))
        summary.add_row("span F1", pct(result["span_f1"]))
    console.print(summary)
    for title, rows in (("per tag", result["per_tag"]), ("per span type", result.get("spans"))):
        if not rows:
            continue
        table = Table(title=title)
        for name, justify in (
            ("tag", "left"),
            ("precision", "right"),
            ("recall", "right"),
            ("F1", "right"),
            ("support", "right"),
        ):
            table.add_column(name, justify=justify)
        for tag, r in rows.items():
            table.add_row(
                tag, pct(r["precision"]), pct(r["recall"]), pct(r["f1"]), str(r["support"])
            )
        console.print(table)


# ---- split -----------------------------------------------------------------------------------------------


@app.command()
def split(
    file: Annotated[Path, typer.Argument(help="A CoNLL-U file to split.")],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Folder for <name>-train/-dev/-test.conllu.")
    ],
    train_fraction: Annotated[
        float, typer.Option(help="Fraction of sentences for training (the first ones).")
    ] = 0.8,
    dev_fraction: Annotated[
        float, typer.Option(help="Fraction for dev (the next ones); the rest is test.")
    ] = 0.1,
) -> None:
    """Split a CoNLL-U file deterministically in file order (first 80% train, next 10% dev, last 10% test).

    Example: textrnn tag split hi_pud-ud-first800.conllu --out-dir data/hi_pud
    """
    test_fraction = 1.0 - train_fraction - dev_fraction
    if min(train_fraction, dev_fraction) < 0 or test_fraction < -1e-9:
        raise UsageError(
            "--train-fraction and --dev-fraction must be non-negative and sum to at most 1"
        )
    for path in split_file(
        file, out_dir, fractions=(train_fraction, dev_fraction, max(0.0, test_fraction))
    ):
        print(path)
