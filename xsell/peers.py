"""The yardstick's two peers -- TIFU-KNN for next baskets, SASRec for sequences -- beside
popularity, on the hyperparameters chosen for the data.

SASRec trains for about five minutes on one CPU thread, so on the data of the book
``benchmarks/bench_peers.py`` runs this comparison and records it (:mod:`xsell.records`).
A record also names the source of the code it ran (:func:`sasrec_fingerprint`): when the
SASRec model or the evaluation changes, the record stops matching and the comparison runs
live again (a test fails first, asking for the benchmark to be rerun). The evaluation
chapter shows the record after refitting TIFU-KNN now and checking its rows against it.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pandas as pd

from xsell.data.splits import Split
from xsell.experiments import compare_models
from xsell.records import find_recorded, write_record

__all__ = ["PEERS", "RECORD", "compare_peers", "peer_hyperparameters", "peers_call",
           "record_peers", "sasrec_fingerprint"]

#: The field's first two peers, by registered name.
PEERS = ("tifu-knn", "sasrec")
RECORD = "yardstick-peers"
KS = (5, 10, 20)
#: The source files whose code decides the recorded numbers.
_SOURCES = ("models/sasrec.py", "models/sasrec_network.py", "models/tifu_knn.py",
            "models/base.py", "evaluation.py", "metrics.py", "experiments.py")


def sasrec_fingerprint() -> str:
    """Hash of the source of the models and the evaluation behind the record."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update(name.encode())
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:16]


def peer_hyperparameters(recorded: dict | None) -> dict | None:
    """``{model: {variant: params}}`` of the comparison from a tuning record (None: tune).

    SASRec trains for minutes on a laptop CPU, so one fit -- the configuration chosen on
    the all-items validation target -- serves every variant.
    """
    if recorded is None:
        return None
    return {"popularity": {}, "tifu-knn": recorded["tifu-knn"],
            "sasrec": {"all": recorded["sasrec"]["all"]}}


def peers_call(hyperparameters: dict | None) -> dict:
    """Every argument that decides the comparison (its record's key)."""
    return {"models": ["popularity", *PEERS], "ks": list(KS),
            "hyperparameters": hyperparameters, "code": sasrec_fingerprint()}


def compare_peers(split: Split, hyperparameters: dict | None, models: list[str] | None = None,
                  recorded: bool = True, progress: bool = True
                  ) -> tuple[pd.DataFrame, dict, dict | None]:
    """Popularity, TIFU-KNN and SASRec on the test basket, from the record when there is one.

    Parameters
    ----------
    split : Split
        The temporal split (:func:`~xsell.data.prepare.prepare`).
    hyperparameters : dict or None
        :func:`peer_hyperparameters`; None tunes on validation.
    models : list of str, optional
        Compute only these of ``popularity`` and :data:`PEERS` (live), e.g. to check a
        record; the default is all of them.
    recorded : bool
        Use the record of this data, call and code when one exists.
    progress : bool
        Progress bars while computing.

    Returns
    -------
    table : DataFrame
        The :func:`~xsell.experiments.compare_models` table (popularity the baseline).
    chosen : dict
        ``{model: {variant: params}}`` used.
    record : dict or None
        The record it came from; None when computed live.
    """
    call = peers_call(hyperparameters)
    if recorded and models is None:
        found = find_recorded(RECORD, split, call)
        if found is not None:
            tables, record = found
            return tables["ranking"], record["chosen"], record
    names = call["models"] if models is None else ["popularity", *models]
    names = list(dict.fromkeys(names))
    hyper = None if hyperparameters is None else {n: hyperparameters[n] for n in names}
    table, chosen = compare_models(split, names, ks=KS, hyperparameters=hyper,
                                   progress=progress, cache=True)
    return table, chosen, None


def record_peers(split: Split, hyperparameters: dict | None, **facts) -> Path:
    """Run the comparison live and record it (``benchmarks/bench_peers.py``)."""
    start = time.perf_counter()
    table, chosen, _ = compare_peers(split, hyperparameters, recorded=False)
    return write_record(RECORD, split, peers_call(hyperparameters), {"ranking": table},
                        time.perf_counter() - start, chosen=chosen, **facts)
