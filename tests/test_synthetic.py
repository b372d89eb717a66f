"""The synthetic shop: determinism, format, realistic shape and the planted structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.data.synthetic import (
    AISLES,
    DEPARTMENTS,
    PLANTED_COMPLEMENTS,
    generate_shop_frames,
    make_catalogue,
    make_synthetic_shop,
    planted_complement_pairs,
)


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return make_synthetic_shop(n_users=1000, seed=0)


# ---------------------------------------------------------------------------- helpers


def basket_aisles(ds: Dataset) -> pd.DataFrame:
    """One row per (basket, aisle) present in the basket."""
    frame = pd.DataFrame({"basket": ds.interactions[S.BASKET],
                          "aisle": ds.interaction_category(1).to_numpy()})
    return frame.drop_duplicates()


def complement_lift(ds: Dataset, trigger: str, complement: str) -> float:
    """P(complement aisle in basket | trigger aisle in basket) / P(complement aisle in basket)."""
    pairs = basket_aisles(ds)
    n_baskets = pairs["basket"].nunique()
    with_trigger = set(pairs.loc[pairs["aisle"] == trigger, "basket"])
    with_complement = set(pairs.loc[pairs["aisle"] == complement, "basket"])
    p_given_trigger = len(with_trigger & with_complement) / len(with_trigger)
    return p_given_trigger / (len(with_complement) / n_baskets)


def new_department_flags(ds: Dataset) -> pd.Series:
    """For every order after a user's first: does it reach a department they never bought from?"""
    inter = ds.interactions
    frame = pd.DataFrame({"user": inter[S.USER], "seq": inter[S.SEQ],
                          "dept": ds.interaction_category(0).to_numpy()})
    first_seq = frame.groupby(["user", "dept"])["seq"].transform("min")
    frame["new"] = frame["seq"] == first_seq
    flags = frame[frame["seq"] > 0].groupby(["user", "seq"])["new"].any()
    return flags


def repeat_share(ds: Dataset) -> float:
    """Share of rows buying an item the user already bought in an earlier order."""
    inter = ds.interactions
    first_seq = inter.groupby([S.USER, S.ITEM])[S.SEQ].transform("min")
    return float((inter[S.SEQ] > first_seq).mean())


# ---------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frames():
    inter_a, items_a = generate_shop_frames(200, seed=7)
    inter_b, items_b = generate_shop_frames(200, seed=7)
    pdt.assert_frame_equal(inter_a, inter_b)
    pdt.assert_frame_equal(items_a, items_b)


def test_different_seed_gives_different_data():
    inter_a, items_a = generate_shop_frames(200, seed=7)
    inter_b, items_b = generate_shop_frames(200, seed=8)
    assert not inter_a.equals(inter_b)
    assert not items_a[S.TITLE].equals(items_b[S.TITLE])


def test_catalogue_is_reproducible_from_a_seed():
    pdt.assert_frame_equal(make_catalogue(3), make_catalogue(np.random.default_rng(3)))


# ---------------------------------------------------------------------------- format


def test_generic_format_and_validation(shop):
    inter, items = generate_shop_frames(100, seed=1)
    assert list(inter.columns) == [S.USER, S.ITEM, S.BASKET, S.TIMESTAMP, S.QUANTITY]
    assert list(items.columns) == [S.ITEM, S.TITLE, S.CATEGORY, S.BRAND, S.PRICE]
    assert isinstance(inter[S.TIMESTAMP].iloc[0], str)
    pd.Timestamp(inter[S.TIMESTAMP].iloc[0])  # ISO text
    Dataset.from_frames(inter, items)  # validates without raising
    assert shop.name == "synthetic shop"
    assert shop.info["planted_complements"] == PLANTED_COMPLEMENTS
    assert shop.info["seed"] == 0


def test_catalogue_is_realistic(shop):
    items = shop.items
    assert 1500 <= len(items) <= 3000
    assert items[S.ITEM].is_unique and items[S.ITEM].str.fullmatch(r"P\d{5}").all()
    assert items[S.TITLE].is_unique
    assert (items[S.PRICE] > 0).all()
    assert shop.n_category_levels == 2
    depts = shop.item_category(0)
    assert depts.nunique() == len(DEPARTMENTS) >= 10
    aisles_per_dept = items.groupby(depts.to_numpy())[S.CATEGORY].nunique()
    assert aisles_per_dept.between(3, 6).all()
    # titles are readable products, made from each aisle's recipe
    recipes = {a.path: {title for title, _ in a.all_products()} for a in AISLES}
    assert all(title in recipes[cat] for title, cat in zip(items[S.TITLE], items[S.CATEGORY],
                                                           strict=True))
    possible = set().union(*recipes.values())
    assert {"Organic Fuji Apples", "Barilla Spaghetti", "Rao's Homemade Marinara Pasta Sauce",
            "Pampers Baby Dry Diapers Size 3", "WaterWipes Baby Wipes"} <= possible
    # branded goods carry their brand in the title; unbranded produce has none
    branded = items.dropna(subset=[S.BRAND])
    assert all(t.startswith(b) for t, b in zip(branded[S.TITLE], branded[S.BRAND], strict=True))
    assert items[S.BRAND].isna().any()


def test_sizes_and_history_shape(shop):
    inter = shop.interactions
    assert shop.n_users == 1000
    baskets_per_user = inter.groupby(S.USER)[S.SEQ].max() + 1
    assert baskets_per_user.min() >= 3
    assert 10 <= baskets_per_user.mean() <= 14
    basket_sizes = inter.groupby(S.BASKET).size()
    assert 6 <= basket_sizes.mean() <= 10
    assert 80_000 <= shop.n_interactions <= 130_000
    assert (inter[S.QUANTITY] >= 1).all()
    # items are long-tailed: the top 10% of items take a large share of purchases
    counts = inter[S.ITEM].value_counts()
    assert counts.head(len(counts) // 10).sum() / counts.sum() > 0.4


def test_timestamps_span_one_year_with_realistic_gaps(shop):
    times = shop.interactions.drop_duplicates(S.BASKET)[[S.USER, S.SEQ, S.TIMESTAMP]]
    assert times[S.TIMESTAMP].min() >= pd.Timestamp("2024-01-01")
    assert times[S.TIMESTAMP].max() < pd.Timestamp("2025-01-01")
    days = times[S.TIMESTAMP].dt.normalize()
    gaps = days.groupby(times[S.USER]).diff().dropna().dt.days
    assert gaps.between(1, 30).all()
    assert 5 <= gaps.mean() <= 14
    # users start at different times, so a global time split leaves both sides populated
    first = times.groupby(S.USER)[S.TIMESTAMP].min()
    assert first.dt.month.nunique() >= 10


# ---------------------------------------------------------------------------- grocery behaviour


def test_repeat_purchases_are_common(shop):
    assert repeat_share(shop) > 0.3


def test_some_next_orders_reach_a_new_department(shop):
    flags = new_department_flags(shop)
    assert 0.02 <= flags.mean() <= 0.3
    last_order = flags.groupby(level=0).tail(1)
    assert 0.02 <= last_order.mean() <= 0.3


def test_department_adoption_raises_late_new_department_orders():
    def late_share(adoption_prob):
        ds = make_synthetic_shop(400, seed=2, adoption_prob=adoption_prob)
        flags = new_department_flags(ds)
        return flags[flags.index.get_level_values("seq") >= 4].mean()

    assert late_share(1.0) > 1.3 * late_share(0.0)


# ---------------------------------------------------------------------------- planted complements


def test_planted_pairs_are_cross_department_and_in_the_catalogue():
    paths = {a.path for a in AISLES}
    assert len(PLANTED_COMPLEMENTS) >= 8
    for trigger, complement in PLANTED_COMPLEMENTS:
        assert trigger in paths and complement in paths
        assert trigger.split(S.CATEGORY_SEP)[0] != complement.split(S.CATEGORY_SEP)[0]


@pytest.mark.parametrize(("trigger", "complement"), PLANTED_COMPLEMENTS)
def test_planted_complement_lift(shop, trigger, complement):
    assert complement_lift(shop, trigger, complement) >= 3.0


def test_lift_disappears_without_planting():
    ds = make_synthetic_shop(400, seed=0, complement_prob=0.0)
    lifts = [complement_lift(ds, t, c) for t, c in PLANTED_COMPLEMENTS]
    assert np.median(lifts) < 1.5


def test_planted_complement_pairs(shop):
    cats = planted_complement_pairs(shop, level="category")
    assert list(map(tuple, cats.to_numpy())) == PLANTED_COMPLEMENTS
    pairs = planted_complement_pairs(shop.items)
    assert list(pairs.columns) == ["trigger_item", "complement_item", "trigger_category",
                                   "complement_category"]
    category = shop.item_category(1)
    assert (category.loc[pairs["trigger_item"]].to_numpy()
            == pairs["trigger_category"].to_numpy()).all()
    assert (category.loc[pairs["complement_item"]].to_numpy()
            == pairs["complement_category"].to_numpy()).all()
    sizes = category.value_counts()
    expected = sum(sizes[t] * sizes[c] for t, c in PLANTED_COMPLEMENTS)
    assert len(pairs) == expected
    with pytest.raises(ValueError):
        planted_complement_pairs(shop, level="brand")


# ---------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("kwargs", [
    {"n_users": 0}, {"n_baskets_mean": 2.0}, {"basket_size_mean": 0.5},
    {"complement_prob": 1.5}, {"adoption_prob": -0.1}, {"days": 30},
])
def test_bad_parameters_are_rejected(kwargs):
    with pytest.raises(ValueError):
        generate_shop_frames(**{"n_users": 10, **kwargs})


def test_parameters_move_the_data():
    small = make_synthetic_shop(300, seed=0, n_baskets_mean=6, basket_size_mean=4)
    assert 5 <= small.interactions.groupby(S.USER)[S.SEQ].max().add(1).mean() <= 7
    assert small.interactions.groupby(S.BASKET).size().mean() < 6
