"""Exact against approximate nearest-neighbour search as the catalogue grows (issue 14, part 2).

For each catalogue size (default 50k, 500k and 5M synthetic unit vectors of the
two-tower's dimension, 256, drawn around 2,000 category centres, seeded) the exact index
(:class:`xsell.index.ExactIndex`, NumPy) and faiss's IVF and HNSW
(:class:`xsell.index.FaissIndex`; HNSW only up to ``--hnsw-max`` vectors: its graph takes
tens of minutes to build at millions on 2 cores) are built, and each records its build
seconds, its memory (the exact index: the vectors it holds; faiss: the resident memory
building it added), the latency of single queries (p50 / p99 over
``--queries`` queries, one at a time, as a server answers them) and recall@10 against the
exact answer. At the largest size IVF's ``nprobe`` and HNSW's ``efSearch`` are swept:
the recall/latency curve the defaults come from. The bar (issue 14): at 5M, an
approximate index at least 20x faster than exact at recall@10 >= 0.95.

Then a real catalogue: the MiniLM vectors of the Instacart sample's products (what the
dense search retrieves from), queried with a seeded sample of the products' own vectors;
the bar: recall@10 >= 0.99.

Writes ``benchmarks/results/index.{json,md,png}`` and the README's ``bench:index`` table.

Usage::

    python benchmarks/bench_index.py [--sizes 50000,500000,5000000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from readme_table import markdown_table, update_readme
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
DIM, CENTRES, K = 256, 2000, 10
#: Swept at the largest size: the knob that trades recall for speed, per kind.
SWEEP = {"ivf": ("nprobe", [1, 2, 4, 8, 16, 32, 64, 128]),
         "hnsw": ("ef_search", [16, 32, 64, 128, 256, 512])}


def rss_bytes() -> int:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def catalogue(n: int, seed: int, dim: int = DIM, chunk: int = 250_000) -> np.ndarray:
    """``n`` unit vectors around fixed category centres (the same centres for every seed)."""
    centres = np.random.default_rng(12345).normal(size=(CENTRES, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[rng.integers(CENTRES, size=m)] + rng.normal(size=(m, dim)).astype(np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def latencies(index, queries: np.ndarray) -> np.ndarray:
    """Seconds of each single-query search."""
    index.search(queries[:1], K)  # warm-up
    times = np.empty(len(queries))
    for i in range(len(queries)):
        start = time.perf_counter()
        index.search(queries[i:i + 1], K)
        times[i] = time.perf_counter() - start
    return times


def measure(build, queries: np.ndarray, exact_rows: np.ndarray | None) -> dict:
    """Build an index, then its latency and recall."""
    from xsell.index import recall_at_k

    before, start = rss_bytes(), time.perf_counter()
    index = build()
    built, memory = time.perf_counter() - start, rss_bytes() - before
    if hasattr(index, "vectors_"):  # the exact index holds the caller's array, no copy
        memory = index.vectors_.nbytes
    times = latencies(index, queries)
    _, rows = index.search(queries, K)
    return {"build_s": round(built, 2), "memory_mb": round(memory / 2**20, 1),
            "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3),
            "recall@10": 1.0 if exact_rows is None else round(recall_at_k(rows, exact_rows), 4),
            "index": index, "rows": rows}


def sweep(index, kind: str, queries: np.ndarray, exact_rows: np.ndarray) -> list[dict]:
    """Recall and latency of one built index as its search knob turns."""
    from xsell.index import recall_at_k

    name, values = SWEEP[kind]
    points = []
    for value in values:
        if kind == "ivf":
            index.index_.nprobe = value
        else:
            index.index_.hnsw.efSearch = value
        times = latencies(index, queries)
        _, rows = index.search(queries, K)
        points.append({name: value, "recall@10": round(recall_at_k(rows, exact_rows), 4),
                       "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
                       "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3)})
    return points


def synthetic(sizes: list[int], n_queries: int, threads: int, hnsw_max: int) -> dict:
    from xsell.index import ExactIndex, FaissIndex

    rows, curves = [], {}
    queries = catalogue(n_queries, seed=1)
    for n in sizes:
        vectors = catalogue(n, seed=0)
        exact = measure(lambda v=vectors: ExactIndex().fit(v), queries, None)
        exact_rows = exact.pop("rows")
        exact.pop("index")
        rows.append({"size": n, "index": "exact", **exact})
        print(rows[-1], flush=True)
        kinds = ["ivf"] + (["hnsw"] if n <= hnsw_max else [])
        for kind in kinds:
            result = measure(lambda v=vectors, k=kind: FaissIndex(kind=k, threads=threads)
                             .fit(v), queries, exact_rows)
            index = result.pop("index")
            result.pop("rows")
            rows.append({"size": n, "index": kind, **result,
                         "speed-up p50": round(exact["p50_ms"] / result["p50_ms"], 1)})
            print(rows[-1], flush=True)
            if n == max(sizes):
                curves[kind] = sweep(index, kind, queries, exact_rows)
                print(kind, curves[kind], flush=True)
            del index
        del vectors
    return {"rows": rows, "curves": curves}


def instacart(data: str | None, n_queries: int, threads: int) -> dict | None:
    from xsell.data import load_dataset
    from xsell.index import ExactIndex, FaissIndex, build_index, recall_at_k
    from xsell.text import TextEncoder, item_texts

    dataset = load_dataset(data)
    if not dataset.info.get("source", "").startswith("Instacart"):
        return None
    vectors = TextEncoder().encode(item_texts(dataset).tolist())
    queries = vectors[np.random.default_rng(0).choice(len(vectors), n_queries, replace=False)]
    _, exact = ExactIndex().fit(vectors).search(queries, K)
    out = {"dataset": dataset.name, "vectors": len(vectors), "dim": int(vectors.shape[1])}
    for label, index in (("build_index (auto)", build_index(vectors)),
                         ("hnsw", FaissIndex("hnsw", threads=threads).fit(vectors)),
                         ("ivf", FaissIndex("ivf", threads=threads).fit(vectors))):
        _, rows = index.search(queries, K)
        out[label] = round(recall_at_k(rows, exact), 4)
    return out


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xsell.plots import plot_index_growth, plot_recall_latency

    fig, (grow, curve) = plt.subplots(1, 2, figsize=(10, 3.8))
    rows = report["synthetic"]["rows"]
    plot_index_growth(rows, ax=grow)
    plot_recall_latency(report["synthetic"]["curves"], max(r["size"] for r in rows), ax=curve)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50000,500000,5000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hnsw-max", type=int, default=100_000)
    parser.add_argument("--data", default=None, help="the real catalogue (default: "
                        "$XSELL_DATA_DIR; skipped unless it is Instacart)")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    start = time.perf_counter()
    with threadpool_limits(args.threads):
        report = {"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "dim": DIM,
                  "k": K, "queries": args.queries,
                  "synthetic": synthetic(sizes, args.queries, args.threads, args.hnsw_max),
                  "real": instacart(args.data, 1000, args.threads)}
    report["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, out / "index.png")

    cols = ["build_s", "memory_mb", "p50_ms", "p99_ms", "recall@10", "speed-up p50"]
    lines = markdown_table(["vectors", "index", *cols],
                           ([f"{r['size']:,}", r["index"], *(r.get(c, "–") for c in cols)]
                            for r in report["synthetic"]["rows"]))
    real = report["real"]
    md = "\n".join(lines) + (
        f"\n\nSynthetic catalogues of unit vectors (dim {DIM}, {CENTRES:,} category centres, "
        f"seeded); latency of single queries ({args.queries}, top-{K}), {args.threads} "
        f"threads; recall@10 against the exact answer; memory: the exact index's vectors, "
        f"faiss's resident memory added by the build; faiss defaults of "
        f"`xsell.index.FaissIndex` (IVF: 4√n cells, nprobe 16; HNSW: M 32, efSearch 128)."
        + (f" Real catalogue, {real['vectors']:,} MiniLM vectors of {real['dataset']}: "
           f"recall@10 of `build_index` {real['build_index (auto)']}, HNSW {real['hnsw']}, "
           f"IVF {real['ivf']} (1,000 product vectors as queries)." if real else "")
        + f" Run {report['seconds'] / 60:.1f} min. Generated by `benchmarks/bench_index.py` "
        f"on {report['date']}.\n")
    (out / "index.md").write_text(md)
    update_readme("index", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
