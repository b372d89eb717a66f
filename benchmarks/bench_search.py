"""Personalised product search: quality on three shops, latency on Instacart.

Quality: the same command on every shop (queries built from test purchases: the
product's category name, and a short noisy fragment of its title; every catalogue product
a candidate)::

    xsell evaluate --protocol search [--data PATH | --interactions F --items F] --out R.json

on the Instacart sample (``$XSELL_DATA_DIR``), on a seeded 200-household sample of The
Complete Journey exported in the generic format (its sub-commodity names are the category
queries), and on the generic-format example shop in ``data/example``.

Latency: the fitted Instacart search answers single queries in-process (``search(query,
user, k=10)``, the query's MiniLM vector computed each time, as for a new query), against
BM25 alone over the same catalogue in the same run (``bm25s`` scoring + top-10): p50 /
p95 over test queries, and their ratio.

Writes ``benchmarks/results/search.{json,md}`` and the README table between the
``bench:search`` markers.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_search.py [--latency-queries 300]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from readme_table import update_readme

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SYSTEMS = ("bm25", "dense", "fusion", "fusion-popularity", "personalized")


def run_cli(args: list[str]) -> dict:
    """``xsell evaluate --protocol search ARGS --out tmp``; the results JSON."""
    from xsell.cli import main as xsell

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        start = time.perf_counter()
        code = xsell(["evaluate", "--protocol", "search", *args, "--out", str(out)])
        if code != 0:
            raise SystemExit(f"xsell evaluate --protocol search {' '.join(args)}: exit {code}")
        report = json.loads(out.read_text())
    report["wall_seconds"] = time.perf_counter() - start
    return report


def latency(n_queries: int, seed: int = 0) -> dict:
    """p50 / p95 milliseconds of one personalised query and of BM25 alone."""
    from xsell.apps.search import ProductSearch, signal_models_for
    from xsell.apps.search_protocol import query_table, search_queries
    from xsell.data.loaders import load_dataset
    from xsell.data.prepare import prepare
    from xsell.models.base import top_k
    from xsell.text import TextEncoder

    split = prepare(load_dataset()).split
    engine = ProductSearch(signal_models=signal_models_for(split), progress=False).fit(
        split.train_dataset(include_validation=True))  # the evaluation's fit, from the cache
    # A new query is encoded by MiniLM: no cached vectors for the timed queries.
    engine.text_encoder_ = TextEncoder(engine.encoder, cache=False, progress=False)
    engine.text_encoder_.encode(["warm up"])
    tables = [query_table(search_queries(split, "test", kind=k, seed=seed + 1))
              for k in ("category", "title")]
    rng = np.random.default_rng(seed)
    picks = [t.iloc[rng.choice(len(t), n_queries // 2, replace=False)] for t in tables]
    personal, lexical = [], []
    for table in picks:
        for query, user in zip(table["query"], table["user_id"], strict=True):
            start = time.perf_counter()
            engine.search(query, user=user, k=10)
            personal.append(time.perf_counter() - start)
            start = time.perf_counter()
            scores = engine.lexical_.scores(engine.lexical_.normalizer.query_tokens(query))
            top_k(scores[None, :], 10)
            lexical.append(time.perf_counter() - start)
    p = {name: {"p50_ms": float(np.percentile(v, 50) * 1000),
                "p95_ms": float(np.percentile(v, 95) * 1000),
                "mean_ms": float(np.mean(v) * 1000)}
         for name, v in (("personalized search", personal), ("bm25 alone", lexical))}
    p["queries"] = len(personal)
    p["catalogue"] = int(len(engine.items_))
    p["ratio_p95"] = p["personalized search"]["p95_ms"] / p["bm25 alone"]["p95_ms"]
    return p


def quality_table(report: dict) -> list[str]:
    rows = {(r["system"], r["kind"], r["variant"]): r for r in report["results"]
            if r["metric"] == "ndcg@10"}
    cols = list(dict.fromkeys((k, v) for _, k, v in rows))
    lines = ["| system | " + " | ".join(f"{k} queries, {v}" for k, v in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for system in SYSTEMS:
        cells = [f"{rows[system, k, v]['value']:.4f} [{rows[system, k, v]['ci_low']:.4f}, "
                 f"{rows[system, k, v]['ci_high']:.4f}]" for k, v in cols]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    gains = ", ".join(f"{g['kind']}/{g['variant']} {g['ratio']:.2f}x (vs {g['best_peer']})"
                      for g in report["gains"])
    n = {k: rows["personalized", k, "all"]["n_queries"] for k, _ in cols}
    lines += ["", f"{report['dataset']}: NDCG@10 [95% CI over shoppers]; "
              + ", ".join(f"{c:,} {k} queries" for k, c in n.items())
              + f". Personalised / best non-personal: {gains}. Run took "
              f"{report['wall_seconds'] / 60:.1f} min."]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--households", type=int, default=200)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from xsell.cli import main as xsell
    from xsell.fileio import atomic_write, save_json

    if not os.environ.get("XSELL_DATA_DIR"):
        raise SystemExit("set XSELL_DATA_DIR to the folder holding instacart/")
    reports = {"instacart": run_cli([])}
    with tempfile.TemporaryDirectory() as tmp:
        cj = Path(tmp) / "cj"
        xsell(["data", "export-complete-journey", str(cj), "--households",
               str(args.households), "--seed", "0"])
        reports["complete-journey"] = run_cli(["--interactions", str(cj / "interactions.csv"),
                                               "--items", str(cj / "items.csv")])
    example = ROOT / "data" / "example"
    reports["example"] = run_cli(["--interactions", str(example / "interactions.csv"),
                                  "--items", str(example / "items.csv")])
    timing = latency(args.latency_queries)
    date = time.strftime("%Y-%m-%d")
    out = Path(args.out)
    save_json({"date": date, "quality": reports, "latency": timing}, out / "search.json")
    lines = quality_table(reports["instacart"])
    p, b = timing["personalized search"], timing["bm25 alone"]
    lines += ["", "| one query, in-process, 2 cores | p50 (ms) | p95 (ms) |", "|---|---|---|",
              f"| personalised search (MiniLM query encoding + BM25 + re-ranking) | "
              f"{p['p50_ms']:.1f} | {p['p95_ms']:.1f} |",
              f"| BM25 alone (bm25s, top-10) | {b['p50_ms']:.1f} | {b['p95_ms']:.1f} |",
              "", f"{timing['queries']} test queries (half category, half title) over the "
              f"{timing['catalogue']:,}-product catalogue; personalised / BM25 p95: "
              f"{timing['ratio_p95']:.1f}x."]
    for name in ("complete-journey", "example"):
        lines += ["", *quality_table(reports[name])]
    lines += ["", f"Generated by `benchmarks/bench_search.py` on {date}."]
    table = "\n".join(lines)
    atomic_write(out / "search.md", lambda tmp: Path(tmp).write_text(table + "\n"))
    update_readme("search", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
