"""Hyperparameter search on the validation split -- never on test.

A grid search: every combination of a model's ``param_grid`` is fitted on the training
part and scored on the validation part of the same temporal split; the best combination
is then refitted on train + validation by :func:`xsell.evaluation.evaluate` before the
test part is scored once. Deterministic: models take their seeds as parameters.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from tqdm import tqdm

from xsell.data.splits import Split
from xsell.evaluation import next_basket_task, per_user_metrics
from xsell.models.base import Recommender


def parameter_grid(param_grid: Mapping[str, Sequence]) -> list[dict]:
    """Every combination of a grid, in a fixed order (``{}`` gives ``[{}]``)."""
    names = sorted(param_grid)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(param_grid[n] for n in names))]


@dataclass
class TuningResult:
    """The outcome of :func:`tune`."""

    best_params: dict
    table: pd.DataFrame
    metric: str
    k: int
    variant: str
    model: Recommender | None = None

    def factory(self, model_class: type[Recommender]) -> Callable[[], Recommender]:
        """A constructor of the model with the chosen hyperparameters."""
        return partial(model_class, **self.best_params)


def tune_targets(model_class: type[Recommender], split: Split,
                 targets: Sequence[tuple[str, str, int]] = (("all", "ndcg", 10),),
                 param_grid: Mapping | None = None, progress: bool = False,
                 keep_best: bool = False) -> dict[tuple[str, str, int], TuningResult]:
    """Grid-search once, choosing the best combination for several targets.

    Each combination is fitted once on ``split.train`` and scored on the validation part
    for every ``(variant, metric, k)`` target, so asking for two targets costs one search.

    Parameters
    ----------
    model_class : type
        A :class:`~xsell.models.base.Recommender` subclass.
    split : Split
        Temporal split; models are fitted on ``split.train`` and scored on
        ``split.validation``.
    targets : sequence of tuple
        ``(variant, metric, k)`` to maximise, e.g. ``("explore", "recall", 20)``.
    param_grid : mapping of str to sequence, optional
        Values to try (default: ``model_class.param_grid``, or no tuning).
    progress : bool
        Show a progress bar over the combinations.
    keep_best : bool
        Keep each target's winning model (fitted on ``split.train``) in its result's
        ``model``, for reuse; otherwise only its parameters are kept.

    Returns
    -------
    dict
        One :class:`TuningResult` per target.
    """
    grid = parameter_grid(param_grid if param_grid is not None
                          else getattr(model_class, "param_grid", {}))
    tasks = {v: next_basket_task(split, v, part="validation") for v, _, _ in targets}
    train = split.train_dataset()
    rows, winners = [], {}
    for params in tqdm(grid, desc=f"tune {model_class.__name__}", disable=not progress):
        start = time.perf_counter()
        model = model_class(**params).fit(train)
        row = {**{p: _plain(v) for p, v in params.items()},
               "fit_seconds": time.perf_counter() - start}
        for variant, metric, k in targets:
            values = per_user_metrics(model, tasks[variant], ks=(k,), metrics=(metric,))
            value = float(np.nanmean(values["value"]))
            row[f"{variant} {metric}@{k}"] = value
            if keep_best and value > winners.get((variant, metric, k), (-np.inf, None))[0]:
                winners[variant, metric, k] = (value, model)  # strict: first best on ties
        rows.append(row)
    table = pd.DataFrame(rows)
    out = {}
    for variant, metric, k in targets:
        column = f"{variant} {metric}@{k}"
        best = grid[int(table[column].to_numpy().argmax())]  # first best on ties
        out[variant, metric, k] = TuningResult({p: _plain(v) for p, v in best.items()},
                                               table.rename(columns={column: "value"}),
                                               metric, k, variant,
                                               winners.get((variant, metric, k), (None, None))[1])
    return out


def tune(model_class: type[Recommender], split: Split, param_grid: Mapping | None = None,
         variant: str = "all", metric: str = "ndcg", k: int = 10,
         progress: bool = False) -> TuningResult:
    """Grid-search a model's hyperparameters on the validation part of a temporal split.

    Parameters
    ----------
    model_class : type
        A :class:`~xsell.models.base.Recommender` subclass.
    split : Split
        Temporal split; models are fitted on ``split.train`` and scored on
        ``split.validation``.
    param_grid : mapping of str to sequence, optional
        Values to try (default: ``model_class.param_grid``, or no tuning).
    variant : {"all", "explore", "cross-category"}
        Target variant the score is computed on.
    metric : str
        Metric to maximise (a name in :data:`xsell.metrics.RANKING_METRICS`).
    k : int
        Its cut-off.
    progress : bool
        Show a progress bar over the combinations.

    Returns
    -------
    TuningResult
        Best parameters and the full table (one row per combination, with fit seconds).
    """
    return tune_targets(model_class, split, [(variant, metric, k)], param_grid,
                        progress)[variant, metric, k]


def _plain(value):
    """JSON-friendly parameter values (numpy scalars to Python)."""
    return value.item() if isinstance(value, np.generic) else value
