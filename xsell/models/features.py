"""Stage 2 inputs: features of (user, candidate item) pairs for the learned re-ranker.

Beside every component's standardised score and reciprocal rank (from
:class:`~xsell.models.candidates.Candidates`), the re-ranker sees what the components do
not model explicitly: how popular the item is, whether and how often the user bought it
(repeat purchase), and how familiar its department and aisle are to the user (category
novelty -- the signal cross-selling is about).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from xsell.data.dataset import Dataset
from xsell.models.candidates import Candidates

#: Added to every rank in the reciprocal-rank transform 1 / (RRF_K + rank + 1), the
#: constant of Cormack et al. (2009); it keeps the top few ranks from dominating.
RRF_K = 60

#: Names of the pair features after the per-component ones, in column order.
CONTEXT_FEATURES = ["log_popularity", "times_bought", "bought_before",
                    "department_share", "aisle_share", "new_department", "log_history"]


class PairFeatures:
    """Computes the context features of candidate pairs for one catalogue.

    Parameters
    ----------
    dataset : Dataset
        The training data (popularity and the category hierarchy come from it).
    """

    def __init__(self, dataset: Dataset):
        counts = sp.csr_matrix((np.ones(dataset.n_interactions),
                                (dataset.user_codes(dataset.interactions["user_id"]),
                                 dataset.item_codes(dataset.interactions["item_id"]))),
                               shape=(dataset.n_users, dataset.n_items))
        self.log_popularity = np.log1p(np.asarray((counts > 0).sum(axis=0)).ravel())
        # Department (level 0) and aisle (level 1; the department again when flat).
        self.levels = [self._one_hot(dataset, level) for level in (0, 1)]

    @staticmethod
    def _one_hot(dataset: Dataset, level: int) -> sp.csr_matrix:
        codes = dataset.item_category(level).astype("category").cat.codes.to_numpy()
        return sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)))

    def novelty(self, history: sp.csr_matrix, cand: Candidates) -> np.ndarray:
        """The ``new_department`` feature alone, as a column."""
        return new_department(history, cand, self.levels[0])[:, None]

    def context(self, history: sp.csr_matrix, cand: Candidates) -> np.ndarray:
        """Context features (:data:`CONTEXT_FEATURES`) of each pair.

        ``history`` is the users x catalogue purchase-count matrix of the batch.
        """
        history = history.tocsr()
        if history.shape[0] == 0:
            return np.zeros((0, len(CONTEXT_FEATURES)))
        times = np.asarray(history[cand.row, cand.item]).ravel()
        shares = []
        for one_hot in self.levels:
            per_category = np.asarray((history @ one_hot).todense())
            per_category /= np.maximum(per_category.sum(axis=1, keepdims=True), 1e-12)
            item_category = one_hot.indices  # one column per item (row-major one-hot)
            shares.append(per_category[cand.row, item_category[cand.item]])
        size = np.asarray(history.sum(axis=1)).ravel()
        return np.column_stack([self.log_popularity[cand.item], np.log1p(times), times > 0,
                                shares[0], shares[1], shares[0] == 0,
                                np.log1p(size[cand.row])]).astype(float)


def new_department(history: sp.csr_matrix, cand: Candidates, one_hot: sp.csr_matrix) -> np.ndarray:
    """1 where the pair's item is from a department the user never bought from."""
    bought = np.asarray((history @ one_hot).todense()) > 0
    return (~bought[cand.row, one_hot.indices[cand.item]]).astype(float)


def component_features(cand: Candidates) -> np.ndarray:
    """Per component: the per-user z-score and the reciprocal rank among candidates."""
    return np.hstack([cand.zscores(), 1.0 / (RRF_K + cand.ranks + 1)])
