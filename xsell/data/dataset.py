"""The :class:`Dataset`: purchase logs plus a catalogue, validated and put in time order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.data.validation import (
    DataValidationError,
    validate_interactions,
    validate_items,
    validate_references,
)
from xsell.fileio import save_csv


class Dataset:
    """Interactions and a catalogue, in the canonical form every model reads.

    Build one with :meth:`from_frames` or :meth:`from_csv` (which validate), not with the
    constructor, which trusts its input.

    Canonical interactions have one row per (user, basket, item), sorted by user and time,
    with columns ``user_id``, ``item_id``, ``basket_id`` and ``seq`` -- the 0-based position
    of the basket in the user's history -- plus ``timestamp``, ``quantity`` and ``rating``
    when the source has them, and any extra columns the source carried.

    Parameters
    ----------
    interactions : pandas.DataFrame
        Canonical interactions (see above).
    items : pandas.DataFrame
        Catalogue with ``item_id`` and ``title``; ``category`` is a path joined by
        ``" > "``.
    name : str
        Short name shown in summaries and plots.
    info : dict, optional
        Provenance notes (source path, what the loader dropped, ...).
    """

    def __init__(self, interactions: pd.DataFrame, items: pd.DataFrame, name: str = "dataset",
                 info: dict | None = None):
        self.interactions = interactions
        self.items = items
        self.name = name
        self.info = dict(info or {})
        self._item_index: pd.Index | None = None
        self._user_index: pd.Index | None = None
        self._item_categories: dict[int, pd.Series] = {}
        self._user_rows: dict | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frames(cls, interactions: pd.DataFrame, items: pd.DataFrame, name: str = "dataset",
                    info: dict | None = None, *, sources: tuple[str, str] = ("interactions", "items"),
                    is_file: bool = False, check_duplicates: bool = True) -> Dataset:
        """Validate two frames in the generic format and build a dataset.

        Parameters
        ----------
        interactions, items : pandas.DataFrame
            Frames in the generic format (:mod:`xsell.data.schema`).
        name : str
            Dataset name.
        info : dict, optional
            Provenance notes.
        sources : tuple of str
            Names of the two inputs used in error messages.
        is_file : bool
            Whether the frames came from CSV files (error messages then give line numbers).
        check_duplicates : bool
            Reject duplicate interaction rows (default). Pass False to keep them and let
            :func:`xsell.data.cleaning.clean` remove and count them.

        Raises
        ------
        DataValidationError
            If either frame breaks the format.
        """
        problems = []  # report both files' problems together, not one file per attempt
        try:
            inter = validate_interactions(interactions, sources[0], is_file=is_file,
                                          check_duplicates=check_duplicates)
        except DataValidationError as err:
            problems += err.problems
        try:
            cat = validate_items(items, sources[1], is_file=is_file)
        except DataValidationError as err:
            problems += err.problems
        if problems:
            raise DataValidationError(problems)
        validate_references(inter, cat, sources[0], is_file=is_file)
        return cls(canonical_interactions(inter), cat.reset_index(drop=True), name=name, info=info)

    @classmethod
    def from_csv(cls, interactions_path: str | os.PathLike, items_path: str | os.PathLike,
                 name: str | None = None, **kwargs) -> Dataset:
        """Read and validate ``interactions.csv`` and ``items.csv`` in the generic format.

        Ids are read as text, so ``007`` and ``7`` stay different ids, and ``NA``,
        ``None`` or ``null`` is an id (or a title) like any other. Unreadable files (empty,
        header only, compressed, not UTF-8, another delimiter, repeated column names, bad
        quoting) raise :class:`~xsell.errors.InputError` naming the file and line.

        Parameters
        ----------
        interactions_path, items_path : path-like
            The two CSV files.
        name : str, optional
            Dataset name; defaults to the interactions file's folder name.
        **kwargs
            Passed to :meth:`from_frames`.
        """
        from xsell.data.csvread import read_generic_csv

        interactions_path, items_path = Path(interactions_path), Path(items_path)
        for p in (interactions_path, items_path):
            if not p.exists():
                raise FileNotFoundError(f"{p}: no such file (expected the generic format, see "
                                        "xsell.data.schema)")
        id_types = {S.USER: str, S.ITEM: str, S.BASKET: str}
        inter = read_generic_csv(interactions_path, role="interactions",
                                 required=S.INTERACTION_REQUIRED, dtype=id_types,
                                 text_columns=tuple(id_types))
        items = read_generic_csv(items_path, role="items", required=S.ITEM_REQUIRED,
                                 dtype={S.ITEM: str, S.TITLE: str, S.CATEGORY: str,
                                        S.BRAND: str, S.DESCRIPTION: str},
                                 text_columns=(S.ITEM, S.TITLE))
        name = name or interactions_path.resolve().parent.name
        info = {"source": "generic CSV", "interactions": str(interactions_path),
                "items": str(items_path)}
        return cls.from_frames(inter, items, name=name, info=info,
                               sources=(str(interactions_path), str(items_path)), is_file=True,
                               **kwargs)

    def sample_users(self, n: int, seed: int = 0) -> Dataset:
        """``n`` users drawn at random (seeded) with all their rows, and only the products
        they bought: a small dataset for costly experiments (e.g. fine-tuning on a CPU)."""
        users = np.random.default_rng(seed).choice(self.user_index, size=min(n, self.n_users),
                                                   replace=False)
        inter = self.interactions[self.interactions[S.USER].isin(users)]
        items = self.items[self.items[S.ITEM].isin(inter[S.ITEM])]
        return Dataset(inter.reset_index(drop=True), items.reset_index(drop=True),
                       name=f"{self.name} ({len(users)} users)",
                       info={**self.info, "sampled_users": len(users), "sample_seed": seed})

    def with_interactions(self, interactions: pd.DataFrame, **info) -> Dataset:
        """A dataset sharing this catalogue with other (already canonical) interactions."""
        return Dataset(interactions, self.items, name=self.name, info={**self.info, **info})

    # ------------------------------------------------------------------ sizes and ids
    @property
    def n_users(self) -> int:
        """Number of distinct users with at least one interaction."""
        return int(self.interactions[S.USER].nunique())

    @property
    def n_items(self) -> int:
        """Number of items in the catalogue (including never-bought ones)."""
        return len(self.items)

    @property
    def n_baskets(self) -> int:
        """Number of distinct baskets (orders)."""
        return int(self.interactions.groupby([S.USER, S.BASKET], sort=False).ngroups)

    @property
    def n_interactions(self) -> int:
        """Number of interaction rows."""
        return len(self.interactions)

    @property
    def user_index(self) -> pd.Index:
        """Sorted user ids; position = the user's integer code."""
        if self._user_index is None:
            self._user_index = pd.Index(np.sort(self.interactions[S.USER].unique()), name=S.USER)
        return self._user_index

    @property
    def item_index(self) -> pd.Index:
        """Catalogue item ids in catalogue order; position = the item's integer code."""
        if self._item_index is None:
            self._item_index = pd.Index(self.items[S.ITEM].to_numpy(), name=S.ITEM)
        return self._item_index

    def user_codes(self, users) -> np.ndarray:
        """Map user ids to integer codes; raises ``KeyError`` naming unknown ids."""
        return _codes(self.user_index, users, "user")

    def item_codes(self, items) -> np.ndarray:
        """Map item ids to integer codes; raises ``KeyError`` naming unknown ids."""
        return _codes(self.item_index, items, "item")

    def user_interactions(self, user) -> pd.DataFrame:
        """The interaction rows of ``user`` (none for an id the data lacks), in table order.

        The rows of every user are located once (a served request would otherwise scan
        the whole table: 10 ms on Instacart's sample); datasets are treated as immutable.
        """
        if self._user_rows is None:
            self._user_rows = self.interactions.groupby(S.USER, sort=False,
                                                        observed=True).indices
        rows = self._user_rows.get(user)
        return self.interactions.iloc[rows if rows is not None else np.empty(0, np.intp)]

    # ------------------------------------------------------------------ categories
    @property
    def n_category_levels(self) -> int:
        """Depth of the deepest category path (0 when the catalogue has no categories)."""
        if S.CATEGORY not in self.items:
            return 0
        depth = self.items[S.CATEGORY].dropna().str.count(S.CATEGORY_SEP.strip()) + 1
        return int(depth.max()) if len(depth) else 0

    def item_category(self, level: int = 0) -> pd.Series:
        """Category of every catalogue item at ``level`` (0 = top), indexed by item id.

        The prefix up to ``level`` is kept (``"produce > fruits"`` at level 1), so names
        stay unique across branches. Items with a shorter path keep their deepest level;
        items without a category get ``"(none)"``.
        """
        if S.CATEGORY not in self.items:
            return pd.Series("(none)", index=self.item_index, name=S.CATEGORY)
        # Splitting every path costs ~0.1 s on a 50k-item catalogue and a served request
        # asks several times; datasets are treated as immutable, so compute each level once.
        if level not in self._item_categories:
            parts = self.items[S.CATEGORY].fillna("(none)").str.split(S.CATEGORY_SEP,
                                                                        regex=False)
            prefix = parts.map(lambda p: S.CATEGORY_SEP.join(p[: level + 1]))
            self._item_categories[level] = pd.Series(prefix.to_numpy(), index=self.item_index,
                                                     name=f"category_l{level}")
        return self._item_categories[level].copy()

    def interaction_category(self, level: int = 0) -> pd.Series:
        """Category at ``level`` of the item of every interaction row."""
        return self.item_category(level).reindex(self.interactions[S.ITEM]).set_axis(
            self.interactions.index)

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict:
        """Headline statistics: sizes, categories per level, history-length quantiles."""
        inter = self.interactions
        baskets_per_user = inter.groupby(S.USER)[S.SEQ].max() + 1
        rows_per_user = inter.groupby(S.USER).size()
        basket_sizes = inter.groupby([S.USER, S.BASKET], sort=False).size()
        q = [0.0, 0.25, 0.5, 0.75, 0.9, 1.0]
        used = inter[S.ITEM].unique()
        out = {
            "name": self.name,
            "users": self.n_users,
            "items_in_catalogue": self.n_items,
            "items_with_interactions": int(len(used)),
            "baskets": self.n_baskets,
            "interactions": self.n_interactions,
            "categories_per_level": [int(self.item_category(lv).loc[used].nunique())
                                     for lv in range(self.n_category_levels)],
            "baskets_per_user_quantiles": {str(k): float(v) for k, v in
                                           baskets_per_user.quantile(q).items()},
            "interactions_per_user_quantiles": {str(k): float(v) for k, v in
                                                rows_per_user.quantile(q).items()},
            "mean_basket_size": float(basket_sizes.mean()),
            "has_timestamp": S.TIMESTAMP in inter,
        }
        return out

    def summary_text(self) -> str:
        """:meth:`summary` formatted for a terminal."""
        s = self.summary()
        lines = [
            f"dataset            {s['name']}",
            f"users              {s['users']:,}",
            f"items              {s['items_with_interactions']:,} with interactions "
            f"({s['items_in_catalogue']:,} in catalogue)",
            f"baskets            {s['baskets']:,} (mean size {s['mean_basket_size']:.2f})",
            f"interactions       {s['interactions']:,}",
            "categories/level   " + (", ".join(f"L{i}: {n}" for i, n in
                                              enumerate(s["categories_per_level"])) or "none"),
        ]
        for key, label in (("baskets_per_user_quantiles", "baskets/user"),
                           ("interactions_per_user_quantiles", "rows/user")):
            qs = s[key]
            lines.append(f"{label:<18} " + "  ".join(
                f"q{float(k) * 100:g}={v:g}" for k, v in qs.items()))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, users={self.n_users:,}, items={self.n_items:,}, "
                f"baskets={self.n_baskets:,}, interactions={self.n_interactions:,})")

    # ------------------------------------------------------------------ export
    def to_csv(self, folder: str | os.PathLike) -> tuple[Path, Path]:
        """Write the dataset in the generic format (atomically: all or nothing).

        Returns
        -------
        tuple of Path
            Paths of ``interactions.csv`` and ``items.csv``.
        """
        folder = Path(folder)
        return (save_csv(self.interactions, folder / S.INTERACTIONS_FILE),
                save_csv(self.items, folder / S.ITEMS_FILE))


def canonical_interactions(df: pd.DataFrame) -> pd.DataFrame:
    """Put validated interactions in canonical form: baskets, 0-based ``seq``, time order.

    Basket identity: ``basket_id`` when given; otherwise (user, ``seq``) when ``seq`` is
    given; otherwise each row is its own basket. Basket order within a user: by
    timestamp when given, then by ``seq``, then by first appearance in the input.
    """
    out = df.reset_index(drop=True).copy()
    out["_row"] = np.arange(len(out))
    if S.BASKET not in out:
        if S.SEQ in out:
            out[S.BASKET] = out.groupby([S.USER, S.SEQ], sort=False).ngroup()
        else:
            out[S.BASKET] = out["_row"]
    keys = {"_first": ("_row", "min")}
    if S.TIMESTAMP in out:
        keys["_time"] = (S.TIMESTAMP, "min")
    if S.SEQ in out:
        keys["_seq"] = (S.SEQ, "min")
    baskets = out.groupby([S.USER, S.BASKET], sort=False).agg(**keys).reset_index()
    order = [S.USER] + [k for k in ("_time", "_seq") if k in baskets] + ["_first"]
    baskets = baskets.sort_values(order, kind="stable")
    baskets[S.SEQ] = baskets.groupby(S.USER, sort=False).cumcount()
    out = out.drop(columns=[S.SEQ], errors="ignore").merge(
        baskets[[S.USER, S.BASKET, S.SEQ]], on=[S.USER, S.BASKET], how="left")
    out = out.sort_values([S.USER, S.SEQ, "_row"], kind="stable").drop(columns="_row")
    front = [S.USER, S.ITEM, S.BASKET, S.SEQ] + [c for c in (S.TIMESTAMP, S.QUANTITY, S.RATING)
                                                 if c in out]
    out = out[front + [c for c in out.columns if c not in front]]
    out[S.SEQ] = out[S.SEQ].astype(np.int64)
    return out.reset_index(drop=True)


def _codes(index: pd.Index, ids, what: str) -> np.ndarray:
    ids = np.atleast_1d(np.asarray(ids))
    codes = index.get_indexer(ids)
    if (codes < 0).any():
        unknown = ids[codes < 0]
        shown = ", ".join(repr(plain_value(i)) for i in unknown[:5])
        raise KeyError(f"unknown {what} id(s): {shown}"
                       f"{' ...' if len(unknown) > 5 else ''} ({len(unknown)} in all)")
    return codes


def plain_value(value):
    """A numpy scalar as the Python value it holds, so messages show ``'ghost'``, not
    ``np.str_('ghost')``."""
    return value.item() if isinstance(value, np.generic) else value
