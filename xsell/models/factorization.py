"""Matrix factorisation for implicit feedback: ALS and BPR, via the ``implicit`` library.

Both learn a vector :math:`x_u` per user and :math:`y_i` per item and score
:math:`s_{ui} = x_u^\\top y_i`. They differ in the loss: ALS fits every cell of the 0/1
purchase matrix with confidence weights (a regression), BPR ranks each bought item above a
random unbought one (a pairwise classification).

A user outside the training data, or a training user scored from another history (the
``history=`` argument), has no learned vector; it is *folded in*: solved for given the
fixed item vectors (:func:`fold_in`). For ALS this is exactly the step ALS itself
alternates; for BPR it is a ridge approximation. With ``recency`` below 1 a folded-in
history weighs older baskets less (:class:`~xsell.models.base.RecencyWeighted`): in ALS's
confidences, in BPR's regression targets. Training users keep their learned vectors.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from xsell.data.dataset import Dataset
from xsell.models.base import RecencyWeighted, capped, popularity_tiebreak
from xsell.models.neighbors import weigh_documents


def fold_in(item_factors: np.ndarray, confidence: sp.csr_matrix,
            regularization: float, preference: sp.csr_matrix | None = None) -> np.ndarray:
    """User vectors that best explain each history, item vectors held fixed.

    For each row :math:`u` of ``confidence`` (a history, :math:`c_{ui} > 0` for its items)
    solve the weighted ridge regression of the 0/1 row :math:`p_u` on the item vectors,

    .. math::
        x_u = \\arg\\min_x \\sum_i c_{ui} (p_{ui} - x^\\top y_i)^2 + \\lambda \\lVert x\\rVert^2
            = (Y^\\top C_u Y + \\lambda I)^{-1} Y^\\top C_u p_u ,

    where unbought items have :math:`c_{ui} = 1`, :math:`p_{ui} = 0`. Since
    :math:`Y^\\top C_u Y = Y^\\top Y + \\sum_{i \\in u} (c_{ui} - 1)\\, y_i y_i^\\top`, each
    user costs one small :math:`f \\times f` solve (Hu, Koren & Volinsky, 2008).

    Parameters
    ----------
    item_factors : numpy.ndarray
        :math:`Y`, items x factors.
    confidence : scipy.sparse.csr_matrix
        Users x items confidences :math:`c_{ui}` of the bought items.
    regularization : float
        :math:`\\lambda`.
    preference : scipy.sparse.csr_matrix, optional
        :math:`p_{ui}` of the bought items, same sparsity pattern as ``confidence``
        (default 1): a soft target, e.g. a recency weight.

    Returns
    -------
    numpy.ndarray
        Users x factors.
    """
    y = np.asarray(item_factors, dtype=float)
    base = y.T @ y + regularization * np.eye(y.shape[1])
    out = np.zeros((confidence.shape[0], y.shape[1]))
    for u in range(confidence.shape[0]):
        lo, hi = confidence.indptr[u], confidence.indptr[u + 1]
        if lo == hi:
            continue  # empty history: the zero vector (scores fall back to the tie-breaker)
        items, c = confidence.indices[lo:hi], confidence.data[lo:hi]
        yu = y[items]
        a = base + (yu.T * (c - 1.0)) @ yu
        target = c if preference is None else c * preference.data[lo:hi]
        out[u] = np.linalg.solve(a, yu.T @ target)
    return out


class FactorModel(RecencyWeighted):
    """Base of the factor models: :math:`s_{ui} = x_u^\\top y_i`.

    Training users are scored with their learned vectors; any other history (a new user,
    or ``history=``) is folded in with :func:`fold_in`. Subclasses set
    ``user_factors_``, ``item_factors_`` and ``tiebreak_`` in ``fit`` and say how a
    history becomes fold-in confidences, and with which regularisation.
    """

    def _confidence(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        raise NotImplementedError

    def _preference(self, counts: sp.csr_matrix) -> sp.csr_matrix | None:
        """Fold-in targets :math:`p_{ui}` of a history (``None``: 1 for every bought item)."""
        return None

    def _fold_in_regularization(self) -> float:
        raise NotImplementedError

    def _user_factors(self, history: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), self.item_factors_.shape[1]), dtype=self.item_factors_.dtype)
        known = rows >= 0
        out[known] = self.user_factors_[rows[known]]
        if not known.all():
            folded = np.flatnonzero(~known)
            part = history[folded]
            out[folded] = fold_in(self.item_factors_, self._confidence(part),
                                  self._fold_in_regularization(), self._preference(part))
        return out

    def _score_history(self, history: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        return self._user_factors(history, rows) @ self.item_factors_.T + self.tiebreak_


class ALS(FactorModel):
    """Implicit-feedback matrix factorisation by alternating least squares.

    Hu, Koren & Volinsky (2008): every cell of the purchase matrix is a 0/1 preference
    :math:`p_{ui}` observed with confidence :math:`c_{ui} = 1 + \\alpha\\, w_{ui}`, where
    :math:`w_{ui}` weighs the purchases (0 when not bought):

    .. math::
        \\min_{X, Y} \\sum_{u, i} c_{ui} (p_{ui} - x_u^\\top y_i)^2
        + \\lambda \\Big(\\sum_u \\lVert x_u \\rVert^2 + \\sum_i \\lVert y_i \\rVert^2\\Big).

    With one side fixed the other is a ridge regression per row, so the two sides are
    solved in turn (``implicit``'s conjugate-gradient solver). Scores
    :math:`s_{ui} = x_u^\\top y_i`; folded-in users get the exact ALS user step.

    Parameters
    ----------
    factors : int
        Length of the user and item vectors.
    regularization : float
        :math:`\\lambda`.
    alpha : float
        :math:`\\alpha`, weight of a purchase in the confidence.
    iterations : int
        ALS sweeps (each solves all users, then all items).
    weighting : str
        :math:`w_{ui}`: ``"count"`` (number of baskets with the item, the paper's choice),
        ``"binary"``, or ``"bm25"``/``"tfidf"`` with the users as documents and their
        items as terms (:func:`xsell.models.neighbors.weigh_documents`): rare items
        weigh more, and BM25 saturates repeat counts and damps heavy buyers.
    random_state : int or None
        Seed of the initial factors; fits are reproducible given a seed.
    num_threads : int
        Threads of the solver (0 = all cores). Users (items) are solved independently,
        so the result does not depend on it.
    recency : float
        Weight of a purchase per basket further back in a folded-in history, in (0, 1]
        (it scales :math:`w_{ui}`; 1.0 = counts). Not tuned: the validation users are
        training users, scored with their learned vectors.

    Attributes
    ----------
    user_factors_ : numpy.ndarray
        :math:`X`, training users x ``factors``.
    item_factors_ : numpy.ndarray
        :math:`Y`, catalogue x ``factors``; items nobody bought are (nearly) 0.
    """

    #: Values tried by :func:`xsell.tuning.tune` (12 fits of 1-3 s each on the Instacart
    #: sample).
    param_grid: dict[str, list] = {"factors": [64, 128], "regularization": [10.0, 100.0],
                                   "alpha": [0.3, 1.0, 3.0]}

    def __init__(self, factors: int = 64, regularization: float = 10.0, alpha: float = 1.0,
                 iterations: int = 15, weighting: str = "bm25", random_state: int | None = 0,
                 num_threads: int = 0, recency: float = 1.0):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.random_state = random_state
        self.num_threads = num_threads
        self.recency = recency

    def _fold_in_regularization(self) -> float:
        return self.regularization

    def _confidence(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        if self.weighting == "count":
            w = sp.csr_matrix(counts, dtype=float, copy=True)
        else:
            # A folded-in history is weighted with the training matrix's statistics.
            w = weigh_documents(counts, self.weighting, reference=self.train_history_)
        w.data = 1.0 + self.alpha * w.data
        return w

    def fit(self, train: Dataset) -> ALS:
        """Factorise the confidence-weighted purchase matrix."""
        from implicit.cpu.als import AlternatingLeastSquares

        self._remember(train)
        conf = self._confidence(self.train_history_).astype(np.float32)
        # implicit runs its own threads; a multi-threaded BLAS underneath them oversubscribes
        # the cores and can be 10x slower (implicit warns). Limiting BLAS here, for this
        # call only, works whenever numpy was imported -- unlike OPENBLAS_NUM_THREADS, which
        # is read once when OpenBLAS loads -- and leaves the rest of the session alone.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=1.0,
                iterations=self.iterations, random_state=self.random_state,
                num_threads=self.num_threads)
            model.fit(conf, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors)
        self.item_factors_ = np.asarray(model.item_factors)
        self.tiebreak_ = popularity_tiebreak(self.train_history_)
        return self


class BPR(FactorModel):
    """Bayesian Personalised Ranking matrix factorisation (Rendle et al., 2009).

    Learns to rank each user's bought items above unbought ones: stochastic gradient ascent
    on

    .. math::
        \\sum_{(u, i, j)} \\ln \\sigma(s_{ui} - s_{uj})
        - \\lambda \\lVert \\Theta \\rVert^2,
        \\qquad s_{ui} = x_u^\\top y_i + b_i,

    over triples of a user, a bought item :math:`i` and a sampled unbought item :math:`j`
    (``implicit`` adds the item bias :math:`b_i`, stored as a last item factor that meets
    a constant 1 in every user vector).

    BPR learns only the order of the scores, not their scale, so there is no exact
    fold-in. A new history is folded in by a plain ridge regression of its 0/1 row on the
    item vectors, bias column included (:func:`fold_in` with unit confidences and
    :math:`\\lambda =` ``fold_in_l2``) -- an approximation. On the Instacart sample,
    folded-in training users rank about as well as their learned vectors (NDCG@10 within
    about 15%, sometimes better); keeping the bias weight at 1 instead lets popularity
    swamp the small regression vectors and halves NDCG.

    Parameters
    ----------
    factors : int
        Length of the user and item vectors.
    learning_rate : float
        SGD step size.
    regularization : float
        :math:`\\lambda`.
    iterations : int
        Epochs (each samples as many triples as there are purchases).
    fold_in_l2 : float
        Ridge penalty of the fold-in.
    random_state : int or None
        Seed of the initial factors and of the sampling.
    num_threads : int
        SGD threads. Several threads update the factors without locks (Hogwild), so only
        ``num_threads=1`` (the default) makes fits reproducible.
    recency : float
        Weight of a purchase per basket further back in a folded-in history, in (0, 1]:
        the regression target of a history item is its weight capped at 1 (1.0 = 0/1).
        Not tuned: the validation users are training users, scored with their learned
        vectors.

    Attributes
    ----------
    user_factors_ : numpy.ndarray
        Training users x (``factors`` + 1); the last column is 1 (it multiplies the bias;
        folded-in users get a fitted weight there instead).
    item_factors_ : numpy.ndarray
        Catalogue x (``factors`` + 1); the last column is the item bias :math:`b_i`.
    """

    #: Values tried by :func:`xsell.tuning.tune` (12 fits of 2-7 s each on the Instacart
    #: sample).
    param_grid: dict[str, list] = {"factors": [64, 128],
                                   "learning_rate": [0.005, 0.01, 0.05],
                                   "regularization": [0.001, 0.01]}

    def __init__(self, factors: int = 64, learning_rate: float = 0.05,
                 regularization: float = 0.01, iterations: int = 100, fold_in_l2: float = 1.0,
                 random_state: int | None = 0, num_threads: int = 1, recency: float = 1.0):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.fold_in_l2 = fold_in_l2
        self.random_state = random_state
        self.num_threads = num_threads
        self.recency = recency

    def _fold_in_regularization(self) -> float:
        return self.fold_in_l2

    def _confidence(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        return weigh_documents(counts, "binary")  # every bought item counts once

    def _preference(self, counts: sp.csr_matrix) -> sp.csr_matrix | None:
        # Recency weights as soft 0/1 targets; at recency 1 the plain targets (None).
        return None if self.recency == 1.0 else capped(counts)

    def fit(self, train: Dataset) -> BPR:
        """Fit the factors by SGD on sampled (user, bought, unbought) triples."""
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        self._remember(train)
        with threadpool_limits(1, "blas"):  # see ALS.fit
            model = BayesianPersonalizedRanking(
                factors=self.factors, learning_rate=self.learning_rate,
                regularization=self.regularization, iterations=self.iterations,
                random_state=self.random_state, num_threads=self.num_threads)
            model.fit(self.train_history_.astype(np.float32), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors)
        self.item_factors_ = np.asarray(model.item_factors)
        self.tiebreak_ = popularity_tiebreak(self.train_history_)
        return self
