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

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from xsell.apps.query import QueryNormalizer
from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.index import ExactIndex, build_index, shared_index

#: Optional catalogue columns that go into the searchable text, after title and category.
TEXT_COLUMNS = (S.BRAND, "description")


def search_text(dataset: Dataset, items: pd.DataFrame | None = None) -> pd.Series:
    """The text a shopper's words are matched against, one per catalogue item.

    Title, every level of the category path (``"dairy eggs > yogurt"`` contributes both
    names), then brand and description where the catalogue has them. ``items``: other
    rows in the catalogue's format (products new since a fit) -- their texts instead.
    """
    rows = dataset.items if items is None else items
    text = rows[S.TITLE].astype(str)
    for column in (S.CATEGORY, *TEXT_COLUMNS):
        if column in rows:
            part = rows[column].fillna("").astype(str)
            text = text + " " + (part.str.replace(">", " ") if column == S.CATEGORY else part)
    return pd.Series(text.to_numpy(), index=rows[S.ITEM].to_numpy(), name="search_text")


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

        self.k1, self.b = k1, b
        self.normalizer = QueryNormalizer.from_documents(texts)
        self.document_tokens = [self.normalizer.document_tokens(t) for t in texts]
        self.bm25 = bm25s.BM25(k1=k1, b=b)
        self.bm25.index(self.document_tokens, show_progress=False)
        self._indexed = len(self.document_tokens)  # rows bm25s holds; the rest were added
        # what an added product is scored with: document frequencies, mean length
        self._frequency = Counter(w for doc in self.document_tokens for w in set(doc))
        self._mean_length = float(np.mean([len(d) for d in self.document_tokens] or [1]))
        self._added: list[tuple[Counter, int]] = []  # token counts and length of each

    def __len__(self) -> int:
        return len(self.document_tokens)

    def add(self, texts: Sequence[str]) -> None:
        """Append products (rows after the indexed ones). bm25s cannot add to an index and
        rebuilding it takes seconds, so they are scored with the index's statistics --
        document frequencies and average length as built; the next fit rebuilds it."""
        tokens = [self.normalizer.document_tokens(t) for t in texts]
        self.normalizer.add_vocabulary(w for doc in tokens for w in doc)
        self.document_tokens.extend(tokens)
        self._added.extend((Counter(doc), len(doc)) for doc in tokens)

    def _added_scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 (Lucene's variant, as bm25s) of the added products, by the built statistics."""
        frequency, mean_length = self._frequency, self._mean_length
        n = self._indexed
        out = np.zeros(len(self._added), dtype=np.float32)
        for j, (counts, length) in enumerate(self._added):
            norm = 1 - self.b + self.b * length / mean_length
            for t in tokens:
                if counts[t]:
                    idf = np.log(1 + (n - frequency[t] + 0.5) / (frequency[t] + 0.5))
                    out[j] += idf * counts[t] / (counts[t] + self.k1 * norm)
        return out

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every item for normalised query ``tokens`` (0 = no word matched)."""
        known = [t for t in tokens if t in self.bm25.vocab_dict]
        scores = (self.bm25.get_scores(known) if known
                  else np.zeros(self._indexed, dtype=np.float32))
        if len(self) > self._indexed:
            scores = np.concatenate([scores, self._added_scores(tokens)])
        return scores

    def matched(self, tokens: Sequence[str], row: int) -> list[str]:
        """The query tokens that item ``row``'s text contains (an explanation)."""
        have = set(self.document_tokens[row])
        return [t for t in dict.fromkeys(tokens) if t in have]


def _unit(vectors) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.allclose(norms, 1.0, atol=1e-5):
        return x  # unit already (a saved index, perhaps memory-mapped): not copied
    return x / np.maximum(norms, 1e-12)


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
    index_file : path-like, optional
        Where a faiss index is built once and memory-mapped from
        (:func:`xsell.index.shared_index`: the server processes of one machine share it).
    **params
        The faiss index's parameters (:class:`xsell.index.FaissIndex`).
    """

    def __init__(self, vectors: np.ndarray, kind: str = "auto", index_file=None, **params):
        unit = _unit(vectors)
        self.index = (build_index(unit, kind=kind, **params) if index_file is None
                      else shared_index(unit, index_file, kind=kind, **params))
        # pair scores read the rows: the exact index holds them; beside a faiss index, an
        # exact index of the same (unit, perhaps memory-mapped) rows, never copied
        self._rows = self.index if isinstance(self.index, ExactIndex) else ExactIndex().fit(unit)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def vectors(self) -> np.ndarray:
        """The unit item vectors, one row per catalogue item."""
        return self._rows.vectors_

    def _gather(self, items: np.ndarray) -> np.ndarray:
        return self._rows.rows(items)

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
        return np.einsum("ij,ij->i", unit[query_rows], self._gather(items))

    def scores(self, query_vectors: np.ndarray) -> np.ndarray:
        """Cosine similarity of every item to each query vector: ``(n_items,)`` for one
        vector, ``(n_queries, n_items)`` for a matrix of them."""
        return _unit(query_vectors) @ self.vectors.T

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` more items now, so that adding them copies nothing."""
        self.index.reserve(rows)
        if self._rows is not self.index:
            self._rows.reserve(rows)

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append item vectors (new catalogue rows); the rows they were given."""
        unit = _unit(vectors)
        rows = self.index.add(unit)
        if self._rows is not self.index:
            self._rows.add(unit)
        return rows
