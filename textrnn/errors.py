"""textrnn's own error types.

Every failure a user can cause (bad file, bad option, foreign checkpoint) is raised
as a `TextrnnError`; the CLI prints its message as one line on stderr and exits with
its `exit_code`, never a traceback.
"""

from __future__ import annotations


class TextrnnError(Exception):
    """A failure with a message meant for the user. Exit code 1 (runtime failure)."""

    exit_code = 1


class UsageError(TextrnnError):
    """Nonsense options or arguments. Exit code 2, like argument-parsing errors."""

    exit_code = 2


class DataError(TextrnnError):
    """A corpus, CoNLL-U or TSV file that cannot be used (missing, empty, binary, malformed)."""


class CheckpointError(TextrnnError):
    """A checkpoint that is corrupt, foreign, of another task or of a newer format."""
