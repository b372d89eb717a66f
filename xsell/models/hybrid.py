"""Hybrids: the LM two-tower and collaborative filtering, combined in two visible stages.

1. **Candidate generation** (:mod:`xsell.models.candidates`): every component ranks the
   catalogue; a user's candidates are the union of their top ``n_candidates``.
2. **Re-ranking**: the candidates are re-ordered by a combination learnt on held-out
   baskets -- a weighted sum of standardised scores (:class:`ScoreFusion`), a weighted
   reciprocal-rank fusion (:class:`RankFusion`), or a gradient-boosted classifier over
   the component scores and context features (:class:`LearnedReranker`).

*Where the combination is learnt.* ``fit(train)`` holds out each user's last training
basket, fits the components on the rest, learns the combination on the held-out baskets,
then refits the components on all of ``train``. Fitted on train + validation of a
leave-last-basket-out split, the held-out basket *is* the validation basket: weights are
fit on the validation split, and the test basket is never seen. With few users (under
:data:`MIN_HOLDOUT_BASKETS` held-out baskets) each user's last few baskets are held out
instead, so that a handful of weights is not fit to a few hundred baskets' noise. The
learning stage is the one the basket completer shares (:mod:`xsell.models.stacking`).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.data.variants import HEADLINE, select_targets
from xsell.models.base import Recommender
from xsell.models.candidates import (
    NOT_A_CANDIDATE,
    Candidates,
    generate_candidates,
    grouped_metric,
)
from xsell.models.features import CONTEXT_FEATURES, RRF_K, PairFeatures, component_features
from xsell.models.fitting import fit_model
from xsell.models.registry import register
from xsell.models.stacking import (
    HeldOutStacking,
    NothingToLearn,
    RankingExamples,
    fit_weights,
    hold_out_last_baskets,
)
from xsell.models.trees import decision_function, tree_arrays

#: The default components of the hybrids -- the grocery baseline (buy-again), three
#: collaborative filters and the pre-trained-LM two-tower, all at default settings.
DEFAULT_COMPONENTS: dict[str, dict] = {"buy-again": {}, "cooccurrence": {}, "ease": {},
                                       "als": {}, "two-tower": {}}

#: What each objective learns to rank (a variant of :mod:`xsell.data.variants`) and the
#: metric its combination maximises (that variant's headline metric).
OBJECTIVES = HEADLINE

#: With ``holdout_baskets="auto"``, hold out as many of each user's last baskets as it
#: takes to learn the combination on at least this many baskets ...
MIN_HOLDOUT_BASKETS = 1000
#: ... but never more than this many per user.
MAX_HOLDOUT_DEPTH = 5

#: Users scored at once when building candidates (each component scores a dense
#: users x catalogue block).
BATCH_USERS = 256


class Hybrid(HeldOutStacking):
    """Base class of the hybrids (see the module docstring for the two stages).

    Parameters
    ----------
    components : dict, optional
        ``{registered model name: hyperparameters}`` (default
        :data:`DEFAULT_COMPONENTS`).
    objective : {"all", "explore", "cross-category"}
        What the combination learns to rank (the evaluation variants): every item of the
        next basket (NDCG@10); only items new to the user (Recall@20; bought items are
        then never candidates); or only new items from departments new to the user
        (Recall@20).
    n_candidates : int
        Items each component contributes to a user's candidates.
    max_fit_users : int
        Users whose held-out baskets the combination is learnt on (a seeded sample).
    holdout_baskets : int or "auto"
        How many of each user's last training baskets are held out to learn the
        combination on; ``"auto"``: one, or with few users as many as it takes to reach
        :data:`MIN_HOLDOUT_BASKETS` baskets (at most :data:`MAX_HOLDOUT_DEPTH`).
    cache : bool
        Reuse identical component fits from the on-disk cache (:mod:`xsell.cache`).
    seed : int
        Seed of the user sample (and of the re-ranker).
    progress : bool
        Progress bars.

    Attributes
    ----------
    components_ : dict
        Component models fitted on all of the training data.
    candidate_recall_ : float
        Share of held-out targets that made it into the candidates (the ceiling of any
        re-ranking).
    holdout_score_ : float
        The objective's metric of the learnt combination on the held-out baskets.
    holdout_depth_ : int
        Baskets held out per user.
    """

    #: Rebuilt from the training data on load.
    _derived_state = Recommender._derived_state | {"features_"}

    def __init__(self, components: dict | None = None, objective: str = "all",
                 n_candidates: int = 100, max_fit_users: int = 2000,
                 holdout_baskets: int | str = "auto", cache: bool = True, seed: int = 0,
                 progress: bool = True):
        self.components = components
        self.objective = objective
        self.n_candidates = n_candidates
        self.max_fit_users = max_fit_users
        self.holdout_baskets = holdout_baskets
        self.cache = cache
        self.seed = seed
        self.progress = progress

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {list(OBJECTIVES)}, "
                             f"not {self.objective!r}")
        if self.holdout_baskets != "auto" and (
                isinstance(self.holdout_baskets, bool)
                or not isinstance(self.holdout_baskets, int) or self.holdout_baskets < 1):
            raise ValueError(f"holdout_baskets must be 'auto' or a positive int, "
                             f"not {self.holdout_baskets!r}")

    def _hold_out(self, train: Dataset) -> tuple[Dataset, pd.DataFrame]:
        """Each user's last ``holdout_depth_`` baskets (at least one stays): the data the
        components are fitted on, and the held-out rows (``_depth`` 0 = the last basket)."""
        self._check_params()
        n_baskets = train.interactions.groupby(S.USER)[S.SEQ].max() + 1
        multi = n_baskets[n_baskets >= 2]
        self.holdout_depth_ = self._holdout_depth(multi)
        if len(multi) == 0:
            raise NothingToLearn("no user in the training data has two baskets")
        return hold_out_last_baskets(train, self.holdout_depth_)

    def _holdout_depth(self, n_baskets: pd.Series) -> int:
        """Baskets held out per user, for users with these basket counts (two or more)."""
        if self.holdout_baskets != "auto":
            return self.holdout_baskets
        if len(n_baskets) == 0:
            return 1
        n_users = min(len(n_baskets), self.max_fit_users)
        depth = int(np.clip(np.ceil(MIN_HOLDOUT_BASKETS / n_users), 1, MAX_HOLDOUT_DEPTH))
        # A small shop: leave the typical user two baskets to fit the components on.
        return max(1, min(depth, int(np.median(n_baskets)) - 2))

    def _fit_parts(self, data: Dataset) -> tuple[dict[str, Recommender], PairFeatures]:
        return self._fit_components(data), PairFeatures(data)

    def _keep_parts(self, parts) -> None:
        self.components_, self.features_ = parts
        self.scores_unseen_items = any(m.scores_unseen_items for m in self.components_.values())

    def _examples(self, parts, fit_data: Dataset, heldout: pd.DataFrame):
        users, baskets = self._holdout_targets(heldout, fit_data)
        if len(users) == 0:
            raise NothingToLearn(f"no held-out training basket holds a target of the "
                                 f"{self.objective!r} objective")
        components, features = parts
        return RankingExamples(*self._pairs(components, fit_data, features, users, baskets))

    def _fit_components(self, data: Dataset) -> dict[str, Recommender]:
        specs = self.components if self.components is not None else DEFAULT_COMPONENTS
        bar = tqdm(specs.items(), desc="hybrid components", disable=not self.progress)
        return {name: fit_model(name, dict(params), data, cache=self.cache)
                for name, params in bar}

    def _holdout_targets(self, heldout: pd.DataFrame, fit_data: Dataset):
        """Sampled users and, per user, the target items of each of their held-out baskets."""
        users = heldout[S.USER].unique()
        if len(users) > self.max_fit_users:
            rng = np.random.default_rng(self.seed)
            users = np.sort(rng.choice(users, self.max_fit_users, replace=False))
        held = heldout[heldout[S.USER].isin(users)]
        held = held[held[S.ITEM].isin(fit_data.interactions[S.ITEM])]  # rankable items only
        baskets: dict = {}
        for _, part in held.groupby("_depth", sort=True):
            # The objectives are the evaluation variants: the same target rules.
            targets = select_targets(part, fit_data.interactions, fit_data, self.objective)
            for user, items in targets.items():
                baskets.setdefault(user, []).append(items)
        users = pd.Index(sorted(baskets)).to_numpy()
        return users, baskets

    def _pairs(self, models: dict, data: Dataset, features: PairFeatures, users: np.ndarray,
               baskets: dict):
        """Candidate pairs with their features and labels, one ranking group per held-out
        basket (a user's baskets share the user's candidates and differ in labels)."""
        X, rows, relevant, n_targets = [], [], [], []
        counts = _count_matrix(data)
        seen = np.zeros(len(data.item_index), dtype=bool)
        seen[data.item_codes(data.interactions[S.ITEM].unique())] = True
        for start in range(0, len(users), BATCH_USERS):
            batch = users[start:start + BATCH_USERS]
            counts_b = counts[data.user_codes(batch)]
            cand = self._candidates(models, batch, None, counts_b, ~seen)
            features_b = self._features(cand, counts_b, features)
            bounds = np.searchsorted(cand.row, np.arange(len(batch) + 1))  # grouped by user
            for r, user in enumerate(batch):
                mine = slice(bounds[r], bounds[r + 1])
                for items in baskets[user]:
                    codes = data.item_codes(items)
                    X.append(features_b[mine])
                    relevant.append(np.isin(cand.item[mine], codes))
                    rows.append(np.full(bounds[r + 1] - bounds[r], len(n_targets)))
                    n_targets.append(len(codes))
        return (np.vstack(X), np.concatenate(rows), np.concatenate(relevant),
                np.asarray(n_targets))

    def _candidates(self, models: dict, users: np.ndarray, history: pd.DataFrame | None,
                    counts: sp.csr_matrix, blocked_items: np.ndarray | None) -> Candidates:
        keys = [getattr(m, "_fit_key", None) for m in models.values()]
        if history is not None or None in keys:
            return self._generate(models, users, history, counts, blocked_items)
        # A fusion and a re-ranker of one objective over the same component fits rank the
        # same users' candidates (in fitting and in evaluation): generate them once.
        memo_key = _digest(keys, [str(u) for u in users], self.n_candidates,
                           self.objective != "all", counts.indptr, counts.indices,
                           counts.data > 0, blocked_items)
        return CANDIDATE_MEMO.get(memo_key, lambda: self._generate(
            models, users, history, counts, blocked_items))

    def _generate(self, models: dict, users: np.ndarray, history: pd.DataFrame | None,
                  counts: sp.csr_matrix, blocked_items: np.ndarray | None) -> Candidates:
        scores = []
        for model in models.values():
            s = model.score(users, history=_rows_of(history, users)).astype(float)
            if not model.scores_unseen_items:
                s[:, ~model.seen_items_] = -np.inf
            scores.append(s)
        blocked = None
        if self.objective != "all":
            blocked = counts.toarray() > 0
        if blocked_items is not None:
            blocked = blocked_items[None, :] if blocked is None else blocked | blocked_items
        return generate_candidates(scores, self.n_candidates, blocked)

    # ------------------------------------------------------------------ scoring
    def _score_users(self, users: np.ndarray, matrix: sp.csr_matrix, rows: np.ndarray,
                     history: pd.DataFrame | None) -> np.ndarray:
        out = np.full(matrix.shape, NOT_A_CANDIDATE)
        for start in range(0, len(users), BATCH_USERS):
            part = slice(start, start + BATCH_USERS)
            cand = self._candidates(self.components_, users[part], history, matrix[part], None)
            block = out[part]
            block[cand.row, cand.item] = self._combine(
                self._features(cand, matrix[part], self.features_))
        return out

    def _score_history(self, history: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError("hybrids score through _score_users")

    # ------------------------------------------------------------------ per subclass
    def _features(self, cand: Candidates, counts: sp.csr_matrix,
                  features: PairFeatures) -> np.ndarray:
        raise NotImplementedError

    def _combine(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _restore_state(self, state: dict, dataset: Dataset) -> None:
        super()._restore_state(state, dataset)
        self.features_ = PairFeatures(dataset)
        self.scores_unseen_items = any(m.scores_unseen_items for m in self.components_.values())

    @property
    def component_names(self) -> list[str]:
        """Names of the components, in feature order."""
        return list(self.components if self.components is not None else DEFAULT_COMPONENTS)


class WeightedFusion(Hybrid):
    """A weighted sum of normalised component scores plus a new-department bonus.

    :math:`\\hat r_{ui} = \\sum_m w_m t_m(u, i) + w_0 [\\text{dept}(i) \\notin D_u]`, where
    :math:`t_m` is model :math:`m`'s score made comparable across models and
    :math:`D_u` the departments user :math:`u` has bought from. The weights
    :math:`w \\ge 0` are searched on held-out baskets
    (:func:`~xsell.models.stacking.fit_weights`); the bonus
    weight :math:`w_0` is learnt like the others, so it stays 0 unless recommending
    from new departments pays off for the objective.

    Parameters
    ----------
    transform : {"zscore", "rank", "auto"}
        ``"zscore"``: scores standardised per user over the candidates (score fusion);
        ``"rank"``: :math:`1 / (60 + \\text{rank} + 1)` (reciprocal-rank fusion; ignores
        score scales, so one model's confident outliers cannot swamp the others);
        ``"auto"``: both are fitted and the one scoring better on the held-out baskets
        is kept.
    **kwargs
        As :class:`Hybrid`.

    Attributes
    ----------
    weights_ : pandas.Series
        The learnt weight of each component and of the new-department bonus (sum 1).
    transform_ : str
        The transform in use (``"zscore"`` or ``"rank"``).
    holdout_scores_ : dict
        Held-out metric of each transform tried.
    """

    def __init__(self, components: dict | None = None, objective: str = "all",
                 transform: str = "auto", n_candidates: int = 100, max_fit_users: int = 2000,
                 holdout_baskets: int | str = "auto", cache: bool = True, seed: int = 0,
                 progress: bool = True):
        super().__init__(components, objective, n_candidates, max_fit_users,
                         holdout_baskets, cache, seed, progress)
        self.transform = transform

    def _features(self, cand, counts, features) -> np.ndarray:
        # Both transforms side by side; _combine uses the half of the chosen one.
        novelty = features.novelty(counts, cand)
        rrf = component_features(cand)[:, cand.scores.shape[1]:]
        return np.hstack([cand.zscores(), novelty, rrf, novelty / (RRF_K + 1)])

    def _check_params(self) -> None:
        super()._check_params()
        if self.transform not in ("zscore", "rank", "auto"):
            raise ValueError(f"transform must be 'zscore', 'rank' or 'auto', "
                             f"not {self.transform!r}")

    def _learn(self, examples: RankingExamples) -> None:
        X, row, relevant, n_targets = (examples.X, examples.row, examples.relevant,
                                       examples.n_targets)
        metric, k = OBJECTIVES[self.objective]
        half = X.shape[1] // 2
        tried = ["zscore", "rank"] if self.transform == "auto" else [self.transform]
        fits = {t: fit_weights(X[:, :half] if t == "zscore" else X[:, half:], row, relevant,
                               n_targets, metric, k) for t in tried}
        self.holdout_scores_ = {t: value for t, (_, value) in fits.items()}
        self.transform_ = max(fits, key=lambda t: fits[t][1])
        weights, self.holdout_score_ = fits[self.transform_]
        self.weights_ = pd.Series(weights, index=self.component_names + ["new department"],
                                  name="weight")

    def _learn_equal_weights(self) -> None:
        names = self.component_names
        self.weights_ = pd.Series([1.0 / len(names)] * len(names) + [0.0],
                                  index=names + ["new department"], name="weight")
        self.transform_ = "zscore" if self.transform == "auto" else self.transform
        self.holdout_scores_ = {}
        self.holdout_score_ = float("nan")

    def _combine(self, X: np.ndarray) -> np.ndarray:
        half = X.shape[1] // 2
        part = X[:, :half] if self.transform_ == "zscore" else X[:, half:]
        return part @ self.weights_.to_numpy()


class ScoreFusion(WeightedFusion):
    """:class:`WeightedFusion` of per-user standardised scores (``transform="zscore"``)."""

    def __init__(self, components: dict | None = None, objective: str = "all",
                 n_candidates: int = 100, max_fit_users: int = 2000,
                 holdout_baskets: int | str = "auto", cache: bool = True, seed: int = 0,
                 progress: bool = True):
        super().__init__(components, objective, "zscore", n_candidates, max_fit_users,
                         holdout_baskets, cache, seed, progress)


class RankFusion(WeightedFusion):
    """:class:`WeightedFusion` of reciprocal ranks (``transform="rank"``)."""

    def __init__(self, components: dict | None = None, objective: str = "all",
                 n_candidates: int = 100, max_fit_users: int = 2000,
                 holdout_baskets: int | str = "auto", cache: bool = True, seed: int = 0,
                 progress: bool = True):
        super().__init__(components, objective, "rank", n_candidates, max_fit_users,
                         holdout_baskets, cache, seed, progress)


class LearnedReranker(Hybrid):
    """Gradient-boosted trees over component scores and context features.

    Each candidate pair is described by every component's standardised score and
    reciprocal rank plus :data:`~xsell.models.features.CONTEXT_FEATURES` (popularity,
    repeat purchase, department and aisle familiarity); a
    :class:`~sklearn.ensemble.HistGradientBoostingClassifier` learns P(bought) on the
    held-out baskets and its log-odds re-rank the candidates. Trees can learn
    interactions a weighted sum cannot ("trust buy-again for staples, the two-tower for
    a department the user never visited").

    Parameters
    ----------
    max_iter : int
        Boosting rounds.
    learning_rate : float
        Shrinkage.
    **kwargs
        As :class:`Hybrid`.

    Attributes
    ----------
    trees_ : dict of str to numpy.ndarray
        The fitted classifier's trees as arrays (:mod:`xsell.models.trees`), which is
        what it predicts with and what it saves (scikit-learn's model has no safe file
        format).
    feature_names_ : list of str
        Column names of its input.
    """

    def __init__(self, components: dict | None = None, objective: str = "all",
                 n_candidates: int = 100, max_fit_users: int = 2000,
                 holdout_baskets: int | str = "auto", cache: bool = True, seed: int = 0,
                 progress: bool = True, max_iter: int = 200,
                 learning_rate: float = 0.05):
        super().__init__(components, objective, n_candidates, max_fit_users,
                         holdout_baskets, cache, seed, progress)
        self.max_iter = max_iter
        self.learning_rate = learning_rate

    def _features(self, cand, counts, features) -> np.ndarray:
        return np.hstack([component_features(cand), features.context(counts, cand)])

    def _feature_names(self) -> list[str]:
        names = self.component_names
        return [f"z:{n}" for n in names] + [f"rrf:{n}" for n in names] + CONTEXT_FEATURES

    def _learn(self, examples: RankingExamples) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.feature_names_ = self._feature_names()
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate, early_stopping=False,
            random_state=self.seed).fit(examples.X, examples.relevant)
        self.trees_ = tree_arrays(model)
        # The fitted classifier predicts the same log-odds as the arrays (tested), in
        # compiled code; it lives only in memory (no safe file format), so a loaded
        # re-ranker predicts from the arrays.
        self._classifier = model
        metric, k = OBJECTIVES[self.objective]
        self.holdout_score_ = grouped_metric(examples.row, self._combine(examples.X),
                                             examples.relevant, examples.n_targets,
                                             metric, k)  # in-sample: an optimistic figure

    def _learn_equal_weights(self) -> None:
        self.feature_names_ = self._feature_names()
        self._classifier = None
        self.trees_ = None  # nothing learnt: the mean of the components' z-scores ranks
        self.holdout_score_ = float("nan")

    def _combine(self, X: np.ndarray) -> np.ndarray:
        if self.trees_ is None:
            return X[:, :len(self.component_names)].mean(axis=1)
        classifier = getattr(self, "_classifier", None)
        if classifier is not None:
            return classifier.decision_function(X)
        return decision_function(self.trees_, X)


class _CandidateMemo:
    """Recently generated candidates, at most ``max_bytes`` of them (oldest dropped first).

    Entries are read-only: a caller that tried to change one would raise, not corrupt
    the next hybrid's input.
    """

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Candidates] = OrderedDict()

    def get(self, key: str, compute) -> Candidates:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        cand = compute()
        for array in (cand.row, cand.item, cand.scores, cand.ranks):
            array.flags.writeable = False
        self._entries[key] = cand
        while self._entries and self._bytes() > self.max_bytes:
            self._entries.popitem(last=False)
        return cand

    def clear(self) -> None:
        self._entries.clear()

    def _bytes(self) -> int:
        return sum(c.row.nbytes + c.item.nbytes + c.scores.nbytes + c.ranks.nbytes
                   for c in self._entries.values())


#: Candidates of fitted components (keyed by their fits, the users and the blocking).
CANDIDATE_MEMO = _CandidateMemo()


def _digest(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(str(part.dtype).encode() + np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part).encode())
        digest.update(b"|")
    return digest.hexdigest()


def _count_matrix(data: Dataset) -> sp.csr_matrix:
    inter = data.interactions
    return sp.csr_matrix((np.ones(len(inter)), (data.user_codes(inter[S.USER]),
                                                data.item_codes(inter[S.ITEM]))),
                         shape=(data.n_users, data.n_items))


def _rows_of(history: pd.DataFrame | None, users: np.ndarray) -> pd.DataFrame | None:
    return None if history is None else history[history[S.USER].isin(users)]


for _name, _cls in {"hybrid": WeightedFusion, "score-fusion": ScoreFusion,
                    "rank-fusion": RankFusion, "reranker": LearnedReranker}.items():
    register(_name, f"{__name__}:{_cls.__name__}")
