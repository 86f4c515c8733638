"""Strict conversion between frozen configuration dataclasses and plain dicts (JSON / YAML).

Unknown keys are errors that name the key, the dataclass and the closest valid names — a misspelt
option must never be dropped silently. Nested dataclasses and tuples are rebuilt from their dict /
list form, so ``from_dict(cls, to_dict(x)) == x``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, TypeVar

from mask2anomaly.errors import UserError

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """Return a JSON-serialisable dict of a (nested) configuration dataclass."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[field.name] = value
    return out


def _convert(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, options[0], where)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(annotation, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise UserError(f"{where}: expected a list, got {type(value).__name__}")
        (item_type, *_rest) = typing.get_args(annotation)
        return tuple(_convert(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    wrong_bool = isinstance(value, bool) and annotation in (int, float)
    if annotation in (int, float, str, bool) and (wrong_bool or not isinstance(value, annotation)):
        raise UserError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str | None = None) -> T:
    """Build ``cls`` from ``data``, rejecting unknown keys with a helpful message."""
    where = where or cls.__name__
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(f"{where}: unknown key {key!r}{hint}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}: {err}") from None
