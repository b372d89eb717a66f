"""The seen-item policy follows the data: the training repeat rate decides the ``all``
variant unless the caller says otherwise (issue 11, part 3)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from xsell.cli import main
from xsell.data.dataset import Dataset
from xsell.data.review_style import first_purchases
from xsell.data.splits import leave_last_basket_out
from xsell.data.synthetic import make_synthetic_shop
from xsell.data.variants import REPEAT_RATE_THRESHOLD, repeat_rate, seen_items_excluded
from xsell.evaluation import build_tasks, next_basket_task


def test_repeat_rate_of_a_hand_built_log(interactions_frame, items_frame):
    # u1: {a,b} {a,c} {a,d} -> after the first basket a, c, a, d: a twice a repeat.
    # u2: {e,d} {e} {a,b}   -> after the first basket e, a, b: e a repeat.
    ds = Dataset.from_frames(interactions_frame, items_frame)
    assert repeat_rate(ds.interactions) == pytest.approx(3 / 7)
    one_basket = ds.interactions[ds.interactions["seq"] == 0]
    assert math.isnan(repeat_rate(one_basket))  # nobody has a second basket
    # The same item twice in one basket is not a repeat.
    twice = pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "a", "b"], "seq": [0, 1, 1]})
    assert repeat_rate(twice) == pytest.approx(1 / 2)


def test_policy_rule():
    low, high = REPEAT_RATE_THRESHOLD / 2, 0.6
    assert seen_items_excluded("all", low) and not seen_items_excluded("all", high)
    assert not seen_items_excluded("all", float("nan"))  # no evidence: today's behaviour
    assert not seen_items_excluded("all", low, exclude_seen=False)
    assert seen_items_excluded("all", high, exclude_seen=True)
    for variant in ("explore", "cross-category"):  # targets are new: always removed
        assert seen_items_excluded(variant, high, exclude_seen=False)


@pytest.fixture(scope="module")
def logs():
    shop = make_synthetic_shop(n_users=60, seed=2)
    return {"grocery": shop, "review": first_purchases(shop)}


def test_tasks_follow_the_data_and_report_it(logs):
    grocery = next_basket_task(leave_last_basket_out(logs["grocery"]), "all")
    review = next_basket_task(leave_last_basket_out(logs["review"]), "all")
    assert grocery.info["repeat_rate"] > REPEAT_RATE_THRESHOLD and not grocery.exclude_seen
    assert review.info["repeat_rate"] == 0.0 and review.exclude_seen
    assert review.info["exclude_seen_by"] == "repeat rate"
    kept = next_basket_task(leave_last_basket_out(logs["review"]), "all", exclude_seen=False)
    assert not kept.exclude_seen and kept.info["exclude_seen_by"] == "caller"
    _, tasks = build_tasks(leave_last_basket_out(logs["grocery"]), "rolling-origin",
                           ["all", "explore"], n_origins=2, exclude_seen=True)
    assert tasks["all"].exclude_seen and tasks["all"].info["exclude_seen_by"] == "caller"
    assert tasks["explore"].info["exclude_seen_by"] == "variant"
    _, tasks = build_tasks(leave_last_basket_out(logs["review"]), "rolling-origin", ["all"],
                           n_origins=2)
    assert tasks["all"].exclude_seen and tasks["all"].info["repeat_rate"] == 0.0


def test_cli_seen_flags_are_mutually_exclusive(capsys, monkeypatch):
    import xsell.experiments

    monkeypatch.setattr(xsell.experiments, "evaluate_dataset",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("evaluated")))
    assert main(["evaluate", "--synthetic", "--exclude-seen", "--keep-seen"]) == 2
    assert "xsell: error: --exclude-seen and --keep-seen contradict" in capsys.readouterr().err


def test_cli_reports_the_policy(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("XSELL_DATA_DIR", raising=False)
    out = tmp_path / "r.json"
    assert main(["evaluate", "--synthetic", "--users", "60", "--models", "popularity",
                 "--no-tune", "--bootstrap", "10", "--variants", "all", "--k", "10",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seen items: kept in the 'all' ranking; training repeat rate 0." in printed
    task = json.loads(out.read_text())["tasks"]["all"]
    assert task["exclude_seen"] is False and task["repeat_rate"] > REPEAT_RATE_THRESHOLD
