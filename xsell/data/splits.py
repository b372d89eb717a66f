"""Train / validation / test splits.

Three splits, for three questions:

* :func:`random_split` -- the 7:1:2 split by interaction that older tutorials use. It
  lets a model train on a user's future, so its scores are inflated; the data chapter
  measures by how much.
* :func:`leave_last_basket_out` -- per user: test = last basket, validation = the one
  before, train = the rest. The standard next-basket protocol.
* :func:`global_time_split` -- one calendar cut for everybody, as a deployed system
  sees the world: train on the past, test on the future.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.data.dataset import Dataset


@dataclass
class Split:
    """Three disjoint parts of a dataset's interactions.

    Attributes
    ----------
    train, validation, test : pandas.DataFrame
        Canonical interaction rows of each part.
    dataset : Dataset
        The dataset split (for its catalogue and ids).
    name : str
        Which split produced this.
    params : dict
        Parameters of the split, for reports.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    dataset: Dataset
    name: str
    params: dict = field(default_factory=dict)

    def sizes(self) -> pd.DataFrame:
        """Rows, users, baskets and share of rows of each part."""
        total = sum(len(p) for p in (self.train, self.validation, self.test))
        rows = []
        for part, df in (("train", self.train), ("validation", self.validation),
                         ("test", self.test)):
            rows.append({"part": part, "rows": len(df), "users": df[S.USER].nunique(),
                         "baskets": df.groupby([S.USER, S.BASKET]).ngroups if len(df) else 0,
                         "share": len(df) / total if total else 0.0})
        return pd.DataFrame(rows).set_index("part")

    def future_rows_in_train(self) -> int:
        """Training rows later than the same user's earliest test basket.

        Zero for a split that never trains on a user's future; the random split has many.
        """
        first_test = self.test.groupby(S.USER)[S.SEQ].min()
        train = self.train[self.train[S.USER].isin(first_test.index)]
        return int((train[S.SEQ].to_numpy() > train[S.USER].map(first_test).to_numpy()).sum())

    def train_dataset(self, include_validation: bool = False) -> Dataset:
        """The training part as a :class:`~xsell.data.dataset.Dataset` (optionally with validation added)."""
        parts = [self.train, self.validation] if include_validation else [self.train]
        inter = pd.concat(parts).sort_values([S.USER, S.SEQ], kind="stable")
        return self.dataset.with_interactions(inter.reset_index(drop=True), split=self.name)


def random_split(dataset: Dataset, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
                 seed: int = 0) -> Split:
    """Shuffle interaction rows and cut them 7:1:2 (by default).

    This is the split of the seed project. It ignores time: a user's later purchases
    can land in train while earlier ones land in test.

    Parameters
    ----------
    dataset : Dataset
        Data to split.
    ratios : tuple of float
        Train, validation and test shares; must sum to 1.
    seed : int
        Seed of the shuffle; the same seed gives the same split.
    """
    if len(ratios) != 3 or not np.isclose(sum(ratios), 1.0) or min(ratios) < 0:
        raise ValueError(f"ratios must be three non-negative shares summing to 1, got {ratios}")
    inter = dataset.interactions
    order = np.random.default_rng(seed).permutation(len(inter))
    n_train = int(round(ratios[0] * len(inter)))
    n_valid = int(round(ratios[1] * len(inter)))
    part = np.empty(len(inter), dtype=np.int8)
    part[order[:n_train]] = 0
    part[order[n_train:n_train + n_valid]] = 1
    part[order[n_train + n_valid:]] = 2
    return Split(inter[part == 0], inter[part == 1], inter[part == 2], dataset, "random",
                 {"ratios": tuple(ratios), "seed": seed})


def leave_last_basket_out(dataset: Dataset, min_train_baskets: int = 1) -> Split:
    """Per user: test = last basket, validation = the one before, train = the rest.

    A user contributes a test basket only with at least ``min_train_baskets`` baskets
    before it, and a validation basket only when, after removing the test basket, that
    still holds. Other users' baskets all stay in train. Deterministic: no randomness.

    Parameters
    ----------
    dataset : Dataset
        Data to split (``seq`` gives each user's basket order).
    min_train_baskets : int
        Baskets a user must keep in train to be evaluated.
    """
    inter = dataset.interactions
    n_baskets = inter.groupby(S.USER)[S.SEQ].transform("max") + 1
    from_end = n_baskets - 1 - inter[S.SEQ]  # 0 = last basket
    is_test = (from_end == 0) & (n_baskets >= min_train_baskets + 1)
    is_valid = (from_end == 1) & (n_baskets >= min_train_baskets + 2)
    train = inter[~is_test & ~is_valid]
    return Split(train, inter[is_valid], inter[is_test], dataset, "leave-last-basket-out",
                 {"min_train_baskets": min_train_baskets})


def global_time_split(dataset: Dataset, validation_frac: float = 0.1, test_frac: float = 0.1,
                      cutoffs: tuple | None = None) -> Split:
    """One calendar cut for all users: train before, validation between, test after.

    The cut is placed on basket times, so a basket is never divided. By default the
    cut-offs are the quantiles leaving ``validation_frac`` and ``test_frac`` of the
    baskets after them.

    Parameters
    ----------
    dataset : Dataset
        Data with a ``timestamp`` column.
    validation_frac, test_frac : float
        Shares of baskets in the validation and test periods.
    cutoffs : tuple of pandas.Timestamp, optional
        Explicit (validation start, test start); overrides the fractions.

    Raises
    ------
    ValueError
        If the data has no timestamps (use :func:`leave_last_basket_out` then).
    """
    inter = dataset.interactions
    if S.TIMESTAMP not in inter:
        raise ValueError(f"{dataset.name}: a global time split needs a '{S.TIMESTAMP}' column; "
                         "this dataset only orders baskets per user (use leave_last_basket_out)")
    basket_time = inter.groupby([S.USER, S.BASKET], sort=False)[S.TIMESTAMP].transform("min")
    if cutoffs is None:
        times = inter.groupby([S.USER, S.BASKET], sort=False)[S.TIMESTAMP].min()
        t_test = times.quantile(1 - test_frac)
        t_valid = times.quantile(1 - test_frac - validation_frac)
    else:
        t_valid, t_test = (pd.Timestamp(c) for c in cutoffs)
        if t_valid > t_test:
            raise ValueError(f"validation cut-off {t_valid} is after test cut-off {t_test}")
    is_test = basket_time >= t_test
    is_valid = (basket_time >= t_valid) & ~is_test
    return Split(inter[~is_test & ~is_valid], inter[is_valid], inter[is_test], dataset,
                 "global-time", {"validation_start": str(t_valid), "test_start": str(t_test)})


def leave_random_basket_out(dataset: Dataset, seed: int = 0, min_train_baskets: int = 1) -> Split:
    """Per user: test = one basket drawn at random, train = all the others (no validation).

    A diagnostic twin of :func:`leave_last_basket_out`: the same number and size of test
    baskets, but the model may see baskets from after the test basket. Comparing the two
    isolates what seeing the future is worth (see the data chapter).

    Parameters
    ----------
    dataset : Dataset
        Data to split.
    seed : int
        Seed of the draw.
    min_train_baskets : int
        Users need more baskets than this to get a test basket.
    """
    inter = dataset.interactions
    n_baskets = inter.groupby(S.USER)[S.SEQ].max() + 1
    eligible = n_baskets[n_baskets >= min_train_baskets + 1]
    rng = np.random.default_rng(seed)
    # Draw from the same positions leave_last_basket_out could use (any but the first ones).
    chosen = pd.Series(rng.integers(min_train_baskets, eligible.to_numpy()), index=eligible.index)
    is_test = inter[S.SEQ].to_numpy() == inter[S.USER].map(chosen).fillna(-1).to_numpy()
    empty = inter.iloc[:0]
    return Split(inter[~is_test], empty, inter[is_test], dataset, "leave-random-basket-out",
                 {"seed": seed, "min_train_baskets": min_train_baskets})


def random_rating_split(dataset: Dataset, ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
                        seed: int = 0) -> Split:
    """The seed project's rating formulation: (user, item, purchase count) triples, split 7:1:2.

    Purchases are aggregated to one row per (user, item) with ``rating`` = how many times
    the user bought the item, and these triples are shuffled and cut like
    :func:`random_split`. A model must predict the count of pairs it never saw. It is
    the formulation of the seed project (MSE on ratings) -- kept to reproduce it, not
    because it matches how a shop uses recommendations.

    Parameters
    ----------
    dataset : Dataset
        Data to aggregate and split.
    ratios : tuple of float
        Train, validation and test shares.
    seed : int
        Seed of the shuffle.
    """
    inter = dataset.interactions
    triples = (inter.groupby([S.USER, S.ITEM], sort=True)
               .agg(**{S.RATING: (S.ITEM, "size"), S.SEQ: (S.SEQ, "max"),
                       S.BASKET: (S.BASKET, "last")})
               .reset_index())
    triples[S.RATING] = triples[S.RATING].astype(float)
    aggregated = dataset.with_interactions(triples, aggregated="user-item purchase counts")
    split = random_split(aggregated, ratios, seed)
    split.name = "random rating 7:1:2"
    return split
