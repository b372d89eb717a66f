"""The customer-service assistant: every fact in every reply is true of the shopper's data.

The facts are checked here against the purchase log directly (not through the assistant's
own lookups), on the synthetic shop and, end to end, on a real Instacart shopper.
"""

from __future__ import annotations

import pandas as pd
import pytest
from locations import real_data_dir

from xsell.apps.assistant import Fact, ServiceAssistant
from xsell.data import schema as S
from xsell.data.support import load_support_messages, make_support_messages


def check_facts(reply, shop_interactions: pd.DataFrame, user, catalogue: pd.Index) -> int:
    """Assert every fact of ``reply`` against the log; returns how many were checked."""
    mine = shop_interactions[shop_interactions[S.USER] == user]
    baskets = {str(b) for b in mine[S.BASKET].unique()}
    latest = str(mine.loc[mine[S.SEQ].idxmax(), S.BASKET])
    for fact in reply.facts:
        assert isinstance(fact, Fact)
        kind, value = fact.kind, fact.value
        if kind == "order":
            assert str(value) in baskets, fact
        elif kind == "latest_order":
            assert str(value) == latest, fact
        elif kind == "order_size":
            basket, n = value
            assert mine[mine[S.BASKET].astype(str) == str(basket)][S.ITEM].nunique() == n, fact
            assert str(n) in reply.text
        elif kind == "order_item":
            basket, item = value
            items = set(mine[mine[S.BASKET].astype(str) == str(basket)][S.ITEM].astype(str))
            assert str(item) in items, fact
        elif kind == "not_their_order":
            digits = str(value).lstrip("0")
            assert all(b.lstrip("0") != digits for b in baskets), fact
        elif kind == "usual":
            item, times = value
            assert int((mine[S.ITEM].astype(str) == str(item)).sum()) == times, fact
            assert f"{times} time" in reply.text
        elif kind == "complement":
            item, because = value
            both = shop_interactions[shop_interactions[S.ITEM].astype(str).isin(
                [str(item), str(because)])]
            per_basket = both.groupby([S.USER, S.BASKET])[S.ITEM].nunique()
            assert (per_basket == 2).any(), f"{fact}: never bought together"
        elif kind == "search_result":
            assert value in catalogue, fact
        elif kind == "amount":
            assert str(value) in reply.message, fact
        else:
            raise AssertionError(f"unknown fact kind {kind!r}")
    return len(reply.facts)


@pytest.fixture(scope="module")
def synthetic_bot(tiny_lm_dir):
    from xsell.apps.search import ProductSearch
    from xsell.data.prepare import prepare
    from xsell.data.synthetic import make_synthetic_shop

    shop = prepare(make_synthetic_shop(n_users=150, seed=2)).data
    engine = ProductSearch(signal_models={"buy-again": {}, "cooccurrence": {}},
                           encoder=str(tiny_lm_dir), max_queries=300, cache=False,
                           progress=False).fit(shop)
    bot = ServiceAssistant(search=engine).fit(make_support_messages(n_per_intent=30), shop)
    return bot, shop


def test_replies_on_the_synthetic_shop_state_only_true_facts(synthetic_bot):
    bot, shop = synthetic_bot
    user = shop.interactions[S.USER].iloc[0]
    inter = shop.interactions
    other = inter[inter[S.USER] != user][S.BASKET].iloc[0]
    conversation = {
        "where is my order": "order",
        "please cancel my order": "order",
        f"track my order {other}": "order",
        "I want to place an order": "usuals",
        "talk to a human please": "handoff",
    }
    checked = 0
    for message, route in conversation.items():
        reply = bot.reply(user, message)
        assert reply.route == route, (message, reply.intent, reply.text)
        checked += check_facts(reply, inter, user, shop.item_index)
    assert checked >= 10
    foreign = bot.reply(user, f"track my order {other}")
    assert any(f.kind == "not_their_order" for f in foreign.facts)
    assert "is not one of your orders" in foreign.text


def test_bad_input_is_named(synthetic_bot):
    bot, _ = synthetic_bot
    with pytest.raises(KeyError, match="unknown user 'nobody'"):
        bot.reply("nobody", "where is my order")
    with pytest.raises(ValueError, match="the message is empty"):
        bot.reply(bot.shop_.interactions[S.USER].iloc[0], "  ")


def test_understand_marks_unknown_requests_out_of_scope(synthetic_bot):
    bot, _ = synthetic_bot
    seen = bot.understand(["where is my order", "what is the airspeed of a swallow"])
    assert seen["intent"].iloc[0] == "track_order" and seen["in_scope"].iloc[0]
    assert seen["score"].iloc[1] < seen["score"].iloc[0]


@pytest.mark.skipif(real_data_dir() is None, reason="Instacart sample not found")
def test_a_real_instacart_conversation_is_grounded():
    """Five intents and a product request for a real shopper; every fact checked."""
    from xsell.apps.search import ProductSearch, signal_models_for
    from xsell.data.loaders import load_dataset
    from xsell.data.prepare import prepare

    prepared = prepare(load_dataset(real_data_dir()))
    shop, split = prepared.data, prepared.split
    train = split.train_dataset(include_validation=True)
    # The configuration the Application cases chapter fits (a cache hit after the book).
    engine = ProductSearch(signal_models=signal_models_for(split), max_queries=3000,
                           progress=False).fit(train)
    messages = load_support_messages(real_data_dir())
    bot = ServiceAssistant(search=engine).fit(messages, shop)
    inter = shop.interactions
    user = inter[S.USER].value_counts().index[10]
    mine = inter[inter[S.USER] == user]
    older = mine.loc[mine[S.SEQ].idxmin(), S.BASKET]
    conversation = [
        ("I want to track my order", "track_order", "order"),
        ("I want to cancel my order", "cancel_order", "order"),
        (f"I need a refund for order {older}, I paid $24", "get_refund", "order"),
        ("I'd like to buy some things", "place_order", "usuals"),
        ("can I speak to a human", "contact_human_agent", "handoff"),
        ("i need something for a pasta dinner", None, "search"),
    ]
    intents, checked = set(), 0
    for message, intent, route in conversation:
        reply = bot.reply(user, message)
        if intent is not None:
            assert reply.intent == intent, (message, reply.intent)
            intents.add(intent)
        if route is not None:
            assert reply.route == route, (message, reply.route, reply.text)
        checked += check_facts(reply, inter, user, shop.item_index)
    assert len(intents) >= 5 and checked >= 20
    refund = bot.reply(user, conversation[2][0])
    assert f"#{older}" in refund.text and ("order", older) in [
        (f.kind, f.value) for f in refund.facts]
