"""Customer-service messages: the loader and its errors, entities, intents, scope."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from locations import SHARED_DATA

from xsell.apps.entities import Entity, extract_entities, span_f1
from xsell.apps.intents import (
    INTENT_DESCRIPTIONS,
    EmbeddingIntentClassifier,
    ScopeThreshold,
    TfidfIntentClassifier,
    ZeroShotIntentClassifier,
    with_descriptions,
)
from xsell.data.support import (
    INTENTS,
    find_support_file,
    load_support_messages,
    make_support_messages,
    read_support_csv,
)
from xsell.errors import InputError


def _write(tmp_path, frame: pd.DataFrame):
    path = tmp_path / "customer_support_intents.csv"
    frame.to_csv(path, index=False)
    return path


# ---------------------------------------------------------------------- loader
def test_stand_in_has_every_intent_and_true_spans():
    m = make_support_messages(n_per_intent=10, seed=3)
    assert sorted(m.intents) == sorted(INTENTS) and len(INTENTS) == 27
    assert not m.is_real and "stand-in" in m.name
    spans = m.frame.dropna(subset=["entity_start"])
    assert len(spans) > 0
    for row in spans.itertuples():
        assert row.text[row.entity_start:row.entity_end].isdigit()
    again = make_support_messages(n_per_intent=10, seed=3)
    pd.testing.assert_frame_equal(m.frame, again.frame)


def test_split_is_stratified_seeded_and_disjoint():
    m = make_support_messages(n_per_intent=20)
    a, b = m.split(seed=1), m.split(seed=1)
    for part in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(a[part], b[part])
    idx = [set(a[p].index) for p in ("train", "validation", "test")]
    assert not (idx[0] & idx[1] or idx[0] & idx[2] or idx[1] & idx[2])
    assert sum(map(len, idx)) == len(m)
    per_intent = a["test"]["intent"].value_counts()
    assert per_intent.min() == per_intent.max() == 6  # 30% of 20, every intent alike
    with pytest.raises(ValueError, match="test_size"):
        m.split(test_size=0.8, validation_size=0.3)


def test_reader_names_missing_columns_and_empty_rows(tmp_path):
    path = _write(tmp_path, pd.DataFrame({"instruction": ["hi"], "label": ["x"]}))
    with pytest.raises(InputError, match=r"missing column\(s\) intent"):
        read_support_csv(path)
    path = _write(tmp_path, pd.DataFrame({"instruction": ["hi", "where is it"],
                                          "intent": ["track_order", ""]}))
    with pytest.raises(InputError, match="line 3: empty 'instruction' or 'intent'"):
        read_support_csv(path)


def test_reader_refuses_a_span_outside_the_message_and_trims_one_that_overruns(tmp_path):
    frame = pd.DataFrame({"instruction": ["order 123456 status", "cancel order 98765,"],
                          "intent": ["track_order", "cancel_order"],
                          "entity_type": ["order_id", "order_id"],
                          "start_offset": [40, 13], "end_offset": [46, 40]})
    with pytest.raises(InputError, match=r"line 2: entity span start_offset=40"):
        read_support_csv(_write(tmp_path, frame))
    frame.loc[0, ["start_offset", "end_offset"]] = [6, 12]
    m = read_support_csv(_write(tmp_path, frame))
    assert m.info["spans_trimmed"] == 1 and m.info["spans"] == 2
    row = m.frame.iloc[1]
    assert row["text"][row["entity_start"]:row["entity_end"]] == "98765"


def test_loader_finds_the_folder_or_says_where_it_looked(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="customer_support_intents.csv"):
        load_support_messages(tmp_path)
    monkeypatch.delenv("XSELL_DATA_DIR", raising=False)
    assert not load_support_messages().is_real
    assert find_support_file(tmp_path) is None


@pytest.mark.skipif(find_support_file(SHARED_DATA) is None, reason="Bitext sample not found")
def test_the_real_messages():
    m = load_support_messages(SHARED_DATA)
    assert m.is_real and len(m) == 4514 and len(m.intents) == 27
    assert m.with_tag("Q").sum() > 0 and m.with_tag("Z").sum() > 0


# ---------------------------------------------------------------------- entities
def test_entities_of_known_shapes():
    assert extract_entities("where is order 2539329?") == [
        Entity("order_id", 15, 22, "2539329")]
    assert extract_entities("cancelling order732201349959")[0].text == "732201349959"
    found = extract_entities("I paid $160 for invoice #00108 of order 00123842")
    assert [(e.type, e.text) for e in found] == [
        ("refund_amount", "160"), ("invoice_id", "#00108"), ("order_id", "00123842")]
    assert found[1].value == "00108"
    assert [e.text for e in extract_entities("refund 1200 dollars")] == ["1200"]
    assert extract_entities("my bill 85632") == [Entity("invoice_id", 8, 13, "85632")]
    assert extract_entities("call me at 12:30, it costs 12.5") == []


def test_span_f1_by_hand():
    pred = [[Entity("order_id", 0, 5, "12345")], [Entity("order_id", 3, 9, "123456")], []]
    gold = [[("order_id", 0, 5)], [("order_id", 2, 9)], [("order_id", 0, 6)]]
    got = span_f1(pred, gold, types=("order_id",))["order_id"]
    assert got["precision"] == pytest.approx(1 / 2) and got["recall"] == pytest.approx(1 / 3)
    assert got["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    with pytest.raises(ValueError, match="2 predictions for 3 messages"):
        span_f1(pred[:2], gold)


# ---------------------------------------------------------------------- intents
def test_descriptions_are_added_only_for_intents_in_training():
    texts, labels = with_descriptions(["where is it"], ["track_order"], INTENT_DESCRIPTIONS)
    assert texts == ["where is it", INTENT_DESCRIPTIONS["track_order"]]
    assert labels.tolist() == ["track_order", "track_order"]
    assert set(INTENT_DESCRIPTIONS) == set(INTENTS)


def test_classifiers_learn_the_stand_in_messages():
    m = make_support_messages(n_per_intent=20)
    parts = m.split(seed=0)
    train, test = parts["train"], parts["test"]
    for clf in (TfidfIntentClassifier(), EmbeddingIntentClassifier()):
        clf.fit(train["text"], train["intent"])
        accuracy = (clf.predict(test["text"]) == test["intent"].to_numpy()).mean()
        assert accuracy > 0.9, type(clf).__name__
        proba = clf.predict_proba(test["text"][:3])
        assert proba.shape == (3, 27) and np.allclose(proba.sum(1), 1)
    zero = ZeroShotIntentClassifier().fit(intents=train["intent"])
    accuracy = (zero.predict(test["text"]) == test["intent"].to_numpy()).mean()
    assert accuracy > 1 / 27 * 5  # far above chance without one labelled message
    with pytest.raises(ValueError, match="no description for intent"):
        ZeroShotIntentClassifier(descriptions={"a": "x"}).fit(intents=["a", "b"])
    with pytest.raises(ValueError, match="2 messages but 1 intents"):
        TfidfIntentClassifier().fit(["a", "b"], ["x"])


def test_in_scope_score_separates_an_unseen_intent():
    from sklearn.metrics import roc_auc_score

    m = make_support_messages(n_per_intent=20)
    parts = m.split(seed=0)
    held = ["delete_account", "review", "payment_issue"]
    train = parts["train"][~parts["train"]["intent"].isin(held)]
    clf = EmbeddingIntentClassifier(descriptions=False).fit(train["text"], train["intent"])
    test = parts["test"]
    score = clf.in_scope_score(test["text"])
    assert roc_auc_score(~test["intent"].isin(held), score) > 0.8


def test_scope_threshold_accepts_the_asked_share():
    scores = np.linspace(0, 1, 101)
    t = ScopeThreshold(0.9).fit(scores)
    assert t.in_scope(scores).mean() == pytest.approx(0.9, abs=0.011)
    with pytest.raises(ValueError, match="accept_rate"):
        ScopeThreshold(0).fit(scores)
    with pytest.raises(ValueError, match="no in-scope scores"):
        ScopeThreshold().fit([])
