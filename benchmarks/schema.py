"""The fields a benchmark JSON file may hold: each one is declared by the code that writes it.

A schema is a nested literal:

- `VALUE`: a JSON value that holds no object (number, string, bool, null, or a list of them);
- `{name: schema, ...}`: an object whose fields are among these names (`ANY_NAME` stands for
  names the code chooses at run time, e.g. one per corpus);
- `[schema]`: a list whose items all match `schema`.

The harness checks every result against `ENVELOPE` plus its area's `FIELDS` when it writes
it, and the default test run checks every file under `benchmarks/out/` the same way, so a
field typed in by hand (a note, a run condition) fails. Fields that only older files hold
(written by an earlier version of the code, replaced by the next full run) are declared too,
under a comment that says so.
"""

from __future__ import annotations


class _Value:
    def __repr__(self) -> str:
        return "VALUE"


VALUE = _Value()
ANY_NAME = "*"

STATS = {"median": VALUE, "min": VALUE, "max": VALUE, "runs": VALUE}  # common.summarize
COMPARISON = {  # common.compare, before any extra fields
    "case": VALUE,
    "unit": VALUE,
    "textrnn": STATS,
    "reference": STATS,
    "ratio": STATS,
    "target_ratio": VALUE,
    "meets_target": VALUE,
}


def comparison(*extra: str) -> dict:
    """A `common.compare` row with the named extra fields (each a VALUE)."""
    return {**COMPARISON, **dict.fromkeys(extra, VALUE)}


# What the harness (`__main__.run_area`) writes around every area's own fields.
ENVELOPE = {
    "area": VALUE,
    "schema": VALUE,
    "command": VALUE,
    "date": VALUE,
    "quick": VALUE,
    "tiny": VALUE,
    "duration_s": VALUE,
    "machine": dict.fromkeys(
        ("cpu", "cores", "torch_threads", "torch", "python", "platform", "load_average",
         "load_average_end"),
        VALUE,
    ),  # fmt: skip
    "conditions": dict.fromkeys(
        ("threads", "cpus_allowed", "pinned", "omp_num_threads", "other_cpu_s", "other_load",
         "git_commit", "git_dirty", "git_dirty_files"),
        VALUE,
    ),  # fmt: skip
}


def errors(value: object, schema: object, path: str = "") -> list[str]:
    """Where `value` holds what `schema` does not declare: one message per field."""
    here = path or "(top)"
    if schema is VALUE:
        return [] if _is_plain(value) else [f"{here}: an object where a value is declared"]
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{here}: declared a list, found {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in errors(item, schema[0], f"{path}[{i}]")]
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{here}: declared an object, found {type(value).__name__}"]
        out = []
        for name, item in value.items():
            sub = schema.get(name, schema.get(ANY_NAME))
            where = f"{path}.{name}" if path else name
            if sub is None:
                out.append(f"{where}: no code writes this field")
            else:
                out += errors(item, sub, where)
        return out
    raise TypeError(f"not a schema: {schema!r}")


def _is_plain(value: object) -> bool:
    if isinstance(value, dict):
        return False
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    return True


def area_schema(fields: dict) -> dict:
    """The whole file's schema for an area that declares `fields` (its own top-level fields)."""
    return {**ENVELOPE, **fields}
