"""Cross-category tools: department structure, completion protocol, completer, control,
explanations, and the recommend / complete commands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xsell.cross_sell import (
    BasketCompleter,
    CategoryControl,
    DepartmentTransitions,
    Explainer,
    department_lift,
)
from xsell.cross_sell.completion import build_cart_history
from xsell.cross_sell.control import quota_order
from xsell.data import clean, leave_last_basket_out
from xsell.data.synthetic import make_synthetic_shop
from xsell.evaluation import basket_completion_task, next_basket_task, per_user_metrics
from xsell.models.registry import model_class


@pytest.fixture(scope="module")
def split():
    data, _ = clean(make_synthetic_shop(n_users=300, seed=5), min_user_baskets=3)
    return leave_last_basket_out(data)


@pytest.fixture(scope="module")
def train(split):
    return split.train_dataset(include_validation=True)


def test_department_lift_is_symmetric_with_empty_diagonal(train):
    lift = department_lift(train)
    assert np.isnan(np.diag(lift)).all()
    assert np.allclose(lift.fillna(0), lift.fillna(0).T)
    assert (lift.fillna(1) >= 0).all().all()


def test_transitions_give_a_distribution_per_cart(train):
    tr = DepartmentTransitions().fit(train)
    cart = np.zeros((2, len(tr.departments_)))
    cart[0, 0] = cart[1, 1] = 1
    assert np.allclose(np.exp(tr.log_proba(cart)).sum(axis=1), 1, atol=1e-6)
    assert tr.item_log_proba(cart).shape == (2, train.n_items)


def test_completion_protocol_hides_one_department_reproducibly(split):
    a = basket_completion_task(split, seed=1)
    b = basket_completion_task(split, seed=1)
    assert a.n_points > 0 and list(a.users) == list(b.users)
    assert a.info["hidden"] == b.info["hidden"]
    dept = split.dataset.item_category(0)
    for user, targets, blocked in zip(a.users[:20], a.targets[:20], a.blocked_categories[:20],
                                      strict=True):
        assert set(dept[targets]) == {a.info["hidden"][user]}
        assert a.info["hidden"][user] not in set(blocked)  # the cart lacks it
        cart = a.history[(a.history["user_id"] == user)]
        cart = cart[cart["seq"] == cart["seq"].max()]
        assert set(dept[cart["item_id"]]) == set(blocked)
    # New-only targets are never in the user's past.
    past = split.train_dataset(include_validation=True).interactions
    u = a.users[0]
    assert not set(a.targets[0]) & set(past[past["user_id"] == u]["item_id"])


def test_models_never_recommend_the_carts_departments(split, train):
    task = basket_completion_task(split, new_only=False)
    model = model_class("cooccurrence")().fit(train)
    ranked = model.recommend(task.users[:30], k=10, history=task.history,
                             exclude=task.exclusions(slice(0, 30), train))
    dept = train.item_category(0)
    for row, blocked in zip(ranked, task.blocked_categories[:30], strict=True):
        assert not set(dept[row]) & set(blocked)
    assert per_user_metrics(model, task, ks=(10,))["value"].notna().all()


def test_completer_learns_weights_and_completes_a_cart(train, tiny_lm_dir):
    completer = BasketCompleter(user_models={"ease": {"l2": 50.0}}, encoder=str(tiny_lm_dir),
                                progress=False, cache=False).fit(train)
    assert completer.weights_.sum() == pytest.approx(1)
    assert list(completer.weights_.index)[-1] == "user: ease"
    cart = train.interactions["item_id"].iloc[:2].tolist()
    out = completer.complete(cart, k=5)
    dept = train.item_category(0)
    assert len(out) == 5 and not set(dept[out]) & set(dept[cart])
    with pytest.raises(KeyError, match="NOPE"):
        completer.complete(["NOPE"])
    # One item of every department anyone bought: the same refusal as complete_cart's.
    bought = train.interactions["item_id"]
    every = bought.groupby(dept.reindex(bought).to_numpy()).first().tolist()
    with pytest.raises(ValueError, match="covers every department"):
        completer.complete(every, k=5)
    with pytest.raises(ValueError, match="k must be a positive integer, not 0"):
        completer.complete(cart, k=0)


def test_completer_without_the_text_signal_learns_on_the_others(train, tiny_lm_dir):
    completer = BasketCompleter(user_models={"ease": {"l2": 50.0}}, encoder=str(tiny_lm_dir),
                                text_signal=False, progress=False, cache=False).fit(train)
    assert list(completer.weights_.index) == ["co-occurrence", "department transition",
                                              "popularity", "user: ease"]
    assert completer.weights_.sum() == pytest.approx(1)
    users = train.user_index[:3].to_numpy()
    history = train.interactions[train.interactions["user_id"].isin(users)]
    assert len(completer.signals(users, history)) == 4
    assert len(completer.complete(train.interactions["item_id"].iloc[:2].tolist(), k=5)) == 5


def test_cart_history_appends_the_cart_as_latest_basket(train):
    user = train.user_index[0]
    h = build_cart_history(train, [train.item_index[0]], user)
    assert h["seq"].iloc[-1] == train.interactions.query("user_id == @user")["seq"].max() + 1
    with pytest.raises(ValueError, match="empty"):
        build_cart_history(train, [])


def test_quota_order_meets_every_prefix():
    is_new = np.array([False, False, False, True, False, True])
    order = quota_order(is_new, 0.5)
    taken = np.cumsum(is_new[order])
    assert all(taken[n - 1] >= np.ceil(0.5 * n) for n in range(1, 5))
    assert quota_order(is_new, 0.0).tolist() == list(range(6))


def test_category_control_trades_accuracy_for_reach(split, train):
    base = model_class("ease")(l2=50.0).fit(train)
    task = next_basket_task(split, "explore")
    users = task.users[:60]
    shares = []
    dept = train.item_category(0)
    for reach in (0.0, 1.0):
        ranked = CategoryControl(base, reach=reach).fit().recommend(users, k=10,
                                                                   exclude_seen=True)
        known = [set(dept[train.interactions.query("user_id == @u")["item_id"]]) for u in users]
        shares.append(np.mean([[dept[i] not in k for i in row]
                               for row, k in zip(ranked, known, strict=True)]))
    assert shares[1] > shares[0]
    assert shares[1] == pytest.approx(1.0) or shares[1] > 0.9
    with pytest.raises(ValueError, match="reach"):
        CategoryControl(base, reach=2).fit()


def test_explainer_names_the_supporting_item(train, tiny_lm_dir):
    ex = Explainer(encoder=str(tiny_lm_dir), cache=False).fit(train)
    basket = train.interactions[train.interactions["basket_id"] ==
                                train.interactions["basket_id"].iloc[0]]["item_id"]
    a, b = basket.iloc[0], basket.iloc[1]
    out = ex.explain([a, train.item_index[-1]], [b])
    assert out.loc[b, "because"] == a and out.loc[b, "evidence"] == "bought together"
    assert 0 < out.loc[b, "contribution"] <= 1


def test_a_reach_sweep_scores_the_model_once(split, train, monkeypatch):
    base = model_class("ease")(l2=50.0).fit(train)
    users = next_basket_task(split, "explore").users[:40]
    fresh = {r: CategoryControl(base, reach=r).fit().recommend(users, k=10, exclude_seen=True)
             for r in (0.0, 0.5, 1.0)}
    calls = []
    score = base.score
    monkeypatch.setattr(base, "score", lambda *a, **kw: calls.append(1) or score(*a, **kw))
    control = CategoryControl(base).fit()
    for reach in (0.0, 0.5, 1.0):
        control.reach = reach
        swept = control.recommend(users, k=10, exclude_seen=True)
        assert (swept == fresh[reach]).all()
    assert len(calls) == 1  # 40 users: one chunk, scored once for three reaches


def test_shopper_page_rows_and_reasons(interactions_frame, items_frame):
    from xsell.cross_sell.service import shopper_page
    from xsell.data.dataset import Dataset

    data = Dataset.from_frames(interactions_frame, items_frame)
    explained = pd.DataFrame({"because": ["Spaghetti"]}, index=pd.Index(["e"], name="item_id"))
    page = shopper_page(data, "u1", {"Buy it again": np.array(["a", "c"]),
                                     "Popular": np.array(["e"]), "New for you": explained})
    assert list(page.index) == [("Buy it again", 1), ("Buy it again", 2), ("Popular", 1),
                                ("New for you", 1)]
    # u1 bought 'a' in three baskets and 'c' once; 'e' never.
    assert page["why"].tolist() == ["bought 3x", "bought 1x", "", "Spaghetti"]
    assert page["title"].tolist() == ["Spaghetti", "Parmesan", "Diapers Size 3",
                                      "Diapers Size 3"]
    assert page["department"].tolist() == ["pantry", "dairy", "babies", "babies"]
    with pytest.raises(ValueError, match="at least one row"):
        shopper_page(data, "u1", {})
