"""Baselines that need no learning: popularity and buy-again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from xsell.data.dataset import Dataset
from xsell.models.base import Recommender, basket_age, interaction_matrix


class Popularity(Recommender):
    """Everyone gets the most-bought items: :math:`s_{ui} = \\#\\{\\text{purchases of } i\\}`.

    The floor every personalised model must clear.
    """

    #: Nothing to tune.
    param_grid: dict = {}

    def fit(self, train: Dataset) -> Popularity:
        """Count purchases per item."""
        self._remember(train)
        counts = interaction_matrix(train.interactions, self.users_, self.items_)
        self.popularity_ = np.asarray(counts.sum(axis=0)).ravel()
        return self

    def _score_history(self, history: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        return np.tile(self.popularity_.astype(float), (history.shape[0], 1))


class BuyAgain(Recommender):
    """Recommend what the user already buys, most frequent and recent first.

    :math:`s_{ui} = \\sum_{b \\ni i} 2^{-(n_u - 1 - t_b)/h} + \\epsilon\\,\\mathrm{pop}_i`,
    where :math:`t_b` is the position of basket :math:`b` in the user's history of
    :math:`n_u` baskets and :math:`h` the half-life in baskets (:math:`h=\\infty`: plain
    frequency). The small popularity term only breaks ties (and serves users with no
    history). On grocery data, where most of a basket is re-purchases, this is the
    baseline to respect.

    Parameters
    ----------
    half_life : float, optional
        Half-life of a purchase's weight, in baskets; ``None`` = plain frequency.
    """

    #: A history given at prediction time may hold items nobody bought in training;
    #: buy-again can still recommend them to that user.
    scores_unseen_items = True

    #: Half-lives tried by :func:`xsell.tuning.tune` (``None`` = no decay).
    param_grid: dict = {"half_life": [None, 1, 2, 4, 8, 16]}

    def __init__(self, half_life: float | None = None):
        self.half_life = half_life

    def history_matrix(self, interactions: pd.DataFrame, users: pd.Index) -> sp.csr_matrix:
        """Recency-weighted purchase counts per (user, item)."""
        if self.half_life is None or len(interactions) == 0:
            weights = None
        else:
            weights = 0.5 ** (basket_age(interactions) / self.half_life)
        return interaction_matrix(interactions, users, self.items_, weights)

    def fit(self, train: Dataset) -> BuyAgain:
        """Remember every user's weighted history and the popularity tie-breaker."""
        self._remember(train)
        pop = np.asarray(interaction_matrix(train.interactions, self.users_, self.items_)
                         .sum(axis=0)).ravel()
        # Smaller than any purchase weight this model will see in a year of baskets.
        self.tiebreak_ = 1e-6 * pop / max(pop.max(), 1.0)
        return self

    def _score_history(self, history: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        return history.toarray() + self.tiebreak_
