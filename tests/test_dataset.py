"""The canonical form: baskets, time order, ids and categories."""

from __future__ import annotations

import pandas as pd
import pytest

from xsell.data.dataset import Dataset


def test_seq_follows_timestamps_not_file_order(interactions_frame, items_frame):
    shuffled = interactions_frame.sample(frac=1.0, random_state=3)
    ds = Dataset.from_frames(shuffled, items_frame)
    u1 = ds.interactions[ds.interactions.user_id == "u1"]
    assert u1.groupby("basket_id")["seq"].first().to_dict() == {"o1": 0, "o2": 1, "o3": 2}


def test_file_order_is_time_order_without_timestamp_or_seq(items_frame):
    inter = pd.DataFrame({"user_id": ["x", "x", "x"], "item_id": ["c", "a", "c"]})
    ds = Dataset.from_frames(inter, items_frame)
    # No basket_id: every row is its own basket, in file order; repeats are allowed.
    assert ds.interactions["seq"].tolist() == [0, 1, 2]
    assert ds.interactions["item_id"].tolist() == ["c", "a", "c"]


def test_seq_defines_baskets_without_basket_id(items_frame):
    inter = pd.DataFrame({"user_id": ["x"] * 4, "item_id": ["a", "b", "c", "a"],
                          "seq": [10, 10, 3, 7]})
    ds = Dataset.from_frames(inter, items_frame)
    assert ds.n_baskets == 3
    by_item = ds.interactions.groupby("seq")["item_id"].apply(sorted).to_dict()
    assert by_item == {0: ["c"], 1: ["a"], 2: ["a", "b"]}


def test_ids_and_codes(shop_dir):
    ds = Dataset.from_csv(shop_dir / "interactions.csv", shop_dir / "items.csv")
    assert list(ds.item_codes(["c", "a"])) == [2, 0]
    with pytest.raises(KeyError, match="unknown user id"):
        ds.user_codes(["u1", "ghost"])


def test_ids_are_read_as_text(tmp_path, items_frame):
    items = items_frame.assign(item_id=["007", "7", "8", "9", "10"])
    items.to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame({"user_id": ["01", "1"], "item_id": ["007", "7"]}).to_csv(
        tmp_path / "interactions.csv", index=False)
    ds = Dataset.from_csv(tmp_path / "interactions.csv", tmp_path / "items.csv")
    assert ds.n_users == 2 and set(ds.interactions.item_id) == {"007", "7"}


def test_category_levels_keep_prefix(items_frame):
    items = items_frame.copy()
    items.loc[0, "category"] = "pantry > pasta > long > spaghetti"
    ds = Dataset.from_frames(pd.DataFrame({"user_id": ["u"], "item_id": ["a"]}), items)
    assert ds.n_category_levels == 4
    assert ds.item_category(1)["a"] == "pantry > pasta"
    assert ds.item_category(3)["b"] == "pantry > sauces"  # shorter paths keep their leaf
    assert ds.item_category(0).nunique() == 3


def test_summary(shop_dir):
    ds = Dataset.from_csv(shop_dir / "interactions.csv", shop_dir / "items.csv")
    s = ds.summary()
    assert (s["users"], s["baskets"], s["interactions"]) == (2, 6, 11)
    assert s["categories_per_level"] == [3, 5]
    assert s["baskets_per_user_quantiles"]["0.5"] == 3.0
    assert "categories/level   L0: 3, L1: 5" in ds.summary_text()


def test_to_csv_round_trip(tmp_path, shop_dir):
    ds = Dataset.from_csv(shop_dir / "interactions.csv", shop_dir / "items.csv")
    again = Dataset.from_csv(*ds.to_csv(tmp_path / "copy"))
    assert again.summary() | {"name": ""} == ds.summary() | {"name": ""}
    assert not list((tmp_path / "copy").glob("*.tmp"))


def test_sample_users_keeps_whole_histories_and_their_products():
    from xsell.data.synthetic import make_synthetic_shop

    shop = make_synthetic_shop(n_users=80, seed=1)
    small = shop.sample_users(20, seed=3)
    assert small.n_users == 20
    users = small.interactions["user_id"].unique()
    full_rows = shop.interactions[shop.interactions["user_id"].isin(users)]
    assert len(small.interactions) == len(full_rows)  # every row of a sampled user
    assert set(small.items["item_id"]) == set(small.interactions["item_id"])
    assert set(shop.sample_users(20, seed=3).interactions["user_id"]) == set(users)
    assert set(shop.sample_users(20, seed=4).interactions["user_id"]) != set(users)
    assert shop.sample_users(10_000).n_users == shop.n_users
