"""Loading the evaluation configurations' JSON overrides (one rule for every harness).

Every value is checked against its setting's declared type before anything is read or trained:
numbers finite, counts and sizes non-negative integers (not booleans, not ``1e12``), lists of the
declared item type, and the names a config class restricts (``CHOICES``: a class attribute mapping
a setting to its allowed values, for one name or each name of a list). A bad value is refused
naming the setting, the value and what was expected."""

from __future__ import annotations

import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
MAX_COUNT = 10**9  # a count or size beyond this cannot fit in memory: a typo, not a setting
_UNBOUNDED = {"seed"}  # integers whose size means nothing


def config_from_json(cls: type[T], path: str | Path | None) -> T:
    """``cls()`` with the settings of the JSON object at ``path`` (``None``: the defaults);
    unknown settings and values of the wrong type or range are refused by name."""
    if path is None:
        return cls()
    try:
        data: Any = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of settings")
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    choices: dict[str, tuple] = getattr(cls, "CHOICES", {})
    for name, value in data.items():
        problem = _check(value, hints[name], name)
        if problem is None and name in choices:
            names = value if isinstance(value, list) else [value]
            bad = [v for v in names if v is not None and v not in choices[name]]
            problem = f"{bad[0]!r} is not one of {', '.join(map(str, choices[name]))}" if bad else None
        if problem is not None:
            raise ValueError(f"{path}: setting {name!r}: {problem}")
    return cls(**data)


def _check(value: Any, kind: Any, name: str) -> str | None:
    """None when ``value`` fits the type ``kind``, else what is wrong."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = [_check(value, a, name) for a in args if a is not type(None)]
        return None if any(p is None for p in problems) else problems[0]
    if origin is list:
        if not isinstance(value, list):
            return f"expected a list, got {value!r}"
        for v in value:
            p = _check(v, args[0], name)
            if p is not None:
                return f"in the list: {p}"
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return f"expected an object, got {value!r}"
        for k, v in value.items():
            p = _check(k, args[0], name) or _check(v, args[1], name)
            if p is not None:
                return f"in the object: {p}"
        return None
    if kind is bool:
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {value!r}"
        if value < 0 or (name not in _UNBOUNDED and value > MAX_COUNT):
            return f"expected an integer in 0..{MAX_COUNT:,}, got {value!r}"
        return None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {value!r}"
        if not math.isfinite(value) or value < 0:
            return f"expected a finite non-negative number, got {value!r}"
        return None
    if kind is str:
        return None if isinstance(value, str) else f"expected a string, got {value!r}"
    return None  # a type this checker does not know: the class's own checks apply
