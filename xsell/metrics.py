"""Metrics: rating errors, ranking accuracy at a cut-off K, cross-category and
beyond-accuracy measures.

Conventions of the module:

* ``ranked`` is an array of shape ``(n_users, >=K)`` of recommended item ids, best first,
  without repeats within a row. Only its first ``k`` columns are read. A row shorter
  than ``k`` (a candidate set smaller than K) counts its missing ranks as misses, as
  ``trec_eval`` does: precision still divides by K and the ideal DCG still runs over
  :math:`\\min(K, |T_u|)` ranks.
* ``targets`` holds one collection of relevant item ids per user (a set, list or array).
  Duplicates in it count once.
* Per-user metrics return a :class:`numpy.ndarray` with one value per user, ``nan``
  where the metric is undefined for that user (no targets, a list of one item for a
  pairwise diversity, ...), so callers can average with :func:`numpy.nanmean`,
  bootstrap, or run paired tests between two models on the same users.
* Item metadata are :class:`pandas.Series` indexed by item id: ``item_category`` (as
  returned by ``Dataset.item_category(level)``) and ``item_popularity`` (purchase counts
  in the *training* interactions, e.g. ``split.train["item_id"].value_counts()``).
  Embeddings are a 2-D array with one row per item plus a :class:`pandas.Index` of the
  item ids of those rows (``Dataset.item_index`` for a model's catalogue embeddings).
* Catalogue-level metrics (coverage, Gini, exposure) look at the lists of all users at
  once and return one number (or one Series).

Three registries map metric names to functions: :data:`RANKING_METRICS` (signature
``f(ranked, targets, k)``), :data:`HISTORY_METRICS` (``f(ranked, targets, seen, k)``:
the repeat and explore parts of a list) and :data:`BEYOND_ACCURACY_METRICS` (signature
``f(ranked, k, metadata)``, with the kind of metadata each needs).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pandas as pd
from scipy import sparse

# --------------------------------------------------------------------------- helpers


def _check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _top_k(ranked: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` columns of ``ranked`` as a 2-D array."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be 2-D (users x ranks), got shape {ranked.shape}")
    return ranked[:, : _check_k(k)]


def _positions(index: pd.Index, items, what: str) -> np.ndarray:
    """Row position in ``index`` of every item id in ``items`` (same shape).

    An item missing from the metadata is a bug upstream (a list recommending an item
    the catalogue does not know), so it raises instead of being silently skipped.
    """
    items = np.asarray(items)
    pos = index.get_indexer(items.ravel())
    if (pos < 0).any():
        missing = items.ravel()[pos < 0]
        raise KeyError(f"{len(missing)} item ids have no {what}, e.g. {missing[:5].tolist()}")
    return pos.reshape(items.shape)


def _n_targets(targets: Sequence) -> np.ndarray:
    return np.array([len(set(t)) for t in targets], dtype=float)


def _flatten(collections: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Row number and item id of every element of ``collections`` (one per user)."""
    lists = [t if isinstance(t, np.ndarray) else list(t) for t in collections]
    sizes = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    items = np.fromiter(chain.from_iterable(lists), dtype=object, count=int(sizes.sum()))
    return np.repeat(np.arange(len(lists)), sizes), items


def _pairs_in(rows: np.ndarray, items: np.ndarray, member_rows: np.ndarray,
              member_items: np.ndarray) -> np.ndarray:
    """Whether each ``(rows[i], items[i])`` is one of the ``(member_rows, member_items)``.

    Every item id is coded once (ids compare as ``==`` does, so ``np.int64(3)`` matches
    ``3``; a missing id such as ``nan`` matches nothing), each (row, code) pair becomes
    one integer, and a single sorted search answers for all users at once: the result of
    a per-user ``np.isin``, about five times faster on the Instacart sample's 1,591 users
    -- it runs for every metric, K, model and variant of every results table.
    """
    both = np.concatenate([np.asarray(items, dtype=object).ravel(),
                           np.asarray(member_items, dtype=object).ravel()])
    codes, ids = pd.factorize(both)
    width = max(len(ids), 1)
    keys = np.asarray(rows, dtype=np.int64) * width + codes[:len(items)]
    member_codes = codes[len(items):]
    member_keys = np.asarray(member_rows, dtype=np.int64)[member_codes >= 0] * width \
        + member_codes[member_codes >= 0]
    return np.isin(keys, member_keys) & (codes[:len(items)] >= 0)


def _in_rows(ranked: np.ndarray, collections: Sequence) -> np.ndarray:
    """Boolean matrix: ``ranked[u, r]`` is in ``collections[u]`` (one collection per row)."""
    rows = np.repeat(np.arange(ranked.shape[0]), ranked.shape[1])
    member_rows, member_items = _flatten(collections)
    return _pairs_in(rows, ranked.ravel(), member_rows, member_items).reshape(ranked.shape)


def _per_user(values: np.ndarray, n_targets: np.ndarray) -> np.ndarray:
    """``values`` for users with targets, ``nan`` for the others."""
    return np.where(n_targets > 0, values, np.nan)


# ----------------------------------------------------------------- rating metrics


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shapes differ: y_true {y_true.shape}, y_pred {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("no ratings to compare")
    return y_true, y_pred


def mae(y_true: np.ndarray | Sequence[float], y_pred: np.ndarray | Sequence[float]) -> float:
    """Mean absolute error.

    :math:`\\mathrm{MAE} = \\frac1n \\sum_{j=1}^{n} |y_j - \\hat y_j|`.

    Parameters
    ----------
    y_true, y_pred : array-like
        True and predicted ratings, same shape.

    Returns
    -------
    float
    """
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def mse(y_true: np.ndarray | Sequence[float], y_pred: np.ndarray | Sequence[float]) -> float:
    """Mean squared error.

    :math:`\\mathrm{MSE} = \\frac1n \\sum_{j=1}^{n} (y_j - \\hat y_j)^2`.

    Parameters
    ----------
    y_true, y_pred : array-like
        True and predicted ratings, same shape.

    Returns
    -------
    float
    """
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean((y_true - y_pred) ** 2))


def rmse(y_true: np.ndarray | Sequence[float], y_pred: np.ndarray | Sequence[float]) -> float:
    """Root mean squared error, in the units of the ratings.

    :math:`\\mathrm{RMSE} = \\sqrt{\\mathrm{MSE}}`.

    Parameters
    ----------
    y_true, y_pred : array-like
        True and predicted ratings, same shape.

    Returns
    -------
    float
    """
    return float(np.sqrt(mse(y_true, y_pred)))


# ----------------------------------------------------------------- ranking metrics


def hit_matrix(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """Whether the item at each of the first K ranks is a target of that user.

    :math:`h_{ur} = \\mathbb 1[i_{ur} \\in T_u]` for :math:`r = 1, \\dots, K`.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    targets : sequence of array-like
        Relevant item ids of each user.
    k : int
        Cut-off.

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(n_users, k)`` (fewer columns if ``ranked`` has fewer).
    """
    ranked = _top_k(ranked, k)
    if len(ranked) != len(targets):
        raise ValueError(f"{len(ranked)} ranked lists but {len(targets)} target sets")
    return _in_rows(ranked, targets)


def targets_found(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """Whether each target made its user's top K, flat in the order of ``targets``.

    The per-target view behind recall (e.g. recall by the targets' category).

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    targets : sequence of array-like
        Relevant item ids of each user.
    k : int
        Cut-off.

    Returns
    -------
    numpy.ndarray
        Boolean, one value per element of the concatenated ``targets`` (duplicates kept).
    """
    ranked = _top_k(ranked, k)
    if len(ranked) != len(targets):
        raise ValueError(f"{len(ranked)} ranked lists but {len(targets)} target sets")
    rows, items = _flatten(targets)
    return _pairs_in(rows, items, np.repeat(np.arange(len(ranked)), ranked.shape[1]),
                     ranked.ravel())

def recall_at_k(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """Recall@K: the share of a user's targets that made it into the top K.

    :math:`\\mathrm{Recall@K}_u = |\\mathrm{top}_K(u) \\cap T_u| / |T_u|`.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    targets : sequence of array-like
        Relevant item ids of each user.
    k : int
        Cut-off.

    Returns
    -------
    numpy.ndarray
        One value per user, ``nan`` for users without targets.
    """
    n = _n_targets(targets)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _per_user(hit_matrix(ranked, targets, k).sum(1) / n, n)


def precision_at_k(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """Precision@K: the share of the K recommended slots that hold a target.

    :math:`\\mathrm{Precision@K}_u = |\\mathrm{top}_K(u) \\cap T_u| / K`.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    targets : sequence of array-like
        Relevant item ids of each user.
    k : int
        Cut-off.

    Returns
    -------
    numpy.ndarray
        One value per user, ``nan`` for users without targets.
    """
    n = _n_targets(targets)
    return _per_user(hit_matrix(ranked, targets, k).sum(1) / k, n)


def hit_rate_at_k(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """HitRate@K: 1 if at least one target is in the top K, else 0.

    :math:`\\mathrm{HR@K}_u = \\mathbb 1[\\mathrm{top}_K(u) \\cap T_u \\neq \\emptyset]`.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    targets : sequence of array-like
        Relevant item ids of each user.
    k : int
        Cut-off.

    Returns
    -------
    numpy.ndarray
        One value per user (0 or 1), ``nan`` for users without targets.
    """
    n = _n_targets(targets)
    return _per_user(hit_matrix(ranked, targets, k).any(1).astype(float), n)


def _discounts(k: int) -> np.ndarray:
    """:math:`1/\\log_2(r+1)` for ranks :math:`r = 1..k`."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_at_k(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """NDCG@K with binary relevance.

    :math:`\\mathrm{DCG}_u = \\sum_{r=1}^{K} \\mathbb 1[i_r \\in T_u] / \\log_2(r+1)`,
    divided by the ideal DCG, :math:`\\sum_{r=1}^{\\min(K, |T_u|)} 1/\\log_2(r+1)`
    (all targets ranked first), so a perfect list scores 1.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    targets : sequence of array-like
        Relevant item ids of each user.
    k : int
        Cut-off.

    Returns
    -------
    numpy.ndarray
        One value per user in [0, 1], ``nan`` for users without targets.
    """
    hits = hit_matrix(ranked, targets, k)
    discount = _discounts(k)
    dcg = (hits * discount[: hits.shape[1]]).sum(1)
    n = _n_targets(targets)
    # ideal[m] = DCG of a list whose first m items are all hits (ideal[0] = 0).
    ideal = np.r_[0.0, np.cumsum(discount)][np.minimum(n, k).astype(int)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _per_user(dcg / ideal, n)


def mrr_at_k(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """Reciprocal rank of the first target within the top K (0 if there is none).

    :math:`\\mathrm{RR@K}_u = 1 / \\min\\{r \\le K : i_r \\in T_u\\}`, and 0 when no
    target is in the top K. MRR@K is its mean over users.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    targets : sequence of array-like
        Relevant item ids of each user.
    k : int
        Cut-off.

    Returns
    -------
    numpy.ndarray
        One value per user in [0, 1], ``nan`` for users without targets.
    """
    hits = hit_matrix(ranked, targets, k)
    first = hits.argmax(1)  # index of the first True (0 when there is none: masked below)
    rr = np.where(hits.any(1), 1.0 / (first + 1), 0.0)
    return _per_user(rr, _n_targets(targets))


def average_precision_at_k(ranked: np.ndarray, targets: Sequence, k: int) -> np.ndarray:
    """AP@K: precision at the rank of every hit, summed and normalised.

    :math:`\\mathrm{AP@K}_u = \\frac{1}{\\min(K, |T_u|)} \\sum_{r=1}^{K}
    \\mathrm{Precision@r}_u \\, \\mathbb 1[i_r \\in T_u]`. MAP@K is its mean over users.

    The denominator :math:`\\min(K, |T_u|)` is the most hits a K-long list can hold, so a
    perfect list scores 1 even when a user has more than K targets. (``trec_eval``'s
    ``map_cut`` divides by :math:`|T_u|` instead; scikit-learn's average precision
    by the number of hits retrieved.)

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    targets : sequence of array-like
        Relevant item ids of each user.
    k : int
        Cut-off.

    Returns
    -------
    numpy.ndarray
        One value per user in [0, 1], ``nan`` for users without targets.
    """
    hits = hit_matrix(ranked, targets, k)
    precision_at_r = hits.cumsum(1) / np.arange(1, hits.shape[1] + 1)
    n = _n_targets(targets)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _per_user((precision_at_r * hits).sum(1) / np.minimum(n, k), n)


#: Metric name -> function ``f(ranked, targets, k)`` returning one value per user;
#: used by :mod:`xsell.evaluation`. ``"map"`` is :func:`average_precision_at_k` and
#: ``"mrr"`` :func:`mrr_at_k` (their means over users are MAP@K and MRR@K).
RANKING_METRICS = {
    "recall": recall_at_k,
    "precision": precision_at_k,
    "hit_rate": hit_rate_at_k,
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "map": average_precision_at_k,
}


# ----------------------------------------------------------------- repeat vs explore
#
# Next-basket results mix two jobs: re-finding what the user already buys (repeat items)
# and suggesting what they never bought (explore items). Li et al., "A Next Basket
# Recommendation Reality Check" (TOIS 2023), showed that a model can top a table on the
# first alone; these metrics split one list's recall into the two parts and say how much
# of the list is spent on each.


def _split_targets(targets: Sequence, seen: Sequence) -> tuple[list, list]:
    if len(targets) != len(seen):
        raise ValueError(f"{len(targets)} target sets but {len(seen)} histories")
    if not len(targets):
        return [], []
    rows, items = _flatten(targets)
    first = ~pd.DataFrame({"row": rows, "item": items}).duplicated().to_numpy()  # once each
    rows, items = rows[first], items[first]
    known = _pairs_in(rows, items, *_flatten(seen))
    bounds = np.arange(1, len(targets))

    def per_user(mask: np.ndarray) -> list[np.ndarray]:
        return np.split(items[mask], np.searchsorted(rows[mask], bounds))

    return per_user(known), per_user(~known)


def repeat_recall_at_k(ranked: np.ndarray, targets: Sequence, seen: Sequence,
                       k: int) -> np.ndarray:
    """Recall@K on the targets the user bought before (:math:`T_u \\cap H_u`).

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    targets : sequence of array-like
        Relevant item ids of each user.
    seen : sequence of array-like
        The items of each user's history :math:`H_u`.
    k : int
        Cut-off.

    Returns
    -------
    numpy.ndarray
        One value per user, ``nan`` for users with no repeat target.
    """
    return recall_at_k(ranked, _split_targets(targets, seen)[0], k)


def explore_recall_at_k(ranked: np.ndarray, targets: Sequence, seen: Sequence,
                        k: int) -> np.ndarray:
    """Recall@K on the targets new to the user (:math:`T_u \\setminus H_u`), in the same list.

    Unlike the *explore* variant of the evaluation, the list is not purged of the
    user's items first: this is the explore part of the list a model really shows.
    Arguments as :func:`repeat_recall_at_k`; ``nan`` for users with no new target.
    """
    return recall_at_k(ranked, _split_targets(targets, seen)[1], k)


def repeat_ratio_at_k(ranked: np.ndarray, targets: Sequence, seen: Sequence,
                      k: int) -> np.ndarray:
    """Share of the top K the user bought before: :math:`|\\mathrm{top}_K(u) \\cap H_u| / K`.

    ``targets`` is not read (the signature is that of the other history metrics). A row
    shorter than K counts its missing ranks as not repeat, as precision does.
    """
    ranked = _top_k(ranked, k)
    if len(ranked) != len(seen):
        raise ValueError(f"{len(ranked)} ranked lists but {len(seen)} histories")
    return _in_rows(ranked, seen).sum(1) / k


#: Metric name -> function ``f(ranked, targets, seen, k)`` of the metrics that also read
#: each user's history (``seen``); :mod:`xsell.evaluation` computes them on tasks that
#: rank the user's own items (the ``all`` variant of grocery data).
HISTORY_METRICS = {
    "repeat_recall": repeat_recall_at_k,
    "explore_recall": explore_recall_at_k,
    "repeat_ratio": repeat_ratio_at_k,
}


# ----------------------------------------------------------------- cross-category


def _categories_of(items: list, item_category: pd.Series) -> np.ndarray:
    """Category of each item id in ``items`` (one vectorised lookup)."""
    return item_category.to_numpy()[_positions(item_category.index, items, "category")]


def _split(flat: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Cut a flat array back into consecutive pieces of the given sizes."""
    return np.split(flat, np.cumsum(sizes)[:-1]) if sizes else []


def categories_per_user(items_per_user: Sequence, item_category: pd.Series) -> list[set]:
    """Set of the categories of each user's items (e.g. of their training history).

    :math:`C_u = \\{c(i) : i \\in H_u\\}`.

    Parameters
    ----------
    items_per_user : sequence of array-like
        Item ids of each user.
    item_category : pandas.Series
        Category of every item, indexed by item id.

    Returns
    -------
    list of set
        One set of categories per user, the ``user_categories`` argument of
        :func:`cross_category_hit_rate_at_k` and :func:`new_category_targets`.
    """
    lists = [list(items) for items in items_per_user]
    # Look every item up at once, then cut the result back into per-user pieces.
    cats = _categories_of([i for items in lists for i in items], item_category)
    return [set(c.tolist()) for c in _split(cats, [len(items) for items in lists])]


def new_category_targets(targets: Sequence, item_category: pd.Series,
                         user_categories: Sequence) -> list[set]:
    """The targets of each user that come from a category the user never bought from.

    :math:`T_u^{\\mathrm{new}} = \\{i \\in T_u : c(i) \\notin C_u\\}`, with
    :math:`C_u` the categories of the user's history.

    Passing these targets to any function of :data:`RANKING_METRICS` gives the
    cross-category version of that metric (e.g. cross-category recall).

    Parameters
    ----------
    targets : sequence of array-like
        Relevant item ids of each user.
    item_category : pandas.Series
        Category of every item, indexed by item id.
    user_categories : sequence of set
        Categories in each user's history (see :func:`categories_per_user`).

    Returns
    -------
    list of set
        One (possibly empty) set of item ids per user.
    """
    if len(targets) != len(user_categories):
        raise ValueError(f"{len(targets)} target sets but {len(user_categories)} "
                         "category sets")
    lists = [list(t) for t in targets]
    cats = _split(_categories_of([i for t in lists for i in t], item_category),
                  [len(t) for t in lists])
    return [{i for i, c in zip(items, item_cats, strict=True) if c not in seen}
            for items, item_cats, seen in zip(lists, cats, user_categories, strict=True)]


def cross_category_hit_rate_at_k(ranked: np.ndarray, targets: Sequence, k: int,
                                 item_category: pd.Series,
                                 user_categories: Sequence) -> np.ndarray:
    """Cross-category HitRate@K: a hit counts only in a category new to the user.

    :math:`\\mathrm{XHR@K}_u = \\mathbb 1[\\mathrm{top}_K(u) \\cap T_u^{\\mathrm{new}}
    \\neq \\emptyset]` with :math:`T_u^{\\mathrm{new}} = \\{i \\in T_u : c(i) \\notin C_u\\}`
    (see :func:`new_category_targets`). Users whose targets all come from categories
    they already buy from have nothing to cross-sell to and get ``nan``.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    targets : sequence of array-like
        Relevant item ids of each user.
    k : int
        Cut-off.
    item_category : pandas.Series
        Category of every item, indexed by item id.
    user_categories : sequence of set
        Categories in each user's history (see :func:`categories_per_user`).

    Returns
    -------
    numpy.ndarray
        One value per user (0 or 1), ``nan`` for users without new-category targets.
    """
    return hit_rate_at_k(ranked, new_category_targets(targets, item_category,
                                                      user_categories), k)


def _category_counts(ranked: np.ndarray, k: int,
                     item_category: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """How many of each user's top-K items fall in each category.

    Returns a ``(n_users, n_categories)`` count matrix and the category names of its
    columns (all categories of ``item_category``, recommended or not).
    """
    top = _top_k(ranked, k)
    # NaN is kept as a category of its own rather than dropped.
    codes, names = pd.factorize(item_category, use_na_sentinel=False)
    cat = codes[_positions(item_category.index, top, "category")]
    n_users, n_cats = len(top), len(names)
    rows = np.repeat(np.arange(n_users), top.shape[1])
    # A 2-D histogram as one bincount over the flat (user, category) cell number.
    flat = np.bincount(rows * n_cats + cat.ravel(), minlength=n_users * n_cats)
    return flat.reshape(n_users, n_cats), pd.Index(names, name="category")


def category_coverage_at_k(ranked: np.ndarray, k: int,
                           item_category: pd.Series) -> np.ndarray:
    """Per user, how many distinct categories the top K spans, relative to the most it could.

    :math:`\\mathrm{CatCov@K}_u = |\\{c(i) : i \\in \\mathrm{top}_K(u)\\}| /
    \\min(K, |\\mathcal C|)`, with :math:`\\mathcal C` all categories of the catalogue,
    so 1 means every slot shows a different category (or every category is shown).
    See :func:`catalogue_category_coverage` for the share of categories shown to anyone.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    k : int
        Cut-off.
    item_category : pandas.Series
        Category of every catalogue item, indexed by item id.

    Returns
    -------
    numpy.ndarray
        One value per user in [0, 1].
    """
    counts, names = _category_counts(ranked, k, item_category)
    return (counts > 0).sum(1) / min(k, len(names))


def catalogue_category_coverage(ranked: np.ndarray, k: int, item_category: pd.Series) -> float:
    """Share of the catalogue's categories that appear in at least one top-K list.

    :math:`|\\bigcup_u \\{c(i) : i \\in \\mathrm{top}_K(u)\\}| / |\\mathcal C|`.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    k : int
        Cut-off.
    item_category : pandas.Series
        Category of every catalogue item, indexed by item id.

    Returns
    -------
    float
    """
    counts, _ = _category_counts(ranked, k, item_category)
    return float((counts.sum(0) > 0).mean())


def exposure_share(ranked: np.ndarray, k: int, item_category: pd.Series) -> pd.Series:
    """Share of all recommended slots that goes to each category.

    :math:`E_c = \\sum_u |\\{i \\in \\mathrm{top}_K(u) : c(i) = c\\}| / \\sum_u
    |\\mathrm{top}_K(u)|`. Compare it with the category's share of purchases to see
    which categories a model over- or under-exposes.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    k : int
        Cut-off.
    item_category : pandas.Series
        Category of every catalogue item, indexed by item id.

    Returns
    -------
    pandas.Series
        Share per category (all catalogue categories, 0 for those never shown),
        largest first; sums to 1.
    """
    counts, names = _category_counts(ranked, k, item_category)
    total = counts.sum(0)
    share = pd.Series(total / max(total.sum(), 1), index=names, name="exposure_share")
    return share.sort_values(ascending=False, kind="stable")


# ----------------------------------------------------------------- beyond accuracy


def catalogue_coverage(ranked: np.ndarray, k: int, n_items: int) -> float:
    """Share of the catalogue recommended to at least one user (aggregate diversity).

    :math:`|\\bigcup_u \\mathrm{top}_K(u)| / |\\mathcal I|`.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    k : int
        Cut-off.
    n_items : int
        Catalogue size :math:`|\\mathcal I|` (e.g. ``Dataset.n_items``).

    Returns
    -------
    float
        In [0, 1].
    """
    return len(np.unique(_top_k(ranked, k))) / n_items


def gini(values: np.ndarray | Sequence[float]) -> float:
    """Gini index of non-negative amounts: 0 when equal, :math:`(n-1)/n` when one has all.

    With the amounts sorted increasingly, :math:`x_{(1)} \\le \\dots \\le x_{(n)}`,
    :math:`G = \\sum_{j=1}^{n} (2j - n - 1)\\, x_{(j)} / (n \\sum_j x_j)`
    (the area between the Lorenz curve and the diagonal, doubled).

    Parameters
    ----------
    values : array-like
        Non-negative amounts (e.g. how often each item is recommended).

    Returns
    -------
    float
        In [0, 1); ``nan`` if all amounts are 0.
    """
    x = np.sort(np.asarray(values, dtype=float).ravel())
    if (x < 0).any():
        raise ValueError("gini needs non-negative values")
    n, total = len(x), x.sum()
    if total == 0:
        return float("nan")
    j = np.arange(1, n + 1)
    return float(((2 * j - n - 1) * x).sum() / (n * total))


def gini_exposure(ranked: np.ndarray, k: int, n_items: int) -> float:
    """Gini index of how often each catalogue item is recommended.

    :math:`G` of :func:`gini` over the exposure counts
    :math:`x_i = |\\{u : i \\in \\mathrm{top}_K(u)\\}|` of all :math:`|\\mathcal I|`
    catalogue items, those never recommended included (:math:`x_i = 0`). 0 means every
    item is shown equally often; values near 1 mean a few items take all the slots.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    k : int
        Cut-off.
    n_items : int
        Catalogue size (e.g. ``Dataset.n_items``).

    Returns
    -------
    float
        In [0, 1).
    """
    _, counts = np.unique(_top_k(ranked, k), return_counts=True)
    if len(counts) > n_items:
        raise ValueError(f"{len(counts)} distinct items recommended but n_items={n_items}")
    # Items never recommended are part of the distribution: they are the inequality.
    return gini(np.r_[counts, np.zeros(n_items - len(counts))])


def _popularity(ranked: np.ndarray, k: int, item_popularity: pd.Series) -> np.ndarray:
    """Training purchase count of every top-K item; items missing from the Series are 0."""
    top = _top_k(ranked, k)
    pos = item_popularity.index.get_indexer(top.ravel()).reshape(top.shape)
    counts = item_popularity.to_numpy(dtype=float)
    return np.where(pos >= 0, counts[pos], 0.0)


def average_popularity_at_k(ranked: np.ndarray, k: int,
                            item_popularity: pd.Series) -> np.ndarray:
    """Mean training popularity (purchase count) of the items in each user's top K.

    :math:`\\mathrm{AvgPop@K}_u = \\frac1K \\sum_{i \\in \\mathrm{top}_K(u)} n_i`, with
    :math:`n_i` the number of training purchases of item :math:`i` (0 for items absent
    from ``item_popularity``).

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    k : int
        Cut-off.
    item_popularity : pandas.Series
        Purchase counts in the training interactions, indexed by item id.

    Returns
    -------
    numpy.ndarray
        One value per user.
    """
    return _popularity(ranked, k, item_popularity).mean(1)


def novelty_at_k(ranked: np.ndarray, k: int, item_popularity: pd.Series) -> np.ndarray:
    """Mean self-information of the items in each user's top K, in bits.

    :math:`\\mathrm{Nov@K}_u = \\frac1K \\sum_{i \\in \\mathrm{top}_K(u)}
    -\\log_2 \\frac{\\max(n_i, 1)}{N}`, with :math:`n_i` the training purchases of item
    :math:`i` and :math:`N = \\sum_j n_j`. An item never bought in training
    (:math:`n_i = 0`, or absent from ``item_popularity``) is treated as bought once,
    the rarest observed level, so its self-information is finite
    (:math:`\\log_2 N`, the maximum) instead of infinite.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    k : int
        Cut-off.
    item_popularity : pandas.Series
        Purchase counts in the training interactions, indexed by item id.

    Returns
    -------
    numpy.ndarray
        One value per user, in bits; higher means less popular (more novel) items.
    """
    total = float(item_popularity.sum())
    if total <= 0:
        raise ValueError("item_popularity sums to 0: no training purchases")
    counts = np.maximum(_popularity(ranked, k, item_popularity), 1.0)
    return (-np.log2(counts / total)).mean(1)


def intra_list_diversity_at_k(ranked: np.ndarray, k: int,
                              item_category: pd.Series) -> np.ndarray:
    """Share of the pairs of items in each user's top K that come from different categories.

    :math:`\\mathrm{ILD@K}_u = \\frac{2}{K(K-1)} \\sum_{r < s} \\mathbb 1[c(i_r) \\neq
    c(i_s)] = 1 - \\sum_c \\frac{m_{uc}(m_{uc}-1)}{K(K-1)}`, with :math:`m_{uc}` the
    number of the user's top-K items in category :math:`c`. 0 = a single category,
    1 = all different.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    k : int
        Cut-off.
    item_category : pandas.Series
        Category of every catalogue item, indexed by item id.

    Returns
    -------
    numpy.ndarray
        One value per user in [0, 1]; ``nan`` when the lists hold fewer than 2 items.
    """
    counts, _ = _category_counts(ranked, k, item_category)
    length = counts.sum(1)
    # Counting same-category pairs per category avoids a K x K comparison per user.
    same = (counts * (counts - 1)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(length > 1, 1 - same / (length * (length - 1)), np.nan)


def embedding_diversity_at_k(ranked: np.ndarray, k: int, embeddings: np.ndarray,
                             item_index: pd.Index) -> np.ndarray:
    """Mean pairwise cosine distance between the embeddings of each user's top-K items.

    :math:`\\mathrm{ILD^{emb}@K}_u = \\frac{1}{K(K-1)} \\sum_{r \\neq s}
    \\bigl(1 - \\cos(\\mathbf e_{i_r}, \\mathbf e_{i_s})\\bigr)`.
    With unit vectors :math:`\\mathbf v = \\mathbf e / \\lVert \\mathbf e \\rVert`,
    :math:`\\sum_{r \\neq s} \\mathbf v_r^\\top \\mathbf v_s = \\lVert \\sum_r \\mathbf v_r
    \\rVert^2 - \\sum_r \\lVert \\mathbf v_r \\rVert^2`, which is how it is computed
    (no K x K matrix per user). A zero embedding is left as a zero vector: it has
    similarity 0, distance 1, to everything.

    Parameters
    ----------
    ranked : numpy.ndarray
        Recommended item ids, shape ``(n_users, >=k)``, best first.
    k : int
        Cut-off.
    embeddings : numpy.ndarray
        One row per item, shape ``(n_items, dim)``.
    item_index : pandas.Index
        Item id of each row of ``embeddings`` (e.g. ``Dataset.item_index``).

    Returns
    -------
    numpy.ndarray
        One value per user in [0, 2] (0 = identical directions, 1 = orthogonal on
        average); ``nan`` when the lists hold fewer than 2 items.
    """
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or len(emb) != len(item_index):
        raise ValueError(f"embeddings of shape {emb.shape} do not match "
                         f"{len(item_index)} item ids")
    pos = _positions(pd.Index(item_index), _top_k(ranked, k), "embedding")
    n_users, length = pos.shape
    if length < 2:
        return np.full(n_users, np.nan)
    # Work on the recommended items only: usually a small part of the catalogue.
    used, col = np.unique(pos, return_inverse=True)
    col = col.reshape(pos.shape)
    vectors = emb[used]
    sq_norm = np.einsum("ij,ij->i", vectors, vectors, dtype=float)
    inv_norm = np.divide(1.0, np.sqrt(sq_norm), out=np.zeros_like(sq_norm),
                         where=sq_norm > 0)
    # Each user's sum of unit vectors, as a sparse (users x used items) matrix holding
    # 1/||e_i|| at the user's items, times the raw embeddings: this never builds the
    # (users, K, dim) array of gathered vectors.
    rows = np.repeat(np.arange(n_users), length)
    weights = sparse.csr_matrix((inv_norm[col].ravel(), (rows, col.ravel())),
                                shape=(n_users, len(used)))
    summed = np.asarray(weights @ vectors, dtype=float)
    self_sim = (sq_norm > 0)[col].sum(1)  # v.v = 1 for each item, 0 for zero embeddings
    pair_sim = (summed**2).sum(1) - self_sim
    return 1 - pair_sim / (length * (length - 1))


#: Per-user beyond-accuracy metrics that need only the lists and item metadata, as
#: name -> ``(function, metadata)``. Each function is called as ``function(ranked, k, metadata)`` where ``metadata`` names
#: what to pass: ``"item_category"`` (a Series of categories, e.g.
#: ``Dataset.item_category(level)``) or ``"item_popularity"`` (a Series of training
#: purchase counts). :func:`embedding_diversity_at_k` is not listed: it needs two
#: arguments (embeddings and their item ids).
BEYOND_ACCURACY_METRICS: dict[str, tuple[Callable[..., np.ndarray], str]] = {
    "novelty": (novelty_at_k, "item_popularity"),
    "avg_popularity": (average_popularity_at_k, "item_popularity"),
    "category_coverage": (category_coverage_at_k, "item_category"),
    "category_diversity": (intra_list_diversity_at_k, "item_category"),
}


# ----------------------------------------------------------------- user groups


@dataclass(frozen=True)
class GroupGap:
    """Per-group means of a per-user metric and the gap between groups.

    Attributes
    ----------
    mean : pandas.Series
        Mean of the metric per group (``nan`` for a group with no defined values).
    count : pandas.Series
        Number of users per group with a defined (non-``nan``) value.
    gap : float
        Largest minus smallest group mean.
    """

    mean: pd.Series
    count: pd.Series
    gap: float


def group_gap(values: np.ndarray | Sequence[float],
              groups: np.ndarray | pd.Series | Sequence[Hashable]) -> GroupGap:
    """Compare a per-user metric between user groups (e.g. light vs heavy shoppers).

    :math:`\\bar m_g = \\operatorname{mean}\\{m_u : u \\in g, m_u \\text{ defined}\\}` and
    :math:`\\mathrm{gap} = \\max_g \\bar m_g - \\min_g \\bar m_g`; ``nan`` values (users
    for whom the metric is undefined) are ignored.

    Parameters
    ----------
    values : array-like
        One metric value per user (e.g. the output of :func:`ndcg_at_k`).
    groups : array-like
        Group label of each user, same length.

    Returns
    -------
    GroupGap
        Means and counts per group (in order of first appearance) and the gap.
    """
    values = np.asarray(values, dtype=float)
    groups = np.asarray(groups)
    if values.shape != groups.shape or values.ndim != 1:
        raise ValueError(f"values {values.shape} and groups {groups.shape} must be 1-D "
                         "and of the same length")
    defined = ~np.isnan(values)
    stats = (pd.Series(values[defined]).groupby(groups[defined]).agg(["mean", "count"])
             .reindex(pd.unique(groups)))
    mean = stats["mean"].rename("mean").rename_axis("group")
    count = stats["count"].fillna(0).astype(int).rename("count").rename_axis("group")
    gap = float(mean.max() - mean.min()) if mean.notna().any() else float("nan")
    return GroupGap(mean=mean, count=count, gap=gap)
