"""Personalised product search: retrieve by text, re-rank by what the shopper buys.

A query is answered in two stages.

1. **Retrieval** (:mod:`xsell.apps.retrieval`): BM25 and MiniLM cosine similarity score
   every catalogue product; the candidates are the union of BM25's top
   :data:`LEXICAL_POOL` (products matching a word of the query) and the dense top
   :data:`DENSE_POOL`.
2. **Ranking**: a weighted sum of signals standardised over the query's candidates --
   the text scores and a popularity prior (what a shop without personalisation has), and
   the shopper's own signals: how often they bought the product (buy-again), how much of
   their shopping falls in its department and in its leaf category, the LM two-tower's
   score and item-to-item co-occurrence with their purchases ("people who buy your usuals
   buy this").

The weights are learnt as the hybrids learn theirs (:mod:`xsell.models.hybrid`):
``fit(train)`` holds out each shopper's last training basket, fits the signal models on
the rest, turns the held-out purchases into queries (:mod:`xsell.apps.search_protocol`),
chooses the weights there, then refits the signal models on all of ``train``. Fitted on
train + validation of a leave-last-basket-out split, the weights are learnt on the
validation basket and the test basket is never seen.

Two jobs are weighed equally: finding the product a shopper buys again (the usual
yogurt) and finding one they buy for the first time. The personalised weights maximise
the harmonic mean of the two relative gains over the best non-personal ranking -- NDCG@10
of all bought products, and of the first-time ones -- so a ranking that only repeats a
shopper's purchases, or only ignores them, scores low. Repeat purchases enter as
log(1 + decayed count), and *discovery* features (the two-tower score and popularity,
standardised over the products the shopper has not bought) order the new products
without moving the usual ones. The non-personal
systems' weights maximise NDCG@10 on the same queries.

Each :data:`SYSTEMS` entry is one ranking: ``"bm25"`` and ``"dense"`` alone (over the
whole catalogue), ``"fusion"`` of the two, ``"fusion-popularity"`` (the strongest
non-personal ranking) and ``"personalized"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from xsell.apps.retrieval import DenseIndex, LexicalIndex, search_text
from xsell.apps.search_protocol import QUERY_KINDS, RANK_DEPTH, build_queries, query_table
from xsell.checkpoint import Saveable
from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.models.base import check_count, top_k
from xsell.models.candidates import GroupedRanking, standardise
from xsell.models.fitting import fit_model
from xsell.models.stacking import coordinate_search, hold_out_last_baskets
from xsell.text import TextEncoder, item_texts

#: The rankings a fitted :class:`ProductSearch` offers.
SYSTEMS = ("bm25", "dense", "fusion", "fusion-popularity", "personalized")
#: The retrieval scores (signals of the ranking stage too).
TEXT_SIGNALS = ("bm25", "dense")
#: The shopper's share of purchases in the item's top and leaf category.
FAMILIARITY_SIGNALS = ("department", "category")
#: The non-personal signals each fused system weighs (``"personalized"`` weighs all).
SYSTEM_SIGNALS = {"fusion": TEXT_SIGNALS, "fusion-popularity": (*TEXT_SIGNALS, "popularity")}
#: Behaviour models whose scores are signals, by registered name with their
#: hyperparameters; ``buy-again`` is required.
SIGNAL_MODELS = {"buy-again": {}, "two-tower": {}, "cooccurrence": {}}
#: Signals that also enter as *discovery* features, standardised over the candidates the
#: shopper has not bought, 0 for those they have (``"new:two-tower"``).
DISCOVERY_SIGNALS = ("two-tower", "popularity")
#: Queries ranked at once (a dense queries x catalogue block per retrieval score).
BATCH_QUERIES = 256
#: Candidates per query from BM25, every product whose text matches a word of the query up
#: to this many (an Instacart aisle holds up to 1,258 products, tied on the aisle's name).
LEXICAL_POOL = 1500
#: Candidates per query from the dense retriever, the nearest in meaning.
DENSE_POOL = 300


def harmonic_mean(a: float, b: float) -> float:
    """Harmonic mean of two non-negative values (0 when either is 0)."""
    return 2 * a * b / (a + b) if a > 0 and b > 0 else 0.0


def _ranked(scores: np.ndarray, pool: np.ndarray | None, depth: int) -> np.ndarray:
    """Each row's top ``depth`` columns, best first; from a row's precomputed top-``n``
    ``pool`` when it is deep enough (the same list, without a second pass over the
    catalogue)."""
    depth = min(depth, scores.shape[1])
    if pool is None or pool.shape[1] < depth:
        return top_k(scores, depth)
    order = np.argsort(-np.take_along_axis(scores, pool, axis=1), axis=1, kind="stable")
    return np.take_along_axis(pool, order, axis=1)[:, :depth]


@dataclass
class _Candidates:
    """Candidates of a batch of queries, flat and grouped by query (like the hybrids')."""

    row: np.ndarray       # the pair's query within the batch
    item: np.ndarray      # catalogue code
    X: np.ndarray         # raw signal values, columns in ``signals_`` order
    bought: np.ndarray    # whether the query's shopper has bought the item
    bm25: np.ndarray      # the BM25 score of every catalogue item, query x item
    pools: tuple          # each retriever's top (lexical_pool, dense_pool) per query


def signal_models_for(split) -> dict[str, dict]:
    """:data:`SIGNAL_MODELS` with the hyperparameters recorded for this data's ``all``
    variant (:func:`xsell.tuning.recorded_hyperparameters`), so the search shares its
    fits with the book's other models; the defaults where no record exists."""
    from xsell.tuning import recorded_hyperparameters

    recorded = recorded_hyperparameters(split, list(SIGNAL_MODELS)) or {}
    return {name: dict(recorded.get(name, {}).get("all", params))
            for name, params in SIGNAL_MODELS.items()}


class ProductSearch(Saveable):
    """Product search over a catalogue, personalised by each shopper's purchases.

    A fitted search saves to a verified folder (:class:`xsell.checkpoint.Saveable`): the
    weights, the behaviour models and the products' text vectors; the BM25 index and the
    shoppers' counts are rebuilt from the data on load, so a
    loaded search ranks as the fitted one without encoding the catalogue again.

    Parameters
    ----------
    lexical_pool, dense_pool : int
        Candidates taken from the top of BM25 (products matching no query word are never
        taken) and of the dense retriever; their union is re-ranked.
    signal_models : dict, optional
        ``{registered model name: hyperparameters}`` of the behaviour signals (default
        :data:`SIGNAL_MODELS`).
    query_kinds : sequence of str
        Kinds of held-out query the weights are learnt on
        (:data:`xsell.apps.search_protocol.QUERY_KINDS`).
    max_queries : int
        Held-out queries the weights are learnt on (a seeded sample when there are more).
    encoder : str
        Sentence encoder of queries and products (:class:`xsell.text.TextEncoder`).
    dense_index : str
        The nearest-neighbour index of the dense retriever
        (:class:`~xsell.apps.retrieval.DenseIndex`): ``"auto"`` is exact up to 100,000
        products, ``"hnsw"`` an approximate graph.
    seed : int
        Seed of the held-out title queries and of the query sample.
    cache : bool
        Store the learnt weights in the on-disk cache (:mod:`xsell.cache`), keyed by the
        data and these parameters; the behaviour signals are cached as fitted models.
    progress : bool
        Show progress bars.

    Attributes
    ----------
    weights_ : dict
        ``{system: {signal: weight}}`` of the fused systems.
    validation_ : dict
        ``{system: {query kind: {"all": .., "new": ..}}}``: NDCG@10 of each fused system
        on the held-out queries the weights were learnt on, over all bought products and
        over first-time ones; ``validation_["queries"]`` counts them.
    features_ : tuple of str
        The ranking features: the signals, then the discovery features (``"new:..."``).
    models_ : dict
        ``{name: fitted model}`` of the behaviour signals.
    """

    # Rebuilt from the data (and the saved text vectors) on load.
    _derived_state = frozenset({"dataset_", "items_", "text_encoder_", "lexical_", "dense_",
                                "users_", "popularity_"})

    def __init__(self, lexical_pool: int = LEXICAL_POOL, dense_pool: int = DENSE_POOL,
                 signal_models: dict | None = None, query_kinds: Sequence[str] = QUERY_KINDS,
                 max_queries: int = 6000,
                 encoder: str = "sentence-transformers/all-MiniLM-L6-v2",
                 dense_index: str = "auto", seed: int = 0, cache: bool = True,
                 progress: bool = True):
        self.lexical_pool = lexical_pool
        self.dense_pool = dense_pool
        self.signal_models = signal_models
        self.query_kinds = query_kinds
        self.max_queries = max_queries
        self.encoder = encoder
        self.dense_index = dense_index
        self.seed = seed
        self.cache = cache
        self.progress = progress

    # ------------------------------------------------------------------ fitting
    def fit(self, train: Dataset) -> ProductSearch:
        """Index the catalogue, learn the ranking weights on held-out queries, fit the
        behaviour signals on all of ``train``."""
        check_count(self.lexical_pool, "lexical_pool")
        check_count(self.dense_pool, "dense_pool")
        check_count(self.max_queries, "max_queries")
        for kind in self.query_kinds:
            if kind not in QUERY_KINDS:
                raise ValueError(f"query_kinds: {kind!r} is not one of {', '.join(QUERY_KINDS)}")
        self.dataset_ = train
        self._index(train)
        params = self._signal_params()
        if "buy-again" not in params:
            raise ValueError("signal_models must include 'buy-again' (what the shopper has "
                             f"bought decides the discovery features); got {sorted(params)}")
        self.signals_ = (*TEXT_SIGNALS, "popularity", *FAMILIARITY_SIGNALS, *params)
        self.discovery_ = tuple(s for s in DISCOVERY_SIGNALS if s in self.signals_)
        self.features_ = (*self.signals_, *(f"new:{s}" for s in self.discovery_))

        def learn() -> dict:
            rest, heldout = hold_out_last_baskets(train, depth=1)
            self._use(rest)
            return self._learn(self._heldout_queries(train, rest, heldout))

        if self.cache:
            from xsell.cache import memoize
            from xsell.checkpoint import data_fingerprint

            key = {"data": data_fingerprint(train), "params": self._key_params()}
            learnt = memoize("product_search", key, learn)
        else:
            learnt = learn()
        self.weights_, self.validation_ = learnt["weights"], learnt["validation"]
        self._use(train)
        return self

    def _index(self, data: Dataset, vectors: np.ndarray | None = None) -> None:
        """The catalogue's text indexes (``vectors``: its saved text vectors, else encoded)."""
        self.items_ = data.item_index
        self.text_encoder_ = TextEncoder(self.encoder, progress=self.progress)
        self.lexical_ = LexicalIndex(search_text(data).tolist())
        if vectors is None:
            vectors = self.text_encoder_.encode(item_texts(data).tolist())
        self.dense_ = DenseIndex(vectors, kind=self.dense_index)
        self._fitted_items = len(self.items_)  # rows after these were added since the fit
        self._added_text = np.zeros((0, self.dense_.vectors.shape[1]), dtype=np.float32)
        self._levels, self._level_names = self._category_levels(data)
        self._catalogue = data.items.set_index(S.ITEM).reindex(self.items_).assign(
            department=data.item_category(0).to_numpy())  # what explanations show

    def _fitted_state(self) -> dict:
        return {**super()._fitted_state(), "item_vectors_": self.dense_.vectors}

    def _restore_state(self, state: dict, dataset: Dataset) -> None:
        state = dict(state)
        vectors = state.pop("item_vectors_")
        super()._restore_state(state, dataset)
        self._index(dataset, vectors)
        self._use(dataset, self.models_)

    def share_index(self, path, kind: str | None = None) -> None:
        """Rebuild the dense retriever's index through :func:`xsell.index.shared_index`:
        above 100,000 products (or with a faiss ``kind``; default ``dense_index``) it is
        built once into ``path`` and memory-mapped, so the server processes of one
        machine share it. Call it before adding products."""
        self.dense_ = DenseIndex(self.dense_.vectors, kind=kind or self.dense_index,
                                 index_file=path)

    def add_items(self, items: pd.DataFrame, vectors: np.ndarray) -> None:
        """Make products new since the fit searchable at once.

        Their text joins the BM25 index (scored with the index's statistics as built) and
        their vectors the dense index; they rank by the same weights, with popularity 0,
        the shopper's familiarity with their department and category, and the two-tower's
        score of their text. Buy-again and co-occurrence know products by id, so they score
        them 0 until the next fit.

        Parameters
        ----------
        items : pandas.DataFrame
            Rows in the catalogue's format: ``item_id`` (ids new to the catalogue, in its
            id type), ``title``, and where known ``category`` (levels joined by ``" > "``),
            ``brand``, ``description``.
        vectors : numpy.ndarray
            ``(len(items), dim)`` their text embeddings by this search's encoder, of
            :func:`xsell.text.item_texts` ``(dataset_, items)``.

        Raises
        ------
        ValueError
            If an id is in the catalogue already, or the vectors do not match (named).
        """
        ids = pd.Index(items[S.ITEM])
        taken = ids[self.items_.get_indexer(ids) >= 0]
        if len(taken) or not ids.is_unique:
            raise ValueError(f"item ids already in the catalogue (or repeated): "
                             f"{list(taken[:5]) or list(ids[ids.duplicated()][:5])}")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self._added_text.shape[1]):
            raise ValueError(f"vectors have shape {vectors.shape}; expected "
                             f"{(len(ids), self._added_text.shape[1])}")
        self.lexical_.add(search_text(self.dataset_, items).tolist())
        self.dense_.add(vectors)
        self._added_text = np.vstack([self._added_text, vectors])
        self.items_ = self.items_.append(ids)
        self.popularity_ = np.append(self.popularity_, np.zeros(len(ids)))
        self._counts.resize((self._counts.shape[0], len(self.items_)))  # bought by no one
        paths = (items[S.CATEGORY] if S.CATEGORY in items
                 else pd.Series(None, index=items.index)).fillna("(none)").astype(str)
        parts = paths.str.split(S.CATEGORY_SEP, regex=False)
        for name, depth in self._category_depths(self.dataset_).items():
            names = parts.map(lambda p, d=depth: S.CATEGORY_SEP.join(p[:d + 1]))
            self._levels[name] = np.append(self._levels[name],
                                           self._level_names[name].get_indexer(names))
        rows = items.set_index(S.ITEM).reindex(columns=self._catalogue.columns)
        rows["department"] = parts.str[0].to_numpy()
        self._catalogue = pd.concat([self._catalogue, rows])

    def _key_params(self) -> dict:
        return {"lexical_pool": self.lexical_pool, "dense_pool": self.dense_pool,
                "signal_models": self._signal_params(), "query_kinds": list(self.query_kinds),
                "max_queries": self.max_queries, "encoder": self.encoder,
                "dense_index": self.dense_index, "seed": self.seed}

    def _heldout_queries(self, train: Dataset, rest: Dataset,
                         heldout: pd.DataFrame) -> pd.DataFrame:
        """The held-out purchases as queries of every kind, a seeded sample of at most
        ``max_queries`` (renumbered 0..n-1)."""
        queries = pd.concat([build_queries(heldout, train, rest.interactions, kind=kind,
                                           seed=self.seed).assign(kind=kind)
                             for kind in self.query_kinds], ignore_index=True)
        queries["query_id"] = queries.groupby(["kind", "query_id"], sort=True).ngroup()
        n = int(queries["query_id"].max()) + 1 if len(queries) else 0
        if n > self.max_queries:
            keep = np.random.default_rng(self.seed).choice(n, self.max_queries, replace=False)
            queries = queries[queries["query_id"].isin(keep)].copy()
            queries["query_id"] = queries.groupby("query_id", sort=True).ngroup()
        return queries

    def _use(self, data: Dataset, models: dict | None = None) -> None:
        """Fit (or fetch from the cache) the behaviour signals on ``data`` -- or use
        ``models``, already fitted on it -- and count each shopper's purchases."""
        if models is None:
            models = {name: fit_model(name, p, data, cache=True)
                      for name, p in self._signal_params().items()}
        self.models_ = models
        inter = data.interactions
        self.users_ = data.user_index
        self._user_rows = self.users_.get_indexer(inter[S.USER])
        item_rows = self.items_.get_indexer(inter[S.ITEM])
        self.popularity_ = np.log1p(np.bincount(
            item_rows[~pd.DataFrame({"u": self._user_rows, "i": item_rows}).duplicated()],
            minlength=len(self.items_)))
        self._counts = sp.csr_matrix(
            (np.ones(len(item_rows)), (self._user_rows, item_rows)),
            shape=(len(self.users_), len(self.items_)))
        self._share = {}
        for level, codes in self._levels.items():
            # the last column stays 0: code -1, a category new since the fit
            counts = np.zeros((len(self.users_), codes.max() + 2))
            np.add.at(counts, (self._user_rows, codes[item_rows]), 1.0)
            self._share[level] = counts / counts.sum(1, keepdims=True).clip(min=1)

    def _signal_params(self) -> dict[str, dict]:
        return dict(SIGNAL_MODELS if self.signal_models is None else self.signal_models)

    @staticmethod
    def _category_depths(data: Dataset) -> dict[str, int]:
        return {"department": 0, "category": max(data.n_category_levels - 1, 0)}

    def _category_levels(self, data: Dataset) -> tuple[dict, dict]:
        """Category code of every item -- top level ("department") and leaf ("category")
        -- and the category names the codes number."""
        codes, names = {}, {}
        for name, level in self._category_depths(data).items():
            codes[name], names[name] = pd.factorize(data.item_category(level).to_numpy())
        return codes, {name: pd.Index(values) for name, values in names.items()}

    def _learn(self, queries: pd.DataFrame) -> dict:
        """Weights of every fused system, chosen on held-out ``queries``.

        Each kind of query counts equally (title fragments outnumber category names). The
        non-personal systems maximise NDCG@10 of the bought products; the personalised
        one maximises the harmonic mean of its two relative gains over
        ``fusion-popularity`` -- on all bought products, and on those bought for the first
        time -- so that neither finding the usual products nor finding new ones is traded
        away for the other. Its search starts twice, from equal weights and from the
        non-personal optimum, and keeps the better (the search is local).
        """
        table = query_table(queries)
        self.text_encoder_.encode(table["query"].unique().tolist())  # once, not per batch
        F, row, item = [], [], []
        for start in tqdm(range(0, len(table), BATCH_QUERIES), desc="search: held-out queries",
                          unit="batch", disable=not self.progress):
            part = table.iloc[start:start + BATCH_QUERIES]
            cand = self._candidates(part["query"].tolist(), part[S.USER].to_numpy())
            F.append(self._features(cand, len(part)))
            row.append(cand.row + start)
            item.append(cand.item)
        F, row, item = np.vstack(F), np.concatenate(row), np.concatenate(item)
        pairs = pd.MultiIndex.from_arrays([row, item])
        codes = self.items_.get_indexer(queries[S.ITEM])
        qid = queries["query_id"].to_numpy()
        new = queries["new"].to_numpy(dtype=bool)
        relevant = pairs.isin(pd.MultiIndex.from_arrays([qid, codes]))
        relevant_new = pairs.isin(pd.MultiIndex.from_arrays([qid[new], codes[new]]))
        kind_of = queries.groupby("query_id", sort=True)["kind"].first().to_numpy()
        # One ranking of every target; each kind and variant counts a subset of them.
        ranking = GroupedRanking(row, relevant)
        target_kind = kind_of[ranking.target_user]
        target_new = relevant_new[ranking.targets]
        subsets = {}
        for kind in dict.fromkeys(kind_of):
            mine = kind_of == kind
            subsets[kind] = tuple(
                (subset, np.where(mine, np.bincount(qid[sel], minlength=len(table)), 0))
                for subset, sel in ((target_kind == kind, slice(None)),
                                    ((target_kind == kind) & target_new, new)))

        def measure(score: np.ndarray) -> dict:
            position = ranking.positions(score)
            out = {}
            for kind, ((on_all, n_all), (on_new, n_new)) in subsets.items():
                out[kind] = {"all": ranking.metric_at(position, n_all, "ndcg", 10, on_all),
                             "new": ranking.metric_at(position, n_new, "ndcg", 10, on_new)
                             if n_new.any() else 0.0}
            return out

        weights, validation = {}, {}
        systems = {**SYSTEM_SIGNALS, "personalized": self.features_}
        for system, signals in tqdm(systems.items(), desc="search: weights", unit="system",
                                    disable=not self.progress):
            cols = [self.features_.index(s) for s in signals]
            if system == "personalized":
                base = validation["fusion-popularity"]

                def objective(score, base=base):
                    return float(np.mean([harmonic_mean(m["all"] / max(base[k]["all"], 1e-12),
                                                        m["new"] / max(base[k]["new"], 1e-12))
                                          for k, m in measure(score).items()]))
            else:
                def objective(score):
                    return float(np.mean([m["all"] for m in measure(score).values()]))
            w, best = coordinate_search(F[:, cols], objective)
            if system == "personalized":  # also from the non-personal optimum: keep the best
                start = np.array([weights["fusion-popularity"].get(s, 0.0) for s in signals])
                w2, best2 = coordinate_search(F[:, cols], objective,
                                              start=start * np.count_nonzero(start))
                if best2 > best:
                    w = w2
            weights[system] = dict(zip(signals, w.round(4).tolist(), strict=True))
            validation[system] = {k: {m: round(v, 4) for m, v in both.items()}
                                  for k, both in measure(F[:, cols] @ w).items()}
        validation["queries"] = {
            "queries": len(table), "by_kind": pd.Series(kind_of).value_counts().to_dict(),
            "with_new_targets": int((np.bincount(qid[new], minlength=len(table)) > 0).sum()),
            "candidate_recall": round(float(relevant.sum() / len(codes)), 4)}
        return {"weights": weights, "validation": validation}

    # ------------------------------------------------------------------ candidates
    def _features(self, cand: _Candidates, n_rows: int) -> np.ndarray:
        """The ranking features of each pair, in ``features_`` order.

        Every signal is standardised over the query's candidates, except buy-again, which
        enters as log(1 + its decayed purchase count): a product bought once, long ago,
        gets a small lift and a weekly staple a large one, where a standardised count
        would lift every bought product above every other. The discovery features order
        the products the shopper has not bought, without moving those they have.
        """
        z = standardise(cand.X, cand.row, n_rows)
        buy_again = self.signals_.index("buy-again")
        z[:, buy_again] = np.log1p(np.clip(cand.X[:, buy_again], 0, None))
        cols = [self.signals_.index(s) for s in self.discovery_]
        new = standardise(cand.X[:, cols], cand.row, n_rows, mask=~cand.bought)
        return np.hstack([z, new])

    def _tokens(self, text: str) -> list[str]:
        return self.lexical_.normalizer.query_tokens(text)

    def _retrieve(self, texts: Sequence[str], store: bool = True,
                  dense_depth: int = 0) -> tuple[np.ndarray, np.ndarray, tuple]:
        """The first stage of each query: BM25 scores of every catalogue item, the query
        vectors, and the pools -- each query's top ``lexical_pool`` BM25 columns and its
        nearest ``max(dense_pool, dense_depth)`` items from the dense index, best first
        (``store``: keep new query vectors in the on-disk embedding cache)."""
        n = len(self.items_)
        bm25 = np.vstack([self.lexical_.scores(self._tokens(t)) for t in texts])
        queries = self.text_encoder_.encode(list(texts), store=store)
        _, semantic = self.dense_.search(queries, min(max(self.dense_pool, dense_depth), n))
        return bm25, queries, (top_k(bm25, min(self.lexical_pool, n), sort=False), semantic)

    def _candidates(self, texts: Sequence[str], users: np.ndarray, store: bool = True,
                    dense_depth: int = 0) -> _Candidates:
        bm25, queries, pools = self._retrieve(texts, store, dense_depth)
        lexical, semantic = pools[0], pools[1][:, :self.dense_pool]
        matched = np.take_along_axis(bm25, lexical, axis=1) > 0  # a word of the query occurs
        rows = np.arange(len(texts))[:, None]
        n = len(self.items_)
        # The union of both pools per query, sorted by (query, item): one pair code each.
        pairs = np.unique(np.concatenate([
            (np.broadcast_to(rows, lexical.shape) * n + lexical)[matched],
            (np.broadcast_to(rows, semantic.shape) * n + semantic)[semantic >= 0]]))
        row, item = pairs // n, pairs % n
        X = np.zeros((len(row), len(self.signals_)))
        X[:, 0] = bm25[row, item]
        X[:, 1] = self.dense_.pair_scores(queries, row, item)
        X[:, 2] = self.popularity_[item]
        X[:, 3:] = self._personal(users, row, item)
        codes = self.users_.get_indexer(np.asarray(users, dtype=object))
        bought = np.zeros(len(row), dtype=bool)
        known = codes[row] >= 0
        if known.any():
            bought[known] = np.asarray(self._counts[codes[row[known]], item[known]]).ravel() > 0
        return _Candidates(row, item, X, bought, bm25, pools)

    def _personal(self, users: np.ndarray, row: np.ndarray, item: np.ndarray) -> np.ndarray:
        """The shopper's signals for each (query, item) pair; 0 for unknown shoppers."""
        out = np.zeros((len(row), len(FAMILIARITY_SIGNALS) + len(self.models_)))
        codes = self.users_.get_indexer(np.asarray(users, dtype=object))
        known = codes[row] >= 0
        if not known.any():
            return out
        for j, level in enumerate(FAMILIARITY_SIGNALS):
            out[known, j] = self._share[level][codes[row[known]], self._levels[level][item[known]]]
        present = np.unique(codes[codes >= 0])
        local = np.searchsorted(present, codes[row[known]])
        ids = self.users_[present].to_numpy()
        # Products added since the fit: the models know them only by text, if at all.
        fitted = known & (item < self._fitted_items)
        added = known & ~fitted
        local_fitted = local[fitted[known]]
        # A few queries touch a sliver of the catalogue: score just those products.
        few, column = np.unique(item[fitted], return_inverse=True)
        items = self.items_[few] if len(few) < self._fitted_items // 4 else None
        for j, model in enumerate(self.models_.values(), start=len(FAMILIARITY_SIGNALS)):
            if items is None:
                out[fitted, j] = model.score(ids)[local_fitted, item[fitted]]
            else:
                out[fitted, j] = model.score(ids, items=items)[local_fitted, column]
            if added.any() and hasattr(model, "score_text_items"):
                text = self._added_text[item[added] - self._fitted_items]
                scores = model.score_text_items(ids, text)
                out[added, j] = scores[local[added[known]],
                                       np.arange(int(added.sum()))]
        return out

    # ------------------------------------------------------------------ ranking
    def rank(self, texts: Sequence[str], users: Sequence | None = None,
             system: str = "personalized", depth: int = RANK_DEPTH,
             store: bool = True) -> list[np.ndarray]:
        """Ranked item ids of each query (``users[i]`` issued ``texts[i]``; ``None`` or an
        id the training data lacks is served without personalisation).

        ``store``: keep the queries' vectors in the on-disk embedding cache (an
        evaluation's fixed queries are worth keeping; a shopper's one-off query is not).
        """
        return self.rank_systems(texts, users, (system,), depth, store)[system]

    def rank_systems(self, texts: Sequence[str], users: Sequence | None = None,
                     systems: Sequence[str] = SYSTEMS, depth: int = RANK_DEPTH,
                     store: bool = True) -> dict[str, list[np.ndarray]]:
        """:meth:`rank` for several systems at once (the candidates are found once)."""
        for system in systems:
            if system not in SYSTEMS:
                raise ValueError(f"system must be one of {', '.join(SYSTEMS)}, not {system!r}")
        users = np.full(len(texts), None, dtype=object) if users is None else np.asarray(
            users, dtype=object)
        if len(users) != len(texts):
            raise ValueError(f"{len(texts)} queries but {len(users)} users")
        if store and len(texts) > 1:  # all new query vectors in one cache shard
            self.text_encoder_.encode(list(dict.fromkeys(map(str, texts))))
        ids = self.items_.to_numpy()
        out: dict[str, list[np.ndarray]] = {s: [] for s in systems}
        fused = [s for s in systems if s not in TEXT_SIGNALS]
        for start in tqdm(range(0, len(texts), BATCH_QUERIES), desc="search: rank",
                          unit="batch", disable=not self.progress or len(texts) <= BATCH_QUERIES):
            part = [str(t) for t in texts[start:start + BATCH_QUERIES]]
            who = users[start:start + BATCH_QUERIES]
            dense_depth = depth if "dense" in systems else 0
            if fused:
                cand = self._candidates(part, who, store, dense_depth)
                z = self._features(cand, len(part))
                bm25, (lexical, semantic) = cand.bm25, cand.pools
            else:
                bm25, _, (lexical, semantic) = self._retrieve(part, store, dense_depth)
            for system in systems:
                if system == "bm25":
                    out[system].extend(ids[_ranked(bm25, lexical, depth)])
                    continue
                if system == "dense":  # the index's answer, best first
                    out[system].extend(ids[r[r >= 0][:depth]] for r in semantic)
                    continue
                score = self._combined(z, cand.row, system, who)
                order = np.lexsort((-score, cand.row))  # by query, best first, ties by code
                row, item = cand.row[order], cand.item[order]
                bounds = np.searchsorted(row, np.arange(len(part) + 1))
                out[system].extend(ids[item[bounds[i]:bounds[i + 1]][:depth]]
                                   for i in range(len(part)))
        return out

    def _combined(self, z: np.ndarray, row: np.ndarray, system: str,
                  users: np.ndarray) -> np.ndarray:
        score = z @ self._weights_for(system)
        if system == "personalized":  # a shopper with no history: the non-personal ranking
            unknown = self.users_.get_indexer(users) < 0
            if unknown.any():
                fallback = z @ self._weights_for("fusion-popularity")
                score = np.where(unknown[row], fallback, score)
        return score

    def _weights_for(self, system: str) -> np.ndarray:
        w = np.zeros(len(self.features_))
        for signal, value in self.weights_[system].items():
            w[self.features_.index(signal)] = value
        return w

    # ------------------------------------------------------------------ one shopper
    def search(self, query: str, user=None, k: int = 10,
               system: str = "personalized") -> pd.DataFrame:
        """The top ``k`` products for ``query``, explained.

        A ``user`` the training data does not hold raises ``KeyError`` naming it; with
        ``user=None`` (or a shopper with no purchases) the ranking is the non-personal
        ``"fusion-popularity"`` one, and ``attrs["note"]`` says so.

        Returns
        -------
        pandas.DataFrame
            Rank-ordered: ``item_id``, ``title``, ``department``, ``price`` (where the
            catalogue has prices) and ``why``.
        """
        check_count(k)
        tokens = self._tokens(query)  # raises EmptyQueryError before any work
        note = None
        if user is not None and self.users_.get_indexer([user])[0] < 0:
            raise KeyError(f"unknown user {user!r}: not in the data the search was fitted on")
        if user is None and system == "personalized":
            note = "no purchase history: the ranking is not personalised (text and popularity)"
        ids = self.rank([query], [user], system=system, depth=k, store=False)[0]
        return self._explain(ids, tokens, user, note)

    def _explain(self, ids: np.ndarray, tokens: list[str], user, note) -> pd.DataFrame:
        codes = self.items_.get_indexer(ids)
        items = self._catalogue.iloc[codes]
        out = pd.DataFrame({S.ITEM: ids, "title": items[S.TITLE].to_numpy(),
                            "department": items["department"].to_numpy()})
        if S.PRICE in items:
            out["price"] = items[S.PRICE].to_numpy()
        counts = np.zeros(len(ids))
        related = np.zeros(len(ids), dtype=bool)
        if user is not None:
            row = self.users_.get_indexer([user])[0]
            counts = self._counts[row].toarray().ravel()[codes]
            if "cooccurrence" in self.models_:
                co = self.models_["cooccurrence"].score([user])[0]
                co = np.pad(co, (0, len(self.items_) - len(co)))  # products added since
                positive = co[co > 0]
                # "related": among the top tenth of the products co-bought with their usuals
                if positive.size:
                    related = co[codes] >= max(np.quantile(positive, 0.9), 1e-12)
        why = []
        for code, n, rel in zip(codes, counts, related, strict=True):
            reasons = []
            matched = self.lexical_.matched(tokens, code)
            reasons.append(f"text match: {', '.join(matched)}" if matched
                           else "similar meaning")
            if n:
                reasons.append(f"you buy this ({int(n)}x)")
            elif rel:
                reasons.append("people who buy your usuals buy this")
            why.append("; ".join(reasons))
        out["why"] = why
        out.attrs["note"] = note
        return out




# ---------------------------------------------------------------------- the protocol, run
@dataclass
class SearchEvaluation:
    """The search protocol on one dataset: per-query metrics, their summary, the fit.

    Attributes
    ----------
    summary : pandas.DataFrame
        :func:`~xsell.apps.search_protocol.summarise_search` rows with a ``kind`` column.
    per_query : dict
        ``{(kind, system): per-query metrics}``.
    engine : ProductSearch
        The fitted search (train + validation baskets).
    queries : dict
        ``{kind: the test queries}``.
    seconds : dict
        Time of the fit and of ranking each kind's queries.
    """

    summary: pd.DataFrame
    per_query: dict
    engine: ProductSearch
    queries: dict
    seconds: dict

    def table(self, metric: str = "ndcg@10") -> pd.DataFrame:
        """``value [ci_low, ci_high]`` of one metric: systems x (kind, variant)."""
        rows = self.summary[self.summary["metric"] == metric]
        cells = rows.assign(cell=[f"{v:.4f} [{lo:.4f}, {hi:.4f}]" for v, lo, hi in zip(
            rows["value"], rows["ci_low"], rows["ci_high"], strict=True)])
        return cells.pivot_table(index="system", columns=["kind", "variant"], values="cell",
                                 aggfunc="first", sort=False)

    def gains(self, metric: str = "ndcg@10") -> pd.DataFrame:
        """Personalised search over the best non-personal system, per kind and variant:
        ``personalized``, ``best_peer`` (its name), ``peer`` (its value) and ``ratio``."""
        rows = self.summary[self.summary["metric"] == metric]
        out = []
        for (kind, variant), part in rows.groupby(["kind", "variant"], sort=False):
            values = part.set_index("system")["value"]
            peers = values.drop("personalized")
            best = peers.idxmax()
            out.append({"kind": kind, "variant": variant,
                        "personalized": values["personalized"], "best_peer": best,
                        "peer": peers[best], "ratio": values["personalized"] / peers[best]})
        return pd.DataFrame(out)


def evaluate_search(split, kinds: Sequence[str] | None = None, n_boot: int = 1000,
                    seed: int = 0, engine: ProductSearch | None = None,
                    max_queries: dict[str, int] | None = None, cache: bool = True,
                    progress: bool = True) -> SearchEvaluation:
    """Fit :class:`ProductSearch` on train + validation and score the test queries.

    Parameters
    ----------
    split : Split
        A leave-last-basket-out split (:func:`xsell.data.prepare.prepare`).
    kinds : sequence of str, optional
        Query kinds (default: category and title; title only for a catalogue without
        categories).
    n_boot : int
        Bootstrap resamples of the confidence intervals (over shoppers).
    engine : ProductSearch, optional
        An unfitted search to use (default: :func:`signal_models_for` the split).
    max_queries : dict, optional
        ``{kind: n}``: score a seeded sample of at most ``n`` test queries of that kind
        (all queries of the kinds not named).
    cache : bool
        Keep the scored queries in the on-disk cache (:mod:`xsell.cache`), keyed by the
        data, the search's parameters and these arguments: a chapter executed twice ranks
        its queries once. ``seconds`` then holds the first run's times.
    """
    import time

    has_categories = split.dataset.n_category_levels > 0
    kinds = tuple(kinds or (QUERY_KINDS if has_categories else ("title",)))
    engine = engine or ProductSearch(signal_models=signal_models_for(split),
                                     query_kinds=kinds, seed=seed, progress=progress)
    train = split.train_dataset(include_validation=True)
    t = time.perf_counter()
    engine.fit(train)
    fit_seconds = time.perf_counter() - t

    def score() -> dict:
        return _score_test_queries(engine, split, kinds, n_boot, seed, max_queries)

    if cache:
        from xsell.cache import memoize
        from xsell.checkpoint import data_fingerprint

        key = {"data": data_fingerprint(train), "split": split.name,
               "engine": engine._key_params(), "kinds": list(kinds), "n_boot": n_boot,
               "seed": seed, "max_queries": max_queries}
        scored = memoize("search_evaluation", key, score)
    else:
        scored = score()
    per_query = {tuple(name.split("|")): table for name, table in scored["per_query"].items()}
    return SearchEvaluation(scored["summary"], per_query, engine, scored["queries"],
                            {"fit": fit_seconds, **scored["seconds"]})


def _score_test_queries(engine: ProductSearch, split, kinds, n_boot: int, seed: int,
                        max_queries: dict[str, int] | None) -> dict:
    """Rank every test query with every system; metrics per query and their summary."""
    import time

    from xsell.apps.search_protocol import per_query_metrics, search_queries, summarise_search

    per_query, summaries, queries, seconds = {}, [], {}, {}
    for kind in kinds:
        q = search_queries(split, "test", kind=kind, seed=seed)
        cap = (max_queries or {}).get(kind)
        if cap is not None and q["query_id"].nunique() > cap:
            keep = np.random.default_rng(seed).choice(q["query_id"].nunique(), cap,
                                                      replace=False)
            q = q[q["query_id"].isin(keep)].copy()
            q["query_id"] = q.groupby("query_id", sort=True).ngroup()
        queries[kind] = q.reset_index(drop=True)
        table = query_table(q)
        t = time.perf_counter()
        ranked = engine.rank_systems(table["query"].tolist(), table[S.USER].tolist())
        seconds[f"rank {kind}"] = time.perf_counter() - t
        metrics = {s: per_query_metrics(ranked[s], q) for s in SYSTEMS}
        per_query.update({f"{kind}|{s}": m for s, m in metrics.items()})
        summaries.append(summarise_search(metrics, n_boot=n_boot, seed=seed).assign(kind=kind))
    return {"summary": pd.concat(summaries, ignore_index=True), "per_query": per_query,
            "queries": queries, "seconds": seconds}
