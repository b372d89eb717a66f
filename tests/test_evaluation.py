"""Protocols: the right targets, no future in any history, CIs and tests that behave."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from xsell.cli import main
from xsell.data.dataset import Dataset
from xsell.data.splits import leave_last_basket_out, random_rating_split
from xsell.evaluation import (
    bootstrap_ci,
    cold_start_task,
    evaluate,
    evaluate_rating,
    next_basket_task,
    paired_difference,
    paired_p_value,
    rolling_origin_task,
)
from xsell.models import BuyAgain, Popularity
from xsell.tuning import parameter_grid, tune


@pytest.fixture(scope="module")
def shop() -> Dataset:
    """Two departments; user u0 moves into department 'b' only in the last basket."""
    items = pd.DataFrame({"item_id": list("pqrstuvw"), "title": list("PQRSTUVW"),
                          "category": ["a > x", "a > x", "a > y", "a > y",
                                       "b > z", "b > z", "b > z", "b > z"]})
    rows = [("u0", "p", 0), ("u0", "q", 0), ("u0", "p", 1), ("u0", "r", 1), ("u0", "p", 2),
            ("u0", "s", 2), ("u0", "p", 3), ("u0", "t", 3), ("u0", "s", 3),
            ("u1", "t", 0), ("u1", "u", 1), ("u1", "p", 2), ("u1", "v", 3), ("u1", "w", 3),
            ("u2", "p", 0), ("u2", "v", 1), ("u2", "w", 2), ("u2", "u", 3)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "seq"])
    return Dataset.from_frames(inter, items)


def test_next_basket_variants(shop):
    split = leave_last_basket_out(shop)
    targets = {v: dict(zip(t.users, map(set, t.targets), strict=True)) for v in
               ("all", "explore", "cross-category")
               for t in [next_basket_task(split, v)]}
    assert targets["all"]["u0"] == {"p", "t", "s"}
    assert targets["explore"]["u0"] == {"t"}            # p and s were bought before
    assert targets["cross-category"]["u0"] == {"t"}     # and t's department is new to u0
    assert targets["explore"]["u1"] == {"v", "w"}
    assert "u1" not in targets["cross-category"]        # u1 bought in 'b' before
    assert next_basket_task(split, "explore").exclude_seen
    assert not next_basket_task(split, "all").exclude_seen
    with pytest.raises(ValueError, match="unknown variant"):
        next_basket_task(split, "nope")


def test_validation_task_uses_train_only(shop):
    split = leave_last_basket_out(shop)
    task = next_basket_task(split, "explore", part="validation")
    assert dict(zip(task.users, map(set, task.targets), strict=True))["u0"] == {"s"}
    assert set(task.candidates) == set(split.train.item_id)


def test_rolling_origin_histories_never_see_the_origin(shop):
    task, train = rolling_origin_task(shop, n_origins=2, variant="all")
    assert task.n_points == 6 and task.n_users == 3
    for key in task.users:
        origin = int(key.split("@")[1])
        seqs = task.history.loc[task.history.user_id == key, "seq"]
        assert len(seqs) and seqs.max() < origin
    assert train.interactions.groupby("user_id").seq.max().max() == 1


def test_cold_start_task(shop):
    # Item 'q' is bought only in u0's first basket; make a copy where it is bought only
    # in u2's last basket instead: then it is cold (never in train or validation).
    inter = shop.interactions.copy()
    inter = inter[inter.item_id != "q"]
    inter = pd.concat([inter, pd.DataFrame({"user_id": ["u2"], "item_id": ["q"], "seq": [3]})])
    ds = Dataset.from_frames(inter[["user_id", "item_id", "seq"]], shop.items)
    task = cold_start_task(leave_last_basket_out(ds))
    assert dict(zip(task.users, map(set, task.targets), strict=True)) == {"u2": {"q"}}
    assert task.info["cold_items"] == 1 and task.candidates is None
    assert np.isclose(task.info["cold_share_of_target_rows"], 1 / 7)


def test_bootstrap_ci_resamples_users():
    rng = np.random.default_rng(0)
    values = rng.random(400)
    owners = np.repeat(np.arange(100), 4)
    lo, hi = bootstrap_ci(values, owners, n_boot=500)
    assert lo < values.mean() < hi
    assert bootstrap_ci(values, owners, n_boot=500) == (lo, hi)  # seeded
    wide = bootstrap_ci(np.repeat(rng.random(100), 4), owners, n_boot=500)
    assert (wide[1] - wide[0]) > (hi - lo)  # correlated points give no extra power


def test_paired_p_value():
    a = pd.Series(np.linspace(0, 1, 200))
    assert paired_p_value(a, a) == 1.0
    assert paired_p_value(a + 0.05, a) < 1e-6
    noise = pd.Series(np.random.default_rng(1).normal(0, 1, 200))
    assert paired_p_value(a + noise, a) > 0.001


def test_paired_difference_is_the_mean_difference_with_a_narrower_interval():
    rng = np.random.default_rng(0)
    users = pd.Index(np.arange(300))
    ease = pd.Series(rng.uniform(0, 1, 300), index=users)  # which users are easy: shared
    better = ease + 0.02 + pd.Series(rng.normal(0, 0.01, 300), index=users)
    mean, lo, hi = paired_difference(better, ease, n_boot=500)
    assert np.isclose(mean, (better - ease).mean())
    assert lo < mean < hi and 0.015 < lo and hi < 0.025
    separate = [bootstrap_ci(s.to_numpy(), users.to_numpy(), 500) for s in (better, ease)]
    assert separate[0][0] < separate[1][1]  # the separate intervals overlap; the paired does not
    # users present in only one of the two do not count
    assert paired_difference(better.iloc[:10], ease)[0] == (better - ease).iloc[:10].mean()
    assert np.isnan(paired_difference(better.iloc[:0], ease)[0])


def test_evaluate_table(shop):
    split = leave_last_basket_out(shop)
    table = evaluate({"popularity": Popularity, "buy-again": BuyAgain}, split, ks=(2,),
                     metrics=("recall", "ndcg"), n_boot=50, progress=False)
    assert list(table.columns) == ["model", "variant", "metric", "k", "value", "ci_low",
                                   "ci_high", "n_users", "n_points", "p_value", "diff",
                                   "diff_ci_low", "diff_ci_high"]
    assert table.query("model == 'popularity'")["p_value"].isna().all()
    assert table.query("model == 'popularity'")["diff"].isna().all()
    ba = table.query("model == 'buy-again' and variant == 'all' and metric == 'recall'")
    assert ba["value"].item() > 0
    assert (table["ci_low"] <= table["value"] + 1e-12).all()
    with pytest.raises(ValueError, match="baseline"):
        evaluate({"a": Popularity}, split, baseline="b")


def test_tuning_never_reads_test(shop):
    split = leave_last_basket_out(shop)
    first = tune(BuyAgain, split, param_grid={"half_life": [None, 0.5, 4]})
    garbage = split.test.assign(item_id="w")
    split.test = garbage
    again = tune(BuyAgain, split, param_grid={"half_life": [None, 0.5, 4]})
    assert first.best_params == again.best_params
    pd.testing.assert_frame_equal(first.table.drop(columns="fit_seconds"),
                                  again.table.drop(columns="fit_seconds"))
    assert len(parameter_grid({"a": [1, 2], "b": [3, 4, 5]})) == 6
    assert parameter_grid({}) == [{}]


def test_rating_protocol(shop):
    split = random_rating_split(shop, seed=0)
    assert split.train.rating.min() >= 1
    pairs = pd.concat([split.train, split.validation, split.test])
    assert not pairs.duplicated(["user_id", "item_id"]).any()
    table = evaluate_rating({"popularity": Popularity}, split, n_boot=20)
    assert set(table.model) == {"global mean", "popularity"}
    assert set(table.metric) == {"mae", "mse", "rmse"}
    mse = table.set_index(["model", "metric"]).loc[("global mean", "mse"), "value"]
    rmse = table.set_index(["model", "metric"]).loc[("global mean", "rmse"), "value"]
    assert np.isclose(np.sqrt(mse), rmse)


def test_cli_evaluate_writes_results_json(tmp_path, capsys):
    from locations import REPO

    out = tmp_path / "results.json"
    code = main(["evaluate", "--data", str(REPO / "data" / "example"), "--models",
                 "popularity,buy-again", "--k", "1,2", "--bootstrap", "50", "--min-baskets",
                 "3", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result) >= {"dataset", "protocol", "results", "hyperparameters"}
    assert result["dataset"]["users"] == 5
    row = result["results"][0]
    assert set(row) >= {"model", "variant", "metric", "k", "value", "ci_low", "ci_high",
                        "n_users"}
    assert "buy-again" in result["hyperparameters"]


def test_cli_evaluate_rejects_bad_input(tmp_path, capsys):
    (tmp_path / "i.csv").write_text("user_id,item_id\nu,zz\n")
    (tmp_path / "t.csv").write_text("item_id,title\na,A\n")
    code = main(["evaluate", "--interactions", str(tmp_path / "i.csv"), "--items",
                 str(tmp_path / "t.csv"), "--out", str(tmp_path / "r.json")])
    assert code == 2 and "not in the catalogue" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
    assert main(["evaluate", "--models", "nope"]) == 2


def test_cli_evaluate_on_an_unseen_generic_dataset(bookshop_dir, tmp_path):
    """Another domain, one item per basket, deeper categories: no code changes needed.

    Every registered model with its default hyperparameters (the validation search is
    exercised by ``test_cli_evaluate_writes_results_json`` and by every chapter)."""
    import xsell.cross_sell  # noqa: F401 - registers the basket completer, as the CLI does
    from xsell.models.registry import MODELS

    out = tmp_path / "books.json"
    code = main(["evaluate", "--interactions", str(bookshop_dir / "interactions.csv"),
                 "--items", str(bookshop_dir / "items.csv"), "--models", ",".join(MODELS),
                 "--k", "5,10", "--bootstrap", "100", "--no-tune", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["dataset"]["categories_per_level"] == [2, 5, 8]
    assert result["dataset"]["mean_basket_size"] == 1.0
    table = pd.DataFrame(result["results"])
    assert set(table["model"]) == set(MODELS)
    ndcg = table.query("variant == 'all' and metric == 'ndcg' and k == 10").set_index("model")
    assert ndcg["value"].notna().all()
    # Genre tastes are learnable: the best collaborative model beats popularity.
    assert ndcg.drop(index=["popularity", "buy-again"])["value"].max() > ndcg.loc[
        "popularity", "value"]


def test_repeat_explore_metrics_in_next_basket_tables(shop):
    from xsell.evaluation import repeat_explore_table
    from xsell.metrics import HISTORY_METRICS

    split = leave_last_basket_out(shop)
    task = next_basket_task(split, "all", exclude_seen=False)
    history = pd.concat([split.train, split.validation])
    for user, seen in zip(task.users, task.seen, strict=True):
        assert set(seen) == set(history.loc[history["user_id"] == user, "item_id"])
    results = evaluate({"popularity": Popularity(), "buy-again": BuyAgain()}, split,
                       ks=(3,), variants=("all", "explore"), progress=False,
                       exclude_seen=False, baseline=None)
    table = repeat_explore_table(results, k=3)
    assert list(table.columns) == ["recall@3", "repeat-part recall@3",
                                   "explore-part recall@3", "repeat ratio@3"]
    # The table holds the means of the metric functions on the models' own lists.
    for name, model in (("popularity", Popularity()), ("buy-again", BuyAgain())):
        ranked = model.fit(split.train_dataset(include_validation=True)).recommend(
            task.users, k=3, candidates=task.candidates)
        for metric, f in HISTORY_METRICS.items():
            column = {"repeat_recall": "repeat-part recall@3",
                      "explore_recall": "explore-part recall@3",
                      "repeat_ratio": "repeat ratio@3"}[metric]
            assert table.loc[name, column] == pytest.approx(
                np.nanmean(f(ranked, task.targets, task.seen, 3)))
    # Every user has at least 3 items of their own: buy-again's lists are all repeats.
    assert table.loc["buy-again", "repeat ratio@3"] == 1.0
    assert table.loc["popularity", "repeat ratio@3"] < 1.0
    # The explore variant's lists exclude the user's items: the split is not reported.
    assert not results.query("variant == 'explore'")["metric"].isin(list(HISTORY_METRICS)).any()
    with pytest.raises(ValueError, match="no repeat / explore"):
        repeat_explore_table(results, k=10)
