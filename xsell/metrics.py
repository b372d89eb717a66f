"""Ranking metrics at a cut-off K, computed per user.

Every function takes ``ranked`` -- an array of shape (n_users, >=K) of recommended item
ids, best first -- and ``targets`` -- one collection of relevant item ids per user -- and
returns one value per user, so callers can average, bootstrap or compare paired users.
Users with no targets get ``nan``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def hit_matrix(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """Boolean (n_users, k): whether the item at each rank is a target of that user."""
    ranked = np.asarray(ranked)[:, :k]
    hits = np.zeros(ranked.shape, dtype=bool)
    for u, t in enumerate(targets):
        if len(t):
            hits[u] = np.isin(ranked[u], np.asarray(list(t)))
    return hits


def _n_targets(targets: Sequence) -> np.ndarray:
    return np.array([len(set(t)) for t in targets], dtype=float)


def recall_at_k(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """Recall@K: :math:`|\\mathrm{top}_K(u) \\cap T_u| / |T_u|`."""
    n = _n_targets(targets)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, hit_matrix(ranked, targets, k).sum(1) / n, np.nan)


def precision_at_k(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """Precision@K: :math:`|\\mathrm{top}_K(u) \\cap T_u| / K`."""
    n = _n_targets(targets)
    return np.where(n > 0, hit_matrix(ranked, targets, k).sum(1) / k, np.nan)


def hit_rate_at_k(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """HitRate@K: 1 if any target is in the top K, else 0."""
    n = _n_targets(targets)
    return np.where(n > 0, hit_matrix(ranked, targets, k).any(1).astype(float), np.nan)


def ndcg_at_k(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """NDCG@K with binary relevance.

    :math:`\\mathrm{DCG}_u = \\sum_{r=1}^{K} \\mathbb 1[i_r \\in T_u] / \\log_2(r+1)`,
    divided by the ideal DCG, :math:`\\sum_{r=1}^{\\min(K, |T_u|)} 1/\\log_2(r+1)`.
    """
    hits = hit_matrix(ranked, targets, k)
    discount = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = (hits * discount).sum(1)
    n = _n_targets(targets)
    ideal = np.array([discount[: int(min(m, hits.shape[1]))].sum() for m in n])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, dcg / ideal, np.nan)


#: Metric name -> function, used by :mod:`xsell.evaluation`.
RANKING_METRICS = {
    "recall": recall_at_k,
    "precision": precision_at_k,
    "hit_rate": hit_rate_at_k,
    "ndcg": ndcg_at_k,
}
