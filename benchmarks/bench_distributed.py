"""Data-parallel two-tower training: one process against two under torchrun, same batch.

Three runs of the same work on the same cores: 1 process x 1 thread (the reference),
1 process x 2 threads (what a plain ``fit`` uses on 2 cores) and 2 processes x 1 thread
(``torchrun --standalone --nproc_per_node 2``, gloo; :mod:`xsell.models.distributed`).
Each run, in fresh processes:

* fits :class:`~xsell.models.two_tower.TwoTower` (defaults: frozen all-MiniLM-L6-v2,
  text + id items, attention user tower, in-batch softmax with log-Q, global batch 1,024)
  on the Instacart sample's train + validation baskets for a fixed number of epochs
  (``patience`` = epochs, so no early stop), the catalogue's vectors read from the cache,
  and records the seconds of each epoch and of the fit;
* then encodes the first ``--encode`` catalogue texts with MiniLM and no cache -- the
  catalogue encoding that ranks share (:func:`xsell.models.distributed.encode_texts`).

The seconds of the whole command (start-up, imports, data loading, both steps) are
recorded too.

The speed-ups are ratios of the 1-process times to the 2-process ones. The two-process
weights are compared with the 1 x 2 run's (max absolute difference), as is the encoded
table. Writes ``benchmarks/results/distributed.{json,md}`` and the README's
``bench:distributed`` table.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_distributed.py [--data PATH] [--epochs 3]
        [--encode 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from readme_table import markdown_table, update_readme

HERE = Path(__file__).resolve().parent
#: (label, processes, threads per process)
RUNS = (("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2),
        ("2 processes x 1 thread", 2, 1))
MARK = "RESULT "  # the line a worker's rank 0 reports on


def worker(args: argparse.Namespace) -> int:
    """One run's work -- the fit, then the encoding -- in this process (one rank of it
    under ``torchrun``)."""
    import torch

    torch.set_num_threads(args.threads)
    from xsell.data import load_dataset
    from xsell.data.prepare import prepare
    from xsell.models import distributed
    from xsell.models.two_tower import TwoTower
    from xsell.text import TextEncoder, item_texts

    distributed.init()
    train = prepare(load_dataset(args.data)).split.train_dataset(include_validation=True)
    encoder = TextEncoder(cache=False, progress=False)
    _ = encoder.lm  # the weights load before any clock starts
    together = torch.distributed.barrier if distributed.world_size() > 1 else lambda: None
    together()  # every rank's clock starts at once
    model = TwoTower(max_epochs=args.epochs, patience=args.epochs, progress=False)
    model.fit(train)
    out = {"fit_s": model.fit_seconds_, "epoch_s": [e["seconds"] for e in model.history_],
           "train_loss": [e["train_loss"] for e in model.history_],
           "rows_per_process": model.history_[-1].get("rows_per_process"),
           # what DDP all-reduces every step: the trained parameters' gradients
           "gradient_mb": sum(p.numel() for p in model._modules().parameters()
                              if p.requires_grad) * 4 / 2**20}
    arrays = {k: v.numpy() for k, v in model._modules().state_dict().items()
              if k != "item.text"}
    texts = item_texts(train).tolist()[:args.encode]
    together()
    start = time.perf_counter()
    arrays["encoded"] = distributed.encode_texts(encoder, texts)
    out["encode_s"] = time.perf_counter() - start
    if distributed.rank() == 0:
        np.savez(args.save, **arrays)
        print(MARK + json.dumps({**out, "processes": distributed.world_size()}), flush=True)
    distributed.shutdown()
    return 0


def launch(processes: int, threads: int, work: list[str]) -> dict:
    """Run ``work`` in fresh processes; rank 0's report plus the command's seconds."""
    script = [str(Path(__file__).resolve()), "--threads", str(threads), *work]
    command = [sys.executable, *script] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(processes), *script]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith(MARK))
    return {**json.loads(line[len(MARK):]), "command_s": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="default: $XSELL_DATA_DIR")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--encode", type=int, default=3000,
                        help="catalogue texts encoded without a cache")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import torch

    from xsell.data import load_dataset
    from xsell.data.prepare import prepare
    from xsell.text import TextEncoder, item_texts

    start = time.perf_counter()
    train = prepare(load_dataset(args.data)).split.train_dataset(include_validation=True)
    TextEncoder(progress=False).encode(item_texts(train).tolist())  # the cache, filled once
    data = [] if args.data is None else ["--data", args.data]
    report = {"dataset": train.name, "users": train.n_users, "items": train.n_items,
              "epochs": args.epochs, "batch_size": 1024, "encode_texts": args.encode,
              "torch": torch.__version__, "cpus": os.cpu_count(),
              "load_average_before": [round(x, 2) for x in os.getloadavg()],
              "date": time.strftime("%Y-%m-%d"), "runs": []}
    saved = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, processes, threads in RUNS:
            path = f"{tmp}/{processes}x{threads}.npz"
            row = {"run": label, "processes": processes, "threads": threads,
                   "load_average_before": round(os.getloadavg()[0], 2),
                   **launch(processes, threads, ["--worker", "--save", path, "--epochs",
                                                 str(args.epochs), "--encode",
                                                 str(args.encode), *data])}
            with np.load(path) as npz:
                saved[processes, threads] = dict(npz)
            row["s_per_epoch"] = float(np.mean(row["epoch_s"]))
            report["runs"].append(row)
            print(row, flush=True)
    # 2 processes against 1 process x 2 threads: the weights, and the encoded vectors
    a, b = saved[1, 2], saved[2, 1]
    report["max_abs_diff_train"] = max(float(np.abs(a[k] - b[k]).max()) for k in a
                                       if k != "encoded")
    report["max_abs_diff_encode"] = float(np.abs(a["encoded"] - b["encoded"]).max())
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report["seconds"] = round(time.perf_counter() - start, 1)
    by = {(r["processes"], r["threads"]): r for r in report["runs"]}
    two = by[2, 1]
    for ref in ((1, 1), (1, 2)):
        name = f"{ref[0]}x{ref[1]}"
        report[f"speedup_epoch_vs_{name}"] = by[ref]["s_per_epoch"] / two["s_per_epoch"]
        report[f"speedup_encode_vs_{name}"] = by[ref]["encode_s"] / two["encode_s"]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distributed.json").write_text(json.dumps(report, indent=2) + "\n")
    ref = by[1, 2]
    lines = markdown_table(
        ["run", "s / epoch", f"training ({args.epochs} epochs, s)", "fit (s)",
         "command (s)", "epoch speed-up vs 1 x 2", f"encode {args.encode:,} texts (s)",
         "encode speed-up vs 1 x 2"],
        ([r["run"], f"{r['s_per_epoch']:.2f}", f"{sum(r['epoch_s']):.1f}", f"{r['fit_s']:.1f}",
          f"{r['command_s']:.1f}", f"{ref['s_per_epoch'] / r['s_per_epoch']:.2f}",
          f"{r['encode_s']:.1f}", f"{ref['encode_s'] / r['encode_s']:.2f}"]
         for r in report["runs"]))
    shares = " + ".join(f"{n:,}" for n in two["rows_per_process"])
    loads = ", ".join(f"{r['load_average_before']}" for r in report["runs"])
    md = "\n".join(lines) + (
        f"\n\nTwoTower defaults on {report['dataset']} ({report['users']:,} users, "
        f"{report['items']:,} items; train + validation baskets), global batch 1,024, "
        f"{args.epochs} epochs, catalogue vectors from the cache; 2 processes: torchrun "
        f"--standalone, gloo, {shares} training rows per process per epoch, "
        f"{two['gradient_mb']:.0f} MiB of gradients all-reduced per step. Against 1 "
        f"process x 1 thread, 2 processes train {report['speedup_epoch_vs_1x1']:.2f}x and "
        f"encode {report['speedup_encode_vs_1x1']:.2f}x as fast. Weights after training, 2 "
        f"processes vs 1 x 2: max abs difference {report['max_abs_diff_train']:.1e}; "
        f"encoded vectors: {report['max_abs_diff_encode']:.1e}. Command: the whole run "
        f"(start-up, imports, data loading, the fit, the encoding). {report['cpus']} CPUs; "
        f"1-minute load average before each run {loads}, after the last "
        f"{report['load_average_after'][0]}; "
        f"OPENBLAS_NUM_THREADS=1, torch {report['torch']}. Run {report['seconds'] / 60:.1f} "
        f"min. Generated by `benchmarks/bench_distributed.py` on {report['date']}.\n")
    (out / "distributed.md").write_text(md)
    update_readme("distributed", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
