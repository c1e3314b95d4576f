"""`textrnn translit train | predict | eval`: attentional seq2seq transliteration."""

from __future__ import annotations

import json
import math
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
from textrnn.cli.display import counting, log, pct, stderr_console, ticker
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
from textrnn.formats.plain import check_text_file, iter_lines
from textrnn.tasks import translit
from textrnn.tasks.translit import (
    DEFAULT_MODEL,
    DEFAULT_TRAIN,
    LENGTH_PENALTY,
    READ_AHEAD,
    TranslitOptions,
)
from textrnn.text import is_combining_start

app = typer.Typer(help="Transliteration (romanised <-> native script): train, predict, eval.", no_args_is_help=True)

Beam = Annotated[int, typer.Option(help="Beam width; 1 = greedy decoding.")]
LengthPenalty = Annotated[
    float, typer.Option(help="Rank beam candidates by logprob / length ** this (0 = raw sum).")
]


class Direction(str, Enum):
    to_native = "to-native"
    to_latin = "to-latin"


class Attention(str, Enum):
    luong = "luong"
    bahdanau = "bahdanau"
    none = "none"


class Counts(str, Enum):
    once = "once"
    weight = "weight"


class Unit(str, Enum):
    grapheme = "grapheme"
    codepoint = "codepoint"


# ---- train ---------------------------------------------------------------------------------------


def _dev_accuracy(val: dict) -> str:
    """A transliterator's validation for the training display: word accuracy and CER."""
    return f"dev acc {pct(val.get('val_accuracy'))} CER {pct(val.get('val_cer'))}"


@app.command()
def train(
    train: Annotated[Path | None, typer.Argument(help="Training lexicon: TSV, source and target per line (optional with --resume).")] = None,
    dev: Dev = None,
    out: Out = None,
    resume: Resume = None,
    direction: Annotated[Direction, typer.Option(help="to-native: the Latin-script column is the source; to-latin: it is the target.")] = Direction.to_native,
    source_column: Annotated[int | None, typer.Option(help="Source column, 1-based (with --target-column; overrides --direction).")] = None,
    target_column: Annotated[int | None, typer.Option(help="Target column, 1-based.")] = None,
    counts: Annotated[Counts, typer.Option(help="Attestation counts (3rd column): once = each distinct pair once per epoch; weight = loss weighted by count.")] = Counts.once,
    source_unit: Annotated[Unit, typer.Option(help="Source units.")] = Unit.grapheme,
    target_unit: Annotated[Unit, typer.Option(help="Target units (code points: every output is reachable).")] = Unit.codepoint,
    attention: Annotated[Attention | None, typer.Option(help=f"Attention (none = plain encoder-decoder) (default: {DEFAULT_MODEL['attention']}).")] = None,
    embed: Annotated[int | None, typer.Option(help=f"Unit embedding size (default: {DEFAULT_MODEL['embed']}).")] = None,
    hidden: Annotated[int | None, typer.Option(help=f"Encoder BiLSTM units per direction (default: {DEFAULT_MODEL['hidden']}).")] = None,
    layers: Annotated[int | None, typer.Option(help=f"Encoder BiLSTM layers (default: {DEFAULT_MODEL['layers']}).")] = None,
    dec_hidden: Annotated[int | None, typer.Option(help=f"Decoder LSTM units (default: {DEFAULT_MODEL['dec_hidden']}).")] = None,
    dropout: Annotated[float | None, typer.Option(help=f"Dropout (default: {DEFAULT_MODEL['dropout']}).")] = None,
    members: Annotated[int | None, typer.Option(help=f"Ensemble: encoder-decoders trained together, probabilities averaged (default: {DEFAULT_MODEL.get('members', 1)}).")] = None,
    teacher_forcing: Annotated[float | None, typer.Option(help="Probability of feeding the gold previous unit (1 = always; lower = scheduled sampling) (default: 1).")] = None,
    sampling_decay: Annotated[int | None, typer.Option(help="Steps over which that probability falls linearly from 1 to --teacher-forcing (default: 0).")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing (default: 0.1).")] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Words per step, all processes together (default: {DEFAULT_TRAIN['batch_size']}).")] = None,
    lr: Annotated[float | None, typer.Option(help=f"Peak learning rate (default: {DEFAULT_TRAIN['lr']}).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay of matrices (default: 0.01; an L2 penalty with --optimizer sgd).")] = None,
    clip: Annotated[float | None, typer.Option(help=f"Gradient-norm clipping, 0 = off (default: {DEFAULT_TRAIN['clip']}).")] = None,
    epochs: Annotated[int | None, typer.Option(help=f"Passes over the data (default: {DEFAULT_TRAIN['epochs']}).")] = None,
    max_steps: MaxSteps = None,
    time_budget: TimeBudget = None,
    optimizer: Optimizer = None,
    eval_every: Annotated[int | None, typer.Option(help="Validate every N steps (default: each epoch).")] = None,
    patience: Annotated[int | None, typer.Option(help=f"Early stopping: validations without a better dev accuracy (default: {DEFAULT_TRAIN['patience']}; 0 = off; off with --time-budget).")] = None,
    precision: Annotated[str | None, typer.Option(help="auto | fp32 | bf16 (default: auto; bf16 is 2.5x faster on a CPU with AVX512-BF16).")] = None,
    seed: Seed = None,
    device: Device = "auto",
    threads: Threads = 0,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
    json_out: JsonOut = False,
    train_option: OldTrain = None,
) -> None:
    """Train an attentional BiLSTM encoder-decoder on a transliteration lexicon.

    The best checkpoint is the one with the highest dev word accuracy (greedy decoding).

    Example: textrnn translit train hi.translit.sampled.train.tsv --dev hi.translit.sampled.dev.tsv --time-budget 1800
    """  # fmt: skip
    train = training.train_file(train, train_option, "textrnn translit train")
    session = training.start(device, quiet=quiet, progress=progress, threads=threads)
    options = training.given(
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, clip=clip, epochs=epochs, max_steps=max_steps,
        time_budget=time_budget, optimizer=optimizer, eval_every=eval_every, patience=patience, precision=precision, seed=seed,
    )  # fmt: skip
    model_changes = training.given(embed=embed, hidden=hidden, layers=layers, dec_hidden=dec_hidden, dropout=dropout,
                                   members=members, attention=attention.value if attention else None)  # fmt: skip
    option_changes = training.given(teacher_forcing=teacher_forcing, sampling_decay=sampling_decay, label_smoothing=label_smoothing)
    if (source_column is None) != (target_column is None):
        raise UsageError("--source-column and --target-column go together")
    columns = (source_column, target_column) if source_column is not None else None
    resumed = None
    if resume is not None:
        resumed = training.resume_from(resume, "translit", session)
        saved_direction, columns, task_options = _saved_settings(resumed.path, resumed.ckpt.meta, direction, columns)
        given = {"direction": (direction.value, saved_direction.value), "counts": (counts.value, task_options.counts),
                 "source_unit": (source_unit.value, task_options.source_unit),
                 "target_unit": (target_unit.value, task_options.target_unit)}  # fmt: skip
        training.check_unchanged(resumed, model=model_changes, train=options, dev=dev,
                                 task={k: v for k, v in given.items() if training.passed(k)})  # fmt: skip
        direction, task_options = saved_direction, replace(task_options, **option_changes)
    else:
        task_options = TranslitOptions(counts=counts.value, source_unit=source_unit.value,
                                       target_unit=target_unit.value, **option_changes)  # fmt: skip
    train, dev, out = training.files_to_train(train, dev, out, resumed)
    for path in (train, dev):
        if path is not None:
            check_text_file(path)
    cfg = training.train_config(translit.default_train_config(), resumed, **options)
    training.make_folder(out)
    display = training.display(session, task="translit", train=train, dev=dev, out=out, resumed=resumed,
                               extras={"direction": direction.value}, describe_val=_dev_accuracy)  # fmt: skip
    with display:
        result = translit.train(
            train, dev, out=out, direction=direction.value, columns=columns, model_overrides=model_changes,
            options=task_options, train_cfg=cfg, device=session.device, on_progress=display,
            on_log=session.log, resume=resumed.ckpt if resumed else None,
        )  # fmt: skip
    best = best_validation(result.state)
    training.report(session, result.state, out, command="textrnn translit train", json_out=json_out,
                    best=f"best dev accuracy (greedy) {pct(best.get('val_accuracy'))}",
                    metrics=("val_accuracy", "val_cer", "val_loss"))  # fmt: skip


def _saved_settings(path: Path, meta: dict, direction: Direction, columns: tuple[int, int] | None):
    """The direction, columns and options a checkpoint was trained with (columns given now win)."""
    try:  # the metadata comes from a file: anything unusable is a corrupt checkpoint
        data = meta.get("data") or {}
        direction = Direction(data.get("direction", direction.value))
        if columns is None and data.get("columns"):
            columns = tuple(int(c) for c in data["columns"])
        options = config_from_dict(TranslitOptions, meta.get("translit") or {}, what="translit options")
    except (KeyError, TypeError, ValueError, AttributeError, TextrnnError) as err:
        raise training.metadata_error(path, err) from None
    return direction, columns, options


# ---- predict ------------------------------------------------------------------------------------------


@app.command("predict")
def predict_(
    file: Annotated[Path | None, typer.Argument(help="Input (default: stdin): one word per line, or running text with --text.")] = None,
    checkpoint: Checkpoint = ...,  # type: ignore[assignment]
    text: Annotated[bool, typer.Option("--text", help="Running text: transliterate every word, keep spacing, punctuation and digits.")] = False,
    beam: Beam = 5,
    nbest: Annotated[int, typer.Option(help="Candidates per word, tab-separated, best first (at most --beam).")] = 1,
    scores: Annotated[bool, typer.Option("--scores", help="Follow each candidate with its score (length-normalised log-probability).")] = False,
    length_penalty: LengthPenalty = LENGTH_PENALTY,
    read_ahead: Annotated[int, typer.Option(help="Lines read, then transliterated together (1 when stdin is a terminal).")] = READ_AHEAD,
    show_attention: Annotated[str | None, typer.Option(help="Transliterate this one word and print its attention matrix as a heatmap.")] = None,
    attention_png: Annotated[Path | None, typer.Option(help="With --show-attention: also save the matrix as a PNG (needs matplotlib: pip install matplotlib, or the plot extra).")] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 where the CPU/GPU has it) | fp32 | bf16.")] = "auto",
    device: Device = "cpu",
    threads: Threads = 0,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
    json_out: JsonOut = False,
) -> None:
    """Transliterate words (one per line) or running text, streaming: output follows input chunk by chunk.

    With --json, a JSON object per input line: {"input", "candidates": [{"text", "score",
    "logprob"}]} for words, {"input", "output"} for --text.

    Example: echo rahul | textrnn translit predict -c checkpoints/hi.ckpt
    """  # fmt: skip
    if read_ahead < 1:
        raise UsageError(f"--read-ahead must be at least 1, got {read_ahead}")
    if text and nbest != 1:
        raise UsageError("--nbest applies to one word per line, not to --text")
    if attention_png is not None and show_attention is None:
        raise UsageError("--attention-png needs --show-attention WORD")
    if beam < 1:
        raise UsageError(f"--beam must be >= 1, got {beam}")
    if not 1 <= nbest <= beam:
        raise UsageError(f"--nbest must be between 1 and --beam ({beam}), got {nbest}")
    set_threads(threads)
    tr = translit.load(checkpoint, device=default_device(device), precision=precision, length_penalty=length_penalty)
    if show_attention is not None:
        _show_attention(tr, show_attention, attention_png, stderr_console(quiet))
        return
    if file is None and interactive():
        read_ahead = 1
    lines = stdin_lines() if file is None else iter_lines(check_text_file(file))
    out = sys.stdout
    with ticker(progress, quiet=quiet, unit="lines", product_shows=shown_as_it_goes(file)) as tick:
        for chunk in chunks(counting((line.rstrip("\r") for line in lines), tick), read_ahead):
            if text:
                outputs = tr.predict_text(chunk, beam=beam)
                out.write("".join(_render_text(line, o, json_out) + "\n" for line, o in zip(chunk, outputs, strict=True)))
            else:
                words = [line.strip() for line in chunk]
                found = tr.predict(words, beam=beam, nbest=nbest, read_ahead=read_ahead)
                out.write("".join(_render(w, cands, scores, json_out) + "\n" for w, cands in zip(words, found, strict=True)))
            out.flush()


def _render_text(line: str, output: str, json_out: bool) -> str:
    return json.dumps({"input": line, "output": output}, ensure_ascii=False) if json_out else output


def _render(word: str, cands, scores: bool, json_out: bool) -> str:
    if json_out:
        found = [{"text": c.text, "score": c.score, "logprob": c.logprob} for c in cands]
        return json.dumps({"input": word, "candidates": found}, ensure_ascii=False)
    if scores:
        return "\t".join(f"{c.text}\t{c.score:.4f}" for c in cands)
    return "\t".join(c.text for c in cands)


def _show_attention(tr: translit.LoadedTransliterator, word: str, png: Path | None, console) -> None:
    src, out, weights = tr.attention(word)
    if png is not None:
        plt = _pyplot()
    console = Console(file=sys.stdout, highlight=False, soft_wrap=False)
    table = Table(title=f"{word} -> {''.join(u for u in out if u != '</s>')}",
                  caption="weight x 10: output (row) on source (column)")  # fmt: skip
    table.add_column("")
    for unit in src:
        table.add_column(_visible(unit), justify="center")
    for unit, row in zip(out, weights, strict=True):
        cells = [Text(f"{min(9, round(10 * w))}", style=_heat(w)) for w in row]
        table.add_row(_visible(unit), *cells)
    console.print(table)
    if png is not None:
        _save_png(plt, src, out, weights, png, title=word)
        log(console, f"saved {png}")


def _visible(unit: str) -> str:
    """A lone combining mark (a matra, a virama) shown on a dotted circle, as fonts expect."""
    return "\u25cc" + unit if is_combining_start(unit) else unit


def _heat(w: float) -> str:
    """A background from white (0) to dark red (1), with readable text."""
    level = max(0.0, min(1.0, w))
    g = round(255 * (1 - level))
    fg = "white" if level > 0.5 else "black"
    return f"{fg} on rgb(255,{g},{g})"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise TextrnnError("--attention-png needs matplotlib: pip install 'textrnn[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(plt, src: list[str], out: list[str], weights: list[list[float]], path: Path, *, title: str) -> None:
    """The matrix as a picture. Labels are drawn in a font that has their characters, or
    written as code points (U+0930) where no installed font has them (no empty boxes)."""
    font = _font_with("".join(src + out))
    label = _visible if font else _codepoints
    fig, ax = plt.subplots(figsize=(0.6 * len(src) + 2, 0.45 * len(out) + 1.5))
    ax.imshow(weights, cmap="Reds", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src)), [label(u) for u in src], fontfamily=font)
    ax.set_yticks(range(len(out)), [label(u) if u != "</s>" else u for u in out], fontfamily=font)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(f"attention: {title if font else _codepoints(title)}")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as err:
        raise TextrnnError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        plt.close(fig)


def _font_with(text: str) -> str | None:
    """The name of an installed font that has every character of `text` (None if none has)."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    needed = {ord(c) for c in text if not c.isspace() and c not in "</>"}
    for entry in font_manager.fontManager.ttflist:
        if "last resort" in entry.name.lower():  # maps every character to a placeholder box
            continue
        try:
            charmap = FT2Font(entry.fname).get_charmap()
        except (OSError, RuntimeError, ValueError):
            continue
        if needed <= charmap.keys():
            return entry.name
    return None


def _codepoints(text: str) -> str:
    return text if text.isascii() else " ".join(c if c.isascii() else f"U+{ord(c):04X}" for c in text)


# ---- eval ---------------------------------------------------------------------------------------------


@app.command("eval")
def eval_(
    file: Annotated[Path, typer.Argument(help="Gold lexicon, in the layout the model was trained on.")],
    checkpoint: Checkpoint = ...,  # type: ignore[assignment]
    beam: Beam = 5,
    nbest: Annotated[int, typer.Option(help="k of top-k accuracy: candidates kept per word (at most --beam) (default: the beam width).")] = 0,
    length_penalty: LengthPenalty = LENGTH_PENALTY,
    precision: Annotated[str, typer.Option(help="fp32 | bf16 | auto.")] = "fp32",
    device: Device = "cpu",
    threads: Threads = 0,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
    json_out: JsonOut = False,
) -> None:
    """Score a transliterator on a gold lexicon: top-1 and top-k word accuracy, CER, any-reference accuracy.

    Every row counts once. Top-1 is an exact match with the row's target; top-k counts
    the target anywhere in the k-best list; CER is the edit distance of the best
    candidate over the reference code points; any-reference accuracy accepts every
    target the file gives for the same source.

    Example: textrnn translit eval hi.translit.sampled.dev.tsv -c checkpoints/hi.ckpt --json
    """
    if beam < 1:
        raise UsageError(f"--beam must be >= 1, got {beam}")
    nbest = nbest or beam
    if not 1 <= nbest <= beam:
        raise UsageError(f"--nbest must be between 1 and --beam ({beam}), got {nbest}")
    set_threads(threads)
    tr = translit.load(checkpoint, device=default_device(device), precision=precision, length_penalty=length_penalty)
    with ticker(progress, quiet=quiet, unit="words") as tick:
        result = tr.evaluate(file, beam=beam, nbest=nbest, on_progress=tick)
    if json_out:
        print(json.dumps(result, ensure_ascii=False))
        return
    _print_eval(result, beam)


def _print_eval(result: dict, beam: int) -> None:
    console = Console(file=sys.stdout, highlight=False, soft_wrap=False)
    table = Table(title=f"{Path(result['file']).name}: {result['rows']} rows", show_header=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    search = "greedy" if beam == 1 else f"beam {beam}"
    table.add_row(f"top-1 word accuracy ({search})", pct(result["top1"]))
    table.add_row(f"top-{result['k']} word accuracy", pct(result["topk"]))
    table.add_row("character error rate", pct(result["cer"]))
    table.add_row("top-1, any reference of the source", pct(result["any_reference_top1"]))
    table.add_row("distinct sources", str(result["sources"]))
    table.add_row("loss per unit (teacher-forced)", f"{result['loss']:.4f}" if math.isfinite(result["loss"]) else "-")
    console.print(table)
