"""Several server processes: ``xsell serve --workers N`` against one, on the same load.

For N = 1 and 2 the server is started on a bundle and sent the same seeded mixed load
(:func:`xsell.serving.load.request_mix`) at concurrency 8; reported are throughput,
latency, every status class and each process's memory from ``/proc``: resident (RSS),
proportional (PSS: a page shared by two processes counts half in each) and the resident
pages of the bundle's memory-mapped ``.npy`` files -- the arrays the processes share
(the two-tower's item table that its index searches, the search's text vectors, the
models' large tables). Writes ``benchmarks/results/workers.{json,md}`` and the README
table. Linux only (``/proc``).

Usage::

    xsell fit --out /tmp/bundle
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_workers.py --bundle /tmp/bundle
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench_serving import _start
from readme_table import markdown_table, update_readme

HERE = Path(__file__).resolve().parent


def memory(pid: int, bundle: Path) -> dict:
    """MiB of one process: RSS, PSS and the resident pages of the bundle's mapped files."""
    totals, mapped, in_bundle = {"Rss": 0, "Pss": 0}, 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and "-" in parts[0]:  # a mapping's header line
            in_bundle = str(bundle) in line
        elif parts and parts[0].rstrip(":") in totals:
            totals[parts[0].rstrip(":")] += int(parts[1])
            if in_bundle and parts[0] == "Rss:":
                mapped += int(parts[1])
    return {"rss_mib": round(totals["Rss"] / 1024), "pss_mib": round(totals["Pss"] / 1024),
            "mapped_bundle_mib": round(mapped / 1024)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", required=True, help="a bundle of `xsell fit --out`")
    parser.add_argument("--load", type=int, default=600, help="requests of each load")
    parser.add_argument("--seconds", type=float, default=240, help="time limit of each load")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    import httpx

    from xsell.serving.bundle import load_bundle
    from xsell.serving.load import request_mix, run_load

    bundle = Path(args.bundle).resolve()
    data = load_bundle(bundle).data
    plan = request_mix(data, args.load, seed=8)
    report = {"dataset": data.name, "items": data.n_items, "cores": os.cpu_count(),
              "requests": args.load, "concurrency": 8, "date": time.strftime("%Y-%m-%d"),
              "runs": {}}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            server = _start(str(bundle), Path(tmp) / "events.sqlite", workers)
            url = server.url
            try:
                pids, deadline = set(), time.monotonic() + 300
                while len(pids) < workers and time.monotonic() < deadline:  # all are up
                    with httpx.Client(timeout=60) as c:
                        pids.add(c.get(f"{url}/health").json()["worker"])
                result = run_load(url, plan, 8, max_seconds=args.seconds)
                summary = result.summary().loc["all"]
                report["runs"][str(workers)] = {
                    "per_s": round(float(summary["per s"]), 2),
                    "p50_ms": round(float(summary["p50 ms"]), 1),
                    "p99_ms": round(float(summary["p99 ms"]), 1),
                    "5xx": int(summary["5xx"]), "no_answer": int(summary["failed"]),
                    "sent": int(summary["requests"]),
                    "processes": [memory(pid, bundle) for pid in sorted(pids)]}
            finally:
                server.stop()
    one, two = report["runs"]["1"], report["runs"]["2"]
    report["throughput_ratio"] = round(two["per_s"] / one["per_s"], 2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "workers.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = []
    for workers, run in report["runs"].items():
        procs = run["processes"]
        rows.append([workers, run["sent"], run["5xx"], run["no_answer"], run["per_s"],
                     run["p50_ms"], run["p99_ms"], " + ".join(str(p["rss_mib"]) for p in procs),
                     " + ".join(str(p["pss_mib"]) for p in procs),
                     " + ".join(str(p["mapped_bundle_mib"]) for p in procs)])
    md = "\n".join(markdown_table(
        ["processes", "sent", "5xx", "no answer", "per s", "p50 ms", "p99 ms", "RSS MiB",
         "PSS MiB", "bundle files mapped MiB"], rows)) + (
        f"\n\nThe same {args.load} mixed requests (recommend, two-tower, complete, search, "
        f"assist, events) at concurrency 8 against `xsell serve --workers N` on a bundle of "
        f"{data.name} ({data.n_items:,} items), client and server on one "
        f"{report['cores']}-core machine: 2 processes answer {report['throughput_ratio']}x "
        f"as many requests per second as 1. PSS counts a page shared by two processes "
        f"half in each: the mapped bundle files are resident once for both. Generated by "
        f"`benchmarks/bench_workers.py` on {report['date']}.\n")
    (out / "workers.md").write_text(md)
    update_readme("workers", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
