"""Validation of the generic format, with errors a person can act on.

Every check names the source (file or frame), the column, how many rows are bad and
the first few of them. All problems found are reported together in one
:class:`DataValidationError`, so a user fixes a file once rather than once per error.
Validation never writes anything: it returns typed copies or raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from xsell.data import schema as S
from xsell.errors import InputError

#: How many offending rows an error message shows.
MAX_SHOWN = 5


class DataValidationError(InputError):
    """Raised when input data breaks the generic format.

    Attributes
    ----------
    problems : list of str
        One human-readable line per problem found.
    """

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("invalid data:\n  - " + "\n  - ".join(self.problems))


class _Source:
    """Formats row references: file line numbers for CSV files, index labels for frames."""

    def __init__(self, name: str, is_file: bool):
        self.name = name
        self.is_file = is_file

    def rows(self, df: pd.DataFrame, mask: np.ndarray, column: str | None = None) -> str:
        positions = np.flatnonzero(mask)
        shown = positions[:MAX_SHOWN]
        if self.is_file:  # header is line 1, so data row p sits on line p + 2
            refs = [f"line {p + 2}" for p in shown]
        else:
            refs = [f"row {df.index[p]}" for p in shown]
        if column is not None:
            vals = df[column].iloc[shown].tolist()  # tolist() gives plain Python values
            refs = [f"{r} ({v!r})" for r, v in zip(refs, vals, strict=True)]
        more = f", ... ({len(positions) - len(shown)} more)" if len(positions) > len(shown) else ""
        return f"{len(positions)} row(s): " + ", ".join(refs) + more

    def problem(self, column: str | None, text: str) -> str:
        where = f"{self.name}, column '{column}'" if column else self.name
        return f"{where}: {text}"


def _missing_columns(df: pd.DataFrame, required: Iterable[str], src: _Source) -> list[str]:
    missing = [c for c in required if c not in df.columns]
    if not missing:
        return []
    return [src.problem(None, f"missing required column(s) {missing}; found {list(df.columns)}")]


def _check_not_null(df, column, src, problems, what="missing (null) values"):
    mask = df[column].isna().to_numpy().copy()
    if not pd.api.types.is_numeric_dtype(df[column]):  # blank strings count as missing
        mask |= df[column].astype(str).str.strip().eq("").to_numpy() & ~mask
    if mask.any():
        problems.append(src.problem(column, f"{what} in {src.rows(df, mask)}"))
    return mask


def _numeric(df, column, src, problems, non_negative: bool = False) -> pd.Series | None:
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = (values.isna() & raw.notna()).to_numpy()
    if bad.any():
        problems.append(src.problem(column, f"non-numeric values in {src.rows(df, bad, column)}"
                                    "; expected a number"))
        return None
    missing = raw.isna().to_numpy()
    if missing.any():
        problems.append(src.problem(column, f"missing values in {src.rows(df, missing)}"))
        return None
    if not _finite_and_sign(df, column, values, src, problems, non_negative):
        return None
    return values


def _finite_and_sign(df, column, values: pd.Series, src, problems, non_negative: bool) -> bool:
    """Reject infinite values and, where asked, negative ones (missing values pass)."""
    numbers = values.to_numpy(dtype=float, na_value=np.nan)
    ok = True
    infinite = np.isinf(numbers)
    if infinite.any():
        problems.append(src.problem(column, "infinite values in "
                                    + src.rows(df, infinite, column) + "; expected a finite number"))
        ok = False
    if non_negative:
        negative = numbers < 0
        if negative.any():
            problems.append(src.problem(column, "negative values in "
                                        + src.rows(df, negative, column)
                                        + f"; a {column} must be 0 or more"))
            ok = False
    return ok


#: Numeric timestamps above this are not unix seconds (1e11 s is the year 5138).
MAX_UNIX_SECONDS = 1e11


def _unix_unit_problem(raw: pd.Series, src, df) -> str | None:
    """A message when numeric timestamps look like milliseconds (or finer) since the epoch."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        return None
    as_number = pd.to_numeric(raw, errors="coerce")
    if as_number.notna().sum() != raw.notna().sum() or not as_number.notna().any():
        return None
    big = (as_number.abs() > MAX_UNIX_SECONDS).to_numpy()
    if not big.any():
        return None
    top = float(as_number.abs().max())
    unit, factor = (("milliseconds", 1e3) if top < 1e14 else
                    ("microseconds", 1e6) if top < 1e17 else ("nanoseconds", 1e9))
    return src.problem(S.TIMESTAMP, (
        f"numeric timestamps too large for unix seconds in {src.rows(df, big, S.TIMESTAMP)}; "
        f"they look like {unit} since the epoch (read as seconds they fall after the year "
        f"5000). Timestamps must be unix seconds or ISO 8601 text: divide the column by "
        f"{factor:,.0f}, or write dates like 2024-03-01T10:15:00"))


def parse_timestamps(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Parse a timestamp column given as unix seconds or ISO 8601 text.

    Returns
    -------
    parsed : pandas.Series of datetime64
        The parsed values (``NaT`` where parsing failed).
    bad : numpy.ndarray of bool
        True where a non-null value could not be parsed.
    """
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw.dt.tz_convert(None) if raw.dt.tz is not None else raw
        return parsed, np.zeros(len(raw), dtype=bool)
    as_number = pd.to_numeric(raw, errors="coerce")
    if as_number.notna().sum() == raw.notna().sum():  # all numeric: unix seconds
        parsed = pd.to_datetime(as_number, unit="s", errors="coerce")
    else:
        text = raw.astype("string")
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        parsed = parsed.dt.tz_convert(None)
    bad = (parsed.isna() & raw.notna()).to_numpy()
    return parsed, bad


def validate_interactions(df: pd.DataFrame, source: str = "interactions", *,
                          is_file: bool = False, check_duplicates: bool = True) -> pd.DataFrame:
    """Check an interactions table and return a typed copy.

    Parameters
    ----------
    df : pandas.DataFrame
        Raw interactions in the generic format (see :mod:`xsell.data.schema`).
    source : str
        Name used in error messages (the file path for CSV input).
    is_file : bool
        Report CSV line numbers (header = line 1) instead of index labels.
    check_duplicates : bool
        Treat rows repeating the same (user, item, basket/seq/timestamp) as an error.

    Returns
    -------
    pandas.DataFrame
        A copy with ``timestamp`` parsed to datetime and numeric columns converted.

    Raises
    ------
    DataValidationError
        Listing every problem found.
    """
    src = _Source(source, is_file)
    problems = _missing_columns(df, S.INTERACTION_REQUIRED, src)
    if problems:
        raise DataValidationError(problems)
    out = df.copy()
    for col in (S.USER, S.ITEM) + ((S.BASKET,) if S.BASKET in df else ()):
        _check_not_null(out, col, src, problems, what="null ids")
    for col in (S.SEQ, S.QUANTITY, S.RATING):
        if col in out:
            values = _numeric(out, col, src, problems, non_negative=col == S.QUANTITY)
            if values is not None:
                out[col] = values
    if S.TIMESTAMP in out:
        if out[S.TIMESTAMP].isna().any():
            mask = out[S.TIMESTAMP].isna().to_numpy()
            problems.append(src.problem(S.TIMESTAMP, f"missing values in {src.rows(out, mask)}"))
        unit_problem = _unix_unit_problem(out[S.TIMESTAMP], src, out)
        parsed, bad = parse_timestamps(out[S.TIMESTAMP])
        if unit_problem is not None:
            problems.append(unit_problem)
        elif bad.any():
            problems.append(src.problem(
                S.TIMESTAMP,
                "unparsable timestamps (expected ISO 8601 or unix seconds) in "
                + src.rows(out, bad, S.TIMESTAMP)))
        else:
            out[S.TIMESTAMP] = parsed
    if check_duplicates and not problems:
        key = [c for c in (S.USER, S.ITEM, S.BASKET, S.SEQ, S.TIMESTAMP) if c in out]
        if len(key) > 2:  # without a basket/seq/timestamp, repeated rows are repeat purchases
            dup = out.duplicated(subset=key, keep="first").to_numpy()
            if dup.any():
                problems.append(src.problem(
                    None, f"duplicate rows (same {key}) in {src.rows(out, dup)}; "
                    "merge them with a quantity column or drop them"))
    if problems:
        raise DataValidationError(problems)
    return out


def validate_items(df: pd.DataFrame, source: str = "items", *, is_file: bool = False) -> pd.DataFrame:
    """Check a catalogue table and return a typed copy.

    Parameters
    ----------
    df : pandas.DataFrame
        Raw catalogue in the generic format.
    source : str
        Name used in error messages.
    is_file : bool
        Report CSV line numbers instead of index labels.

    Returns
    -------
    pandas.DataFrame
        A copy with titles stripped and ``price`` numeric.

    Raises
    ------
    DataValidationError
        Listing every problem found.
    """
    src = _Source(source, is_file)
    problems = _missing_columns(df, S.ITEM_REQUIRED, src)
    if problems:
        raise DataValidationError(problems)
    out = df.copy()
    null_ids = _check_not_null(out, S.ITEM, src, problems, what="null ids")
    dup = out[S.ITEM].duplicated(keep="first").to_numpy() & ~null_ids
    if dup.any():
        problems.append(src.problem(S.ITEM, f"duplicate item ids in {src.rows(out, dup, S.ITEM)}"))
    _check_not_null(out, S.TITLE, src, problems, what="empty titles")
    if S.CATEGORY in out:
        cat = out[S.CATEGORY]
        present = cat.notna().to_numpy()
        levels = cat[present].astype(str).str.split(S.CATEGORY_SEP.strip(), regex=False)
        empty_level = np.zeros(len(out), dtype=bool)
        empty_level[present] = levels.map(lambda parts: any(p.strip() == "" for p in parts)).to_numpy()
        if empty_level.any():
            problems.append(src.problem(
                S.CATEGORY, f"category paths with an empty level (separator '{S.CATEGORY_SEP}') in "
                + src.rows(out, empty_level, S.CATEGORY)))
        else:  # normalise spacing around the separator
            out.loc[present, S.CATEGORY] = levels.map(
                lambda parts: S.CATEGORY_SEP.join(p.strip() for p in parts))
    if S.PRICE in out:
        raw = out[S.PRICE]
        values = pd.to_numeric(raw, errors="coerce")
        bad = (values.isna() & raw.notna()).to_numpy()
        if bad.any():
            problems.append(src.problem(S.PRICE, f"non-numeric values in {src.rows(out, bad, S.PRICE)}"
                                        "; expected a number"))
        elif _finite_and_sign(out, S.PRICE, values, src, problems, non_negative=True):
            out[S.PRICE] = values
    if problems:
        raise DataValidationError(problems)
    out[S.TITLE] = out[S.TITLE].astype(str).str.strip()
    return out


def validate_references(interactions: pd.DataFrame, items: pd.DataFrame,
                        source: str = "interactions", *, is_file: bool = False) -> None:
    """Check that every interaction's item exists in the catalogue.

    Raises
    ------
    DataValidationError
        Naming the unknown item ids and the rows that use them.
    """
    src = _Source(source, is_file)
    unknown = ~interactions[S.ITEM].isin(items[S.ITEM]).to_numpy()
    if unknown.any():
        ids = pd.unique(interactions[S.ITEM].to_numpy()[unknown]).tolist()
        shown = ", ".join(repr(i) for i in ids[:MAX_SHOWN])
        raise DataValidationError([src.problem(
            S.ITEM, f"{len(ids)} item id(s) not in the catalogue ({shown}"
            f"{', ...' if len(ids) > MAX_SHOWN else ''}) used by {src.rows(interactions, unknown)}")])
