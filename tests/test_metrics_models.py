"""Metrics against an independent implementation; the baseline models' contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

from xsell.data.dataset import Dataset
from xsell.metrics import hit_rate_at_k, ndcg_at_k, precision_at_k, recall_at_k
from xsell.models import BuyAgain, Popularity


def random_case(rng, n_items=30, k=10):
    n_users = 20
    scores = rng.normal(size=(n_users, n_items))
    relevance = (rng.random((n_users, n_items)) < 0.15).astype(float)
    relevance[relevance.sum(1) == 0, 0] = 1.0
    ranked = np.argsort(-scores, axis=1)
    targets = [np.flatnonzero(r) for r in relevance]
    return scores, relevance, ranked, targets


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_sklearn(seed):
    scores, relevance, ranked, targets = random_case(np.random.default_rng(seed))
    for k in (1, 5, 10):
        ours = ndcg_at_k(ranked, targets, k)
        ref = [ndcg_score(relevance[[u]], scores[[u]], k=k) for u in range(len(targets))]
        np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_set_metrics_match_brute_force(seed):
    _, relevance, ranked, targets = random_case(np.random.default_rng(seed))
    k = 7
    hits = np.array([[relevance[u, i] for i in ranked[u, :k]] for u in range(len(targets))])
    np.testing.assert_allclose(recall_at_k(ranked, targets, k), hits.sum(1) / relevance.sum(1))
    np.testing.assert_allclose(precision_at_k(ranked, targets, k), hits.sum(1) / k)
    np.testing.assert_allclose(hit_rate_at_k(ranked, targets, k), hits.max(1))


def test_users_without_targets_are_nan():
    ranked = np.array([[1, 2], [3, 4]])
    assert np.isnan(recall_at_k(ranked, [[], [3]], 2)[0])


@pytest.fixture
def tiny() -> Dataset:
    inter = pd.DataFrame({"user_id": [1, 1, 1, 1, 2, 2, 3], "item_id": [10, 11, 10, 12, 12, 12, 13],
                          "basket_id": [1, 1, 2, 3, 4, 5, 6]})
    items = pd.DataFrame({"item_id": [10, 11, 12, 13, 14], "title": list("abcde")})
    return Dataset.from_frames(inter, items)


def test_popularity(tiny):
    model = Popularity().fit(tiny)
    assert model.recommend([1, 99], k=2).tolist() == [[12, 10], [12, 10]]
    assert model.recommend([1], k=2, exclude_seen=True).tolist() == [[13, 14]]
    assert model.recommend([1], k=1, candidates=[13, 14]).tolist() == [[13]]
    assert model.score([2], items=[12, 14]).tolist() == [[3.0, 0.0]]


def test_buy_again_frequency_recency_and_ties(tiny):
    assert BuyAgain().fit(tiny).recommend([1], k=3).tolist() == [[10, 12, 11]]
    # With a short half-life the most recent purchase (item 12, last basket) wins.
    assert BuyAgain(half_life=0.5).fit(tiny).recommend([1], k=1).tolist() == [[12]]
    # An unknown user falls back to popularity.
    assert BuyAgain().fit(tiny).recommend(["nobody"], k=1).tolist() == [[12]]


def test_recommend_batches_agree(tiny):
    model = Popularity().fit(tiny)
    full = model.recommend([1, 2, 3], k=3, exclude_seen=True)
    model.batch_size = 1
    assert (model.recommend([1, 2, 3], k=3, exclude_seen=True) == full).all()


def test_history_argument_scores_new_users(tiny):
    import pandas as pd

    model = BuyAgain().fit(tiny)
    history = pd.DataFrame({"user_id": [99, 99, 1], "item_id": [14, 14, 13], "seq": [0, 1, 0]})
    recs = model.recommend([99, 1], k=1, history=history)
    assert recs.tolist() == [[14], [13]]  # user 1 is read from the given history only
    excluded = model.recommend([99], k=1, history=history, exclude_seen=True)
    assert excluded.tolist() == [[12]]
