"""Looking inside an embedding space: nearest neighbours and how category-pure they are."""

from __future__ import annotations

import numpy as np


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def nearest_neighbours(vectors: np.ndarray, query: int, pool: np.ndarray | None = None,
                       k: int = 5) -> np.ndarray:
    """Rows of ``vectors`` closest (cosine) to row ``query``, itself excluded.

    Parameters
    ----------
    vectors : numpy.ndarray
        One row per item.
    query : int
        Row to find neighbours of.
    pool : numpy.ndarray, optional
        Rows allowed as neighbours (default all).
    k : int
        Number of neighbours.

    Returns
    -------
    numpy.ndarray
        Row numbers, closest first.
    """
    pool = np.arange(len(vectors)) if pool is None else np.asarray(pool)
    pool = pool[pool != query]
    sims = _unit(vectors[pool]) @ _unit(vectors[query])
    return pool[np.argsort(-sims, kind="stable")[:k]]


def neighbour_label_share(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's ``k`` nearest neighbours (cosine) that carry its label.

    1 = neighbourhoods never cross labels (e.g. departments); the share of the largest
    label is roughly what random neighbours would give.
    """
    unit = _unit(vectors)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    nn = np.argsort(-sims, axis=1)[:, :k]
    return float((labels[nn] == labels[:, None]).mean())
