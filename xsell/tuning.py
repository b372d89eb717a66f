"""Hyperparameter search on the validation split -- never on test.

A grid search: every combination of a model's ``param_grid`` is fitted on the training
part and scored on the validation part of the same temporal split; the best combination
is then refitted on train + validation by :func:`xsell.evaluation.evaluate` before the
test part is scored once. Deterministic: models take their seeds as parameters.

A search is deterministic, so its outcome can be recorded: :func:`record_tuning` writes
one JSON per dataset (the data's fingerprint, every model's grid, the chosen values and
the whole validation table) and :func:`recorded_hyperparameters` gives those choices back
for the same data and the same grids -- the chapters use it instead of searching again.
"""

from __future__ import annotations

import datetime
import itertools
import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from xsell import __version__
from xsell.checkpoint import data_fingerprint
from xsell.data.dataset import plain_value
from xsell.data.splits import Split
from xsell.data.variants import VARIANTS, tuning_target
from xsell.evaluation import next_basket_task, per_user_metrics
from xsell.fileio import atomic_write
from xsell.models.base import Recommender
from xsell.models.registry import model_class
from xsell.records import read_json_records


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
                 keep_best: bool = False, exclude_seen: bool | None = None
                 ) -> dict[tuple[str, str, int], TuningResult]:
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
    exclude_seen : bool, optional
        Seen-item policy of the ``all`` validation task
        (:func:`~xsell.evaluation.next_basket_task`; ``None``: the training repeat rate).

    Returns
    -------
    dict
        One :class:`TuningResult` per target.
    """
    grid = parameter_grid(param_grid if param_grid is not None
                          else getattr(model_class, "param_grid", {}))
    tasks = {v: next_basket_task(split, v, part="validation", exclude_seen=exclude_seen)
             for v, _, _ in targets}
    train = split.train_dataset()
    rows, winners = [], {}
    scoring_only = set(getattr(model_class, "scoring_params", ()))
    fits: dict = {}  # one fit per combination of the parameters that change the fit
    for params in tqdm(grid, desc=f"tune {model_class.__name__}", disable=not progress):
        start = time.perf_counter()
        fit_key = repr(sorted((p, v) for p, v in params.items() if p not in scoring_only))
        if fit_key in fits:
            model = _with_scoring_params(fits[fit_key], params, train)
        else:
            model = fits[fit_key] = model_class(**params).fit(train)
        row = {**{p: plain_value(v) for p, v in params.items()},
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
        out[variant, metric, k] = TuningResult({p: plain_value(v) for p, v in best.items()},
                                               table.rename(columns={column: "value"}),
                                               metric, k, variant,
                                               winners.get((variant, metric, k), (None, None))[1])
    return out


def _with_scoring_params(fitted: Recommender, params: dict, train) -> Recommender:
    """A twin of a fitted model that differs only in parameters that change scoring
    (``scoring_params``): the fitted state is shared, what derives from the data and the
    parameters is rebuilt, as on load."""
    twin = type(fitted)(**params)
    twin._restore_state(fitted._fitted_state(), train)
    return twin


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


# ---------------------------------------------------------------------- recorded runs
#: Recorded tuning runs shipped with the package, one JSON per dataset
#: (``benchmarks/bench_tuning.py`` writes them).
RECORDS = Path(__file__).resolve().parent / "tuned"

#: The models whose search is recorded (every model of the chapters with a grid).
RECORDED_MODELS: tuple[str, ...] = ("buy-again", "itemknn", "cooccurrence", "ease", "tifu-knn",
                                    "als", "bpr", "text-similarity", "two-tower", "sasrec")

#: The layout of a record; a record of another layout is ignored.
RECORD_FORMAT = 1


def _json_grid(model_class: type[Recommender]) -> dict:
    """A model's grid as JSON gives it back (tuples become lists, numpy scalars floats)."""
    grid = getattr(model_class, "param_grid", {}) or {}
    return json.loads(json.dumps({p: [plain_value(v) for v in values]
                                  for p, values in sorted(grid.items())}))


def record_tuning(split: Split, names: Sequence[str], path: str | Path,
                  variants: Sequence[str] = VARIANTS, progress: bool = True,
                  keep_others: bool = False) -> dict:
    """Grid-search models on the validation part and write the outcome as a record.

    Parameters
    ----------
    split : Split
        The temporal split the chapters use (:func:`xsell.data.prepare.prepare`).
    names : sequence of str
        Registered model names with a ``param_grid``.
    path : str or Path
        JSON file to write (atomically).
    variants : sequence of str
        Variants whose tuning targets are searched (:func:`~xsell.data.variants.tuning_target`).
    progress : bool
        A progress bar over the models.
    keep_others : bool
        Keep the entries of models not in ``names`` from the record already at ``path``
        -- when it was made on the same data, split and targets -- so one model can be
        searched again (a new grid, a new model) without repeating the others.

    Returns
    -------
    dict
        The record as written.
    """
    targets = sorted({tuning_target(v) for v in variants})
    models = {}
    if keep_others and Path(path).is_file():
        old = json.loads(Path(path).read_text())
        same = (old.get("format") == RECORD_FORMAT
                and old.get("data") == data_fingerprint(split.dataset)
                and old.get("split") == [split.name, json.loads(json.dumps(split.params))]
                and old.get("targets") == [list(t) for t in targets])
        if not same:
            raise ValueError(f"{path}: made on other data, split or targets; record every "
                             "model again (keep_others=False)")
        models = {n: entry for n, entry in old["models"].items() if n not in names}
    for name in tqdm(names, desc="record tuning", disable=not progress):
        cls = model_class(name)
        start = time.perf_counter()
        results = tune_targets(cls, split, targets)
        best = {t: r.best_params for t, r in results.items()}
        (variant, metric, k), first = next(iter(results.items()))
        table = first.table.rename(columns={"value": f"{variant} {metric}@{k}"})
        models[name] = {"param_grid": _json_grid(cls),
                        "chosen": {v: best[tuning_target(v)] for v in variants},
                        "seconds": round(time.perf_counter() - start, 1),
                        "table": json.loads(table.to_json(orient="records"))}
    record = {"format": RECORD_FORMAT, "data": data_fingerprint(split.dataset),
              "dataset": split.dataset.name, "split": [split.name, split.params],
              "targets": [list(t) for t in targets], "xsell_version": __version__,
              "date": datetime.date.today().isoformat(), "models": models}
    text = json.dumps(record, indent=1) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return record


def find_record(split: Split, folder: str | Path = RECORDS) -> dict | None:
    """The recorded tuning run of this split's data, if the package has one."""
    fingerprint = data_fingerprint(split.dataset)
    for path, record in read_json_records(folder):
        if (record.get("format") == RECORD_FORMAT
                and record.get("data") == fingerprint
                and record.get("split") == [split.name, json.loads(json.dumps(split.params))]):
            return {**record, "path": str(path)}
    return None


def recorded_hyperparameters(split: Split, names: Sequence[str],
                             folder: str | Path = RECORDS) -> dict | None:
    """``{model: {variant: params}}`` from the recorded tuning run of this data.

    The record is used only when it was made on data with the same fingerprint and the
    same split, and every model's grid is today's ``param_grid``; otherwise the answer is
    ``None`` (tune live), with a warning when a record of this data exists but is stale.

    Parameters
    ----------
    split : Split
        The temporal split to evaluate on.
    names : sequence of str
        Model names; models without a grid get ``{}`` (their defaults).
    folder : str or Path
        Where the records are (default: the package's own).
    """
    record = find_record(split, folder)
    if record is None:
        return None
    out = {}
    for name in names:
        cls = model_class(name)
        if not getattr(cls, "param_grid", None):
            out[name] = {v: {} for v in VARIANTS}
            continue
        entry = record["models"].get(name)
        if entry is None or entry["param_grid"] != _json_grid(cls):
            why = "has no" if entry is None else "has another grid for"
            warnings.warn(f"{record['path']} {why} {name!r}; tuning live (rerun "
                          "benchmarks/bench_tuning.py)", stacklevel=2)
            return None
        out[name] = {v: dict(p) for v, p in entry["chosen"].items()}
    return out
