"""Writing files so that a failure never leaves a half-written one behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    The rename is atomic on one filesystem, so readers see the old file or the complete
    new one, never a partial one; on any error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a frame as CSV (no index), atomically."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_json(obj: dict, path: str | os.PathLike) -> Path:
    """Write JSON (indented; non-JSON values via ``str``), atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=str)
    return atomic_write(path, write)
