"""The product-search protocol: queries built from held-out purchases.

Purchase logs hold no search queries, so -- as personalised product search research does
(Ai et al., SIGIR 2017, used each product's category path as its query) -- every
held-out purchase is turned into one:

* ``"category"`` queries: the name of the product's leaf category (Instacart's aisle,
  e.g. ``"yogurt"``; The Complete Journey's sub-commodity);
* ``"title"`` queries: a short fragment of the product's title -- one or two
  neighbouring words -- with a typing error in half of them (a letter dropped, doubled,
  swapped or replaced), seeded.

The relevant item is the product the shopper bought. A shopper who bought several
products a query stands for (three yogurts) issues that query once, with all of them
relevant. Every catalogue product is a candidate. A target is *new* when the shopper had
not bought it before the held-out basket: there, buying again cannot help, and only what
the rest of their behaviour says can.

Metrics per query (NDCG@k, Recall@k, MRR) are averaged per query; confidence intervals
resample shoppers (:func:`xsell.evaluation.bootstrap_ci`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from xsell.apps.query import STOP_WORDS, words
from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.data.splits import Split
from xsell.evaluation import bootstrap_ci
from xsell.metrics import mrr_at_k, ndcg_at_k, recall_at_k

#: The kinds of query the protocol builds.
QUERY_KINDS = ("category", "title")
#: The subsets of queries reported, every query and the targets new to the shopper.
SEARCH_VARIANTS = ("all", "new")
#: Share of title queries given a typing error.
TYPO_RATE = 0.5
#: Depth of the ranked list the metrics read (MRR beyond it counts as 0).
RANK_DEPTH = 100

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_TITLE_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


def leaf_category(dataset: Dataset) -> pd.Series:
    """The last level of every item's category path, indexed by item id."""
    if dataset.n_category_levels == 0:
        raise ValueError(f"{dataset.name}: the catalogue has no category column, so category "
                         "queries cannot be built; use title queries")
    path = dataset.item_category(dataset.n_category_levels - 1)
    return path.str.rsplit(S.CATEGORY_SEP, n=1).str[-1].str.strip()


def add_typo(word: str, rng: np.random.Generator) -> str:
    """``word`` with one typing error: a letter dropped, doubled, swapped with the next,
    or replaced (words of fewer than four letters are left alone). The error always
    changes the word (swapping "rr" would not), trying again when it would not."""
    if len(word) < 4:
        return word
    for _ in range(20):
        i = int(rng.integers(1, len(word) - 1))  # keep the first letter, as typists mostly do
        kind = int(rng.integers(4))
        if kind == 0:
            typed = word[:i] + word[i + 1:]
        elif kind == 1:
            typed = word[:i] + word[i] + word[i:]
        elif kind == 2:
            typed = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        else:
            typed = word[:i] + _LETTERS[int(rng.integers(26))] + word[i + 1:]
        if typed != word:
            return typed
    return word[:1] + word[2:]  # a dropped second letter always changes a 4+ letter word


def title_fragment(title: str, rng: np.random.Generator, typo_rate: float = TYPO_RATE) -> str:
    """One or two neighbouring words of ``title``, the longest perhaps mistyped."""
    words = ([w for w in _TITLE_WORD.findall(str(title).lower()) if w not in STOP_WORDS]
             or [str(title).lower()])
    n = 1 if len(words) == 1 or rng.random() < 0.5 else 2
    start = int(rng.integers(len(words) - n + 1))
    chosen = words[start:start + n]
    if rng.random() < typo_rate:
        longest = int(np.argmax([len(w) for w in chosen]))
        typed = add_typo(chosen[longest], rng)
        if typed not in STOP_WORDS:  # "wheat" -> "what" would leave no query at all
            chosen[longest] = typed
    return " ".join(chosen)


def build_queries(rows: pd.DataFrame, dataset: Dataset, history: pd.DataFrame,
                  kind: str = "category", seed: int = 0) -> pd.DataFrame:
    """One query per (shopper, query text) of held-out purchase ``rows``.

    Parameters
    ----------
    rows : pandas.DataFrame
        Held-out interactions (``user_id``, ``item_id``).
    dataset : Dataset
        For the catalogue (titles, categories).
    history : pandas.DataFrame
        What each shopper bought before ``rows`` (decides which targets are new).
    kind : {"category", "title"}
    seed : int
        Seed of the title fragments and their typing errors.

    Returns
    -------
    pandas.DataFrame
        One row per (query, target): ``query_id``, ``user_id``, ``query``, ``item_id``,
        ``new``; sorted by ``query_id``.
    """
    if kind not in QUERY_KINDS:
        raise ValueError(f"query kind must be one of {', '.join(QUERY_KINDS)}, not {kind!r}")
    pairs = rows[[S.USER, S.ITEM]].drop_duplicates().reset_index(drop=True)
    if kind == "category":
        text = leaf_category(dataset).reindex(pairs[S.ITEM]).to_numpy()
    else:
        titles = dataset.items.set_index(S.ITEM)[S.TITLE].reindex(pairs[S.ITEM]).astype(str)
        rng = np.random.default_rng(seed)
        text = np.array([title_fragment(t, rng) for t in titles])
    # A title made only of function words ("The One") gives no query: such pairs are left out.
    asks = np.array([any(w not in STOP_WORDS for w in words(t)) for t in text], dtype=bool)
    pairs, text = pairs[asks].reset_index(drop=True), text[asks]
    seen = pd.MultiIndex.from_frame(history[[S.USER, S.ITEM]].drop_duplicates())
    new = ~pd.MultiIndex.from_frame(pairs).isin(seen)
    out = pairs.assign(query=text, new=new)
    out["query_id"] = out.groupby([S.USER, "query"], sort=True).ngroup()
    out = out.sort_values(["query_id", S.ITEM], kind="stable").reset_index(drop=True)
    return out[["query_id", S.USER, "query", S.ITEM, "new"]]


def search_queries(split: Split, part: str = "test", kind: str = "category",
                   seed: int = 0) -> pd.DataFrame:
    """:func:`build_queries` for a split's ``"validation"`` or ``"test"`` basket; the
    history is everything before it."""
    if part == "test":
        rows, history = split.test, pd.concat([split.train, split.validation])
    elif part == "validation":
        rows, history = split.validation, split.train
    else:
        raise ValueError(f"part must be 'validation' or 'test', not {part!r}")
    return build_queries(rows, split.dataset, history, kind=kind, seed=seed)


def query_table(queries: pd.DataFrame) -> pd.DataFrame:
    """One row per query: ``user_id``, ``query`` (indexed by ``query_id``)."""
    return queries.groupby("query_id", sort=True)[[S.USER, "query"]].first()


def per_query_metrics(ranked: Sequence[np.ndarray], queries: pd.DataFrame,
                      k: int = 10) -> pd.DataFrame:
    """NDCG@k, Recall@k and MRR of every query and variant.

    Parameters
    ----------
    ranked : sequence of numpy.ndarray
        Item ids of each query's ranked list (query order of :func:`query_table`).
    queries : pandas.DataFrame
        Output of :func:`build_queries`.

    Returns
    -------
    pandas.DataFrame
        ``query_id``, ``user_id``, ``variant``, ``ndcg``, ``recall``, ``mrr``.
    """
    table = query_table(queries)
    if len(ranked) != len(table):
        raise ValueError(f"{len(ranked)} ranked lists for {len(table)} queries")
    depth = max(RANK_DEPTH, k)
    lists = np.full((len(table), depth), -1, dtype=object)
    for i, items in enumerate(ranked):
        items = np.asarray(items, dtype=object)[:depth]
        lists[i, :len(items)] = items
    out = []
    for variant in SEARCH_VARIANTS:
        rows = queries if variant == "all" else queries[queries["new"]]
        targets = rows.groupby("query_id")[S.ITEM].agg(list)
        keep = table.index.get_indexer(targets.index)
        sub = lists[keep]
        out.append(pd.DataFrame({
            "query_id": targets.index, S.USER: table[S.USER].to_numpy()[keep],
            "variant": variant,
            "ndcg": ndcg_at_k(sub, targets.tolist(), k),
            "recall": recall_at_k(sub, targets.tolist(), k),
            "mrr": mrr_at_k(sub, targets.tolist(), depth)}))
    return pd.concat(out, ignore_index=True)


def summarise_search(per_query: Mapping[str, pd.DataFrame], k: int = 10, n_boot: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """Mean and 95% bootstrap CI (over shoppers) of each system's per-query metrics.

    Returns
    -------
    pandas.DataFrame
        ``system``, ``variant``, ``metric`` (``ndcg@k``, ``recall@k``, ``mrr``),
        ``value``, ``ci_low``, ``ci_high``, ``n_queries``, ``n_users``.
    """
    rows = []
    for system, table in per_query.items():
        for variant, part in table.groupby("variant", sort=False):
            for metric, name in (("ndcg", f"ndcg@{k}"), ("recall", f"recall@{k}"),
                                 ("mrr", "mrr")):
                low, high = bootstrap_ci(part[metric].to_numpy(), part[S.USER].to_numpy(),
                                         n_boot=n_boot, seed=seed)
                rows.append({"system": system, "variant": variant, "metric": name,
                             "value": float(part[metric].mean()), "ci_low": low,
                             "ci_high": high, "n_queries": len(part),
                             "n_users": int(part[S.USER].nunique())})
    return pd.DataFrame(rows)
