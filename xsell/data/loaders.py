"""One entry point to get data: a path, ``$XSELL_DATA_DIR``, or the synthetic shop."""

from __future__ import annotations

import os
from pathlib import Path

from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.data.instacart import (
    CATALOGUE_FILES,
    FULL_FILES,
    HOW_TO_GET,
    find_instacart_dir,
    load_instacart,
)
from xsell.data.synthetic import make_synthetic_shop
from xsell.errors import InputError

#: Environment variable naming the data folder.
DATA_ENV = "XSELL_DATA_DIR"


def _generic_files(folder: Path) -> tuple[Path, Path] | None:
    pair = (folder / S.INTERACTIONS_FILE, folder / S.ITEMS_FILE)
    return pair if all(p.is_file() for p in pair) else None


def load_dataset(data: str | os.PathLike | None = None, *,
                 interactions: str | os.PathLike | None = None,
                 items: str | os.PathLike | None = None,
                 synthetic_users: int = 1000, seed: int = 0, verbose: bool = False) -> Dataset:
    """Load a dataset from the first source that is given.

    Order of precedence:

    1. ``interactions`` and ``items``: two CSV files in the generic format;
    2. ``data``: a folder with Instacart files (itself or an ``instacart/`` sub-folder)
       or with ``interactions.csv`` + ``items.csv``;
    3. the folder in ``$XSELL_DATA_DIR``, read the same way;
    4. otherwise the embedded default, :func:`~xsell.data.synthetic.make_synthetic_shop`.

    Parameters
    ----------
    data : path-like, optional
        Data folder.
    interactions, items : path-like, optional
        Generic-format CSV files (both or neither).
    synthetic_users : int
        Users of the synthetic shop when it is the fallback.
    seed : int
        Seed of the synthetic shop.
    verbose : bool
        Print which source was used.

    Returns
    -------
    Dataset
        Its ``info["source"]`` says where the data came from.

    Raises
    ------
    FileNotFoundError
        If a given folder does not exist or holds neither layout.
    InputError
        If ``data`` is a file, not a folder.
    ValueError
        If only one of ``interactions`` / ``items`` is given.
    """
    if (interactions is None) != (items is None):
        raise ValueError("give both --interactions and --items (generic format), or neither")
    if interactions is not None:
        ds = Dataset.from_csv(interactions, items)
    else:
        folder = data if data is not None else os.environ.get(DATA_ENV) or None
        if folder is None:
            ds = make_synthetic_shop(n_users=synthetic_users, seed=seed)
        else:
            ds = _load_folder(Path(folder), from_env=data is None)
    if verbose:
        print(f"data: {describe_source(ds)}")
    return ds


def _load_folder(folder: Path, from_env: bool) -> Dataset:
    origin = f"{DATA_ENV}={folder}" if from_env else str(folder)
    if folder.is_file():
        flag = DATA_ENV if from_env else "--data"
        raise InputError(
            f"{origin}: is a file, but {flag} expects a folder holding either the generic "
            f"format ({S.INTERACTIONS_FILE} + {S.ITEMS_FILE}) or the Instacart CSV files "
            f"({', '.join(FULL_FILES + CATALOGUE_FILES)}); to read two generic-format files "
            "directly, give --interactions FILE --items FILE")
    if not folder.exists():
        raise FileNotFoundError(f"data folder {origin} does not exist. It should hold the "
                                f"generic format ({S.INTERACTIONS_FILE} + {S.ITEMS_FILE}) or "
                                "the Instacart files. " + HOW_TO_GET)
    if not folder.is_dir():
        raise InputError(f"{origin}: is not a folder; expected a folder with "
                         f"{S.INTERACTIONS_FILE} + {S.ITEMS_FILE} or the Instacart files")
    if find_instacart_dir(folder) is not None:
        return load_instacart(folder)
    for cand in (folder, folder / "generic"):
        pair = _generic_files(cand)
        if pair is not None:
            return Dataset.from_csv(*pair)
    raise FileNotFoundError(
        f"data folder {origin} holds neither Instacart files nor the generic format "
        f"({S.INTERACTIONS_FILE} + {S.ITEMS_FILE}). " + HOW_TO_GET)


def describe_source(dataset: Dataset) -> str:
    """One line saying which data a result was computed on."""
    info = dataset.info
    where = info.get("path") or info.get("interactions") or ""
    return f"{dataset.name}: {info.get('source', 'unknown source')}" + (
        f" ({where})" if where else "")
