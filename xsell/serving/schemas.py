"""The HTTP API's request and response bodies (pydantic; FastAPI validates them, and a
running server documents every field at ``/docs`` and ``/openapi.json``).

=====================  ==============================================================
``RecommendRequest``   ``user``, ``k`` (1-100, default 10), ``objective`` (``all``,
                       ``explore`` -- the default -- or ``cross-category``), ``explain``,
                       ``model`` (``hybrid`` -- the default -- or ``two-tower``)
``RecommendResponse``  ``user``, ``objective``, ``model``, ``items`` (ranked),
                       ``took_ms``
``CompleteRequest``    ``items`` (the cart, 1-200 ids), ``user`` (optional), ``k``,
                       ``explain``
``CompleteResponse``   ``cart``, ``items`` (complements from other departments),
                       ``took_ms``
``RankedItem``         ``item_id``, ``title``, ``department``, ``new_department``,
                       ``because``, ``evidence``, ``contribution``
``SearchRequest``      ``q``, ``user`` (optional), ``k`` -- the query string of
                       ``GET /search``
``SearchResponse``     ``query``, ``user``, ``personalized``, ``note``, ``items`` (each
                       with ``why``), ``took_ms``
``AssistRequest``      ``user``, ``message``
``AssistResponse``     ``user``, ``intent``, ``route``, ``text``, ``facts``, ``took_ms``
``EventRequest``       ``user``, ``items``, ``timestamp`` (optional, ISO 8601)
``EventResponse``      ``event_id``, ``user``, ``items``, ``baskets_since_fit``,
                       ``took_ms``
``NewItemRequest``     ``item_id``, ``title``, ``category`` (levels joined by ``" > "``),
                       ``brand``, ``price``, ``description`` (all but the first two
                       optional)
``NewItemResponse``    ``item``, ``serves``, ``ignores``, ``note``, ``took_ms``
``Health``             ``status``, ``dataset``, ``users``, ``items``, ``items_added``,
                       ``worker``, ``objectives``, ``events``, ``event_log``,
                       ``created``, ``xsell_version``
``ErrorDetail``        every 4xx: ``field``, ``value``, ``message`` (``errors``: all of a
                       body's validation errors)
=====================  ==============================================================

Requests refuse fields they do not know (``extra="forbid"``): a misspelt ``objectve``
is a 422 naming it, not a silently ignored option.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

#: Largest list length a request may ask for.
MAX_K = 100
#: Largest cart ``/complete`` accepts.
MAX_CART = 200
#: Longest search query or assistant message, in characters.
MAX_TEXT = 1000
#: Longest id a request may send.
MAX_ID = 256
#: Longest product title or brand a new item may have, in characters.
MAX_TITLE = 300


def _integer_as_text(value):
    """Numeric ids may come as JSON numbers; they are matched against the data as text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _encodable(value: str) -> str:
    """JSON may escape a lone surrogate (``"\\ud800"``), which no file or database can
    store: refused here, as a 422, not as a failure when the event is logged."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text that is not valid unicode (a lone surrogate)") from None
    return value


# An item or user id -- a string, or a JSON integer for numeric ids (matched as text). The
# length constraint makes pydantic read it as strict UTF-8: a lone surrogate is a 422.
Id = Annotated[Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID)],
               BeforeValidator(_integer_as_text)]
#: Free text of a request (a query, a message).
Text = Annotated[str, AfterValidator(_encodable)]
Objective = Literal["all", "explore", "cross-category"]
Model = Literal["hybrid", "two-tower"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Request):
    """A shopper's next items."""

    user: Id = Field(description="a customer of the bundle's data")
    k: int = Field(10, ge=1, le=MAX_K, description="how many items")
    objective: Objective = Field(
        "explore", description="all: what they will buy next, re-buys included in the "
        "ranking; explore: products new to them; cross-category: new to them and the hybrid "
        "learns to prefer departments they never bought from")
    explain: bool = Field(True, description="each item with the purchase that supports it")
    model: Model = Field(
        "hybrid", description="hybrid: the learnt combination of the two-tower and the "
        "collaborative models; two-tower: the LM two-tower alone, from its nearest-neighbour "
        "index (objectives all and explore)")


class CompleteRequest(_Request):
    """Complements of a cart from departments it lacks."""

    items: list[Id] = Field(min_length=1, max_length=MAX_CART, description="the cart's items")
    user: Id | None = Field(None, description="the shopper, if known (their history helps)")
    k: int = Field(10, ge=1, le=MAX_K)
    explain: bool = True


class SearchRequest(_Request):
    """A search box's query (sent as ``GET /search?q=...&user=...&k=...``)."""

    q: Text = Field(min_length=1, max_length=MAX_TEXT, description="what the shopper typed")
    user: Id | None = Field(None, description="the shopper, if known: the ranking is then "
                            "personalised by what they buy")
    k: int = Field(10, ge=1, le=MAX_K)


class AssistRequest(_Request):
    """One message to the customer-service assistant."""

    user: Id = Field(description="a customer of the bundle's data")
    message: Text = Field(min_length=1, max_length=MAX_TEXT)


class EventRequest(_Request):
    """A purchase that just happened: logged, and the shopper's next lists reflect it."""

    user: Id = Field(description="the shopper (a new id starts a new shopper's history)")
    items: list[Id] = Field(min_length=1, max_length=MAX_CART, description="what they bought")
    timestamp: datetime | None = Field(None, description="when (ISO 8601); default: now")


class NewItemRequest(_Request):
    """A product new to the catalogue: searchable and recommendable at once."""

    item_id: Id = Field(description="its id, new to the catalogue (of the catalogue's id "
                        "type: a number where the ids are numbers)")
    title: Text = Field(min_length=1, max_length=MAX_TITLE)
    category: Text | None = Field(None, max_length=MAX_TITLE, description="its category "
                                  "path, levels joined by ' > ', e.g. 'snacks > chips "
                                  "pretzels'")
    brand: Text | None = Field(None, max_length=MAX_TITLE)
    price: float | None = Field(None, ge=0, allow_inf_nan=False)
    description: Text | None = Field(None, max_length=MAX_TEXT)


class EventResponse(BaseModel):
    event_id: int = Field(description="its id in the event log (on disk when this returns)")
    user: Id
    items: int
    baskets_since_fit: int = Field(description="the shopper's baskets bought after the "
                                   "bundle was fitted, this one included")
    took_ms: float


class Item(BaseModel):
    """A catalogue item as the API shows it."""

    item_id: Id
    title: str
    department: str | None = None


class RankedItem(Item):
    """An item of a ranked list, with its explanation when one was asked for."""

    new_department: bool | None = Field(
        None, description="from a department the shopper (or cart) has not bought from")
    because: str | None = Field(None, description="the purchase that supports it most")
    evidence: str | None = Field(None, description="co-occurrence or text similarity")
    contribution: float | None = Field(None, description="that purchase's share of the "
                                       "evidence")


class SearchItem(Item):
    """A search result and why it was ranked there."""

    why: str = Field(description="e.g. 'text match: apple; you buy this (3x)'")


class SearchResponse(BaseModel):
    query: str
    user: Id | None
    personalized: bool = Field(description="ranked with the shopper's purchases")
    note: str | None = Field(None, description="why the ranking is not personalised")
    items: list[SearchItem]
    took_ms: float


class Fact(BaseModel):
    """A statement of a reply about the shopper's data, checkable against it
    (:class:`xsell.apps.assistant.Fact`)."""

    kind: str = Field(description="order, latest_order, order_size, order_item, usual, "
                      "complement, search_result, not_their_order or amount")
    value: Any


class AssistResponse(BaseModel):
    user: Id
    intent: str | None = Field(description="the message's intent; None: out of scope")
    route: str = Field(description="order, search, usuals, handoff or out-of-scope")
    text: str
    facts: list[Fact]
    took_ms: float


class RecommendResponse(BaseModel):
    user: Id
    objective: Objective
    model: Model
    items: list[RankedItem]
    took_ms: float = Field(description="time spent in the model, server side")


class CompleteResponse(BaseModel):
    cart: list[Item]
    items: list[RankedItem]
    took_ms: float


class Health(BaseModel):
    status: Literal["ok"]
    dataset: str
    users: int
    items: int = Field(description="the catalogue the bundle was fitted on")
    items_added: int = Field(description="products added since (POST /items)")
    worker: int = Field(description="the answering server process's id (xsell serve "
                        "--workers N runs N processes)")
    objectives: list[str]
    events: int = Field(description="purchase events served since the bundle was fitted")
    event_log: str | None = Field(description="the event log's file (None: in memory only)")
    created: str
    xsell_version: str


class ErrorDetail(BaseModel):
    """What a 4xx names: the request field, the value sent and what is wrong with it."""

    field: str = Field(description="e.g. 'user', 'k', 'items.2' (the third cart item)")
    value: Any = Field(None, description="the value sent (long text cut to 200 characters)")
    message: str
    errors: list[dict] | None = Field(None, description="every validation error, when the "
                                      "body has more than one")


class Error(BaseModel):
    detail: ErrorDetail


class NewItemResponse(BaseModel):
    item: Item
    serves: list[str] = Field(description="what serves it now, e.g. 'search', "
                              "'recommend:two-tower'")
    ignores: list[str] = Field(description="what knows items by id: it serves the item "
                               "from the next fit on")
    note: str
    took_ms: float = Field(description="encoding and indexing, server side")
