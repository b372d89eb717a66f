"""The interface every recommender follows (scikit-learn style).

Construct with hyperparameters, :meth:`~Recommender.fit` on a training
:class:`~xsell.data.dataset.Dataset`, then :meth:`~Recommender.score` users against items
or :meth:`~Recommender.recommend` the top ``k``. Items are the training dataset's whole
catalogue, in catalogue order; users are given by their ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from xsell.data import schema as S
from xsell.data.dataset import Dataset


def interaction_matrix(dataset: Dataset, users: pd.Index | None = None,
                       values: np.ndarray | None = None) -> sp.csr_matrix:
    """User x item matrix of a dataset's interactions (rows follow ``users``).

    Parameters
    ----------
    dataset : Dataset
        Interactions and catalogue; columns follow ``dataset.item_index``.
    users : pandas.Index, optional
        Row order; defaults to ``dataset.user_index``.
    values : numpy.ndarray, optional
        One weight per interaction row (default 1); repeated (user, item) pairs add up.
    """
    users = dataset.user_index if users is None else users
    inter = dataset.interactions
    rows = users.get_indexer(inter[S.USER])
    cols = dataset.item_index.get_indexer(inter[S.ITEM])
    vals = np.ones(len(inter)) if values is None else np.asarray(values, dtype=float)
    keep = rows >= 0
    return sp.csr_matrix((vals[keep], (rows[keep], cols[keep])),
                         shape=(len(users), len(dataset.item_index)))


class Recommender:
    """Base class: subclasses implement :meth:`fit` and ``_score_rows``."""

    #: Users scored at once by :meth:`recommend` (bounds memory).
    batch_size: int = 256

    def fit(self, train: Dataset) -> Recommender:
        """Learn from a training dataset; returns ``self``."""
        raise NotImplementedError

    def _remember(self, train: Dataset) -> None:
        # Every model needs the id maps and what each user has already bought.
        self.dataset_ = train
        self.users_ = train.user_index
        self.items_ = train.item_index
        self.seen_ = interaction_matrix(train).tocsr()
        self.seen_.data[:] = 1.0

    def _rows(self, users) -> np.ndarray:
        """Training-row of each user id, -1 for users unseen in training."""
        return self.users_.get_indexer(np.atleast_1d(np.asarray(users)))

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Scores (len(rows) x n_items) for training rows (-1 = unknown user)."""
        raise NotImplementedError

    def score(self, users, items=None) -> np.ndarray:
        """Scores of ``users`` (ids) for ``items`` (ids; default all catalogue items).

        Returns
        -------
        numpy.ndarray
            Shape ``(len(users), len(items))``; higher is better.
        """
        scores = self._score_rows(self._rows(users))
        if items is not None:
            scores = scores[:, self.dataset_.item_codes(items)]
        return scores

    def recommend(self, users, k: int = 10, exclude_seen: bool = False,
                  candidates=None) -> np.ndarray:
        """Top-``k`` item ids for each user, best first.

        Parameters
        ----------
        users : array-like
            User ids.
        k : int
            List length.
        exclude_seen : bool
            Remove items the user bought in training.
        candidates : array-like, optional
            Item ids to rank (default: the whole catalogue).

        Returns
        -------
        numpy.ndarray
            Item ids, shape ``(len(users), k)``.
        """
        rows = self._rows(users)
        mask = None
        if candidates is not None:
            mask = np.full(len(self.items_), True)
            mask[self.dataset_.item_codes(candidates)] = False
        k = min(k, len(self.items_) if mask is None else int((~mask).sum()))
        out = []
        # Score users in chunks: a dense users x catalogue block can be gigabytes.
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            scores = self._score_rows(chunk).astype(float, copy=False)
            if exclude_seen:
                known = np.flatnonzero(chunk >= 0)
                seen = self.seen_[chunk[known]].tocoo()
                scores[known[seen.row], seen.col] = -np.inf
            if mask is not None:
                scores[:, mask] = -np.inf
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            out.append(np.take_along_axis(top, order, axis=1))
        codes = np.vstack(out) if out else np.empty((0, k), dtype=int)
        return self.items_.to_numpy()[codes]
