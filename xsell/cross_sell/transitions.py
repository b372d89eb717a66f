"""How departments go together in a basket, and a learnt model of the missing one.

:func:`department_lift` describes the structure (which departments are bought together
more than chance); :class:`DepartmentTransitions` learns, from training baskets, the
probability that a basket holding departments :math:`A` also needs department :math:`d`
-- the category-to-category signal of basket completion.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit

from xsell.checkpoint import Saveable
from xsell.data import schema as S
from xsell.data.dataset import Dataset


def basket_departments(interactions: pd.DataFrame, dataset: Dataset,
                       level: int = 0) -> tuple[sp.csr_matrix, pd.Index]:
    """Baskets x departments 0/1 matrix of the rows' baskets, and the department names."""
    dept = dataset.item_category(level)
    names = pd.Index(sorted(dept.unique()))
    rows = interactions.groupby([S.USER, S.BASKET], sort=False).ngroup().to_numpy()
    cols = names.get_indexer(dept.reindex(interactions[S.ITEM]).to_numpy())
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)),
                           shape=(rows.max(initial=-1) + 1, len(names)))
    matrix.data[:] = 1.0
    return matrix.tocsr(), names


def department_lift(dataset: Dataset, level: int = 0) -> pd.DataFrame:
    """Lift of department pairs in one basket: P(b | a) / P(b) (1 = independent).

    Rows are the department bought (:math:`a`), columns the other (:math:`b`); the
    diagonal is left empty.
    """
    baskets, names = basket_departments(dataset.interactions, dataset, level)
    both = np.asarray((baskets.T @ baskets).todense(), dtype=float)
    count = np.diag(both).copy()
    lift = both * baskets.shape[0] / np.maximum(np.outer(count, count), 1.0)
    np.fill_diagonal(lift, np.nan)
    return pd.DataFrame(lift, index=names, columns=names)


class DepartmentTransitions(Saveable):
    """P(department d is in the basket | the basket's other departments), learnt.

    A multinomial logistic regression is trained on the training baskets that span two
    or more departments: for every department of such a basket, the input is the 0/1
    vector of the basket's *other* departments and the label that department. It learns
    "carts with produce and dairy are missing bakery" rather than pairwise counts.

    Parameters
    ----------
    level : int
        Category level (0 = department).
    C : float
        Inverse regularisation strength of the logistic regression.
    max_baskets : int
        Training baskets used at most (a seeded sample).
    seed : int
        Seed of that sample.

    Attributes
    ----------
    departments_ : pandas.Index
        The departments, in column order.
    classes_, coef_, intercept_ : numpy.ndarray or None
        The fitted regression (departments it can predict, weights, intercepts); ``None``
        when no basket spans two departments (transitions are then uniform).
    """

    def __init__(self, level: int = 0, C: float = 1.0, max_baskets: int = 30000,
                 seed: int = 0):
        self.level = level
        self.C = C
        self.max_baskets = max_baskets
        self.seed = seed

    def fit(self, dataset: Dataset) -> DepartmentTransitions:
        """Learn from the dataset's baskets."""
        from sklearn.linear_model import LogisticRegression

        baskets, self.departments_ = basket_departments(dataset.interactions, dataset,
                                                        self.level)
        multi = np.flatnonzero(np.asarray(baskets.sum(axis=1)).ravel() >= 2)
        self.dataset_ = dataset
        if len(multi) == 0 or len(self.departments_) < 2:
            warnings.warn("no training basket spans two departments: department "
                          "transitions are uniform", stacklevel=2)
            self.classes_ = self.coef_ = self.intercept_ = None
            return self
        rng = np.random.default_rng(self.seed)
        if len(multi) > self.max_baskets:
            multi = np.sort(rng.choice(multi, self.max_baskets, replace=False))
        dense = baskets[multi].toarray()
        row, label = np.nonzero(dense)
        X = dense[row]
        X[np.arange(len(row)), label] = 0.0  # the department to predict is hidden
        model = LogisticRegression(C=self.C, max_iter=500).fit(X, label)
        # Kept as arrays: they are what prediction needs, and they save safely.
        self.classes_, self.coef_, self.intercept_ = model.classes_, model.coef_, \
            model.intercept_
        return self

    def log_proba(self, cart_departments: np.ndarray) -> np.ndarray:
        """Log-probabilities of each department, one row per cart (0/1 department rows)."""
        if self.coef_ is None:
            return np.full((len(cart_departments), len(self.departments_)),
                           -np.log(len(self.departments_)))
        out = np.full((len(cart_departments), len(self.departments_)), np.log(1e-9))
        out[:, self.classes_] = _log_proba(np.asarray(cart_departments, dtype=float),
                                           self.coef_, self.intercept_)
        return out

    def item_log_proba(self, cart_departments: np.ndarray) -> np.ndarray:
        """Per cart, the log-probability of every catalogue item's department."""
        codes = self.departments_.get_indexer(self.dataset_.item_category(self.level))
        return self.log_proba(cart_departments)[:, codes]


def _log_proba(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """scikit-learn's ``LogisticRegression.predict_log_proba``, step for step."""
    scores = X @ coef.T + intercept
    if coef.shape[0] == 1:  # two classes: one logistic
        p = expit(scores.ravel())
        return np.log(np.vstack([1.0 - p, p]).T)
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return np.log(scores)
