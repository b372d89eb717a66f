"""The result cache shared by processes: one computes an entry, the others wait and read it."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from xsell.cache import memoize


def _ask(folder: str, log: str, barrier, results) -> None:
    os.environ["XSELL_CACHE_DIR"] = folder

    def compute() -> dict:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(1.5)  # long enough for the other process to ask meanwhile
        return {"answer": 42}

    barrier.wait()  # both ask at the same moment
    results.put(memoize("demo", {"x": 1}, compute)["answer"])


def test_two_processes_asking_for_one_entry_compute_it_once(tmp_path: Path):
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    log = tmp_path / "computed.log"
    workers = [context.Process(target=_ask, args=(str(tmp_path / "cache"), str(log), barrier,
                                                  results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert sorted(results.get(timeout=5) for _ in workers) == [42, 42]
    assert len(log.read_text().splitlines()) == 1  # the second process read the first's entry
