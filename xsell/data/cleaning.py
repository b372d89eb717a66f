"""Cleaning: remove what would mislead a model, and count everything removed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.data.dataset import Dataset, canonical_interactions


@dataclass
class CleaningStep:
    """What one cleaning rule removed."""

    rule: str
    rows_removed: int
    users_removed: int
    items_removed: int
    detail: str = ""


@dataclass
class CleaningReport:
    """The steps :func:`clean` applied, in order, with before/after sizes."""

    steps: list[CleaningStep] = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per rule: rows, users and items it removed."""
        return pd.DataFrame([vars(s) for s in self.steps],
                            columns=["rule", "rows_removed", "users_removed", "items_removed",
                                     "detail"])

    def __str__(self) -> str:
        lines = [f"before: {self.before}"]
        for s in self.steps:
            lines.append(f"  {s.rule:<28} -{s.rows_removed:,} rows, -{s.users_removed:,} users, "
                         f"-{s.items_removed:,} items {s.detail}")
        lines.append(f"after:  {self.after}")
        return "\n".join(lines)


def _sizes(inter: pd.DataFrame) -> dict:
    return {"rows": len(inter), "users": int(inter[S.USER].nunique()),
            "items": int(inter[S.ITEM].nunique())}


def _record(report: CleaningReport, rule: str, before: pd.DataFrame, after: pd.DataFrame,
            detail: str = "") -> None:
    b, a = _sizes(before), _sizes(after)
    report.steps.append(CleaningStep(rule, b["rows"] - a["rows"], b["users"] - a["users"],
                                     b["items"] - a["items"], detail))


def outlier_users(inter: pd.DataFrame, max_mad: float) -> pd.Index:
    """Users whose interaction volume is implausibly high (bot-like).

    A user is an outlier when the log of their row count lies more than ``max_mad``
    robust standard deviations above the median:
    :math:`\\log n_u > \\operatorname{med} + k \\cdot 1.4826\\,\\operatorname{MAD}`.
    Logs, because volumes are heavy-tailed; the median and MAD, because the outliers
    themselves must not move the threshold.
    """
    counts = np.log(inter.groupby(S.USER).size())
    med = counts.median()
    mad = 1.4826 * (counts - med).abs().median()
    if mad == 0:
        return pd.Index([])
    return counts.index[counts > med + max_mad * mad]


def k_core(inter: pd.DataFrame, k: int, max_rounds: int = 100) -> pd.DataFrame:
    """Keep the largest sub-log where every user and every item has at least ``k`` rows.

    Removing sparse items can make users sparse and vice versa, so the two filters
    repeat until nothing changes.
    """
    for _ in range(max_rounds):
        item_n = inter.groupby(S.ITEM)[S.USER].transform("size")
        user_n = inter.groupby(S.USER)[S.ITEM].transform("size")
        keep = (item_n >= k) & (user_n >= k)
        if keep.all():
            return inter
        inter = inter[keep]
    return inter


def clean(dataset: Dataset, *, drop_duplicates: bool = True, min_item_support: int = 1,
          min_user_baskets: int = 1, max_user_mad: float | None = None,
          k: int | None = None) -> tuple[Dataset, CleaningReport]:
    """Clean a dataset and report what each rule removed.

    Rules run in this order: exact duplicates, outlier users, rare items, short
    histories, k-core. The catalogue is kept whole (never-bought items remain useful
    to text models); only interactions are removed.

    Parameters
    ----------
    dataset : Dataset
        Input (not modified).
    drop_duplicates : bool
        Drop rows repeating the same (user, item, basket).
    min_item_support : int
        Drop interactions with items bought by fewer than this many distinct users.
    min_user_baskets : int
        Drop users with fewer baskets than this (after the rules above).
    max_user_mad : float, optional
        Drop users more than this many robust standard deviations above the median
        volume (see :func:`outlier_users`). ``None`` disables the rule.
    k : int, optional
        Apply a k-core filter (users and items with at least ``k`` rows).

    Returns
    -------
    cleaned : Dataset
        The cleaned dataset, with ``seq`` recomputed.
    report : CleaningReport
        Rows, users and items removed per rule.
    """
    inter = dataset.interactions
    report = CleaningReport(before=_sizes(inter))
    if drop_duplicates:
        new = inter.drop_duplicates(subset=[S.USER, S.ITEM, S.BASKET])
        _record(report, "exact duplicates", inter, new)
        inter = new
    if max_user_mad is not None:
        bots = outlier_users(inter, max_user_mad)
        new = inter[~inter[S.USER].isin(bots)]
        _record(report, "outlier users", inter, new, f"(> {max_user_mad} MAD of log volume)")
        inter = new
    if min_item_support > 1:
        support = inter.groupby(S.ITEM)[S.USER].transform("nunique")
        new = inter[support >= min_item_support]
        _record(report, "rare items", inter, new, f"(< {min_item_support} users)")
        inter = new
    if min_user_baskets > 1:
        baskets = inter.groupby(S.USER)[S.BASKET].transform("nunique")
        new = inter[baskets >= min_user_baskets]
        _record(report, "short histories", inter, new, f"(< {min_user_baskets} baskets)")
        inter = new
    if k is not None:
        new = k_core(inter, k)
        _record(report, f"{k}-core", inter, new)
        inter = new
    report.after = _sizes(inter)
    cleaned = dataset.with_interactions(canonical_interactions(inter), cleaned=True)
    return cleaned, report
