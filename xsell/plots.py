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


def plot_confusion(true, predicted, labels=None, ax=None, normalize: bool = True):
    """Confusion matrix of intents (rows: true, columns: predicted; shares of each row)."""
    from sklearn.metrics import confusion_matrix

    labels = sorted(set(true) | set(predicted)) if labels is None else list(labels)
    m = confusion_matrix(true, predicted, labels=labels).astype(float)
    if normalize:
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
    ax = _ax(ax, size=(9, 8))
    image = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for i, j in zip(*np.nonzero((m > 0) & ~np.eye(len(labels), dtype=bool)), strict=True):
        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6, color="crimson")
    ax.set(xlabel="predicted intent", ylabel="true intent",
           title="Intent confusion (share of each true intent; off-diagonal in red)")
    plt.colorbar(image, ax=ax, fraction=0.04)
    return ax


def plot_learning_curve(curve: pd.DataFrame, ax=None):
    """Macro-F1 against labelled messages per intent, one line per classifier (mean over
    draws, the band from the lowest to the highest draw)."""
    ax = _ax(ax)
    for name, part in curve.groupby("classifier", sort=False):
        stats = part.groupby("per_intent")["macro_f1"].agg(["mean", "min", "max"])
        ax.plot(stats.index, stats["mean"], marker="o", label=name)
        ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2)
    ax.set_xscale("log")
    ax.set_xticks(sorted(curve["per_intent"].unique()),
                  [str(n) for n in sorted(curve["per_intent"].unique())])
    ax.set(xlabel="labelled messages per intent (log scale)", ylabel="macro-F1 (test)",
           title="Intent detection with few labels")
    ax.legend()
    return ax


def plot_search_gains(summary: pd.DataFrame, metric: str = "ndcg@10", ax=None):
    """Each search system's metric with its 95% CI, per query kind and target variant."""
    rows = summary[summary["metric"] == metric]
    groups = list(dict.fromkeys(zip(rows["kind"], rows["variant"], strict=True)))
    systems = list(dict.fromkeys(rows["system"]))
    ax = _ax(ax, size=(8, 4))
    width = 0.8 / len(systems)
    for s, system in enumerate(systems):
        part = rows[rows["system"] == system].set_index(["kind", "variant"]).loc[groups]
        x = np.arange(len(groups)) + (s - (len(systems) - 1) / 2) * width
        err = np.vstack([part["value"] - part["ci_low"], part["ci_high"] - part["value"]])
        ax.bar(x, part["value"], width, yerr=err, capsize=2, label=system)
    ax.set_xticks(range(len(groups)), [f"{k} queries\n{v} products" for k, v in groups])
    ax.set(ylabel=metric.upper().replace("@", "@"), title="Product search (test queries)")
    ax.legend(fontsize=8)
    return ax


def _plain_log_ticks(axis) -> None:
    """A log axis labelled 0.1, 0.2, 0.5, 1, ... (not 10^-1), without minor-tick labels."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def plot_index_growth(rows: list[dict], ax=None):
    """Query latency (p50) of each index kind against catalogue size, log-log: the rows of
    ``benchmarks/bench_index.py`` (``size``, ``index``, ``p50_ms``)."""
    ax = _ax(ax)
    for kind, style in (("exact", "k-o"), ("ivf", "b-s"), ("hnsw", "g-^")):
        mine = [r for r in rows if r["index"] == kind]
        if mine:
            ax.plot([r["size"] for r in mine], [r["p50_ms"] for r in mine], style, label=kind)
    ax.set(xscale="log", yscale="log", xlabel="catalogue size (vectors)",
           ylabel="query latency p50 (ms)", title="Cost as the catalogue grows")
    ax.legend()
    return ax


def plot_recall_latency(curves: dict[str, list[dict]], size: int | None = None, ax=None,
                        floor: float = 0.95):
    """Recall@10 against exact search versus query latency as each index's search knob
    turns (``{kind: [{knob: value, "recall@10", "p50_ms"}, ...]}``), knob values marked."""
    ax = _ax(ax)
    for kind, points in curves.items():
        knob = next(k for k in points[0] if k not in ("recall@10", "p50_ms", "p99_ms"))
        ax.plot([p["p50_ms"] for p in points], [p["recall@10"] for p in points], "o-",
                label=f"{kind} ({knob})")
        for p in points:
            ax.annotate(str(p[knob]), (p["p50_ms"], p["recall@10"]), fontsize=7)
    ax.axhline(floor, color="grey", ls=":")
    at = f" at {size:,} vectors" if size else ""
    ax.set(xscale="log", xlabel="query latency p50 (ms)", ylabel="recall@10 vs exact",
           title=f"Recall / latency{at}")
    _plain_log_ticks(ax.xaxis)
    ax.legend()
    return ax


def plot_request_latency(latency: pd.DataFrame, bars: dict | None = None, ax=None):
    """Server-side latency per kind of request: p50 and p99 bars (``latency`` indexed by
    request, columns ``p50`` and ``p99`` in ms), with each request's bar on its p99."""
    ax = _ax(ax, (7, 0.45 * len(latency) + 1.2))
    y = np.arange(len(latency))
    ax.barh(y + 0.2, latency["p99"], height=0.4, color="#DD8452", label="p99")
    ax.barh(y - 0.2, latency["p50"], height=0.4, color="#4C72B0", label="p50")
    for row, name in enumerate(latency.index):
        if bars and name in bars:
            ax.plot([bars[name]] * 2, [row - 0.45, row + 0.45], "k-", lw=2)
    ax.set_yticks(y, latency.index)
    ax.invert_yaxis()
    ax.set(xscale="log", xlabel="server time (ms, log scale); black: the bar on p99",
           title="Latency per request")
    _plain_log_ticks(ax.xaxis)
    ax.legend(loc="lower right")
    return ax
