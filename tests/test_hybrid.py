"""Hybrids: candidate generation, fusion weights, the three re-rankers, the interface."""

from __future__ import annotations

import numpy as np
import pytest

from xsell.data import clean, leave_last_basket_out
from xsell.data.synthetic import make_synthetic_shop
from xsell.evaluation import next_basket_task, per_user_metrics
from xsell.models.candidates import generate_candidates, grouped_metric
from xsell.models.hybrid import (
    MAX_HOLDOUT_DEPTH,
    MIN_HOLDOUT_BASKETS,
    LearnedReranker,
    RankFusion,
    ScoreFusion,
    WeightedFusion,
)
from xsell.models.registry import model_class
from xsell.models.stacking import fit_weights

CF = {"buy-again": {}, "cooccurrence": {}, "ease": {"l2": 50.0}}


@pytest.fixture(scope="module")
def split():
    data, _ = clean(make_synthetic_shop(n_users=300, seed=5), min_user_baskets=3)
    return leave_last_basket_out(data)


def test_candidates_are_the_union_of_top_n():
    a = np.array([[3.0, 2, 1, 0], [0, 1, 2, 3]])
    b = np.array([[0.0, 0, 1, 5], [9, 0, 0, 0]])
    cand = generate_candidates([a, b], n=1)
    pairs = sorted(zip(cand.row.tolist(), cand.item.tolist(), strict=True))
    assert pairs == [(0, 0), (0, 3), (1, 0), (1, 3)]
    blocked = np.array([True, False, False, False])
    cand = generate_candidates([a, b], n=1, blocked=blocked)
    assert 0 not in cand.item.tolist()
    z = cand.zscores()
    assert np.allclose([z[cand.row == r].mean(axis=0) for r in (0, 1)], 0)


def test_grouped_metric_counts_missing_targets_as_misses():
    row = np.array([0, 0, 0, 1, 1])
    score = np.array([3.0, 2, 1, 1, 2])
    relevant = np.array([False, True, False, True, False])
    # user 0: target at position 1 of 2 targets (one never made it into the candidates)
    assert grouped_metric(row, score, relevant, np.array([2, 1]), "recall", 1) == 0.0
    assert grouped_metric(row, score, relevant, np.array([2, 1]), "recall", 2) == 0.75
    ndcg = grouped_metric(row, score, relevant, np.array([1, 1]), "ndcg", 2)
    assert ndcg == pytest.approx(1 / np.log2(3))


def test_fit_weights_finds_the_informative_column():
    rng = np.random.default_rng(0)
    row = np.repeat(np.arange(50), 20)
    relevant = rng.random(len(row)) < 0.1
    X = np.column_stack([rng.normal(size=len(row)), relevant + rng.normal(0, .3, len(row))])
    w, value = fit_weights(X, row, relevant, np.bincount(row[relevant], minlength=50),
                           "recall", 3)
    assert w[1] > w[0] and w.sum() == pytest.approx(1)
    assert value > grouped_metric(row, X[:, 0], relevant,
                                  np.bincount(row[relevant], minlength=50), "recall", 3)


@pytest.mark.parametrize("cls", [ScoreFusion, RankFusion, LearnedReranker])
def test_hybrids_fit_score_and_recommend(split, cls):
    train = split.train_dataset(include_validation=True)
    model = cls(components=CF, objective="explore", progress=False, cache=False,
                max_iter=20) if cls is LearnedReranker else \
        cls(components=CF, objective="explore", progress=False, cache=False)
    model.fit(train)
    assert 0 < model.candidate_recall_ <= 1
    users = train.user_index[:5]
    top = model.recommend(users, k=10, exclude_seen=True)
    assert top.shape == (5, 10)
    bought = train.interactions[train.interactions["user_id"] == users[0]]["item_id"]
    assert not set(top[0]) & set(bought)  # explore: never a bought item
    if cls is not LearnedReranker:
        assert model.weights_.sum() == pytest.approx(1)
        assert list(model.weights_.index) == [*CF, "new department"]


def test_auto_fusion_keeps_the_better_transform(split):
    train = split.train_dataset(include_validation=True)
    model = WeightedFusion(components=CF, objective="all", progress=False, cache=False).fit(train)
    assert model.transform_ == max(model.holdout_scores_, key=model.holdout_scores_.get)
    assert model.holdout_score_ == max(model.holdout_scores_.values())


def test_hybrid_beats_its_weakest_component_on_validation(split):
    # Fitted on train, scored on the validation basket: the fusion of buy-again and
    # co-occurrence must not lose to co-occurrence alone on the all-items task.
    train = split.train_dataset()
    task = next_basket_task(split, "all", part="validation")
    fused = ScoreFusion(components=CF, objective="all", progress=False, cache=False).fit(train)
    alone = model_class("cooccurrence")().fit(train)
    value = {n: per_user_metrics(m, task, ks=(10,), metrics=("ndcg",))["value"].mean()
             for n, m in {"fused": fused, "alone": alone}.items()}
    assert value["fused"] > value["alone"]


def test_bad_objective_is_refused_and_tiny_data_falls_back_to_equal_weights(split):
    train = split.train_dataset()
    with pytest.raises(ValueError, match="objective"):
        ScoreFusion(components=CF, objective="everything", cache=False).fit(train)
    one_basket = train.with_interactions(
        train.interactions[train.interactions["seq"] == 0].reset_index(drop=True))
    for cls in (ScoreFusion, LearnedReranker):
        with pytest.warns(UserWarning, match="two baskets.*equal weights"):
            model = cls(components=CF, cache=False, progress=False).fit(one_basket)
        assert np.isnan(model.candidate_recall_) and np.isnan(model.holdout_score_)
        top = model.recommend(one_basket.user_index[:5], k=5)
        assert top.shape == (5, 5)
    weights = ScoreFusion(components=CF, cache=False, progress=False)
    with pytest.warns(UserWarning):
        weights.fit(one_basket)
    assert weights.weights_.drop("new department").nunique() == 1
    assert weights.weights_["new department"] == 0.0


def test_a_small_shop_leaves_its_users_two_baskets_to_fit_on():
    from xsell.data.synthetic import make_synthetic_shop

    shop = make_synthetic_shop(n_users=40, seed=5)
    six = shop.interactions[shop.interactions["seq"] < 6]
    six = six[six.groupby("user_id")["seq"].transform("max") == 5]  # 6 baskets each
    data = shop.with_interactions(six.reset_index(drop=True))
    model = WeightedFusion(components=CF, cache=False, progress=False)
    fit_data, held = model._hold_out(data)
    assert model.holdout_depth_ == 4  # 5 would leave one basket each
    assert (fit_data.interactions.groupby("user_id")["seq"].nunique() == 2).all()
    model.fit(data)
    assert np.isfinite(model.holdout_score_)


def test_registry_names_the_hybrids():
    assert model_class("hybrid") is WeightedFusion
    assert model_class("reranker") is LearnedReranker


def test_few_users_hold_out_several_baskets_each(split):
    train = split.train_dataset(include_validation=True)
    inter = train.interactions
    n_baskets = inter.groupby("user_id")["seq"].max() + 1
    users = int((n_baskets >= 2).sum())
    auto = WeightedFusion(components=CF, progress=False, cache=False)
    fit_data, held = auto._hold_out(train)
    expected = min(MAX_HOLDOUT_DEPTH, -(-MIN_HOLDOUT_BASKETS // users))
    assert auto.holdout_depth_ == expected > 1  # 300 users: under 1,000 baskets
    per_user = held.groupby("user_id")["seq"].nunique()
    assert (per_user == np.minimum(expected, n_baskets[per_user.index] - 1)).all()
    assert set(fit_data.interactions["user_id"]) == set(inter["user_id"])  # one stays
    # Nothing held out is in the data the components see.
    kept = fit_data.interactions.groupby("user_id")["seq"].max()
    assert (held["seq"].to_numpy() > kept[held["user_id"]].to_numpy()).all()

    one = WeightedFusion(components=CF, holdout_baskets=1, progress=False, cache=False)
    _, held_one = one._hold_out(train)
    last = inter.groupby("user_id")["seq"].transform("max")
    assert len(held_one) == int(((inter["seq"] == last) & (last >= 1)).sum())
    for bad in (0, 1.5, "many"):
        with pytest.raises(ValueError, match="holdout_baskets"):
            WeightedFusion(components=CF, holdout_baskets=bad, cache=False)._hold_out(train)


def test_each_held_out_basket_is_one_ranking_group(split):
    train = split.train_dataset(include_validation=True)
    model = WeightedFusion(components=CF, objective="all", holdout_baskets=3, progress=False,
                           cache=False)
    fit_data, held = model._hold_out(train)
    users, baskets = model._holdout_targets(held, fit_data)
    n_groups = sum(len(b) for b in baskets.values())
    assert n_groups > len(users)  # several baskets per user
    components = model._fit_components(fit_data)
    from xsell.models.features import PairFeatures

    X, row, relevant, n_targets = model._pairs(components, fit_data, PairFeatures(fit_data),
                                               users, baskets)
    assert len(n_targets) == n_groups and row.max() == n_groups - 1
    assert (np.bincount(row[relevant], minlength=n_groups) <= n_targets).all()


def _sorted_metric(row, score, relevant, n_targets, metric, k):
    """The reference: sort every pair (stable), read each user's top k."""
    order = np.lexsort((-score, row))
    r = row[order]
    position = np.arange(len(r)) - np.searchsorted(r, r)
    hit = relevant[order] & (position < k)
    if metric == "recall":
        per_user = np.bincount(r[hit], minlength=len(n_targets)) / np.maximum(n_targets, 1)
    else:
        gain = np.bincount(r[hit], weights=1.0 / np.log2(position[hit] + 2),
                           minlength=len(n_targets))
        per_user = gain / np.cumsum(1.0 / np.log2(np.arange(k) + 2))[
            np.clip(n_targets, 1, k) - 1]
    return float(per_user[n_targets > 0].mean())


@pytest.mark.parametrize("seed", range(40))
def test_grouped_metric_equals_a_full_stable_sort(seed):
    # Ties (integer scores) and users in any order: positions are a stable sort's.
    rng = np.random.default_rng(seed)
    n_users = int(rng.integers(1, 25))
    row = np.repeat(np.arange(n_users), rng.integers(1, 30, n_users))
    if seed % 2:
        row = rng.permutation(row)
    score = (rng.integers(0, 4, len(row)).astype(float) if seed % 3 else
             rng.normal(size=len(row)))
    relevant = rng.random(len(row)) < 0.25
    relevant[0] = True
    n_targets = np.bincount(row[relevant], minlength=n_users) + rng.integers(0, 2, n_users)
    for metric in ("recall", "ndcg"):
        for k in (1, 3, 10):
            assert grouped_metric(row, score, relevant, n_targets, metric, k) == \
                _sorted_metric(row, score, relevant, n_targets, metric, k)


def test_hybrids_over_the_same_component_fits_generate_candidates_once(split, monkeypatch,
                                                                       tmp_path):
    from xsell.models import hybrid as H
    from xsell.models.fitting import fit_model

    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path))
    train = split.train_dataset()
    users = train.user_index.to_numpy()[:40]
    calls = []
    generate = H.Hybrid._generate

    def counted(self, *args):
        calls.append(type(self).__name__)
        return generate(self, *args)

    settings = {"components": CF, "objective": "explore", "progress": False}
    monkeypatch.setattr(H.Hybrid, "_generate", counted)
    H.CANDIDATE_MEMO.clear()
    memo = {name: fit_model(name, settings, train, cache=True)
            for name in ("hybrid", "reranker")}
    memo_scores = {name: m.score(users) for name, m in memo.items()}
    # The re-ranker found every batch the fusion generated (fit and scoring alike).
    assert "WeightedFusion" in calls and "LearnedReranker" not in calls
    with pytest.raises(ValueError, match="read-only"):
        next(iter(H.CANDIDATE_MEMO._entries.values())).scores[0, 0] = 1.0

    calls.clear()
    for name in memo:  # each from scratch, nothing shared: the same scores
        H.CANDIDATE_MEMO.clear()
        fresh = model_class(name)(**{**settings, "cache": False}).fit(train)
        np.testing.assert_array_equal(fresh.score(users), memo_scores[name])
    assert "LearnedReranker" in calls
