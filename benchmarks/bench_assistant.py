"""The customer-service assistant's understanding, on Bitext's customer-support sample.

Intent detection with all training messages and with few (the learning curve), unknown
requests (intents held out of training), and entity spans -- the measurements of
``xsell.apps.intent_protocol``, on the seeded stratified split (60% train, 10% validation,
30% test). Writes ``benchmarks/results/assistant.{json,md}`` and the README table between
the ``bench:assistant`` markers.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_assistant.py [--repeats 5] [--draws 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from readme_table import update_readme

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="draws per learning-curve size")
    parser.add_argument("--draws", type=int, default=5, help="held-out intent sets")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from xsell.apps.intent_protocol import (
        compare_classifiers,
        entity_scores,
        learning_curve,
        out_of_scope,
    )
    from xsell.data.support import load_support_messages
    from xsell.fileio import atomic_write, save_json

    messages = load_support_messages()
    if not messages.is_real:
        raise SystemExit("set XSELL_DATA_DIR to the folder holding bitext-customer-support/")
    start = time.perf_counter()
    comparison = compare_classifiers(messages, n_boot=1000)
    curve = learning_curve(messages, repeats=args.repeats)
    oos = out_of_scope(messages, draws=args.draws)
    entities = entity_scores(messages)
    seconds = time.perf_counter() - start
    date = time.strftime("%Y-%m-%d")
    table = comparison["table"]
    means = curve.pivot_table(index="per_intent", columns="classifier", values="macro_f1")
    lows = curve.pivot_table(index="per_intent", columns="classifier", values="macro_f1",
                             aggfunc="min")
    auroc = oos.mean(numeric_only=True)
    save_json({"date": date, "data": messages.name, "split": comparison["split"],
               "classifiers": table.reset_index().to_dict(orient="records"),
               "by_tag": comparison["by_tag"].reset_index().to_dict(orient="records"),
               "learning_curve": curve.to_dict(orient="records"),
               "out_of_scope": oos.to_dict(orient="records"),
               "entities": entities.reset_index().to_dict(orient="records"),
               "seconds": seconds}, Path(args.out) / "assistant.json")
    lines = ["| intent classifier | accuracy | macro-F1 | "
             + " | ".join(f"macro-F1, {n}/intent" for n in means.index) + " |",
             "|---|---|---|" + "---|" * len(means.index)]
    for name, row in table.iterrows():
        curve_cells = ([f"{means.loc[n, name]:.3f} (min {lows.loc[n, name]:.3f})"
                        for n in means.index] if name in means else ["--"] * len(means.index))
        lines.append(f"| {name} | {row['accuracy']:.4f} [{row['accuracy_ci'][0]:.4f}, "
                     f"{row['accuracy_ci'][1]:.4f}] | {row['macro_f1']:.4f} "
                     f"[{row['macro_f1_ci'][0]:.4f}, {row['macro_f1_ci'][1]:.4f}] | "
                     + " | ".join(curve_cells) + " |")
    lines += ["", "| unknown requests (5 intents held out, mean of "
              f"{len(oos)} draws) | AUROC |", "|---|---|"]
    for name in ("MiniLM + LR (prob. + neighbours)", "MiniLM + LR (max prob.)",
                 "TF-IDF + LR (max prob.)"):
        lines.append(f"| {name} | {auroc[name]:.3f} (min {oos[name].min():.3f}) |")
    lines += [""] + [
        f"Threshold set on validation messages of known intents ({rate:g} of them "
        f"accepted): out-of-scope precision {auroc[f'oos_precision@{rate:g}']:.3f}, recall "
        f"{auroc[f'oos_recall@{rate:g}']:.3f}; known-intent test messages accepted "
        f"{auroc[f'in_scope_accepted@{rate:g}']:.3f}." for rate in (0.95, 0.99)] + ["",
              "| entity | precision | recall | F1 | labelled spans |", "|---|---|---|---|---|"]
    for name, row in entities.iterrows():
        lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['f1']:.3f} | {int(row['n_gold'])} |")
    lines += ["", f"Data: {messages.name}, {len(messages):,} messages, 27 intents; split "
              f"{comparison['split']} (seeded, stratified). Accuracy and macro-F1: 95% "
              "bootstrap CI over test messages; learning curve: mean (and lowest) of "
              f"{args.repeats} seeded draws per size. Entity spans: exact match against the "
              f"labelled offsets ({messages.info['spans_trimmed']} of "
              f"{messages.info['spans']} trimmed to the entity's characters); amounts are "
              "labelled in only some of the messages that state one, so their precision is "
              f"a floor. {seconds / 60:.1f} min. Generated by `benchmarks/bench_assistant.py` "
              f"on {date}."]
    text = "\n".join(lines)
    atomic_write(Path(args.out) / "assistant.md", lambda tmp: Path(tmp).write_text(text + "\n"))
    update_readme("assistant", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
