"""Ready-to-read answers for a person: a user's recommendations or a cart's complements,
with titles, departments and "because you bought" explanations (the CLI prints these).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xsell.cross_sell.completion import BasketCompleter, as_ids, build_cart_history
from xsell.cross_sell.explain import Explainer
from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.models.base import Recommender


def _describe(dataset: Dataset, ids) -> pd.DataFrame:
    items = dataset.items.set_index(S.ITEM).reindex(ids)
    return pd.DataFrame({"title": items[S.TITLE].to_numpy() if S.TITLE in items else ids,
                         "department": dataset.item_category(0).reindex(ids).to_numpy()},
                        index=pd.Index(ids, name=S.ITEM))


def recommend_for_user(model: Recommender, user, k: int = 10,
                       explainer: Explainer | None = None) -> pd.DataFrame:
    """Top-``k`` new items for a user of the model's training data, explained.

    A user with no purchase in the data (a new customer, or an id the data does not
    hold) gets the items most users bought, and ``attrs["fallback"]`` says so.

    Returns
    -------
    pandas.DataFrame
        Rank-ordered: ``title``, ``department``, ``new_department`` and, with an
        explainer, ``because`` (title), ``evidence`` and ``contribution``.
    """
    data = model.dataset_
    user = as_ids([user], data.user_index)[0]
    past = data.interactions[data.interactions[S.USER] == user]
    fallback = None
    if past.empty:  # a user the data holds no purchase of
        buyers = data.interactions.drop_duplicates([S.USER, S.ITEM])[S.ITEM].value_counts()
        ids = buyers.index[:k].to_numpy()
        fallback = (f"user {user!r} has no purchase history in the data: cold-start "
                    f"fallback to the {len(ids)} items most users bought")
    else:
        ids = model.recommend([user], k=k, exclude_seen=True)[0]
    out = _describe(data, ids)
    bought = set(data.item_category(0).reindex(past[S.ITEM]).tolist())
    out["new_department"] = [d not in bought for d in out["department"]]
    if explainer is not None and not past.empty:
        counts = past[S.ITEM].value_counts()
        why = explainer.explain(counts.index.to_numpy(), ids, counts.to_numpy())
        out["because"] = _describe(data, why["because"].to_numpy())["title"].to_numpy()
        out["evidence"] = why["evidence"].to_numpy()
        out["contribution"] = why["contribution"].round(3).to_numpy()
    out.attrs["fallback"] = fallback
    return out


def complete_cart(completer: BasketCompleter, items, user=None, k: int = 10,
                  explainer: Explainer | None = None) -> pd.DataFrame:
    """Top-``k`` complements of a cart from departments it lacks, explained by cart items.

    Unknown item or user ids raise ``KeyError`` naming them.
    """
    data = completer.dataset_
    ids = completer.complete(items, user=user, k=k)
    out = _describe(data, ids)
    if explainer is not None:
        cart = build_cart_history(data, items, user)
        cart = cart[cart[S.SEQ] == cart[S.SEQ].max()][S.ITEM].to_numpy()
        why = explainer.explain(cart, ids)
        out["because"] = _describe(data, why["because"].to_numpy())["title"].to_numpy()
        out["evidence"] = why["evidence"].to_numpy()
        out["contribution"] = why["contribution"].round(3).to_numpy()
    return out


def cart_summary(dataset: Dataset, items) -> pd.DataFrame:
    """Titles and departments of cart items (ids checked)."""
    ids = as_ids(list(np.atleast_1d(items)), dataset.item_index)
    dataset.item_codes(ids)
    return _describe(dataset, ids)
