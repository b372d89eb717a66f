"""Ready-to-read answers for a person: a user's recommendations or a cart's complements,
with titles, departments and "because you bought" explanations (the CLI prints these).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from xsell.cross_sell.completion import (
    BasketCompleter,
    as_ids,
    build_cart_history,
)
from xsell.cross_sell.explain import Explainer
from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.models.base import Recommender, check_count


def _describe(dataset: Dataset, ids) -> pd.DataFrame:
    # By catalogue position, not by re-indexing the item table (a served list's cost).
    ids = np.asarray(ids)
    codes = dataset.item_index.get_indexer(ids)
    known = codes >= 0

    def column(values: pd.Series) -> np.ndarray:
        out = np.full(len(ids), np.nan, dtype=object)
        out[known] = values.iloc[codes[known]].to_numpy()  # only these rows converted
        return out

    titles = column(dataset.items[S.TITLE]) if S.TITLE in dataset.items else ids
    return pd.DataFrame({"title": titles, "department": column(dataset.item_category(0))},
                        index=pd.Index(ids, name=S.ITEM))


def recommend_for_user(model: Recommender, user=None, k: int = 10,
                       explainer: Explainer | None = None, *, history=None,
                       interactions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Top-``k`` new items for a user of the model's training data, explained.

    Fewer than ``k`` come back when the catalogue holds fewer items the user has not
    bought.

    A new customer is served explicitly: with ``history`` (the item ids they bought, one
    basket), the model ranks for that history; with neither ``user`` nor ``history``, they
    get the items most users bought, and ``attrs["fallback"]`` says so. A ``user`` the
    training data does not hold raises ``KeyError`` naming it -- a typo is not mistaken
    for a new customer. ``interactions`` is a shopper's whole history as interaction
    rows (e.g. their training rows and the baskets bought since, as a server keeps
    them): the model scores from it, nothing is refitted.

    Returns
    -------
    pandas.DataFrame
        Rank-ordered: ``title``, ``department``, ``new_department`` and, with an
        explainer, ``because`` (title), ``evidence`` and ``contribution``.
    """
    data = model.dataset_
    check_count(k)
    if sum(x is not None for x in (user, history, interactions)) > 1:
        raise ValueError("give one of a user, a purchase history or interaction rows")
    fallback = None
    if interactions is not None:
        past = interactions
        ids = model.recommend([interactions[S.USER].iloc[0]], k=k, exclude_seen=True,
                              history=interactions)[0]
    elif history is not None:
        rows = build_cart_history(data, history)  # raises, naming unknown items
        past = rows
        ids = model.recommend([rows[S.USER].iloc[0]], k=k, exclude_seen=True, history=rows)[0]
    elif user is None:  # a new customer with no history: the most bought items
        return popular_for_new_user(data, k)
    else:
        user = as_ids([user], data.user_index)[0]
        data.user_codes([user])  # raises, naming an unknown user
        past = data.user_interactions(user)
        ids = model.recommend([user], k=k, exclude_seen=True)[0]
    out = describe_list(data, ids, past, explainer)
    out.attrs["fallback"] = fallback
    return out


def describe_list(data: Dataset, ids, past: pd.DataFrame,
                  explainer: Explainer | None = None) -> pd.DataFrame:
    """A shopper's ranked item ids as :func:`recommend_for_user` shows them.

    Items in ``past`` (the shopper's interaction rows) are dropped -- a small catalogue pads
    a list with them, ranked last --; each item gets its ``title``, ``department`` and
    ``new_department`` and, with an ``explainer``, the purchase that supports it.
    """
    ids = np.asarray(ids)
    ids = ids[~np.isin(ids, past[S.ITEM].unique())]
    out = _describe(data, ids)
    bought = set(data.item_category(0).reindex(past[S.ITEM]).tolist())
    out["new_department"] = [d not in bought for d in out["department"]]
    if explainer is not None and not past.empty:
        counts = past[S.ITEM].value_counts()
        why = explainer.explain(counts.index.to_numpy(), ids, counts.to_numpy())
        out["because"] = _describe(data, why["because"].to_numpy())["title"].to_numpy()
        out["evidence"] = why["evidence"].to_numpy()
        out["contribution"] = why["contribution"].round(3).to_numpy()
    return out


def shopper_page(dataset: Dataset, user, rows: Mapping[str, np.ndarray | pd.DataFrame]
                 ) -> pd.DataFrame:
    """A shop page of several recommendation rows for one user, each item with its why.

    Parameters
    ----------
    dataset : Dataset
        The data the rows were fitted on (titles, departments, the user's history).
    user
        The user the rows are for.
    rows : mapping of str to numpy.ndarray or pandas.DataFrame
        Row name -> item ids, best first, or a frame of :func:`recommend_for_user`
        (whose ``because`` column is kept).

    Returns
    -------
    pandas.DataFrame
        Indexed by (row, position from 1): ``item_id``, ``title``, ``department``,
        ``why`` -- the supporting purchase of an explained row, otherwise "bought Nx"
        for an item the user has bought before (empty for one they have not).
    """
    history = dataset.interactions[dataset.interactions[S.USER] == user]
    counts = history[S.ITEM].value_counts()
    frames = []
    for name, found in rows.items():
        explained = isinstance(found, pd.DataFrame)
        ids = np.asarray(found.index if explained else found)
        if explained and "because" in found:
            why = found["because"].fillna("").astype(str).to_numpy()
        else:
            why = [f"bought {int(counts[i])}x" if i in counts.index else "" for i in ids]
        frame = _describe(dataset, ids).reset_index()
        frame["why"] = why
        frame.index = pd.MultiIndex.from_arrays([[name] * len(ids), np.arange(1, len(ids) + 1)],
                                                names=["row", "#"])
        frames.append(frame)
    if not frames:
        raise ValueError("give at least one row")
    return pd.concat(frames)


def popular_for_new_user(dataset: Dataset, k: int = 10) -> pd.DataFrame:
    """The ``k`` items most users bought, for a new customer with no purchase history
    (no model needed); ``attrs["fallback"]`` says so."""
    check_count(k)
    buyers = dataset.interactions.drop_duplicates([S.USER, S.ITEM])[S.ITEM].value_counts()
    ids = buyers.index[:k].to_numpy()
    out = _describe(dataset, ids)
    out["new_department"] = True
    out.attrs["fallback"] = (f"a new customer with no purchase history: cold-start fallback "
                             f"to the {len(ids)} items most users bought")
    return out


def complete_cart(completer: BasketCompleter, items, user=None, k: int = 10,
                  explainer: Explainer | None = None) -> pd.DataFrame:
    """Top-``k`` complements of a cart from departments it lacks, explained by cart items.

    Unknown item or user ids raise ``KeyError`` naming them; a cart that already
    covers every department raises ``ValueError``
    (:func:`~xsell.cross_sell.completion.departments_left`).
    """
    data = completer.dataset_
    check_count(k)
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
