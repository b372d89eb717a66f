"""Descriptive statistics of purchase logs: the numbers behind the data chapter's plots."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.data.dataset import Dataset


def basket_sizes(dataset: Dataset) -> pd.Series:
    """Number of items in every basket."""
    return dataset.interactions.groupby([S.USER, S.BASKET], sort=False).size().rename("size")


def concentration_curve(counts: pd.Series) -> pd.DataFrame:
    """Share of all interactions covered by the most active x% of entities (a Lorenz curve).

    Returns
    -------
    pandas.DataFrame
        Columns ``entity_share`` and ``interaction_share``, from (0, 0) to (1, 1).
    """
    c = np.sort(counts.to_numpy())[::-1].astype(float)
    return pd.DataFrame({"entity_share": np.r_[0.0, np.arange(1, len(c) + 1) / len(c)],
                         "interaction_share": np.r_[0.0, np.cumsum(c) / c.sum()]})


def top_share(counts: pd.Series, fraction: float) -> float:
    """Share of interactions owned by the top ``fraction`` of entities."""
    c = np.sort(counts.to_numpy())[::-1]
    n = max(1, int(round(fraction * len(c))))
    return float(c[:n].sum() / c.sum())


def category_shares(dataset: Dataset, level: int = 0) -> pd.Series:
    """Share of interactions per category at ``level``, largest first."""
    return dataset.interaction_category(level).value_counts(normalize=True).rename("share")


def category_copurchase(dataset: Dataset, level: int = 0,
                        adjust_for_basket_size: bool = False) -> pd.DataFrame:
    """Lift of two categories appearing in the same basket.

    :math:`\\mathrm{lift}(A,B) = P(A \\wedge B) / E[A \\wedge B]` over baskets; 1 means
    "as often as chance", above 1 "bought together more often than chance".

    The plain expectation :math:`P(A)P(B)` ignores that big baskets touch many categories
    at once, which lifts nearly every pair above 1. With ``adjust_for_basket_size`` the
    expectation is instead computed per basket: a basket of :math:`n` items drawn
    independently contains category :math:`A` with probability
    :math:`q_A(n) = 1-(1-p_A)^n`, where :math:`p_A` is :math:`A`'s share of all purchases,
    so :math:`E[A \\wedge B] = \\operatorname{mean}_b\\, q_A(n_b)\\,q_B(n_b)`.
    The diagonal is ``nan`` (a category always co-occurs with itself).
    """
    cats = dataset.interaction_category(level)
    basket = dataset.interactions.groupby([S.USER, S.BASKET], sort=False).ngroup()
    counts = pd.crosstab(basket, cats)
    present = counts.clip(upper=1).to_numpy(dtype=float)
    joint = present.T @ present / len(present)
    if adjust_for_basket_size:
        share = counts.to_numpy().sum(0) / counts.to_numpy().sum()
        size = counts.to_numpy().sum(1, keepdims=True)
        q = 1.0 - (1.0 - share[None, :]) ** size
        expected = q.T @ q / len(q)
    else:
        p = np.diag(joint)
        expected = np.outer(p, p)
    values = joint / expected
    np.fill_diagonal(values, np.nan)
    return pd.DataFrame(values, index=counts.columns, columns=counts.columns)


def new_category_baskets(dataset: Dataset, level: int = 0) -> pd.DataFrame:
    """For every basket after a user's first: does it reach a category never bought before?

    Returns
    -------
    pandas.DataFrame
        One row per basket with ``user_id``, ``seq``, ``n_new`` (categories new to the
        user in this basket), ``has_new`` and ``is_last`` (the user's last basket -- the
        one a next-basket test set would hold).
    """
    inter = dataset.interactions[[S.USER, S.SEQ]].assign(cat=dataset.interaction_category(level))
    first_seen = inter.groupby([S.USER, "cat"])[S.SEQ].min().rename("first_seq").reset_index()
    per_basket = inter[[S.USER, S.SEQ]].drop_duplicates()
    new = first_seen[first_seen["first_seq"] > 0].groupby([S.USER, "first_seq"]).size()
    per_basket = per_basket[per_basket[S.SEQ] > 0].copy()
    key = pd.MultiIndex.from_frame(per_basket[[S.USER, S.SEQ]])
    per_basket["n_new"] = new.reindex(key).fillna(0).astype(int).to_numpy()
    per_basket["has_new"] = per_basket["n_new"] > 0
    last = dataset.interactions.groupby(S.USER)[S.SEQ].max()
    per_basket["is_last"] = per_basket[S.SEQ].to_numpy() == per_basket[S.USER].map(last).to_numpy()
    return per_basket.reset_index(drop=True)


def repeat_share(dataset: Dataset) -> float:
    """Share of interactions (after a user's first basket) re-buying an item bought before."""
    inter = dataset.interactions
    first = inter.groupby([S.USER, S.ITEM])[S.SEQ].transform("min")
    later = inter[S.SEQ] > 0
    return float((first[later] < inter.loc[later, S.SEQ]).mean())
