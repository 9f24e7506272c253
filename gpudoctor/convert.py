"""One converter from plain dicts (JSON, YAML) to dataclasses, with one rule for what does not fit.

`from_dict(Kind, value, source)` rebuilds a (nested) dataclass. An unknown key, a missing required
key or a value of the wrong type is a one-line BadInput naming the file (`source`) and the key's
dotted path, so a typo in a hand-edited file never passes silently. Profiles, run.yaml and saved
facts (`check --facts`) are all read through here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import lru_cache
from typing import Any

from gpudoctor.errors import BadInput

_MISSING = dataclasses.MISSING


def from_dict(kind: Any, value: Any, source: str, where: str = "") -> Any:
    """`value` as an instance of `kind` (a dataclass, list[...], dict[str, ...], X | None or a plain type)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return _union(kind, value, source, where)
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise _wrong_type(source, where, value, kind)
        return [from_dict(item, element, source, f"{where}[{i}]") for i, element in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(kind)
        if not isinstance(value, dict):
            raise _wrong_type(source, where, value, kind)
        return {key: from_dict(item, element, source, _join(where, str(key))) for key, element in value.items()}
    if dataclasses.is_dataclass(kind):
        return _dataclass(kind, value, source, where)
    if kind is Any or is_instance(value, kind):
        return float(value) if kind is float else value
    raise _wrong_type(source, where, value, kind)


def is_instance(value: Any, kind: Any) -> bool:
    """isinstance as a config file means it: an int is a float, a bool is not an int."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is type(None):
        return value is None
    return isinstance(kind, type) and isinstance(value, kind)


def _union(kind: Any, value: Any, source: str, where: str) -> Any:
    args = typing.get_args(kind)
    if value is None:
        if type(None) in args:
            return None
        raise _wrong_type(source, where, value, kind)
    inner = [arg for arg in args if arg is not type(None)]
    if len(inner) == 1:
        return from_dict(inner[0], value, source, where)
    for arg in inner:
        if typing.get_origin(arg) is None and not dataclasses.is_dataclass(arg) and is_instance(value, arg):
            return value
    raise _wrong_type(source, where, value, kind)


def _dataclass(kind: Any, value: Any, source: str, where: str) -> Any:
    if not isinstance(value, dict):
        raise BadInput(f"{source}: {_name(where)}must be a mapping of keys, got {type(value).__name__}")
    hints, required = _fields(kind)
    unknown = sorted(str(key) for key in value if key not in hints)
    if unknown:
        raise BadInput(f"{source}: unknown key '{_join(where, unknown[0])}'; known keys: {', '.join(sorted(hints))}")
    missing = [name for name in required if name not in value]
    if missing:
        raise BadInput(f"{source}: missing key '{_join(where, missing[0])}'")
    return kind(**{key: from_dict(hints[key], element, source, _join(where, key)) for key, element in value.items()})


@lru_cache(maxsize=None)
def _fields(kind: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    hints = typing.get_type_hints(kind)
    fields = dataclasses.fields(kind)
    required = tuple(f.name for f in fields if f.default is _MISSING and f.default_factory is _MISSING)
    return {f.name: hints[f.name] for f in fields}, required


def _wrong_type(source: str, where: str, value: Any, kind: Any) -> BadInput:
    return BadInput(f"{source}: {_name(where)}has the wrong type ({value!r}); expected {type_name(kind)}")


def type_name(kind: Any) -> str:
    """`int | None` → "int or nothing", list[str] → "a list of str": for error messages."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("nothing" if arg is type(None) else type_name(arg) for arg in typing.get_args(kind))
    if origin is list:
        return f"a list of {type_name(typing.get_args(kind)[0])}"
    if origin is dict:
        return "a mapping"
    return getattr(kind, "__name__", str(kind))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _name(where: str) -> str:
    return f"'{where}' " if where else ""
