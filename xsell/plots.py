"""Plots used by the book. Each function draws on an ``ax`` (or makes one) and returns it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from xsell import explore
from xsell.data.dataset import Dataset


def _ax(ax, size=(6, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def plot_basket_sizes(dataset: Dataset, ax=None, max_size: int = 60):
    """Histogram of items per basket."""
    ax = _ax(ax)
    sizes = explore.basket_sizes(dataset)
    ax.hist(sizes.clip(upper=max_size), bins=np.arange(1, max_size + 2) - 0.5, color="#4C72B0")
    ax.axvline(sizes.median(), color="k", ls="--", lw=1, label=f"median {sizes.median():g}")
    ax.set(xlabel=f"items per basket (clipped at {max_size})", ylabel="baskets",
           title="Basket sizes")
    ax.legend()
    return ax


def plot_long_tails(dataset: Dataset, ax=None):
    """Concentration curves of item popularity and user activity."""
    from xsell.data import schema as S

    ax = _ax(ax)
    inter = dataset.interactions
    for counts, label in ((inter[S.ITEM].value_counts(), "items"),
                          (inter[S.USER].value_counts(), "users")):
        curve = explore.concentration_curve(counts)
        ax.plot(curve["entity_share"] * 100, curve["interaction_share"] * 100, label=label)
    ax.plot([0, 100], [0, 100], color="grey", ls=":", lw=1, label="perfect equality")
    ax.set(xlabel="top x% of items / users", ylabel="% of interactions",
           title="Long tails (concentration curves)")
    ax.legend()
    return ax


def plot_category_shares(dataset: Dataset, level: int = 0, ax=None, top: int = 25):
    """Horizontal bars: share of interactions per category."""
    shares = explore.category_shares(dataset, level).head(top)[::-1]
    ax = _ax(ax, (6, max(3, 0.28 * len(shares))))
    ax.barh(shares.index, shares.to_numpy() * 100, color="#55A868")
    ax.set(xlabel="% of interactions", title="Share of purchases by department")
    return ax


def plot_copurchase_lift(lift: pd.DataFrame, ax=None):
    """Heatmap of log2 co-purchase lift between categories."""
    ax = _ax(ax, (9, 8))
    raw = lift.to_numpy(dtype=float)
    values = np.full_like(raw, np.nan)
    np.log2(raw, out=values, where=raw > 0)  # pairs never bought together stay blank
    lim = np.nanquantile(np.abs(values), 0.98)  # a few extreme, rare pairs must not wash it out
    im = ax.imshow(values, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_facecolor("#dddddd")  # blank = never bought together
    ax.set_xticks(range(len(lift)), lift.columns, rotation=90)
    ax.set_yticks(range(len(lift)), lift.index)
    ax.set_title("Co-purchase lift between departments (log2; red = together more than chance)")
    plt.colorbar(im, ax=ax, shrink=0.7, label="log2 lift")
    return ax


def plot_new_category_rate(per_basket: pd.DataFrame, ax=None, max_seq: int = 40):
    """Share of baskets reaching a never-bought category, by position in the history."""
    ax = _ax(ax)
    rate = per_basket[per_basket["seq"] <= max_seq].groupby("seq")["has_new"].mean()
    ax.plot(rate.index + 1, rate.to_numpy() * 100, marker=".")
    ax.set(xlabel="basket number in the user's history", ylabel="% of baskets",
           title="Baskets that reach a department the user never bought from")
    return ax


def plot_split_timeline(split, ax=None, n_users: int = 40, seed: int = 0):
    """Which part (train / validation / test) each basket of a few users falls into."""
    from xsell.data import schema as S

    ax = _ax(ax, (8, 4))
    users = np.sort(split.train[S.USER].unique())
    users = np.random.default_rng(seed).choice(users, size=min(n_users, len(users)), replace=False)
    colours = {"train": "#4C72B0", "validation": "#DD8452", "test": "#C44E52"}
    for part, df in (("train", split.train), ("validation", split.validation),
                     ("test", split.test)):
        sub = df[df[S.USER].isin(users)]
        y = pd.Index(users).get_indexer(sub[S.USER])
        x = sub[S.TIMESTAMP] if S.TIMESTAMP in sub else sub[S.SEQ]
        ax.scatter(x, y, s=6, color=colours[part], label=part)
    ax.set(ylabel="user", yticks=[], title=f"{split.name} split, {len(users)} users")
    ax.legend(loc="upper left", markerscale=3)
    return ax
