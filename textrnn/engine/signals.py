"""Signals that end a training run early, and how they end it.

SIGINT (Ctrl-C), SIGTERM (`kill`, `timeout`, systemd, SLURM, Kubernetes, `docker stop`)
and SIGHUP (the terminal went away) all mean "stop and keep what you have". The first
one only records itself (`StopSignals.received`); the loop checks between steps, so a
signal never lands in the middle of an optimizer update, saves a resumable last
checkpoint and returns with `TrainState.signal` set; the CLI then exits 128 + signal
(130, 143, 129), the convention shells and schedulers read.

A second signal, of any of the three, stops at once: `StopNow` is raised where the
program is (the CLI says so in one line and exits 130). If that is the middle of a
checkpoint save, the atomic write (`textrnn.files.atomic_file`) removes its temporary
file on the way out, so the checkpoints on disk are those of the previous saves, whole. From then on further
signals are ignored until the handlers are put back, so that this clean-up (and the
release of the output lock) runs to its end.

A signal that is ignored when training starts stays ignored: under `nohup` SIGHUP is,
and in a background job of a non-interactive shell SIGINT is.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

# SIGHUP does not exist on Windows.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class StopNow(BaseException):
    """A second signal arrived: training stops at once, without saving.

    Like KeyboardInterrupt it is no Exception, so that no `except Exception` stops it on
    its way out; unlike it, it is not turned into a silent exit 130 by the CLI framework
    (Typer), so that the CLI can say what happened."""


class StopSignals:
    """Handlers for STOP_SIGNALS while a run trains (see the module docstring)."""

    def __init__(self) -> None:
        self.received = 0  # the first stop signal's number; 0 while none came
        self._stopping = False  # a second one came: StopNow is on its way out

    def _handle(self, signum: int, frame) -> None:
        if self._stopping:
            return  # let the clean-up of the first StopNow finish
        if self.received:
            self._stopping = True
            raise StopNow(
                f"interrupted again ({signal.Signals(signum).name}): stopped at once, without "
                "saving; the checkpoints on disk are those of the last completed save"
            )
        self.received = signum

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Handle the stop signals inside the block; the previous handlers come back after it.
        Outside the main thread signals cannot be handled and are left alone."""
        previous = {}
        try:
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            pass
        try:
            yield self
        finally:
            for sig, handler in previous.items():  # None: a handler set outside Python
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)
