"""Cleaning counts what it removes; splits are deterministic and temporal splits never leak."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xsell.data.cleaning import clean, k_core, outlier_users
from xsell.data.dataset import Dataset
from xsell.data.splits import (
    global_time_split,
    leave_last_basket_out,
    leave_random_basket_out,
    random_split,
)


@pytest.fixture(scope="module")
def shop() -> Dataset:
    """A random shop: 60 users, 40 items, ISO timestamps, one bot-like user."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        n_baskets = rng.integers(1, 9) if u else 40  # user 0 is the bot
        start = pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(rng.integers(0, 60)))
        for b in range(n_baskets):
            size = 30 if u == 0 else int(rng.integers(1, 6))
            for item in rng.choice(40, size=size, replace=False):
                rows.append((f"u{u}", f"i{item}", f"u{u}b{b}",
                             start + pd.Timedelta(days=7 * b)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "basket_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(40)],
                          "title": [f"Item {i}" for i in range(40)],
                          "category": [f"d{i % 4} > a{i % 8}" for i in range(40)]})
    return Dataset.from_frames(inter, items)


def test_cleaning_report_counts(shop):
    cleaned, report = clean(shop, min_user_baskets=3, max_user_mad=3.0, min_item_support=2)
    table = report.to_frame().set_index("rule")
    assert table.loc["outlier users", "users_removed"] == 1  # the bot
    assert "u0" not in set(cleaned.interactions.user_id)
    n_short = (shop.interactions.groupby("user_id").seq.max() + 1 < 3).sum()
    assert table.loc["short histories", "users_removed"] == n_short
    assert report.before["rows"] - table["rows_removed"].sum() == cleaned.n_interactions
    assert cleaned.interactions.groupby("user_id").seq.max().min() >= 2
    assert shop.n_users == 60  # input untouched


def test_outlier_rule_is_robust(shop):
    assert list(outlier_users(shop.interactions, 3.0)) == ["u0"]


def test_k_core(shop):
    core = k_core(shop.interactions, 12)
    assert core.groupby("user_id").size().min() >= 12
    assert core.groupby("item_id").size().min() >= 12


def parts(split):
    return [set(map(tuple, p[["user_id", "item_id", "basket_id"]].to_numpy()))
            for p in (split.train, split.validation, split.test)]


def test_random_split_is_deterministic_and_disjoint(shop):
    a, b, c = random_split(shop, seed=1), random_split(shop, seed=1), random_split(shop, seed=2)
    assert parts(a) == parts(b) and parts(a) != parts(c)
    tr, va, te = parts(a)
    assert not (tr & va or tr & te or va & te)
    assert len(tr) + len(va) + len(te) == shop.n_interactions
    shares = a.sizes()["share"].to_numpy()
    assert np.allclose(shares, [0.7, 0.1, 0.2], atol=0.01)
    with pytest.raises(ValueError, match="sum"):
        random_split(shop, ratios=(0.5, 0.1, 0.1))


def test_leave_last_basket_out_has_no_future_in_train(shop):
    split = leave_last_basket_out(shop)
    train_last = split.train.groupby("user_id").seq.max()
    for part in (split.validation, split.test):
        first = part.groupby("user_id").seq.min()
        assert (train_last.reindex(first.index) < first).all()
    # Test is each user's last basket, validation the one before.
    last = shop.interactions.groupby("user_id").seq.max()
    assert (split.test.groupby("user_id").seq.max() == last.reindex(
        split.test.user_id.unique())).all()
    assert (split.validation.groupby("user_id").seq.max() + 1 == split.test.groupby(
        "user_id").seq.max().reindex(split.validation.user_id.unique())).all()
    assert split.test.groupby("user_id").basket_id.nunique().max() == 1
    assert parts(split) == parts(leave_last_basket_out(shop))


def test_leave_last_basket_out_needs_history(shop):
    split = leave_last_basket_out(shop, min_train_baskets=2)
    n = shop.interactions.groupby("user_id").seq.max() + 1
    assert set(split.test.user_id) == set(n[n >= 3].index)
    assert set(split.validation.user_id) == set(n[n >= 4].index)


def test_global_time_split_has_no_future_in_train(shop):
    split = global_time_split(shop, validation_frac=0.15, test_frac=0.15)
    assert split.train.timestamp.max() < split.validation.timestamp.min()
    assert split.validation.timestamp.max() < split.test.timestamp.min()
    # A basket is never divided between parts.
    owners = pd.concat([p[["basket_id"]].drop_duplicates().assign(part=i) for i, p in
                        enumerate((split.train, split.validation, split.test))])
    assert owners.basket_id.is_unique


def test_global_time_split_needs_timestamps(items_frame):
    ds = Dataset.from_frames(pd.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"]}),
                             items_frame)
    with pytest.raises(ValueError, match="needs a 'timestamp' column"):
        global_time_split(ds)


def test_random_basket_out_sees_the_future(shop):
    split = leave_random_basket_out(shop, seed=0)
    assert split.test.groupby("user_id").basket_id.nunique().max() == 1
    later = split.train.groupby("user_id").seq.max().reindex(split.test.user_id.unique())
    assert (later > split.test.groupby("user_id").seq.max()).any()


def test_future_rows_in_train(shop):
    assert leave_last_basket_out(shop).future_rows_in_train() == 0
    assert global_time_split(shop).future_rows_in_train() == 0
    assert random_split(shop, seed=0).future_rows_in_train() > 0
