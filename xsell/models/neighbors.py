"""Neighbourhood models: item-kNN over users, and item co-occurrence within baskets.

Both score a user by summing, over the items in the user's history, a row of an
item x item matrix: :math:`s_u = h_u W`. They differ in what makes two items neighbours --
being bought by the same *users* (:class:`ItemKNN`) or in the same *basket*, or within a
few consecutive baskets (:class:`CoOccurrence`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.models.base import RecencyWeighted, capped, popularity_tiebreak


def _binary(m: sp.csr_matrix) -> sp.csr_matrix:
    # 1 where m is nonzero: a history counts each distinct item once.
    out = sp.csr_matrix(m, dtype=float, copy=True)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def weigh_documents(counts: sp.csr_matrix, weighting: str,
                    reference: sp.csr_matrix | None = None) -> sp.csr_matrix:
    """TF-IDF or BM25 weights of a count matrix whose rows are "documents" and columns "terms".

    The text-retrieval weightings that ``implicit`` applies to purchase data. Which side
    plays the documents is the caller's choice: for item-item similarities the documents
    are the items and the terms their buyers (:class:`ItemKNN`: a user who buys everything
    is a common word and says little about two items); for a user's confidences the
    documents are the users and the terms their items (:class:`~xsell.models.factorization.ALS`:
    a rare item says more about a user than milk does).

    Parameters
    ----------
    counts : scipy.sparse.csr_matrix
        Documents x terms counts :math:`r_{dt}`.
    weighting : str
        One of

        * ``"binary"``: :math:`1[r_{dt} > 0]`;
        * ``"tfidf"``: :math:`\\sqrt{r_{dt}}\\,\\mathrm{idf}_t`;
        * ``"bm25"``: :math:`\\frac{r_{dt}(K_1+1)}{K_1 L_d + r_{dt}}\\,\\mathrm{idf}_t` -- the
          count saturates and long documents are damped,
          :math:`L_d = 1 - B + B\\,\\ell_d/\\bar\\ell` (:math:`\\ell_d` the row sum),
          :math:`K_1 = 100`, :math:`B = 0.8`;

        with :math:`\\mathrm{idf}_t = \\max(0, \\log N - \\log(1 + N_t))`, :math:`N` the
        non-empty documents and :math:`N_t` those holding term :math:`t`.
    reference : scipy.sparse.csr_matrix, optional
        Matrix to take :math:`N`, :math:`N_t` and :math:`\\bar\\ell` from (default: ``counts``
        itself): the training matrix, when weighting a new user's history.

    Returns
    -------
    scipy.sparse.csr_matrix
        Same shape and sparsity pattern as ``counts``, float64.
    """
    if weighting not in ("binary", "tfidf", "bm25"):
        raise ValueError(f"weighting must be 'binary', 'tfidf' or 'bm25', got {weighting!r}")
    if weighting == "binary":
        return _binary(counts)
    x = sp.csr_matrix(counts, dtype=float, copy=True)
    x.eliminate_zeros()
    ref = x if reference is None else sp.csr_matrix(reference, dtype=float)
    lengths = np.asarray(ref.sum(axis=1)).ravel()
    n_docs = max(int((lengths > 0).sum()), 1)
    # Clipped at 0: a term in (nearly) every document carries no information, and a
    # negative weight would turn a purchase into evidence against the item.
    idf = np.maximum(np.log(n_docs) - np.log1p(ref.getnnz(axis=0)), 0.0)
    coo = x.tocoo()
    if weighting == "tfidf":
        coo.data = np.sqrt(coo.data) * idf[coo.col]
    else:
        k1, b = 100.0, 0.8
        mean_length = lengths[lengths > 0].mean() if (lengths > 0).any() else 1.0
        norm = (1.0 - b) + b * np.asarray(x.sum(axis=1)).ravel() / mean_length
        coo.data = coo.data * (k1 + 1.0) / (k1 * norm[coo.row] + coo.data) * idf[coo.col]
    return coo.tocsr()


def keep_top_k_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of every row of a sparse matrix (ties: lower column first)."""
    m = sp.csr_matrix(m, copy=True)
    m.sort_indices()
    keep = np.ones(m.nnz, dtype=bool)
    # Only rows with more than k entries need pruning; a loop over them is faster than
    # one global sort of all entries by (row, value).
    for r in np.flatnonzero(np.diff(m.indptr) > k):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        order = np.argsort(-m.data[lo:hi], kind="stable")
        keep[lo + order[k:]] = False
    m.data[~keep] = 0.0
    m.eliminate_zeros()
    return m


class ItemKNN(RecencyWeighted):
    """Item-based nearest neighbours (Sarwar et al. 2001; Deshpande & Karypis 2004).

    Items are vectors over users: column :math:`x_{\\cdot i}` of the users x items training
    matrix, 0/1 by default (``weighting``). Two items are similar when the same users buy
    them, measured by a shrunk cosine,

    .. math::
        w_{ji} = \\frac{x_{\\cdot j}^\\top x_{\\cdot i}}
                      {\\lVert x_{\\cdot j}\\rVert\\,\\lVert x_{\\cdot i}\\rVert + \\beta},
        \\qquad w_{jj} = 0,

    of which every item :math:`j` keeps its ``k_neighbors`` largest. A user scores every
    item by the similarities it collects from the distinct items :math:`H_u` of the history,

    .. math::
        s_{ui} = \\sum_{j \\in H_u} w_{ji} .

    Items nobody bought in training score 0; a popularity tie-breaker far below any
    similarity orders the ties (and gives a user without history the popular items).
    With ``recency`` below 1 each history item votes with the weight of its purchases,
    older baskets less (:class:`~xsell.models.base.RecencyWeighted`), capped at 1.

    Parameters
    ----------
    k_neighbors : int
        Neighbours kept per item (the rest of its row of :math:`W` is set to 0). Larger
        values reach more items, which helps users with short histories.
    shrink : float
        :math:`\\beta`; pulls the similarity of items with few buyers towards 0.
    weighting : str
        How the users x items matrix is weighted before the cosine: ``"binary"`` (plain
        cosine), ``"tfidf"`` or ``"bm25"`` (:func:`weigh_documents` with the items as
        documents and their buyers as terms, so users who buy everything count less).
    recency : float
        Weight of a history purchase per basket further back when scoring, in (0, 1];
        1.0 = every history item votes 1 (the fit is unchanged).

    Attributes
    ----------
    similarity_ : scipy.sparse.csr_matrix
        :math:`W`, catalogue x catalogue; row :math:`j` holds the neighbours of item
        :math:`j`.
    """

    #: Values tried by :func:`xsell.tuning.tune` (12 fits of about 2 s each on the
    #: Instacart sample; ``recency`` changes only scoring).
    param_grid: dict[str, list] = {"k_neighbors": [100, 1000], "shrink": [0.0, 10.0, 50.0],
                                   "weighting": ["binary", "tfidf"], "recency": [1.0, 0.7]}

    def __init__(self, k_neighbors: int = 100, shrink: float = 0.0, weighting: str = "binary",
                 recency: float = 1.0):
        self.k_neighbors = k_neighbors
        self.shrink = shrink
        self.weighting = weighting
        self.recency = recency

    def fit(self, train: Dataset) -> ItemKNN:
        """Compute the pruned item-item similarity matrix."""
        self._remember(train)
        # Items are the documents, their buyers the terms (see weigh_documents).
        x = weigh_documents(self.train_history_.T.tocsr(), self.weighting).T.tocsc()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        # Purchase data are sparse enough for the item x item dot products to stay sparse
        # (9.5M of the 19.5k^2 pairs on the Instacart sample): no dense matrix is formed.
        sim = (x.T @ x).tocsr()
        row = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
        sim.data /= norms[row] * norms[sim.indices] + self.shrink
        sim.data[row == sim.indices] = 0.0  # an item does not vote for itself
        sim.eliminate_zeros()
        self.similarity_ = keep_top_k_per_row(sim, self.k_neighbors)
        self.tiebreak_ = popularity_tiebreak(self.train_history_)
        return self

    def _score_history(self, history: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        return (capped(history) @ self.similarity_).toarray() + self.tiebreak_


class CoOccurrence(RecencyWeighted):
    """Items bought in the same basket ("customers who bought this also bought").

    With :math:`B` the baskets x items 0/1 matrix of the training baskets, :math:`C = B^\\top
    B` counts the baskets holding both :math:`i` and :math:`j`, and its diagonal
    :math:`n_i` the baskets holding :math:`i`. Counting baskets rather than users makes
    this the model of *what goes together in one trip*: two items a user buys in different
    weeks do not co-occur.

    With ``window`` :math:`= m > 0` the model is *sequential*: :math:`C_{ji}` counts the
    baskets holding :math:`j` whose user buys :math:`i` in the same basket *or in one of
    the next* :math:`m` *baskets*, :math:`C = B^\\top R` with :math:`R_s` the 0/1 union of
    basket :math:`s` and the user's :math:`m` following baskets. Pairs are directional --
    :math:`j` then :math:`i` -- so a history item votes for what tends to come after it
    (the model of "what comes next" in review-style logs, where every basket holds one
    item and same-basket pairs do not exist). :math:`C_{ji} \\le n_j` still, so
    ``"conditional"`` stays a share: of the baskets with :math:`j`, those followed by
    :math:`i` within the window. ``window=0`` is the same-basket model.

    The item-item weight is, by ``normalize``,

    * ``None``: :math:`w_{ji} = C_{ji}` -- raw counts, dominated by popular items;
    * ``"conditional"``: :math:`w_{ji} = C_{ji} / n_j = \\hat P(i \\mid j)`, the share of
      baskets with :math:`j` that also hold :math:`i` (the *confidence* of the rule
      :math:`j \\Rightarrow i`);
    * ``"cosine"``: :math:`w_{ji} = C_{ji} / \\sqrt{n_i n_j}`, symmetric;
    * ``"lift"``: :math:`w_{ji} = C_{ji}\\,|B| / (n_i n_j) = \\hat P(i \\mid j) / \\hat P(i)`,
      the association-rule lift -- it favours rare items, whose few co-occurrences look
      significant, and ranks poorly unless ``min_count`` is raised;

    with :math:`w_{jj} = 0` and pairs sharing fewer than ``min_count`` baskets dropped.
    A user scores :math:`s_{ui} = \\sum_{j \\in H_u} w_{ji}` over the distinct items
    :math:`H_u` of the history (each weighted by its recency when ``recency`` < 1,
    :class:`~xsell.models.base.RecencyWeighted`); a popularity tie-breaker far below any
    weight orders the ties.

    Parameters
    ----------
    normalize : str or None
        ``None``, ``"conditional"``, ``"cosine"`` or ``"lift"`` (see above).
    min_count : int
        Minimum number of shared baskets for a pair to count.
    window : int
        Also count pairs bought up to this many baskets apart, earlier item first
        (0 = the same basket only).
    recency : float
        Weight of a history purchase per basket further back when scoring, in (0, 1];
        1.0 = every history item counts 1 (the fit is unchanged).

    Attributes
    ----------
    counts_ : scipy.sparse.csr_matrix
        :math:`C` with a zero diagonal (catalogue x catalogue), before ``min_count`` and
        normalisation.
    basket_counts_ : numpy.ndarray
        :math:`n_i`, the training baskets holding each catalogue item.
    weights_ : scipy.sparse.csr_matrix
        :math:`W`, the matrix scores are computed with (row = history item).
    """

    #: Values tried by :func:`xsell.tuning.tune` (12 fits of about a second each on the
    #: Instacart sample; ``recency`` changes only scoring). Raw counts (``None``) and
    #: ``min_count=2`` never won on Instacart, so they make room for the window.
    param_grid: dict[str, list] = {"normalize": ["conditional", "cosine"],
                                   "min_count": [1, 3], "window": [0, 1, 3],
                                   "recency": [1.0, 0.7]}

    def __init__(self, normalize: str | None = "conditional", min_count: int = 1,
                 window: int = 0, recency: float = 1.0):
        self.normalize = normalize
        self.min_count = min_count
        self.window = window
        self.recency = recency

    def fit(self, train: Dataset) -> CoOccurrence:
        """Count co-occurrences within the training baskets and normalise them."""
        if self.normalize not in (None, "conditional", "cosine", "lift"):
            raise ValueError("normalize must be None, 'conditional', 'cosine' or 'lift', got "
                             f"{self.normalize!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, (int, np.integer)) \
                or self.window < 0:
            raise ValueError(f"window must be a whole number of baskets, 0 or more (0 = the "
                             f"same basket only), not {self.window!r}")
        self._remember(train)
        inter = train.interactions
        # A basket is a (user, basket_id) pair: basket ids need only be unique per user.
        basket = inter.groupby([S.USER, S.BASKET], sort=False).ngroup().to_numpy()
        item = self.items_.get_indexer(inter[S.ITEM])
        b = _binary(sp.csr_matrix((np.ones(len(basket)), (basket, item)),
                                  shape=(int(basket.max(initial=-1)) + 1, len(self.items_))))
        if self.window == 0:
            c = (b.T @ b).tocsr()
            n = c.diagonal()
        else:
            c = (b.T @ _within_window(b, basket, inter, self.window)).tocsr()
            n = np.asarray(b.sum(axis=0)).ravel()
        # An item does not co-occur with itself (with a window: nor with its own repeat).
        c = (c - sp.diags(c.diagonal())).tocsr()
        c.eliminate_zeros()
        self.counts_, self.basket_counts_ = c, n

        w = c.copy()
        w.data[w.data < self.min_count] = 0.0
        w.eliminate_zeros()
        row = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))  # j, the history item
        col = w.indices  # i, the candidate
        if self.normalize == "conditional":
            w.data /= n[row]
        elif self.normalize == "cosine":
            w.data /= np.sqrt(n[row] * n[col])
        elif self.normalize == "lift":
            w.data *= b.shape[0] / (n[row] * n[col])
        self.weights_ = w
        self.tiebreak_ = popularity_tiebreak(self.train_history_)
        return self

    def _score_history(self, history: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        return (capped(history) @ self.weights_).toarray() + self.tiebreak_


def _within_window(b: sp.csr_matrix, basket: np.ndarray, inter: pd.DataFrame,
                   window: int) -> sp.csr_matrix:
    """Baskets x items 0/1: each basket of ``b`` joined with its user's next ``window``.

    ``basket`` gives every interaction row's basket (a row of ``b``); a user's baskets
    are ordered by ``seq``.
    """
    n_baskets = b.shape[0]
    owner, seq = np.zeros(n_baskets, dtype=np.int64), np.zeros(n_baskets, dtype=np.int64)
    owner[basket] = pd.factorize(inter[S.USER])[0]
    seq[basket] = inter[S.SEQ].to_numpy()
    order = np.lexsort((seq, owner))  # baskets in (user, time) order
    rows, cols = [np.arange(n_baskets)], [np.arange(n_baskets)]
    for d in range(1, window + 1):
        same = np.flatnonzero(owner[order[d:]] == owner[order[:-d]])  # d-th next, same user
        rows.append(order[same])
        cols.append(order[same + d])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    reach = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_baskets, n_baskets))
    return _binary(reach @ b)


def item_neighbors(model: ItemKNN | CoOccurrence, item, n: int = 10) -> pd.Series:
    """The ``n`` strongest neighbours of one item in a fitted neighbourhood model.

    Parameters
    ----------
    model : xsell.models.neighbors.ItemKNN or xsell.models.neighbors.CoOccurrence
        A fitted model.
    item
        An item id.
    n : int
        How many neighbours.

    Returns
    -------
    pandas.Series
        Weights indexed by neighbour item id, strongest first.
    """
    w = model.similarity_ if isinstance(model, ItemKNN) else model.weights_
    row = w[model.dataset_.item_codes([item])[0]]
    order = np.argsort(-row.data, kind="stable")[:n]
    return pd.Series(row.data[order], index=model.items_[row.indices[order]], name="weight")
