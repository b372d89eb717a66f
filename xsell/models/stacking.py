"""Stacking on held-out baskets: how the hybrids and the basket completer learn to combine.

Both combine fitted *parts* (component models, or completion signals) with weights, or a
re-ranker, that must be learnt on baskets the parts did not see. :meth:`HeldOutStacking.fit`
does it the same way for both:

1. hold out each user's last training basket(s) (the subclass says how);
2. fit the parts on the rest;
3. turn the held-out baskets into ranking examples -- candidate pairs, their features,
   whether each pair is a target (:class:`RankingExamples`) -- and learn the combination;
4. refit the parts on all of the training data.

Fitted on train + validation of a leave-last-basket-out split, the held-out basket *is*
the validation basket, so the test basket is never seen. When there is nothing to learn
from (a tiny shop: no user with two baskets, or no held-out basket with a target), the
combination falls back to equal weights, with one warning -- never an error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.models.base import Recommender
from xsell.models.candidates import GroupedRanking

#: Values a fusion weight may take in the coordinate search (weights are relative).
WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


@dataclass
class RankingExamples:
    """Candidate pairs of held-out baskets, one ranking group per basket.

    Attributes
    ----------
    X : numpy.ndarray
        Features of each pair, shape ``(n_pairs, n_features)``.
    row : numpy.ndarray
        The pair's group (non-decreasing).
    relevant : numpy.ndarray
        Whether the pair's item is a target of its basket.
    n_targets : numpy.ndarray
        Targets per group, including those that are not among the candidates.
    """

    X: np.ndarray
    row: np.ndarray
    relevant: np.ndarray
    n_targets: np.ndarray

    @property
    def n_groups(self) -> int:
        """Number of held-out baskets."""
        return len(self.n_targets)

    @property
    def candidate_recall(self) -> float:
        """Share of the held-out targets among the candidates (what re-ranking can reach)."""
        return float(self.relevant.sum() / max(self.n_targets.sum(), 1))


def coordinate_search(X: np.ndarray, objective, passes: int = 3,
                      start: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Non-negative weights of ``X``'s columns maximising ``objective(X @ w)``.

    Coordinate search: starting from equal weights (or ``start``), each weight in turn
    takes the value of :data:`WEIGHT_GRID` that scores best with the others fixed;
    repeated ``passes`` times or until nothing improves. Ranking metrics are not
    differentiable, so they are searched rather than descended.

    Returns
    -------
    weights : numpy.ndarray
        Normalised to sum to 1.
    value : float
        The objective at those weights.
    """
    w = np.ones(X.shape[1]) if start is None else np.asarray(start, dtype=float).copy()
    current = X @ w
    best = objective(current)
    for _ in range(passes):
        improved = False
        for j in range(len(w)):
            column = X[:, j]
            for value in WEIGHT_GRID:
                trial = w.copy()
                trial[j] = value
                if not trial.any():
                    continue
                # One weight moves: update the scores along its column, not all columns.
                scores = current + (value - w[j]) * column
                score = objective(scores)
                if score > best + 1e-9:
                    best, w, current, improved = score, trial, scores, True
        if not improved:
            break
    return w / w.sum(), best


def fit_weights(X: np.ndarray, row: np.ndarray, relevant: np.ndarray, n_targets: np.ndarray,
                metric: str, k: int, passes: int = 3) -> tuple[np.ndarray, float]:
    """Non-negative weights of ``X``'s columns maximising a grouped ranking metric
    (Recall@k or NDCG@k over groups, :class:`~xsell.models.candidates.GroupedRanking`),
    found by :func:`coordinate_search`."""
    ranking = GroupedRanking(row, relevant)
    return coordinate_search(X, lambda score: ranking.metric(score, n_targets, metric, k),
                             passes)


def hold_out_last_baskets(train: Dataset, depth: int) -> tuple[Dataset, pd.DataFrame]:
    """Each user's last ``depth`` baskets, keeping at least one basket per user.

    Returns
    -------
    rest : Dataset
        The other rows (sorted by user and time), to fit the parts on.
    heldout : pandas.DataFrame
        The held-out rows, with ``_depth`` (0 = the user's last basket).
    """
    inter = train.interactions
    n_baskets = (inter.groupby(S.USER)[S.SEQ].transform("max") + 1).to_numpy()
    from_end = n_baskets - 1 - inter[S.SEQ].to_numpy()
    held = (from_end < depth) & (from_end < n_baskets - 1)
    rest = inter[~held].sort_values([S.USER, S.SEQ], kind="stable").reset_index(drop=True)
    return train.with_interactions(rest), inter[held].assign(_depth=from_end[held])


class NothingToLearn(Exception):
    """Raised by a hook of :class:`HeldOutStacking` when the held-out baskets give nothing
    to learn from; the message says why."""


class HeldOutStacking(Recommender):
    """Base of models that combine parts learnt on held-out baskets (module docstring).

    Subclasses implement ``_hold_out(train) -> (fit_data, heldout)``,
    ``_fit_parts(data)``, ``_keep_parts(parts)``,
    ``_examples(parts, fit_data, heldout) -> RankingExamples``, ``_learn(examples)`` and
    ``_learn_equal_weights()``; a hook raises :class:`NothingToLearn` when the data gives
    nothing to learn from.

    Attributes
    ----------
    candidate_recall_ : float
        Share of held-out targets that made it into the candidates (NaN when the
        combination fell back to equal weights).
    """

    def fit(self, train: Dataset) -> HeldOutStacking:
        """Learn the combination on held-out baskets, then refit the parts on ``train``."""
        self._check_params()
        self._remember(train)
        try:
            fit_data, heldout = self._hold_out(train)
            parts = self._fit_parts(fit_data)
            self._keep_parts(parts)
            examples = self._examples(parts, fit_data, heldout)
            if examples.n_groups == 0:
                raise NothingToLearn("no held-out basket has a target to learn from")
        except NothingToLearn as why:
            warnings.warn(f"{type(self).__name__}: {why}; combining its parts with equal "
                          "weights", stacklevel=2)
            self.candidate_recall_ = float("nan")
            self._learn_equal_weights()
        else:
            self.candidate_recall_ = examples.candidate_recall
            self._learn(examples)
        self._keep_parts(self._fit_parts(train))
        return self

    # ------------------------------------------------------------------ per subclass
    def _check_params(self) -> None:
        """Refuse bad hyperparameters before any fitting."""

    def _hold_out(self, train: Dataset):
        raise NotImplementedError

    def _fit_parts(self, data: Dataset):
        raise NotImplementedError

    def _keep_parts(self, parts) -> None:
        raise NotImplementedError

    def _examples(self, parts, fit_data: Dataset, heldout) -> RankingExamples:
        raise NotImplementedError

    def _learn(self, examples: RankingExamples) -> None:
        raise NotImplementedError

    def _learn_equal_weights(self) -> None:
        raise NotImplementedError
