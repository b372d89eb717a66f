"""Basket completion: recommend complements from departments the cart does not cover.

A cart (and optionally its user) is scored by five signals, each standardised per cart:

* **co-occurrence** -- :math:`\\sum_{i \\in \\text{cart}} \\hat P(j \\mid i)`, what is
  bought in the same trip (:class:`~xsell.models.neighbors.CoOccurrence`);
* **text similarity** -- the frozen LM's cosine between the cart's mean embedding and
  the item (reaches items with few co-occurrences);
* **department transition** -- :math:`\\log P(\\text{dept}(j) \\mid \\text{cart's departments})`
  from :class:`~xsell.cross_sell.transitions.DepartmentTransitions`;
* **popularity** -- :math:`\\log(1 + \\text{buyers})`;
* **user models** -- recommenders (EASE and the two-tower by default) reading the user's
  history plus the cart.

Candidates are the union of each signal's top ``n_candidates`` outside the cart's
departments; their weights are searched (:func:`xsell.models.stacking.fit_weights`) on
completion tasks built from each user's last training basket, as the hybrids do.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from xsell.cross_sell.transitions import DepartmentTransitions
from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.data.splits import leave_last_basket_out
from xsell.evaluation import basket_completion_task
from xsell.models.base import Recommender, check_count, top_k
from xsell.models.candidates import NOT_A_CANDIDATE, generate_candidates, is_target
from xsell.models.stacking import (
    HeldOutStacking,
    NothingToLearn,
    RankingExamples,
    fit_weights,
)
from xsell.text import DEFAULT_MODEL, TextEncoder, item_texts

#: The cart signals in feature order (a signal per user model follows them).
SIGNALS = ["co-occurrence", "text similarity", "department transition", "popularity"]

#: The default personal signals -- EASE and the LM two-tower, each reading history + cart.
DEFAULT_USER_MODELS: dict[str, dict] = {"ease": {}, "two-tower": {}}


@dataclass
class SignalModels:
    """What a completer's signals read, fitted on one training dataset.

    Attributes
    ----------
    cooccurrence : xsell.models.base.Recommender
        Conditional co-occurrence within baskets.
    user_models : dict of str to xsell.models.base.Recommender
        The personal signals by registered name.
    transitions : xsell.cross_sell.transitions.DepartmentTransitions
        The department-transition model.
    embeddings : numpy.ndarray
        Frozen-LM item embeddings (catalogue x dim, unit length).
    log_popularity : numpy.ndarray
        log(1 + distinct buyers) per catalogue item.
    seen : numpy.ndarray
        Items bought in the training data (the only candidates).
    """

    cooccurrence: Recommender
    user_models: dict
    transitions: DepartmentTransitions
    embeddings: np.ndarray
    log_popularity: np.ndarray
    seen: np.ndarray


class BasketCompleter(HeldOutStacking):
    """Complete a cart with items from other departments.

    As a :class:`~xsell.models.base.Recommender`, a user's *cart* is the last basket of
    the history it is given (the basket-completion protocol appends the cart that way);
    :meth:`complete` takes a cart directly.

    Parameters
    ----------
    user_models : dict, optional
        ``{registered name: hyperparameters}`` of the personal signals (default
        :data:`DEFAULT_USER_MODELS`).
    new_only : bool
        Learn to rank items new to the user (the protocol's ``new_only``); bought items
        are then never candidates.
    n_candidates : int
        Items each signal contributes to a cart's candidates.
    max_fit_baskets : int
        Held-out carts the weights are learnt on (seeded sample).
    encoder : str
        Sentence encoder of the text signal.
    text_signal : bool
        Use the text-similarity signal (``False``, with no two-tower among
        ``user_models``: the completer without any language-model signal -- the ablation).
    cache : bool
        Reuse identical fits from the on-disk cache.
    seed : int
        Seed of the hidden department and of the sample.
    progress : bool
        Progress bars.

    Attributes
    ----------
    weights_ : pandas.Series
        Learnt weight of each signal (:attr:`signal_names`).
    signal_models_ : xsell.cross_sell.completion.SignalModels
        The signals, refitted on all of the training data.
    holdout_recall_ : float
        Recall@10 on the held-out carts at those weights.
    """

    def __init__(self, user_models: dict | None = None, new_only: bool = True,
                 n_candidates: int = 100, max_fit_baskets: int = 2000,
                 encoder: str = DEFAULT_MODEL, text_signal: bool = True, cache: bool = True,
                 seed: int = 0, progress: bool = True):
        self.user_models = user_models
        self.text_signal = text_signal
        self.new_only = new_only
        self.n_candidates = n_candidates
        self.max_fit_baskets = max_fit_baskets
        self.encoder = encoder
        self.cache = cache
        self.seed = seed
        self.progress = progress

    # ------------------------------------------------------------------ fitting
    def _hold_out(self, train: Dataset):
        """Completion tasks of each user's last training basket, and the data before it."""
        inner = leave_last_basket_out(train)
        task = basket_completion_task(inner, part="test", new_only=self.new_only,
                                      seed=self.seed)
        if task.n_points == 0:
            raise NothingToLearn("no held-out training basket spans two departments")
        return inner.train_dataset(include_validation=True), task

    def _fit_parts(self, data: Dataset) -> SignalModels:
        return self._fit_signals(data)

    def _keep_parts(self, parts: SignalModels) -> None:
        self.signal_models_ = parts

    def _examples(self, parts, fit_data: Dataset, task) -> RankingExamples:
        keep = np.arange(task.n_points)
        if task.n_points > self.max_fit_baskets:
            rng = np.random.default_rng(self.seed)
            keep = np.sort(rng.choice(task.n_points, self.max_fit_baskets, replace=False))
        X, row, relevant, n_targets = [], [], [], []
        for start in range(0, len(keep), 256):
            idx = keep[start:start + 256]
            users = task.users[idx]
            history = task.history[task.history[S.USER].isin(users)]
            blocked = task.exclusions(idx, fit_data).toarray() > 0
            cand = self._candidates(users, history, fit_data, blocked)
            X.append(cand.zscores())
            codes = [set(fit_data.item_codes(task.targets[i]).tolist()) for i in idx]
            relevant.append(is_target(cand, codes))
            row.append(cand.row + start)
            n_targets.append([len(c) for c in codes])
        return RankingExamples(np.vstack(X), np.concatenate(row), np.concatenate(relevant),
                               np.concatenate(n_targets))

    def _learn(self, examples: RankingExamples) -> None:
        weights, self.holdout_recall_ = fit_weights(examples.X, examples.row,
                                                    examples.relevant, examples.n_targets,
                                                    "recall", 10)
        self.weights_ = pd.Series(weights, index=self.signal_names, name="weight")

    def _learn_equal_weights(self) -> None:
        self.weights_ = pd.Series(1.0 / len(self.signal_names), index=self.signal_names,
                                  name="weight")
        self.holdout_recall_ = float("nan")

    def _fitted_state(self) -> dict:
        state = super()._fitted_state()
        models = state.pop("signal_models_")
        state["signal_models_"] = {f.name: getattr(models, f.name) for f in fields(models)}
        return state

    def _restore_state(self, state: dict, dataset: Dataset) -> None:
        state = dict(state)
        signals = SignalModels(**state.pop("signal_models_"))
        super()._restore_state(state, dataset)
        self.signal_models_ = signals

    def _fit_signals(self, data: Dataset) -> SignalModels:
        from xsell.models.fitting import fit_model

        users = self._user_models()
        steps = tqdm(total=3 + len(users), desc="completer signals", disable=not self.progress)
        cooc = fit_model("cooccurrence", {"normalize": "conditional"}, data, cache=self.cache)
        steps.update()
        user_models = {}
        for name, params in users.items():
            user_models[name] = fit_model(name, dict(params), data, cache=self.cache)
            steps.update()
        transitions = DepartmentTransitions(seed=self.seed).fit(data)
        steps.update()
        embeddings = TextEncoder(self.encoder, progress=self.progress).encode(
            item_texts(data).tolist())
        steps.update()
        steps.close()
        buyers = data.interactions.drop_duplicates([S.USER, S.ITEM])[S.ITEM].value_counts()
        buyers = buyers.reindex(data.item_index).fillna(0).to_numpy()
        return SignalModels(cooc, user_models, transitions, embeddings, np.log1p(buyers),
                            buyers > 0)

    def signals(self, users: np.ndarray, history: pd.DataFrame,
                data: Dataset | None = None) -> list[np.ndarray]:
        """Dense (carts x catalogue) matrices of every signal (:attr:`signal_names` order).

        ``history`` holds the users' rows; each user's last basket is the cart.
        """
        data = data if data is not None else self.dataset_
        models = self.signal_models_
        last = history.groupby(S.USER)[S.SEQ].transform("max")
        cart = history[history[S.SEQ] == last]
        cooc = models.cooccurrence.score(users, history=cart)
        counts = sp.csr_matrix((np.ones(len(cart)),
                                (pd.Index(users).get_indexer(cart[S.USER]),
                                 data.item_codes(cart[S.ITEM]))),
                               shape=(len(users), data.n_items))
        counts.data[:] = 1.0
        mean = counts @ models.embeddings
        mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        # in the embeddings' float32: a float64 product would copy the whole catalogue's
        # embeddings to float64 first (150 MB and 90 ms per served cart on Instacart)
        text = mean.astype(models.embeddings.dtype) @ models.embeddings.T
        trans = models.transitions
        depts = trans.departments_.get_indexer(data.item_category(trans.level))
        cart_depts = (counts @ sp.csr_matrix((np.ones(len(depts)), (np.arange(len(depts)),
                                                                    depts)),
                                             shape=(len(depts), len(trans.departments_))))
        dept = trans.item_log_proba((cart_depts.toarray() > 0).astype(float))
        pop = np.broadcast_to(models.log_popularity, cooc.shape)
        personal = []
        for model in models.user_models.values():
            s = model.score(users, history=history).astype(float)
            if not model.scores_unseen_items:
                s[:, ~model.seen_items_] = -np.inf
            personal.append(s)
        every = dict(zip(SIGNALS + [f"user: {name}" for name in models.user_models],
                         [cooc, text, dept, pop, *personal], strict=True))
        return [every[name] for name in self.signal_names]

    def _user_models(self) -> dict:
        return self.user_models if self.user_models is not None else DEFAULT_USER_MODELS

    @property
    def signal_names(self) -> list[str]:
        """Names of the signals, in feature order."""
        cart = [s for s in SIGNALS if self.text_signal or s != "text similarity"]
        return cart + [f"user: {name}" for name in self._user_models()]

    def _candidates(self, users, history, data, blocked):
        scores = self.signals(users, history, data)
        blocked = blocked | ~self.signal_models_.seen[None, :]
        if self.new_only:
            rows = pd.Index(users).get_indexer(history[S.USER])
            blocked[rows, data.item_codes(history[S.ITEM])] = True
        return generate_candidates(scores, self.n_candidates, blocked)

    def _cart_departments_mask(self, users, history) -> np.ndarray:
        category = self.dataset_.item_category(0)
        last = history.groupby(S.USER)[S.SEQ].transform("max")
        cart = history[history[S.SEQ] == last]
        cats = cart.assign(_c=category.reindex(cart[S.ITEM]).to_numpy())
        blocked = np.zeros((len(users), self.dataset_.n_items), dtype=bool)
        item_cat = category.to_numpy()
        for r, u in enumerate(users):
            blocked[r] = np.isin(item_cat, cats.loc[cats[S.USER] == u, "_c"].unique())
        return blocked

    def _score_users(self, users: np.ndarray, matrix: sp.csr_matrix, rows: np.ndarray,
                     history: pd.DataFrame | None) -> np.ndarray:
        if history is None:  # the training histories; each user's last basket is the cart
            history = self.dataset_.interactions
        history = history[history[S.USER].isin(users)]
        out = np.full((len(users), self.dataset_.n_items), NOT_A_CANDIDATE)
        cand = self._candidates(users, history, self.dataset_,
                                self._cart_departments_mask(users, history))
        out[cand.row, cand.item] = cand.zscores() @ self.weights_.to_numpy()
        return out

    def _score_history(self, history, rows):
        raise NotImplementedError("the completer scores through _score_users")

    def complete(self, items, user=None, k: int = 10) -> np.ndarray:
        """Top-``k`` complements (item ids) of a cart, from departments it lacks.

        Fewer than ``k`` come back when fewer items qualify (a small catalogue).

        Parameters
        ----------
        items : array-like
            Item ids in the cart.
        user : optional
            A user id of the training data; their history personalises the result.
        k : int
            Number of items.

        Raises
        ------
        KeyError
            Naming unknown item or user ids.
        ValueError
            When the cart already covers every department.
        """
        history = build_cart_history(self.dataset_, items, user)
        key = history[S.USER].iloc[0]
        departments_left(self.dataset_, items)  # raises when the cart covers them all
        check_count(k)
        scores = self.score([key], history=history)
        top = top_k(scores, k)[0]
        # Only real candidates (outside the cart's departments, new to the user when
        # new_only): on a small catalogue the list would otherwise be padded with others.
        top = top[scores[0, top] > NOT_A_CANDIDATE]
        return self.items_.to_numpy()[top]


def departments_left(dataset: Dataset, items) -> list:
    """Top-level departments of bought items that a cart does not cover yet.

    Raises
    ------
    ValueError
        When the cart is empty or already covers every department: there is then
        nothing to complete from another department.
    KeyError
        Naming cart items unknown to ``dataset``.
    """
    ids = as_ids(list(dict.fromkeys(np.atleast_1d(np.asarray(items, dtype=object)).tolist())),
                 dataset.item_index)
    if not len(ids):
        raise ValueError("the cart is empty; give at least one item id")
    dataset.item_codes(ids)  # raises, naming unknown ids
    category = dataset.item_category(0)
    in_cart = set(category.reindex(ids).tolist())
    bought = pd.unique(category.reindex(dataset.interactions[S.ITEM].unique()).to_numpy())
    left = [d for d in bought if d not in in_cart]
    if not left:
        raise ValueError(f"the cart covers every department ({len(in_cart)}: "
                         f"{', '.join(map(str, sorted(in_cart)))}); there is nothing to "
                         "complete from another department")
    return left


#: The user key of a cart given without a user.
ANONYMOUS = "__cart__"


def build_cart_history(dataset: Dataset, items, user=None) -> pd.DataFrame:
    """The user's training rows (if any) followed by the cart as their latest basket.

    Raises
    ------
    KeyError
        Naming cart items or the user unknown to ``dataset``.
    """
    items = as_ids(list(dict.fromkeys(np.atleast_1d(np.asarray(items, dtype=object)).tolist())),
                   dataset.item_index)
    if not len(items):
        raise ValueError("the cart is empty; give at least one item id")
    dataset.item_codes(items)  # raises, naming unknown ids
    past = dataset.interactions.iloc[0:0]
    if user is not None:
        user = as_ids([user], dataset.user_index)[0]
        dataset.user_codes([user])
        past = dataset.interactions[dataset.interactions[S.USER] == user]
    key = user if user is not None else ANONYMOUS
    seq = int(past[S.SEQ].max()) + 1 if len(past) else 0
    cart = pd.DataFrame({S.USER: key, S.ITEM: items, S.BASKET: "cart", S.SEQ: seq})
    cols = [S.USER, S.ITEM, S.BASKET, S.SEQ]
    out = pd.concat([past[cols].astype({S.BASKET: object}), cart], ignore_index=True)
    return out.astype({S.ITEM: dataset.interactions[S.ITEM].dtype})


def as_ids(values, index: pd.Index) -> np.ndarray:
    """Values (e.g. strings from the command line) in the dtype of an id index."""
    try:
        return pd.Index(values).astype(index.dtype).to_numpy()
    except (TypeError, ValueError):
        return np.asarray(values, dtype=object)  # not convertible: reported as unknown
