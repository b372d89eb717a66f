"""First-stage retrieval for product search: lexical (BM25), dense (MiniLM) and their fusion.

* :class:`LexicalIndex` -- BM25 (``bm25s``, Lucene's variant) over each product's
  searchable text (:func:`search_text`), tokenised by :class:`~xsell.apps.query.QueryNormalizer`.
* :class:`DenseIndex` -- cosine similarity between the query's MiniLM embedding and the
  item embeddings the package already caches (:func:`xsell.text.item_texts`), searched
  through an index of :mod:`xsell.index` (exact up to 100,000 items, approximate above).

BM25 scores the whole catalogue for every query (a sparse product); the dense index
returns each query's nearest items, and scores any other candidate pair on demand
(:meth:`DenseIndex.pair_scores`), so the fusion stage (:mod:`xsell.apps.search`) sees both
scores of every candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from xsell.apps.query import QueryNormalizer
from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.index import ExactIndex, GrowingRows, build_index

#: Optional catalogue columns that go into the searchable text, after title and category.
TEXT_COLUMNS = (S.BRAND, "description")


def search_text(dataset: Dataset) -> pd.Series:
    """The text a shopper's words are matched against, one per catalogue item.

    Title, every level of the category path (``"dairy eggs > yogurt"`` contributes both
    names), then brand and description where the catalogue has them.
    """
    items = dataset.items
    text = items[S.TITLE].astype(str)
    if S.CATEGORY in items:
        text = text + " " + items[S.CATEGORY].fillna("").astype(str).str.replace(">", " ")
    for column in TEXT_COLUMNS:
        if column in items:
            text = text + " " + items[column].fillna("").astype(str)
    return pd.Series(text.to_numpy(), index=items[S.ITEM].to_numpy(), name="search_text")


class LexicalIndex:
    """BM25 over product texts.

    Parameters
    ----------
    texts : sequence of str
        One searchable text per item, in catalogue order.
    k1, b : float
        BM25's term-frequency saturation and length normalisation.
    """

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75):
        import bm25s

        self.normalizer = QueryNormalizer.from_documents(texts)
        self.document_tokens = [self.normalizer.document_tokens(t) for t in texts]
        self.bm25 = bm25s.BM25(k1=k1, b=b)
        self.bm25.index(self.document_tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self.document_tokens)

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every item for normalised query ``tokens`` (0 = no word matched)."""
        known = [t for t in tokens if t in self.bm25.vocab_dict]
        if not known:
            return np.zeros(len(self), dtype=np.float32)
        return self.bm25.get_scores(known)

    def matched(self, tokens: Sequence[str], row: int) -> list[str]:
        """The query tokens that item ``row``'s text contains (an explanation)."""
        have = set(self.document_tokens[row])
        return [t for t in dict.fromkeys(tokens) if t in have]


def _unit(vectors) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class DenseIndex:
    """Cosine search over unit-length item vectors, through an index of :mod:`xsell.index`.

    Parameters
    ----------
    vectors : numpy.ndarray
        Shape ``(n_items, dim)``, catalogue order; normalised here.
    kind : str
        The index (:func:`xsell.index.build_index`): ``"auto"`` searches exactly up to
        :data:`~xsell.index.EXACT_UP_TO` items and with faiss IVF above; ``"hnsw"``
        keeps recall@10 above 0.99 on MiniLM vectors (``benchmarks/bench_index.py``).
    **params
        The faiss index's parameters (:class:`xsell.index.FaissIndex`).
    """

    def __init__(self, vectors: np.ndarray, kind: str = "auto", **params):
        unit = _unit(vectors)
        self.index = build_index(unit, kind=kind, **params)
        # pair scores read the rows: the exact index holds them, a faiss index a copy here
        self._rows = None if isinstance(self.index, ExactIndex) else GrowingRows(unit)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def vectors(self) -> np.ndarray:
        """The unit item vectors, one row per catalogue item."""
        return self.index.vectors_ if self._rows is None else self._rows.array

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to each query vector, best first (``-1`` rows where
        the index found fewer).

        Returns
        -------
        scores : numpy.ndarray
            ``(n_queries, k)`` cosine similarities.
        rows : numpy.ndarray
            ``(n_queries, k)`` catalogue rows.
        """
        return self.index.search(_unit(query_vectors), k)

    def pair_scores(self, query_vectors: np.ndarray, query_rows: np.ndarray,
                    items: np.ndarray) -> np.ndarray:
        """Cosine similarity of item ``items[j]`` to query ``query_rows[j]``, for each ``j``."""
        unit = _unit(query_vectors)
        return np.einsum("ij,ij->i", unit[query_rows], self.vectors[items])

    def scores(self, query_vectors: np.ndarray) -> np.ndarray:
        """Cosine similarity of every item to each query vector: ``(n_items,)`` for one
        vector, ``(n_queries, n_items)`` for a matrix of them."""
        return _unit(query_vectors) @ self.vectors.T

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append item vectors (new catalogue rows); the rows they were given."""
        unit = _unit(vectors)
        rows = self.index.add(unit)
        if self._rows is not None:
            self._rows.append(unit)
        return rows
