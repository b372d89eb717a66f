"""TIFU-KNN against vectors and scores computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xsell.data.dataset import Dataset
from xsell.models.tifu_knn import TIFUKNN, basket_groups, tifu_vectors


def _shop(baskets: dict[str, list[list[str]]]) -> Dataset:
    rows = [(u, i, f"{u}-{t}", t) for u, history in baskets.items()
            for t, basket in enumerate(history) for i in basket]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "basket_id", "seq"])
    ids = sorted({i for h in baskets.values() for b in h for i in b})
    return Dataset.from_frames(inter.drop(columns="seq"), pd.DataFrame({"item_id": ids,
                                                                         "title": ids}))


def test_groups_follow_the_authors_partition():
    # 7 baskets in 3 groups: 2, 2, 3 (the later groups take the remainder).
    group, size, groups = basket_groups(np.full(7, 7), np.arange(7), 3)
    assert group.tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert size.tolist() == [2, 2, 2, 2, 3, 3, 3]
    assert groups.tolist() == [3] * 7
    # Fewer baskets than groups: one group per basket.
    group, size, groups = basket_groups(np.full(2, 2), np.arange(2), 3)
    assert group.tolist() == [0, 1] and size.tolist() == [1, 1] and groups.tolist() == [2, 2]
    # A multiple: equal groups.
    assert basket_groups(np.full(6, 6), np.arange(6), 3)[0].tolist() == [0, 0, 1, 1, 2, 2]


def test_vectors_by_hand():
    shop = _shop({"u": [["A"], ["A", "B"], ["C"], ["A", "C"]], "w": [["A"], ["B"]]})
    v = tifu_vectors(shop.interactions, shop.user_index, shop.item_index, n_groups=3,
                     within_decay=0.5, group_decay=0.5).toarray()
    a, b, c = shop.item_codes(["A", "B", "C"])
    u, w = shop.user_index.get_indexer(["u", "w"])
    # u: 4 baskets weigh 0.5^3, 0.5^2, 0.5, 1; groups {0}, {1}, {2, 3} (the last of two);
    # group weights 0.5^2, 0.5, 1; divided by the 3 groups.
    assert v[u, a] == pytest.approx((0.25 * 0.125 + 0.5 * 0.25 + 1.0 * (1.0 / 2)) / 3)
    assert v[u, b] == pytest.approx(0.5 * 0.25 / 3)
    assert v[u, c] == pytest.approx(1.0 * (0.5 + 1.0) / 2 / 3)
    # w: 2 baskets < 3 groups, one group each; group weights 0.5^(3-1-j), divided by 2.
    assert v[w, a] == pytest.approx(0.5 * 0.25 / 2)
    assert v[w, b] == pytest.approx(1.0 * 0.5 / 2)
    assert v[w, c] == 0.0


def test_an_item_twice_in_a_basket_counts_once():
    shop = _shop({"u": [["A"], ["B"]]})
    inter = pd.concat([shop.interactions, shop.interactions.iloc[[0]]], ignore_index=True)
    once = tifu_vectors(shop.interactions, shop.user_index, shop.item_index).toarray()
    twice = tifu_vectors(inter, shop.user_index, shop.item_index).toarray()
    np.testing.assert_allclose(once, twice)


def test_scores_blend_own_vector_with_nearest_other_users():
    shop = _shop({"u": [["A"], ["A", "B"]], "v": [["A"], ["B"]], "x": [["C"], ["D"]],
                  "y": [["C"], ["C", "D"]]})
    model = TIFUKNN(n_neighbors=1, alpha=0.6, n_groups=2, within_decay=0.9,
                    group_decay=0.7).fit(shop)
    vec = model.train_history_.toarray()
    rows = shop.user_index.get_indexer(["u", "v", "x", "y"])
    dist = ((vec[:, None, :] - vec[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)  # not one's own neighbour
    nearest = dist.argmin(axis=1)
    assert nearest[rows[0]] == rows[1] and nearest[rows[2]] == rows[3]
    expected = 0.6 * vec + 0.4 * vec[nearest] + model.tiebreak_
    np.testing.assert_allclose(model.score(shop.user_index), expected, atol=1e-12)
    # alpha = 1: the user's own vector only (personal item frequency).
    solo = TIFUKNN(alpha=1.0, n_groups=2, within_decay=0.9, group_decay=0.7).fit(shop)
    np.testing.assert_allclose(solo.score(shop.user_index), vec + solo.tiebreak_)
    # k larger than the other users: every other user, equally.
    wide = TIFUKNN(n_neighbors=100, alpha=0.5, n_groups=2, within_decay=0.9,
                   group_decay=0.7).fit(shop)
    others = (vec.sum(axis=0) - vec) / 3
    np.testing.assert_allclose(wide.score(shop.user_index), 0.5 * vec + 0.5 * others
                               + wide.tiebreak_, atol=1e-12)


def test_save_load_and_bad_parameters(tmp_path):
    shop = _shop({"u": [["A"], ["A", "B"]], "v": [["A"], ["B"]], "x": [["C"], ["D"]]})
    model = TIFUKNN(n_neighbors=1, alpha=0.5).fit(shop)
    model.save(tmp_path / "m")
    back = TIFUKNN.load(tmp_path / "m", shop)
    np.testing.assert_allclose(back.score(shop.user_index), model.score(shop.user_index))
    for bad in ({"within_decay": 0.0}, {"group_decay": 1.5}, {"n_groups": 0},
                {"n_neighbors": 2.5}, {"alpha": -0.1}, {"alpha": True}):
        name = next(iter(bad))
        with pytest.raises(ValueError, match=name):
            TIFUKNN(**bad).fit(shop)
