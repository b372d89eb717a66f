"""Review-style logs made from basket logs: each user's first purchase of each product.

Product reviews, and the logs of most shops that are not grocers, hold one item per
event, almost never the same item twice, and the order of events matters. Models tuned
on grocery baskets -- where most of a basket is re-purchases -- can do badly on such
data, so the package is developed and benchmarked on both. :func:`first_purchases`
turns any basket log into a review-style one: for every (user, item) pair the first
purchase is kept, and each becomes an event of its own, in time order (within one
basket by the order of adding to the cart where the data records it).
"""

from __future__ import annotations

import numpy as np

from xsell.data import schema as S
from xsell.data.dataset import Dataset

#: The column that orders items within a basket, where a loader provides it (Instacart).
CART_ORDER = "add_to_cart_order"


def first_purchases(dataset: Dataset, min_events: int = 1) -> Dataset:
    """One event per (user, item): the first purchase, each its own basket, in time order.

    Parameters
    ----------
    dataset : Dataset
        A basket log (canonical interactions).
    min_events : int
        Users with fewer events are left out.

    Returns
    -------
    Dataset
        Same catalogue; interactions with ``basket_id`` ``"<original basket>/<n>"``,
        ``seq`` the event's position in the user's history, ``timestamp`` (when the
        source has one) that of the original basket, and the source's other columns.
    """
    inter = dataset.interactions
    order = [S.USER, S.SEQ] + ([CART_ORDER] if CART_ORDER in inter else [])
    inter = inter.sort_values(order, kind="stable")
    first = inter.drop_duplicates([S.USER, S.ITEM], keep="first").copy()
    first[S.SEQ] = first.groupby(S.USER, sort=False).cumcount().astype(np.int64)
    first[S.BASKET] = first[S.BASKET].astype(str) + "/" + first[S.SEQ].astype(str)
    if min_events > 1:
        counts = first.groupby(S.USER)[S.ITEM].transform("size")
        first = first[counts >= min_events]
    first = first.drop(columns=[c for c in ("reordered",) if c in first])
    first = first.sort_values([S.USER, S.SEQ], kind="stable").reset_index(drop=True)
    return Dataset(first, dataset.items, name=f"{dataset.name} (first purchases)",
                   info={**dataset.info, "review_style": "first purchase of each item, "
                         "one per event"})
