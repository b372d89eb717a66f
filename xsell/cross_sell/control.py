"""A category control on any ranking: trade accuracy for cross-category reach.

:class:`CategoryControl` re-orders a model's ranking so that every prefix of the list
holds at least a share ``reach`` of items from departments the user never bought from:
position :math:`n` takes the best new-department item whenever fewer than
:math:`\\lceil \\text{reach}\\cdot n \\rceil` are above it, else the best item overall.
``reach=0`` is the model's own ranking, ``reach=1`` recommends only new departments;
sweeping it draws the accuracy / reach trade-off curve.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.sparse as sp

from xsell.data.dataset import Dataset
from xsell.models.base import Recommender, top_k
from xsell.models.candidates import NOT_A_CANDIDATE


class CategoryControl(Recommender):
    """Quota re-ranking of a fitted model towards departments new to the user.

    Parameters
    ----------
    model : Recommender
        A fitted model (it is not refitted).
    reach : float
        Minimum share of new-department items in every prefix of the list, in [0, 1].
    level : int
        Category level (0 = department, 1 = aisle).
    pool : int
        How deep the model's ranking is re-ordered (items below are ranked after).
    new_only : bool
        Leave the user's bought items out of the pool (the explore and cross-category
        tasks remove them anyway; leaving them in would waste the pool).

    Notes
    -----
    The wrapped model scores a set of users once after :meth:`fit`; changing ``reach``
    and recommending again re-orders the same pools (a sweep costs one scoring). Call
    :meth:`fit` again after refitting the wrapped model.
    """

    def __init__(self, model: Recommender, reach: float = 0.0, level: int = 0,
                 pool: int = 200, new_only: bool = True):
        self.model = model
        self.reach = reach
        self.level = level
        self.pool = pool
        self.new_only = new_only

    def fit(self, train: Dataset | None = None) -> CategoryControl:
        """Adopt the wrapped model's training data (the model must be fitted)."""
        if not 0.0 <= self.reach <= 1.0:
            raise ValueError(f"reach must be in [0, 1], not {self.reach}")
        if not hasattr(self.model, "dataset_"):
            raise ValueError("CategoryControl wraps a fitted model; call model.fit first")
        self._remember(train if train is not None else self.model.dataset_)
        self.scores_unseen_items = self.model.scores_unseen_items
        self._pools = {}
        category = self.dataset_.item_category(self.level)
        self.categories_ = pd.Index(sorted(category.unique()))
        codes = self.categories_.get_indexer(category)
        self.item_category_ = sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)),
                                                                   codes)))
        return self

    def _restore_state(self, state: dict, dataset: Dataset) -> None:
        super()._restore_state(state, dataset)
        self.scores_unseen_items = self.model.scores_unseen_items
        self._pools = {}

    def _pool(self, users: np.ndarray, matrix: sp.csr_matrix,
              history: pd.DataFrame | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per user: the model's top ``pool`` candidates, best first, and which are novel."""
        from xsell.data import schema as S

        part = None if history is None else history[history[S.USER].isin(users)]
        scores = self.model.score(users, history=part).astype(float)
        scores[:, ~self.seen_items_] = -np.inf  # the usual candidates: items seen in training
        if self.new_only:
            bought = matrix.tocoo()
            scores[bought.row, bought.col] = -np.inf
        known = np.asarray((matrix @ self.item_category_).todense()) > 0
        novel = ~known[:, self.item_category_.indices]  # users x items
        top = top_k(scores, self.pool)
        pools = []
        for r in range(len(users)):
            cand = top[r][np.isfinite(scores[r, top[r]])]
            pools.append((cand, novel[r, cand]))
        return pools

    def _score_users(self, users: np.ndarray, matrix: sp.csr_matrix, rows: np.ndarray,
                     history: pd.DataFrame | None) -> np.ndarray:
        # A sweep over ``reach`` re-orders the same pools: the wrapped model (a hybrid
        # scores several models over the catalogue) is asked once per set of users.
        key = (tuple(map(str, users)), self.pool, self.new_only)  # ids, not pointers
        pools = self._pools.get(key) if history is None else None
        if pools is None:
            pools = self._pool(users, matrix, history)
            if history is None:  # bounded: a sweep reuses a few chunks of users
                self._pools = {**(self._pools if len(self._pools) < 64 else {}), key: pools}
        out = np.full((len(users), len(self.items_)), NOT_A_CANDIDATE)
        for r, (cand, novel) in enumerate(pools):
            order = quota_order(novel, self.reach)
            out[r, cand[order]] = len(cand) - np.arange(len(cand))
        return out

    def _score_history(self, history, rows):
        raise NotImplementedError("CategoryControl scores through _score_users")


def quota_order(is_new: np.ndarray, reach: float) -> np.ndarray:
    """Positions of a ranked list re-ordered so every prefix meets the quota.

    Parameters
    ----------
    is_new : numpy.ndarray
        Per item of the ranked list (best first): whether it is from a new category.
    reach : float
        Minimum share of new-category items in every prefix.
    """
    new = list(np.flatnonzero(is_new))
    old = list(np.flatnonzero(~is_new))
    order, taken_new = [], 0
    i = j = 0
    for n in range(1, len(is_new) + 1):
        want_new = i < len(new) and (taken_new < math.ceil(reach * n - 1e-9)
                                     or j >= len(old) or new[i] < old[j])
        if want_new:
            order.append(new[i])
            i += 1
            taken_new += 1
        else:
            order.append(old[j])
            j += 1
    return np.asarray(order, dtype=int)


def reach_curve(split, name: str, params: dict, reaches=(0.0, 0.1, 0.25, 0.5, 1.0),
                k: int = 20, level: int = 0, pool: int = 100,
                cache: bool = False) -> pd.DataFrame:
    """Accuracy and cross-category reach of one model under a sweep of ``reach``.

    The model (a registered name and its hyperparameters) is fitted on train +
    validation; for each ``reach`` its :class:`CategoryControl` ranking of the explore
    task's users gives explore Recall@k, cross-category Recall@k (on the users who have
    cross-category targets) and the share of the list from categories new to the user.

    Parameters
    ----------
    split : Split
        A temporal split.
    name, params
        The model (:data:`xsell.models.registry.MODELS`).
    reaches : sequence of float
        Values of ``reach`` to try.
    k, level, pool
        List length, category level, re-ranked depth.
    cache : bool
        Reuse the fit and the result from the on-disk cache (:mod:`xsell.cache`).

    Returns
    -------
    pandas.DataFrame
        One row per ``reach``.
    """
    if cache:
        from xsell.cache import data_fingerprint, memoize

        key = {"data": data_fingerprint(split.dataset), "name": name, "params": params,
               "reaches": list(reaches), "k": k, "level": level, "pool": pool}
        return memoize("reach_curve", key, lambda: _reach_curve(
            split, name, params, reaches, k, level, pool, cache=True))
    return _reach_curve(split, name, params, reaches, k, level, pool, False)


def _reach_curve(split, name, params, reaches, k, level, pool, cache) -> pd.DataFrame:
    from xsell.data import schema as S
    from xsell.evaluation import next_basket_task
    from xsell.metrics import recall_at_k
    from xsell.models.fitting import fit_model

    train = split.train_dataset(include_validation=True)
    model = fit_model(name, params, train, cache=cache)
    explore = next_basket_task(split, "explore", level=level)
    cross = next_basket_task(split, "cross-category", level=level)
    cross_targets = dict(zip(cross.users, cross.targets, strict=True))
    in_cross = np.isin(explore.users, cross.users)
    category = train.item_category(level)
    inter = train.interactions
    known = pd.Series(category.reindex(inter[S.ITEM]).to_numpy(), index=inter[S.USER])
    known = known.groupby(level=0).unique().map(set)
    rows = []
    control = CategoryControl(model, level=level, pool=pool).fit()  # one scoring, many reaches
    for reach in reaches:
        control.reach = reach
        ranked = control.recommend(explore.users, k=k, exclude_seen=True,
                                   candidates=explore.candidates)
        new = np.mean([[category[i] not in known[u] for i in row]
                       for u, row in zip(explore.users, ranked, strict=True)])
        rows.append({"reach": reach,
                     f"explore Recall@{k}": np.nanmean(recall_at_k(ranked, explore.targets, k)),
                     f"cross-category Recall@{k}": np.nanmean(recall_at_k(
                         ranked[in_cross], [cross_targets[u] for u in explore.users[in_cross]],
                         k)),
                     "new-category share of the list": new})
    return pd.DataFrame(rows).set_index("reach")
