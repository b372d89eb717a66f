"""The recorded tuning runs (xsell/tuned/*.json) the chapters read instead of searching.

A record is only as good as its match with today's data and grids: these tests fail when
the data a chapter runs on, or any model's grid, no longer matches the record (rerun
``benchmarks/bench_tuning.py``), and check that a record says what a live search finds.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from xsell.data.prepare import prepare
from xsell.data.synthetic import make_synthetic_shop
from xsell.data.variants import VARIANTS, tuning_target
from xsell.models.registry import model_class
from xsell.tuning import (
    RECORDED_MODELS,
    find_record,
    record_tuning,
    recorded_hyperparameters,
    tune_targets,
)

TUNED = RECORDED_MODELS  # every model of the chapters with a grid


@pytest.fixture(scope="module")
def synthetic_split():
    return prepare(make_synthetic_shop()).split


def test_synthetic_shop_record_matches_data_and_grids(synthetic_split):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stale record warns: fail on it
        hyper = recorded_hyperparameters(synthetic_split, ("popularity",) + TUNED)
    assert hyper is not None, "no record of the synthetic shop: run benchmarks/bench_tuning.py"
    assert set(hyper) == {"popularity", *TUNED}
    assert all(set(per) == set(VARIANTS) for per in hyper.values())


def test_instacart_record_matches_data_and_grids(instacart):
    split = prepare(instacart).split
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hyper = recorded_hyperparameters(split, TUNED)
    assert hyper is not None, "no record of this data: run benchmarks/bench_tuning.py"


@pytest.mark.parametrize("name", ["buy-again", "cooccurrence"])
def test_record_says_what_a_live_search_finds(synthetic_split, name):
    record = find_record(synthetic_split)
    targets = sorted({tuning_target(v) for v in VARIANTS})
    live = tune_targets(model_class(name), synthetic_split, targets)
    for variant in VARIANTS:
        assert record["models"][name]["chosen"][variant] == \
            live[tuning_target(variant)].best_params
    table = record["models"][name]["table"]
    for (variant, metric, k), result in live.items():
        recorded = [row[f"{variant} {metric}@{k}"] for row in table]
        # Equal up to ties: numpy's argpartition orders tied scores differently on CPUs
        # with and without AVX-512, which moves a few users' lists (seen: 1.1e-4).
        assert np.allclose(recorded, result.table["value"].to_numpy(), rtol=0, atol=5e-4)


def test_round_trip_and_stale_records(synthetic_split, tmp_path, monkeypatch):
    path = tmp_path / "shop.json"
    record = record_tuning(synthetic_split, ["buy-again"], path, progress=False)
    assert json.loads(path.read_text())["data"] == record["data"]
    hyper = recorded_hyperparameters(synthetic_split, ["popularity", "buy-again"],
                                     folder=tmp_path)
    assert hyper["buy-again"] == record["models"]["buy-again"]["chosen"]
    assert hyper["popularity"] == {v: {} for v in VARIANTS}
    # A model the record does not hold, and a grid that changed: tune live, with a warning.
    with pytest.warns(UserWarning, match="has no 'ease'"):
        assert recorded_hyperparameters(synthetic_split, ["ease"], folder=tmp_path) is None
    cls = model_class("buy-again")
    monkeypatch.setattr(cls, "param_grid", {"half_life": [None, 3]})
    with pytest.warns(UserWarning, match="another grid"):
        assert recorded_hyperparameters(synthetic_split, ["buy-again"],
                                        folder=tmp_path) is None


def test_other_data_has_no_record(synthetic_split, tmp_path):
    record_tuning(synthetic_split, ["buy-again"], tmp_path / "shop.json", progress=False)
    other = prepare(make_synthetic_shop(n_users=300, seed=5)).split
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no record of this data is not worth a warning
        assert recorded_hyperparameters(other, ["buy-again"], folder=tmp_path) is None
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.warns(UserWarning, match="broken.json: not a readable record"):
        assert find_record(other, tmp_path) is None


@pytest.mark.parametrize("name", ["ease", "itemknn", "cooccurrence"])
def test_one_fit_serves_every_scoring_value(synthetic_split, name):
    # The tuner fits once per combination of the parameters that change the fit and
    # scores each recency from that fit: it must score exactly as a fit of its own.
    from xsell.tuning import _with_scoring_params

    cls = model_class(name)
    assert "recency" in cls.scoring_params
    train = synthetic_split.train_dataset()
    users = train.user_index[:50]
    fitted = cls(recency=1.0).fit(train)
    twin = _with_scoring_params(fitted, {"recency": 0.7}, train)
    own = cls(recency=0.7).fit(train)
    assert np.array_equal(twin.score(users), own.score(users))
    assert np.array_equal(fitted.score(users), cls().fit(train).score(users))


def test_one_model_can_be_searched_again_keeping_the_others(synthetic_split, tmp_path):
    path = tmp_path / "record.json"
    first = record_tuning(synthetic_split, ["buy-again", "popularity"], path, progress=False)
    again = record_tuning(synthetic_split, ["buy-again"], path, progress=False,
                          keep_others=True)
    assert set(again["models"]) == {"buy-again", "popularity"}
    assert again["models"]["popularity"] == first["models"]["popularity"]
    assert again["models"]["buy-again"]["chosen"] == first["models"]["buy-again"]["chosen"]
    # Without keep_others the record holds only what was searched.
    alone = record_tuning(synthetic_split, ["buy-again"], path, progress=False)
    assert set(alone["models"]) == {"buy-again"}
    # A record of other data is not merged into.
    other = prepare(make_synthetic_shop(n_users=60, seed=3)).split
    with pytest.raises(ValueError, match="other data"):
        record_tuning(other, ["popularity"], path, progress=False, keep_others=True)
