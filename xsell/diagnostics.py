"""Looking inside a comparison: accuracy at every K, beyond-accuracy profiles, exposure,
and error analysis by department and by kind of user.

Everything takes fitted models (or their :class:`RankedLists`) and an evaluation
:class:`~xsell.evaluation.Task`, so the evaluation chapter shows numbers computed exactly
the way the headline table was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from xsell import metrics as M
from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.data.splits import Split
from xsell.evaluation import Task
from xsell.models.base import Recommender


def rank(model: Recommender, task: Task, k: int) -> np.ndarray:
    """The model's top-``k`` lists for every point of a task, under the task's rules."""
    return model.recommend(task.users, k=k, exclude_seen=task.exclude_seen,
                           candidates=task.candidates, history=task.history)


class RankedLists:
    """A model's lists on one task at several cut-offs, scored once.

    Stands in for the model in this module's functions (they only ask it for lists):
    the diagnostics ask for the same task's lists at several K, and scoring the whole
    catalogue is most of the cost.
    """

    def __init__(self, model: Recommender, task: Task, ks: Sequence[int]):
        self.task = task
        self.lists = model.top_lists(task.users, sorted(set(ks)), exclude_seen=task.exclude_seen,
                                     candidates=task.candidates, history=task.history)

    def recommend(self, users, k: int, **rules) -> np.ndarray:
        if users is not self.task.users or k not in self.lists:
            raise ValueError(f"lists of these users at K={k} were not prepared")
        return self.lists[k]


#: The cut-offs of :func:`metric_curves`.
CURVE_KS = (1, 2, 3, 5, 10, 15, 20, 30, 50)


def metric_curves(models: Mapping[str, Recommender], task: Task,
                  ks: Sequence[int] = CURVE_KS,
                  metric: str = "recall") -> pd.DataFrame:
    """Mean of a metric at every cut-off, one column per model (index: K)."""
    out = {}
    for name, model in models.items():
        ranked = rank(model, task, max(ks))
        out[name] = [float(np.nanmean(M.RANKING_METRICS[metric](ranked, task.targets, k)))
                     for k in ks]
    return pd.DataFrame(out, index=pd.Index(ks, name="k"))


def profile(models: Mapping[str, Recommender], task: Task, train: Dataset, k: int = 10,
            level: int = 0) -> pd.DataFrame:
    """Accuracy next to beyond-accuracy metrics of each model's top-K lists.

    Columns: recall, ndcg, cross-category hit rate, catalogue coverage, Gini of exposure,
    novelty, average popularity, category coverage and category diversity (``level`` of
    the category tree; 0 = department). Popularity is counted on ``train``.
    """
    category = train.item_category(level)
    popularity = train.interactions[S.ITEM].value_counts().reindex(train.item_index,
                                                                   fill_value=0)
    history = (train.interactions if task.history is None else task.history)
    known = M.categories_per_user(
        history.groupby(S.USER)[S.ITEM].unique().reindex(task.users).tolist(), category)
    rows = {}
    for name, model in models.items():
        ranked = rank(model, task, k)
        rows[name] = {
            "recall": np.nanmean(M.recall_at_k(ranked, task.targets, k)),
            "ndcg": np.nanmean(M.ndcg_at_k(ranked, task.targets, k)),
            "cross-category hit rate": np.nanmean(M.cross_category_hit_rate_at_k(
                ranked, task.targets, k, category, known)),
            "catalogue coverage": M.catalogue_coverage(ranked, k, train.n_items),
            "gini of exposure": M.gini_exposure(ranked, k, train.n_items),
            "novelty (bits)": np.nanmean(M.novelty_at_k(ranked, k, popularity)),
            "avg popularity": np.nanmean(M.average_popularity_at_k(ranked, k, popularity)),
            "category coverage": np.nanmean(M.category_coverage_at_k(ranked, k, category)),
            "category diversity": np.nanmean(M.intra_list_diversity_at_k(ranked, k, category)),
        }
    return pd.DataFrame(rows).T


def exposure_by_category(models: Mapping[str, Recommender], task: Task, train: Dataset,
                         k: int = 10, level: int = 0) -> pd.DataFrame:
    """Share of recommended slots per category for each model, next to purchase shares."""
    category = train.item_category(level)
    out = {"purchases (train)": train.interaction_category(level).value_counts(normalize=True)}
    for name, model in models.items():
        out[name] = M.exposure_share(rank(model, task, k), k, category)
    return pd.DataFrame(out).fillna(0.0).sort_values("purchases (train)", ascending=False)


def recall_by_category(models: Mapping[str, Recommender], task: Task, train: Dataset,
                       k: int = 10, level: int = 0) -> pd.DataFrame:
    """Share of target items found in the top K, split by the target's category.

    Row = category, column = model; an extra column counts the targets. Shows which
    departments each model serves well or badly.
    """
    category = train.item_category(level)
    flat_targets = np.concatenate([np.asarray(t) for t in task.targets])
    target_cat = category.reindex(flat_targets).to_numpy()
    out = {"targets": pd.Series(target_cat).value_counts()}
    for name, model in models.items():
        found = M.targets_found(rank(model, task, k), task.targets, k)
        out[name] = pd.Series(found).groupby(target_cat).mean()
    return pd.DataFrame(out).sort_values("targets", ascending=False)


def history_groups(dataset: Dataset, users: Sequence, bins: Sequence[int] = (0, 5, 15, 10**9),
                   labels: Sequence[str] = ("light (≤5 baskets)", "medium (6-15)",
                                            "heavy (>15)")) -> np.ndarray:
    """Label each user by the number of baskets in their (training) history."""
    n = dataset.interactions.groupby(S.USER)[S.SEQ].max().reindex(users) + 1
    return pd.cut(n.fillna(0), bins=list(bins), labels=list(labels)).astype(str).to_numpy()


def metric_by_group(models: Mapping[str, Recommender], task: Task, groups: np.ndarray,
                    k: int = 10, metric: str = "ndcg") -> pd.DataFrame:
    """Mean of a per-user metric per user group, plus the gap between groups (fairness)."""
    out, gaps = {}, {}
    for name, model in models.items():
        values = M.RANKING_METRICS[metric](rank(model, task, k), task.targets, k)
        gap = M.group_gap(values, groups)
        out[name], gaps[name] = gap.mean, gap.gap
    table = pd.DataFrame(out).T
    table["gap (max - min)"] = pd.Series(gaps)
    return table


def diagnose(split: Split, hyperparameters: dict, names: Sequence[str] | None = None,
             k: int = 10, cache: bool = False) -> dict[str, pd.DataFrame]:
    """All the evaluation chapter's diagnostics of tuned models, in one call.

    Refits each model with the configuration chosen for *all* targets and for *explore*
    targets (once when they agree) on train + validation, then computes: Recall@K
    curves on both tasks, the beyond-accuracy profile, exposure by department and recall
    by department on *explore*, and NDCG@``k`` by history group on *all*.

    Parameters
    ----------
    split : Split
        The temporal split of the comparison.
    hyperparameters : dict
        ``{model: {variant: params}}`` as returned by
        :func:`xsell.experiments.compare_models`.
    names : sequence of str, optional
        Models to diagnose (default: all in ``hyperparameters``).
    k : int
        Cut-off of the profile, exposure and group tables.
    cache : bool
        Reuse a stored result of an identical call (:mod:`xsell.cache`).

    Returns
    -------
    dict of str to pandas.DataFrame
        Keys ``curves_all``, ``curves_explore``, ``profile``, ``exposure``,
        ``recall_by_department``, ``ndcg_by_group``, ``group_sizes``.
    """
    names = list(names or hyperparameters)
    if cache:
        from xsell.cache import data_fingerprint, memoize

        key = {"data": data_fingerprint(split.dataset), "split": [split.name, split.params],
               "hyperparameters": {n: hyperparameters[n] for n in names}, "k": k}
        return memoize("diagnose", key,
                       lambda: _diagnose(split, hyperparameters, names, k, cache=True))
    return _diagnose(split, hyperparameters, names, k, cache=False)


def _diagnose(split: Split, hyperparameters: dict, names: list, k: int,
              cache: bool) -> dict[str, pd.DataFrame]:
    from xsell.evaluation import next_basket_task
    from xsell.models.fitting import fit_model

    train = split.train_dataset(include_validation=True)
    tasks = {v: next_basket_task(split, v) for v in ("all", "explore")}
    fitted: dict = {"all": {}, "explore": {}}
    for name in names:
        for variant in fitted:
            params = hyperparameters[name][variant]
            twin = fitted["all"].get(name) if variant == "explore" else None
            same = twin is not None and params == hyperparameters[name]["all"]
            fitted[variant][name] = twin if same else fit_model(name, params, train, cache)
    groups = history_groups(train, tasks["all"].users)
    curve_k = max(CURVE_KS)
    lists = {"all": {n: RankedLists(m, tasks["all"], (curve_k, k))
                     for n, m in fitted["all"].items()},
             "explore": {n: RankedLists(m, tasks["explore"], (curve_k, k, 20))
                         for n, m in fitted["explore"].items()}}
    return {
        "curves_all": metric_curves(lists["all"], tasks["all"], metric="recall"),
        "curves_explore": metric_curves(lists["explore"], tasks["explore"], metric="recall"),
        "profile": profile(lists["explore"], tasks["explore"], train, k=k),
        "exposure": exposure_by_category(lists["explore"], tasks["explore"], train, k=k),
        "recall_by_department": recall_by_category(lists["explore"], tasks["explore"],
                                                   train, k=20),
        "ndcg_by_group": metric_by_group(lists["all"], tasks["all"], groups, k=k),
        "group_sizes": pd.Series(groups).value_counts().rename("users").to_frame(),
    }
