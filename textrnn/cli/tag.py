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
    old_form,
)
from textrnn.cli.outcome import best_validation
from textrnn.engine.devices import default_device, set_threads
from textrnn.errors import UsageError
from textrnn.files import fingerprint_file
from textrnn.formats.conllu import (
    Sentence,
    check_column,
    conllu_skeleton,
    format_conllu,
    format_tsv,
    parse_conllu,
    set_tags,
    split_file,
)
from textrnn.formats.plain import check_text_file, iter_lines
from textrnn.tasks import tag
from textrnn.tasks.tag import DEFAULT_MODEL, DEFAULT_TRAIN, READ_AHEAD, TagOptions

app = typer.Typer(
    help="Sequence taggers (POS, NER): train, predict, eval. A tagger runs on one CPU thread "
    "unless --threads says otherwise: its small matrix products gain little from more threads "
    "and lose much when other programs share the cores (on 2 cores: 1.3x faster idle, 5-19x "
    "slower busy).",
    no_args_is_help=True,
)


class DataFormat(str, Enum):
    auto = "auto"
    conllu = "conllu"
    tsv = "tsv"


FORMAT_HELP = "auto (.conllu or 10 columns: conllu) | conllu | tsv (token<TAB>tag lines)."
INPUT_FORMATS = ("text", "conllu")


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
    train: Annotated[Path | None, typer.Argument(help="Training data: CoNLL-U or token<TAB>tag lines (optional with --resume).")] = None,
    dev: Dev = None,
    out: Out = None,
    resume: Resume = None,
    data_format: Annotated[DataFormat, typer.Option("--format", help=FORMAT_HELP)] = DataFormat.auto,
    column: Annotated[str, typer.Option(help="CoNLL-U tag column: upos | xpos | deprel | misc:KEY.")] = "upos",
    crf: Annotated[bool, typer.Option("--crf/--no-crf", help="Add a CRF layer (Viterbi decoding); useful for NER.")] = False,
    embeddings: Annotated[Path | None, typer.Option(help="Pretrained word vectors, word2vec/fastText text format.")] = None,
    embeddings_limit: Annotated[int, typer.Option(help="Read at most this many vectors (0 = all).")] = 200_000,
    lowercase: Annotated[bool, typer.Option("--lowercase/--no-lowercase", help="Look words up lowercased (the character model still sees case).")] = True,
    min_count: Annotated[int, typer.Option(help="Words seen fewer times get no embedding of their own.")] = 1,
    word_dim: Annotated[int | None, typer.Option(help=f"Word embedding size (default: {DEFAULT_MODEL['word_dim']}).")] = None,
    char_dim: Annotated[int | None, typer.Option(help=f"Character embedding size (default: {DEFAULT_MODEL['char_dim']}).")] = None,
    char_hidden: Annotated[int | None, typer.Option(help=f"Character BiLSTM units per direction, 0 = none (default: {DEFAULT_MODEL['char_hidden']}).")] = None,
    hidden: Annotated[int | None, typer.Option(help=f"Sentence BiLSTM units per direction (default: {DEFAULT_MODEL['hidden']}).")] = None,
    layers: Annotated[int | None, typer.Option(help=f"Sentence BiLSTM layers (default: {DEFAULT_MODEL['layers']}).")] = None,
    dropout: Annotated[float | None, typer.Option(help=f"Dropout (default: {DEFAULT_MODEL['dropout']}).")] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Sentences per step, all processes together (default: {DEFAULT_TRAIN['batch_size']}).")] = None,
    lr: Annotated[float | None, typer.Option(help=f"Peak learning rate (default: {DEFAULT_TRAIN['lr']}).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay of matrices (default: 0.01; an L2 penalty with --optimizer sgd).")] = None,
    clip: Annotated[float | None, typer.Option(help=f"Gradient-norm clipping, 0 = off (default: {DEFAULT_TRAIN['clip']}).")] = None,
    epochs: Annotated[int | None, typer.Option(help=f"Passes over the data (default: {DEFAULT_TRAIN['epochs']}).")] = None,
    max_steps: MaxSteps = None,
    time_budget: TimeBudget = None,
    optimizer: Optimizer = None,
    eval_every: Annotated[int | None, typer.Option(help="Validate every N steps (default: each epoch).")] = None,
    patience: Annotated[int | None, typer.Option(help=f"Early stopping: validations without a better dev accuracy (default: {DEFAULT_TRAIN['patience']}; 0 = off; off with --time-budget).")] = None,
    precision: Annotated[str | None, typer.Option(help="auto | fp32 | bf16 | fp16 (CUDA; with a gradient scaler) (default: auto: bf16 where supported, else fp16 on CUDA, else fp32).")] = None,
    seed: Seed = None,
    device: Device = "auto",
    threads: Threads = 1,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
    json_out: JsonOut = False,
    train_option: OldTrain = None,
) -> None:
    """Train a BiLSTM tagger (word + character BiLSTM, optional CRF) on CoNLL-U or token<TAB>tag data.

    The best checkpoint is the one with the highest dev accuracy. Several processes:
    torchrun --nproc-per-node 2 -m textrnn tag train ...; --batch-size is then the batch
    of all processes together.

    Example: textrnn tag train en_ewt-ud-train.conllu --dev en_ewt-ud-dev.conllu --time-budget 900
    """  # fmt: skip
    train = training.train_file(train, train_option, "textrnn tag train")
    session = training.start(device, quiet=quiet, progress=progress, threads=threads)
    options = training.given(
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, clip=clip, epochs=epochs, max_steps=max_steps,
        time_budget=time_budget, optimizer=optimizer, eval_every=eval_every, patience=patience, precision=precision, seed=seed,
    )  # fmt: skip
    model_changes = training.given(word_dim=word_dim, char_dim=char_dim, char_hidden=char_hidden, hidden=hidden,
                                   layers=layers, dropout=dropout, crf=crf if training.passed("crf") else None)  # fmt: skip
    resumed = None
    if resume is not None:
        resumed = training.resume_from(resume, "tagger", session)
        training.check_unchanged(resumed, model=model_changes, train=options, dev=dev,
                                 task=_options_given(resumed, column, data_format.value, lowercase, embeddings))  # fmt: skip
        column = _saved_column(resumed.path, resumed.ckpt.meta, column)
    train, dev, out = training.files_to_train(train, dev, out, resumed)
    tag_options = TagOptions(column=column, fmt=data_format.value, lowercase=lowercase, min_count=min_count,
                             embeddings=embeddings, embeddings_limit=embeddings_limit)  # fmt: skip
    for path in (train, dev, embeddings):
        if path is not None:
            check_text_file(path)
    cfg = training.train_config(tag.default_train_config(), resumed, **options)
    training.make_folder(out)
    display = training.display(session, task="tag", train=train, dev=dev, out=out, resumed=resumed,
                               extras={"column": column}, describe_val=_dev_accuracy)  # fmt: skip
    with display:
        result = tag.train(
            train, dev, out=out, options=tag_options, model_overrides=model_changes, train_cfg=cfg,
            device=session.device, on_progress=display, on_log=session.log, resume=resumed.ckpt if resumed else None,
        )  # fmt: skip
    best = best_validation(result.state)
    training.report(session, result.state, out, command="textrnn tag train", json_out=json_out,
                    best=f"best dev accuracy {pct(best.get('val_accuracy'))}",
                    metrics=("val_accuracy", "val_oov_accuracy", "val_loss"))  # fmt: skip


def _options_given(resumed: training.Resumed, column: str, fmt: str, lowercase: bool, embeddings: Path | None) -> dict:
    """The data options on the command line beside the checkpoint's: {parameter: (given, saved)}.
    (--min-count and --embeddings-limit shaped a vocabulary that the checkpoint holds: not compared.)"""
    meta = resumed.ckpt.meta
    try:
        data, vocab = meta.get("data") or {}, meta.get("tokenizers", {}).get("tag", {}) or {}
        words = meta.get("tokenizers", {}).get("word", {}) or {}
        saved = {"column": vocab.get("column", data.get("column")), "data_format": data.get("format"),
                 "lowercase": words.get("lowercase")}  # fmt: skip
        vectors = data.get("embeddings") if isinstance(data.get("embeddings"), dict) else {}
    except AttributeError as err:
        raise training.metadata_error(resumed.path, err) from None
    given = {"column": column, "data_format": fmt, "lowercase": lowercase}
    pairs = {k: (v, saved[k]) for k, v in given.items() if training.passed(k) and saved[k] is not None}
    if embeddings is not None and fingerprint_file(embeddings)["sha256"] != vectors.get("sha256"):
        pairs["embeddings"] = (embeddings, vectors.get("path"))
    return pairs


def _saved_column(path: Path, meta: dict, column: str) -> str:
    """The tag column a tagger was trained on (`column` when its checkpoint does not say)."""
    try:
        return (meta.get("tokenizers", {}).get("tag", {}) or {}).get("column", column)
    except AttributeError as err:
        raise training.metadata_error(path, err) from None


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
    file: Annotated[Path | None, typer.Argument(help="Input (default: stdin): one whitespace-tokenized sentence per line, or CoNLL-U.")] = None,
    checkpoint: Checkpoint = ...,  # type: ignore[assignment]
    data_format: Annotated[str | None, typer.Option("--format", help="text: a sentence per line; conllu: fill the tag column, keep the rest.", show_default="text")] = None,
    output_format: Annotated[OutputFormat | None, typer.Option(help="slash (word/TAG) | tsv | conllu | json (a JSON object per sentence).", show_default="slash; conllu for CoNLL-U input")] = None,
    column: Annotated[str | None, typer.Option(help="CoNLL-U column to fill (default: the one the tagger was trained on).")] = None,
    read_ahead: Annotated[int, typer.Option(help="Sentences read, then tagged together in batches of similar length (1 when stdin is a terminal).")] = READ_AHEAD,
    precision: Annotated[str, typer.Option(help="auto (bf16 where the CPU/GPU has it: about twice as fast, a few tags in 10,000 may differ; else fp16 on CUDA) | fp32 | bf16 | fp16 (CUDA).")] = "auto",
    device: Device = "cpu",
    threads: Threads = 1,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
    json_out: Annotated[bool, typer.Option("--json", help="The same as --output-format json.")] = False,
    input_format: Annotated[str | None, typer.Option("--input-format", hidden=True, help="The old name of --format.")] = None,
) -> None:
    """Tag sentences, streaming: output follows input batch by batch.

    Example: echo "I saw her duck ." | textrnn tag predict -c checkpoints/en_ewt-ud-train.ckpt
    """  # fmt: skip
    if read_ahead < 1:
        raise UsageError(f"--read-ahead must be at least 1, got {read_ahead}")
    data_format, output_format = _predict_formats(data_format, input_format, output_format, json_out)
    set_threads(threads)
    tagger = tag.load(checkpoint, device=default_device(device), precision=precision)
    column = check_column(column or tagger.vocab.column)
    if file is None and interactive():
        read_ahead = 1
    name = "<stdin>" if file is None else str(file)
    lines = stdin_lines() if file is None else iter_lines(check_text_file(file))
    if data_format == "conllu":
        sentences: Iterable[Sentence] = parse_conllu(lines, name=name, column=column)
    else:
        sentences = (Sentence(line.split()) for line in lines)
    out = sys.stdout
    with ticker(progress, quiet=quiet, unit="sentences", product_shows=shown_as_it_goes(file)) as tick:
        for chunk in chunks(counting(sentences, tick), read_ahead):
            tags = tagger.predict([s.words for s in chunk], read_ahead=read_ahead)
            out.write("".join(_render(replace(s, tags=t), output_format, column) for s, t in zip(chunk, tags, strict=True)))
            out.flush()


def _predict_formats(data_format: str | None, old_input: str | None, output: OutputFormat | None, json_out: bool) -> tuple[str, str]:
    """The input and output formats of `tag predict`, from --format, --output-format and
    --json, and from the old forms (--input-format; --format naming the output)."""
    if old_input is not None:
        old_form("`textrnn tag predict --input-format`", "`--format`")
        data_format = data_format or old_input
    if data_format in ("slash", "tsv", "json"):  # --format named the output before
        old_form(f"`textrnn tag predict --format {data_format}`", f"`--output-format {data_format}`")
        output, data_format = output or OutputFormat(data_format), None
    data_format = data_format or "text"
    if data_format not in INPUT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(INPUT_FORMATS)}, got {data_format!r}")
    if json_out:
        if output not in (None, OutputFormat.json):
            raise UsageError(f"--json and --output-format {output.value} contradict each other")
        output = OutputFormat.json
    return data_format, output.value if output else ("conllu" if data_format == "conllu" else "slash")


# ---- eval ---------------------------------------------------------------------------------------------


@app.command("eval")
def eval_(
    file: Annotated[Path, typer.Argument(help="Tagged data: CoNLL-U or token<TAB>tag lines.")],
    checkpoint: Checkpoint = ...,  # type: ignore[assignment]
    data_format: Annotated[DataFormat, typer.Option("--format", help=FORMAT_HELP)] = DataFormat.auto,
    column: Annotated[str | None, typer.Option(help="CoNLL-U gold column (default: the one the tagger was trained on).")] = None,
    precision: Annotated[str, typer.Option(help="fp32 (the figure training reported) | bf16 | fp16 (CUDA) | auto.")] = "fp32",
    device: Device = "cpu",
    threads: Threads = 1,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
    json_out: JsonOut = False,
) -> None:
    """Score a tagger on gold data: accuracy, unseen-word accuracy, per-tag and span F1.

    Reports token accuracy, accuracy on words unseen in training, per-tag
    precision/recall/F1 and, for BIO/BIOES tags, span precision/recall/F1 with
    conlleval semantics.

    Example: textrnn tag eval en_ewt-ud-dev.conllu -c checkpoints/en_ewt-ud-train.ckpt --json
    """
    set_threads(threads)
    tagger = tag.load(checkpoint, device=default_device(device), precision=precision)
    with ticker(progress, quiet=quiet, unit="sentences") as tick:
        result = tagger.evaluate(file, fmt=data_format.value, column=column, on_progress=tick)
    if json_out:
        print(json.dumps(result, ensure_ascii=False))
        return
    _print_eval(result)


def _print_eval(result: dict) -> None:
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
        for label, r in rows.items():
            table.add_row(
                label, pct(r["precision"]), pct(r["recall"]), pct(r["f1"]), str(r["support"])
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
