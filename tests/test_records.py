"""Recorded experiment results (xsell.records) and the two-tower studies that use them."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from xsell.ablations import (
    ABLATION,
    BASE,
    ENCODERS,
    HYBRID_LM,
    MINILM,
    MPNET,
    OBJECTIVES,
    ablation_call,
    ablation_configs,
    encoder_configs,
    encoders_call,
    hybrid_lm_call,
    hybrid_settings,
    objectives_call,
    two_tower_ablation,
    two_tower_encoders,
)
from xsell.data.prepare import prepare
from xsell.data.synthetic import make_synthetic_shop
from xsell.peers import RECORD as PEERS_RECORD
from xsell.peers import compare_peers, peer_hyperparameters, peers_call
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


def test_the_encoder_study_changes_only_the_encoder(split):
    params = {"half_life": 4.0, "max_epochs": 1, "dim": 16, "progress": False}
    (_, minilm), (_, mpnet) = encoder_configs(params).values()
    assert minilm == {**params, "text_items": "seen"}
    assert mpnet == {**minilm, "encoder": "sentence-transformers/all-mpnet-base-v2"}
    # No record of this data and no second encoder given: nothing to show (never a
    # download in the middle of a chapter).
    assert two_tower_encoders(split, params) == (None, None)
    # Live, with MiniLM named as the "second" encoder (its embeddings are cached): the
    # encoder is the only difference between the rows, so the two rows agree exactly.
    from xsell.text import DEFAULT_MODEL

    live, record = two_tower_encoders(split, params, second=DEFAULT_MODEL, progress=False)
    assert record is None and set(live["model"]) == {MINILM, MPNET}
    other = live[live["model"] == MPNET]
    assert other["value"].notna().all() and (other["diff"] == 0).all()


def test_shipped_records_are_valid():
    for path in RECORDS.glob("*.json"):
        record = json.loads(path.read_text())
        assert record["name"] in path.name and record["tables"], path
        assert record["name"] in (ABLATION, OBJECTIVES, ENCODERS, PEERS_RECORD, HYBRID_LM), path


def test_instacart_sample_has_records_of_every_study(instacart):
    """The chapters show these records on the sample: a stale one would make them fit
    every row live (over 30 minutes for the ablation) -- fail here instead, in seconds.
    The peers' record is also tied to the source of SASRec, TIFU-KNN and the evaluation."""
    from xsell.tuning import recorded_hyperparameters

    split = prepare(instacart).split
    from xsell.models.hybrid import DEFAULT_COMPONENTS

    recorded = recorded_hyperparameters(split, [*DEFAULT_COMPONENTS, "tifu-knn", "sasrec"])
    params = recorded["two-tower"]["explore"]
    for name, call, bench in [
            (ABLATION, ablation_call(params), "bench_two_tower_ablation.py"),
            (OBJECTIVES, objectives_call(params), "bench_two_tower_ablation.py"),
            (ENCODERS, encoders_call(params), "bench_second_encoder.py"),
            (PEERS_RECORD, peers_call(peer_hyperparameters(recorded)), "bench_peers.py"),
            (HYBRID_LM, hybrid_lm_call(hybrid_settings(recorded, params)),
             "bench_hybrid_lm.py")]:
        assert find_recorded(name, split, call) is not None, \
            f"no current {name} record: run benchmarks/{bench}"


def test_the_peers_without_a_record_run_live(split):
    table, chosen, record = compare_peers(split, None, models=["tifu-knn"], progress=False)
    assert record is None and set(table["model"]) == {"popularity", "tifu-knn"}
    assert set(chosen["tifu-knn"]) == {"all", "explore", "cross-category"}
    assert peer_hyperparameters(None) is None
    recorded = {"tifu-knn": {"all": {"alpha": 0.5}}, "sasrec": {"all": {"max_len": 30},
                                                               "explore": {"max_len": 10}}}
    assert peer_hyperparameters(recorded)["sasrec"] == {"all": {"max_len": 30}}
    assert peers_call(None)["code"] == peers_call({})["code"]  # the source, not the call
