"""`textrnn tokenize train|encode|decode|stats`: build tokenizers and tokenize text.

encode and decode are filters: one output line per input line, from FILE arguments or
stdin, so they pipe, and decode reads what encode writes in either mode (pieces by
default, ids with --ids on both sides). The piece format is defined, and parsed, in
`textrnn.tokenizers.pieces`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from textrnn.cli.display import counting, ticker
from textrnn.cli.io import stdin_lines
from textrnn.cli.options import ProgressMode, Quiet, Shown
from textrnn.errors import CheckpointError, DataError, UsageError
from textrnn.formats.plain import check_text_file, iter_lines, iter_text_chunks
from textrnn.tokenizers import (
    Tokenizer,
    corpus_stats,
    format_pieces,
    load_sentencepiece_model,
    load_tokenizer,
    marks_spaces,
    parse_pieces,
    save_tokenizer,
    show_piece,
    tokenizer_from_dict,
    train_tokenizer,
)

app = typer.Typer(help="Build tokenizers and tokenize text.", no_args_is_help=True)

TokenizerFile = Annotated[
    Path | None, typer.Option("--tokenizer", "-t", help="Tokenizer file from `tokenize train`.")
]
CheckpointFile = Annotated[
    Path | None, typer.Option("--checkpoint", "-c", help="Use the tokenizer inside a checkpoint.")
]
Files = Annotated[
    list[Path] | None, typer.Argument(help="Input files ('-' or none: stdin).", show_default=False)
]
Kind = Annotated[str, typer.Option(help="char | word | bpe | unigram")]
VocabSize = Annotated[
    int | None,
    typer.Option(help="Cap on ids, <unk> included (default: all units; subwords up to 8000)."),
]
Unit = Annotated[str, typer.Option(help="Char units: grapheme (conjuncts whole) | codepoint.")]
Normalize = Annotated[str, typer.Option(help="Unicode normalisation: nfc | nfkc | none.")]


# --- train ----------------------------------------------------------------------------------


@app.command()
def train(
    corpus: Annotated[
        Path | None, typer.Argument(help="UTF-8 text to build the vocabulary from.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Tokenizer file to write (JSON).")
    ] = None,
    kind: Kind = "char",
    vocab_size: VocabSize = None,
    min_count: Annotated[int, typer.Option(help="Char/word: drop rarer units.")] = 1,
    unit: Unit = "grapheme",
    normalize: Normalize = "nfc",
    character_coverage: Annotated[
        float, typer.Option(help="Subwords: share of characters kept as pieces.")
    ] = 1.0,
    byte_fallback: Annotated[
        bool,
        typer.Option(
            "--byte-fallback/--no-byte-fallback", help="Subwords: spell unseen text in bytes."
        ),
    ] = True,
    user_symbol: Annotated[
        list[str] | None, typer.Option(help="A string always kept as one token (repeatable).")
    ] = None,
    tokenizer_model: Annotated[
        Path | None, typer.Option(help="Import this sentencepiece .model instead of training.")
    ] = None,
    quiet: Quiet = False,
    progress: ProgressMode = Shown.auto,
) -> None:
    """Build a tokenizer from CORPUS (or import a sentencepiece model) and write it to --out."""
    if out is None:
        raise UsageError("give the tokenizer file to write with --out FILE")
    if (corpus is None) == (tokenizer_model is None):
        raise UsageError("give a CORPUS to train on, or --tokenizer-model to import (not both)")
    if tokenizer_model is not None:
        tok: Tokenizer = load_sentencepiece_model(tokenizer_model)
    else:
        size = check_text_file(corpus).stat().st_size
        with ticker(progress, quiet=quiet, unit="bytes", total=size) as tick:
            tok = train_tokenizer(
                kind,
                counting(iter_text_chunks(corpus), tick, size=lambda text: len(text.encode("utf-8"))),
                vocab_size=vocab_size,
                min_count=min_count,
                unit=unit,
                normalize=normalize,
                character_coverage=character_coverage,
                byte_fallback=byte_fallback,
                user_symbols=user_symbol or (),
            )
    save_tokenizer(tok, out)
    if not quiet:
        print(f"textrnn: wrote {tok.kind} tokenizer ({tok.vocab_size} ids) to {out}", file=sys.stderr)


# --- encode / decode ------------------------------------------------------------------------


PIECES_HELP = """
Pieces (the default): one line per input line, the vocabulary's piece for each token
separated by single spaces (a unit outside the vocabulary is <unk>); a line with no
tokens is empty. Inside a piece a space is written ▁, as sentencepiece writes it
(sentencepiece pieces such as ▁the and <0xE0> appear as they are), and \\\\ \\n \\t \\r
and \\uXXXX escape a backslash, newline, tab, carriage return and any other whitespace
or control character, and a literal ▁ in a char or word piece (\\u2581). With --ids:
the token ids, separated by spaces.
"""

IdsOption = Annotated[
    bool, typer.Option("--ids", help="Token ids instead of pieces (both encode and decode).")
]


@app.command(epilog=PIECES_HELP)
def encode(
    files: Files = None,
    tokenizer: TokenizerFile = None,
    checkpoint: CheckpointFile = None,
    ids: IdsOption = False,
) -> None:
    """Tokenize text: one line of space-separated pieces (or ids) per input line."""
    tok = resolve_tokenizer(tokenizer, checkpoint)
    out = _utf8_stdout()
    for _, line in _input_lines(files):
        line_ids = tok.encode(line)
        out.write((" ".join(map(str, line_ids)) if ids else format_pieces(tok, line_ids)) + "\n")


@app.command(epilog=PIECES_HELP)
def decode(
    files: Files = None,
    tokenizer: TokenizerFile = None,
    checkpoint: CheckpointFile = None,
    ids: IdsOption = False,
) -> None:
    """Turn what `encode` writes (pieces, or ids with --ids) back into text, line by line.

    `encode -t T FILE | decode -t T` gives back FILE in the tokenizer's normal form: the
    text normalised (NFC unless the tokenizer says otherwise), lines ended by "\\n",
    units outside the vocabulary as U+FFFD (word: <unk>), and, for word tokenizers,
    words re-spaced the way decoding spaces them.
    """
    tok = resolve_tokenizer(tokenizer, checkpoint)
    out = _utf8_stdout()
    for where, line in _input_lines(files):
        try:
            out.write(tok.decode(_read_ids(line) if ids else parse_pieces(tok, line)) + "\n")
        except DataError as err:
            raise DataError(f"{where}: {err}") from None


def _read_ids(line: str) -> list[int]:
    try:
        return [int(x) for x in line.split()]
    except ValueError:
        raise DataError("expected space-separated token ids") from None


def resolve_tokenizer(tokenizer: Path | None, checkpoint: Path | None) -> Tokenizer:
    """The tokenizer of a tokenizer file or of a checkpoint (exactly one must be given)."""
    if (tokenizer is None) == (checkpoint is None):
        raise UsageError("give exactly one of --tokenizer FILE or --checkpoint FILE")
    if tokenizer is not None:
        return load_tokenizer(tokenizer)
    from textrnn.engine.checkpoint import load_checkpoint

    meta = load_checkpoint(checkpoint, load_tensors=False).meta
    tokenizers = meta.get("tokenizers")
    if not (isinstance(tokenizers, dict) and isinstance(tokenizers.get("text"), dict)):
        raise CheckpointError(f"{checkpoint}: this checkpoint has no single text tokenizer")
    return tokenizer_from_dict(tokenizers["text"])


def _input_lines(files: list[Path] | None) -> Iterator[tuple[str, str]]:
    """(place, line without its line ending) for each line of the files, or of stdin."""
    for path in files or [Path("-")]:
        stdin = str(path) == "-"
        name = "<stdin>" if stdin else str(path)
        source = stdin_lines() if stdin else iter_lines(path)
        for number, line in enumerate(source, start=1):
            yield f"{name}:{number}", line.removesuffix("\r")


def _utf8_stdout() -> TextIO:
    """stdout, made UTF-8 where the locale says otherwise (pieces are any script)."""
    out = sys.stdout
    if (out.encoding or "").lower().replace("-", "") != "utf8" and hasattr(out, "reconfigure"):
        out.reconfigure(encoding="utf-8")
    return out


# --- stats ------------------------------------------------------------------------------------


@app.command()
def stats(
    corpus: Annotated[Path, typer.Argument(help="UTF-8 text to measure.")],
    kind: Annotated[
        str | None, typer.Option(help="Build a tokenizer of this kind from CORPUS (default char).")
    ] = None,
    tokenizer: TokenizerFile = None,
    checkpoint: CheckpointFile = None,
    vocab_size: VocabSize = None,
    unit: Unit = "grapheme",
    normalize: Normalize = "nfc",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    top: Annotated[int, typer.Option(help="How many of the most frequent tokens to list.")] = 20,
) -> None:
    """Vocabulary size, tokens, characters, characters per token, unknown rate, top tokens."""
    if top < 0:
        raise UsageError(f"--top must be 0 or more, got {top}")
    if tokenizer is None and checkpoint is None:
        tok = train_tokenizer(
            kind or "char",
            iter_text_chunks(corpus),
            vocab_size=vocab_size,
            unit=unit,
            normalize=normalize,
        )
    elif kind is not None:
        raise UsageError("give either --kind (build from CORPUS) or a tokenizer, not both")
    else:
        tok = resolve_tokenizer(tokenizer, checkpoint)
    report = corpus_stats(tok, iter_text_chunks(corpus), top=top)
    if as_json:
        out = _utf8_stdout()
        out.write(json.dumps(report, ensure_ascii=False) + "\n")
    else:
        _print_stats(report, tok)


def _print_stats(report: dict[str, Any], tok: Tokenizer) -> None:
    console = Console(file=_utf8_stdout(), highlight=False, soft_wrap=False)
    summary = Table(title=f"{report['kind']} tokenizer", show_header=False)
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    for label, key in [
        ("vocabulary size", "vocab_size"),
        ("ids used", "vocab_used"),
        ("tokens", "tokens"),
        ("characters", "characters"),
        ("characters per token", "chars_per_token"),
        ("unknown tokens", "unknown_tokens"),
        ("unknown rate", "unknown_rate"),
    ]:
        value = report[key]
        summary.add_row(label, f"{value:.4%}" if key == "unknown_rate" else f"{value:,}")
    if report["unknown_units"]:
        shown = " ".join(map(show_piece, report["unknown_units"][:20]))  # text, not pieces
        summary.add_row("unknown units", Text(shown))
    console.print(summary)
    if report["top"]:
        marked = marks_spaces(tok)
        table = Table(title="most frequent tokens")
        for name, justify in [("rank", "right"), ("id", "right"), ("piece", "left")]:
            table.add_column(name, justify=justify)
        table.add_column("count", justify="right")
        table.add_column("share", justify="right")
        for rank, row in enumerate(report["top"], start=1):
            share = row["count"] / report["tokens"]
            table.add_row(
                str(rank),
                str(row["id"]),
                Text(show_piece(row["piece"], marked=marked)),
                f"{row['count']:,}",
                f"{share:.2%}",
            )
        console.print(table)
