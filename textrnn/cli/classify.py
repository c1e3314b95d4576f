"""`textrnn classify train | predict | eval`: recurrent sentence classifiers (sentiment, topic, intent)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from textrnn.cli import training
from textrnn.cli.display import counting, pct, ticker
from textrnn.cli.io import chunks, interactive, shown_as_it_goes, stdin_lines
from textrnn.cli.options import (
    Checkpoint,
    Dev,
    Device,
    JsonOut,
    MaxSteps,
    OldTrain,
    Optimizer,
    Out,
    ProgressMode,
    Quiet,
    Resume,
    Seed,
    Shown,
    Threads,
    TimeBudget,
)
from textrnn.cli.outcome import best_validation
from textrnn.config import config_from_dict
from textrnn.engine.devices import default_device, set_threads
from textrnn.errors import TextrnnError, UsageError
from textrnn.files import fingerprint_file
from textrnn.formats.plain import check_text_file, iter_lines
from textrnn.formats.tables import iter_rows, sniff
from textrnn.tasks import classify
from textrnn.tasks.classify import (
    DEFAULT_MODEL,
    DEFAULT_TOKENIZER,
    DEFAULT_TRAIN,
    READ_AHEAD,
    ClassifyOptions,
    LoadedClassifier,
)

app = typer.Typer(help="Sentence classifiers (sentiment, topic, intent): train, predict, eval.", no_args_is_help=True)

TextColumn = Annotated[str | None, typer.Option(help="Text column: a header name or a 1-based number (JSON lines: a key) (default: detected).")]
LabelColumn = Annotated[str | None, typer.Option(help="Label column: a header name or a 1-based number (JSON lines: a key) (default: detected).")]


class TableFormat(str, Enum):
    auto = "auto"
    tsv = "tsv"
    csv = "csv"
    jsonl = "jsonl"
    fasttext = "fasttext"


class InputFormat(str, Enum):
    auto = "auto"
    lines = "lines"
    tsv = "tsv"
    csv = "csv"
    jsonl = "jsonl"
    fasttext = "fasttext"


class Kind(str, Enum):
    word = "word"
    char = "char"
    bpe = "bpe"
    unigram = "unigram"


class Cell(str, Enum):
    lstm = "lstm"
    gru = "gru"


class Pool(str, Enum):
    max = "max"
    mean = "mean"
    last = "last"
    attention = "attention"


class Weights(str, Enum):
    none = "none"
    balanced = "balanced"


FORMAT_HELP = "auto (by extension, then the first line) | tsv | csv | jsonl | fasttext."


# ---- train ---------------------------------------------------------------------------------------


def _dev_accuracy(val: dict) -> str:
    """A classifier's validation for the training display: accuracy and macro-F1."""
    return f"dev acc {pct(val.get('val_accuracy'))} macro-F1 {pct(val.get('val_macro_f1'))}"


@app.command()
def train(
    train: Annotated[Path | None, typer.Argument(help="Training table: TSV, CSV, JSON lines or fastText lines of texts and labels (optional with --resume).")] = None,
    dev: Dev = None,
    out: Out = None,
    resume: Resume = None,
    data_format: Annotated[TableFormat, typer.Option("--format", help=FORMAT_HELP)] = TableFormat.auto,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    tokenizer: Annotated[Kind | None, typer.Option(help=f"Units the texts are read as, trained on TRAIN (default: {DEFAULT_TOKENIZER['kind']}).")] = None,
    vocab_size: Annotated[int | None, typer.Option(help="Vocabulary size (default: every unit for word/char, 8000 for subwords).")] = None,
    min_count: Annotated[int, typer.Option(help="Word/char units seen fewer times read as <unk>.")] = 1,
    unit: Annotated[str, typer.Option(help="char units: grapheme (clusters, for Devanagari) | codepoint.")] = "grapheme",
    tokenizer_file: Annotated[Path | None, typer.Option(help="Use this tokenizer file (textrnn tokenize train) instead.")] = None,
    init_from: Annotated[Path | None, typer.Option(help="Start the embeddings and encoder from this `textrnn train` language model (its tokenizer too).")] = None,
    embed: Annotated[int | None, typer.Option(help=f"Token embedding size (default: {DEFAULT_MODEL['embed']}).")] = None,
    cell: Annotated[Cell | None, typer.Option(help=f"Encoder cell (default: {DEFAULT_MODEL['cell']}).")] = None,
    hidden: Annotated[int | None, typer.Option(help=f"Encoder BiLSTM units per direction (default: {DEFAULT_MODEL['hidden']}).")] = None,
    layers: Annotated[int | None, typer.Option(help=f"Encoder BiLSTM layers (default: {DEFAULT_MODEL['layers']}).")] = None,
    pool: Annotated[Pool | None, typer.Option(help=f"How the encoder's states become one vector (default: {DEFAULT_MODEL['pool']}).")] = None,
    dropout: Annotated[float | None, typer.Option(help=f"Dropout (default: {DEFAULT_MODEL['dropout']}).")] = None,
    ngram_buckets: Annotated[int | None, typer.Option(help=f"Add each token's hashed character 3-5-gram embeddings, in this many buckets; 0 = none (default: {DEFAULT_MODEL.get('ngram_buckets', 0)}).")] = None,
    members: Annotated[int | None, typer.Option(help=f"Classifiers trained side by side whose probabilities are averaged (default: {DEFAULT_MODEL.get('members', 1)}).")] = None,
    word_dropout: Annotated[float | None, typer.Option(help=f"Probability that a training token reads as <unk> (default: {ClassifyOptions.word_dropout}).")] = None,
    class_weights: Annotated[Weights, typer.Option(help="balanced: weigh each class's loss by n / (classes x its count), against imbalance.")] = Weights.none,
    max_tokens: Annotated[int | None, typer.Option(help=f"Read a longer text by its first N tokens (default: {ClassifyOptions.max_tokens}).")] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Texts per step, all processes together (default: {DEFAULT_TRAIN['batch_size']}).")] = None,
    lr: Annotated[float | None, typer.Option(help=f"Peak learning rate (default: {DEFAULT_TRAIN['lr']}).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay of matrices (default: 0.01; an L2 penalty with --optimizer sgd).")] = None,
    clip: Annotated[float | None, typer.Option(help=f"Gradient-norm clipping, 0 = off (default: {DEFAULT_TRAIN['clip']}).")] = None,
    epochs: Annotated[int | None, typer.Option(help=f"Passes over the data (default: {DEFAULT_TRAIN['epochs']}).")] = None,
    max_steps: MaxSteps = None,
    time_budget: TimeBudget = None,
    optimizer: Optimizer = None,
    eval_every: Annotated[int | None, typer.Option(help="Validate every N steps (default: each epoch).")] = None,
    patience: Annotated[int | None, typer.Option(help=f"Early stopping: validations without a better dev accuracy (default: {DEFAULT_TRAIN['patience']}; 0 = off; off with --time-budget).")] = None,
    precision: Annotated[str | None, typer.Option(help="auto | fp32 | bf16 | fp16 (CUDA) (default: auto: bf16 where supported, else fp16 on CUDA, else fp32).")] = None,
    seed: Seed = None,
    device: Device = "auto",
    threads: Threads = 1,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
    json_out: JsonOut = False,
    train_option: OldTrain = None,
) -> None:
    """Train a recurrent classifier (embeddings -> BiLSTM -> pooling -> linear) on labelled texts.

    The best checkpoint is the one with the highest dev accuracy. Several processes:
    torchrun --nproc-per-node 2 -m textrnn classify train ...; --batch-size is then the
    batch of all processes together.

    Example: textrnn classify train sst2/train.tsv --dev sst2/dev.tsv --time-budget 900
    """  # fmt: skip
    train = training.train_file(train, train_option, "textrnn classify train")
    session = training.start(device, quiet=quiet, progress=progress, threads=threads)
    options = training.given(
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, clip=clip, epochs=epochs, max_steps=max_steps,
        time_budget=time_budget, optimizer=optimizer, eval_every=eval_every, patience=patience, precision=precision, seed=seed,
    )  # fmt: skip
    model_changes = training.given(embed=embed, cell=cell.value if cell else None, hidden=hidden, layers=layers,
                                   pool=pool.value if pool else None, dropout=dropout, ngram_buckets=ngram_buckets,
                                   members=members)  # fmt: skip
    option_changes = training.given(word_dropout=word_dropout, max_tokens=max_tokens)
    tokenizer_args = {"kind": (tokenizer or Kind(DEFAULT_TOKENIZER["kind"])).value, "vocab_size": vocab_size,
                      "min_count": min_count, "unit": unit, "tokenizer_file": tokenizer_file}  # fmt: skip
    if init_from is not None and (tokenizer is not None or tokenizer_file is not None):
        raise UsageError("--init-from brings its language model's tokenizer: drop --tokenizer/--tokenizer-file")
    resumed = None
    if resume is not None:
        resumed = training.resume_from(resume, "classify", session)
        saved_format, saved_text, saved_label, task_options = _saved_settings(resumed.path, resumed.ckpt.meta)
        given = {"data_format": (data_format.value, saved_format.value if saved_format else None),
                 "text_column": (text_column, saved_text), "label_column": (label_column, saved_label),
                 "class_weights": (class_weights.value, task_options.class_weights)}  # fmt: skip
        task = {k: v for k, v in given.items() if training.passed(k) and v[1] is not None}
        task |= _tokenizer_given(resumed, tokenizer, init_from)
        training.check_unchanged(resumed, model=model_changes, train=options, dev=dev, task=task)
        data_format, task_options = saved_format or data_format, replace(task_options, **option_changes)
        text_column, label_column = text_column or saved_text, label_column or saved_label
    else:
        task_options = ClassifyOptions(class_weights=class_weights.value, **option_changes)
    train, dev, out = training.files_to_train(train, dev, out, resumed)
    for path in (train, dev):
        if path is not None:
            check_text_file(path)
    cfg = training.train_config(classify.default_train_config(), resumed, **options)
    training.make_folder(out)
    display = training.display(session, task="classify", train=train, dev=dev, out=out, resumed=resumed,
                               describe_val=_dev_accuracy)  # fmt: skip
    with display:
        result = classify.train(
            train, dev, out=out, fmt=data_format.value, text_column=text_column, label_column=label_column,
            tokenizer=tokenizer_args, model_overrides=model_changes, options=task_options, train_cfg=cfg,
            init_from=None if resumed else init_from, device=session.device, on_progress=display,
            on_log=session.log, resume=resumed.ckpt if resumed else None,
        )  # fmt: skip
    best = best_validation(result.state)
    training.report(session, result.state, out, command="textrnn classify train", json_out=json_out,
                    best=f"best dev accuracy {pct(best.get('val_accuracy'))}",
                    metrics=("val_accuracy", "val_macro_f1", "val_loss"))  # fmt: skip


def _saved_settings(path: Path, meta: dict) -> tuple[TableFormat | None, str | None, str | None, ClassifyOptions]:
    """The table format and columns a checkpoint was trained with (None: detected) and its options."""
    try:  # the metadata comes from a file: anything unusable is a corrupt checkpoint
        data = meta.get("data") or {}
        fmt = TableFormat(data["format"]) if data.get("format") else None
        options = config_from_dict(ClassifyOptions, meta.get("classify") or {}, what="classify options")
        return fmt, data.get("text_column"), data.get("label_column"), options
    except (KeyError, TypeError, ValueError, AttributeError, TextrnnError) as err:
        raise training.metadata_error(path, err) from None


def _tokenizer_given(resumed: training.Resumed, tokenizer: Kind | None, init_from: Path | None) -> dict:
    """--tokenizer and --init-from on the command line beside the checkpoint's:
    {parameter: (given, saved)} (the vocabulary options shaped a tokenizer the checkpoint holds)."""
    meta = resumed.ckpt.meta
    try:
        kind = ((meta.get("tokenizers") or {}).get("text") or {}).get("kind")
        lm = (meta.get("data") or {}).get("init_from") or {}
        pairs = {}
        if tokenizer is not None and kind is not None:
            pairs["tokenizer"] = (tokenizer.value, kind)
        if init_from is not None and fingerprint_file(init_from)["sha256"] != lm.get("sha256"):
            pairs["init_from"] = (init_from, lm.get("path"))
    except AttributeError as err:
        raise training.metadata_error(resumed.path, err) from None
    return pairs

# ---- predict -------------------------------------------------------------------------------------


def _decide(probs: list[float], names: list[str], threshold: float | None) -> str:
    """The predicted label: the most probable, or with a threshold (two classes) the second
    class when its probability reaches it."""
    if threshold is not None:
        return names[1] if probs[1] >= threshold else names[0]
    return names[max(range(len(probs)), key=probs.__getitem__)]


def _line(probs: list[float], names: list[str], *, show_probs: bool, top: int, threshold: float | None) -> str:
    """One output line: the label; the K best labels (--top); with --probs the probabilities."""
    if top:
        best = sorted(range(len(probs)), key=lambda k: -probs[k])[:top]
        fields = [f"{names[k]}\t{probs[k]:.4f}" if show_probs else names[k] for k in best]
        return "\t".join(fields)
    label = _decide(probs, names, threshold)
    if show_probs:
        return "\t".join([label, *(f"{p:.4f}" for p in probs)])
    return label


def _explained(clf: LoadedClassifier, text: str, *, threshold: float | None, as_json: bool, colour: bool) -> str:
    probs, weights = clf.explain(text)
    names = clf.labels.names
    label = _decide(probs, names, threshold)
    if as_json:
        return json.dumps({"text": text, "label": label, "probs": dict(zip(names, probs, strict=True)),
                           "tokens": [[t, round(w, 4)] for t, w in weights]}, ensure_ascii=False)  # fmt: skip
    if not colour:
        return "\t".join([label, *(f"{t} {w:.4f}" for t, w in weights)])
    return _coloured(label, weights)


def _coloured(label: str, weights: list[tuple[str, float]]) -> Text:
    """The label, then the tokens on a background as strong as their weight (green for, red against)."""
    line = Text(f"{label}\t")
    scale = max((abs(w) for _, w in weights), default=0.0) or 1.0
    for i, (token, w) in enumerate(weights):
        level = int(255 * (1.0 - min(1.0, abs(w) / scale) * 0.75))
        style = f"on rgb({level},255,{level})" if w >= 0 else f"on rgb(255,{level},{level})"
        line.append(token, style=f"black {style}")
        if i + 1 < len(weights):
            line.append(" ")
    return line


@app.command("predict")
def predict_(
    file: Annotated[Path | None, typer.Argument(help="Input (default: stdin): one text per line, or a TSV/CSV/JSON-lines table.")] = None,
    checkpoint: Checkpoint = ...,  # type: ignore[assignment]
    input_format: Annotated[InputFormat, typer.Option("--format", help="auto (by extension, then the first line; else a text per line) | lines | tsv | csv | jsonl | fasttext.")] = InputFormat.auto,
    text_column: TextColumn = None,
    probs: Annotated[bool, typer.Option("--probs", help="Add every class's probability, in the classifier's class order.")] = False,
    threshold: Annotated[float | None, typer.Option(help="Two classes: the second one (in class order: 1, positive, pos...) when its probability is at least P.")] = None,
    top: Annotated[int, typer.Option(help="Write the K most probable labels (0 = the label alone).")] = 0,
    explain_: Annotated[bool, typer.Option("--explain", help="Show each token's weight in the decision: colour on a terminal, `token weight` pairs otherwise.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per text: text, label, probs (and tokens with --explain).")] = False,
    read_ahead: Annotated[int, typer.Option(help="Texts read, then classified together in batches of similar length (1 when stdin is a terminal).")] = READ_AHEAD,
    precision: Annotated[str, typer.Option(help="auto (bf16 where the CPU/GPU has it) | fp32 | bf16.")] = "auto",
    device: Device = "cpu",
    threads: Threads = 0,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
) -> None:
    """Classify texts, streaming: one output line per input text, output following input batch by batch.

    Example: echo "a gorgeous , witty , seductive movie ." | textrnn classify predict -c checkpoints/train.ckpt --probs
    """  # fmt: skip
    if read_ahead < 1:
        raise UsageError(f"--read-ahead must be at least 1, got {read_ahead}")
    if top < 0:
        raise UsageError(f"--top must be at least 0, got {top}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold must be in [0, 1], got {threshold}")
    if threshold is not None and top:
        raise UsageError("--threshold decides one label; it does not go with --top")
    set_threads(threads)
    clf = classify.load(checkpoint, device=default_device(device), precision=precision)
    names = clf.labels.names
    if threshold is not None and len(names) != 2:
        raise UsageError(f"--threshold needs a classifier of two classes; this one has {len(names)}")
    if file is None and interactive():
        read_ahead = 1
    name = "<stdin>" if file is None else str(file)
    lines = stdin_lines() if file is None else iter_lines(check_text_file(file))
    layout, lines = sniff(lines, name=name, fmt=input_format.value, suffix=file.suffix.lower() if file else "",
                          text_column=text_column)  # fmt: skip
    texts = (row.text for row in iter_rows(lines, layout, name=name))
    with ticker(progress, quiet=quiet, unit="texts", product_shows=shown_as_it_goes(file)) as tick:
        if explain_:
            _write_explained(clf, counting(texts, tick), threshold=threshold, json_out=json_out)
            return
        for chunk in chunks(counting(texts, tick), read_ahead):
            rows = []
            for text, p in zip(chunk, clf.predict(chunk, read_ahead=read_ahead), strict=True):
                if json_out:
                    rows.append(json.dumps({"text": text, "label": _decide(p, names, threshold),
                                            "probs": dict(zip(names, p, strict=True))}, ensure_ascii=False))  # fmt: skip
                else:
                    rows.append(_line(p, names, show_probs=probs, top=top, threshold=threshold))
            sys.stdout.write("\n".join(rows) + "\n")
            sys.stdout.flush()


def _write_explained(clf: LoadedClassifier, texts, *, threshold: float | None, json_out: bool) -> None:
    """--explain: one text at a time, coloured on a terminal, as text or JSON lines otherwise."""
    colour = not json_out and sys.stdout.isatty()
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True) if colour else None
    for text in texts:
        line = _explained(clf, text, threshold=threshold, as_json=json_out, colour=colour)
        if console is not None:
            console.print(line)
        else:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


# ---- eval ------------------------------------------------------------------------------------------


@app.command("eval")
def eval_(
    file: Annotated[Path, typer.Argument(help="Labelled table: TSV, CSV, JSON lines or fastText lines.")],
    checkpoint: Checkpoint = ...,  # type: ignore[assignment]
    data_format: Annotated[TableFormat, typer.Option("--format", help=FORMAT_HELP)] = TableFormat.auto,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    errors: Annotated[Path | None, typer.Option(help="Write the misclassified rows here (JSON lines: text, label, predicted, probs).")] = None,
    precision: Annotated[str, typer.Option(help="fp32 (the figure training reported) | bf16 | auto.")] = "fp32",
    device: Device = "cpu",
    threads: Threads = 0,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
    json_out: JsonOut = False,
) -> None:
    """Score a classifier on labelled texts: accuracy, macro-F1, per-class precision/recall/F1, confusion matrix.

    Example: textrnn classify eval sst2/dev.tsv -c checkpoints/train.ckpt --json
    """  # fmt: skip
    set_threads(threads)
    clf = classify.load(checkpoint, device=default_device(device), precision=precision)
    with ticker(progress, quiet=quiet, unit="texts") as tick:
        result = clf.evaluate(file, fmt=data_format.value, text_column=text_column, label_column=label_column,
                              errors=errors, on_progress=tick)  # fmt: skip
    if json_out:
        print(json.dumps(result, ensure_ascii=False))
        return
    _print_eval(result)


def _print_eval(result: dict) -> None:
    console = Console(file=sys.stdout, highlight=False, soft_wrap=False)
    head = Table(title=f"{result['file']}: {result['rows']} texts", show_header=False)
    head.add_column("measure")
    head.add_column("value", justify="right")
    head.add_row("accuracy", pct(result["accuracy"]))
    head.add_row("macro-F1", pct(result["macro_f1"]))
    head.add_row("loss per text (nats)", f"{result['loss']:.4f}")
    if "errors_file" in result:
        head.add_row(f"misclassified (in {result['errors_file']})", str(result["errors"]))
    console.print(head)
    per = Table(title="per class")
    for column, justify in (("class", "left"), ("precision", "right"), ("recall", "right"), ("F1", "right"), ("support", "right")):
        per.add_column(column, justify=justify)
    for label, r in result["per_class"].items():
        per.add_row(label, pct(r["precision"]), pct(r["recall"]), pct(r["f1"]), str(r["support"]))
    console.print(per)
    names, matrix = result["confusion"]["labels"], result["confusion"]["matrix"]
    conf = Table(title="confusion (rows: gold, columns: predicted)")
    conf.add_column("gold \\ predicted")
    for n in names:
        conf.add_column(n, justify="right")
    for n, counts in zip(names, matrix, strict=True):
        conf.add_row(n, *map(str, counts))
    console.print(conf)
