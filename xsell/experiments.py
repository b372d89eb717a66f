"""The model comparison that the command line, ``xsell run``, the evaluation chapter and the
benchmarks all run: tune on validation, refit on train + validation, score test once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from xsell import __version__
from xsell.cache import data_fingerprint, memoize
from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.data.loaders import describe_source
from xsell.data.prepare import MIN_USER_BASKETS, prepare
from xsell.data.splits import Split, random_rating_split
from xsell.data.variants import tuning_target
from xsell.evaluation import (
    DEFAULT_METRICS,
    VARIANTS,
    build_tasks,
    evaluate_rating,
    per_user_metrics,
    tabulate,
)
from xsell.models.base import Recommender
from xsell.models.fitting import fit_model, store_fit
from xsell.models.registry import model_class
from xsell.tuning import tune_targets


def compare_models(split: Split, names: Sequence[str], protocol: str = "next-basket",
                   ks: Sequence[int] = (10, 20), variants: Sequence[str] = VARIANTS,
                   metrics: Sequence[str] = DEFAULT_METRICS,
                   baseline: str | None = "popularity", tuned: bool = True,
                   hyperparameters: dict | None = None, n_origins: int = 5,
                   n_boot: int = 1000, seed: int = 0, progress: bool = True,
                   cache: bool = False,
                   exclude_seen: bool | None = None) -> tuple[pd.DataFrame, dict]:
    """Tune (optionally), fit and evaluate models by name on one split.

    Parameters
    ----------
    split : Split
        A temporal split (validation part used for tuning).
    names : sequence of str
        Model names from :data:`xsell.models.registry.MODELS`.
    protocol : {"next-basket", "rolling-origin", "cold-start", "basket-completion"}
        Evaluation protocol (:func:`xsell.evaluation.evaluate`).
    ks, variants, metrics, baseline, n_origins, n_boot, seed, progress
        As in :func:`xsell.evaluation.evaluate`.
    tuned : bool
        Grid-search every model's ``param_grid`` on the validation basket, per target
        variant (:func:`xsell.data.variants.tuning_target`); otherwise use default hyperparameters.
    hyperparameters : dict, optional
        ``{model: {variant: params}}`` chosen earlier (e.g. by another protocol's run);
        given, nothing is tuned.
    cache : bool
        Reuse a stored result of an identical call (same data, arguments and package
        source; see :mod:`xsell.cache`).
    exclude_seen : bool, optional
        Seen-item policy of the ``all`` variant, in tuning and test alike
        (:func:`xsell.evaluation.next_basket_task`; ``None``: the training repeat rate).

    Returns
    -------
    results : pandas.DataFrame
        The tidy table of :func:`~xsell.evaluation.evaluate`, all variants together.
    hyperparameters : dict
        ``{model: {variant: params}}`` actually used.

    Notes
    -----
    Hybrids (:mod:`xsell.models.hybrid`) are not grid-searched: for each variant they
    learn that variant's objective on the validation basket, over components with the
    hyperparameters chosen for them earlier in ``names`` (so list the components first).
    """
    if cache:
        key = {"data": data_fingerprint(split.dataset), "split": [split.name, split.params],
               "names": list(names), "protocol": protocol, "ks": list(ks),
               "variants": list(variants), "metrics": list(metrics), "baseline": baseline,
               "tuned": tuned, "n_origins": n_origins,
               # Only the compared models' choices: a call given a larger dict is the same.
               "hyperparameters": None if hyperparameters is None else
               {n: hyperparameters.get(n) for n in names},
               "n_boot": n_boot, "seed": seed, "exclude_seen": exclude_seen}
        return memoize("compare_models", key, lambda: _compare_models(
            split, names, protocol, ks, variants, metrics, baseline, tuned, hyperparameters,
            n_origins, n_boot, seed, progress, cache=True, exclude_seen=exclude_seen))
    return _compare_models(split, names, protocol, ks, variants, metrics, baseline, tuned,
                           hyperparameters, n_origins, n_boot, seed, progress, cache=False,
                           exclude_seen=exclude_seen)


def _compare_models(split, names, protocol, ks, variants, metrics, baseline, tuned,
                    hyperparameters, n_origins, n_boot, seed, progress, cache,
                    exclude_seen=None):
    """:func:`compare_models` itself; with ``cache`` every fit goes through
    :func:`~xsell.models.fitting.fit_model`
    (tuning's winning fits included), so later calls with other protocols, the hybrids'
    components and the chapters' own fits reuse them."""
    if baseline is not None and baseline not in names:
        baseline = None
    if protocol in ("cold-start", "basket-completion"):
        variants = [protocol]
    else:
        variants = list(variants)
    train, tasks = build_tasks(split, protocol, variants, n_origins=n_origins,
                               exclude_seen=exclude_seen)
    targets = sorted({tuning_target(v) for v in variants})
    chosen: dict = {}
    per_point = {}
    bar = tqdm(names, desc=f"compare {protocol}", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        cls = model_class(name)
        best = {}
        if hyperparameters is not None:
            given = hyperparameters[name]
            chosen[name] = {v: given.get(v, given.get("all", {})) for v in variants}
        elif _is_hybrid(cls):
            chosen[name] = {v: _hybrid_params(v, chosen, progress) for v in variants}
        else:
            if tuned and getattr(cls, "param_grid", None):
                tuning = tune_targets(cls, split, targets, keep_best=cache,
                                      exclude_seen=exclude_seen)
                best = {t: r.best_params for t, r in tuning.items()}
                for r in tuning.values():
                    if r.model is not None:
                        store_fit(name, r.best_params, split.train_dataset(), r.model)
            chosen[name] = {v: best.get(tuning_target(v), {})
                            for v in variants}
        # Fit once per distinct configuration; variants that share it share the model.
        fitted: dict = {}
        for variant in variants:
            key = repr(sorted(chosen[name][variant].items()))
            if key not in fitted:
                fitted[key] = fit_model(name, chosen[name][variant], train, cache=cache)
            per_point[name, variant] = per_user_metrics(fitted[key], tasks[variant], ks,
                                                        metrics)
    results = tabulate(per_point, tasks, baseline, n_boot, seed)
    return results, chosen


def _is_hybrid(cls: type) -> bool:
    from xsell.models.hybrid import Hybrid

    return issubclass(cls, Hybrid)


def _hybrid_params(variant: str, chosen: dict, progress: bool) -> dict:
    """A hybrid learns the variant's own objective, over components configured as they
    were chosen earlier in the same comparison (defaults for those not compared)."""
    from xsell.models.hybrid import DEFAULT_COMPONENTS, OBJECTIVES

    objective = variant if variant in OBJECTIVES else tuning_target(variant)[0]
    return {"objective": objective, "progress": progress,
            "components": {c: chosen.get(c, {}).get(variant, {}) for c in DEFAULT_COMPONENTS}}


@dataclass
class EvaluationResult:
    """Everything ``xsell evaluate`` reports, ready to print or save as JSON."""

    dataset: dict
    protocol: str
    results: pd.DataFrame
    hyperparameters: dict
    tasks: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The ``results.json`` layout: dataset, protocol, results, hyperparameters."""
        records = self.results.replace({np.nan: None}).to_dict(orient="records")
        return {"dataset": self.dataset, "protocol": self.protocol, "results": records,
                "hyperparameters": self.hyperparameters, "tasks": self.tasks,
                "seconds": self.seconds, "xsell_version": __version__}

    def table_text(self) -> str:
        """A wide table: one row per (variant, metric, k), one column per model."""
        t = self.results.assign(cell=[
            f"{v:.4f} [{lo:.4f}, {hi:.4f}]" for v, lo, hi in
            zip(self.results["value"], self.results["ci_low"], self.results["ci_high"],
                strict=True)])
        wide = t.pivot_table(index=["variant", "metric", "k"], columns="model", values="cell",
                             aggfunc="first", sort=False)
        wide = wide[[m for m in pd.unique(t["model"]) if m in wide.columns]]
        sizes = ", ".join(f"{v}: {d['n_points']} points / {d['n_users']} users"
                          for v, d in self.tasks.items())
        return (f"protocol {self.protocol} on {self.dataset.get('name')} ({sizes})\n"
                f"value [95% bootstrap CI over users]\n{wide.to_string()}")


def evaluate_dataset(dataset: Dataset, names: Sequence[str], protocol: str = "next-basket",
                     ks: Sequence[int] = (10, 20), variants: Sequence[str] = VARIANTS,
                     baseline: str | None = "popularity", tuned: bool = True,
                     n_origins: int = 5, n_boot: int = 1000, seed: int = 0,
                     min_user_baskets: int = MIN_USER_BASKETS,
                     progress: bool = True,
                     exclude_seen: bool | None = None) -> EvaluationResult:
    """Clean, split and evaluate: the whole of ``xsell evaluate`` as one call.

    ``protocol="ratings"`` runs the seed's formulation (random 7:1:2 split of purchase
    counts, MAE/MSE, :func:`xsell.evaluation.evaluate_rating`); the others use the
    temporal leave-last-basket-out split.
    """
    start = time.perf_counter()
    prepared = prepare(dataset, min_user_baskets=min_user_baskets)
    cleaned = prepared.data
    stats = {"source": describe_source(dataset), **cleaned.summary()}
    if protocol == "ratings":
        split = random_rating_split(cleaned, seed=seed)
        models = {name: model_class(name) for name in names}
        table = evaluate_rating(models, split, n_boot=n_boot, seed=seed)
        hyper = {name: {"ratings": {}} for name in names}
        tasks = {"random 7:1:2 ratings": {"n_points": len(split.test),
                                          "n_users": int(split.test[S.USER].nunique())}}
    else:
        split = prepared.split
        table, hyper = compare_models(split, names, protocol=protocol, ks=ks,
                                      variants=variants, baseline=baseline, tuned=tuned,
                                      n_origins=n_origins, n_boot=n_boot, seed=seed,
                                      progress=progress, exclude_seen=exclude_seen)
        tasks = table.attrs.get("tasks", {})
    return EvaluationResult(stats, protocol, table, hyper, tasks,
                            {"total": time.perf_counter() - start})


class _CachedFit:
    """A factory for :func:`xsell.evaluation.evaluate` whose ``fit`` goes through the cache."""

    def __init__(self, name: str, params: dict):
        self.name, self.params = name, params

    def fit(self, train: Dataset) -> Recommender:
        return fit_model(self.name, self.params, train, cache=True)


def compare_configs(split: Split, configs: dict[str, tuple[str, dict]],
                    protocol: str = "next-basket", ks: Sequence[int] = (10, 20),
                    variants: Sequence[str] = VARIANTS,
                    metrics: Sequence[str] = ("recall", "ndcg"), baseline: str | None = None,
                    n_boot: int = 1000, seed: int = 0, progress: bool = True,
                    cache: bool = False) -> pd.DataFrame:
    """Evaluate fixed configurations side by side (ablations): no tuning.

    Parameters
    ----------
    split : Split
        A temporal split.
    configs : dict
        ``{label: (model name, hyperparameters)}``.
    protocol, ks, variants, metrics, baseline, n_boot, seed, progress
        As in :func:`xsell.evaluation.evaluate` (``baseline`` is a label).
    cache : bool
        Reuse a stored result of an identical call (:mod:`xsell.cache`).
    """
    if cache:
        key = {"data": data_fingerprint(split.dataset), "split": [split.name, split.params],
               "configs": configs, "protocol": protocol, "ks": list(ks),
               "variants": list(variants), "metrics": list(metrics), "baseline": baseline,
               "n_boot": n_boot, "seed": seed}
        return memoize("compare_configs", key, lambda: _compare_configs(
            split, configs, protocol, ks, variants, metrics, baseline, n_boot, seed, progress,
            cache=True))
    return _compare_configs(split, configs, protocol, ks, variants, metrics, baseline, n_boot,
                            seed, progress, cache=False)


def compare_ratings(split: Split, configs: dict[str, tuple[str, dict]], n_boot: int = 1000,
                    seed: int = 0, cache: bool = False) -> pd.DataFrame:
    """The seed's rating formulation for fixed configurations: MAE, MSE and RMSE of counts.

    Parameters
    ----------
    split : Split
        From :func:`~xsell.data.splits.random_rating_split` (its train part fits the models,
        its validation part calibrates scores to counts, its test part is scored once).
    configs : dict
        ``{label: (model name, hyperparameters)}``.
    n_boot, seed
        Bootstrap of the confidence intervals (:func:`xsell.evaluation.evaluate_rating`).
    cache : bool
        Reuse a stored result of an identical call, and fit through the model cache
        (:mod:`xsell.cache`).

    Returns
    -------
    pandas.DataFrame
        The table of :func:`~xsell.evaluation.evaluate_rating` (a ``global mean`` row first).
    """
    def run() -> pd.DataFrame:
        return evaluate_rating(_factories(configs, cache), split, n_boot=n_boot, seed=seed)

    if not cache:
        return run()
    key = {"data": data_fingerprint(split.dataset), "split": [split.name, split.params],
           "configs": configs, "n_boot": n_boot, "seed": seed}
    return memoize("compare_ratings", key, run)


def _factories(configs: dict[str, tuple[str, dict]], cache: bool) -> dict:
    """``{label: factory}`` of unfitted models; with ``cache`` they fit through the cache."""
    from functools import partial

    return {label: partial(_CachedFit, name, params) if cache else
            partial(model_class(name), **params) for label, (name, params) in configs.items()}


def _compare_configs(split, configs, protocol, ks, variants, metrics, baseline, n_boot, seed,
                     progress, cache):
    from xsell.evaluation import evaluate

    models = _factories(configs, cache)
    return evaluate(models, split, protocol, ks, variants, metrics, baseline, n_boot=n_boot,
                    seed=seed, progress=progress)
