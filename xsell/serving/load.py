"""A bounded HTTP load against a running ``xsell serve``: the load tests' and the serving
benchmark's client (httpx).

A load is a plan made in advance (:func:`request_mix`: seeded, valid ids of the bundle's
data) sent by ``concurrency`` threads, each with its own connection; it stops by itself
when the plan is sent or ``max_seconds`` have passed. Latencies are measured by the
client, so they include HTTP on the loopback and the server's queueing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xsell.data.dataset import Dataset

__all__ = ["LATENCY_BARS", "MESSAGES", "MIX", "LoadResult", "http_arguments", "one_at_a_time",
           "request_mix", "run_load"]

#: The default mix of requests, as shares of the plan -- the hybrid's lists, the
#: two-tower's, carts to complete, search queries, assistant messages, purchase events.
MIX = {"recommend": 0.35, "two-tower": 0.15, "complete": 0.1, "search": 0.15,
       "assist": 0.1, "events": 0.15}
#: The project's bars on the server's p99 (ms), by request (the benchmark's labels). An
#: event's is its own time: logged on disk and the shopper's state updated, which the
#: next list reads.
LATENCY_BARS = {"two-tower recommend": 20, "hybrid recommend explore": 100,
                "hybrid recommend all": 100, "hybrid recommend cross-category": 100,
                "search": 50, "events": 10, "new item -> in the index": 100}
#: What the ``assist`` requests say (one of these, drawn per request).
MESSAGES = ("where is my order?", "I want to cancel my order", "can I get a refund",
            "I'd like to buy my usual things", "I need something for breakfast",
            "can I talk to a person")


def request_mix(data: Dataset, n: int, mix: dict[str, float] | None = None, seed: int = 0,
                explain: bool = True) -> list[tuple[str, str, str, dict]]:
    """``n`` requests ``(name, method, path, body)`` drawn from ``mix`` (seeded).

    ``recommend`` cycles through the objectives; ``two-tower`` asks for the two-tower's
    list; ``complete`` sends a cart of two products of one department; ``search`` the
    last two words of a product title (its noun, as a shopper types it); ``assist`` one of
    :data:`MESSAGES`; ``events`` a purchase of two products. A ``GET``'s body is its
    query string.
    """
    mix = dict(mix or MIX)
    unknown = sorted(set(mix) - set(MIX))
    if unknown:
        raise ValueError(f"mix: unknown request kind(s) {unknown}; choose from {list(MIX)}")
    rng = np.random.default_rng(seed)
    users = [str(u) for u in data.user_index]
    items = [str(i) for i in data.item_index]
    titles = (data.items["title"].astype(str).tolist() if "title" in data.items
              else items)
    departments = data.item_category(0)
    by_department = [ids.astype(str).tolist() for _, ids in
                     pd.Series(departments.index).groupby(departments.to_numpy())
                     if len(ids) >= 2]
    names = list(mix)
    p = np.array([mix[k] for k in names], dtype=float)
    kinds = rng.choice(len(names), size=n, p=p / p.sum())
    objectives = ("explore", "all", "cross-category")
    plan = []
    for n_req, kind in enumerate(kinds):
        name = names[kind]
        user = users[rng.integers(len(users))]
        if name == "recommend":
            plan.append((name, "POST", "/recommend",
                         {"user": user, "k": 10, "objective": objectives[n_req % 3],
                          "explain": explain}))
        elif name == "two-tower":
            plan.append((name, "POST", "/recommend",
                         {"user": user, "k": 10, "model": "two-tower", "explain": explain}))
        elif name == "search":
            title = titles[rng.integers(len(titles))]
            words = [w for w in title.split() if w.isalpha() and len(w) >= 3][-2:] or [title]
            plan.append((name, "GET", "/search", {"q": " ".join(words), "user": user, "k": 10}))
        elif name == "assist":
            plan.append((name, "POST", "/assist",
                         {"user": user, "message": MESSAGES[rng.integers(len(MESSAGES))]}))
        elif name == "complete":
            pool = by_department[rng.integers(len(by_department))]
            cart = [pool[i] for i in rng.choice(len(pool), size=2, replace=False)]
            plan.append((name, "POST", "/complete", {"items": cart, "k": 10}))
        else:
            bought = [items[i] for i in rng.choice(len(items), size=2, replace=False)]
            plan.append((name, "POST", "/events", {"user": user, "items": bought}))
    return plan


def http_arguments(method: str, body) -> dict:
    """httpx arguments of a planned body: a GET's query string, raw bytes as they are
    (malformed on purpose), anything else as JSON."""
    if body is None:
        return {}
    if method == "GET":
        return {"params": body}
    if isinstance(body, bytes):
        return {"content": body, "headers": {"content-type": "application/json"}}
    return {"json": body}


@dataclass
class LoadResult:
    """What a load measured: one row per request sent."""

    concurrency: int
    seconds: float
    rows: list[tuple[str, int, float]] = field(default_factory=list)  # name, status, ms

    def summary(self) -> pd.DataFrame:
        """Per request kind (and ``all``): requests, 2xx/4xx/5xx/failed, p50/p99 latency
        in ms, and throughput (requests per second over the whole load)."""
        frame = pd.DataFrame(self.rows, columns=["request", "status", "ms"])
        out = []
        for name, part in [*frame.groupby("request", sort=True), ("all", frame)]:
            status = part["status"]
            out.append({"request": name, "requests": len(part),
                        "2xx": int(status.between(200, 299).sum()),
                        "4xx": int(status.between(400, 499).sum()),
                        "5xx": int(status.between(500, 599).sum()),
                        "failed": int((status == 0).sum()),
                        "p50 ms": float(np.percentile(part["ms"], 50)) if len(part) else None,
                        "p99 ms": float(np.percentile(part["ms"], 99)) if len(part) else None,
                        "per s": len(part) / self.seconds if self.seconds else None})
        return pd.DataFrame(out).set_index("request")


def run_load(url: str, plan: Sequence[tuple[str, str, str, dict]], concurrency: int,
             max_seconds: float = 60.0, timeout: float = 30.0) -> LoadResult:
    """Send ``plan`` to ``url`` from ``concurrency`` threads; stop when it is sent or after
    ``max_seconds``. A request that gets no answer is counted with status 0."""
    import httpx

    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    lock = threading.Lock()
    position = iter(range(len(plan)))
    rows: list[tuple[str, int, float]] = []
    stop = time.monotonic() + max_seconds

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=timeout) as client:
            while time.monotonic() < stop:
                with lock:
                    n = next(position, None)
                if n is None:
                    return
                name, method, path, body = plan[n]
                start = time.perf_counter()
                try:
                    status = client.request(method, path, **http_arguments(method, body)).status_code
                except Exception:  # no answer (httpx.TransportError), or not sendable
                    status = 0
                ms = (time.perf_counter() - start) * 1000
                with lock:
                    rows.append((name, status, ms))

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return LoadResult(concurrency, time.perf_counter() - start, rows)


def one_at_a_time(client, plan: Sequence[tuple], kind: str, n: int,
                  change: dict | None = None) -> tuple[list[float], list[float]]:
    """Send the first ``n`` requests of ``kind`` in ``plan`` one after another (their bodies
    updated with ``change``) through an ``httpx.Client``; each one's latency seen by the
    client and the server's own ``took_ms``, in ms.

    Raises
    ------
    RuntimeError
        If a request is not answered with a 2xx (naming it, with the answer).
    """
    client_ms, server_ms = [], []
    for _, method, path, body in [p for p in plan if p[0] == kind][:n]:
        body = {**body, **(change or {})}
        start = time.perf_counter()
        r = client.request(method, path, **http_arguments(method, body))
        client_ms.append((time.perf_counter() - start) * 1000)
        if not 200 <= r.status_code < 300:
            raise RuntimeError(f"{method} {path} {body}: {r.status_code} {r.text[:300]}")
        server_ms.append(float(r.json()["took_ms"]))
    return client_ms, server_ms
