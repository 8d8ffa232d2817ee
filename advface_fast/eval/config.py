"""Loading the evaluation configurations' JSON overrides (one rule for every harness)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def config_from_json(cls: type[T], path: str | Path | None) -> T:
    """``cls()`` with the settings of the JSON object at ``path`` (``None``: the defaults);
    unknown settings are refused by name."""
    if path is None:
        return cls()
    data: Any = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of settings")
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)}; known: {sorted(fields)}")
    return cls(**data)
