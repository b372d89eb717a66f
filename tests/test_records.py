"""Recorded experiment results (xsell.records) and the two-tower studies that use them."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from xsell.ablations import (
    ABLATION,
    BASE,
    OBJECTIVES,
    ablation_call,
    ablation_configs,
    objectives_call,
    two_tower_ablation,
)
from xsell.data.prepare import prepare
from xsell.data.synthetic import make_synthetic_shop
from xsell.records import RECORDS, check_against_record, find_recorded, write_record


@pytest.fixture(scope="module")
def split():
    return prepare(make_synthetic_shop(n_users=120, seed=3)).split


def table(values):
    return pd.DataFrame({"model": list(values), "variant": "explore", "metric": "recall",
                         "k": 20, "value": list(values.values())})


def test_a_record_is_found_only_for_the_same_data_split_and_call(split, tmp_path):
    call = {"configs": {"a": ("two-tower", {"half_life": None, "dims": (1, 2)})}, "ks": [20]}
    write_record("study", split, call, {"ranking": table({"a": 0.25})}, seconds=3.0,
                 folder=tmp_path, threads=1)
    tables, record = find_recorded("study", split, call, folder=tmp_path)
    assert tables["ranking"]["value"].tolist() == [0.25]
    assert record["seconds"] == 3.0 and record["threads"] == 1
    assert find_recorded("study", split, {**call, "ks": [10]}, folder=tmp_path) is None
    assert find_recorded("other", split, call, folder=tmp_path) is None
    other = prepare(make_synthetic_shop(n_users=120, seed=4)).split
    assert find_recorded("study", other, call, folder=tmp_path) is None


def test_a_record_is_plain_json_and_a_damaged_one_is_ignored(split, tmp_path):
    path = write_record("study", split, {"x": 1}, {"t": table({"a": 0.5})}, 1.0,
                        folder=tmp_path)
    assert json.loads(path.read_text())["tables"]["t"]["columns"][0] == "model"
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="not a readable record"):
        assert find_recorded("study", split, {"x": 1}, folder=tmp_path) is None


def test_check_against_record_names_the_rows_that_moved():
    recorded = table({"a": 0.25, "b": 0.5})
    both = check_against_record(table({"a": 0.2500001}), recorded, tolerance=1e-3)
    assert both["recorded"].tolist() == [0.25]
    with pytest.raises(ValueError, match="no longer matches") as err:
        check_against_record(table({"a": 0.25, "b": 0.4}), recorded, tolerance=1e-3)
    message, header, row = str(err.value).splitlines()  # only the row that moved
    assert row.split()[0] == "b" and "0.4" in row and "0.5" in row
    with pytest.raises(ValueError, match="not in the record"):
        check_against_record(table({"c": 0.1}), recorded)


def test_ablation_changes_one_thing_per_row():
    params = {"half_life": 4.0, "user_tower": "attention", "item_features": "both"}
    configs = ablation_configs(params)
    assert configs[BASE] == ("two-tower", params)
    for label, (name, changed) in configs.items():
        assert name == "two-tower"
        if label != BASE:
            assert changed != params
    assert configs["no time decay"][1] == {**params, "half_life": None}


def test_the_ablation_without_a_record_runs_live(split):
    # Id-only item towers: no text to encode, so the test trains in seconds.
    params = {"item_features": "id", "max_epochs": 1, "dim": 16, "progress": False}
    rows = ["id only", "mean pooling user tower"]
    live, record = two_tower_ablation(split, params, rows=rows, progress=False)
    assert record is None
    assert set(live["model"]) == set(rows)


def test_shipped_records_are_valid():
    for path in RECORDS.glob("*.json"):
        record = json.loads(path.read_text())
        assert record["name"] in path.name and record["tables"], path
        assert record["name"] in (ABLATION, OBJECTIVES), path


def test_instacart_sample_has_records_of_both_studies(instacart):
    """The two-tower chapter shows these records on the sample: a stale one would make it
    fit every row live (over 30 minutes) -- fail here instead, in seconds."""
    from xsell.tuning import recorded_hyperparameters

    split = prepare(instacart).split
    params = recorded_hyperparameters(split, ["two-tower"])["two-tower"]["explore"]
    for name, call in [(ABLATION, ablation_call(params)), (OBJECTIVES, objectives_call(params))]:
        assert find_recorded(name, split, call) is not None, \
            f"no current {name} record: run benchmarks/bench_two_tower_ablation.py"
