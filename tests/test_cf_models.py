"""Collaborative-filtering models: the Recommender contract, and answers known by construction."""

from __future__ import annotations

import inspect
import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics.pairwise import cosine_similarity

from xsell.data.dataset import Dataset
from xsell.models import ALS, BPR, EASE, TIFUKNN, CoOccurrence, ItemKNN
from xsell.models.base import interaction_matrix
from xsell.models.ease import spd_inverse
from xsell.models.factorization import fold_in
from xsell.models.neighbors import item_neighbors, keep_top_k_per_row, weigh_documents
from xsell.models.sasrec import SASRec

# ALS and BPR wrap the `implicit` library, a required dependency: without it these tests
# must fail, not skip.
needs_implicit = pytest.mark.filterwarnings("default")

FACTORIES = {
    "itemknn": lambda: ItemKNN(k_neighbors=20),
    "itemknn-tfidf": lambda: ItemKNN(k_neighbors=20, shrink=5.0, weighting="tfidf"),
    "cooccurrence": lambda: CoOccurrence(),
    "ease": lambda: EASE(l2=1.0, min_item_users=1),
    "als": lambda: ALS(factors=8, regularization=0.1, iterations=10, random_state=0),
    "bpr": lambda: BPR(factors=8, iterations=50, random_state=0),
    "tifu-knn": lambda: TIFUKNN(n_neighbors=5, alpha=0.7),
    "sasrec": lambda: SASRec(max_len=4, dim=32, lr=5e-3, max_epochs=40, patience=40,
                             validation_users=10),
}
NAMES = [pytest.param(n, marks=needs_implicit) if n in ("als", "bpr") else n for n in FACTORIES]
MODEL_CLASSES = [ItemKNN, CoOccurrence, EASE, ALS, BPR, TIFUKNN, SASRec]


def random_shop(n_users=60, n_items=40, n_baskets=4, basket_size=5, seed=0,
                n_catalogue_extra=3) -> Dataset:
    """Random baskets from users with tastes for one of four item blocks."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        block = np.arange(n_items)[u % 4::4]  # each user shops in one quarter of the shop
        for b in range(n_baskets):
            for i in rng.choice(block, size=basket_size, replace=False):
                rows.append((f"u{u}", f"i{i}", f"u{u}-b{b}"))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "basket_id"])
    # A few catalogue items nobody buys, to check they are handled.
    ids = [f"i{i}" for i in range(n_items + n_catalogue_extra)]
    items = pd.DataFrame({"item_id": ids, "title": ids})
    return Dataset.from_frames(inter, items)


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return random_shop()


@pytest.fixture(scope="module")
def fitted(shop):
    fits = {}

    def get(name):  # fit on first use, so a test that skips never needs implicit
        if name not in fits:
            fits[name] = FACTORIES[name]().fit(shop)
        return fits[name]

    return get


# ---------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", NAMES)
def test_score_and_recommend_contract(name, fitted, shop):
    model = fitted(name)
    users = shop.user_index[:7].to_numpy()
    scores = model.score(users)
    assert scores.shape == (7, shop.n_items)
    assert np.isfinite(scores).all()
    some = ["i3", "i0", "i41"]
    np.testing.assert_allclose(model.score(users, items=some),
                               scores[:, shop.item_codes(some)])

    recs = model.recommend(users, k=5)
    assert recs.shape == (7, 5)
    assert set(recs.ravel()) <= set(shop.item_index)
    assert all(len(set(r)) == 5 for r in recs)
    # Best first: the recommended items' scores are non-increasing.
    ranked_scores = np.take_along_axis(scores, np.vstack([shop.item_codes(r) for r in recs]), 1)
    assert (np.diff(ranked_scores, axis=1) <= 1e-9).all()


@pytest.mark.parametrize("name", NAMES)
def test_exclude_seen_candidates_and_batches(name, fitted, shop):
    model = fitted(name)
    users = shop.user_index.to_numpy()
    seen = shop.interactions.groupby("user_id")["item_id"].unique()
    recs = model.recommend(users, k=4, exclude_seen=True)
    for u, r in zip(users, recs, strict=True):
        assert not set(r) & set(seen[u])
    cands = ["i1", "i2", "i5", "i40"]
    recs = model.recommend(users[:5], k=10, candidates=cands)
    assert recs.shape == (5, 4) and all(set(r) == set(cands) for r in recs)
    full = model.recommend(users, k=6, exclude_seen=True)
    model.score_batch_size = 7
    try:
        assert (model.recommend(users, k=6, exclude_seen=True) == full).all()
    finally:
        del model.score_batch_size


@pytest.mark.parametrize("name", NAMES)
def test_unknown_user_gets_popular_items(name, fitted, shop):
    model = fitted(name)
    buyers = shop.interactions.groupby("item_id")["user_id"].nunique()
    recs = model.recommend(["nobody"], k=3)
    # No history: the scores are the popularity tie-breaker alone (distinct buyers).
    assert (buyers[recs[0]].to_numpy() >= buyers.nlargest(3).min()).all()
    assert np.isfinite(model.score(["nobody"])).all()


@pytest.mark.parametrize("name", NAMES)
def test_history_argument(name, fitted, shop):
    model = fitted(name)
    train = shop.interactions
    u = shop.user_index[0]
    own = train[train["user_id"] == u]
    # A training user scored from its own training history via history= (fold-in for
    # factor models) ranks like the stored scores; history-based models agree exactly.
    given = model.score([u], history=own)
    stored = model.score([u])
    if name in ("als", "bpr"):
        assert np.corrcoef(given[0], stored[0])[0, 1] > 0.9
    else:
        np.testing.assert_allclose(given, stored, atol=1e-9)
    # A new user who bought from block 1 gets block-1 items recommended.
    new = pd.DataFrame({"user_id": ["new", "new", "new"], "item_id": ["i1", "i5", "i9"],
                        "seq": [0, 0, 1]})
    recs = model.recommend(["new"], k=3, exclude_seen=True, history=new)
    assert all(int(i[1:]) % 4 == 1 for i in recs[0]), recs


@pytest.mark.parametrize("cls", MODEL_CLASSES)
def test_param_grid_is_small_and_valid(cls):
    grid = cls.param_grid
    params = inspect.signature(cls.__init__).parameters
    assert set(grid) <= set(params)
    assert 2 <= np.prod([len(v) for v in grid.values()])
    # Fits: scoring-only parameters need no refit (Recommender.scoring_params).
    assert set(cls.scoring_params) <= set(params)
    assert np.prod([len(v) for k, v in grid.items() if k not in cls.scoring_params]) <= 12
    # Hyperparameters are stored as given (scikit-learn style).
    for values in itertools.product(*grid.values()):
        model = cls(**dict(zip(grid, values, strict=True)))
        assert all(getattr(model, k) == v for k, v in zip(grid, values, strict=True))


# ---------------------------------------------------------------------- item-kNN
def test_itemknn_similarity_is_cosine(shop):
    model = ItemKNN(k_neighbors=10_000).fit(shop)
    x = interaction_matrix(shop.interactions, shop.user_index, shop.item_index)
    ref = cosine_similarity((x > 0).astype(float).T)
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(model.similarity_.toarray(), ref, atol=1e-12)
    # Shrinkage divides by (|x_i||x_j| + beta).
    shrunk = ItemKNN(k_neighbors=10_000, shrink=3.0).fit(shop).similarity_.toarray()
    xb = (x > 0).astype(float).toarray()
    dots, norms = xb.T @ xb, np.linalg.norm(xb, axis=0)
    expected = dots / (np.outer(norms, norms) + 3.0)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(shrunk, expected, atol=1e-12)


def test_itemknn_scores_sum_neighbour_similarities(shop):
    model = ItemKNN(k_neighbors=5).fit(shop)
    sim = model.similarity_.toarray()
    assert ((sim > 0).sum(axis=1) <= 5).all()
    u = shop.user_index[3]
    seen = shop.item_codes(shop.interactions.query("user_id == @u")["item_id"].unique())
    np.testing.assert_allclose(model.score([u])[0] - model.tiebreak_, sim[seen].sum(axis=0))


def test_keep_top_k_per_row():
    rng = np.random.default_rng(1)
    dense = rng.random((30, 25)) * (rng.random((30, 25)) < 0.5)
    kept = keep_top_k_per_row(sp.csr_matrix(dense), 4).toarray()
    for row, out in zip(dense, kept, strict=True):
        nz = np.sort(row[row > 0])[::-1]
        assert np.array_equal(np.sort(out[out > 0])[::-1], nz[:4])


def test_weigh_documents_tfidf_and_bm25():
    counts = sp.csr_matrix(np.array([[2.0, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]]))
    n_docs, df = 3, np.array([2, 1, 2])
    idf = np.log(n_docs) - np.log1p(df)
    tfidf = weigh_documents(counts, "tfidf").toarray()
    np.testing.assert_allclose(tfidf, np.sqrt(counts.toarray()) * idf)
    lengths = counts.toarray().sum(1)
    norm = 0.2 + 0.8 * lengths / lengths[:3].mean()
    r = counts.toarray()
    expected = np.where(r > 0, r * 101 / (100 * norm[:, None] + r) * idf, 0.0)
    np.testing.assert_allclose(weigh_documents(counts, "bm25").toarray(), expected)
    # A new row weighted against a reference uses the reference's statistics.
    new = sp.csr_matrix(np.array([[1.0, 1, 0]]))
    np.testing.assert_allclose(weigh_documents(new, "tfidf", reference=counts).toarray(),
                               [[idf[0], idf[1], 0.0]])
    assert weigh_documents(counts, "binary").toarray().tolist() == (r > 0).tolist()
    with pytest.raises(ValueError, match="weighting"):
        weigh_documents(counts, "idf")


# ---------------------------------------------------------------------- co-occurrence
@pytest.fixture
def basket_shop() -> Dataset:
    # a+b always share a basket; c and d are bought by the same users but never together.
    inter = pd.DataFrame({
        "user_id": [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4],
        "item_id": ["a", "b", "c", "d", "a", "b", "c", "d", "a", "b", "e"],
        "basket_id": [1, 1, 2, 3, 4, 4, 5, 6, 7, 7, 8],
    })
    items = pd.DataFrame({"item_id": list("abcdef"), "title": list("abcdef")})
    return Dataset.from_frames(inter, items)


def test_cooccurrence_counts_baskets_not_users(basket_shop):
    model = CoOccurrence(normalize=None).fit(basket_shop)
    c = pd.DataFrame(model.counts_.toarray(), index=list("abcdef"), columns=list("abcdef"))
    assert c.loc["a", "b"] == 3 and c.loc["b", "a"] == 3
    assert c.loc["c", "d"] == 0  # same users, different baskets
    assert np.diag(c).sum() == 0
    assert model.basket_counts_.tolist() == [3, 3, 2, 2, 1, 0]
    # ItemKNN, which compares buyers, does see c and d as twins.
    knn = ItemKNN().fit(basket_shop)
    assert knn.similarity_[2, 3] == pytest.approx(1.0)


def test_cooccurrence_normalisations(basket_shop):
    n = np.array([3, 3, 2, 2, 1, 0.0])
    counts = CoOccurrence(normalize=None).fit(basket_shop).counts_.toarray()
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = {
            "conditional": counts / n[:, None],
            "cosine": counts / np.sqrt(np.outer(n, n)),
            "lift": counts * 8 / np.outer(n, n),
        }
    for norm, exp in expected.items():
        got = CoOccurrence(normalize=norm).fit(basket_shop).weights_.toarray()
        np.testing.assert_allclose(got, np.nan_to_num(exp), err_msg=norm)
    pruned = CoOccurrence(normalize=None, min_count=3).fit(basket_shop).weights_.toarray()
    assert pruned[0, 1] == 3 and (pruned > 0).sum() == 2
    with pytest.raises(ValueError, match="normalize"):
        CoOccurrence(normalize="pmi").fit(basket_shop)


@pytest.mark.parametrize("make", [ItemKNN, CoOccurrence, lambda: EASE(l2=0.5, min_item_users=1)])
def test_items_bought_together_are_recommended_together(basket_shop, make):
    model = make().fit(basket_shop)
    history = pd.DataFrame({"user_id": ["x"], "item_id": ["a"]})
    assert model.recommend(["x"], k=1, exclude_seen=True, history=history).tolist() == [["b"]]
    shown = (item_neighbors(model, "a", n=1) if not isinstance(model, EASE) else None)
    if shown is not None:
        assert shown.index.tolist() == ["b"]


# ---------------------------------------------------------------------- EASE
def test_ease_matches_direct_solution(shop):
    lam = 3.0
    model = EASE(l2=lam, min_item_users=1, dtype="float64").fit(shop)
    x = (interaction_matrix(shop.interactions, shop.user_index, shop.item_index) > 0)
    x = x.toarray().astype(float)
    kept = np.flatnonzero(x.sum(0) > 0)
    xk = x[:, kept]
    p = np.linalg.inv(xk.T @ xk + lam * np.eye(len(kept)))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    assert model.model_items_.tolist() == kept.tolist()
    np.testing.assert_allclose(model.weights_, b, atol=1e-10)
    users = shop.user_index[:5]
    np.testing.assert_allclose(model.score(users)[:, kept] - model.tiebreak_[kept],
                               xk[:5] @ b, atol=1e-9)
    # float32 (the default) agrees to single precision.
    b32 = EASE(l2=lam, min_item_users=1).fit(shop).weights_
    np.testing.assert_allclose(b32, b, atol=1e-5)


def test_ease_min_item_users_restricts_the_model(shop):
    x = interaction_matrix(shop.interactions, shop.user_index, shop.item_index)
    buyers = np.asarray((x > 0).sum(axis=0)).ravel()
    threshold = int(np.median(buyers[buyers > 0])) + 1
    model = EASE(min_item_users=threshold).fit(shop)
    assert model.model_items_.tolist() == np.flatnonzero(buyers >= threshold).tolist()
    outside = np.setdiff1d(np.arange(shop.n_items), model.model_items_)
    scores = model.score(shop.user_index[:4])
    np.testing.assert_allclose(scores[:, outside], np.tile(model.tiebreak_[outside], (4, 1)))


def test_spd_inverse():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 20))
    g = a.T @ a + np.eye(20)
    np.testing.assert_allclose(spd_inverse(g.copy()), np.linalg.inv(g), atol=1e-10)
    with pytest.raises(np.linalg.LinAlgError):
        spd_inverse(-np.eye(3))


# ---------------------------------------------------------------------- factor models
def test_fold_in_solves_the_weighted_ridge():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(12, 3))
    conf = sp.csr_matrix(np.array([[0, 3.0, 0, 1.5] + [0] * 8, [0] * 12]))
    got = fold_in(y, conf, 0.7)
    c = np.ones(12)
    c[[1, 3]] = [3.0, 1.5]
    p = np.zeros(12)
    p[[1, 3]] = 1.0
    expected = np.linalg.solve(y.T @ (c[:, None] * y) + 0.7 * np.eye(3), y.T @ (c * p))
    np.testing.assert_allclose(got[0], expected)
    assert not got[1].any()  # empty history -> zero vector


@needs_implicit
@pytest.mark.parametrize("weighting", ["bm25", "count"])
def test_als_fold_in_reproduces_learned_factors(shop, weighting):
    model = ALS(factors=6, regularization=1.0, iterations=30, weighting=weighting,
                random_state=0).fit(shop)
    users = shop.user_index.to_numpy()
    rows = np.arange(len(users))
    folded = model._user_factors(model.train_history_, np.full(len(users), -1))
    learned = model.user_factors_[rows]
    # The last ALS sweep solved the users against the previous item factors, so the
    # fold-in (against the final ones) is close but not identical.
    rel = np.linalg.norm(folded - learned) / np.linalg.norm(learned)
    assert rel < 0.1
    # ... and implicit's own exact user step agrees with ours.
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        ref = AlternatingLeastSquares(factors=6, regularization=1.0, alpha=1.0)
    ref.item_factors = model.item_factors_.astype(np.float32)
    ref.user_factors = model.user_factors_.astype(np.float32)
    conf = model._confidence(model.train_history_).astype(np.float32)
    np.testing.assert_allclose(ref.recalculate_user(rows, conf), folded, rtol=1e-3, atol=1e-4)


@needs_implicit
def test_bpr_fold_in_ranks_like_learned_factors(fitted, shop):
    model = fitted("bpr")
    users = shop.user_index.to_numpy()
    learned = model.score(users)
    folded = model.score(users, history=shop.interactions)
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(learned, folded, strict=True)]
    assert np.median(corr) > 0.9


@needs_implicit
@pytest.mark.parametrize("make", [
    lambda seed: ALS(factors=6, iterations=5, random_state=seed),
    lambda seed: BPR(factors=6, iterations=20, random_state=seed),
])
def test_factor_models_are_deterministic(shop, make):
    a, b, c = make(3).fit(shop), make(3).fit(shop), make(4).fit(shop)
    assert np.array_equal(a.item_factors_, b.item_factors_)
    assert np.array_equal(a.user_factors_, b.user_factors_)
    assert not np.array_equal(a.item_factors_, c.item_factors_)


@needs_implicit
def test_factor_models_recover_blocks(shop):
    # Users shop in one of four item blocks; scores put the user's own block first.
    for model in (ALS(factors=8, regularization=0.1, random_state=0).fit(shop),
                  BPR(factors=8, iterations=100, random_state=0).fit(shop)):
        recs = model.recommend(shop.user_index.to_numpy(), k=5)
        blocks = np.vectorize(lambda i: int(i[1:]) % 4)(recs)
        own = np.array([int(u[1:]) % 4 for u in shop.user_index])
        assert (blocks == own[:, None]).mean() > 0.95, type(model).__name__


@needs_implicit
def test_no_blas_oversubscription_warning(shop, monkeypatch):
    import implicit.utils

    # implicit checks the BLAS threads once per process; make it check again.
    monkeypatch.setattr(implicit.utils, "_checked_blas_config", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ALS(factors=4, iterations=2).fit(shop)
        BPR(factors=4, iterations=2).fit(shop)
