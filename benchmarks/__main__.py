"""python -m benchmarks [AREA ...] [--quick] [--pin CPUS] [--out DIR] | --render

Runs the named areas (all of them by default), prints a table per area, writes
`<out>/<area>.json` (checked against the area's declared fields, with the run conditions
recorded here), then regenerates RESULTS.md and the README's benchmark block from every
JSON file in `<out>`. `--render` only regenerates them. With an `--out` other than
benchmarks/out, RESULTS.md and README.md are written inside it unless named, so a scratch
run never touches the repository's files.

An area is a module with `run(opts) -> dict`, `table(result)`, `FIELDS` (see schema.py) and
optionally `headline(result)` and `plot(result, folder)`: one line in AREAS adds it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from benchmarks import (
    classify,
    conditions,
    distributed,
    generate_speed,
    libraries,
    lm_sizes,
    peers,
    quality,
    report,
    scale,
    schema,
    tagger,
    tokenizer_speed,
    train_speed,
    translit,
)
from benchmarks.common import (
    SCHEMA,
    Options,
    area_command,
    cell_list,
    count_list,
    default_reps,
    environment,
    machine_info,
    seconds_list,
    utc_now,
)
from textrnn.errors import TextrnnError

AREAS = {
    "train_speed": train_speed,
    "generate_speed": generate_speed,
    "quality": quality,
    "tokenizer_speed": tokenizer_speed,
    "tagger": tagger,
    "scale": scale,
    "translit": translit,
    "distributed": distributed,
    "libraries": libraries,
    "peers": peers,
    "lm_sizes": lm_sizes,
    "classify": classify,
}
HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"


def parse_size(text: str) -> int:
    """'10M' -> 10_000_000 bytes (decimal units: K, M, G)."""
    units = {"K": 10**3, "M": 10**6, "G": 10**9}
    text = text.strip().upper().removesuffix("B")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 10M, 1G)") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure textrnn against plain references in the same run.",
    )
    p.add_argument(
        "areas", nargs="*", metavar="AREA", help=f"areas to run (default: all): {', '.join(AREAS)}"
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes and 2 repetitions: a sanity run"
    )
    p.add_argument(
        "--tiny", action="store_true", help="toy shapes on the repository corpora (for the tests)"
    )
    p.add_argument("--reps", type=int, help="alternating repetitions per comparison [5; --quick 2]")
    p.add_argument(
        "--sizes", help="scale: comma-separated corpus sizes [10M,100M,1G; --quick 1M,10M]"
    )
    p.add_argument("--budgets", type=seconds_list, default=(), help="peers: training seconds, e.g. 120,600 [600]")
    p.add_argument("--thread-counts", type=count_list, default=(), help="peers: threads, e.g. 1,2 [1]")
    p.add_argument("--cells", type=cell_list, default=(),
                   help="peers: budget x threads pairs instead of every budget at every thread count, "
                        "e.g. 120x1,600x1,120x2")  # fmt: skip
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for the per-area JSON files [benchmarks/out]"
    )
    p.add_argument(
        "--results", type=Path,
        help="the Markdown report to rewrite [benchmarks/RESULTS.md; OUT/RESULTS.md for another --out]",
    )  # fmt: skip
    p.add_argument(
        "--readme", type=Path,
        help="the README whose benchmark block to rewrite [README.md; OUT/README.md for another --out]",
    )  # fmt: skip
    p.add_argument(
        "--render", action="store_true",
        help="run nothing: regenerate RESULTS.md and the README block from the JSON files",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=int, help="torch threads for the in-process measurements [one per usable CPU]"
    )
    p.add_argument(
        "--pin", metavar="CPUS", type=_cpus,
        help="run on these CPUs only (e.g. 1 or 0,2-3; subprocesses too), recorded in the JSON",
    )  # fmt: skip
    p.add_argument(
        "--keep", type=Path, help="keep each area's working folder (models, corpora) in KEEP/AREA"
    )
    args = p.parse_args(argv)
    if args.render and (args.areas or args.quick or args.tiny):
        p.error("--render runs nothing: give it no areas and no --quick/--tiny")
    scratch = args.out.resolve() != DEFAULT_OUT
    args.results = args.results or (args.out / "RESULTS.md" if scratch else HERE / "RESULTS.md")
    args.readme = args.readme or (args.out / "README.md" if scratch else HERE.parent / "README.md")
    unknown = [a for a in args.areas if a not in AREAS]
    if unknown:
        p.error(f"unknown area {unknown[0]!r}; choose from {', '.join(AREAS)}")
    return args


def _cpus(text: str) -> set[int]:
    try:
        return conditions.parse_cpus(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        report.write_all(args.out, args.results, args.readme, AREAS)
        print(f"wrote {args.results} and the benchmark block of {args.readme}")
        return 0
    if args.pin:
        conditions.pin(args.pin)
    torch.set_num_threads(args.threads or len(conditions.allowed_cpus()))  # explicit, and recorded
    sizes = tuple(parse_size(s) for s in args.sizes.split(",")) if args.sizes else ()
    reps = args.reps or default_reps(quick=args.quick, tiny=args.tiny)
    opts = Options(quick=args.quick, tiny=args.tiny, reps=reps, sizes=sizes,
                   budgets=args.budgets, thread_counts=args.thread_counts, cells=args.cells)  # fmt: skip
    console = Console(width=None if sys.stdout.isatty() else 160)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for area in args.areas or list(AREAS):
        console.print(f"[bold]{area}[/bold] ...")
        try:
            result = run_area(area, opts, sizes_flag=args.sizes, keep=args.keep, threads=args.threads,
                              pin=args.pin)  # fmt: skip
        except TextrnnError as err:  # e.g. the reference data is missing: one clear line
            console.print(
                f"[red]{area} failed: {escape(str(err))}; its JSON file was not written[/red]"
            )
            failed.append(area)
            continue
        except Exception:
            traceback.print_exc()
            console.print(f"[red]{area} failed; its JSON file was not written[/red]")
            failed.append(area)
            continue
        path = args.out / f"{area}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        for table in report.tables(AREAS[area], result):
            console.print(table.rich())
        console.print(f"wrote {path}")
        fields = getattr(AREAS[area], "FIELDS", None)
        undeclared = (
            schema.errors(result, schema.area_schema(fields))
            if fields is not None
            else ["the area declares no FIELDS (see benchmarks/schema.py)"]
        )
        if undeclared:  # written all the same (the figures are not lost); the tests fail on it
            console.print(f"[red]{area}: fields its FIELDS do not declare: {escape('; '.join(undeclared))}[/red]")
            failed.append(area)
    report.write_all(args.out, args.results, args.readme, AREAS)
    console.print(f"wrote {args.results} and the benchmark block of {args.readme}")
    return 1 if failed else 0


def run_area(
    area: str,
    opts: Options,
    *,
    sizes_flag: str | None,
    keep: Path | None = None,
    threads: int | None = None,
    pin: set[int] | None = None,
) -> dict:
    """Run one area in a private temporary folder (also its encoded-corpus cache), or in
    `keep/area` when the trained models are wanted afterwards."""
    machine = machine_info()
    extra = [f"--sizes {sizes_flag}"] if area == "scale" and sizes_flag else []
    if threads:
        extra.append(f"--threads {threads}")
    if pin:
        extra.append(f"--pin {','.join(map(str, sorted(pin)))}")
    meter, conds = conditions.start(pinned=bool(pin))
    start = time.perf_counter()
    with _workdir(area, keep) as tmp:
        with environment(TEXTRNN_CACHE=str(Path(tmp) / "cache")):
            body = AREAS[area].run(replace(opts, workdir=Path(tmp)))
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    conds.update(meter.stop())
    return {
        "area": area,
        "schema": SCHEMA,
        "command": area_command(area, opts, *extra),
        "date": utc_now(),
        "quick": opts.quick,
        "tiny": opts.tiny,
        "duration_s": round(time.perf_counter() - start, 1),
        "machine": machine,
        "conditions": conds,
        **body,
    }


@contextmanager
def _workdir(area: str, keep: Path | None) -> Iterator[str]:
    if keep is None:
        with tempfile.TemporaryDirectory(prefix=f"textrnn-bench-{area}-") as tmp:
            yield tmp
        return
    folder = keep / area
    folder.mkdir(parents=True, exist_ok=True)
    yield str(folder)


if __name__ == "__main__":
    sys.exit(main())
