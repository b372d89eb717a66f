"""A customer-service assistant grounded in the shopper's own purchase log.

A message goes through three steps:

1. **Intent** (:mod:`xsell.apps.intents`): MiniLM embeddings + logistic regression, with
   an in-scope score and a threshold calibrated on validation messages; below it, the
   message is out of scope.
2. **Entities** (:mod:`xsell.apps.entities`): order ids, invoice ids, amounts.
3. **Grounded reply**: every statement comes from the shopper's data, and every reply
   lists the facts it used (:class:`Fact`) so that they can be checked:

   * ``track_order`` / ``cancel_order`` / ``change_order`` / ``get_refund`` resolve "my
     order" to the order id given (when it is the shopper's) or to their most recent
     basket, and say what is in it; changes suggest complements from other departments
     (the basket completer); nothing is claimed to be cancelled, refunded or delivered --
     those need the order system, and the reply says so;
   * ``place_order`` and out-of-scope messages that name products ("I need something for
     a pasta dinner") go to personalised search (:mod:`xsell.apps.search`), or to the
     shopper's usual products and their complements when no product is named;
   * intents that need an account, billing or delivery system, or a person, say so
     plainly and hand over.

The replies are written here from the facts; the Bitext dataset's example responses are
never used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xsell.apps.entities import Entity, extract_entities
from xsell.apps.intents import EmbeddingIntentClassifier, ScopeThreshold
from xsell.apps.query import words
from xsell.checkpoint import Saveable
from xsell.data import schema as S
from xsell.data.dataset import Dataset, plain_value
from xsell.data.support import INTENT_CATEGORIES, SupportMessages

#: Intents answered from one of the shopper's orders.
ORDER_INTENTS = ("track_order", "cancel_order", "change_order", "get_refund")
#: Intents answered by finding products.
SHOPPING_INTENTS = ("place_order",)
#: What each category of the remaining intents needs (the assistant has none of them).
HANDOFF = {
    "ACCOUNT": "the account system",
    "CANCELLATION_FEE": "the billing system",
    "CONTACT": "a person",
    "DELIVERY": "the delivery system",
    "FEEDBACK": "a person",
    "INVOICE": "the billing system",
    "NEWSLETTER": "the account system",
    "ORDER": "the order system",
    "PAYMENT": "the billing system",
    "REFUND": "the billing system",
    "SHIPPING_ADDRESS": "the delivery system",
}
#: Words of shopping requests that name no product ("I need to buy ...").
REQUEST_WORDS = frozenset("""
add also anything available basket bought buy cart check could delivered dinner else find
get got help hey hi hello kind lunch breakfast looking look make much need new order ordered
place purchase recommend sell selling shop shopping stock store suggest thank thanks today
tomorrow tonight way week like love id wanna gonna stuff thing things item items product
products good nice great time
""".split())
#: Shortest request word corrected for spelling ("yoghurt" -> "yogurt"); shorter words are
#: taken as typed, so "like" never becomes "lime".
MIN_CORRECTED = 6
#: Items shown in a reply's lists.
SHOWN = 5


def _amount_text(message: str, entity: Entity) -> str:
    """An amount as the shopper wrote it, with its currency sign ("$12")."""
    before = message[max(entity.start - 2, 0):entity.start].strip()
    sign = before[-1] if before and before[-1] in "$€£" else ""
    return sign + entity.text


def _digits(value) -> str:
    """The digits of an id without leading zeros (how an id typed in a message is matched)."""
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return digits.lstrip("0") or digits


@dataclass(frozen=True)
class Fact:
    """One statement a reply makes about the shopper's data, in checkable form.

    ``kind`` and ``value``:

    * ``"order"``: ``basket_id`` -- an order of this shopper;
    * ``"latest_order"``: ``basket_id`` -- their most recent order;
    * ``"order_size"``: ``(basket_id, n_items)``;
    * ``"order_item"``: ``(basket_id, item_id)`` -- the item is in that order;
    * ``"not_their_order"``: an order id they gave that is not theirs;
    * ``"usual"``: ``(item_id, times)`` -- they bought the item that many times;
    * ``"complement"``: ``(item_id, because_item_id)`` -- other shoppers bought the two
      in one basket;
    * ``"search_result"``: ``item_id`` -- a product the search returned for their words;
    * ``"amount"``: the amount they wrote (echoed, not checked against prices).
    """

    kind: str
    value: object


@dataclass
class Reply:
    """The assistant's answer to one message."""

    user: object
    message: str
    intent: str | None          # None: out of scope
    score: float                # in-scope score of the message
    route: str                  # "order", "search", "usuals", "handoff", "out-of-scope"
    text: str
    facts: list[Fact] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)

    def __str__(self) -> str:
        return self.text


class ServiceAssistant(Saveable):
    """Answers a shopper's messages from their purchase log.

    Parameters
    ----------
    search : xsell.apps.search.ProductSearch, optional
        A fitted search for product requests (without
        one, they are handed over).
    completer : xsell.cross_sell.completion.BasketCompleter, optional
        A fitted basket completer for complements of an order
        or of the shopper's usual products.
    classifier : optional
        An unfitted intent classifier with ``in_scope_score`` (default
        :class:`~xsell.apps.intents.EmbeddingIntentClassifier`).
    accept_rate : float
        Share of in-scope validation messages the scope threshold accepts. Bitext's
        validation messages are close paraphrases of its training messages, so a lower
        rate (0.95) sets a threshold that real phrasings often miss; 0.99 keeps 96% of the
        out-of-scope flags right and catches about half of them (the "Application cases"
        chapter measures both).

    Examples
    --------
    >>> bot = ServiceAssistant(search=engine).fit(messages, shop)   # doctest: +SKIP
    >>> print(bot.reply(user, "where is my order?"))                 # doctest: +SKIP
    """

    # The shop's orders are indexed again from the data on load.
    _derived_state = frozenset({"dataset_", "shop_"})

    def __init__(self, search=None, completer=None, classifier=None,
                 accept_rate: float = 0.99):
        self.search = search
        self.completer = completer
        self.classifier = classifier
        self.accept_rate = accept_rate

    def fit(self, messages: SupportMessages, shop: Dataset, seed: int = 0) -> ServiceAssistant:
        """Train the intent classifier on the messages' training split, calibrate the
        scope threshold on their validation split, and index the shop's orders."""
        parts = messages.split(seed=seed)
        self.classifier_ = (EmbeddingIntentClassifier() if self.classifier is None
                            else self.classifier)
        self.classifier_.fit(parts["train"]["text"].tolist(), parts["train"]["intent"].tolist())
        calibration = parts["validation"] if len(parts["validation"]) else parts["train"]
        self.threshold_ = ScopeThreshold(self.accept_rate).fit(
            self.classifier_.in_scope_score(calibration["text"].tolist()))
        self.category_of_ = {i: c for c, group in INTENT_CATEGORIES.items() for i in group}
        self._index_shop(shop)
        return self

    def _index_shop(self, shop: Dataset) -> None:
        self.shop_ = self.dataset_ = shop
        self._titles = shop.items.set_index(S.ITEM)[S.TITLE]
        self._by_user = {u: rows for u, rows in shop.interactions.groupby(S.USER, sort=False)}

    def _restore_state(self, state: dict, dataset: Dataset) -> None:
        super()._restore_state(state, dataset)
        self._index_shop(dataset)

    # ------------------------------------------------------------------ understanding
    def understand(self, messages: Iterable[str], store: bool = True) -> pd.DataFrame:
        """Intent, in-scope score and whether it is in scope, for each message
        (``store``: keep their vectors in the on-disk embedding cache)."""
        texts = [str(m) for m in messages]
        proba = self.classifier_.predict_proba(texts, store=store)
        score = self.classifier_.in_scope_score(texts, store=store)
        return pd.DataFrame({"message": texts,
                             "intent": self.classifier_.classes_[proba.argmax(axis=1)],
                             "score": score, "in_scope": self.threshold_.in_scope(score)})

    def product_words(self, message: str) -> list[str]:
        """Words of the message that name products in the catalogue (empty when none do,
        or when there is no search engine).

        Function words and the words of a request ("I need to order ...") are dropped
        *before* spelling correction, so "order" is never corrected into "border".
        """
        if self.search is None:
            return []
        normalizer = self.search.lexical_.normalizer
        vocabulary = self.search.lexical_.bm25.vocab_dict
        request = set(words(" ".join(REQUEST_WORDS)))
        kept = [w for w in words(message) if len(w) >= 3 and w not in normalizer.stop_words
                and w not in request]  # "I'd" leaves a "d", which names Vitamin D milk
        fixed = (normalizer.correct(w) if len(w) >= MIN_CORRECTED else w for w in kept)
        return [t for t in dict.fromkeys(fixed) if t in vocabulary]

    # ------------------------------------------------------------------ replying
    def reply(self, user, message: str) -> Reply:
        """Answer one message of shopper ``user``.

        Raises
        ------
        KeyError
            ``user`` is not in the shop's data (named).
        ValueError
            The message is empty.
        """
        if not str(message).strip():
            raise ValueError("the message is empty; write what you need, e.g. 'where is my "
                             "order?'")
        history = self._history(user)
        seen = self.understand([message], store=False).iloc[0]  # a one-off message
        entities = extract_entities(message)
        intent = seen["intent"] if seen["in_scope"] else None
        base = {"user": user, "message": str(message), "intent": intent,
                "score": float(seen["score"]), "entities": entities}
        if intent in ORDER_INTENTS:
            return self._order_reply(history, intent, entities, base)
        if intent in SHOPPING_INTENTS or intent is None:
            wanted = self.product_words(message)
            if wanted:
                return self._search_reply(user, wanted, base)
            if intent in SHOPPING_INTENTS:
                return self._usuals_reply(user, history, base)
            return Reply(**base, route="out-of-scope", text=(
                "I can help with orders, refunds, deliveries, payments, your account and "
                "finding products, but I did not understand this request; I am passing you "
                "to a person."))
        return self._handoff_reply(history, intent, base)

    def _history(self, user) -> pd.DataFrame:
        if user not in self._by_user:
            shown = ", ".join(repr(plain_value(u)) for u in list(self._by_user)[:3])
            raise KeyError(f"unknown user {user!r}: not in the shop's data "
                           f"({len(self._by_user):,} shoppers, e.g. {shown})")
        return self._by_user[user]

    def _title(self, item) -> str:
        return str(self._titles.get(item, item))

    def _listing(self, items) -> str:
        items = list(items)
        shown = ", ".join(self._title(i) for i in items[:SHOWN])
        return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")

    def _resolve_order(self, history: pd.DataFrame, entities: list[Entity]):
        """The order a message is about: the id given when it is the shopper's, else the
        most recent; plus the facts that resolution states."""
        latest = history.loc[history[S.SEQ].idxmax(), S.BASKET]
        facts = []
        given = [e for e in entities if e.type == "order_id"]
        # Ids are matched on their digits ("00123842" is order 123842; "O0000042" is 42).
        mine = {_digits(b): b for b in history[S.BASKET].unique()}
        for entity in given:
            basket = mine.get(_digits(entity.value))
            if basket is not None:
                return basket, [Fact("order", plain_value(basket))], ""
            facts.append(Fact("not_their_order", entity.value))
        note = (f"Order {given[0].value} is not one of your orders. " if given else "")
        facts += [Fact("order", plain_value(latest)), Fact("latest_order", plain_value(latest))]
        return latest, facts, note

    def _order_reply(self, history, intent, entities, base) -> Reply:
        basket, facts, note = self._resolve_order(history, entities)
        rows = history[history[S.BASKET] == basket].sort_values(
            "add_to_cart_order" if "add_to_cart_order" in history else S.ITEM, kind="stable")
        items = rows[S.ITEM].drop_duplicates().tolist()
        which = ("your most recent order" if any(f.kind == "latest_order" for f in facts)
                 else "order")
        facts.append(Fact("order_size", (plain_value(basket), len(items))))
        facts += [Fact("order_item", (plain_value(basket), plain_value(i)))
                  for i in items[:SHOWN]]
        head = (f"{note}{which[0].upper()}{which[1:]} #{plain_value(basket)} holds "
                f"{len(items)} item{'s' if len(items) != 1 else ''}: {self._listing(items)}.")
        if intent == "track_order":
            text = (f"{head} Where it is now is not in the purchase log: the delivery "
                    "system has its live status, and a person can check it for you.")
        elif intent == "cancel_order":
            text = (f"{head} I cannot cancel orders myself: cancelling needs the order "
                    f"system; a person will cancel order #{plain_value(basket)} if it has not "
                    "been delivered yet.")
        elif intent == "get_refund":
            amounts = [e for e in entities if e.type == "refund_amount"]
            facts += [Fact("amount", e.value) for e in amounts]
            said = (f" You mention {', '.join(_amount_text(base['message'], e) for e in amounts)}"
                    "; the log holds no prices, so the billing team checks the amount."
                    if amounts else "")
            text = (f"{head} Tell me which of these items the refund is for; the refund "
                    f"itself is issued by the billing team, not by me.{said}")
        else:  # change_order
            text = (f"{head} Changing an order needs the order system; a person can do it.")
            extra = self._complements(items, base["user"])
            if extra:
                facts += [Fact("complement", (plain_value(i), plain_value(b)))
                          for i, b in extra]
                text += " If you want to add something: " + self._complement_text(extra)
        return Reply(**base, route="order", text=text, facts=facts)

    def _complements(self, items, user) -> list[tuple]:
        """Up to three (complement, because) pairs for a set of items; none without a
        completer or when the items already cover every department."""
        if self.completer is None or not len(items):
            return []
        from xsell.cross_sell.completion import departments_left

        known = [i for i in items if i in self.completer.items_]
        if not known:
            return []
        try:
            departments_left(self.completer.dataset_, known)
            user = user if user in self.completer.dataset_.user_index else None
            ids = self.completer.complete(known, user=user, k=3)
        except ValueError:
            return []
        cooc = self._cooccurrence()
        codes = self.completer.items_.get_indexer(known)
        out = []
        for item in ids:
            column = cooc[:, self.completer.items_.get_loc(item)].toarray().ravel()[codes]
            if column.max() > 0:  # say "because" only where shoppers really bought both
                out.append((item, known[int(column.argmax())]))
        return out

    def _complement_text(self, pairs: list[tuple]) -> str:
        """'Shoppers who buy X also add A and B.' for (complement, because) pairs."""
        by_cause: dict = {}
        for item, because in pairs:
            by_cause.setdefault(because, []).append(self._title(item))
        parts = []
        for because, added in by_cause.items():
            listed = added[0] if len(added) == 1 else ", ".join(added[:-1]) + " and " + added[-1]
            parts.append(f"shoppers who buy {self._title(because)} also add {listed}")
        text = "; ".join(parts)
        return text[0].upper() + text[1:] + "."

    def _cooccurrence(self):
        """Baskets holding both items, item x item (of the completer's data)."""
        if getattr(self, "_cooc", None) is None:
            import scipy.sparse as sp

            data = self.completer.dataset_
            inter = data.interactions.drop_duplicates([S.USER, S.BASKET, S.ITEM])
            baskets = inter.groupby([S.USER, S.BASKET], sort=False).ngroup().to_numpy()
            codes = data.item_index.get_indexer(inter[S.ITEM])
            m = sp.csr_matrix((np.ones(len(codes)), (baskets, codes)),
                              shape=(baskets.max() + 1, len(data.item_index)))
            self._cooc = (m.T @ m).tocsc()
        return self._cooc

    def _search_reply(self, user, wanted: list[str], base) -> Reply:
        query = " ".join(wanted)
        personal = user in self.search.users_
        table = self.search.search(query, user=user if personal else None, k=SHOWN)
        facts = [Fact("search_result", plain_value(i)) for i in table[S.ITEM]]
        history = self._by_user[user]
        counts = history[S.ITEM].value_counts()
        lines = []
        for item in table[S.ITEM]:
            n = int(counts.get(item, 0))
            if n:
                facts.append(Fact("usual", (plain_value(item), n)))
            lines.append(self._title(item) + (f" (you bought it {n} time{'s' * (n != 1)})"
                                               if n else ""))
        how = ("ranked for you from what you buy" if personal
               else "not personalised: no purchase history in the search index")
        text = f"For \"{query}\" ({how}): " + "; ".join(lines) + "."
        return Reply(**base, route="search", text=text, facts=facts)

    def _usuals_reply(self, user, history, base) -> Reply:
        counts = history[S.ITEM].value_counts().head(SHOWN)
        facts = [Fact("usual", (plain_value(i), int(n))) for i, n in counts.items()]
        text = ("You usually buy " + "; ".join(
            f"{self._title(i)} ({int(n)} times)" for i, n in counts.items()) + ".")
        extra = self._complements(counts.index.tolist(), user)
        if extra:
            facts += [Fact("complement", (plain_value(i), plain_value(b))) for i, b in extra]
            text += " " + self._complement_text(extra)
        text += " Tell me a product to search for, or which of these to add."
        return Reply(**base, route="usuals", text=text, facts=facts)

    def _handoff_reply(self, history, intent, base) -> Reply:
        needs = HANDOFF.get(self.category_of_.get(intent, ""), "a person")
        what = intent.replace("_", " ")
        text = (f"This looks like '{what}': I am passing you to a person." if needs == "a person"
                else f"This looks like '{what}'. That needs {needs}, which I cannot reach: I "
                     "am passing you to a person.")
        facts = []
        if intent == "complaint":
            latest = history.loc[history[S.SEQ].idxmax(), S.BASKET]
            facts = [Fact("order", plain_value(latest)), Fact("latest_order", plain_value(latest))]
            text += f" I will tell them your most recent order is #{plain_value(latest)}."
        return Reply(**base, route="handoff", text=text, facts=facts)
