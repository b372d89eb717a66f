"""The interface every recommender follows (scikit-learn style).

Construct with hyperparameters, :meth:`~Recommender.fit` on a training
:class:`~xsell.data.dataset.Dataset`, then :meth:`~Recommender.score` users against items
or :meth:`~Recommender.recommend` the top ``k``. Items are the training dataset's whole
catalogue, in catalogue order; users are given by their ids.

A user's *history* is what a model conditions on. By default it is the user's training
interactions; pass ``history=`` (interaction rows) to score users from any other history
-- a new user, or a user seen only up to some point in time (the rolling-origin protocol).
History-based models (buy-again, item-kNN, EASE) read the history directly; factor models
fold it in.

What a model is *fitted* on (``train_history_``) and what it *scores* from need not be
weighted alike: the models derived from :class:`RecencyWeighted` fit on plain counts and
score from a history in which older baskets weigh less (``recency``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from xsell.checkpoint import Saveable
from xsell.data import schema as S
from xsell.data.dataset import Dataset


def interaction_matrix(interactions: pd.DataFrame, users: pd.Index, items: pd.Index,
                       values: np.ndarray | None = None) -> sp.csr_matrix:
    """Users x items matrix of interaction rows; repeated (user, item) pairs add up.

    Parameters
    ----------
    interactions : pandas.DataFrame
        Rows with ``user_id`` and ``item_id``.
    users, items : pandas.Index
        Row and column order; rows of unknown users or items are dropped.
    values : numpy.ndarray, optional
        One weight per interaction row (default 1).
    """
    rows = users.get_indexer(interactions[S.USER])
    cols = items.get_indexer(interactions[S.ITEM])
    vals = np.ones(len(interactions)) if values is None else np.asarray(values, dtype=float)
    keep = (rows >= 0) & (cols >= 0)
    return sp.csr_matrix((vals[keep], (rows[keep], cols[keep])),
                         shape=(len(users), len(items)))


def basket_age(interactions: pd.DataFrame) -> np.ndarray:
    """Baskets between each row's basket and its user's latest one (0 = the latest).

    Rows without a ``seq`` column are all taken to be in one basket (age 0).
    """
    if S.SEQ not in interactions or len(interactions) == 0:
        return np.zeros(len(interactions))
    return (interactions.groupby(S.USER)[S.SEQ].transform("max")
            - interactions[S.SEQ]).to_numpy()


def check_decay(value, name: str = "recency") -> float:
    """``value`` as a float, or a ValueError naming the setting ``name``.

    A decay rate must be a number in (0, 1]: the weight of a purchase one basket (or one
    group of baskets) further back; 1.0 = no decay.
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, bool) and 0.0 < float(value) <= 1.0
    if not ok:
        raise ValueError(f"{name} must be a number in (0, 1] -- the weight of a purchase "
                         f"one basket further back; 1.0 = no decay -- not {value!r}")
    return float(value)


def check_count(value, name: str = "k") -> int:
    """``value`` as an int, or a ValueError naming the setting ``name`` (a positive integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def top_k(scores: np.ndarray, k: int, sort: bool = True) -> np.ndarray:
    """Column indices of the ``k`` largest scores of each row, best first.

    The one top-k of the package (recommendation lists, candidate pools, validation).
    ``np.argpartition`` finds the ``k`` in linear time; with ``sort`` they are then
    ordered by score, ties in column order of the partition (a stable sort), so a
    ranking is reproducible.

    Parameters
    ----------
    scores : numpy.ndarray
        Rows x columns.
    k : int
        How many per row (at most the number of columns).
    sort : bool
        Order them best first; ``False`` returns each row's top ``k`` in no order.
    """
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.empty((scores.shape[0], 0), dtype=np.intp)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    if not sort:
        return top
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def popularity_tiebreak(counts: sp.csr_matrix) -> np.ndarray:
    """A per-item term below any real score difference: ties go to the more popular item.

    Scores of history models are often tied (or all zero for an empty history); with this
    term a new user gets the popular items rather than an arbitrary slice of the catalogue.
    Popularity = number of users with the item in ``counts`` (users x items).
    """
    pop = np.asarray((counts > 0).sum(axis=0), dtype=float).ravel()
    return 1e-6 * pop / max(pop.max(initial=0.0), 1.0)


class Recommender(Saveable):
    """Base class of every model.

    Subclasses implement :meth:`fit` (calling ``self._remember(train)`` first) and
    ``_score_history``; they may override :meth:`history_matrix` to weight a history their
    own way (buy-again weights recent purchases more), and :meth:`scoring_matrix` to score
    from a history weighted otherwise than the one they are fitted on
    (:class:`RecencyWeighted`).

    A fitted model is saved with ``model.save(folder)`` and read back with
    ``Class.load(folder, train)`` (:class:`~xsell.checkpoint.Saveable`: JSON + ``.npz`` /
    parquet / safetensors, checksummed, no pickle); ``train`` must be the data it was
    fitted on, and everything derived from it is rebuilt rather than stored.
    """

    #: Rebuilt from the training data by :meth:`_remember` on load.
    _derived_state = frozenset({"dataset_", "users_", "items_", "train_history_",
                                "seen_items_"})

    #: Users scored at once by :meth:`recommend` (bounds memory).
    score_batch_size: int = 256

    #: Whether the model can score items with no training interaction. ID-based models
    #: cannot (they have learned nothing about such items), so :meth:`recommend` ranks
    #: those items last instead of letting ties at zero place them by accident; models
    #: that read item text set this to True.
    scores_unseen_items: bool = False

    #: Constructor parameters that change only how a fitted model scores, not what
    #: ``fit`` learns, so a tuner may fit once and score each of their values.
    scoring_params: tuple[str, ...] = ()

    def fit(self, train: Dataset) -> Recommender:
        """Learn from a training dataset; returns ``self``."""
        raise NotImplementedError

    def _score_history(self, history: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        """Dense scores (users x items) from histories (rows of ``history``).

        ``rows`` holds each user's training row, or -1 when the history is not the
        training history (factor models then fold the user in).
        """
        raise NotImplementedError

    def history_matrix(self, interactions: pd.DataFrame, users: pd.Index) -> sp.csr_matrix:
        """Users x catalogue matrix of a history, weighted as this model reads it (counts).

        The training history ``train_history_`` -- what :meth:`fit` learns from -- is
        this matrix of the training interactions.
        """
        return interaction_matrix(interactions, users, self.items_)

    def scoring_matrix(self, interactions: pd.DataFrame, users: pd.Index) -> sp.csr_matrix:
        """Users x catalogue matrix of a history as the model scores from it.

        By default the same as :meth:`history_matrix`.
        """
        return self.history_matrix(interactions, users)

    def _training_scoring_matrix(self) -> sp.csr_matrix:
        """:meth:`scoring_matrix` of the training users' histories (rows = ``users_``)."""
        return self.train_history_

    # ------------------------------------------------------------------ provided
    def _restore_state(self, state: dict, dataset: Dataset) -> None:
        self._remember(dataset)
        for key, value in state.items():
            setattr(self, key, value)

    def _remember(self, train: Dataset) -> None:
        # Every model needs the id maps and its view of each user's training history.
        self.dataset_ = train
        self.users_ = train.user_index
        self.items_ = train.item_index  # set before history_matrix, which uses it
        self.train_history_ = self.history_matrix(train.interactions, self.users_)
        self.seen_items_ = np.zeros(len(self.items_), dtype=bool)
        self.seen_items_[self.items_.get_indexer(train.interactions[S.ITEM].unique())] = True

    def _histories(self, users, history: pd.DataFrame | None) -> tuple[sp.csr_matrix, np.ndarray]:
        users = np.atleast_1d(np.asarray(users))
        if history is None:
            rows = self.users_.get_indexer(users)
            known = np.flatnonzero(rows >= 0)
            selector = sp.csr_matrix((np.ones(len(known)), (known, rows[known])),
                                     shape=(len(users), len(self.users_)))
            return (selector @ self._training_scoring_matrix()).tocsr(), rows
        if not pd.Index(users).is_unique:
            raise ValueError("users must be unique when a history is given")
        index = pd.Index(users)
        return self.scoring_matrix(history, index).tocsr(), np.full(len(users), -1)

    def score(self, users, items=None, history: pd.DataFrame | None = None) -> np.ndarray:
        """Scores of ``users`` (ids) for ``items`` (ids; default all catalogue items).

        Parameters
        ----------
        users : array-like
            User ids.
        items : array-like, optional
            Item ids (default: the whole catalogue, in catalogue order).
        history : pandas.DataFrame, optional
            Interaction rows to use as the users' histories instead of the training data.

        Returns
        -------
        numpy.ndarray
            Shape ``(len(users), len(items))``; higher is better.
        """
        matrix, rows = self._histories(users, history)
        scores = self._score_users(np.atleast_1d(np.asarray(users)), matrix, rows, history)
        if items is not None:
            scores = scores[:, self.dataset_.item_codes(items)]
        return scores

    def _score_users(self, users: np.ndarray, matrix: sp.csr_matrix, rows: np.ndarray,
                     history: pd.DataFrame | None) -> np.ndarray:
        """Dense scores of one chunk of users; models that combine others override it.

        Most models only need their own history matrix; a hybrid passes the users and
        raw ``history`` on to its components, which weight histories their own way.
        """
        return self._score_history(matrix, rows)

    def recommend(self, users, k: int = 10, exclude_seen: bool = False, candidates=None,
                  history: pd.DataFrame | None = None, exclude=None) -> np.ndarray:
        """Top-``k`` item ids for each user, best first.

        Parameters
        ----------
        users : array-like
            User ids.
        k : int
            List length.
        exclude_seen : bool
            Remove items in the user's history.
        candidates : array-like, optional
            Item ids to rank (default: the whole catalogue).
        history : pandas.DataFrame, optional
            Interaction rows to use as the users' histories instead of the training data.
        exclude : scipy.sparse.spmatrix, optional
            Users x catalogue matrix; a stored entry means the item may not be
            recommended to that user (e.g. the departments of a cart in basket
            completion).

        Returns
        -------
        numpy.ndarray
            Item ids, shape ``(len(users), k)``.
        """
        check_count(k)
        return self.top_lists(users, (k,), exclude_seen, candidates, history, exclude)[k]

    def top_lists(self, users, ks: Sequence[int], exclude_seen: bool = False,
                  candidates=None, history: pd.DataFrame | None = None,
                  exclude=None) -> dict[int, np.ndarray]:
        """:meth:`recommend` at several list lengths from one scoring pass.

        ``{k: item ids, shape (len(users), k)}`` for each ``k`` in ``ks``, each exactly
        what ``recommend(users, k, ...)`` returns (other arguments as there); the scores
        are computed once, which is most of the cost.
        """
        ks = [check_count(k) for k in ks]
        users = np.atleast_1d(np.asarray(users))
        matrix, rows = self._histories(users, history)
        if exclude is not None:
            if exclude.shape != (len(users), len(self.items_)):
                raise ValueError(f"exclude must be users x catalogue "
                                 f"{(len(users), len(self.items_))}, not {exclude.shape}")
            exclude = sp.csr_matrix(exclude)
        mask = None  # True = may not be recommended
        if candidates is not None:
            mask = np.full(len(self.items_), True)
            mask[self.dataset_.item_codes(candidates)] = False
        allowed = len(self.items_) if mask is None else int((~mask).sum())
        unseen = None if self.scores_unseen_items else ~self.seen_items_
        out: dict[int, list] = {k: [] for k in ks}
        # Score users in chunks: a dense users x catalogue block can be gigabytes.
        for start in range(0, len(rows), self.score_batch_size):
            part = slice(start, start + self.score_batch_size)
            scores = self._score_users(users[part], matrix[part], rows[part], history)
            scores = scores.astype(float, copy=True)
            if exclude is not None:
                blocked = exclude[part].tocoo()
                scores[blocked.row, blocked.col] = -np.inf
            if exclude_seen:
                seen = matrix[part].tocoo()
                scores[seen.row, seen.col] = -np.inf
            if unseen is not None:
                scores[:, unseen] = -1e300  # below any real score, above excluded items
            if mask is not None:
                scores[:, mask] = -np.inf
            for k in ks:
                out[k].append(top_k(scores, min(k, allowed)))
        items = self.items_.to_numpy()
        return {k: items[np.vstack(parts)] if parts else
                np.empty((0, min(k, allowed)), dtype=items.dtype) for k, parts in out.items()}


class RecencyWeighted(Recommender):
    """A recommender that scores from a recency-weighted history (parameter ``recency``).

    When scoring, a purchase made :math:`n` baskets before the user's latest basket
    weighs :math:`r^n` (:math:`r` = ``recency``), and an item's weight is the sum over its
    purchases,

    .. math:: h_{ui} = \\sum_{s} r^{\\,t_u - s}\\, c_{uis},

    with :math:`t_u` the user's latest basket and :math:`c_{uis}` the times item
    :math:`i` is in the user's basket :math:`s`. At :math:`r = 1` this is the plain count
    matrix, and scores are exactly those of a model without decay. Models that read a
    0/1 history cap the weights at 1 (:func:`capped`), so at :math:`r = 1` they still read
    0/1. Only scoring is weighted: ``fit`` learns from ``train_history_``, the
    plain counts, whatever ``recency`` is -- so ``recency`` is a scoring parameter
    (:attr:`scoring_params`).

    Subclasses take ``recency`` as a constructor argument.
    """

    scoring_params: tuple[str, ...] = ("recency",)

    recency: float

    def _remember(self, train: Dataset) -> None:
        check_decay(self.recency)  # fail at fit, before any work
        self._scoring_cache = None  # weights of an earlier fit's data
        super()._remember(train)

    def scoring_matrix(self, interactions: pd.DataFrame, users: pd.Index) -> sp.csr_matrix:
        """The history with a purchase ``n`` baskets back weighted ``recency ** n``."""
        recency = check_decay(self.recency)
        if recency == 1.0:
            return super().scoring_matrix(interactions, users)
        return interaction_matrix(interactions, users, self.items_,
                                  recency ** basket_age(interactions))

    def _training_scoring_matrix(self) -> sp.csr_matrix:
        if check_decay(self.recency) == 1.0:
            return self.train_history_
        # Built on first use and kept per recency value: a fitted model may be scored with
        # several values (scoring_params) without refitting.
        cached = getattr(self, "_scoring_cache", None)
        if cached is None or cached[0] != self.recency:
            cached = (self.recency,
                      self.scoring_matrix(self.dataset_.interactions, self.users_).tocsr())
            self._scoring_cache = cached
        return cached[1]


def capped(history: sp.csr_matrix) -> sp.csr_matrix:
    """History weights capped at 1, explicit zeros dropped (float64).

    Counts become 0/1 -- each distinct item once, as item-item models read a history --
    while recency weights below 1 (:class:`RecencyWeighted`) pass unchanged.
    """
    out = sp.csr_matrix(history, dtype=float, copy=True)
    out.eliminate_zeros()
    np.minimum(out.data, 1.0, out=out.data)
    return out
