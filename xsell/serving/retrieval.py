"""The two-tower alone, served from an index of its item vectors.

Scoring a shopper with the two-tower is one inner product per item, ``r = u . s``
(:mod:`xsell.models.two_tower`), so the top of the catalogue is a nearest-neighbour query:
:class:`TwoTowerRetriever` keeps every shopper's user vector (computed once on load) and
asks an index (:func:`xsell.index.build_index`: exact NumPy below
:data:`~xsell.index.EXACT_UP_TO` vectors, faiss IVF above) for the top items. A
purchase event recomputes that shopper's vector with the user tower on the new history
(:meth:`TwoTowerRetriever.update`), and their next list is an index query -- the "seconds
for state" half of the two-speed loop: no weight changes until the next fit.

For the MSE (rating) objective the score has an item bias, ``u . s + b``; the index holds
``[s, b]`` and is queried with ``[u, 1]``, the same ranking.

A product added while serving (:meth:`TwoTowerRetriever.add_items`) gets the vector of
the item tower's text path -- what a catalogue item nobody bought has -- and bias 0.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.index import build_index, shared_index
from xsell.models.two_tower import TwoTower

__all__ = ["TwoTowerRetriever"]


class TwoTowerRetriever:
    """Top-k lists of a fitted two-tower from an index of its item vectors.

    Parameters
    ----------
    model : xsell.models.two_tower.TwoTower
        The fitted two-tower (e.g. a hybrid's component).
    kind : str
        The index (:func:`xsell.index.build_index`): ``"auto"`` chooses by catalogue size.
    index_file : path-like, optional
        Where a faiss index is built once and memory-mapped from
        (:func:`xsell.index.shared_index`: the server processes of one machine share it);
        without one, the index is built in this process's memory.
    """

    def __init__(self, model: TwoTower, kind: str = "auto", index_file=None):
        self.model = model
        data = model.dataset_
        self._bias = model.objective == "mse"
        rows = self._item_rows(model.item_vectors_, self._item_bias(np.arange(len(model.items_))))
        self.index = (build_index(rows, kind=kind) if index_file is None
                      else shared_index(rows, index_file, kind=kind))
        self.item_ids = model.items_.to_numpy()
        self._added: dict = {}  # a product added while serving -> its index row
        history = model.history_matrix(data.interactions, data.user_index)
        vectors = model.user_vectors(history)
        self._users = {str(u): (vectors[i], history[i].indices.copy())
                       for i, u in enumerate(data.user_index)}
        self._lock = threading.Lock()

    def _item_bias(self, codes: np.ndarray) -> np.ndarray | None:
        if not self._bias:
            return None
        return self.model.bias_.detach().numpy()[codes]

    def _item_rows(self, vectors: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        return vectors if bias is None else np.hstack([vectors, bias[:, None]]).astype(np.float32)

    def _query(self, vector: np.ndarray) -> np.ndarray:
        return vector if not self._bias else np.append(vector, 1.0).astype(np.float32)

    @property
    def reads_text(self) -> bool:
        """Whether the model places items by their text (so can place a new product)."""
        return self.model.item_features != "id"

    def add_items(self, ids, embeddings: np.ndarray) -> None:
        """Index products the model was not fitted on, from their text embeddings (the
        model's encoder): the item tower's text path, no id vector, bias 0."""
        ids = np.asarray(ids)
        vectors = self.model.text_item_vectors(embeddings)
        rows = self.index.add(self._item_rows(vectors, np.zeros(len(ids)) if self._bias
                                              else None))
        with self._lock:
            self._added.update(zip(ids.tolist(), rows.tolist(), strict=True))
            self.item_ids = np.append(self.item_ids, ids)

    def has_user(self, user) -> bool:
        """Whether the shopper has a vector (a training shopper, or one with events)."""
        return str(user) in self._users

    def update(self, user, interactions: pd.DataFrame) -> None:
        """Recompute ``user``'s vector from their whole history (interaction rows: their
        training rows and the baskets logged since) with the user tower."""
        uid = interactions[S.USER].iloc[0]
        history = self.model.history_matrix(interactions, pd.Index([uid]))
        vector = self.model.user_vectors(history)[0]
        with self._lock:  # the user tower reads fitted items; added ones count as seen
            added = [self._added[i] for i in interactions[S.ITEM].tolist() if i in self._added]
            seen = np.union1d(history[0].indices, np.asarray(added, dtype=np.int64))
            self._users[str(user)] = (vector, seen)

    def recommend(self, user, k: int = 10, exclude_seen: bool = True) -> np.ndarray:
        """The top ``k`` item ids for ``user`` (``exclude_seen``: only items they have not
        bought).

        Raises
        ------
        KeyError
            If the shopper has no vector (named).
        """
        with self._lock:
            found = self._users.get(str(user))
            ids = self.item_ids
        if found is None:
            raise KeyError(f"unknown user {user!r}: no two-tower vector")
        vector, seen = found
        want = min(k + (len(seen) if exclude_seen else 0), len(ids))
        _, rows = self.index.search(self._query(vector), want)
        rows = rows[0][rows[0] >= 0]
        if exclude_seen:
            rows = rows[~np.isin(rows, seen)]
        return ids[rows[:k]]
