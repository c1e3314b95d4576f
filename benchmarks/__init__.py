"""Benchmarks that measure textrnn against a plain reference in the same run.

Run `python -m benchmarks --help`. Every speed figure is a ratio against a
straightforward PyTorch (or Python) implementation of the same computation,
measured alternately with textrnn in the same process, so that the machine's
speed and load cancel out. Each area writes `<out>/<area>.json`; RESULTS.md is
regenerated from whatever JSON files are present.
"""
