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
from tqdm.auto import tqdm

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

    def factory(self, model_class: type[Recommender]) -> Callable[[], Recommender]:
        """A constructor of the model with the chosen hyperparameters."""
        return partial(model_class, **self.best_params)


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
    grid = parameter_grid(param_grid if param_grid is not None
                          else getattr(model_class, "param_grid", {}))
    task = next_basket_task(split, variant, part="validation")
    train = split.train_dataset()
    rows = []
    for params in tqdm(grid, desc=f"tune {model_class.__name__}", disable=not progress):
        start = time.perf_counter()
        model = model_class(**params).fit(train)
        seconds = time.perf_counter() - start
        values = per_user_metrics(model, task, ks=(k,), metrics=(metric,))["value"]
        rows.append({**{p: _plain(v) for p, v in params.items()},
                     "value": float(np.nanmean(values)), "fit_seconds": seconds})
    table = pd.DataFrame(rows)
    best = grid[int(table["value"].to_numpy().argmax())]  # first best on ties
    return TuningResult({p: _plain(v) for p, v in best.items()}, table, metric, k, variant)


def _plain(value):
    """JSON-friendly parameter values (numpy scalars to Python)."""
    return value.item() if isinstance(value, np.generic) else value
