"""Settings dataclasses <-> plain JSON data: the one (de)serialiser of every config.

A config (the training settings, each model's shape, a task's options) is a frozen
dataclass whose `__post_init__` checks its values. It goes into a checkpoint as
`config_to_dict(config)` (`dataclasses.asdict`) and comes back with
`config_from_dict(cls, data)`, which trusts nothing it reads: a key the class does not
have, a missing required key or a value of the wrong type is a `ValueError` naming the
key, so a damaged or foreign file fails with one clear line instead of deep inside a
model. (Dataclasses do not check types; Python would happily build a model whose
`hidden` is "512".)
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, TypeVar

from textrnn.errors import UsageError

C = TypeVar("C")
_SCALARS = (bool, int, float, str)


def config_to_dict(config: Any) -> dict:
    """A config dataclass as plain JSON-able data."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[C], data: Any, *, what: str = "config") -> C:
    """`cls(**data)` once every key and type of `data` has been checked.

    Keys missing from `data` take the field's default (configs written before a field
    existed keep loading). `what` names the config in messages ("model config").
    Raises ValueError for a problem of the data, including a value `cls` refuses.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{what} is {type(data).__name__}, expected an object")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise ValueError(f"{what} has unknown key(s): {', '.join(unknown)}")
    hints = _hints(cls)
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{what} lacks {name}")
            continue
        if not _fits(data[name], hints[name]):
            raise ValueError(f"{what}: {name} is {data[name]!r}, expected {_describe(hints[name])}")
    try:
        return cls(**data)
    except (UsageError, TypeError, ValueError) as err:
        raise ValueError(f"{what}: {err}") from None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the type a field's annotation asks for (bool is no number)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return type(value) in (int, float)
    if hint in _SCALARS:
        return type(value) is hint
    if origin in (tuple, list):
        return isinstance(value, (list, tuple))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True  # a richer type: the class's own checks decide


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
