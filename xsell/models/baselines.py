"""Baselines that need no learning: popularity and buy-again."""

from __future__ import annotations

import numpy as np

from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.models.base import Recommender, interaction_matrix


class Popularity(Recommender):
    """Everyone gets the most-bought items: :math:`s_{ui} = \\#\\{\\text{purchases of } i\\}`.

    The floor every personalised model must clear.
    """

    def fit(self, train: Dataset) -> Popularity:
        """Count purchases per item."""
        self._remember(train)
        self.popularity_ = np.asarray(interaction_matrix(train).sum(axis=0)).ravel()
        return self

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity_.astype(float), (len(rows), 1))


class BuyAgain(Recommender):
    """Recommend what the user already buys, most frequent and recent first.

    :math:`s_{ui} = \\sum_{b \\ni i} \\gamma^{\\,n_u - 1 - t_b} + \\epsilon\\,\\mathrm{pop}_i`,
    where :math:`t_b` is the position of basket :math:`b` in the user's history of
    :math:`n_u` baskets and :math:`\\gamma = 2^{-1/h}` for half-life :math:`h` baskets.
    The small popularity term only breaks ties (and serves users with no history). On
    grocery data, where most of a basket is re-purchases, this is the baseline to respect.

    Parameters
    ----------
    half_life : float, optional
        Half-life of a purchase's weight, in baskets; ``None`` = plain frequency.
    """

    def __init__(self, half_life: float | None = None):
        self.half_life = half_life

    def fit(self, train: Dataset) -> BuyAgain:
        """Accumulate recency-weighted purchase counts per (user, item)."""
        self._remember(train)
        inter = train.interactions
        if self.half_life is None:
            weights = np.ones(len(inter))
        else:
            age = inter.groupby(S.USER)[S.SEQ].transform("max") - inter[S.SEQ]
            weights = 0.5 ** (age.to_numpy() / self.half_life)
        self.weights_ = interaction_matrix(train, values=weights).tocsr()
        pop = np.asarray(interaction_matrix(train).sum(axis=0)).ravel()
        # Tie-breaker strictly smaller than any single weighted purchase.
        floor = weights.min() if len(weights) else 1.0
        self.tiebreak_ = 0.5 * floor * pop / max(pop.max(), 1.0)
        return self

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        scores = np.tile(self.tiebreak_, (len(rows), 1))
        known = rows >= 0
        if known.any():
            scores[known] += self.weights_[rows[known]].toarray()
        return scores
