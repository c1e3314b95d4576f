"""Benchmarks that measure textrnn against a plain reference in the same run.

Run `python -m benchmarks --help`. Every speed figure is a ratio against a
straightforward PyTorch (or Python) implementation of the same computation,
measured alternately with textrnn in the same process, so that the machine's
speed and load cancel out. Every quality figure names its split and that split's
role (common.split_label). Each area writes `<out>/<area>.json` with the run
conditions the harness records (conditions.py); RESULTS.md and the README's
benchmark block are regenerated from whatever JSON files are present (report.py).

An area is a module with `run(opts) -> dict`, `table(result) -> Table | list[Table]`,
`FIELDS` (every field its `run` writes, see schema.py) and optionally
`headline(result)` (its rows of the README table) and `plot(result, folder)`; one
line in `__main__.AREAS` adds it.
"""
