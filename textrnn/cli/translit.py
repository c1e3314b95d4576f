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

from textrnn.cli.display import TrainDisplay, log, pct, stderr_console
from textrnn.cli.io import chunks, interactive, stdin_lines
from textrnn.cli.options import Device, JsonOut, MaxSteps, Quiet, Resume, TimeBudget
from textrnn.cli.outcome import best_validation, exit_if_interrupted, summary
from textrnn.config import config_from_dict
from textrnn.engine import distributed
from textrnn.engine.checkpoint import load_checkpoint
from textrnn.engine.config import TrainConfig, config_with_overrides, saved_train_config
from textrnn.engine.devices import default_device, set_threads
from textrnn.engine.outputs import out_path_for
from textrnn.errors import CheckpointError, TextrnnError, UsageError
from textrnn.formats.plain import check_text_file, iter_lines
from textrnn.tasks.translit import (
    DEFAULT_MODEL,
    DEFAULT_TRAIN,
    READ_AHEAD,
    Transliterator,
    TranslitOptions,
    attention_map,
    evaluate,
    load_translit,
    predict_words,
    train_translit,
    transliterate_text,
)
from textrnn.text import is_combining_start

app = typer.Typer(help="Transliteration (romanised <-> native script): train, predict, eval.", no_args_is_help=True)

CheckpointOpt = Annotated[Path, typer.Option("--checkpoint", "-c", help="Transliteration checkpoint.")]
Threads = Annotated[
    int, typer.Option(help="CPU threads (0 = PyTorch's default, one per core).")
]
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
    train: Annotated[Path | None, typer.Option("--train", help="Training lexicon: TSV, source and target per line (optional with --resume).")] = None,
    dev: Annotated[Path | None, typer.Option("--dev", help="Dev lexicon for early stopping (default: hold out 5% of --train).")] = None,
    out: Annotated[Path | None, typer.Option(help="Best checkpoint (default: checkpoints/<train>.ckpt); the last one goes beside it as <name>.last.ckpt.")] = None,
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
    batch_size: Annotated[int | None, typer.Option(help=f"Words per batch (default: {DEFAULT_TRAIN['batch_size']}).")] = None,
    lr: Annotated[float | None, typer.Option(help=f"Peak learning rate (default: {DEFAULT_TRAIN['lr']}).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="AdamW weight decay (default: 0.01).")] = None,
    clip: Annotated[float | None, typer.Option(help=f"Gradient-norm clipping, 0 = off (default: {DEFAULT_TRAIN['clip']}).")] = None,
    epochs: Annotated[int | None, typer.Option(help=f"Passes over the data (default: {DEFAULT_TRAIN['epochs']}).")] = None,
    max_steps: MaxSteps = None,
    time_budget: TimeBudget = None,
    eval_every: Annotated[int | None, typer.Option(help="Validate every N steps (default: each epoch).")] = None,
    patience: Annotated[int | None, typer.Option(help=f"Early stopping: validations without a better dev accuracy (default: {DEFAULT_TRAIN['patience']}; 0 = off; off with --time-budget).")] = None,
    precision: Annotated[str | None, typer.Option(help="auto | fp32 | bf16 (default: auto; bf16 is 2.5x faster on a CPU with AVX512-BF16).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: 1234).")] = None,
    device: Device = "auto",
    threads: Threads = 1,
    quiet: Quiet = False,
    json_out: JsonOut = False,
) -> None:
    """Train an attentional BiLSTM encoder-decoder on a transliteration lexicon.

    The best checkpoint is the one with the highest dev word accuracy (greedy decoding).

    Example: textrnn translit train --train hi.translit.sampled.train.tsv --dev hi.translit.sampled.dev.tsv --time-budget 1800
    """  # fmt: skip
    group, dev_ = distributed.join(default_device(device))
    console = stderr_console(quiet or not group.main)
    set_threads(threads)
    overrides = dict(
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, clip=clip, epochs=epochs, max_steps=max_steps,
        time_budget=time_budget, eval_every=eval_every, patience=patience, precision=precision, seed=seed,
    )  # fmt: skip
    model_overrides = {
        k: v
        for k, v in dict(embed=embed, hidden=hidden, layers=layers, dec_hidden=dec_hidden, dropout=dropout,
                         members=members, attention=attention.value if attention else None).items()
        if v is not None
    }  # fmt: skip
    option_overrides = {
        k: v
        for k, v in dict(teacher_forcing=teacher_forcing, sampling_decay=sampling_decay, label_smoothing=label_smoothing).items()
        if v is not None
    }  # fmt: skip
    columns = None
    if (source_column is None) != (target_column is None):
        raise UsageError("--source-column and --target-column go together")
    if source_column is not None:
        columns = (source_column, target_column)
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume, task="translit")
        if model_overrides:
            raise UsageError("model options (--hidden, --attention, ...) cannot change when resuming")
        try:  # the metadata comes from a file: anything unusable is a corrupt checkpoint
            data = ckpt.meta.get("data") or {}
            train = train or Path((data.get("train") or {})["path"])
            if dev is None and data.get("dev"):
                dev = Path(data["dev"]["path"])
            direction = Direction(data.get("direction", direction.value))
            if columns is None and data.get("columns"):
                columns = tuple(int(c) for c in data["columns"])
            saved_cfg = saved_train_config(ckpt.meta, source=str(resume))
            options = config_from_dict(TranslitOptions, ckpt.meta.get("translit") or {}, what="translit options")
            best = ckpt.meta["training"].get("best_checkpoint")
        except (KeyError, TypeError, ValueError, AttributeError, TextrnnError) as err:
            raise CheckpointError(f"{resume}: checkpoint metadata is incomplete or invalid ({err})") from None
        cfg = config_with_overrides(saved_cfg, **overrides)
        options = replace(options, **option_overrides)
        out = out or Path(best or out_path_for(train))
    else:
        if train is None:
            raise UsageError("missing --train FILE (or --resume CHECKPOINT)")
        cfg = config_with_overrides(TrainConfig(**DEFAULT_TRAIN), **overrides)
        options = TranslitOptions(counts=counts.value, source_unit=source_unit.value,
                                  target_unit=target_unit.value, **option_overrides)  # fmt: skip
        out = out or out_path_for(train)
    for path in (train, dev):
        if path is not None:
            check_text_file(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    log(console, f"training a transliterator on {train} ({direction.value}) -> {out}")
    with TrainDisplay(console, _dev_accuracy) as display:
        result = train_translit(
            train, dev, out=out, direction=direction.value, columns=columns, model_overrides=model_overrides,
            options=options, train_cfg=cfg, device=dev_, on_progress=display,
            on_log=lambda m: log(console, m), resume=ckpt,
        )  # fmt: skip
    st = result.state
    exit_if_interrupted(st, result.last, group, "textrnn translit train")
    best = best_validation(st)
    log(console, f"done ({st.stopped}) after {st.step} steps; best dev accuracy (greedy) "
                 f"{pct(best.get('val_accuracy'))} at step {st.best_step}: {result.best}")  # fmt: skip
    if json_out and group.main:
        print(json.dumps(summary(st, result.best, result.last, ("val_accuracy", "val_cer", "val_loss"))))


# ---- predict ------------------------------------------------------------------------------------------


@app.command("predict")
def predict_(
    file: Annotated[Path | None, typer.Argument(help="Input (default: stdin): one word per line, or running text with --text.")] = None,
    checkpoint: CheckpointOpt = ...,  # type: ignore[assignment]
    text: Annotated[bool, typer.Option("--text", help="Running text: transliterate every word, keep spacing, punctuation and digits.")] = False,
    beam: Beam = 5,
    nbest: Annotated[int, typer.Option(help="Candidates per word, tab-separated, best first (at most --beam).")] = 1,
    scores: Annotated[bool, typer.Option("--scores", help="Follow each candidate with its score (length-normalised log-probability).")] = False,
    length_penalty: LengthPenalty = 1.0,
    read_ahead: Annotated[int, typer.Option(help="Lines read, then transliterated together (1 when stdin is a terminal).")] = READ_AHEAD,
    show_attention: Annotated[str | None, typer.Option(help="Transliterate this one word and print its attention matrix as a heatmap.")] = None,
    attention_png: Annotated[Path | None, typer.Option(help="With --show-attention: also save the matrix as a PNG (needs matplotlib: pip install matplotlib, or the plot extra).")] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 where the CPU/GPU has it) | fp32 | bf16.")] = "auto",
    device: Device = "cpu",
    threads: Threads = 1,
) -> None:
    """Transliterate words (one per line) or running text, streaming: output follows input chunk by chunk.

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
    tr = load_translit(checkpoint, device=default_device(device), precision=precision, length_penalty=length_penalty)
    if show_attention is not None:
        _show_attention(tr, show_attention, attention_png)
        return
    if file is None and interactive():
        read_ahead = 1
    lines = stdin_lines() if file is None else iter_lines(check_text_file(file))
    out = sys.stdout
    for chunk in chunks((line.rstrip("\r") for line in lines), read_ahead):
        if text:
            out.write("".join(line + "\n" for line in transliterate_text(tr, chunk, beam=beam)))
        else:
            words = [line.strip() for line in chunk]
            found = predict_words(tr, words, beam=beam, nbest=nbest, read_ahead=read_ahead)
            out.write("".join(_render(cands, scores) + "\n" for cands in found))
        out.flush()


def _render(cands, scores: bool) -> str:
    if scores:
        return "\t".join(f"{c.text}\t{c.score:.4f}" for c in cands)
    return "\t".join(c.text for c in cands)


def _show_attention(tr: Transliterator, word: str, png: Path | None) -> None:
    src, out, weights = attention_map(tr, word)
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
        print(f"saved {png}", file=sys.stderr)


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
    checkpoint: CheckpointOpt = ...,  # type: ignore[assignment]
    beam: Beam = 5,
    nbest: Annotated[int, typer.Option(help="k of top-k accuracy: candidates kept per word (at most --beam) (default: the beam width).")] = 0,
    length_penalty: LengthPenalty = 1.0,
    precision: Annotated[str, typer.Option(help="fp32 | bf16 | auto.")] = "fp32",
    device: Device = "cpu",
    threads: Threads = 1,
    json_out: JsonOut = False,
) -> None:
    """Score a transliterator on a gold lexicon: top-1 and top-k word accuracy, CER, any-reference accuracy.

    Every row counts once. Top-1 is an exact match with the row's target; top-k counts
    the target anywhere in the k-best list; CER is the edit distance of the best
    candidate over the reference code points; any-reference accuracy accepts every
    target the file gives for the same source.

    Example: textrnn translit eval -c checkpoints/hi.ckpt hi.translit.sampled.dev.tsv --json
    """
    if beam < 1:
        raise UsageError(f"--beam must be >= 1, got {beam}")
    nbest = nbest or beam
    if not 1 <= nbest <= beam:
        raise UsageError(f"--nbest must be between 1 and --beam ({beam}), got {nbest}")
    set_threads(threads)
    tr = load_translit(checkpoint, device=default_device(device), precision=precision, length_penalty=length_penalty)
    result = evaluate(tr, file, beam=beam, nbest=nbest)
    if json_out:
        print(json.dumps(result, ensure_ascii=False))
        return
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
