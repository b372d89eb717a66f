"""The naive text baseline: untrained LM similarity between a user's history and items.

:math:`v_u = \\sum_j \\tilde w_{uj} e_j` (time-decayed average of the frozen sentence
embeddings of the user's history), :math:`\\hat r_{ui} = v_u \\cdot e_i`. Nothing is
learned from purchases, so it recommends look-alikes of what was bought -- the control
that shows what training the two towers adds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from xsell.data.dataset import Dataset
from xsell.models.base import Recommender
from xsell.models.behaviour import decay_weights
from xsell.text import DEFAULT_MODEL, TextEncoder, item_texts


class TextSimilarity(Recommender):
    """Frozen sentence-embedding similarity to a recency-weighted history.

    Parameters
    ----------
    encoder : str
        Sentence encoder (:func:`xsell.text.resolve_model`).
    half_life : float, optional
        Half-life of a purchase's weight, in baskets.
    progress : bool
        Progress bar while encoding the catalogue.
    """

    #: Every catalogue item has text, so items never bought in training are scored too.
    scores_unseen_items = True

    #: Half-lives tried by :func:`xsell.tuning.tune`.
    param_grid: dict = {"half_life": [2, 8, None]}

    def __init__(self, encoder: str = DEFAULT_MODEL, half_life: float | None = 8.0,
                 progress: bool = True):
        self.encoder = encoder
        self.half_life = half_life
        self.progress = progress

    def history_matrix(self, interactions: pd.DataFrame, users: pd.Index) -> sp.csr_matrix:
        """Time-decayed purchase weights (:func:`xsell.models.behaviour.decay_weights`)."""
        return decay_weights(interactions, users, self.items_, self.half_life)

    def fit(self, train: Dataset) -> TextSimilarity:
        """Embed the catalogue (cached on disk)."""
        self._remember(train)
        encoder = TextEncoder(self.encoder, progress=self.progress)
        self.embeddings_ = encoder.encode(item_texts(train).tolist())
        return self

    def _score_history(self, history: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        totals = np.asarray(history.sum(axis=1)).ravel()
        users = (history @ self.embeddings_) / np.maximum(totals, 1e-12)[:, None]
        return users @ self.embeddings_.T
