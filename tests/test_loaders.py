"""Loaders: Instacart in both layouts, the generic format, the data-path rules."""

from __future__ import annotations

import shutil
import time

import pandas as pd
import pytest

from xsell.data.instacart import load_instacart
from xsell.data.loaders import load_dataset


def test_instacart_sample(instacart):
    s = instacart.summary()
    # Both parts, deduplicated on (order, product), truncated user 1246 dropped.
    assert s["users"] == 1591
    assert instacart.info["dropped_truncated_user"] == 1246
    assert 1246 not in set(instacart.interactions.user_id)
    assert s["items_in_catalogue"] == 49688
    assert s["categories_per_level"] == [21, 134]
    assert not instacart.interactions.duplicated(["basket_id", "item_id"]).any()
    assert instacart.items.set_index("item_id").loc[1, "category"] == "snacks > cookies cakes"
    # Reconstructed time agrees with the order numbers and ends on the anchor.
    inter = instacart.interactions
    assert inter.groupby("user_id").timestamp.max().dt.normalize().eq("2017-05-01").all()
    assert (inter.groupby(["user_id", "seq"]).timestamp.min().groupby("user_id").diff()
            .dropna() >= pd.Timedelta(0)).all()


def test_instacart_sample_loads_fast(instacart):
    start = time.perf_counter()
    load_instacart(instacart.info["path"])
    assert time.perf_counter() - start < 10


def test_instacart_full_layout(tmp_path, instacart):
    """Rebuild the Kaggle file names from the sample and load them."""
    src = instacart.info["path"]
    for name in ("products.csv", "aisles.csv", "departments.csv"):
        shutil.copy(f"{src}/{name}", tmp_path / name)
    orders = pd.read_csv(f"{src}/orders_demo.csv")
    orders.to_csv(tmp_path / "orders.csv", index=False)
    shutil.copy(f"{src}/order_items_demo.csv", tmp_path / "order_products__prior.csv")
    full = load_instacart(tmp_path)
    assert full.info["layout"] == "full release"
    assert full.n_users == 1000
    assert full.n_interactions == 155824
    sub = load_instacart(tmp_path, max_users=50, seed=1)
    assert sub.n_users == 50


def test_missing_data_message(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="orders.csv.*XSELL_DATA_DIR"):
        load_instacart(tmp_path)
    monkeypatch.delenv("XSELL_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="XSELL_DATA_DIR is not set"):
        load_instacart()


def test_load_dataset_precedence(shop_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("XSELL_DATA_DIR", raising=False)
    assert load_dataset(synthetic_users=50).info["source"].startswith("synthetic")
    monkeypatch.setenv("XSELL_DATA_DIR", str(shop_dir))
    assert load_dataset().n_users == 2  # the generic files in the env folder
    monkeypatch.setenv("XSELL_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="XSELL_DATA_DIR=.*does not exist"):
        load_dataset()
    ds = load_dataset(interactions=shop_dir / "interactions.csv", items=shop_dir / "items.csv")
    assert ds.n_interactions == 11
    with pytest.raises(ValueError, match="both"):
        load_dataset(interactions=shop_dir / "interactions.csv")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="neither Instacart files nor the generic"):
        load_dataset(empty)
