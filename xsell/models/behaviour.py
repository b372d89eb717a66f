"""A user's behaviour history as the user tower reads it: items with time-decayed weights.

A purchase ``a`` baskets ago weighs :math:`\\gamma^{a}` with :math:`\\gamma = 2^{-1/h}`
(``h`` = half-life in baskets); an item's weight is the sum over its purchases,

.. math:: w_{uj}(t) = \\sum_{s < t} \\gamma^{\\,t-1-s}\\, c_{uj s},

where :math:`c_{ujs}` counts item ``j`` in the user's basket ``s``. The user tower sees the
``max_items`` heaviest items of that sum. Training uses one *state* per (user, basket t):
the history before basket ``t`` and the items of ``t`` as targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from xsell.data import schema as S
from xsell.models.base import basket_age, interaction_matrix


def decay_weights(interactions: pd.DataFrame, users: pd.Index, items: pd.Index,
                  half_life: float | None) -> sp.csr_matrix:
    """Users x items decayed weights of whole histories (age 0 = the user's last basket)."""
    if half_life is None or len(interactions) == 0:
        return interaction_matrix(interactions, users, items)
    return interaction_matrix(interactions, users, items,
                              0.5 ** (basket_age(interactions) / half_life))


def top_items(weights: sp.csr_matrix, max_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``max_items`` heaviest items of each row, heaviest first, padded with -1 / 0."""
    weights = weights.tocsr()
    n = weights.shape[0]
    codes = np.full((n, max_items), -1, dtype=np.int64)
    values = np.zeros((n, max_items), dtype=np.float32)
    for r in range(n):
        lo, hi = weights.indptr[r], weights.indptr[r + 1]
        cols, vals = weights.indices[lo:hi], weights.data[lo:hi]
        if len(vals) > max_items:
            keep = np.argpartition(-vals, max_items - 1)[:max_items]
            cols, vals = cols[keep], vals[keep]
        order = np.argsort(-vals, kind="stable")
        codes[r, :len(order)] = cols[order]
        values[r, :len(order)] = vals[order]
    return codes, values


@dataclass
class States:
    """Histories (padded item codes and weights) and the targets that follow each of them.

    Attributes
    ----------
    user : numpy.ndarray
        User code of each state.
    seq : numpy.ndarray
        Basket position ``t`` the state precedes.
    items, weights : numpy.ndarray
        ``(n_states, max_items)`` history item codes (-1 = padding) and decayed weights.
    target_state, target_item : numpy.ndarray
        One row per (state, target item): which state, which item code.
    target_count : numpy.ndarray
        Times the item is in the target basket.
    """

    user: np.ndarray
    seq: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    target_state: np.ndarray
    target_item: np.ndarray
    target_count: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    def last_per_user(self, n: int) -> States:
        """Only each user's last ``n`` states (and their targets)."""
        rank = pd.Series(self.seq).groupby(self.user).rank(ascending=False, method="first")
        keep = np.flatnonzero(rank.to_numpy() <= n)
        new_id = np.full(len(self), -1)
        new_id[keep] = np.arange(len(keep))
        rows = np.flatnonzero(new_id[self.target_state] >= 0)
        return States(self.user[keep], self.seq[keep], self.items[keep], self.weights[keep],
                      new_id[self.target_state[rows]], self.target_item[rows],
                      self.target_count[rows])


def training_states(interactions: pd.DataFrame, users: pd.Index, items: pd.Index,
                    half_life: float | None, max_items: int,
                    targets: str = "all") -> States:
    """One state per (user, basket t >= 1): decayed history before ``t``, targets in ``t``.

    Parameters
    ----------
    targets : {"all", "new"}
        ``"new"`` keeps only target items the user had not bought before ``t`` (what an
        exploring recommender must learn; repeats are buy-again's job).
    """
    if targets not in ("all", "new"):
        raise ValueError(f"targets must be 'all' or 'new', not {targets!r}")
    gamma = 1.0 if half_life is None else 0.5 ** (1.0 / half_life)
    inter = interactions[[S.USER, S.ITEM, S.SEQ]]
    u_codes = users.get_indexer(inter[S.USER])
    i_codes = items.get_indexer(inter[S.ITEM])
    seqs = inter[S.SEQ].to_numpy()
    order = np.lexsort((seqs, u_codes))
    u_codes, i_codes, seqs = u_codes[order], i_codes[order], seqs[order]
    bounds = np.flatnonzero(np.diff(u_codes)) + 1
    rows, blocks = [], []
    st_user, st_seq, t_state, t_item, t_count = [], [], [], [], []
    n_states = 0
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(u_codes)], strict=True):
        user, s, it = u_codes[lo], seqs[lo:hi], i_codes[lo:hi]
        n_baskets = int(s.max()) + 1
        if n_baskets < 2:
            continue
        local, inv = np.unique(it, return_inverse=True)
        counts = sp.csr_matrix((np.ones(len(s)), (s, inv)), shape=(n_baskets, len(local)))
        counts = counts.toarray()
        # W[t] = sum_{s<t} gamma^(t-1-s) C[s]: a lower-triangular decay matrix times C.
        t_idx = np.arange(1, n_baskets)[:, None]
        age = t_idx - 1 - np.arange(n_baskets)[None, :]
        decay = np.where(age >= 0, gamma ** np.maximum(age, 0), 0.0)
        hist = decay @ counts  # states t = 1 .. n-1
        blocks.append(sp.csr_matrix(hist))
        rows.append(local)
        st_user.append(np.full(n_baskets - 1, user))
        st_seq.append(np.arange(1, n_baskets))
        target = counts[1:]
        if targets == "new":
            target = np.where(np.cumsum(counts, axis=0)[:-1] > 0, 0, target)
        r, c = np.nonzero(target)
        t_state.append(r + n_states)
        t_item.append(local[c])
        t_count.append(target[r, c])
        n_states += n_baskets - 1
    if not blocks:
        raise ValueError("no user has two baskets: nothing to learn a next basket from")
    # Map every user's local item columns back to catalogue codes, then take the top items.
    mapped = [sp.csr_matrix((b.data, local[b.indices], b.indptr), shape=(b.shape[0], len(items)))
              for b, local in zip(blocks, rows, strict=True)]
    codes, weights = top_items(sp.vstack(mapped).tocsr(), max_items)
    return States(np.concatenate(st_user), np.concatenate(st_seq), codes, weights,
                  np.concatenate(t_state), np.concatenate(t_item),
                  np.concatenate(t_count).astype(np.float32))
