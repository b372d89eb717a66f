"""Live purchases and new products: a durable event log and the histories it extends.

``POST /events`` appends a purchase to :class:`EventLog` and to :class:`LiveHistories`;
the next ``/recommend`` for that shopper scores from their training history plus the new
baskets. No model is refitted: every model scores from a history it is given
(:meth:`xsell.models.base.Recommender.recommend`'s ``history``) -- buy-again counts it,
EASE and co-occurrence read it, ALS folds the shopper in, the two-tower's user tower runs
on it. The weights themselves change only at the next ``xsell fit``.

Why SQLite: it is in the standard library, one file, and its write-ahead log with
``synchronous=FULL`` returns from a commit only once the event is on disk, so an event
acknowledged with a 2xx survives a killed server (and a power cut); readers do not block
the writer. A shop with several servers would keep the same table in a server database
(PostgreSQL); :class:`EventLog`'s few methods are all serving needs.

``POST /items`` logs a new product in the same file (table ``items``) before it answers,
so a restarted server indexes it again and the nightly fit adds it to the catalogue.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from xsell.cross_sell.completion import as_ids
from xsell.data import schema as S
from xsell.data.dataset import Dataset

__all__ = ["Event", "EventLog", "LiveHistories", "LoggedItem", "with_events"]


@dataclass(frozen=True)
class Event:
    """One purchase: a shopper's basket, as logged."""

    event_id: int
    user: str
    items: tuple[str, ...]
    timestamp: str | None
    received: float


@dataclass(frozen=True)
class LoggedItem:
    """A product added while serving, as logged: its id and catalogue fields."""

    item_id: str
    fields: dict
    received: float
    log_id: int = 0  #: its row in the log (the order products were added in)


class EventLog:
    """An append-only log of purchase events (and new products) in an SQLite file (WAL
    mode).

    Parameters
    ----------
    path : path-like
        The database file (created with its table when missing).

    Raises
    ------
    ValueError
        If ``path`` exists and is not an event log of this format (named).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False,
                                       isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY "
                             "AUTOINCREMENT, user TEXT NOT NULL, items TEXT NOT NULL, "
                             "timestamp TEXT, received REAL NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY "
                             "AUTOINCREMENT, item TEXT NOT NULL UNIQUE, fields TEXT NOT NULL, "
                             "received REAL NOT NULL)")
            tables = {name: [row[1] for row in self._db.execute(f"PRAGMA table_info({name})")]
                      for name in ("events", "items")}
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{self.path}: not an xsell event log ({err})") from None
        expected = {"events": ["id", "user", "items", "timestamp", "received"],
                    "items": ["id", "item", "fields", "received"]}
        for name, columns in tables.items():
            if columns != expected[name]:
                raise ValueError(f"{self.path}: its {name!r} table has the columns "
                                 f"{columns}, not those of an xsell event log")
        self._lock = threading.Lock()  # one connection, shared by the server's threads

    def append(self, user: str, items: list[str], timestamp: str | None = None) -> Event:
        """Log one purchase; returns once it is on disk."""
        received = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO events (user, items, timestamp, received) VALUES (?, ?, ?, ?)",
                (str(user), json.dumps([str(i) for i in items]), timestamp, received))
        return Event(int(cursor.lastrowid), str(user), tuple(map(str, items)), timestamp,
                     received)

    def events(self, after: int = 0) -> list[Event]:
        """Every event with an id above ``after``, in log order."""
        with self._lock:
            rows = self._db.execute("SELECT id, user, items, timestamp, received FROM events "
                                    "WHERE id > ? ORDER BY id", (after,)).fetchall()
        return [Event(int(i), u, tuple(json.loads(items)), ts, float(r))
                for i, u, items, ts, r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def add_item(self, item_id: str, fields: dict) -> LoggedItem:
        """Log a new product (``fields``: its catalogue columns); returns once it is on
        disk.

        Raises
        ------
        ValueError
            If the log holds that id already.
        """
        received = time.time()
        try:
            with self._lock:
                cursor = self._db.execute(
                    "INSERT INTO items (item, fields, received) VALUES (?, ?, ?)",
                    (str(item_id), json.dumps(fields), received))
        except sqlite3.IntegrityError:
            raise ValueError(f"item {item_id!r} is in the event log already") from None
        return LoggedItem(str(item_id), dict(fields), received, int(cursor.lastrowid))

    def items(self, after: int = 0) -> list[LoggedItem]:
        """Every logged product with a row above ``after``, in the order they were added."""
        with self._lock:
            rows = self._db.execute("SELECT item, fields, received, id FROM items "
                                    "WHERE id > ? ORDER BY id", (after,)).fetchall()
        return [LoggedItem(i, json.loads(f), float(r), int(n)) for i, f, r, n in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class LiveHistories:
    """Each shopper's history as served: training rows, then one basket per event.

    Parameters
    ----------
    data : Dataset
        The bundle's training data (its ids decide how event ids are typed).
    """

    def __init__(self, data: Dataset):
        self.data = data
        self._baskets: dict[str, list[tuple[int, tuple]]] = {}
        self._lock = threading.Lock()
        self.n_events = 0

    def key(self, user) -> str:
        """The text form every shopper id is kept under (JSON ids arrive as text)."""
        return str(user)

    def add(self, event: Event, items: list) -> None:
        """Add ``event``'s basket (``items``: its ids already in the catalogue's dtype) in
        the log's order (server processes that share a log may learn of events out of
        order)."""
        with self._lock:
            bisect.insort(self._baskets.setdefault(self.key(event.user), []),
                          (event.event_id, tuple(items)), key=lambda b: b[0])
            self.n_events += 1

    def has_events(self, user) -> bool:
        return self.key(user) in self._baskets

    def n_baskets(self, user) -> int:
        """The shopper's baskets logged since the fit."""
        with self._lock:
            return len(self._baskets.get(self.key(user), ()))

    def history(self, user, uid=None) -> pd.DataFrame | None:
        """The shopper's training rows (``uid``: their id in the data, None for a new
        shopper) followed by their event baskets; None when they have no events."""
        with self._lock:
            baskets = list(self._baskets.get(self.key(user), ()))
        if not baskets:
            return None
        data = self.data
        cols = [S.USER, S.ITEM, S.BASKET, S.SEQ]
        past = (data.user_interactions(uid) if uid is not None
                else data.interactions.iloc[0:0])
        who = uid if uid is not None else self.key(user)
        first = int(past[S.SEQ].max()) + 1 if len(past) else 0
        rows = [pd.DataFrame({S.USER: who, S.ITEM: list(items), S.BASKET: f"event-{eid}",
                              S.SEQ: first + n})
                for n, (eid, items) in enumerate(baskets)]
        out = pd.concat([past[cols].astype({S.BASKET: object}), *rows], ignore_index=True)
        return out.astype({S.ITEM: data.interactions[S.ITEM].dtype})


def with_events(data: Dataset, events: Sequence[Event],
                items: Sequence[LoggedItem] = ()) -> tuple[Dataset, dict]:
    """The data a nightly refit learns from: ``data`` (as loaded, before cleaning) with
    the products added while serving (``items``) in its catalogue and every logged
    purchase appended as a basket of its shopper, after their last one.

    The fast half of the two-speed loop serves events at once (:class:`LiveHistories`);
    this is the slow half: ``xsell fit DATA --events LOG`` fits the next bundle on it.
    An event's basket is its shopper's next (``seq``), at its ``timestamp`` (else the
    time the server received it); columns the events do not have are left empty.

    Returns
    -------
    data : Dataset
        The data with the events.
    counts : dict
        ``items`` added to the catalogue (``bad_items``: ids that cannot be this
        catalogue's, skipped; a product the catalogue holds already is not added twice),
        ``events`` read, ``baskets`` added,
        ``unknown_items`` (events naming an item the catalogue lacks: skipped),
        ``bad_users`` (shopper ids that cannot be this data's ids, e.g. text where the
        ids are numbers: skipped) and ``through``, the last event id read -- a server of
        the new bundle replays only the events after it (``info["events"]`` keeps them).
    """
    inter = data.interactions
    catalogue, counts = _with_items(data, items)
    known = pd.Index(catalogue[S.ITEM])
    counts.update({"events": len(events), "baskets": 0, "unknown_items": 0, "bad_users": 0,
                   "through": max((e.event_id for e in events), default=0)})
    numeric = {c: pd.api.types.is_numeric_dtype(inter[c]) for c in (S.USER, S.BASKET)
               if c in inter}
    next_seq = (inter.groupby(S.USER)[S.SEQ].max() + 1).to_dict() if S.SEQ in inter else {}
    next_basket = int(inter[S.BASKET].max()) + 1 if numeric.get(S.BASKET) else None
    rows = []
    for event in events:
        basket = as_ids(list(event.items), known)
        if (known.get_indexer(basket) < 0).any():
            counts["unknown_items"] += 1
            continue
        user = event.user
        if numeric[S.USER]:
            try:
                user = int(user)
            except ValueError:
                counts["bad_users"] += 1
                continue
        seq = next_seq.get(user, 0)
        next_seq[user] = seq + 1
        basket_id = f"event-{event.event_id}"
        if next_basket is not None:
            basket_id, next_basket = next_basket, next_basket + 1
        when = pd.Timestamp(event.timestamp if event.timestamp is not None
                            else pd.Timestamp(event.received, unit="s", tz="UTC"))
        if when.tzinfo is not None:  # the data's times are naive: kept in UTC
            when = when.tz_convert("UTC").tz_localize(None)
        rows += [{S.USER: user, S.ITEM: item, S.BASKET: basket_id, S.SEQ: seq,
                  S.TIMESTAMP: when, S.QUANTITY: 1} for item in basket]
        counts["baskets"] += 1
    if not rows:
        return Dataset(inter, catalogue, name=data.name,
                       info={**data.info, "events": counts}), counts
    added = pd.DataFrame(rows)[[c for c in rows[0] if c in inter]]
    merged = pd.concat([inter, added.astype({c: inter[c].dtype for c in added
                                             if c != S.TIMESTAMP})], ignore_index=True)
    if S.TIMESTAMP in inter:
        merged[S.TIMESTAMP] = pd.to_datetime(merged[S.TIMESTAMP]).astype(
            inter[S.TIMESTAMP].dtype)
    info = {**data.info, "events": counts}
    return Dataset(merged, catalogue, name=data.name, info=info), counts


def _with_items(data: Dataset, items: Sequence[LoggedItem]) -> tuple[pd.DataFrame, dict]:
    """``data``'s catalogue with the logged products it lacks (in its columns and id type)."""
    catalogue = data.items
    counts = {"items": 0, "bad_items": 0}
    rows, seen = [], set()
    for item in items:
        item_id = as_ids([item.item_id], data.item_index)[0]
        if (isinstance(item_id, str) and pd.api.types.is_numeric_dtype(data.item_index)):
            counts["bad_items"] += 1
            continue
        if data.item_index.get_indexer([item_id])[0] >= 0 or item_id in seen:
            continue  # an earlier refit added it already
        seen.add(item_id)
        rows.append({S.ITEM: item_id, **{k: v for k, v in item.fields.items()
                                         if k in catalogue and k != S.ITEM}})
    if not rows:
        return catalogue, counts
    counts["items"] = len(rows)
    added = pd.DataFrame(rows).astype({S.ITEM: catalogue[S.ITEM].dtype})
    return pd.concat([catalogue, added], ignore_index=True), counts
