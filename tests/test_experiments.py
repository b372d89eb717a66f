"""The comparison driver: with the cache, every fit is made once and found again."""

from __future__ import annotations

import pytest

from xsell.data import clean, leave_last_basket_out
from xsell.data.splits import random_rating_split
from xsell.data.synthetic import make_synthetic_shop
from xsell.evaluation import evaluate_rating
from xsell.experiments import compare_configs, compare_models, compare_ratings, fit_model
from xsell.models.registry import model_class
from xsell.tuning import tune_targets


@pytest.fixture(scope="module")
def split():
    data, _ = clean(make_synthetic_shop(n_users=150, seed=2), min_user_baskets=3)
    return leave_last_basket_out(data)


def _refuse_fitting(monkeypatch, name):
    def refuse(self, train):
        raise AssertionError(f"{name} was fitted again instead of read from the cache")

    monkeypatch.setattr(model_class(name), "fit", refuse)


def test_tuning_keeps_each_targets_winning_model(split):
    targets = [("all", "ndcg", 10), ("explore", "recall", 20)]
    results = tune_targets(model_class("ease"), split, targets, keep_best=True)
    for result in results.values():
        assert result.model is not None and result.model.l2 == result.best_params["l2"]
        best_row = result.table["value"].to_numpy().argmax()
        assert result.table["l2"].iloc[best_row] == result.best_params["l2"]
    assert all(r.model is None for r in tune_targets(model_class("ease"), split,
                                                     targets).values())


def test_cached_comparison_stores_every_fit_it_makes(split, tmp_path, monkeypatch):
    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path))
    _, chosen = compare_models(split, ["buy-again", "ease"], variants=("all", "explore"),
                               ks=(10,), metrics=("ndcg",), progress=False, cache=True)
    _refuse_fitting(monkeypatch, "ease")
    train = split.train_dataset(include_validation=True)
    for variant in ("all", "explore"):
        params = chosen["ease"][variant]
        assert fit_model("ease", params, train, cache=True).l2 == params["l2"]  # the refit
        # The tuning fit that won, on train alone: what a hybrid's held-out stage needs.
        assert fit_model("ease", params, split.train_dataset(), cache=True).l2 == params["l2"]
    with pytest.raises(AssertionError, match="fitted again"):
        fit_model("ease", {"l2": 12345.0}, train, cache=True)  # never fitted: fits


def test_fit_cache_key_is_the_full_configuration(split, tmp_path, monkeypatch):
    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path))
    train = split.train_dataset()
    fit_model("buy-again", {}, train, cache=True)
    _refuse_fitting(monkeypatch, "buy-again")
    assert fit_model("buy-again", {"half_life": None}, train, cache=True).half_life is None
    with pytest.raises(AssertionError):
        fit_model("buy-again", {"half_life": 2.0}, train, cache=True)


def test_cached_configs_share_fits_with_fit_model(split, tmp_path, monkeypatch):
    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path))
    configs = {"EASE 30": ("ease", {"l2": 30.0}), "co-occurrence": ("cooccurrence", {})}
    table = compare_configs(split, configs, variants=("all",), ks=(10,), progress=False,
                            cache=True)
    assert set(table["model"]) == set(configs)
    _refuse_fitting(monkeypatch, "ease")
    fit_model("ease", {"l2": 30.0}, split.train_dataset(include_validation=True), cache=True)


def test_compare_ratings_is_evaluate_rating_of_the_configs_and_is_cached(split, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path))
    ratings = random_rating_split(split.dataset, seed=1)
    configs = {"EASE 30": ("ease", {"l2": 30.0}), "popular": ("popularity", {})}
    table = compare_ratings(ratings, configs, n_boot=50, cache=True)
    direct = evaluate_rating({"EASE 30": lambda: model_class("ease")(l2=30.0),
                              "popular": model_class("popularity")}, ratings, n_boot=50)
    assert table.equals(direct)
    assert list(table["model"].unique()) == ["global mean", "EASE 30", "popular"]
    _refuse_fitting(monkeypatch, "ease")
    assert compare_ratings(ratings, configs, n_boot=50, cache=True).equals(table)  # stored
    fit_model("ease", {"l2": 30.0}, ratings.train_dataset(), cache=True)  # the fit is shared
