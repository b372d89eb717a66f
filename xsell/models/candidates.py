"""Stage 1 of a hybrid: candidate generation.

Each component model ranks the whole catalogue; the candidates of a user are the union
of every component's top ``n``. Stage 2 (:mod:`xsell.models.hybrid`) only re-orders
these, so a target no component puts in its top ``n`` cannot be recovered -- the
candidate *recall* bounds what any re-ranker can reach, and the chapter measures it.

Candidates are stored flat, one row per (user, item) pair, grouped by user: the layout a
re-ranker trains on and a grouped ranking metric reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xsell.models.base import top_k

#: The score given to an item that is not a candidate, below every candidate's score
#: and finite, so that a ranking of a short candidate list stays well defined.
NOT_A_CANDIDATE = -1e12


@dataclass
class Candidates:
    """(user, item) pairs of one batch of users, grouped by user.

    Attributes
    ----------
    row : numpy.ndarray
        Position of the pair's user in the batch (non-decreasing).
    item : numpy.ndarray
        Catalogue code of the pair's item.
    scores : numpy.ndarray
        Raw score of every component for the pair, shape ``(n_pairs, n_components)``.
    ranks : numpy.ndarray
        Rank (0 = best) of the item among the user's candidates, per component.
    """

    row: np.ndarray
    item: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray

    def __len__(self) -> int:
        return len(self.row)

    def zscores(self) -> np.ndarray:
        """Component scores standardised per user over the user's candidates.

        Models score on different scales (counts, cosines, logits); standardising per
        user makes a weighted sum meaningful.
        """
        return standardise(self.scores, self.row, int(self.row.max(initial=-1)) + 1)


def standardise(values: np.ndarray, row: np.ndarray, n_rows: int,
                mask: np.ndarray | None = None) -> np.ndarray:
    """Columns of ``values`` standardised within each group of rows (a user's or a query's
    candidates, ``row``), over the pairs in ``mask`` only (others get 0).

    The one z-score of the package: the hybrids' and the completer's candidate features
    (:meth:`Candidates.zscores`) and the search's signals. A column that is flat within
    a group (standard deviation below 1e-12, float noise included) gives 0 there.
    """
    values = np.asarray(values, dtype=float)
    weight = np.ones(len(row)) if mask is None else mask.astype(float)
    count = np.bincount(row, weights=weight, minlength=n_rows).clip(min=1)

    def per_query_sum(columns: np.ndarray) -> np.ndarray:  # bincount: far faster than add.at
        return np.column_stack([np.bincount(row, weights=c, minlength=n_rows)
                                for c in columns.T]) if columns.shape[1] else \
            np.zeros((n_rows, 0))

    mean = per_query_sum(values * weight[:, None]) / count[:, None]
    centred = (values - mean[row]) * weight[:, None]
    std = np.sqrt(per_query_sum(centred ** 2) / count[:, None])[row]
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 1e-12)


def generate_candidates(scores: list[np.ndarray], n: int,
                        blocked: np.ndarray | None = None) -> Candidates:
    """The union of each component's top-``n`` items per user.

    Parameters
    ----------
    scores : list of numpy.ndarray
        One dense ``(users, items)`` score matrix per component; ``-inf`` marks items a
        component cannot score.
    n : int
        Items taken from each component.
    blocked : numpy.ndarray, optional
        Boolean ``(users, items)`` (or ``(items,)``) mask of items that may not be
        candidates (already bought, for a discovery objective; not rankable).
    """
    n_users, n_items = scores[0].shape
    n = min(n, n_items)
    chosen = np.zeros((n_users, n_items), dtype=bool)
    for s in scores:
        s = np.where(blocked, -np.inf, s) if blocked is not None else s
        top = top_k(s, n, sort=False)
        finite = np.isfinite(np.take_along_axis(s, top, axis=1))
        rows = np.repeat(np.arange(n_users), n).reshape(n_users, n)
        chosen[rows[finite], top[finite]] = True
    row, item = np.nonzero(chosen)  # row-major: grouped by user
    raw = np.stack([s[row, item] for s in scores], axis=1)
    # An item a component cannot score sits at that component's worst candidate score.
    floor = np.where(np.isfinite(raw), raw, np.inf)
    worst = np.full((n_users, len(scores)), np.inf)
    np.minimum.at(worst, row, floor)
    worst = np.where(np.isfinite(worst), worst, 0.0)
    raw = np.where(np.isfinite(raw), raw, worst[row])
    return Candidates(row, item, raw, _ranks_within(row, raw))


def is_target(cand: Candidates, targets: list[set]) -> np.ndarray:
    """Whether each pair's item is among its user's targets (``targets[row]``, item codes)."""
    return np.fromiter((i in targets[r] for r, i in zip(cand.row, cand.item, strict=True)),
                       dtype=bool, count=len(cand))


def _ranks_within(row: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rank of each pair within its user's group, per column (0 = highest value)."""
    ranks = np.empty(values.shape, dtype=np.int64)
    starts = np.searchsorted(row, row)  # first position of each pair's group
    for c in range(values.shape[1]):
        order = np.lexsort((-values[:, c], row))
        ranks[order, c] = np.arange(len(row)) - starts[order]
    return ranks


class GroupedRanking:
    """Users' candidate pairs and their targets, ready to be ranked by many scores.

    A weight search (:func:`xsell.models.stacking.fit_weights`) scores the same pairs
    hundreds of times. Only the targets' positions matter to Recall and NDCG, so each
    score costs a comparison of every target with its own user's candidates instead of
    a sort of all pairs; positions are those of a stable sort (ties keep input order).

    Parameters
    ----------
    row, relevant : numpy.ndarray
        Per pair: its user (group) and whether it is a target.
    """

    def __init__(self, row: np.ndarray, relevant: np.ndarray):
        row = np.asarray(row)
        order = np.argsort(row, kind="stable")  # each user's pairs, in input order
        sorted_row = row[order]
        starts = np.searchsorted(sorted_row, sorted_row)
        local = np.arange(len(row)) - starts
        groups, group_of = np.unique(sorted_row, return_inverse=True)
        width = int(local.max()) + 1 if len(row) else 0
        self.table = np.full((len(groups), width), -1, dtype=np.int64)  # pair index or -1
        self.table[group_of, local] = order
        where = np.empty(len(row), dtype=np.int64)
        where[order] = np.arange(len(row))
        self.targets = np.flatnonzero(np.asarray(relevant, dtype=bool))
        self.target_user = row[self.targets]
        self.target_group = group_of[where[self.targets]]
        self.target_local = local[where[self.targets]]
        # Targets by their group's size: a chunk of targets compares with as many columns
        # as its largest group has, not as the largest group of all (queries' candidate
        # lists differ ten-fold in length).
        size = np.bincount(group_of, minlength=len(groups))[self.target_group]
        self._by_size = np.argsort(size, kind="stable")
        self._size = size[self._by_size]
        self.n_pairs = len(row)
        self._chunks = None

    def _plan(self) -> list[tuple]:
        """What every call compares, prepared once: per chunk of targets (about 2M
        comparisons each, so a call's temporary arrays stay small), the pair indices of
        each target's user (``n_pairs``, a sentinel scored -inf, where a user has fewer)
        and which of them come before the target in input order (ties rank those first).
        The plan holds every chunk: nine bytes per comparison."""
        if self._chunks is None:
            chunks, lo, n = [], 0, len(self.targets)
            sentinel = self.n_pairs
            while lo < n:
                width = int(self._size[min(lo + 4095, n - 1)])
                hi = min(lo + max(2_000_000 // max(width, 1), 1), n)
                width = int(self._size[hi - 1])
                part = self._by_size[lo:hi]
                pairs = self.table[self.target_group[part], :width]
                real = pairs >= 0
                before = (np.arange(width)[None, :] < self.target_local[part][:, None]) & real
                chunks.append((part, np.where(real, pairs, sentinel), before,
                               self.targets[part]))
                lo = hi
            self._chunks = chunks
        return self._chunks

    def positions(self, score: np.ndarray) -> np.ndarray:
        """Each target's 0-based position in its user's list ordered by ``score``."""
        score = np.where(np.isnan(score), -np.inf, np.asarray(score, dtype=float))
        score = np.append(score, -np.inf)  # the sentinel: never above a target
        out = np.empty(len(self.targets), dtype=np.int64)
        for part, pairs, before, targets in self._plan():
            mine = score[pairs]
            own = score[targets][:, None]
            out[part] = (np.count_nonzero(mine > own, axis=1)
                         + np.count_nonzero((mine == own) & before, axis=1))
        return out

    def metric(self, score: np.ndarray, n_targets: np.ndarray, metric: str = "recall",
               k: int = 20) -> float:
        """Mean Recall@k or NDCG@k over users (see :func:`grouped_metric`)."""
        return self.metric_at(self.positions(score), n_targets, metric, k)

    def metric_at(self, position: np.ndarray, n_targets: np.ndarray, metric: str = "recall",
                  k: int = 20, subset: np.ndarray | None = None) -> float:
        """:meth:`metric` from the targets' :meth:`positions`, counting only the targets
        in ``subset`` (a boolean mask over targets; default all): several metrics of one
        score share one :meth:`positions`."""
        hit = position < k
        if subset is not None:
            hit &= subset
        hit = np.flatnonzero(hit)
        user, position = self.target_user[hit], position[hit]
        order = np.lexsort((position, user))  # sums in list order, as a sort would give
        user, position = user[order], position[order]
        users = len(n_targets)
        if metric == "recall":
            per_user = np.bincount(user, minlength=users) / np.maximum(n_targets, 1)
        elif metric == "ndcg":
            gain = np.bincount(user, weights=1.0 / np.log2(position + 2), minlength=users)
            ideal = np.cumsum(1.0 / np.log2(np.arange(k) + 2))
            per_user = gain / ideal[np.clip(n_targets, 1, k) - 1]
        else:
            raise ValueError(f"metric must be 'recall' or 'ndcg', not {metric!r}")
        return float(per_user[n_targets > 0].mean())


def grouped_metric(row: np.ndarray, score: np.ndarray, relevant: np.ndarray,
                   n_targets: np.ndarray, metric: str = "recall", k: int = 20) -> float:
    """Mean Recall@k or NDCG@k over users, ranking each user's candidates by ``score``.

    Parameters
    ----------
    row, score, relevant : numpy.ndarray
        Per pair: its user (``0 .. len(n_targets) - 1``), its score and whether it is a
        target.
    n_targets : numpy.ndarray
        Targets per user, *including* those missing from the candidates (they count as
        misses, as in the real evaluation).
    metric : {"recall", "ndcg"}
    k : int
    """
    return GroupedRanking(row, relevant).metric(score, n_targets, metric, k)
