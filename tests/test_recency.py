"""Recency-weighted scoring (``recency``) of the history models (issue 11, part 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xsell.data.dataset import Dataset
from xsell.models.base import basket_age
from xsell.models.ease import EASE
from xsell.models.factorization import ALS, BPR
from xsell.models.neighbors import CoOccurrence, ItemKNN, _binary

RECENCY_MODELS = {"ease": lambda **p: EASE(min_item_users=1, **p), "itemknn": ItemKNN,
                  "cooccurrence": CoOccurrence,
                  "als": lambda **p: ALS(factors=4, iterations=2, num_threads=1, **p),
                  "bpr": lambda **p: BPR(factors=4, iterations=2, **p)}


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    # u bought a, then b. a's neighbour c is closer than b's neighbour d (cosine 0.82 vs
    # 0.71), so without decay c comes first; with recency 0.5, a (one basket back)
    # weighs half and b's d wins.
    rows = [("u", "a", 0), ("u", "b", 1), ("v1", "a", 0), ("v1", "c", 0), ("v2", "a", 0),
            ("v2", "c", 1), ("w1", "b", 0), ("w1", "d", 1)]
    items = pd.DataFrame({"item_id": list("abcd"), "title": list("ABCD")})
    return Dataset.from_frames(pd.DataFrame(rows, columns=["user_id", "item_id", "seq"]),
                               items)


def test_basket_age():
    rows = pd.DataFrame({"user_id": ["x", "x", "x", "y"], "seq": [0, 2, 2, 5]})
    assert basket_age(rows).tolist() == [2, 0, 0, 0]
    assert basket_age(rows.drop(columns="seq")).tolist() == [0, 0, 0, 0]


def test_recency_reorders_a_known_example(tiny):
    plain, decayed = ItemKNN().fit(tiny), ItemKNN(recency=0.5).fit(tiny)
    assert plain.recommend(["u"], k=2, exclude_seen=True).tolist() == [["c", "d"]]
    assert decayed.recommend(["u"], k=2, exclude_seen=True).tolist() == [["d", "c"]]
    s_plain, s_decayed = plain.score(["u"], ["c", "d"])[0], decayed.score(["u"], ["c", "d"])[0]
    assert s_decayed[0] == pytest.approx(0.5 * s_plain[0], rel=1e-4)  # a weighs 1/2
    assert s_decayed[1] == pytest.approx(s_plain[1], rel=1e-4)         # b weighs 1
    # The same weights for a history given at scoring time (ages within that history).
    history = pd.DataFrame({"user_id": ["new", "new"], "item_id": ["a", "b"], "seq": [3, 4]})
    assert decayed.recommend(["new"], k=2, exclude_seen=True,
                             history=history).tolist() == [["d", "c"]]
    # The fit does not depend on recency; the training history stays plain counts.
    assert (plain.similarity_ != decayed.similarity_).nnz == 0
    assert (plain.train_history_ != decayed.train_history_).nnz == 0


@pytest.mark.parametrize("name", list(RECENCY_MODELS))
def test_recency_one_is_todays_scoring(name, tiny):
    make = RECENCY_MODELS[name]
    omitted, one = make().fit(tiny), make(recency=1.0).fit(tiny)
    history = pd.DataFrame({"user_id": ["new"] * 4, "item_id": ["a", "c", "b", "a"],
                            "seq": [0, 1, 2, 2]})
    for kwargs in ({}, {"history": history}):
        users = ["new"] if kwargs else list(tiny.user_index)
        assert np.array_equal(omitted.score(users, **kwargs), one.score(users, **kwargs))
        assert not np.array_equal(make(recency=0.5).fit(tiny).score(["new"], history=history),
                                  omitted.score(["new"], history=history))
    assert omitted.scoring_params == ("recency",)


def test_recency_one_matches_the_formulas_without_decay(tiny):
    """Against the scoring written out as it was before the parameter existed."""
    knn, cooc, ease = ItemKNN().fit(tiny), CoOccurrence().fit(tiny), EASE(min_item_users=1).fit(tiny)
    counts = knn.train_history_
    assert np.array_equal(knn.score(tiny.user_index),
                          (_binary(counts) @ knn.similarity_).toarray() + knn.tiebreak_)
    assert np.array_equal(cooc.score(tiny.user_index),
                          (_binary(counts) @ cooc.weights_).toarray() + cooc.tiebreak_)
    x = counts[:, ease.model_items_].astype(bool).astype(ease.weights_.dtype)
    expected = np.tile(ease.tiebreak_, (counts.shape[0], 1))
    expected[:, ease.model_items_] += x @ ease.weights_
    assert np.array_equal(ease.score(tiny.user_index), expected)


def test_decayed_ease_scores_the_weighted_history(tiny):
    ease = EASE(min_item_users=1, recency=0.7).fit(tiny)
    x = np.zeros((1, 4))
    x[0, [0, 1]] = [0.7, 1.0]  # u: a one basket back, b in the latest basket
    expected = ease.tiebreak_ + x[:, ease.model_items_] @ ease.weights_
    assert np.allclose(ease.score(["u"]), expected, rtol=1e-5)


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, True, "0.7", float("nan"), None])
def test_invalid_recency_is_refused(bad, tiny):
    for make in (ItemKNN, CoOccurrence, EASE):
        with pytest.raises(ValueError, match="recency must be a number in"):
            make(recency=bad).fit(tiny)


def test_decayed_model_saves_and_loads(tmp_path, tiny):
    model = ItemKNN(recency=0.5).fit(tiny)
    model.save(tmp_path / "knn")
    loaded = ItemKNN.load(tmp_path / "knn", tiny)
    assert loaded.recency == 0.5
    assert np.array_equal(loaded.score(["u"]), model.score(["u"]))


# ---------------------------------------------------------------------- sequential pairs
@pytest.fixture(scope="module")
def sequence() -> Dataset:
    # One item per basket: x then y then z (user s1), x then y (s2), y then x (s3).
    rows = [("s1", "x", 0), ("s1", "y", 1), ("s1", "z", 2), ("s2", "x", 0), ("s2", "y", 1),
            ("s3", "y", 0), ("s3", "x", 1), ("s3", "x", 2)]
    items = pd.DataFrame({"item_id": list("xyz"), "title": list("XYZ")})
    return Dataset.from_frames(pd.DataFrame(rows, columns=["user_id", "item_id", "seq"]),
                               items)


def _counts(model: CoOccurrence) -> pd.DataFrame:
    ids = model.items_
    return pd.DataFrame(model.counts_.toarray(), index=ids, columns=ids)


def test_window_counts_pairs_across_consecutive_baskets(sequence):
    assert CoOccurrence().fit(sequence).counts_.nnz == 0  # no two items share a basket
    one = _counts(CoOccurrence(window=1).fit(sequence))
    # Row = earlier item, column = later: x->y twice (s1, s2), y->z and y->x once each;
    # s3's x then x again is a repeat, not a pair.
    assert one.loc["x", "y"] == 2 and one.loc["y", "z"] == 1 and one.loc["y", "x"] == 1
    assert one.loc["x", "z"] == 0 and np.all(np.diag(one) == 0)
    two = _counts(CoOccurrence(window=2).fit(sequence))
    assert two.loc["x", "z"] == 1  # two baskets apart
    model = CoOccurrence(window=1, normalize="conditional").fit(sequence)
    assert model.basket_counts_.tolist() == [4, 3, 1]  # baskets holding x, y, z
    assert model.weights_[0, 1] == pytest.approx(2 / 4)  # P(y next | x)
    assert model.recommend(["s2"], k=1, exclude_seen=True).tolist() == [["z"]]


def test_window_zero_is_the_same_basket_model(tiny):
    from xsell.data.synthetic import make_synthetic_shop

    shop = make_synthetic_shop(n_users=40, seed=4)
    for data in (shop, tiny):
        for normalize in (None, "conditional", "cosine", "lift"):
            before = CoOccurrence(normalize=normalize).fit(data)
            after = CoOccurrence(normalize=normalize, window=0).fit(data)
            assert (before.weights_ != after.weights_).nnz == 0
            assert np.array_equal(before.score(data.user_index), after.score(data.user_index))
    assert CoOccurrence(window=3).fit(shop).counts_.nnz > CoOccurrence().fit(shop).counts_.nnz


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2", None])
def test_invalid_window_is_refused(bad, sequence):
    with pytest.raises(ValueError, match="window must be a whole number"):
        CoOccurrence(window=bad).fit(sequence)
