"""The served catalogue: the bundle's items and the products added while serving.

``POST /items`` makes a product searchable and recommendable without a refit:
:func:`index_new_items` encodes its text with the same MiniLM the bundle's models read
(:func:`xsell.text.item_texts` form), adds the vector to the product search's indexes
(:meth:`xsell.apps.search.ProductSearch.add_items`) and the two-tower's item vector -- its
item tower's text path -- to the two-tower's index
(:meth:`xsell.serving.retrieval.TwoTowerRetriever.add_items`). Models that know items
by id (the hybrids' collaborative components, buy-again, the basket completer, the
explainer) serve it from the next fit on, which adds it to the catalogue
(:func:`xsell.serving.events.with_events`).

The indexes grow while requests read them, so the server holds a :class:`SharedLock`:
requests read under it together, and an addition waits for them and writes alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from xsell.cross_sell.completion import as_ids
from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.text import item_texts

__all__ = ["ID_COMPONENTS", "LiveCatalogue", "SharedLock", "index_new_items"]

#: What knows items by id, so serves a product added while serving only after a refit.
ID_COMPONENTS = ("recommend:hybrid", "complete", "explanations", "search:buy-again",
                 "search:co-occurrence")


class SharedLock:
    """Many readers at once, or one writer alone (a waiting writer goes before new readers,
    so a stream of requests cannot hold an addition back)."""

    def __init__(self):
        self._state = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the lock with other readers (never nest it: a waiting writer blocks it)."""
        with self._state:
            while self._writing or self._writers_waiting:
                self._state.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._state:
                self._readers -= 1
                if not self._readers:
                    self._state.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the lock alone."""
        with self._state:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._state.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._state:
                self._writing = False
                self._state.notify_all()


class LiveCatalogue:
    """The bundle's catalogue plus the products added since it was fitted.

    Parameters
    ----------
    data : Dataset
        The bundle's training data.
    """

    def __init__(self, data: Dataset):
        self.data = data
        self.added: dict = {}  # id (the catalogue's id type) -> its catalogue row

    def as_id(self, value):
        """``value`` (text from a request) in the catalogue's id type; text stays text where
        it cannot be converted (it then matches no item)."""
        return as_ids([value], self.data.item_index)[0]

    def fitted(self, item) -> bool:
        """Whether the bundle's models were fitted with ``item`` in the catalogue."""
        return self.data.item_index.get_indexer([item])[0] >= 0

    def __contains__(self, item) -> bool:
        return item in self.added or self.fitted(item)

    def __len__(self) -> int:
        return self.data.n_items + len(self.added)

    def add(self, item, fields: dict) -> pd.DataFrame:
        """Record a product (its id in the catalogue's id type); its catalogue row, as a
        frame."""
        row = {S.ITEM: item, **{k: v for k, v in fields.items() if v is not None}}
        category = row.get(S.CATEGORY)
        row["department"] = (str(category).split(S.CATEGORY_SEP)[0].strip()
                             if category else None)
        self.added[item] = row
        return pd.DataFrame([row]).astype({S.ITEM: self.data.item_index.dtype})

    def describe(self, ids) -> pd.DataFrame:
        """``title`` and ``department`` of added products, indexed by id."""
        rows = [self.added[i] for i in ids]
        return pd.DataFrame({"title": [str(r[S.TITLE]) for r in rows],
                             "department": [r["department"] for r in rows]},
                            index=pd.Index(list(ids), name=S.ITEM))


def index_new_items(rows: pd.DataFrame, search, retriever=None) -> list[str]:
    """Encode products' text once and add them to the search and the two-tower's index.

    Parameters
    ----------
    rows : pandas.DataFrame
        Catalogue rows of products new to the catalogue (:meth:`LiveCatalogue.add`).
    search : xsell.apps.search.ProductSearch
        The bundle's fitted product search.
    retriever : xsell.serving.retrieval.TwoTowerRetriever, optional
        The two-tower's index, when the bundle has a two-tower that reads text.

    Returns
    -------
    list of str
        What serves the products now (``"search"``, ``"recommend:two-tower"``).
    """
    texts = item_texts(search.dataset_, rows).tolist()
    vectors = search.text_encoder_.encode(texts, store=False)
    search.add_items(rows, vectors)
    serves = ["search"]
    if retriever is not None and retriever.reads_text:
        model = retriever.model
        same = model.encoder == search.encoder and model.pretrained
        text = vectors if same else model._text_encoder().encode(texts, store=False)
        retriever.add_items(rows[S.ITEM].to_numpy(), np.asarray(text))
        serves.append("recommend:two-tower")
    return serves
