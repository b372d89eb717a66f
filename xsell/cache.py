"""An on-disk cache for expensive, deterministic results (model comparisons, fitted models).

A result is stored under a key made of everything that determines it: the caller's
parameters, a fingerprint of the data, and a fingerprint of the package's own source
code -- so editing any ``xsell`` module, or changing the data, recomputes instead of
serving a stale answer. The book uses it so that chapters share what they fit (the chapter
that asks first fits a model, the others read it) and a chapter executed again trains
nothing.

Entries are verified folders (:mod:`xsell.checkpoint`): JSON, ``.npz`` arrays read without
pickle, parquet tables, safetensors, every file checksummed. Nothing in the cache can run
code, and an entry that is damaged, foreign or of an older format is discarded with one
warning and recomputed -- it never crashes a run and never loads wrong values.

Processes may share the folder (the tests run on two workers): an entry is computed by
one process at a time under a lock on it (``fcntl``; none on Windows, where two processes
may compute the same entry), and the others wait and read it.

The folder is ``$XSELL_CACHE_DIR``, by default ``~/.cache/xsell``. Delete it to force a
recomputation; set ``XSELL_CACHE=off`` to bypass the cache entirely.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from xsell.checkpoint import (
    CheckpointError,
    UnsupportedValue,
    data_fingerprint,
    read_folder,
    write_folder,
)

__all__ = ["cache_dir", "cache_enabled", "code_fingerprint", "data_fingerprint", "exclusive",
           "memoize"]

#: Part of every key: entries of another layout live under other names.
ENTRY_FORMAT = "xsell-cache/2"


def cache_dir() -> Path:
    """Where cached results live (``$XSELL_CACHE_DIR`` or ``~/.cache/xsell``)."""
    return Path(os.environ.get("XSELL_CACHE_DIR", Path.home() / ".cache" / "xsell"))


def cache_enabled() -> bool:
    """False when ``$XSELL_CACHE`` is ``off`` (or ``0``, ``false``, ``no``)."""
    return os.environ.get("XSELL_CACHE", "on").lower() not in ("off", "0", "false", "no")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of every source file of the installed ``xsell`` package."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def memoize(namespace: str, key: dict, compute: Callable[[], Any], dataset=None) -> Any:
    """Return the cached result for ``key``, computing and storing it on a miss.

    Parameters
    ----------
    namespace : str
        Sub-folder, e.g. the function's name.
    key : dict
        JSON-serialisable description of everything that determines the result
        (include a :func:`data_fingerprint`); the code fingerprint is added here.
    compute : callable
        Produces the result: plain values, arrays, sparse matrices, tables, tensors,
        fitted models (:class:`~xsell.checkpoint.Saveable`) and containers of them.
    dataset : Dataset, optional
        The training data of a fitted model in the result (models are rebuilt for it).
    """
    if not cache_enabled():
        return compute()
    text = json.dumps({**key, "code": code_fingerprint(), "entry": ENTRY_FORMAT},
                      sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    path = cache_dir() / namespace / digest
    _drop_old_format(path.parent)
    # Another process computing this entry: wait, then read it.
    with exclusive(cache_dir() / ".locks" / namespace / f"{digest}.lock"):
        if path.exists():
            try:
                content = read_folder(path, dataset)
                if content.get("key") != text:
                    raise CheckpointError(f"{path}: stored for another key")
                return content["value"]
            except Exception as err:  # damaged or foreign: recompute, never trust, never crash
                warnings.warn(f"xsell cache: discarding unreadable entry ({_one_line(err)}); "
                              "recomputing", stacklevel=2)
                _remove(path)
        result = compute()
        try:
            write_folder(path, {"key": text, "value": result})
        except UnsupportedValue as err:
            warnings.warn(f"xsell cache: {namespace} result not stored ({err})", stacklevel=2)
        except OSError as err:  # a full or read-only cache folder costs time, not the result
            warnings.warn(f"xsell cache: could not write {path} ({err})", stacklevel=2)
        return result


@contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (created if missing) while inside.

    Other processes asking for the same file wait. Where locking is unavailable (Windows,
    a read-only folder) this does nothing: at worst two processes do the same work.
    """
    try:
        import fcntl
    except ImportError:
        fcntl = None
    handle = None
    if fcntl is not None:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            handle = open(lock, "a")  # noqa: SIM115
        except OSError:
            handle = None
    try:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        if handle is not None:
            handle.close()  # closing releases the lock


def _drop_old_format(folder: Path) -> None:
    # Before format 2, entries were pickles; they are never read, only removed (with
    # one warning).
    old = sorted(folder.glob("*.pkl")) if folder.is_dir() else []
    if old:
        warnings.warn(f"xsell cache: removing {len(old)} entries of an older format in "
                      f"{folder} (pickle files are never loaded)", stacklevel=3)
        for path in old:
            path.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())[:300] or type(err).__name__
