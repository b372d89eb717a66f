"""An on-disk cache for expensive, deterministic results (model comparisons, embeddings).

A result is stored under a key made of everything that determines it: the caller's
parameters, a fingerprint of the data, and a fingerprint of the package's own source
code -- so editing any ``xsell`` module, or changing the data, recomputes instead of
serving a stale answer. The book uses it so that a chapter executed twice (by the tests
and by the book build) trains its models once.

The folder is ``$XSELL_CACHE_DIR``, by default ``~/.cache/xsell``. Delete it to force a
recomputation; set ``XSELL_CACHE=off`` to bypass the cache entirely.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from xsell.data.dataset import Dataset
from xsell.fileio import atomic_write


def cache_dir() -> Path:
    """Where cached results live (``$XSELL_CACHE_DIR`` or ``~/.cache/xsell``)."""
    return Path(os.environ.get("XSELL_CACHE_DIR", Path.home() / ".cache" / "xsell"))


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of every source file of the installed ``xsell`` package."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def data_fingerprint(dataset: Dataset) -> str:
    """Hash of a dataset's interactions and catalogue (content, not object identity)."""
    digest = hashlib.sha256()
    for frame in (dataset.interactions, dataset.items):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def memoize(namespace: str, key: dict, compute: Callable[[], Any]) -> Any:
    """Return the cached result for ``key``, computing and storing it on a miss.

    Parameters
    ----------
    namespace : str
        Sub-folder, e.g. the function's name.
    key : dict
        JSON-serialisable description of everything that determines the result
        (include a :func:`data_fingerprint`); the code fingerprint is added here.
    compute : callable
        Produces the result (must be picklable).
    """
    if os.environ.get("XSELL_CACHE", "on").lower() in ("off", "0", "false", "no"):
        return compute()
    text = json.dumps({**key, "code": code_fingerprint()}, sort_keys=True, default=str)
    path = cache_dir() / namespace / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.pkl"
    if path.is_file():
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError):
            path.unlink(missing_ok=True)  # a damaged entry is recomputed, never trusted
    result = compute()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)

    atomic_write(path, write)
    return result
