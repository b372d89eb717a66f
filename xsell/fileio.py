"""Writing files so that a failure never leaves a half-written one behind."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from xsell.errors import InputError

_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def _writable(path: Path) -> bool:
    """Writable by this process and not marked read-only (no write bit at all)."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & _WRITE_BITS)


def check_writable(path: str | os.PathLike, what: str = "output file") -> Path:
    """Check, before any work, that ``path`` can be written as a file; return it.

    Raises
    ------
    InputError
        When ``path`` is a folder, sits under a regular file, is an existing read-only
        file, or its nearest existing folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; the {what} must be a file path "
                         f"(e.g. {path / 'results.json'})")
    if path.exists():
        if not path.is_file():
            raise InputError(f"{path}: exists and is not a regular file; choose another "
                             f"{what}")
        if not _writable(path):
            raise InputError(f"{path}: the existing file is read-only; make it writable "
                             f"(chmod u+w) or choose another {what}")
        if not _writable(path.parent):  # the new version is renamed into the folder
            raise InputError(f"{path}: cannot write there: the folder {path.parent} is "
                             "read-only")
        return path
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"{path}: cannot create it, because {parent} is a file, not a folder")
    if parent.exists() and not _writable(parent):
        raise InputError(f"{path}: cannot write there: the folder {parent} is read-only")
    return path


def _new_file_mode() -> int:
    """Permission bits ``open()`` gives a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    The rename is atomic on one filesystem, so readers see the old file or the complete
    new one, never a partial one; on any error (or ``KeyboardInterrupt``) the temporary
    file is removed. An existing ``path`` keeps its permission bits (a new one gets the
    umask's); a read-only one, a folder, or a path under a file raise
    :class:`~xsell.errors.InputError` before anything is written.
    """
    path = check_writable(path)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else _new_file_mode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.close(fd)
        write(tmp)
        os.chmod(tmp, mode)
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
