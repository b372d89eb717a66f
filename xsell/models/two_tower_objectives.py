"""What the two-tower is trained to do: the two formulations, each with its data and score.

* :class:`SoftmaxObjective` -- every (user, basket ``t``) gives a history (the baskets
  before ``t``) and targets (the items of ``t``); the in-batch sampled softmax with log-Q
  correction and a temperature ranks each target above the batch's other items. Early
  stopping reads Recall@20 on the last basket of a sample of users, held out.
* :class:`MSEObjective` -- the seed's rating formulation: each user's whole history is
  one state and every (item, count) pair a target; the score plus an item bias and a
  global mean is regressed onto the count. Early stopping reads minus the MSE of a
  held-out tenth of the pairs.

Each says how its training data is built, how batches are drawn, what the loss of a
batch is and how a validation score is computed; the loop that runs them is
:mod:`xsell.models.two_tower_training`. Under ``torchrun`` every process draws the same
batches and computes the loss of its contiguous share of each (``shard=True``,
:mod:`xsell.models.distributed`); the shares' losses add up to the batch's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.losses import in_batch_softmax_loss, mse_loss
from xsell.metrics import recall_at_k
from xsell.models import distributed
from xsell.models.base import interaction_matrix, top_k
from xsell.models.behaviour import States, top_items, training_states


class Objective:
    """One training formulation (see the module docstring)."""

    #: Whether the model's item bias and global mean are trained too.
    trains_bias: bool = False

    def training_data(self, model, train: Dataset,
                      rng: np.random.Generator) -> tuple[States, np.ndarray]:
        """Training states and the rows held out for validation."""
        raise NotImplementedError

    def train_pairs(self, states: States, val_rows: np.ndarray) -> np.ndarray:
        """Indices of the (state, target) pairs to train on."""
        raise NotImplementedError

    def start(self, model, states: States, train_pairs: np.ndarray) -> None:
        """Anything to set before the first epoch."""

    def batches(self, model, states: States, pairs: np.ndarray, rng: np.random.Generator):
        """Shuffled batches of pair indices, about ``batch_size`` each."""
        raise NotImplementedError

    def loss(self, model, states: States, pairs: np.ndarray, state_text,
             log_q: torch.Tensor, shard: bool = False) -> torch.Tensor:
        """The loss of one batch.

        ``shard``: only this process's share of the batch
        (:func:`~xsell.models.distributed.my_share`) is computed, and the loss returned
        is its part of the batch's mean loss (summed over the processes, the batch's
        loss).
        """
        raise NotImplementedError

    def validate(self, model, states: States, val_rows: np.ndarray, state_text) -> float:
        """The early-stopping score (higher is better)."""
        raise NotImplementedError


class SoftmaxObjective(Objective):
    """In-batch sampled softmax on next baskets (module docstring)."""

    def training_data(self, model, train, rng):
        config = model.config()
        states = training_states(train.interactions, model.users_, model.items_,
                                 config.half_life, config.max_history, config.targets)
        if config.max_states_per_user is not None:
            states = states.last_per_user(config.max_states_per_user)
        return states, self._validation_states(states, config.validation_users, rng)

    @staticmethod
    def _validation_states(states: States, n_users: int, rng) -> np.ndarray:
        """The last state of up to ``n_users`` users (their targets are held out)."""
        last = pd.Series(np.arange(len(states))).groupby(states.user).max()
        has_target = np.isin(last.to_numpy(), states.target_state)
        candidates = last.to_numpy()[has_target]
        n = min(n_users, len(candidates) // 5)
        return np.sort(rng.choice(candidates, size=n, replace=False)) if n else np.empty(0, int)

    def train_pairs(self, states, val_rows):
        return np.flatnonzero(~np.isin(states.target_state, val_rows))

    def batches(self, model, states, pairs, rng):
        # Whole baskets per batch: a basket's items share one history and mask each other.
        pairs = np.sort(pairs)  # grouped by state (states are built in order)
        state_ids, starts = np.unique(states.target_state[pairs], return_index=True)
        ends = np.r_[starts[1:], len(pairs)]
        per_batch = max(1, int(model.batch_size * len(state_ids) / max(len(pairs), 1)))
        order = rng.permutation(len(state_ids))
        for start in range(0, len(order), per_batch):
            chosen = order[start:start + per_batch]
            batch = np.concatenate([pairs[starts[i]:ends[i]] for i in chosen])
            if len(batch) >= 2:
                yield batch

    def loss(self, model, states, pairs, state_text, log_q, shard=False):
        items = torch.as_tensor(states.target_item[pairs])
        srows = states.target_state[pairs]
        mine = distributed.my_share(len(pairs)) if shard else slice(0, len(pairs))
        # One user vector per history, shared by its basket's items.
        distinct, inverse = np.unique(srows[mine], return_inverse=True)
        u = _share_users(model, states, distinct, state_text).index_select(
            0, torch.as_tensor(inverse))
        v = model._item_vectors(items[mine], tuned=True)
        if not shard:
            return in_batch_softmax_loss(u, v, items, model.logq * log_q[items],
                                         model.temperature, torch.as_tensor(srows))
        # This share's users against every item of the batch, as in one process: the
        # other shares' item vectors are gathered (their gradients flow back to them).
        v = distributed.gather_rows(v, np.diff(distributed.shares(len(pairs))))
        return in_batch_softmax_loss(u, v, items, model.logq * log_q[items],
                                     model.temperature, torch.as_tensor(srows),
                                     first=mine.start, total=len(pairs))

    @torch.no_grad()
    def validate(self, model, states, val_rows, state_text):
        if len(val_rows) == 0:
            return 0.0
        u = model._batch_users(states, val_rows, state_text).numpy()
        scores = u @ model._all_item_vectors().T
        scores[:, ~_target_items(states, val_rows, len(model.items_))] = -np.inf
        if model.targets == "new":
            rows = np.repeat(np.arange(len(val_rows)), states.items.shape[1])
            cols = states.items[val_rows].ravel()
            scores[rows[cols >= 0], cols[cols >= 0]] = -np.inf
        top = top_k(scores, 20)
        return float(np.mean(recall_at_k(top, _targets_of(states, val_rows), 20)))


class MSEObjective(Objective):
    """Squared error on purchase counts (module docstring)."""

    trains_bias = True

    def training_data(self, model, train, rng):
        """Each user's whole history as one state; targets = (item, count) pairs."""
        weights = model.history_matrix(train.interactions, model.users_)
        codes, w = top_items(weights, model.max_history)
        # The rating: a ``rating`` column where the data has one (the seed's count triples),
        # else the number of purchase rows of the (user, item) pair.
        inter = train.interactions
        values = inter[S.RATING].to_numpy() if S.RATING in inter else None
        counts = interaction_matrix(inter, model.users_, model.items_, values).tocoo()
        n_users = len(model.users_)
        states = States(np.arange(n_users), np.zeros(n_users, int), codes, w,
                        counts.row.astype(np.int64), counts.col.astype(np.int64),
                        counts.data.astype(np.float32))
        n_val = len(counts.data) // 10
        return states, np.sort(rng.choice(len(counts.data), size=n_val, replace=False))

    def train_pairs(self, states, val_rows):
        return np.setdiff1d(np.arange(len(states.target_item)), val_rows)

    def start(self, model, states, train_pairs):
        model.bias_.data[-1] = float(states.target_count[train_pairs].mean())

    def batches(self, model, states, pairs, rng):
        order = rng.permutation(pairs)
        for start in range(0, len(order), model.batch_size):
            yield order[start:start + model.batch_size]

    def loss(self, model, states, pairs, state_text, log_q, shard=False):
        total = len(pairs) if shard else None
        if shard:  # a plain mean over rows: each share's rows alone
            pairs = pairs[distributed.my_share(len(pairs))]
        items = torch.as_tensor(states.target_item[pairs])
        srows = states.target_state[pairs]
        # A count must not be read off its own history entry.
        u = _share_users(model, states, srows, state_text, states.target_item[pairs])
        v = model._item_vectors(items, tuned=True)
        pred = (u * v).sum(-1) + model.bias_[items] + model.bias_[-1]
        return mse_loss(pred, torch.as_tensor(states.target_count[pairs]), total)

    @torch.no_grad()
    def validate(self, model, states, val_rows, state_text):
        if len(val_rows) == 0:
            return 0.0
        items = torch.as_tensor(states.target_item[val_rows])
        u = model._batch_users(states, states.target_state[val_rows], state_text,
                               states.target_item[val_rows])
        pred = (u * model._item_vectors(items)).sum(-1) + model.bias_[items] + model.bias_[-1]
        return -float(mse_loss(pred, torch.as_tensor(states.target_count[val_rows])))


def _share_users(model, states: States, rows: np.ndarray, state_text,
                 mask_items: np.ndarray | None = None) -> torch.Tensor:
    """User vectors of training states; none for an empty share (a batch with fewer rows
    than there are processes leaves some process none)."""
    if len(rows) == 0:
        return torch.zeros((0, model.dim))
    return model._batch_users(states, rows, state_text, mask_items)


def _targets_of(states: States, rows: np.ndarray) -> list[np.ndarray]:
    """The distinct target items of each state in ``rows`` (sorted, each with a target)."""
    chosen = np.isin(states.target_state, rows)
    state, item = states.target_state[chosen], states.target_item[chosen]
    order = np.argsort(state, kind="stable")
    groups = np.split(item[order], np.searchsorted(state[order], rows[1:]))
    return [np.unique(g) for g in groups]


def _target_items(states: States, val_rows: np.ndarray, n_items: int) -> np.ndarray:
    """Items that are a target of some training state (what validation may rank)."""
    mask = np.zeros(n_items, dtype=bool)
    mask[states.target_item[~np.isin(states.target_state, val_rows)]] = True
    return mask


#: The objectives by the name :class:`~xsell.models.two_tower.TwoTower` takes.
OBJECTIVES: dict[str, Objective] = {"softmax": SoftmaxObjective(), "mse": MSEObjective()}
