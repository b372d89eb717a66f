"""Which purchases count: the all / explore / cross-category rule, in one place.

A held-out basket is judged in one of three *variants*:

* ``"all"`` -- every item of the basket (re-purchases included);
* ``"explore"`` -- only items new to the user (never bought in the history);
* ``"cross-category"`` -- only new items from a department new to the user.

The evaluation protocols (:mod:`xsell.evaluation`), the hybrids' objectives
(:mod:`xsell.models.hybrid`) and the tuning targets of the comparisons
(:mod:`xsell.experiments`) all read this module: the target rule
(:func:`select_targets`), the headline metric of each variant (:data:`HEADLINE`),
which variant's validation targets tune which (:data:`TUNED_ON`), and whether items the
user already has may be ranked (:func:`seen_items_excluded`, which follows the data's
:func:`repeat_rate`).

Some models take the rule as a parameter of their own, under two names: a hybrid's
``objective`` is a variant, and ``new_only`` (the basket completer, the basket-completion
task, the category control) is the explore rule's "items new to the user". The
two-tower's ``targets="new"`` says what it *trains* on: the same rule, applied to its
training baskets.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.data.dataset import Dataset

#: A variant's name.
Variant = Literal["all", "explore", "cross-category"]

#: The variants, in the order tables show them.
VARIANTS: tuple[str, ...] = ("all", "explore", "cross-category")

#: The headline metric of each variant as a (metric, k) pair -- NDCG@10 when the whole
#: basket counts, Recall@20 for discovery (few targets per user, so a longer list is fairer).
HEADLINE: dict[str, tuple[str, int]] = {"all": ("ndcg", 10), "explore": ("recall", 20),
                                        "cross-category": ("recall", 20)}

#: Whose validation targets choose a variant's hyperparameters. The cross-category
#: variant has too few validation users to tune on, and basket completion (a protocol
#: of its own) asks for new items, so both reuse the explore choice.
TUNED_ON: dict[str, str] = {"all": "all", "explore": "explore", "cross-category": "explore",
                            "basket-completion": "explore", "cold-start": "all"}


def headline_metrics() -> list[tuple[str, str, int]]:
    """(variant, metric, k) of every variant's headline number, in table order."""
    return [(v, *HEADLINE[v]) for v in VARIANTS]


def check_variant(variant: str) -> str:
    """``variant`` itself, or a ValueError listing the variants."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return variant


def new_items_only(variant: str) -> bool:
    """Whether the variant counts only items new to the user."""
    return check_variant(variant) != "all"


def tuning_target(variant: str) -> tuple[str, str, int]:
    """(variant tuned on, metric, k) for a variant or protocol name (default: all)."""
    tuned = TUNED_ON.get(variant, "all")
    return (tuned, *HEADLINE[tuned])


#: Training repeat rate below which a log counts as review-style (one item per event,
#: almost never the same item twice): on the ``all`` variant the items a user already
#: has are then removed from the ranking, since they would fill the list although they
#: are (almost) never a target. Grocery baskets repeat far more (Instacart about 0.6);
#: each user's first purchase of each item (:func:`xsell.data.review_style.first_purchases`)
#: repeats never (0).
REPEAT_RATE_THRESHOLD: float = 0.1


def repeat_rate(interactions: pd.DataFrame) -> float:
    """Share of purchases, after each user's first basket, of an item the user had before.

    Every (user, basket, item) row in a basket after the user's first counts once; it is
    a *repeat* when the same user bought the item in an earlier basket (a repeat within
    one basket is not). Pooled over users, so heavy buyers weigh more.

    Parameters
    ----------
    interactions : pandas.DataFrame
        Rows with ``user_id``, ``item_id`` and ``seq``.

    Returns
    -------
    float
        In [0, 1]; ``nan`` when no user has a second basket (no evidence either way).
    """
    rows = interactions[[S.USER, S.ITEM, S.SEQ]].drop_duplicates()
    first_basket = rows.groupby(S.USER)[S.SEQ].transform("min").to_numpy()
    first_purchase = rows.groupby([S.USER, S.ITEM])[S.SEQ].transform("min").to_numpy()
    seq = rows[S.SEQ].to_numpy()
    later = seq > first_basket
    if not later.any():
        return float("nan")
    return float(np.mean(seq[later] > first_purchase[later]))


def seen_items_excluded(variant: str, rate: float, exclude_seen: bool | None = None) -> bool:
    """Whether a task removes the items of the user's history from the ranking.

    Parameters
    ----------
    variant : {"all", "explore", "cross-category"}
        ``explore`` and ``cross-category`` always remove them: their targets are new
        items, so an item the user has can never be one.
    rate : float
        The training :func:`repeat_rate`. On ``all``, seen items are removed when it is
        below :data:`REPEAT_RATE_THRESHOLD` (``nan``, no evidence: kept).
    exclude_seen : bool, optional
        The user's explicit choice for ``all``, which overrides the repeat rate.
    """
    if new_items_only(variant):
        return True
    if exclude_seen is not None:
        return bool(exclude_seen)
    return bool(rate < REPEAT_RATE_THRESHOLD)


def select_targets(heldout: pd.DataFrame, history: pd.DataFrame, dataset: Dataset,
                   variant: str, key: str = S.USER, level: int = 0) -> pd.Series:
    """Distinct target items per key of held-out rows, by variant.

    Parameters
    ----------
    heldout : pandas.DataFrame
        The held-out rows (``key`` and ``item_id``).
    history : pandas.DataFrame
        What each key had bought before (``key`` and ``item_id``).
    dataset : Dataset
        Gives the items' categories.
    variant : {"all", "explore", "cross-category"}
        The rule (module docstring).
    key : str
        The column naming a test point (the user, or a rolling-origin key).
    level : int
        Category level of the cross-category rule (0 = department).

    Returns
    -------
    pandas.Series
        Arrays of item ids indexed by key (keys without a target are absent).
    """
    check_variant(variant)
    held = heldout[[key, S.ITEM]].drop_duplicates()
    if new_items_only(variant):
        bought = history[[key, S.ITEM]].drop_duplicates().assign(_old=True)
        held = held.merge(bought, on=[key, S.ITEM], how="left")
        held = held[held["_old"].isna()].drop(columns="_old")
    if variant == "cross-category":
        cat = dataset.item_category(level)
        known = history[[key]].assign(_cat=cat.reindex(history[S.ITEM]).to_numpy())
        known = known.drop_duplicates().assign(_old=True)
        held = held.assign(_cat=cat.reindex(held[S.ITEM]).to_numpy())
        held = held.merge(known, on=[key, "_cat"], how="left")
        held = held[held["_old"].isna()]
    return held.groupby(key, sort=True)[S.ITEM].unique()
