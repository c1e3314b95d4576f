"""Shared fixtures: the reference data sets live outside the repository (TEXTRNN_DATA)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from textrnn.errors import DataError
from textrnn.paths import data_file

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO / "corpora"

# Tests train tiny models; one thread keeps them fast and deterministic on 2 cores.
torch.set_num_threads(1)

# A background job of a non-interactive shell (`pytest &` in a script) starts with SIGINT
# ignored, and the `textrnn train` processes the tests start would inherit that and never
# see the Ctrl-C the tests send them. A handler of our own is reset to the default at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Under `nohup` SIGHUP is ignored the same way, and textrnn rightly keeps it ignored; a
# no-op handler here leaves pytest as deaf to hang-ups as before, while the processes the
# tests start get the default again.
if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, lambda signum, frame: None)


@pytest.fixture(scope="session")
def shared_data():
    """Return a function that finds a reference data file, or skips (fails in CI) when absent.

    This is the suite's only skip for missing data: a file that is there but fails to load
    fails the test. Session-scoped, so that module-scoped fixtures can use it too.
    """

    def find(relative: str) -> Path:
        try:
            return data_file(relative)
        except DataError as err:
            if os.environ.get("CI"):
                pytest.fail(str(err))
            pytest.skip(str(err))

    return find
