"""Scoring a fitted recommender against held-out interactions."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.data.splits import Split
from xsell.metrics import RANKING_METRICS
from xsell.models.base import Recommender


def targets_by_user(heldout: pd.DataFrame) -> pd.Series:
    """Distinct held-out item ids per user (a Series of arrays, indexed by user id)."""
    return heldout.groupby(S.USER)[S.ITEM].unique()


def evaluate_ranking(model: Recommender, heldout: pd.DataFrame, ks: Iterable[int] = (10,),
                     metrics: Iterable[str] = ("recall", "precision", "hit_rate", "ndcg"),
                     exclude_seen: bool = False) -> pd.DataFrame:
    """Mean ranking metrics of a fitted model over the users in ``heldout``.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    heldout : pandas.DataFrame
        Held-out interactions (validation or test part of a split).
    ks : iterable of int
        Cut-offs.
    metrics : iterable of str
        Names in :data:`xsell.metrics.RANKING_METRICS`.
    exclude_seen : bool
        Remove training items from the ranking.

    Returns
    -------
    pandas.DataFrame
        Tidy table with columns ``metric``, ``k``, ``value``, ``n_users``.
    """
    ks = sorted(set(ks))
    targets = targets_by_user(heldout)
    ranked = model.recommend(targets.index.to_numpy(), k=max(ks), exclude_seen=exclude_seen)
    rows = []
    for name in metrics:
        for k in ks:
            values = RANKING_METRICS[name](ranked, targets.to_list(), k)
            rows.append({"metric": name, "k": k, "value": float(np.nanmean(values)),
                         "n_users": int(np.isfinite(values).sum())})
    return pd.DataFrame(rows)


def compare_splits(make_model: Callable[[], Recommender], splits: Mapping[str, Split],
                   ks: Iterable[int] = (10,), metrics: Iterable[str] = ("recall", "ndcg"),
                   ) -> pd.DataFrame:
    """Fit a fresh model on each split's train part and score it on that split's test part.

    The same model scored under different splits shows what each split lets it see --
    the data chapter uses it to measure how much a random split inflates scores.

    Parameters
    ----------
    make_model : callable
        Returns a new, unfitted :class:`~xsell.models.base.Recommender`.
    splits : mapping of str to Split
        Splits to compare, by display name.
    ks, metrics
        As in :func:`evaluate_ranking`.

    Returns
    -------
    pandas.DataFrame
        Columns ``split``, ``metric``, ``k``, ``value``, ``n_users``,
        ``test_rows_per_user``.
    """
    tables = []
    for name, split in splits.items():
        model = make_model().fit(split.train_dataset())
        table = evaluate_ranking(model, split.test, ks=ks, metrics=metrics)
        per_user = split.test.groupby(S.USER)[S.ITEM].nunique().mean()
        tables.append(table.assign(split=name, test_rows_per_user=per_user))
    out = pd.concat(tables, ignore_index=True)
    return out[["split", "metric", "k", "value", "n_users", "test_rows_per_user"]]
