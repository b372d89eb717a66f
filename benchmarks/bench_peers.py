"""Record the evaluation chapter's comparison with the yardstick's peers (xsell.peers).

Runs popularity, TIFU-KNN and SASRec on the data (``$XSELL_DATA_DIR`` or ``--data``)
with the hyperparameters of the data's tuning record, in a fresh result cache (the
text embeddings are not used), and writes ``xsell/records/yardstick-peers-<dataset>.json``:
what the evaluation chapter shows for this data (after refitting TIFU-KNN and checking
its rows). The record names the source of the code it ran; change SASRec, TIFU-KNN or
the evaluation and run this again (``tests/test_records.py`` says so).

One torch thread by default, as the chapters run in CI.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_peers.py [--data PATH]
"""

from __future__ import annotations

import os
import tempfile

from recording import record_parser, recorded_split


def main() -> int:
    args = record_parser(__doc__).parse_args()
    from xsell.peers import PEERS, peer_hyperparameters, record_peers

    split, recorded = recorded_split(args.data, list(PEERS), args.threads)
    import torch

    from xsell.records import find_recorded

    hyper = peer_hyperparameters(recorded)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XSELL_CACHE_DIR"] = tmp  # every fit timed from scratch
        path = record_peers(split, hyper, threads=torch.get_num_threads(),
                            torch=torch.__version__)
    from xsell.peers import RECORD, peers_call

    tables, record = find_recorded(RECORD, split, peers_call(hyper))
    table = tables["ranking"]
    head = table.query("(variant == 'all' and metric == 'ndcg' and k == 10) or "
                       "(variant == 'explore' and metric == 'recall' and k == 20)")
    print(head[["model", "variant", "metric", "k", "value", "ci_low", "ci_high"]]
          .to_string(index=False))
    print(f"wrote {path} ({record['seconds'] / 60:.1f} min on {record['threads']} thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
