"""Where the reference data sets live (one setting: TEXTRNN_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

from textrnn.errors import DataError

_REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The shared reference data: $TEXTRNN_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("TEXTRNN_DATA")
    return Path(env) if env else _REPO.parent / "shared" / "data"


def data_file(relative: str) -> Path:
    """A file of the reference data, with a clear error when it is absent."""
    path = data_dir() / relative
    if not path.exists():
        raise DataError(
            f"reference data file {path} not found; set TEXTRNN_DATA to the folder "
            "that holds tinyshakespeare/, ud_english_ewt/, dakshina_hi/ ..."
        )
    return path
