"""Serving benchmark: a real ``xsell serve`` on the loopback, measured with httpx.

Starts the server on a bundle (``xsell fit --out DIR``), then measures

- one client at a time: the two-tower's list, the hybrid's of each objective (all with
  explanations), ``/complete``, ``/search``, ``/assist``, ``/events``, event ->
  updated list (an event, then that shopper's two-tower or hybrid list) and ``POST
  /items`` (a new product encoded, logged and indexed; then searched for); client latency
  (HTTP on the loopback included) and the server's own ``took_ms``, against the issue's
  bars (:data:`BARS`);
- a mixed load (``xsell.serving.load.MIX``: recommend, two-tower, complete, search, assist,
  events) at concurrency 8 and 32: p50/p99, throughput, and every status class (the bar:
  no 5xx).

Server and client share the machine's cores. Writes ``benchmarks/results/serving.{json,md}``
and the README table.

Usage::

    xsell fit --out /tmp/bundle            # on $XSELL_DATA_DIR (minutes; cached fits reused)
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_serving.py --bundle /tmp/bundle
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from readme_table import markdown_table, update_readme

from xsell.serving.load import LATENCY_BARS

HERE = Path(__file__).resolve().parent


def _start(bundle: str, events: Path, workers: int = 1):
    """The server on the bundle: a started :class:`xsell.serving.process.ServerProcess`."""
    from xsell.serving.process import ServerProcess

    return ServerProcess(bundle, events, workers, timeout=300,
                         log=events.with_suffix(".log")).start()


#: The requests measured one at a time: label -> (kind of the load's plan, fields changed).
SEQUENTIAL = {
    "two-tower recommend": ("two-tower", {}),
    "hybrid recommend explore": ("recommend", {"objective": "explore"}),
    "hybrid recommend all": ("recommend", {"objective": "all"}),
    "hybrid recommend cross-category": ("recommend", {"objective": "cross-category"}),
    "complete": ("complete", {}),
    "search": ("search", {}),
    "assist": ("assist", {}),
    "events": ("events", {}),
}
BARS = LATENCY_BARS  # the project's bars on the server's p99 (ms)


def new_products(data, n: int, seed: int = 0) -> list[dict]:
    """``n`` products new to the catalogue: variants of seeded catalogue products (a word
    no product has, their title, their category), with ids the catalogue lacks."""
    rng = np.random.default_rng(seed)
    items = data.items.iloc[rng.choice(len(data.items), n, replace=False)]
    numeric = pd.api.types.is_numeric_dtype(data.item_index)
    first = int(data.item_index.max()) + 1 if numeric else 0
    out = []
    for j, (_, row) in enumerate(items.iterrows()):
        body = {"item_id": str(first + j) if numeric else f"new-{j}",
                "title": f"Zorbly {row['title']}"}
        if isinstance(row.get("category"), str):
            body["category"] = row["category"]
        out.append(body)
    return out


def _percentiles(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"n": int(len(values)), "p50": round(float(np.percentile(values, 50)), 2),
            "p99": round(float(np.percentile(values, 99)), 2)}


def publish(report: dict, out: Path) -> None:
    """``serving.md`` and the README table from a report (``serving.json``)."""
    def bar(label: str, p99: float) -> str:
        if label not in BARS:
            return ""
        return f"<= {BARS[label]}: {'met' if p99 <= BARS[label] else 'NOT met'}"

    lines = markdown_table(
        ["one client at a time", "client p50 ms", "client p99 ms", "server p50 ms",
         "server p99 ms", "bar (server p99 ms)"],
        ([label, v["client"]["p50"], v["client"]["p99"], v["server"]["p50"],
          v["server"]["p99"], bar(label, v["server"]["p99"])]
         for label, v in report["sequential"].items()))
    rows = []
    for concurrency, table in report["loads"].items():
        for request, r in table.items():
            rows.append([concurrency, request, r["requests"], r["2xx"], r["4xx"], r["5xx"],
                         r["failed"], r["p50 ms"], r["p99 ms"], r["per s"]])
    lines += ["", *markdown_table(["concurrency", "request", "sent", "2xx", "4xx", "5xx",
                                   "no answer", "p50 ms", "p99 ms", "per s"], rows)]
    md = "\n".join(lines) + (
        f"\n\n`xsell serve` on a bundle of {report['dataset']} ({report['users']:,} shoppers, "
        f"{report['items']:,} items, {report['bundle_mib']:,} MiB, loaded in "
        f"{report['load_seconds']:.1f} s), client and server on the same "
        f"{report['cores']}-core machine, loopback HTTP; every recommendation with its "
        f"explanation. Server ms is the model's own time (`took_ms`); an event's includes "
        f"writing it to disk and updating the shopper's state (the bar of 10 ms applies "
        f"there; with the next list's time it is the 'event -> updated list' rows). A new "
        f"item's time is its text encoded by MiniLM, logged on disk and added to the "
        f"search's and the two-tower's indexes; searched for by its title right after, "
        f"{_first(report)} ranked first. Generated by "
        f"`benchmarks/bench_serving.py` on {report['date']}.\n")
    (out / "serving.md").write_text(md)
    update_readme("serving", md)
    print(md)


def _first(report: dict) -> str:
    found, n = report.get("new_items_first_in_search", (0, 0))
    return f"{found} of {n}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", help="a bundle of `xsell fit --out` (required unless "
                        "--publish-only)")
    parser.add_argument("--sequential", type=int, default=100,
                        help="requests of each kind sent one at a time")
    parser.add_argument("--load", type=int, default=600, help="requests of each mixed load")
    parser.add_argument("--seconds", type=float, default=180, help="time limit of each load")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--publish-only", action="store_true",
                        help="rewrite serving.md and the README table from serving.json")
    args = parser.parse_args()
    if args.publish_only:
        publish(json.loads((Path(args.out) / "serving.json").read_text()), Path(args.out))
        return 0

    if not args.bundle:
        parser.error("--bundle is required")
    import httpx

    from xsell.serving.bundle import bundle_size, load_bundle
    from xsell.serving.load import one_at_a_time, request_mix, run_load

    data = load_bundle(args.bundle).data
    users = [str(u) for u in data.user_index]
    with tempfile.TemporaryDirectory() as tmp:
        server = _start(args.bundle, Path(tmp) / "events.sqlite")
        url, load_seconds = server.url, server.load_seconds
        try:
            report = {"dataset": data.name, "users": data.n_users, "items": data.n_items,
                      "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
                      "bundle_mib": round(bundle_size(args.bundle) / 2**20),
                      "load_seconds": load_seconds, "sequential": {}, "loads": {}}
            with httpx.Client(base_url=url, timeout=60) as c:
                for n in range(20):  # warm-up
                    c.post("/recommend", json={"user": users[n], "k": 10})
                # one kind at a time: each request drawn as the load draws it
                plan = request_mix(data, 12 * args.sequential, seed=1)
                for label, (kind, change) in SEQUENTIAL.items():
                    client, took = one_at_a_time(c, plan, kind, args.sequential, change)
                    report["sequential"][label] = {"client": _percentiles(client),
                                                   "server": _percentiles(took)}
                # an event, then that shopper's list: the event's time (log + user tower)
                # plus the list's
                for label, model in (("event -> updated two-tower list", "two-tower"),
                                     ("event -> updated hybrid list", "hybrid")):
                    client, took = [], []
                    for _, _, _, body in [p for p in plan if p[0] == "events"][
                            :args.sequential]:
                        t = time.perf_counter()
                        event = c.post("/events", json=body).json()
                        listed = c.post("/recommend", json={"user": body["user"], "k": 10,
                                                            "model": model}).json()
                        client.append((time.perf_counter() - t) * 1000)
                        took.append(event["took_ms"] + listed["took_ms"])
                    report["sequential"][label] = {"client": _percentiles(client),
                                                   "server": _percentiles(took)}
                # a new product: encoded, logged and indexed; then a search for its title
                client, took, found = [], [], 0
                for body in new_products(data, args.sequential):
                    t = time.perf_counter()
                    r = c.post("/items", json=body)
                    client.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 201, r.text
                    took.append(r.json()["took_ms"])
                    hits = c.get("/search", params={"q": body["title"], "k": 10}).json()
                    found += str(hits["items"][0]["item_id"]) == body["item_id"]
                report["sequential"]["new item -> in the index"] = {
                    "client": _percentiles(client), "server": _percentiles(took)}
                report["new_items_first_in_search"] = [found, len(took)]
            for concurrency in (8, 32):
                result = run_load(url, request_mix(data, args.load, seed=concurrency),
                                  concurrency, max_seconds=args.seconds)
                table = result.summary().round(2)
                report["loads"][str(concurrency)] = json.loads(table.to_json(orient="index"))
            report["health"] = httpx.get(f"{url}/health").json()
        finally:
            server.stop()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(json.dumps(report, indent=2) + "\n")
    publish(report, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
