"""Evaluation protocols: which users, which targets, which history, which candidates.

Every model is scored under the same *task*: the same users, targets, histories, candidate
items and seen-item policy. A task is built from a split by a protocol:

* ``next-basket`` -- temporal leave-last-basket-out, the held-out basket is the target,
  in three variants:

  - ``all``: every item of the basket;
  - ``explore``: only items the user never bought before; previously bought items are
    removed from the ranking;
  - ``cross-category``: only never-bought items from a top-level category the user never
    bought from (previously bought items removed from the ranking).

* ``rolling-origin`` -- each of a user's last ``n`` baskets is its own test point, the model
  seeing only the baskets before it. More test points per user, so small variants gain
  statistical power.
* ``cold-start`` -- targets restricted to items with no interaction in training, ranked
  over the whole catalogue.
* ``basket-completion`` -- one department of each multi-department held-out basket is
  hidden; the rest is the cart, and models rank items outside the cart's departments
  (:func:`basket_completion_task`; targets are items new to the user).

Candidates are the items seen in training (all items for ``cold-start``); targets that
cannot be ranked stay in the denominator. Whether items the user already has may be
ranked follows the data on ``all`` (removed when the training repeat rate is low, as in
review-style logs; :func:`~xsell.data.variants.seen_items_excluded`) unless the caller
says otherwise; every task reports its ``repeat_rate`` and ``exclude_seen`` in ``info``. :func:`evaluate` returns a tidy table with
bootstrap confidence intervals over users and a paired test against a baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats
from tqdm import tqdm

from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.data.splits import Split
from xsell.data.variants import (
    VARIANTS,
    headline_metrics,
    repeat_rate,
    seen_items_excluded,
    select_targets,
)
from xsell.metrics import HISTORY_METRICS, RANKING_METRICS
from xsell.models.base import Recommender


@dataclass
class Task:
    """What every model is asked to rank, and against which targets.

    Attributes
    ----------
    name : str
        Protocol and variant, e.g. ``"next-basket/explore"``.
    users : numpy.ndarray
        One entry per test point: the id passed to the model (a user id, or a
        ``(user, origin)`` key for rolling-origin points).
    owners : numpy.ndarray
        The real user of each test point (bootstrap resamples owners, not points).
    targets : list of numpy.ndarray
        Relevant item ids of each test point.
    history : pandas.DataFrame or None
        Interactions to use as histories (keyed like ``users``); ``None`` = the
        training data the model was fitted on.
    exclude_seen : bool
        Remove items of the history from the ranking.
    candidates : numpy.ndarray or None
        Item ids that may be ranked (``None`` = whole catalogue).
    seen : list of numpy.ndarray or None
        The items of each test point's history, for the repeat / explore split of a
        list (:data:`xsell.metrics.HISTORY_METRICS`); ``None`` where the protocol does
        not define it.
    """

    name: str
    users: np.ndarray
    owners: np.ndarray
    targets: list
    history: pd.DataFrame | None = None
    exclude_seen: bool = False
    candidates: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    blocked_categories: list | None = None
    level: int = 0
    seen: list | None = None

    @property
    def splits_repeat_explore(self) -> bool:
        """Whether the lists may hold the user's own items, so that the repeat / explore
        metrics (:data:`~xsell.metrics.HISTORY_METRICS`) say something."""
        return self.seen is not None and not self.exclude_seen

    def exclusions(self, points: slice | np.ndarray,
                   catalogue: Dataset) -> sp.csr_matrix | None:
        """Points x catalogue matrix of the items in each point's blocked categories."""
        if self.blocked_categories is None:
            return None
        category = catalogue.item_category(self.level)
        names = pd.Index(sorted(category.unique()))
        item_of = sp.csr_matrix((np.ones(len(category)),
                                 (names.get_indexer(category), np.arange(len(category)))),
                                shape=(len(names), len(category)))
        blocked = [self.blocked_categories[i] for i in np.arange(self.n_points)[points]]
        rows = np.repeat(np.arange(len(blocked)), [len(b) for b in blocked])
        cols = names.get_indexer(np.concatenate([np.asarray(b, dtype=object) for b in blocked])
                                 if len(blocked) else np.array([], dtype=object))
        keep = cols >= 0
        point_of = sp.csr_matrix((np.ones(keep.sum()), (rows[keep], cols[keep])),
                                 shape=(len(blocked), len(names)))
        return (point_of @ item_of).tocsr()

    @property
    def n_points(self) -> int:
        """Number of test points."""
        return len(self.users)

    @property
    def n_users(self) -> int:
        """Number of distinct users behind the test points."""
        return int(pd.Series(self.owners).nunique())


def seen_policy(variant: str, history: pd.DataFrame,
                exclude_seen: bool | None = None) -> tuple[bool, dict]:
    """A task's seen-item policy and what it reports of it (the ``info`` entries).

    Parameters
    ----------
    variant : {"all", "explore", "cross-category"}
        The target variant.
    history : pandas.DataFrame
        The interactions the models are fitted on (their repeat rate decides ``all``).
    exclude_seen : bool, optional
        The caller's choice for ``all``; ``None`` follows the repeat rate.

    Returns
    -------
    exclude : bool
        Whether items of the user's history are removed from the ranking.
    info : dict
        ``repeat_rate`` (``None`` when undefined), ``exclude_seen`` and
        ``exclude_seen_by`` (``"variant"``, ``"repeat rate"`` or ``"caller"``).
    """
    rate = repeat_rate(history)
    exclude = seen_items_excluded(variant, rate, exclude_seen)
    by = "variant" if variant != "all" else "repeat rate" if exclude_seen is None else "caller"
    return exclude, {"repeat_rate": None if np.isnan(rate) else rate, "exclude_seen": exclude,
                     "exclude_seen_by": by}


def next_basket_task(split: Split, variant: str = "all", part: str = "test",
                     level: int = 0, exclude_seen: bool | None = None) -> Task:
    """The next-basket task of a temporal split.

    Parameters
    ----------
    split : Split
        Usually :func:`~xsell.data.splits.leave_last_basket_out`.
    variant : {"all", "explore", "cross-category"}
        Which held-out items count as targets.
    part : {"test", "validation"}
        ``"test"``: the model is fitted on train + validation; ``"validation"``: on train.
    level : int
        Category level of the cross-category variant (0 = department).
    exclude_seen : bool, optional
        Remove the user's items from the ``all`` ranking (``True``) or keep them
        (``False``); ``None`` follows the training repeat rate (:func:`seen_policy`).
        The other variants always remove them.
    """
    heldout = split.test if part == "test" else split.validation
    history = pd.concat([split.train, split.validation]) if part == "test" else split.train
    targets = select_targets(heldout, history, split.dataset, variant, level=level)
    exclude, policy = seen_policy(variant, history, exclude_seen)
    users = targets.index.to_numpy()
    return Task(f"next-basket/{variant}", users, users,
                list(targets.to_numpy()), history=None, exclude_seen=exclude,
                candidates=history[S.ITEM].unique(), info={"part": part, **policy},
                seen=_items_of(history, users))


def _items_of(history: pd.DataFrame, points: np.ndarray) -> list:
    """The distinct items of each point's history rows (empty for a point without any)."""
    items = history.groupby(S.USER)[S.ITEM].unique()
    empty = np.array([], dtype=object)
    return [items.get(p, empty) for p in points]


def rolling_origin_task(dataset: Dataset, n_origins: int = 5, variant: str = "all",
                        level: int = 0, exclude_seen: bool | None = None
                        ) -> tuple[Task, Dataset]:
    """Each of a user's last ``n_origins`` baskets is a test point with its own history.

    ``exclude_seen`` is as in :func:`next_basket_task`, the repeat rate taken on the
    baskets models are fitted on.

    Returns
    -------
    task : Task
        One point per (user, origin); ``history`` holds, for each point, the user's
        baskets before the origin, keyed by ``"user@seq"``.
    train : Dataset
        What models are fitted on: every user's baskets before their first origin.
        History-based models then read each point's history; factor models fold it in.
    """
    inter = dataset.interactions
    n_baskets = inter.groupby(S.USER)[S.SEQ].transform("max") + 1
    first_origin = (n_baskets - n_origins).clip(lower=1)  # keep at least one basket
    train = dataset.with_interactions(inter[inter[S.SEQ] < first_origin].reset_index(drop=True),
                                      split=f"rolling-origin({n_origins})")
    tests = inter[inter[S.SEQ] >= first_origin]
    origins = tests[[S.USER, S.SEQ]].drop_duplicates()
    # Histories: for each origin, all the user's rows before it (a point per key).
    pairs = inter[[S.USER, S.ITEM, S.SEQ]].merge(origins.rename(columns={S.SEQ: "_origin"}),
                                                 on=S.USER)
    pairs = pairs[pairs[S.SEQ] < pairs["_origin"]]
    key = pairs[S.USER].astype(str) + "@" + pairs["_origin"].astype(str)
    history = pd.DataFrame({S.USER: key.to_numpy(), S.ITEM: pairs[S.ITEM].to_numpy(),
                            S.SEQ: pairs[S.SEQ].to_numpy()})
    tests = tests.assign(_key=tests[S.USER].astype(str) + "@" + tests[S.SEQ].astype(str))
    targets = select_targets(tests.rename(columns={S.USER: "_owner", "_key": S.USER}),
                              history, dataset, variant, level=level)
    owner = tests.drop_duplicates("_key").set_index("_key")[S.USER]
    points = targets.index.to_numpy()
    exclude, policy = seen_policy(variant, train.interactions, exclude_seen)
    point_history = history[history[S.USER].isin(points)]
    task = Task(f"rolling-origin({n_origins})/{variant}", points,
                owner.reindex(points).to_numpy(), list(targets.to_numpy()),
                history=point_history,
                exclude_seen=exclude, candidates=train.interactions[S.ITEM].unique(),
                info={"n_origins": n_origins, **policy},
                seen=_items_of(point_history, points))
    return task, train


def cold_start_task(split: Split, part: str = "test", candidates: str = "all") -> Task:
    """Targets restricted to items never seen in training.

    Parameters
    ----------
    split : Split
        A temporal split.
    part : {"test", "validation"}
        Which held-out part.
    candidates : {"all", "cold"}
        ``"all"``: rank the whole catalogue (a cold item competes with every product);
        ``"cold"``: rank only catalogue items never seen in training -- a "new products
        for you" shelf, where a model that knows nothing of them ranks at chance.
    """
    if candidates not in ("all", "cold"):
        raise ValueError(f"candidates must be 'all' or 'cold', not {candidates!r}")
    heldout = split.test if part == "test" else split.validation
    history = pd.concat([split.train, split.validation]) if part == "test" else split.train
    cold = heldout[~heldout[S.ITEM].isin(history[S.ITEM])]
    targets = cold.groupby(S.USER)[S.ITEM].unique()
    share = len(cold) / max(len(heldout), 1)
    catalogue = split.dataset.item_index
    shelf = catalogue[~catalogue.isin(history[S.ITEM])].to_numpy() if candidates == "cold" \
        else None
    return Task("next-basket/cold-start", targets.index.to_numpy(), targets.index.to_numpy(),
                list(targets.to_numpy()), exclude_seen=False, candidates=shelf,
                info={"part": part, "cold_share_of_target_rows": share,
                      "cold_items": int(cold[S.ITEM].nunique()), "candidates": candidates,
                      "n_candidates": len(catalogue) if shelf is None else len(shelf)})


def basket_completion_task(split: Split, part: str = "test", new_only: bool = True,
                           seed: int = 0, level: int = 0) -> Task:
    """Basket completion: finish a cart with items from departments it lacks.

    From each held-out basket spanning two or more departments, one department (drawn
    with ``seed``) is hidden: its items are the targets, the rest of the basket is the
    cart. The model sees the user's history plus the cart as the latest basket, and
    ranks items outside the cart's departments. Seeded and deterministic.

    Parameters
    ----------
    split : Split
        A temporal split.
    part : {"test", "validation"}
        Which held-out basket is completed (history = the parts before it).
    new_only : bool
        Targets restricted to items the user never bought before, which are then also
        removed from the ranking (the cross-selling question); ``False`` keeps repeat
        purchases.
    seed : int
        Seed of the hidden department's draw.
    level : int
        Category level (0 = department).
    """
    heldout = split.test if part == "test" else split.validation
    history = pd.concat([split.train, split.validation]) if part == "test" else split.train
    category = split.dataset.item_category(level)
    held = heldout.assign(_c=category.reindex(heldout[S.ITEM]).to_numpy())
    spans = held.groupby(S.USER)["_c"].unique()
    spans = spans[spans.map(len) >= 2].sort_index()
    rng = np.random.default_rng(seed)
    hidden = pd.Series([sorted(c)[rng.integers(len(c))] for c in spans], index=spans.index)
    held = held[held[S.USER].isin(hidden.index)]
    is_target = held["_c"].to_numpy() == hidden.reindex(held[S.USER]).to_numpy()
    carts, targets = held[~is_target], held[is_target][[S.USER, S.ITEM]].drop_duplicates()
    if new_only:
        old = history[[S.USER, S.ITEM]].drop_duplicates().assign(_old=True)
        targets = targets.merge(old, on=[S.USER, S.ITEM], how="left")
        targets = targets[targets["_old"].isna()]
    targets = targets.groupby(S.USER)[S.ITEM].unique()
    users = targets.index.to_numpy()
    last = history.groupby(S.USER)[S.SEQ].max()
    carts = carts[carts[S.USER].isin(users)]
    carts = carts.assign(**{S.SEQ: last.reindex(carts[S.USER]).fillna(-1).to_numpy() + 1})
    cols = [S.USER, S.ITEM, S.BASKET, S.SEQ]
    seen = pd.concat([history[history[S.USER].isin(users)][cols], carts[cols]],
                     ignore_index=True)
    blocked = carts.groupby(S.USER)["_c"].unique().reindex(users)
    variant = "new" if new_only else "all"
    return Task(f"basket-completion/{variant}", users, users, list(targets.to_numpy()),
                history=seen, exclude_seen=new_only, candidates=history[S.ITEM].unique(),
                info={"part": part, "seed": seed, "hidden": hidden.reindex(users).to_dict()},
                blocked_categories=list(blocked.to_numpy()), level=level)


# ---------------------------------------------------------------------------- scoring

#: What every result table reports by default -- the ranking metrics, and the repeat /
#: explore split of the list (Li et al., TOIS 2023) where the list may repeat.
DEFAULT_METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "hit_rate", "mrr", "map",
                                    *HISTORY_METRICS)


def per_user_metrics(model: Recommender, task: Task, ks: Iterable[int] = (10, 20),
                     metrics: Iterable[str] = ("recall", "ndcg")) -> pd.DataFrame:
    """Metric values of every test point (long format: point, owner, metric, k, value).

    ``metrics`` are names in :data:`~xsell.metrics.RANKING_METRICS` or
    :data:`~xsell.metrics.HISTORY_METRICS`; the latter are computed only on tasks whose
    lists may hold the user's own items (:attr:`Task.splits_repeat_explore`) and left out
    elsewhere.
    """
    ks = sorted(set(ks))
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in RANKING_METRICS and m not in HISTORY_METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from "
                         f"{', '.join([*RANKING_METRICS, *HISTORY_METRICS])}")
    if not task.splits_repeat_explore:
        metrics = [m for m in metrics if m not in HISTORY_METRICS]
    if task.blocked_categories is None:
        ranked = model.recommend(task.users, k=max(ks), exclude_seen=task.exclude_seen,
                                 candidates=task.candidates, history=task.history)
    else:  # per-point exclusions, built a chunk at a time to bound memory
        parts = []
        for start in range(0, task.n_points, 512):
            part = slice(start, start + 512)
            users = task.users[part]
            history = None if task.history is None else \
                task.history[task.history[S.USER].isin(users)]
            parts.append(model.recommend(users, k=max(ks), exclude_seen=task.exclude_seen,
                                         candidates=task.candidates, history=history,
                                         exclude=task.exclusions(part, model.dataset_)))
        ranked = np.vstack(parts)
    frames = []
    for name in metrics:
        for k in ks:
            if name in HISTORY_METRICS:
                values = HISTORY_METRICS[name](ranked, task.targets, task.seen, k)
            else:
                values = RANKING_METRICS[name](ranked, task.targets, k)
            frames.append(pd.DataFrame({"point": task.users, "owner": task.owners,
                                        "metric": name, "k": k, "value": values}))
    return pd.concat(frames, ignore_index=True)


@lru_cache(maxsize=4)
def _resample(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The bootstrap's user indices, ``(n_boot, n)``: the same for every metric of a table
    with ``n`` users (drawn once, read-only)."""
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    idx.flags.writeable = False
    return idx


def bootstrap_ci(values: np.ndarray, owners: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean, resampling users (all of a user's points together).

    Test points of one user are correlated, so the user -- not the point -- is the unit
    that is resampled.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, not {n_boot}")
    df = pd.DataFrame({"o": owners, "v": values}).dropna()
    if df.empty:
        return (np.nan, np.nan)
    per_user = df.groupby("o")["v"].agg(["sum", "count"])
    idx = _resample(len(per_user), n_boot, seed)
    sums = per_user["sum"].to_numpy()[idx].sum(1)
    counts = per_user["count"].to_numpy()[idx].sum(1)
    alpha = (1 - level) / 2
    return tuple(np.quantile(sums / counts, [alpha, 1 - alpha]).tolist())


def paired_p_value(a: pd.Series, b: pd.Series) -> float:
    """Two-sided paired t-test on per-user means (users present in both, nan dropped)."""
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    diff = (both.iloc[:, 0] - both.iloc[:, 1]).to_numpy()
    if len(diff) < 2 or np.allclose(diff, 0):
        return 1.0
    if np.allclose(diff, diff.mean()):  # the same difference for every user: no noise at all
        return 0.0
    return float(stats.ttest_rel(both.iloc[:, 0], both.iloc[:, 1]).pvalue)


def paired_difference(a: pd.Series, b: pd.Series, n_boot: int = 1000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """Mean per-user difference ``a - b`` and its percentile bootstrap CI (users resampled).

    ``a`` and ``b`` are per-user means indexed by user; only users present in both (and
    not nan) count. Pairing removes what the two share -- which users are easy -- so the
    interval of the difference is much narrower than the two separate intervals suggest.
    """
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    diff = (both.iloc[:, 0] - both.iloc[:, 1]).to_numpy()
    if not len(diff):
        return (np.nan, np.nan, np.nan)
    lo, hi = bootstrap_ci(diff, np.arange(len(diff)), n_boot, level, seed)
    return float(diff.mean()), lo, hi


def summarise(per_point: pd.DataFrame, model: str, variant: str, n_boot: int = 1000,
              seed: int = 0) -> pd.DataFrame:
    """Mean, bootstrap CI and sizes for each (metric, k) of one model on one task."""
    rows = []
    for (metric, k), g in per_point.groupby(["metric", "k"], sort=False):
        valid = g.dropna(subset=["value"])
        lo, hi = bootstrap_ci(g["value"].to_numpy(), g["owner"].to_numpy(), n_boot, seed=seed)
        rows.append({"model": model, "variant": variant, "metric": metric, "k": int(k),
                     "value": float(valid["value"].mean()) if len(valid) else np.nan,
                     "ci_low": lo, "ci_high": hi, "n_users": int(valid["owner"].nunique()),
                     "n_points": len(valid)})
    return pd.DataFrame(rows)


def _user_means(points: pd.DataFrame, metric: str, k: int) -> pd.Series:
    sel = points[(points["metric"] == metric) & (points["k"] == k)]
    return sel.groupby("owner")["value"].mean()


def _fitted(model: Recommender | Callable[[], Recommender], train: Dataset) -> Recommender:
    instance = model() if callable(model) and not isinstance(model, Recommender) else model
    return instance.fit(train)


def build_tasks(split: Split, protocol: str = "next-basket", variants: Sequence[str] = VARIANTS,
                part: str = "test", n_origins: int = 5, exclude_seen: bool | None = None
                ) -> tuple[Dataset, dict[str, Task]]:
    """The training data and the tasks of a protocol (see :func:`evaluate`).

    ``exclude_seen`` settles the seen-item policy of the ``all`` variant of next-basket
    and rolling-origin (:func:`next_basket_task`; ``None``: the training repeat rate).

    Raises
    ------
    ValueError
        For an unknown protocol, no variant, ``n_origins < 1``, or when no task has a
        single test point (nothing to evaluate).
    """
    if not len(variants):
        raise ValueError("give at least one variant: " + ", ".join(VARIANTS))
    if protocol == "next-basket":
        train = split.train_dataset(include_validation=part == "test")
        tasks = {v: next_basket_task(split, v, part=part, exclude_seen=exclude_seen)
                 for v in variants}
    elif protocol == "cold-start":
        train = split.train_dataset(include_validation=part == "test")
        tasks = {"cold-start": cold_start_task(split, part=part)}
    elif protocol == "basket-completion":
        train = split.train_dataset(include_validation=part == "test")
        tasks = {"basket-completion": basket_completion_task(split, part=part)}
    elif protocol == "rolling-origin":
        if n_origins < 1:
            raise ValueError(f"n_origins must be at least 1, not {n_origins}")
        tasks, train = {}, None
        for v in variants:
            tasks[v], train = rolling_origin_task(split.dataset, n_origins, v,
                                                  exclude_seen=exclude_seen)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; choose next-basket, rolling-origin, "
                         "cold-start or basket-completion")
    if all(t.n_points == 0 for t in tasks.values()):
        raise ValueError(f"protocol {protocol!r}: no test point in {', '.join(tasks)} "
                         "(e.g. no held-out basket with a target); nothing to evaluate")
    return train, tasks


def tabulate(per_point: Mapping[tuple[str, str], pd.DataFrame], tasks: Mapping[str, Task],
             baseline: str | None = None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Summarise per-point metrics of (model, variant) pairs into the tidy result table.

    Adds bootstrap CIs and, when ``baseline`` is given, for every other model on the same
    users: the paired t-test p-value against it and the mean per-user difference from it
    with its bootstrap CI (``diff``, ``diff_ci_low``, ``diff_ci_high``; nan otherwise).
    """
    table = pd.concat([summarise(points, model, variant, n_boot, seed)
                       for (model, variant), points in per_point.items()], ignore_index=True)
    table["p_value"] = np.nan
    for column in ("diff", "diff_ci_low", "diff_ci_high"):
        table[column] = np.nan
    if baseline is not None:
        for i, row in table.iterrows():
            if row["model"] == baseline or (baseline, row["variant"]) not in per_point:
                continue
            a, b = (_user_means(per_point[m, row["variant"]], row["metric"], row["k"])
                    for m in (row["model"], baseline))
            table.loc[i, "p_value"] = paired_p_value(a, b)
            table.loc[i, ["diff", "diff_ci_low", "diff_ci_high"]] = paired_difference(
                a, b, n_boot, seed=seed)
    table.attrs["tasks"] = {v: {"n_points": t.n_points, "n_users": t.n_users, **t.info}
                            for v, t in tasks.items()}
    return table


def evaluate(models: Mapping[str, Recommender | Callable[[], Recommender]], split: Split,
             protocol: str = "next-basket", ks: Sequence[int] = (10, 20),
             variants: Sequence[str] = VARIANTS,
             metrics: Sequence[str] = DEFAULT_METRICS,
             baseline: str | None = "popularity", part: str = "test", n_origins: int = 5,
             n_boot: int = 1000, seed: int = 0, progress: bool = True,
             exclude_seen: bool | None = None) -> pd.DataFrame:
    """Fit every model and score it under one protocol; tidy results with CIs.

    Parameters
    ----------
    models : mapping of str to Recommender or callable
        Unfitted models (or factories), by display name. Each is fitted once here: on
        train + validation for ``part="test"`` (refit after tuning), on train for
        ``part="validation"``; for ``rolling-origin`` on every user's baskets before
        their first origin.
    split : Split
        A temporal split (:func:`~xsell.data.splits.leave_last_basket_out`).
    protocol : {"next-basket", "rolling-origin", "cold-start", "basket-completion"}
        See the module docstring.
    ks : sequence of int
        Cut-offs.
    variants : sequence of str
        Target variants (ignored for ``cold-start`` and ``basket-completion``).
    metrics : sequence of str
        Names in :data:`xsell.metrics.RANKING_METRICS` or
        :data:`xsell.metrics.HISTORY_METRICS` (the latter where lists may hold the
        user's own items; :func:`per_user_metrics`).
    baseline : str, optional
        Name (in ``models``) to test every other model against: a paired t-test over
        users, reported in ``p_value``.
    part : {"test", "validation"}
        Which held-out part to score (next-basket and cold-start).
    n_origins : int
        Test points per user for ``rolling-origin``.
    n_boot : int
        Bootstrap resamples for the confidence intervals.
    seed : int
        Seed of the bootstrap.
    progress : bool
        Show a progress bar.
    exclude_seen : bool, optional
        Seen-item policy of the ``all`` variant (:func:`next_basket_task`; ``None``:
        follow the training repeat rate).

    Returns
    -------
    pandas.DataFrame
        Columns ``model, variant, metric, k, value, ci_low, ci_high, n_users, n_points,
        p_value`` (``p_value`` against ``baseline``; ``nan`` for the baseline itself).
    """
    if baseline is not None and baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not among the models {list(models)}")
    train, tasks = build_tasks(split, protocol, variants, part, n_origins, exclude_seen)
    per_point = {}
    bar = tqdm(models.items(), desc=f"evaluate {protocol}", disable=not progress)
    for name, model in bar:
        bar.set_postfix_str(name)
        fitted = _fitted(model, train)
        for variant, task in tasks.items():
            per_point[name, variant] = per_user_metrics(fitted, task, ks, metrics)
    return tabulate(per_point, tasks, baseline, n_boot, seed)


# ---------------------------------------------------------------------------- ratings


def pair_scores(model: Recommender, users: np.ndarray, items: np.ndarray,
                batch_size: int = 256) -> np.ndarray:
    """Scores of (user, item) pairs, computed one block of distinct users at a time."""
    users, items = np.asarray(users), np.asarray(items)
    out = np.empty(len(users))
    distinct, inverse = np.unique(users, return_inverse=True)
    codes = model.dataset_.item_codes(items)
    for start in range(0, len(distinct), batch_size):
        block = distinct[start:start + batch_size]
        rows = np.flatnonzero((inverse >= start) & (inverse < start + len(block)))
        scores = model.score(block)
        out[rows] = scores[inverse[rows] - start, codes[rows]]
    return out


def evaluate_rating(models: Mapping[str, Recommender | Callable[[], Recommender]],
                    split: Split, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """MAE, MSE and RMSE of predicted purchase counts on a rating split.

    Ranking models output scores, not counts, so each model's scores are mapped to counts
    by a straight line :math:`\\hat r = a s + b` fitted by least squares on the
    validation pairs, then applied to the test pairs. The ``global mean`` row predicts the
    mean training count for every pair -- the floor to beat.

    Parameters
    ----------
    models : mapping of str to Recommender or callable
        Unfitted models (or factories), fitted on ``split.train``.
    split : Split
        From :func:`~xsell.data.splits.random_rating_split`.
    n_boot, seed
        Bootstrap of the confidence intervals (over users).

    Returns
    -------
    pandas.DataFrame
        Columns ``model, variant, metric, k, value, ci_low, ci_high, n_users, n_points,
        p_value`` (``k`` is 0: rating metrics have no cut-off), plus the calibration
        slope and intercept.
    """
    train = split.train_dataset()
    valid, test = split.validation, split.test
    y_valid, y_test = valid[S.RATING].to_numpy(), test[S.RATING].to_numpy()
    predictions = {"global mean": np.full(len(test), train.interactions[S.RATING].mean())}
    lines = {"global mean": (0.0, float(train.interactions[S.RATING].mean()))}
    for name, model in models.items():
        fitted = _fitted(model, train)
        s_valid = pair_scores(fitted, valid[S.USER].to_numpy(), valid[S.ITEM].to_numpy())
        s_test = pair_scores(fitted, test[S.USER].to_numpy(), test[S.ITEM].to_numpy())
        a, b = np.polyfit(s_valid, y_valid, 1) if np.ptp(s_valid) > 0 else (0.0, y_valid.mean())
        predictions[name] = a * s_test + b
        lines[name] = (float(a), float(b))
    owners = test[S.USER].to_numpy()
    rows = []
    for name, pred in predictions.items():
        err = pred - y_test
        for metric, per_row in (("mae", np.abs(err)), ("mse", err ** 2)):
            lo, hi = bootstrap_ci(per_row, owners, n_boot, seed=seed)
            rows.append({"model": name, "variant": "random 7:1:2 ratings", "metric": metric,
                         "k": 0, "value": float(per_row.mean()), "ci_low": lo, "ci_high": hi,
                         "n_users": int(pd.Series(owners).nunique()), "n_points": len(err),
                         "p_value": np.nan, "slope": lines[name][0],
                         "intercept": lines[name][1]})
        mse = rows[-1]
        rows.append({**mse, "metric": "rmse", "value": float(np.sqrt(mse["value"])),
                     "ci_low": float(np.sqrt(mse["ci_low"])),
                     "ci_high": float(np.sqrt(mse["ci_high"]))})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- simple helpers


def targets_by_user(heldout: pd.DataFrame) -> pd.Series:
    """Distinct held-out item ids per user (a Series of arrays, indexed by user id)."""
    return heldout.groupby(S.USER)[S.ITEM].unique()


def evaluate_ranking(model: Recommender, heldout: pd.DataFrame, ks: Iterable[int] = (10,),
                     metrics: Iterable[str] = ("recall", "precision", "hit_rate", "ndcg"),
                     exclude_seen: bool = False) -> pd.DataFrame:
    """Mean ranking metrics of a fitted model over the users in ``heldout``.

    The quick check of the data chapter: every held-out item is a target, ranked over
    the whole catalogue. :func:`evaluate` is the full protocol.

    Returns
    -------
    pandas.DataFrame
        Tidy table with columns ``metric``, ``k``, ``value``, ``n_users``.
    """
    targets = targets_by_user(heldout)
    task = Task("heldout", targets.index.to_numpy(), targets.index.to_numpy(),
                list(targets.to_numpy()), exclude_seen=exclude_seen)
    points = per_user_metrics(model, task, ks, metrics)
    out = points.groupby(["metric", "k"], sort=False)["value"].agg(
        value="mean", n_users="count").reset_index()
    return out


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


def headline_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of a results table that are a variant's headline metric, labelled.

    Parameters
    ----------
    results : pandas.DataFrame
        A tidy table of :func:`evaluate` (``model``, ``variant``, ``metric``, ``k``, ...).

    Returns
    -------
    pandas.DataFrame
        Those rows, in the order of :func:`~xsell.data.variants.headline_metrics`, with a
        ``column`` label such as ``"explore recall@20"``.
    """
    rows = [results[(results["variant"] == v) & (results["metric"] == m) & (results["k"] == k)]
            .assign(column=f"{v} {m}@{k}") for v, m, k in headline_metrics()]
    return pd.concat(rows, ignore_index=True)


def headline_table(results: pd.DataFrame, models: Sequence[str] | None = None,
                   what: str = "cell") -> pd.DataFrame:
    """The chapters' summary: one row per model, one column per variant's headline metric.

    Parameters
    ----------
    results : pandas.DataFrame
        A tidy table of :func:`evaluate`; several may be concatenated.
    models : sequence of str, optional
        Rows to show, in this order (default: every model, in order of appearance).
    what : {"cell", "value", "ci_low", "ci_high"}
        ``"cell"``: the value and its 95% interval as text, ``"0.0812 [0.0722, 0.0905]"``;
        otherwise that column's numbers.
    """
    if what not in ("cell", "value", "ci_low", "ci_high"):
        raise ValueError(f"what must be 'cell', 'value', 'ci_low' or 'ci_high', not {what!r}")
    rows = headline_rows(results)
    if what == "cell":
        rows = rows.assign(cell=[f"{v:.4f} [{lo:.4f}, {hi:.4f}]" for v, lo, hi in
                                 zip(rows["value"], rows["ci_low"], rows["ci_high"], strict=True)])
    table = rows.pivot_table(index="model", columns="column", values=what, aggfunc="first",
                             sort=False)
    table = table[list(pd.unique(rows["column"]))]
    table.columns.name = None
    order = list(pd.unique(rows["model"])) if models is None else list(models)
    return table.loc[order]


#: The columns of :func:`repeat_explore_table`, by metric name.
REPEAT_EXPLORE_COLUMNS = {"recall": "recall", "repeat_recall": "repeat-part recall",
                          "explore_recall": "explore-part recall",
                          "repeat_ratio": "repeat ratio"}


def repeat_explore_table(results: pd.DataFrame, k: int = 20,
                         models: Sequence[str] | None = None,
                         what: str = "value") -> pd.DataFrame:
    """One list, two jobs: overall, repeat-part and explore-part recall and the repeat ratio.

    The Next-Basket Reality Check view (Li et al., TOIS 2023) of the ``all`` variant:
    how much of each model's recall comes from items the user bought before, how much
    from new ones, and what share of its list it spends on repeats
    (:data:`xsell.metrics.HISTORY_METRICS`).

    Parameters
    ----------
    results : pandas.DataFrame
        A tidy table of :func:`evaluate` with those metrics on the ``all`` variant.
    k : int
        The cut-off.
    models : sequence of str, optional
        Rows, in this order (default: every model of the table).
    what : {"value", "ci_low", "ci_high", "n_users"}
        Which column of the results to show.

    Returns
    -------
    pandas.DataFrame
        One row per model; columns recall, repeat-part recall, explore-part recall,
        repeat ratio (``@k``).

    Raises
    ------
    ValueError
        When the table has none of these metrics at ``k`` (a log whose lists exclude
        the user's items, or metrics not computed).
    """
    rows = results[(results["variant"] == "all") & (results["k"] == k)
                   & results["metric"].isin(list(REPEAT_EXPLORE_COLUMNS))]
    if not rows["metric"].isin(list(HISTORY_METRICS)).any():
        raise ValueError(f"no repeat / explore metrics at k={k} on the 'all' variant in this "
                         "table (computed only where lists may hold the user's own items)")
    table = rows.pivot_table(index="model", columns="metric", values=what, aggfunc="first",
                             sort=False)
    table = table[[m for m in REPEAT_EXPLORE_COLUMNS if m in table.columns]]
    table.columns = [f"{REPEAT_EXPLORE_COLUMNS[m]}@{k}" for m in table.columns]
    return table.loc[list(pd.unique(rows["model"])) if models is None else list(models)]
