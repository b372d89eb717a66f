"""Review-style logs made from basket logs (xsell.data.review_style)."""

from __future__ import annotations

import numpy as np

from xsell.data import schema as S
from xsell.data.review_style import first_purchases
from xsell.data.synthetic import make_synthetic_shop


def test_first_purchases_keep_one_event_per_user_item_in_time_order():
    shop = make_synthetic_shop(n_users=50, seed=1)
    log = first_purchases(shop)
    inter, src = log.interactions, shop.interactions
    assert not inter.duplicated([S.USER, S.ITEM]).any()  # no repeats at all
    assert len(inter) == len(src.drop_duplicates([S.USER, S.ITEM]))
    # One item per event, events numbered 0.. in order, each at its first purchase.
    assert (inter.groupby([S.USER, S.BASKET]).size() == 1).all()
    for user, part in inter.groupby(S.USER):
        assert np.array_equal(part[S.SEQ].to_numpy(), np.arange(len(part)))
        mine = src[src[S.USER] == user]
        first_seq = mine.groupby(S.ITEM)[S.SEQ].min()
        assert np.all(np.diff(first_seq.reindex(part[S.ITEM]).to_numpy()) >= 0)
    assert log.items is shop.items and log.n_users == shop.n_users


def test_min_events_drops_short_histories():
    shop = make_synthetic_shop(n_users=50, seed=1)
    counts = first_purchases(shop).interactions.groupby(S.USER).size()
    cut = int(counts.median())
    kept = first_purchases(shop, min_events=cut).interactions.groupby(S.USER).size()
    assert (kept >= cut).all() and len(kept) == int((counts >= cut).sum())
