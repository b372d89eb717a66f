"""The baseline models' contract (the metrics are tested in test_metrics.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from xsell.data.dataset import Dataset
from xsell.models import BuyAgain, Popularity


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
    model.score_batch_size = 1
    assert (model.recommend([1, 2, 3], k=3, exclude_seen=True) == full).all()


def test_history_argument_scores_new_users(tiny):
    import pandas as pd

    model = BuyAgain().fit(tiny)
    history = pd.DataFrame({"user_id": [99, 99, 1], "item_id": [14, 14, 13], "seq": [0, 1, 0]})
    recs = model.recommend([99, 1], k=1, history=history)
    assert recs.tolist() == [[14], [13]]  # user 1 is read from the given history only
    excluded = model.recommend([99], k=1, history=history, exclude_seen=True)
    assert excluded.tolist() == [[12]]


def test_id_models_rank_unseen_items_last(tiny):
    # Item 14 has no training interaction: popularity cannot know anything about it.
    model = Popularity().fit(tiny)
    assert model.recommend([1], k=5).tolist()[0][-1] == 14
    assert model.recommend([1], k=4, candidates=[14, 13]).tolist()[0][:2] == [13, 14]
