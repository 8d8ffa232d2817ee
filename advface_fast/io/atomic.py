"""Whole-file outputs written atomically: a fresh temporary file beside the target, renamed over it
when complete. The temporary name is drawn by :func:`tempfile.mkstemp` (created with ``O_EXCL``),
so a file or symlink planted at a predictable ``<output>.partial`` name is never followed or
overwritten, and a failed write leaves neither a half-written output nor its temporary."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def check_output(output: str | os.PathLike[str], overwrite: bool, *inputs: str | os.PathLike[str] | None) -> Path:
    """``output`` as a path, refusing one that exists (without ``overwrite``), a folder, or one of
    ``inputs`` (replacing a command's own input with its result loses the input)."""
    out = Path(output)
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; give a file path")
    for i in inputs:
        if i is not None and out.exists() and Path(i).exists() and os.path.samefile(out, i):
            raise ValueError(f"the output {out} is the input {i}: write the result to another path")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the folder of {out} does not exist")
    return out


@contextlib.contextmanager
def atomic_path(output: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a new, empty temporary path beside ``output`` (ending in ``suffix``, for writers that
    add or need one); on a clean exit it replaces ``output``, on an exception it is removed."""
    out = Path(output)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial" + suffix, dir=out.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
