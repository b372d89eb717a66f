"""The HTTP API over a loaded bundle (FastAPI; run it with ``xsell serve DIR``).

Every answer is JSON. A request the API cannot serve gets a 4xx whose body is one shape,
``{"detail": {"field", "value", "message"}}`` (``ErrorDetail`` of
:mod:`xsell.serving.schemas`): 404 for an id the data does not hold, 422 for a body that
does not validate (the first of pydantic's errors named, all of them under ``errors``) or
asks what the bundle cannot do. An unexpected failure is a 500 with a one-line body -- the traceback goes to the
server's log, never to the client.

``POST /recommend`` with ``"model": "two-tower"`` serves the LM two-tower alone from the
nearest-neighbour index of its item vectors (:mod:`xsell.serving.retrieval`).
``GET /search`` ranks the catalogue for a query, personalised by the shopper's purchases
at the fit (a shopper new since then is served the non-personal ranking, and the answer
says so); ``POST /assist`` answers a customer-service message from the shopper's orders.

``POST /events`` logs a purchase durably (:class:`~xsell.serving.events.EventLog`) before
it answers and runs the user tower on the shopper's new history; their next
``/recommend`` (hybrid or two-tower) scores from their history with it. ``POST /items``
logs a new product and indexes its text at once (:mod:`xsell.serving.catalogue`): search
and the two-tower serve it, the models that know items by id from the next fit. On start
the log is replayed (products, then purchases), so a restarted server serves the state
it had.

The models' weights are read-only here, so requests run concurrently in FastAPI's thread
pool; the indexes a new product grows are read under a shared lock it writes alone under.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from xsell import __version__
from xsell.apps.query import EmptyQueryError
from xsell.cross_sell.completion import as_ids, departments_left
from xsell.cross_sell.service import complete_cart, describe_list, recommend_for_user
from xsell.data import schema as S
from xsell.data.dataset import plain_value
from xsell.serving.bundle import Bundle
from xsell.serving.catalogue import ID_COMPONENTS, LiveCatalogue, SharedLock, index_new_items
from xsell.serving.events import EventLog, LiveHistories
from xsell.serving.retrieval import TwoTowerRetriever
from xsell.serving.schemas import (
    AssistRequest,
    AssistResponse,
    CompleteRequest,
    CompleteResponse,
    Error,
    EventRequest,
    EventResponse,
    Fact,
    Health,
    Item,
    NewItemRequest,
    NewItemResponse,
    RecommendRequest,
    RecommendResponse,
    SearchItem,
    SearchRequest,
    SearchResponse,
)

__all__ = ["ApiError", "FOLLOW_SECONDS", "WORKER_BUNDLE", "WORKER_EVENTS", "WORKER_INDEX",
           "WORKER_INDEX_DIR", "app_from_environment", "create_app"]

log = logging.getLogger("xsell.serve")


class ApiError(Exception):
    """A request the API refuses: status code, the field, the value and why."""

    def __init__(self, status: int, field: str, value, message: str):
        super().__init__(message)
        self.status, self.field, self.value, self.message = status, field, value, message


def create_app(bundle: Bundle, events: EventLog | None = None,
               follow: float | None = None, index: str = "auto",
               index_dir: str | os.PathLike | None = None) -> FastAPI:
    """The FastAPI application serving ``bundle`` (see the module docstring).

    Parameters
    ----------
    bundle : xsell.serving.bundle.Bundle
        The loaded bundle (:func:`~xsell.serving.bundle.load_bundle`). The application
        owns it: ``POST /items`` grows its product search's indexes in place, so two
        applications need two loaded bundles.
    events : xsell.serving.events.EventLog, optional
        The durable event log, replayed now; without one, events are kept in memory only
        (an SQLite database that lives as long as the server).
    follow : float, optional
        Read the log every ``follow`` seconds for the products and purchases that other
        server processes sharing it logged (``xsell serve --workers N``).
    index : str
        The nearest-neighbour indexes of the two-tower and of the search's dense
        retrieval (:func:`xsell.index.build_index`): ``"auto"`` is exact up to 100,000
        items, faiss IVF above (the search keeps the kind it was fitted with).
    index_dir : path-like, optional
        Where faiss indexes are built once and memory-mapped from, shared by the server
        processes of this machine (``xsell serve`` uses ``DIR-index`` beside the bundle).
    """
    data = bundle.data
    log_file = None if events is None else str(events.path)
    events = events if events is not None else EventLog(":memory:")
    live = LiveHistories(data)
    catalogue = LiveCatalogue(data)
    shared = SharedLock()  # the indexes POST /items grows
    two_tower = bundle.two_tower
    retriever = None if two_tower is None else TwoTowerRetriever(
        two_tower, kind=index,
        index_file=None if index_dir is None else Path(index_dir) / "two-tower.faiss")
    if index_dir is not None:  # before any product is added to it
        bundle.search.share_index(Path(index_dir) / "search-dense.faiss",
                                  kind=None if index == "auto" else index)
    ordered = threading.Lock()
    # how far this process has read the log; what it logged itself (applied already)
    seen = {"items": 0, "events": bundle.manifest.get("events_through", 0)}
    mine_items: set[int] = set()
    mine_events: set[int] = set()

    def history_of(user) -> pd.DataFrame:
        """The shopper's training rows and the baskets logged since (they have events)."""
        return live.history(user, _known_user(data, user))

    def fitted_history_of(user) -> pd.DataFrame:
        """:func:`history_of` without products added since the fit (the hybrids' models
        know items by id)."""
        rows = history_of(user)
        return rows[data.item_index.get_indexer(rows[S.ITEM]) >= 0]

    def add_products(rows: list[tuple]) -> list[str]:
        """Index new products ``(id, fields)`` (already logged); what serves them."""
        frame = pd.concat([catalogue.add(item, fields) for item, fields in rows],
                          ignore_index=True)
        return index_new_items(frame, bundle.search, retriever)

    def catch_up() -> int:
        """Apply what the log holds beyond what this process has read -- on start the
        whole log (a restart), later what other processes sharing it logged: the
        products first, then the purchases (which may name them). The number skipped
        (purchases of items this catalogue lacks)."""
        skipped = 0
        if events.items(after=seen["items"]):  # a cheap look before taking the lock
            with shared.writing():
                new = []
                for entry in events.items(after=seen["items"]):
                    seen["items"] = entry.log_id
                    item = catalogue.as_id(entry.item_id)
                    if entry.log_id in mine_items or item in catalogue:
                        mine_items.discard(entry.log_id)  # its own, or in the fitted data
                        continue
                    new.append((item, entry.fields))
                if new:
                    add_products(new)
        if events.events(after=seen["events"]):
            with ordered:
                users = set()
                for event in events.events(after=seen["events"]):
                    seen["events"] = event.event_id
                    if event.event_id in mine_events:
                        mine_events.discard(event.event_id)
                        continue
                    items = [catalogue.as_id(i) for i in event.items]
                    if any(i not in catalogue for i in items):
                        skipped += 1  # logged for an earlier catalogue: the next fit reads it
                        continue
                    live.add(event, items)
                    users.add(event.user)
                for user in users if retriever is not None else ():
                    retriever.update(user, history_of(user))  # their user vectors
        return skipped

    skipped = catch_up()  # the log as this process finds it
    if skipped:
        log.warning("%s: %d events name items this bundle's catalogue lacks; not replayed",
                    log_file, skipped)
    # MiniLM is read on first use: load it now, not during a shopper's first query
    bundle.search.text_encoder_.encode(["warm up"], store=False)
    bundle.assistant.understand(["warm up"], store=False)
    # room for new products in the indexes' buffers now, not on a request
    bundle.search.dense_.reserve(NEW_ITEM_ROOM)
    if retriever is not None:
        retriever.index.reserve(NEW_ITEM_ROOM)
    stop = threading.Event()

    def follow_log() -> None:
        while not stop.wait(follow):
            try:
                catch_up()
            except Exception:  # logged; the next read tries again
                log.exception("reading %s for other processes' events failed", log_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        reader = None
        if follow:
            reader = threading.Thread(target=follow_log, name="xsell-follow-log", daemon=True)
            reader.start()
        yield
        stop.set()
        if reader is not None:
            reader.join(timeout=10)

    app = FastAPI(title="xsell", version=__version__, lifespan=lifespan,
                  description=f"Cross-category recommendations for {data.name} "
                              f"({data.n_users:,} shoppers, {data.n_items:,} items).")
    errors = {404: {"model": Error}, 422: {"model": Error}}

    @app.exception_handler(ApiError)
    async def _refused(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(status_code=err.status, content={"detail": {
            "field": err.field, "value": err.value, "message": err.message}})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        found = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", "")),
                  "type": str(e.get("type", ""))} for e in err.errors()]
        first = err.errors()[0] if err.errors() else {}
        return JSONResponse(status_code=422, content={"detail": {
            "field": found[0]["field"] if found else "body",
            "value": _shown(first.get("input")),
            "message": found[0]["message"] if found else "invalid request",
            "errors": found}})

    @app.exception_handler(Exception)
    async def _failed(request: Request, err: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": "internal error (see the "
                                                      "server log)"})

    @app.get("/health", response_model=Health)
    def health() -> Health:
        m = bundle.manifest
        return Health(status="ok", dataset=data.name, users=data.n_users, items=data.n_items,
                      items_added=len(catalogue.added), worker=os.getpid(),
                      objectives=list(bundle.hybrids), events=live.n_events,
                      event_log=log_file, created=m.get("created", ""),
                      xsell_version=__version__)

    @app.post("/recommend", response_model=RecommendResponse, responses=errors,
              response_model_exclude_none=True)
    def recommend(body: RecommendRequest) -> RecommendResponse:
        if body.model == "two-tower":
            return recommend_two_tower(body)
        model = bundle.hybrids.get(body.objective)
        if model is None:
            raise ApiError(422, "objective", body.objective,
                           f"this bundle serves the objectives {', '.join(bundle.hybrids)}")
        explainer = bundle.explainer if body.explain else None
        start = time.perf_counter()
        if live.has_events(body.user):  # training history + the baskets bought since
            table = recommend_for_user(model, k=body.k, explainer=explainer,
                                       interactions=fitted_history_of(body.user))
        else:
            table = recommend_for_user(model, _user(data, body.user), k=body.k,
                                       explainer=explainer)
        return RecommendResponse(user=body.user, objective=body.objective, model=body.model,
                                 items=_ranked(table), took_ms=_ms(start))

    def recommend_two_tower(body: RecommendRequest) -> RecommendResponse:
        if retriever is None:
            raise ApiError(422, "model", body.model, "this bundle's hybrids have no two-tower")
        if body.objective == "cross-category":
            raise ApiError(422, "objective", body.objective, "the two-tower alone serves the "
                           "objectives all and explore (cross-category is the hybrid's)")
        if not retriever.has_user(body.user):
            _user(data, body.user)  # 404, naming the id
        start = time.perf_counter()
        with shared.reading():
            # both objectives list items new to the shopper, as the hybrids' lists do
            ids = retriever.recommend(body.user, k=body.k)
            past = (fitted_history_of(body.user) if live.has_events(body.user)
                    else data.user_interactions(_known_user(data, body.user)))
            fitted = data.item_index.get_indexer(ids) >= 0
            table = describe_list(data, ids[fitted], past,
                                  bundle.explainer if body.explain else None)
            if not fitted.all():  # products added since the fit, described from their rows
                added = catalogue.describe(ids[~fitted])
                bought = set(data.item_category(0).reindex(past[S.ITEM]))
                added["new_department"] = [d not in bought for d in added["department"]]
                table = pd.concat([table, added])
                table = table.loc[[i for i in ids if i in table.index]]
        return RecommendResponse(user=body.user, objective=body.objective, model=body.model,
                                 items=_ranked(table), took_ms=_ms(start))

    @app.post("/complete", response_model=CompleteResponse, responses=errors,
              response_model_exclude_none=True)
    def complete(body: CompleteRequest) -> CompleteResponse:
        items = _items(catalogue, body.items, "items", "cart completion")
        user = None if body.user is None else _user(data, body.user)
        try:
            departments_left(data, items)
        except ValueError as err:
            raise ApiError(422, "items", body.items, str(err)) from None
        start = time.perf_counter()
        table = complete_cart(bundle.completer, items, user=user, k=body.k,
                              explainer=bundle.explainer if body.explain else None)
        return CompleteResponse(cart=[_item(catalogue, i) for i in items], items=_ranked(table),
                                took_ms=_ms(start))

    @app.get("/search", response_model=SearchResponse, responses=errors,
             response_model_exclude_none=True)
    def search(params: Annotated[SearchRequest, Query()]) -> SearchResponse:
        user, note = None, None
        if params.user is not None:
            user = _known_user(data, params.user)
            if user is None and not live.has_events(params.user):
                _user(data, params.user)  # 404, naming the id
            if user is None:
                note = ("a shopper new since the bundle was fitted: the ranking is not "
                        "personalised until the next fit")
        start = time.perf_counter()
        try:
            with shared.reading():
                table = bundle.search.search(params.q, user=user, k=params.k)
        except EmptyQueryError as err:
            raise ApiError(422, "q", _shown(params.q), str(err)) from None
        items = [SearchItem(item_id=plain_value(row[S.ITEM]), title=str(row["title"]),
                            department=_text(row["department"]), why=str(row["why"]))
                 for _, row in table.iterrows()]
        return SearchResponse(query=params.q, user=params.user, personalized=user is not None,
                              note=note or table.attrs.get("note"), items=items,
                              took_ms=_ms(start))

    @app.post("/assist", response_model=AssistResponse, responses=errors)
    def assist(body: AssistRequest) -> AssistResponse:
        user = _user(data, body.user)
        start = time.perf_counter()
        try:
            with shared.reading():  # the assistant's product questions search
                reply = bundle.assistant.reply(user, body.message)
        except ValueError as err:  # a message of only white space
            raise ApiError(422, "message", _shown(body.message), str(err)) from None
        return AssistResponse(user=body.user, intent=reply.intent, route=reply.route,
                              text=reply.text, took_ms=_ms(start),
                              facts=[Fact(kind=f.kind, value=_json_value(f.value))
                                     for f in reply.facts])

    @app.post("/events", response_model=EventResponse, status_code=201, responses=errors)
    def add_event(body: EventRequest) -> EventResponse:
        items = _items(catalogue, body.items, "items")  # products added since included
        start = time.perf_counter()
        stamp = None if body.timestamp is None else body.timestamp.isoformat()
        with ordered:  # the served order of a shopper's baskets is the log's order
            event = events.append(body.user, [str(i) for i in items], stamp)  # on disk now
            mine_events.add(event.event_id)
            live.add(event, items)
            if retriever is not None:  # the user tower on the new history
                retriever.update(body.user, history_of(body.user))
        return EventResponse(event_id=event.event_id, user=body.user, items=len(items),
                             baskets_since_fit=live.n_baskets(body.user), took_ms=_ms(start))

    @app.post("/items", response_model=NewItemResponse, status_code=201,
              responses={**errors, 409: {"model": Error}})
    def add_item(body: NewItemRequest) -> NewItemResponse:
        start = time.perf_counter()
        fields = body.model_dump(exclude={"item_id"}, exclude_none=True)
        with shared.writing():
            item = catalogue.as_id(body.item_id)
            if isinstance(item, str) and pd.api.types.is_numeric_dtype(data.item_index):
                raise ApiError(422, "item_id", body.item_id, f"item id {body.item_id!r} is "
                               "not a number, as this catalogue's ids are")
            if item in catalogue:
                raise ApiError(409, "item_id", body.item_id, f"item id {body.item_id!r} is "
                               "in the catalogue already")
            try:  # on disk before it is served
                mine_items.add(events.add_item(body.item_id, fields).log_id)
            except ValueError:  # another server process logged that id a moment ago
                raise ApiError(409, "item_id", body.item_id, f"item id {body.item_id!r} "
                               "was added already (by another server process)") from None
            serves = add_products([(item, fields)])
        return NewItemResponse(
            item=_item(catalogue, item), serves=serves, ignores=list(ID_COMPONENTS),
            took_ms=_ms(start),
            note="searchable" + (" and recommendable by the two-tower" if len(serves) > 1
                                 else "") + " now, from its text; what knows items by id "
                 "(the hybrids, cart completion, explanations, the search's buy-again and "
                 "co-occurrence signals) serves it from the next fit on "
                 "(xsell fit --events adds it to the catalogue)")

    @app.get("/items/{item_id}", response_model=Item, responses=errors)
    def item(item_id: str) -> Item:
        return _item(catalogue, _items(catalogue, [item_id], "item_id")[0])

    return app


#: Environment variables naming the bundle, the event log and the two-tower's index (kind,
#: then folder) of ``xsell serve --workers``.
WORKER_BUNDLE, WORKER_EVENTS = "XSELL_SERVE_BUNDLE", "XSELL_SERVE_EVENTS"
WORKER_INDEX, WORKER_INDEX_DIR = "XSELL_SERVE_INDEX", "XSELL_SERVE_INDEX_DIR"
#: How often each of several server processes reads the log for the others' events.
FOLLOW_SECONDS = 0.1


def app_from_environment() -> FastAPI:
    """The application of one of ``xsell serve --workers N``'s processes: the bundle and
    the event log the environment names (:data:`WORKER_BUNDLE`, :data:`WORKER_EVENTS`),
    following the log for what the other processes add.

    Each process loads the bundle; its large arrays -- the two-tower's item table that
    its exact index searches, the search's text vectors -- are memory-mapped read-only
    from the bundle's files (:mod:`xsell.checkpoint`), and a faiss index is built once
    and mapped by all (:func:`xsell.index.shared_index`), so the processes share one copy
    in memory.
    """
    from xsell.serving.bundle import load_bundle

    missing = [name for name in (WORKER_BUNDLE, WORKER_EVENTS) if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not set: start the processes with "
                           "`xsell serve DIR --workers N`")
    bundle = load_bundle(os.environ[WORKER_BUNDLE])
    return create_app(bundle, EventLog(os.environ[WORKER_EVENTS]), follow=FOLLOW_SECONDS,
                      index=os.environ.get(WORKER_INDEX, "auto"),
                      index_dir=os.environ.get(WORKER_INDEX_DIR) or None)


# ---------------------------------------------------------------------- helpers
#: New products the indexes' buffers have room for from the start (more are added too:
#: a full buffer doubles, copying only the products added before).
NEW_ITEM_ROOM = 4096


def _known_user(data, user):
    """The shopper's id in the training data, or None for a shopper new since the fit."""
    uid = as_ids([user], data.user_index)[0]
    return uid if data.user_index.get_indexer([uid])[0] >= 0 else None


def _field(loc) -> str:
    """``("body", "items", 2)`` -> ``"items.2"``: the field as the client wrote it."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    return _printable(".".join(parts)[:200]) or "body"


def _printable(text: str) -> str:
    """Text that encodes as UTF-8 (a lone surrogate a client sent is shown escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(value):
    """A value to echo back: JSON scalars as they are, long text cut, containers dropped."""
    if isinstance(value, str):
        return _printable(value if len(value) <= 200 else value[:200] + "...")
    if value is None or isinstance(value, bool | int | float):
        return value
    return None


def _user(data, user):
    uid = as_ids([user], data.user_index)[0]
    if data.user_index.get_indexer([uid])[0] < 0:
        raise ApiError(404, "user", user,
                       f"unknown user {user!r}: not among the bundle's {data.n_users:,} "
                       "shoppers (a shopper with fewer baskets than serving needs, or added "
                       "after the bundle was fitted)")
    return uid


def _items(catalogue: LiveCatalogue, items: list, field: str,
           fitted_only: str | None = None) -> list:
    """The ids in the catalogue's id type; 404 naming those it lacks. ``fitted_only``
    names what cannot serve a product added since the fit (a 422 for those)."""
    data = catalogue.data
    ids = as_ids(list(items), data.item_index)
    fitted = data.item_index.get_indexer(ids) >= 0
    unknown = [i for i, j, f in zip(items, ids, fitted, strict=True)
               if not f and j not in catalogue.added]
    if unknown:
        raise ApiError(404, field, unknown[:20],
                       f"unknown item id(s) {', '.join(map(repr, unknown[:5]))}"
                       f"{' ...' if len(unknown) > 5 else ''}: not in the bundle's catalogue "
                       f"({len(catalogue):,} items)")
    late = [i for i, f in zip(items, fitted, strict=True) if not f]
    if fitted_only and late:
        raise ApiError(422, field, late[:20],
                       f"item id(s) {', '.join(map(repr, late[:5]))} were added after the "
                       f"bundle was fitted: {fitted_only} knows them from the next fit")
    return list(ids)


def _item(catalogue: LiveCatalogue, item_id) -> Item:
    if item_id in catalogue.added:
        row = catalogue.describe([item_id]).iloc[0]
    else:
        row = _catalogue(catalogue.data).loc[item_id]
    return Item(item_id=plain_value(item_id), title=str(row["title"]),
                department=_text(row["department"]))


def _catalogue(data) -> pd.DataFrame:
    """Titles and departments by item id, built once per dataset."""
    table = getattr(data, "_serving_catalogue", None)
    if table is None:
        items = data.items.set_index("item_id")
        titles = items["title"] if "title" in items else items.index.astype(str).to_series()
        table = pd.DataFrame({"title": titles.reindex(data.item_index).astype(str),
                              "department": data.item_category(0).reindex(data.item_index)})
        data._serving_catalogue = table
    return table


def _ranked(table: pd.DataFrame) -> list[dict]:
    out = []
    for item_id, row in table.iterrows():
        entry = {"item_id": plain_value(item_id), "title": str(row["title"]),
                 "department": _text(row.get("department"))}
        for name in ("new_department", "because", "evidence", "contribution"):
            if name in row and not _missing(row[name]):
                entry[name] = plain_value(row[name])
        out.append(entry)
    return out


def _json_value(value):
    """A fact's value as JSON: tuples become lists, numpy scalars plain numbers."""
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    return plain_value(value)


def _text(value) -> str | None:
    return None if _missing(value) else str(value)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float | np.floating) and np.isnan(value))


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
