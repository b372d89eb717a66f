"""xsell.metrics against independent implementations and hand-computed cases.

The ranking metrics are cross-checked against ``trec_eval`` (through the
``pytrec_eval-terrier`` bindings) and scikit-learn on random cases. Where a definition
differs from the library's, the comment at the check says how and what is compared.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import pytrec_eval
from sklearn.metrics import (
    mean_absolute_error,
    mean_squared_error,
    ndcg_score,
    root_mean_squared_error,
)
from sklearn.metrics.pairwise import cosine_distances

from xsell import metrics as M

SEEDS = range(6)


# ------------------------------------------------------------------ random cases


def random_case(seed: int, n_users: int = 30, n_items: int = 40, n_ranked: int = 15):
    """Random lists over non-contiguous item ids, with target sets of very varied size.

    Each user has their own relevance rate, so some have 1-2 targets and some more than
    K (which separates the min(K, |T|) and |T| normalisations). Every user has at least
    one target: users without targets are tested separately (trec_eval skips them).
    """
    rng = np.random.default_rng(seed)
    item_ids = rng.choice(np.arange(1000, 9000), n_items, replace=False)
    scores = rng.normal(size=(n_users, n_items))
    rate = rng.uniform(0.02, 0.6, size=(n_users, 1))
    relevance = (rng.random((n_users, n_items)) < rate).astype(float)
    empty = relevance.sum(1) == 0
    relevance[empty, rng.integers(0, n_items, empty.sum())] = 1.0
    order = np.argsort(-scores, axis=1)
    ranked = item_ids[order[:, :n_ranked]]
    targets = [set(item_ids[np.flatnonzero(r)].tolist()) for r in relevance]
    return scores, relevance, ranked, targets


def trec_eval(ranked: np.ndarray, targets, measures: set[str]) -> dict[str, np.ndarray]:
    """Per-user values of trec_eval measures; scores strictly decrease along each list,
    so trec_eval's own ordering (by score) is exactly the order of ``ranked``."""
    qrels = {f"u{u}": {str(i): 1 for i in t} for u, t in enumerate(targets)}
    run = {f"u{u}": {str(i): float(len(row) - r) for r, i in enumerate(row)}
           for u, row in enumerate(ranked)}
    result = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    names = next(iter(result.values())).keys()
    return {m: np.array([result[f"u{u}"][m] for u in range(len(ranked))]) for m in names}


# ------------------------------------------------- ranking metrics vs trec_eval


# K = 20 is longer than the 15 ranked columns: the missing ranks count as misses, as in
# trec_eval (P divides by K, the ideal DCG runs over min(K, |T|)).
@pytest.mark.parametrize("k", [1, 3, 5, 10, 20])
@pytest.mark.parametrize("seed", SEEDS)
def test_ranking_metrics_match_trec_eval(seed, k):
    _, _, ranked, targets = random_case(seed)
    ref = trec_eval(ranked, targets, {f"P.{k}", f"recall.{k}", f"ndcg_cut.{k}",
                                      f"success.{k}", f"map_cut.{k}"})
    np.testing.assert_allclose(M.precision_at_k(ranked, targets, k), ref[f"P_{k}"])
    np.testing.assert_allclose(M.recall_at_k(ranked, targets, k), ref[f"recall_{k}"])
    np.testing.assert_allclose(M.ndcg_at_k(ranked, targets, k), ref[f"ndcg_cut_{k}"])
    np.testing.assert_allclose(M.hit_rate_at_k(ranked, targets, k), ref[f"success_{k}"])
    # trec_eval's map_cut divides the summed precisions by |T|; ours by min(K, |T|).
    # Undo the normalisation to compare the same quantity.
    n = np.array([len(t) for t in targets])
    ap = M.average_precision_at_k(ranked, targets, k)
    np.testing.assert_allclose(ap * np.minimum(n, k) / n, ref[f"map_cut_{k}"])


@pytest.mark.parametrize("k", [1, 3, 5, 10, 20])
@pytest.mark.parametrize("seed", SEEDS)
def test_mrr_matches_trec_eval(seed, k):
    _, _, ranked, targets = random_case(seed)
    # trec_eval's recip_rank has no cut-off: give it the top-K lists only.
    ref = trec_eval(ranked[:, :k], targets, {"recip_rank"})
    np.testing.assert_allclose(M.mrr_at_k(ranked, targets, k), ref["recip_rank"])


@pytest.mark.parametrize("k", [1, 5, 10, 40])
@pytest.mark.parametrize("seed", SEEDS)
def test_ndcg_matches_sklearn(seed, k):
    scores, relevance, _, _ = random_case(seed)
    # sklearn ranks by the scores itself, so give it (and us) the full ranking.
    ranked = np.argsort(-scores, axis=1)
    targets = [np.flatnonzero(r) for r in relevance]
    ref = [ndcg_score(relevance[[u]], scores[[u]], k=k) for u in range(len(targets))]
    np.testing.assert_allclose(M.ndcg_at_k(ranked, targets, k), ref, atol=1e-12)


def brute_force_average_precision(row, target_set, k):
    """AP@K written out rank by rank, with the min(K, |T|) denominator."""
    hits, total = 0, 0.0
    for rank, item in enumerate(row[:k], start=1):
        if item in target_set:
            hits += 1
            total += hits / rank
    return total / min(k, len(target_set))


@pytest.mark.parametrize("k", [1, 4, 10, 15])
@pytest.mark.parametrize("seed", SEEDS)
def test_average_precision_matches_brute_force(seed, k):
    _, _, ranked, targets = random_case(seed)
    ref = [brute_force_average_precision(list(r), t, k) for r, t in zip(ranked, targets, strict=True)]
    np.testing.assert_allclose(M.average_precision_at_k(ranked, targets, k), ref)


def test_ranking_hand_case():
    ranked = np.array([["a", "b", "c", "d"], ["a", "b", "c", "d"]])
    targets = [{"b", "d", "z"}, {"a"}]
    np.testing.assert_allclose(M.mrr_at_k(ranked, targets, 4), [1 / 2, 1])
    np.testing.assert_allclose(M.mrr_at_k(ranked, targets, 1), [0, 1])
    # Hits at ranks 2 and 4: (1/2 + 2/4) / min(4, 3); (1/1) / min(4, 1).
    np.testing.assert_allclose(M.average_precision_at_k(ranked, targets, 4), [1 / 3, 1])
    np.testing.assert_allclose(M.precision_at_k(ranked, targets, 4), [2 / 4, 1 / 4])


def test_users_without_targets_are_nan():
    ranked = np.array([[1, 2, 3], [3, 4, 5], [6, 7, 8]])
    targets = [[], {3}, np.array([], dtype=int)]
    for name, metric in M.RANKING_METRICS.items():
        values = metric(ranked, targets, 2)
        assert np.isnan(values[[0, 2]]).all(), name
        assert np.isfinite(values[1]), name


def test_registry_and_arguments():
    assert {"recall", "precision", "hit_rate", "ndcg", "mrr", "map"} <= set(M.RANKING_METRICS)
    assert M.RANKING_METRICS["map"] is M.average_precision_at_k
    ranked = np.array([[1, 2]])
    with pytest.raises(ValueError, match="positive"):
        M.recall_at_k(ranked, [{1}], 0)
    with pytest.raises(ValueError, match="target sets"):
        M.recall_at_k(ranked, [{1}, {2}], 1)


# --------------------------------------------------------------- rating metrics


@pytest.mark.parametrize("seed", range(3))
def test_rating_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.uniform(1, 5, 50), rng.uniform(1, 5, 50)
    assert M.mae(y, p) == pytest.approx(mean_absolute_error(y, p))
    assert M.mse(y, p) == pytest.approx(mean_squared_error(y, p))
    assert M.rmse(y, p) == pytest.approx(root_mean_squared_error(y, p))
    assert isinstance(M.rmse(list(y), list(p)), float)
    with pytest.raises(ValueError, match="shapes"):
        M.mae(y, p[:-1])


# ------------------------------------------------------------------ cross-category


@pytest.fixture
def shop():
    """Six items in three aisles."""
    return pd.Series(["dairy", "dairy", "bakery", "bakery", "produce", "produce"],
                     index=[10, 11, 20, 21, 30, 31], name="category_l0")


def test_categories_per_user(shop):
    assert M.categories_per_user([[10, 11], [20, 30, 31], []], shop) == [
        {"dairy"}, {"bakery", "produce"}, set()]
    with pytest.raises(KeyError, match="no category"):
        M.categories_per_user([[99]], shop)


def test_cross_category_hit_rate(shop):
    user_categories = [{"dairy"}, {"dairy"}, {"dairy", "bakery"}, {"dairy"}, set()]
    targets = [{11, 20},  # 20 (bakery) is new; 11 (dairy) is not
               {20},      # new, but not recommended
               {10, 21},  # nothing new: nan
               set(),     # no targets: nan
               {10}]      # empty history: everything is new
    ranked = np.array([[11, 20, 30], [10, 30, 31], [10, 21, 30], [10, 11, 20],
                       [10, 11, 20]])
    assert M.new_category_targets(targets, shop, user_categories) == [
        {20}, {20}, set(), set(), {10}]
    np.testing.assert_array_equal(
        M.cross_category_hit_rate_at_k(ranked, targets, 3, shop, user_categories),
        [1, 0, np.nan, np.nan, 1])
    # A hit on an already-bought category (11) does not count at K=1.
    np.testing.assert_array_equal(
        M.cross_category_hit_rate_at_k(ranked, targets, 1, shop, user_categories),
        [0, 0, np.nan, np.nan, 1])


def test_category_coverage_diversity_and_exposure(shop):
    ranked = np.array([[10, 11, 20, 30],    # dairy x2, bakery, produce
                       [10, 11, 10, 11],    # dairy only (repeats just for the count)
                       [20, 30, 21, 31]])   # bakery x2, produce x2
    # Distinct categories / min(K, 3 categories).
    np.testing.assert_allclose(M.category_coverage_at_k(ranked, 4, shop), [1, 1 / 3, 2 / 3])
    np.testing.assert_allclose(M.category_coverage_at_k(ranked, 2, shop), [1 / 2, 1 / 2, 1])
    assert M.catalogue_category_coverage(ranked, 4, shop) == 1.0
    assert M.catalogue_category_coverage(ranked[1:2], 4, shop) == pytest.approx(1 / 3)
    # Pairs from different categories out of 4*3/2 = 6: 5, 0, 4.
    np.testing.assert_allclose(M.intra_list_diversity_at_k(ranked, 4, shop), [5 / 6, 0, 4 / 6])
    assert np.isnan(M.intra_list_diversity_at_k(ranked, 1, shop)).all()
    share = M.exposure_share(ranked, 4, shop)
    assert share.to_dict() == {"dairy": 6 / 12, "bakery": 3 / 12, "produce": 3 / 12}
    assert share.index[0] == "dairy" and share.sum() == pytest.approx(1)
    # Categories never shown are listed with share 0.
    assert M.exposure_share(ranked[1:2], 4, shop).to_dict() == {
        "dairy": 1.0, "bakery": 0.0, "produce": 0.0}
    with pytest.raises(KeyError):
        M.exposure_share(np.array([[10, 99]]), 2, shop)


@pytest.mark.parametrize("seed", range(3))
def test_category_diversity_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    cats = pd.Series(rng.integers(0, 4, 50), index=np.arange(50) * 3)
    ranked = np.array([rng.choice(cats.index, 8, replace=False) for _ in range(20)])
    c = cats.loc[ranked.ravel()].to_numpy().reshape(ranked.shape)
    pairs = [(r, s) for r in range(8) for s in range(r + 1, 8)]
    ref = [np.mean([row[r] != row[s] for r, s in pairs]) for row in c]
    np.testing.assert_allclose(M.intra_list_diversity_at_k(ranked, 8, cats), ref)


# ------------------------------------------------------------------ beyond accuracy


def test_catalogue_coverage():
    ranked = np.array([[1, 2, 3], [1, 4, 5]])
    assert M.catalogue_coverage(ranked, 1, 10) == pytest.approx(0.1)
    assert M.catalogue_coverage(ranked, 3, 10) == pytest.approx(0.5)


def test_gini_known_distributions():
    assert M.gini([3, 3, 3, 3]) == pytest.approx(0)
    assert M.gini([0, 0, 0, 7]) == pytest.approx(3 / 4)
    assert np.isnan(M.gini([0, 0]))
    rng = np.random.default_rng(0)
    x = rng.exponential(size=200)
    # The textbook definition: mean absolute difference over twice the mean.
    ref = np.abs(x[:, None] - x[None, :]).mean() / (2 * x.mean())
    assert M.gini(x) == pytest.approx(ref)


def test_gini_exposure():
    n = 6
    # Everyone gets the same single item: (n-1)/n.
    assert M.gini_exposure(np.full((5, 1), 42), 1, n) == pytest.approx((n - 1) / n)
    # Every catalogue item shown exactly twice: 0.
    equal = np.array([[0, 1, 2], [3, 4, 5], [1, 2, 0], [4, 5, 3]])
    assert M.gini_exposure(equal, 3, n) == pytest.approx(0)
    # Items never recommended count: 3 items shown equally in a catalogue of 6.
    assert M.gini_exposure(equal[:1], 3, n) == pytest.approx(M.gini([1, 1, 1, 0, 0, 0]))
    with pytest.raises(ValueError, match="n_items"):
        M.gini_exposure(equal, 3, 2)


def test_popularity_and_novelty():
    popularity = pd.Series({"a": 6, "b": 1, "c": 1, "d": 0})  # N = 8
    ranked = np.array([["a", "b"], ["d", "e"]])  # d has 0 purchases, e is unknown
    np.testing.assert_allclose(M.average_popularity_at_k(ranked, 2, popularity), [3.5, 0])
    # -log2(6/8) and -log2(1/8) = 3; unseen items are treated as bought once: 3 bits.
    np.testing.assert_allclose(M.novelty_at_k(ranked, 2, popularity),
                               [(-math.log2(6 / 8) + 3) / 2, 3])
    np.testing.assert_allclose(M.novelty_at_k(ranked, 1, popularity),
                               [-math.log2(6 / 8), 3])
    with pytest.raises(ValueError, match="sums to 0"):
        M.novelty_at_k(ranked, 2, popularity * 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_embedding_diversity_matches_sklearn(dtype):
    rng = np.random.default_rng(1)
    item_ids = pd.Index(rng.choice(np.arange(100, 400), 60, replace=False))
    emb = rng.normal(size=(60, 16)).astype(dtype)
    emb[5] = 0  # a zero embedding: similarity 0 to everything
    ranked = np.array([rng.choice(item_ids, 7, replace=False) for _ in range(25)])
    ranked[0, 0] = item_ids[5]
    ours = M.embedding_diversity_at_k(ranked, 7, emb, item_ids)
    ref = []
    for row in ranked:
        d = cosine_distances(emb[item_ids.get_indexer(row)].astype(float))
        ref.append(d[~np.eye(7, dtype=bool)].mean())
    np.testing.assert_allclose(ours, ref, rtol=1e-5 if dtype == np.float32 else 1e-10)
    assert np.isnan(M.embedding_diversity_at_k(ranked, 1, emb, item_ids)).all()


def test_embedding_diversity_hand_case():
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    ids = pd.Index(["x", "x2", "y", "minus_x"])
    ranked = np.array([["x", "x2"], ["x", "y"], ["x", "minus_x"]])
    np.testing.assert_allclose(M.embedding_diversity_at_k(ranked, 2, emb, ids), [0, 1, 2],
                               atol=1e-12)
    with pytest.raises(ValueError, match="do not match"):
        M.embedding_diversity_at_k(ranked, 2, emb[:2], ids)


def test_beyond_accuracy_registry(shop):
    popularity = pd.Series(1, index=shop.index)
    metadata = {"item_category": shop, "item_popularity": popularity}
    ranked = np.array([[10, 20], [30, 31]])
    for name, (metric, needs) in M.BEYOND_ACCURACY_METRICS.items():
        values = metric(ranked, 2, metadata[needs])
        assert values.shape == (2,), name


# ------------------------------------------------------------------ user groups


def test_group_gap_ignores_nan():
    values = np.array([0.2, 0.4, np.nan, 1.0, np.nan, 0.5])
    groups = ["light", "light", "light", "heavy", "heavy", "medium"]
    gap = M.group_gap(values, pd.Series(groups, index=[9, 8, 7, 6, 5, 4]))
    assert gap.mean.to_dict() == pytest.approx({"light": 0.3, "heavy": 1.0, "medium": 0.5})
    assert gap.count.to_dict() == {"light": 2, "heavy": 1, "medium": 1}
    assert gap.gap == pytest.approx(0.7)
    # A group with no defined value keeps its row (nan mean, count 0) and is left out
    # of the gap.
    only_nan = M.group_gap([np.nan, 1.0, 3.0], ["a", "b", "b"])
    assert np.isnan(only_nan.mean["a"]) and only_nan.count["a"] == 0
    assert only_nan.gap == 0.0
    with pytest.raises(ValueError, match="same length"):
        M.group_gap([1.0, 2.0], ["a"])


# ---------------------------------------------------------------------- repeat / explore
def test_repeat_and_explore_parts_of_one_list():
    from xsell.metrics import (
        HISTORY_METRICS,
        explore_recall_at_k,
        repeat_ratio_at_k,
        repeat_recall_at_k,
    )

    ranked = np.array([["a", "x", "b", "y"], ["p", "q", "r", "s"]], dtype=object)
    targets = [["a", "b", "x", "z"], ["q"]]
    seen = [["a", "b", "c"], []]
    # User 0: repeat targets {a, b} both in the top 3; explore targets {x, z}: x only.
    np.testing.assert_allclose(repeat_recall_at_k(ranked, targets, seen, 3), [1.0, np.nan])
    np.testing.assert_allclose(explore_recall_at_k(ranked, targets, seen, 3), [0.5, 1.0])
    np.testing.assert_allclose(explore_recall_at_k(ranked, targets, seen, 1), [0.0, 0.0])
    # Repeat ratio: a, b of the top 4 are the user's items; user 1 has none.
    np.testing.assert_allclose(repeat_ratio_at_k(ranked, targets, seen, 4), [0.5, 0.0])
    np.testing.assert_allclose(repeat_ratio_at_k(ranked, targets, seen, 1), [1.0, 0.0])
    # Together the parts add up to the overall recall, weighted by their target counts.
    overall = M.recall_at_k(ranked, targets, 3)[0]
    assert overall == pytest.approx((2 * 1.0 + 2 * 0.5) / 4)
    assert set(HISTORY_METRICS) == {"repeat_recall", "explore_recall", "repeat_ratio"}
    with pytest.raises(ValueError, match="histories"):
        repeat_recall_at_k(ranked, targets, seen[:1], 3)


# ------------------------------------------------------------- vectorised membership
@pytest.mark.parametrize("seed", SEEDS)
def test_membership_of_all_users_at_once_equals_a_per_user_set_lookup(seed):
    """hit_matrix, the repeat / explore target split and the repeat ratio answer with one
    vectorised search; each must equal the plain per-user set lookup, whatever the ids'
    types (numpy ints against Python ints, strings), empty collections, duplicates and
    missing ids (a nan in a list matches nothing)."""
    rng = np.random.default_rng(seed)
    n_users, width = 25, 8
    pool = [*range(30), *(f"s{i}" for i in range(10))]
    ranked = np.empty((n_users, width), dtype=object)
    for u in range(n_users):
        ranked[u] = rng.choice(np.array(pool, dtype=object), width, replace=False)
    ranked[0, -1] = np.nan
    targets, seen = [], []
    for _ in range(n_users):
        t = list(rng.choice(np.array(pool, dtype=object), rng.integers(0, 6)))
        targets.append([np.int64(i) if isinstance(i, int) else i for i in t] + t[:1])
        seen.append(set(rng.choice(np.array(pool, dtype=object), rng.integers(0, 8))))
    targets[1] = []
    seen[2] = set()
    targets[3] = [np.nan, 5]
    for k in (1, 4, width):
        expected = np.array([[r in set(t) for r in row[:k]] for row, t in
                             zip(ranked, targets, strict=True)])
        np.testing.assert_array_equal(M.hit_matrix(ranked, targets, k), expected)
        ratio = np.array([sum(r in s for r in row[:k]) / k for row, s in
                          zip(ranked, seen, strict=True)])
        np.testing.assert_allclose(M.repeat_ratio_at_k(ranked, targets, seen, k), ratio)
    repeat, explore = M._split_targets(targets, seen)
    for t, s, rep, exp in zip(targets, seen, repeat, explore, strict=True):
        unique = set(t)
        assert sorted(map(str, rep)) == sorted(str(i) for i in unique if i in s)
        assert sorted(map(str, exp)) == sorted(str(i) for i in unique if i not in s)
    assert M._split_targets([], []) == ([], [])
    ints = np.arange(12).reshape(3, 4)  # an integer matrix against lists of Python ints
    np.testing.assert_array_equal(M.hit_matrix(ints, [[1, 3], [], [8, 11, 99]], 4),
                                  [[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 1]])


def test_targets_found_is_recall_per_target():
    ranked = np.array([[5, 1, 7], [2, 9, 4]])
    targets = [[7, 8, 5], [4, 4]]
    np.testing.assert_array_equal(M.targets_found(ranked, targets, 3),
                                  [True, False, True, True, True])
    np.testing.assert_array_equal(M.targets_found(ranked, targets, 2),
                                  [False, False, True, False, False])
    with pytest.raises(ValueError, match="target sets"):
        M.targets_found(ranked, targets[:1], 2)
