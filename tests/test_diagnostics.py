"""xsell.diagnostics against direct per-user computations on a small shop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xsell import diagnostics as D
from xsell.data.prepare import prepare
from xsell.data.synthetic import make_synthetic_shop
from xsell.evaluation import next_basket_task
from xsell.models.baselines import BuyAgain, Popularity


@pytest.fixture(scope="module")
def setting():
    split = prepare(make_synthetic_shop(n_users=80, seed=5)).split
    train = split.train_dataset(include_validation=True)
    models = {"popularity": Popularity().fit(train), "buy-again": BuyAgain().fit(train)}
    return split, train, models


def test_recall_by_category_counts_each_target_in_its_users_list(setting):
    split, train, models = setting
    task = next_basket_task(split, "all")
    table = D.recall_by_category(models, task, train, k=10)
    category = train.item_category(0)
    for name, model in models.items():
        ranked = D.rank(model, task, 10)
        found, cats = [], []
        for row, targets in zip(ranked, task.targets, strict=True):
            for item in targets:
                found.append(item in set(row))
                cats.append(category[item])
        expected = pd.Series(found, dtype=float).groupby(np.array(cats)).mean()
        pd.testing.assert_series_equal(table[name].dropna().sort_index(),
                                       expected.sort_index(), check_names=False)
    assert table["targets"].sum() == sum(len(t) for t in task.targets)


def test_metric_curves_never_fall_as_k_grows(setting):
    split, _, models = setting
    curves = D.metric_curves(models, next_basket_task(split, "all"), ks=(1, 5, 10, 20))
    assert list(curves.columns) == list(models) and list(curves.index) == [1, 5, 10, 20]
    assert (curves.diff().dropna() >= 0).all().all()
