"""Boosted trees as plain arrays: a fitted gradient-boosting classifier without the object.

:class:`~sklearn.ensemble.HistGradientBoostingClassifier` has no safe file format (only
pickle), so the learned re-ranker keeps what prediction needs -- per node its feature,
threshold, side for missing values, children and leaf value -- as arrays
(:func:`tree_arrays`), saves those, and predicts from them (:func:`decision_function`),
exactly as scikit-learn does for numeric features.
"""

from __future__ import annotations

import numpy as np

#: The node fields prediction reads.
FIELDS = ("feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf",
          "value")


def tree_arrays(model) -> dict[str, np.ndarray]:
    """The trees of a fitted binary ``HistGradientBoostingClassifier``, as arrays.

    Returns
    -------
    dict of str to numpy.ndarray
        The node fields of all trees concatenated (children re-indexed into the whole
        array), ``roots`` (each tree's first node) and ``baseline`` (the initial
        log-odds).

    Raises
    ------
    ValueError
        For a multi-class model or one with categorical splits (not needed here).
    """
    predictors = model._predictors  # one list of trees per boosting round
    if any(len(round_) != 1 for round_ in predictors):
        raise ValueError("only binary classifiers are supported")
    nodes = [round_[0].nodes for round_ in predictors]
    if any(n["is_categorical"].any() for n in nodes):
        raise ValueError("categorical splits are not supported")
    sizes = np.array([len(n) for n in nodes])
    roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = {f: np.concatenate([n[f] for n in nodes]) for f in FIELDS}
    shift = np.repeat(roots, sizes)
    for child in ("left", "right"):
        out[child] = out[child].astype(np.int64) + shift
    out["missing_go_to_left"] = out["missing_go_to_left"].astype(bool)
    out["is_leaf"] = out["is_leaf"].astype(bool)
    out["roots"] = roots
    out["baseline"] = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
    return out


def decision_function(trees: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Log-odds of each row of ``X``: baseline plus every tree's leaf, summed in order."""
    X = np.asarray(X, dtype=np.float64)
    rows = np.arange(len(X))
    raw = np.full(len(X), trees["baseline"][0])
    for root in trees["roots"]:
        node = np.full(len(X), root)
        active = ~trees["is_leaf"][node]
        while active.any():
            at = node[active]
            x = X[rows[active], trees["feature_idx"][at]]
            left = np.where(np.isnan(x), trees["missing_go_to_left"][at],
                            x <= trees["num_threshold"][at])
            node[active] = np.where(left, trees["left"][at], trees["right"][at])
            active = ~trees["is_leaf"][node]
        raw += trees["value"][node]
    return raw
