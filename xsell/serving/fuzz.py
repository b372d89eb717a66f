"""Malformed requests for a running ``xsell serve``: what a fuzz test sends.

:func:`malformed_requests` draws a seeded plan in the format of
:func:`xsell.serving.load.request_mix` (send it with :func:`~xsell.serving.load.run_load`)
from mutations of valid requests: a field of the wrong type, a required field missing,
an unknown field, ``k`` out of range, ids the data does not hold, unicode (emoji,
right-to-left text, zero-width and NUL characters, lone surrogates), a 1 MB body, JSON
nested ten thousand levels deep, bodies that are not JSON or not UTF-8, and bursts of
valid events for one shopper sent at once. A server that handles its input answers every
one of them with a 2xx or a 4xx, and is still healthy afterwards.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from xsell.data.dataset import Dataset

__all__ = ["BURST_USER_EVENTS", "malformed_requests"]

#: Valid events for one shopper in each plan, sent among the malformed requests.
BURST_USER_EVENTS = 24

#: Values of the wrong type (or shape) for any field.
WRONG = (None, True, 1.5, -1, 10**12, "", "ten", [], {}, [[]], {"$gt": ""}, [None])
#: Text that is valid JSON but unusual.
ODD_TEXT = ("Ünïcødé 🛒", "مرحبا بالعالم", "a\u200bb\u200dc", "nul\u0000byte", "\ud800",
            "' OR 1=1 --", "../../etc/passwd", "%s%s%n", "x" * 5000, " " * 50)


def _valid(data: Dataset, rng: np.random.Generator) -> list[tuple[str, str, str, dict]]:
    user = str(data.user_index[rng.integers(data.n_users)])
    items = [str(data.item_index[i]) for i in rng.choice(data.n_items, 3, replace=False)]
    numeric = pd.api.types.is_numeric_dtype(data.item_index)
    new_id = (str(int(data.item_index.max()) + 1 + int(rng.integers(10**6))) if numeric
              else f"fuzz-{rng.integers(10**9)}")
    return [("recommend", "POST", "/recommend", {"user": user, "k": 5, "objective": "all"}),
            ("recommend", "POST", "/recommend", {"user": user, "k": 5, "model": "two-tower"}),
            ("complete", "POST", "/complete", {"items": items[:2], "k": 5}),
            ("search", "GET", "/search", {"q": "milk", "user": user, "k": 5}),
            ("assist", "POST", "/assist", {"user": user, "message": "where is my order?"}),
            ("events", "POST", "/events", {"user": user, "items": items}),
            ("items", "POST", "/items", {"item_id": new_id, "title": "Zorbly Oat Bar",
                                         "category": "snacks > bars", "price": 2.5})]


def _mutate(name: str, method: str, path: str, body: dict, rng: np.random.Generator):
    """One malformed version of a valid request."""
    body = dict(body)
    keys = list(body)
    how = rng.integers(9)
    key = keys[rng.integers(len(keys))]
    if how == 0:
        body[key] = WRONG[rng.integers(len(WRONG))]
    elif how == 1:
        del body[key]
    elif how == 2:
        body["unexpected_" + key] = 1
    elif how == 3:
        body[key] = ODD_TEXT[rng.integers(len(ODD_TEXT))]
    elif how == 4 and "k" in body:
        body["k"] = int(rng.choice([0, -5, 101, 10**9, 2**63]))
    elif how == 5 and "items" in body:
        body["items"] = [ODD_TEXT[rng.integers(len(ODD_TEXT))], *body["items"]]
    elif how == 6 and "items" in body:
        body["items"] = body["items"] * 500  # far more than a cart holds
    elif how == 7:
        body[key] = "x" * 2**20  # a 1 MB field
    else:
        body["user"] = f"no-such-user-{rng.integers(10**6)}"
    if method == "GET":
        return f"{name}: malformed", method, path, {k: _query_value(v) for k, v in body.items()}
    # JSON with \u escapes: a lone surrogate reaches the server as JSON allows it
    return f"{name}: malformed", method, path, json.dumps(body).encode()


def _query_value(value) -> str:
    """A value as a query string carries it: text, cut to 10 kB (a URL of a megabyte is
    refused by the HTTP client before it is sent)."""
    text = value if isinstance(value, str) else json.dumps(value)
    # a URL is UTF-8: a lone surrogate goes as the bytes Python would give it
    return text[:10_000].encode("utf-8", "surrogatepass").decode("latin-1")


def _raw_bodies(rng: np.random.Generator) -> list[tuple[str, str, str, bytes]]:
    """Bodies that are not the JSON of a request at all."""
    deep = b"[" * 10_000 + b"]" * 10_000
    bodies = [b"", b"{", b'{"user": "U1", "k": 3', b"null", b"[]", b'"user"', deep,
              b"\xff\xfe\xfa not utf-8", b'{"user": "\\ud800", "k": 3}',
              b'{"user": "U1"}' + b" " * 2**20, json.dumps({"user": "U1", "pad": "y" * 2**20})
              .encode()]
    paths = ("/recommend", "/complete", "/events", "/assist", "/items")
    return [("raw", "POST", paths[rng.integers(len(paths))], b) for b in bodies]


def malformed_requests(data: Dataset, n: int = 200, seed: int = 0) -> list[tuple]:
    """A seeded plan of ``n`` malformed requests (plus :data:`BURST_USER_EVENTS` valid
    events for one shopper and a few bodies that are not JSON), shuffled.

    Entries are ``(name, method, path, body)`` as in
    :func:`xsell.serving.load.request_mix`; a ``body`` of ``bytes`` is sent as it is.
    The burst's entries are named ``"burst"``: every one should be acknowledged, and
    the shopper's event count should grow by that many.
    """
    rng = np.random.default_rng(seed)
    plan = []
    for _ in range(n):
        valid = _valid(data, rng)
        plan.append(_mutate(*valid[rng.integers(len(valid))], rng))
    plan.extend(_raw_bodies(rng))
    plan.append(("unknown item", "GET", f"/items/{'%2F..%2F' * 3}nope", None))
    plan.append(("unknown route", "GET", "/admin", None))
    user = str(data.user_index[0])
    for n_event in range(BURST_USER_EVENTS):
        item = str(data.item_index[n_event % data.n_items])
        plan.append(("burst", "POST", "/events", {"user": user, "items": [item]}))
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]
