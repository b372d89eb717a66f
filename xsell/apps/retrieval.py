"""First-stage retrieval for product search: lexical (BM25), dense (MiniLM) and their fusion.

* :class:`LexicalIndex` -- BM25 (``bm25s``, Lucene's variant) over each product's
  searchable text (:func:`search_text`), tokenised by :class:`~xsell.apps.query.QueryNormalizer`.
* :class:`DenseIndex` -- cosine similarity between the query's MiniLM embedding and the
  item embeddings the package already caches (:func:`xsell.text.item_texts`). The search
  is exact here; an approximate index can replace :meth:`DenseIndex.scores` behind the
  same call.

Both score the *whole* catalogue for every query (a sparse product and one matrix-vector
product over 49,688 items take a few milliseconds), so every catalogue product is a
candidate and the fusion stage (:mod:`xsell.apps.search`) sees every score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from xsell.apps.query import QueryNormalizer
from xsell.data import schema as S
from xsell.data.dataset import Dataset

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


class DenseIndex:
    """Exact cosine search over unit-length item vectors.

    Parameters
    ----------
    vectors : numpy.ndarray
        Shape ``(n_items, dim)``, catalogue order; normalised here.
    """

    def __init__(self, vectors: np.ndarray):
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = vectors / np.maximum(norms, 1e-12)

    def __len__(self) -> int:
        return len(self.vectors)

    def scores(self, query_vectors: np.ndarray) -> np.ndarray:
        """Cosine similarity of every item to each query vector: ``(n_items,)`` for one
        vector, ``(n_queries, n_items)`` for a matrix of them."""
        q = np.asarray(query_vectors, dtype=np.float32)
        unit = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
        return unit @ self.vectors.T
