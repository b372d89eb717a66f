"""Session-wide pytest settings: threads per worker, chapter order, executed chapters kept.

* Threads: with ``-n 2`` on a 2-core machine, two workers that each let torch and BLAS use
  every core slow each other down (oversubscribed threads spin and wait). Each worker,
  and the notebook kernels it starts, gets ``cores // workers`` threads unless the
  environment already says otherwise.
* Order: the chapters run first, the longest first, so that the two workers finish
  together (xdist hands each worker a whole file; by default it sorts files by their
  number of tests, which for notebooks is the number of cells, not their time).
* ``XSELL_EXECUTED_NOTEBOOKS=DIR``: every chapter whose cells all passed is written to
  ``DIR`` with its outputs, as nbval executed it. ``.ci/cache_notebooks.py`` stores those
  in the book's jupyter-cache, so the book build shows these outputs instead of executing
  every chapter a second time.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent

# The chapters, longest first (CI, 2026-12-05: applications 8.0 min, two-tower 7.6,
# evaluation 3.4, hybrid 3.7 -- it reuses what the evaluation chapter fits --,
# cross-category 3.3, mathematics 1.1, data preparation 0.4); a chapter not listed runs
# after these, then the unit tests.
CHAPTER_ORDER = ["applications", "two_tower", "evaluation", "hybrid", "cross_category",
                 "mathematics", "data_preparation"]


def _share_cores() -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, threads)


_share_cores()  # before anything imports torch or numpy in this worker


def pytest_collection_modifyitems(session, config, items) -> None:
    def rank(item) -> int:
        path = Path(str(item.fspath))
        if path.suffix != ".ipynb":
            return len(CHAPTER_ORDER) + 1
        return CHAPTER_ORDER.index(path.stem) if path.stem in CHAPTER_ORDER else len(CHAPTER_ORDER)

    items.sort(key=rank)  # stable: cells keep their order within a notebook


def pytest_configure(config) -> None:
    # xdist would reorder files by test count; keep the order chosen above.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


# --- executed chapters -------------------------------------------------------------------
_runs: dict[str, dict] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if not os.environ.get("XSELL_EXECUTED_NOTEBOOKS") or not hasattr(item, "cell_num"):
        return  # not asked to keep chapters, or not a notebook cell
    report = outcome.get_result()
    run = _runs.setdefault(str(item.fspath), {"outputs": {}, "failed": False,
                                              "start": time.time()})
    if report.failed or (report.skipped and call.when == "call"):
        run["failed"] = True
    elif call.when == "call":
        run["outputs"][item.cell_num] = getattr(item, "test_outputs", None) or []


def pytest_runtest_teardown(item, nextitem) -> None:
    folder = os.environ.get("XSELL_EXECUTED_NOTEBOOKS")
    if not folder or not hasattr(item, "cell_num"):
        return
    if nextitem is not None and str(nextitem.fspath) == str(item.fspath):
        return  # the chapter goes on
    run = _runs.pop(str(item.fspath), None)
    if run is None or run["failed"]:
        return
    _write_executed(Path(str(item.fspath)), run, Path(folder))


def _write_executed(source: Path, run: dict, folder: Path) -> None:
    import nbformat

    nb = nbformat.read(str(source), as_version=4)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    if set(run["outputs"]) != set(range(len(code_cells))):
        return  # some cell did not run (a -k selection): not a whole chapter
    for number, cell in enumerate(code_cells):
        cell.execution_count = number + 1
        cell.outputs = []
        for out in copy.deepcopy(run["outputs"][number]):
            if out.get("output_type") == "execute_result":
                out["execution_count"] = number + 1
            cell.outputs.append(out)
    nbformat.validate(nb)
    target = folder / source.resolve().relative_to(ROOT)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    nbformat.write(nb, str(partial))
    partial.replace(target)  # whole or absent, never half-written
    seconds = round(time.time() - run["start"], 1)
    target.with_suffix(".json").write_text(json.dumps({"execution_seconds": seconds}))
