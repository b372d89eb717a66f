"""What the benchmarks that write a chapter's record share: their flags, the thread
count, and the data's split with the hyperparameters of its tuning record."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def record_parser(doc: str) -> argparse.ArgumentParser:
    """``--data`` and ``--threads`` (one torch thread by default: the chapters run on one
    thread per test worker in CI, so the rows they recompute match the record)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return parser


def recorded_split(data: str | None, names: Sequence[str], threads: int):
    """Set torch's threads; the chapters' split of ``data`` and the tuning record's
    hyperparameters of ``names`` (exits naming the benchmark to run when there is none)."""
    import torch

    torch.set_num_threads(threads)
    from xsell.data import load_dataset
    from xsell.data.prepare import prepare
    from xsell.tuning import recorded_hyperparameters

    split = prepare(load_dataset(data)).split
    hyper = recorded_hyperparameters(split, list(names))
    if hyper is None:
        raise SystemExit(f"no tuning record of {split.dataset.name}: run "
                         "benchmarks/bench_tuning.py first")
    return split, hyper
