"""Recorded results of long experiments, so a chapter can show them without rerunning them.

Some comparisons cost far more than a chapter should spend on every execution (the
two-tower chapter's ablation refits the model eight times). They are deterministic, so a
benchmark runs them once and records the outcome: one JSON file per experiment in
``xsell/records/`` with the data's fingerprint, the split, every argument of the call,
the result tables, and when, where and how long it ran.

:func:`find_recorded` gives the tables back only for the same data, split and call;
on any other data the caller computes live. A record can go stale when ``xsell``'s code
changes, so a chapter that shows one recomputes some of its rows live and checks them
against it (:func:`check_against_record`); a mismatch fails the chapter (rerun the
benchmark that wrote the record).
"""

from __future__ import annotations

import datetime
import io
import json
import platform
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from xsell import __version__
from xsell.checkpoint import data_fingerprint
from xsell.data.splits import Split
from xsell.fileio import atomic_write

__all__ = ["BENCHMARK_RESULTS", "RECORDS", "benchmark_result", "check_against_record",
           "find_recorded", "read_json_records", "write_record"]

#: The package's own records (shipped with it, like the tuning records).
RECORDS = Path(__file__).resolve().parent / "records"
RECORD_FORMAT = "xsell-record/1"
#: Where ``benchmarks/`` writes its results, in a clone of the repository.
BENCHMARK_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def benchmark_result(name: str) -> dict | None:
    """The JSON a benchmark wrote (``benchmarks/results/{name}.json``), or None where there
    is none (an installed package has no ``benchmarks/``): measurements of one machine,
    shown by the chapters, never checked against live runs."""
    path = BENCHMARK_RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _plain(value):
    """JSON's own view of a value: tuples become lists, so a record compares with a call."""
    return json.loads(json.dumps(value, default=str))


def _identity(split: Split, call: Mapping) -> dict:
    return {"data": data_fingerprint(split.dataset),
            "split": _plain([split.name, split.params]), "call": _plain(dict(call))}


def write_record(name: str, split: Split, call: Mapping, tables: Mapping[str, pd.DataFrame],
                 seconds: float, folder: str | Path = RECORDS, **facts) -> Path:
    """Write ``tables`` as the record ``name`` of ``call`` on ``split`` (atomically).

    Parameters
    ----------
    name : str
        The experiment, e.g. ``"two-tower-ablation"``; the file is ``{name}-{dataset}.json``.
    split : Split
        The split the experiment ran on (its data's fingerprint identifies the data).
    call : mapping
        Every argument that determines the result (JSON-serialisable).
    tables : mapping of str to DataFrame
        The results, by name.
    seconds : float
        How long the experiment took.
    folder : str or Path
        Where to write (default: the package's records).
    **facts
        Anything else worth keeping beside it (threads, library versions).
    """
    slug = re.sub(r"[^a-z0-9]+", "-", split.dataset.name.lower()).strip("-")
    path = Path(folder) / f"{name}-{slug}.json"
    record = {"format": RECORD_FORMAT, "name": name, **_identity(split, call),
              "dataset": split.dataset.name, "xsell_version": __version__,
              "date": datetime.date.today().isoformat(), "machine": platform.machine(),
              "seconds": round(float(seconds), 1), **_plain(facts),
              "tables": {key: json.loads(table.to_json(orient="split", index=False))
                         for key, table in tables.items()}}
    text = json.dumps(record, indent=1) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_json_records(folder: str | Path, pattern: str = "*.json"):
    """Yield ``(path, record)`` for every JSON object in ``folder`` matching ``pattern``.

    A file that cannot be read or is not a JSON object is skipped with a warning naming it
    (the caller then computes live, as for a record of other data).
    """
    for path in sorted(Path(folder).glob(pattern)):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict):
            warnings.warn(f"{path}: not a readable record; ignored", stacklevel=3)
            continue
        yield path, record


def find_recorded(name: str, split: Split, call: Mapping,
                  folder: str | Path = RECORDS) -> tuple[dict[str, pd.DataFrame], dict] | None:
    """The recorded tables of ``call`` on this split's data, or None when there are none.

    Returns
    -------
    tuple or None
        ``(tables, record)``: ``tables`` maps each table's name to a DataFrame; ``record``
        is the rest of the file (date, seconds, machine, path).
    """
    wanted = _identity(split, call)
    for path, record in read_json_records(folder, f"{name}-*.json"):
        if (record.get("format") == RECORD_FORMAT
                and record.get("name") == name
                and all(record.get(key) == value for key, value in wanted.items())):
            tables = {key: pd.read_json(io.StringIO(json.dumps(table)), orient="split")
                      for key, table in record.pop("tables").items()}
            return tables, {**record, "path": str(path)}
    return None


def check_against_record(live: pd.DataFrame, recorded: pd.DataFrame,
                         on: Sequence[str] = ("model", "variant", "metric", "k"),
                         tolerance: float = 1e-6) -> pd.DataFrame:
    """Compare live rows with the same rows of a record; raise if any value differs.

    Parameters
    ----------
    live, recorded : DataFrame
        Result tables with a ``value`` column; every live row must be in the record.
    on : sequence of str
        The columns that identify a row.
    tolerance : float
        Largest absolute difference accepted (floating-point noise of another machine).

    Returns
    -------
    DataFrame
        The compared rows: ``on``, ``live``, ``recorded``, ``difference``.
    """
    on = list(on)
    both = live[on + ["value"]].merge(recorded[on + ["value"]], on=on, how="left",
                                      suffixes=("_live", "_recorded"))
    both = both.rename(columns={"value_live": "live", "value_recorded": "recorded"})
    both["difference"] = both["live"] - both["recorded"]
    missing = both[both["recorded"].isna()]
    if len(missing):
        raise ValueError(f"rows not in the record: {missing[on].to_dict('records')}")
    off = both[both["difference"].abs() > tolerance]
    if len(off):
        raise ValueError("the record no longer matches a live computation (rerun the "
                         f"benchmark that wrote it):\n{off.to_string(index=False)}")
    return both
