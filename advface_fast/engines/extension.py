"""Access to the compiled extension ``advface_fast._C``, which is optional.

The package works without it (a source checkout, a failed build, ``ADVFACE_SKIP_EXT=1``): every
caller asks :func:`load` and gets ``None`` with the reason in :func:`load_error`.
"""

from __future__ import annotations

import functools
from types import ModuleType


@functools.lru_cache(maxsize=1)
def _load() -> tuple[ModuleType | None, str | None]:
    try:
        from .. import _C  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, f"the compiled extension advface_fast._C is not installed ({exc})"
    return _C, None


def load() -> ModuleType | None:
    """The extension module, or ``None`` when it is not built."""
    return _load()[0]


def load_error() -> str | None:
    """Why :func:`load` returned ``None`` (``None`` when the extension loaded)."""
    return _load()[1]


def build_info() -> dict[str, object]:
    """What the extension was built with (``{}`` when it is missing)."""
    ext = load()
    return dict(ext.build_info()) if ext is not None else {}
