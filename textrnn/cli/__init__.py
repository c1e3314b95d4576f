"""The `textrnn` command line: a thin Typer layer over the Python API.

Conventions for every command:
- stdout carries only the product (text, ids, tags, labels, JSON); logs and progress go to stderr.
- Errors are `TextrnnError`s: one line on stderr, exit 1 (runtime) or 2 (usage).
- A closed stdout pipe (`textrnn sample | head`) ends quietly with exit 0.

One module per task (`lm`, `tag`, `translit`, ...) parses options, calls the task's
Python API and prints; `main` puts them together.
"""

from textrnn.cli.main import app, main

__all__ = ["app", "main"]
