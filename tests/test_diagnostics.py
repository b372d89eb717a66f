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


def test_diagnose_scores_each_model_once_per_task_and_changes_no_number(setting, monkeypatch):
    split, train, models = setting
    hyper = {"popularity": {"all": {}, "explore": {}},
             "buy-again": {"all": {}, "explore": {"half_life": 2.0}}}
    calls = []
    top_lists = BuyAgain.top_lists

    def counted(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return top_lists(self, *args, **kwargs)

    monkeypatch.setattr(BuyAgain, "top_lists", counted)
    diag = D.diagnose(split, hyper)
    monkeypatch.undo()
    assert calls.count("BuyAgain") == 2  # one model per task (two configs, two tasks)
    # The same tables from the models themselves, each function scoring on its own.
    fitted = {"all": {"popularity": Popularity().fit(train), "buy-again": BuyAgain().fit(train)},
              "explore": {"popularity": Popularity().fit(train),
                          "buy-again": BuyAgain(half_life=2.0).fit(train)}}
    tasks = {v: next_basket_task(split, v) for v in ("all", "explore")}
    pd.testing.assert_frame_equal(diag["curves_all"],
                                  D.metric_curves(fitted["all"], tasks["all"]))
    pd.testing.assert_frame_equal(diag["profile"],
                                  D.profile(fitted["explore"], tasks["explore"], train))
    pd.testing.assert_frame_equal(diag["recall_by_department"], D.recall_by_category(
        fitted["explore"], tasks["explore"], train, k=20))
    groups = D.history_groups(train, tasks["all"].users)
    pd.testing.assert_frame_equal(diag["ndcg_by_group"],
                                  D.metric_by_group(fitted["all"], tasks["all"], groups))
    with pytest.raises(ValueError, match="not prepared"):
        D.RankedLists(fitted["all"]["popularity"], tasks["all"], (5,)).recommend(
            tasks["all"].users, 7)


@pytest.mark.parametrize("name", ["popularity", "buy-again", "itemknn", "ease"])
def test_top_lists_equal_recommend_at_each_k(setting, name):
    from xsell.models.registry import model_class

    split, train, _ = setting
    model = model_class(name)().fit(train)
    users = train.user_index[:30]
    candidates = train.item_index[::3]
    for rules in ({}, {"exclude_seen": True}, {"candidates": candidates}):
        lists = model.top_lists(users, (3, 10, 40), **rules)
        for k, ranked in lists.items():
            np.testing.assert_array_equal(ranked, model.recommend(users, k, **rules))
