"""The `textrnn` app: its commands, and the one place where failures become exit codes.

Conventions for every command:
- stdout carries only the product (text, ids, tags, JSON); logs and progress go to stderr.
- Errors are `TextrnnError`s: one line on stderr, exit 1 (runtime) or 2 (usage).
- A closed stdout pipe (`textrnn sample | head`) ends quietly with exit 0.
- Ctrl-C exits 130. A training stopped by SIGINT, SIGTERM or SIGHUP saves a resumable
  checkpoint and exits 128 + the signal (see `cli.outcome.exit_if_interrupted`); a second
  signal stops it at once (`StopNow`) and exits 130 here, with one line that says so.
"""

from __future__ import annotations

import os
import re
import sys

import typer

try:  # typer >= 0.20 vendors click; older releases depend on it
    from typer._click.exceptions import ClickException
    from typer._click.exceptions import UsageError as ClickUsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException
    from click.exceptions import UsageError as ClickUsageError

from textrnn.cli import classify, info, lm, plot, tag, tokenize, translit
from textrnn.engine.signals import StopNow
from textrnn.errors import TextrnnError

app = typer.Typer(
    name="textrnn",
    help="Recurrent-network text generation and NLP: train, sample, evaluate, tokenize.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (Typer's own)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# The language model keeps its short forms (`textrnn train`, `sample`, `eval`) beside
# `textrnn lm train|sample|eval`; every other task is one sub-command group.
app.registered_commands.extend(lm.app.registered_commands)
app.add_typer(lm.app, name="lm")
app.add_typer(tag.app, name="tag")
app.add_typer(translit.app, name="translit")
app.add_typer(classify.app, name="classify")
app.add_typer(tokenize.app, name="tokenize")
app.command()(info.info)
app.command()(plot.plot)

# What str.splitlines() breaks at: a message quoting a file's content stays one line.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _fail(message: str, code: int) -> None:
    message = _LINE_BREAKS.sub(lambda m: repr(m[0])[1:-1], message)
    print(f"textrnn{_rank_label()}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _rank_label() -> str:
    """' (rank 3 of 8)' in a process that torchrun started among several: errors say which one failed."""
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "?")
    return f" (rank {rank} of {world})" if world.isdigit() and int(world) > 1 else ""


class _StdoutClosed(Exception):
    """The reader of stdout went away. Deliberately not an OSError, so that nothing
    between a command and `main` mistakes it for a failure."""


class _PipeSafeStdout:
    """sys.stdout, with a closed pipe turned into `_StdoutClosed`."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise _StdoutClosed() from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise _StdoutClosed() from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every expected failure into one line and an exit code.

    `--debug` anywhere on the command line shows the traceback of a failure instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    real_stdout = sys.stdout
    sys.stdout = _PipeSafeStdout(real_stdout)
    try:
        code = app(args=args, prog_name="textrnn", standalone_mode=False)
    except TextrnnError as err:
        if debug:
            raise
        _fail(str(err), err.exit_code)
    except ClickUsageError as err:
        hint = f" (see: {err.ctx.command_path} --help)" if err.ctx is not None else ""
        _fail(err.format_message() + hint, 2)
    except ClickException as err:
        _fail(err.format_message(), err.exit_code)
    except (_StdoutClosed, BrokenPipeError):
        _quiet_broken_pipe()
    except StopNow as err:  # a second stop signal during training
        _fail(str(err), 130)
    except KeyboardInterrupt:  # Typer turns one inside a command into exit 130 itself
        _fail("interrupted", 130)
    finally:
        sys.stdout = real_stdout
    raise SystemExit(code if isinstance(code, int) else 0)


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head`): stop writing, exit 0, and let Python's final flush go nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.__stdout__.fileno())
    raise SystemExit(0)
