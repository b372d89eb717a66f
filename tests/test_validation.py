"""Every validation rule rejects bad input with a message naming file, column and rows."""

from __future__ import annotations

import pandas as pd
import pytest

from xsell.cli import main
from xsell.data.dataset import Dataset
from xsell.data.validation import DataValidationError


def write(tmp_path, inter: pd.DataFrame, items: pd.DataFrame):
    i, t = tmp_path / "interactions.csv", tmp_path / "items.csv"
    inter.to_csv(i, index=False)
    items.to_csv(t, index=False)
    return i, t


def expect_error(tmp_path, inter, items, *fragments):
    i, t = write(tmp_path, inter, items)
    with pytest.raises(DataValidationError) as info:
        Dataset.from_csv(i, t)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_valid_files_load(shop_dir):
    ds = Dataset.from_csv(shop_dir / "interactions.csv", shop_dir / "items.csv")
    assert ds.n_users == 2 and ds.n_baskets == 6 and ds.n_interactions == 11
    assert ds.n_items == 5 and ds.n_category_levels == 2


def test_missing_required_column(tmp_path, interactions_frame, items_frame):
    expect_error(tmp_path, interactions_frame.drop(columns="user_id"), items_frame,
                 "interactions.csv", "missing required column", "user_id")
    expect_error(tmp_path, interactions_frame, items_frame.drop(columns="title"),
                 "items.csv", "missing required column", "title")


def test_null_ids(tmp_path, interactions_frame, items_frame):
    inter = interactions_frame.copy()
    inter.loc[[2, 7], "user_id"] = None
    msg = expect_error(tmp_path, inter, items_frame, "interactions.csv", "column 'user_id'",
                       "null ids", "2 row(s)", "line 4", "line 9")
    assert "line 3" not in msg


def test_unknown_item(tmp_path, interactions_frame, items_frame):
    inter = interactions_frame.copy()
    inter.loc[3, "item_id"] = "zzz"
    expect_error(tmp_path, inter, items_frame, "column 'item_id'", "not in the catalogue",
                 "'zzz'", "line 5")


def test_duplicate_rows(tmp_path, interactions_frame, items_frame):
    inter = pd.concat([interactions_frame, interactions_frame.iloc[[0]]], ignore_index=True)
    expect_error(tmp_path, inter, items_frame, "duplicate rows", "line 13")


def test_duplicates_can_be_left_to_cleaning(interactions_frame, items_frame):
    from xsell.data.cleaning import clean

    inter = pd.concat([interactions_frame, interactions_frame.iloc[[0, 1]]], ignore_index=True)
    ds = Dataset.from_frames(inter, items_frame, check_duplicates=False)
    cleaned, report = clean(ds)
    assert report.to_frame().set_index("rule").loc["exact duplicates", "rows_removed"] == 2
    assert cleaned.n_interactions == len(interactions_frame)


@pytest.mark.parametrize("column", ["seq", "quantity", "rating"])
def test_non_numeric(tmp_path, interactions_frame, items_frame, column):
    inter = interactions_frame.copy()
    inter[column] = 1
    inter[column] = inter[column].astype(object)
    inter.loc[4, column] = "lots"
    expect_error(tmp_path, inter, items_frame, f"column '{column}'", "non-numeric",
                 "line 6 ('lots')")


def test_unparsable_timestamp(tmp_path, interactions_frame, items_frame):
    inter = interactions_frame.copy()
    inter.loc[5, "timestamp"] = "yesterday-ish"
    expect_error(tmp_path, inter, items_frame, "column 'timestamp'", "unparsable",
                 "line 7 ('yesterday-ish')")


def test_unix_timestamps_are_accepted(interactions_frame, items_frame):
    inter = interactions_frame.copy()
    inter["timestamp"] = pd.to_datetime(inter["timestamp"]).astype("datetime64[s]").astype("int64")
    ds = Dataset.from_frames(inter, items_frame)
    assert str(ds.interactions["timestamp"].min().date()) == "2024-01-01"


def test_empty_title(tmp_path, interactions_frame, items_frame):
    items = items_frame.copy()
    items.loc[2, "title"] = "   "
    expect_error(tmp_path, interactions_frame, items, "items.csv", "column 'title'",
                 "empty titles", "line 4")


def test_category_with_empty_level(tmp_path, interactions_frame, items_frame):
    items = items_frame.copy()
    items.loc[1, "category"] = "pantry >  > sauces"
    items.loc[3, "category"] = "babies > "
    expect_error(tmp_path, interactions_frame, items, "column 'category'", "empty level",
                 "2 row(s)", "line 3", "line 5")


def test_duplicate_item_ids(tmp_path, interactions_frame, items_frame):
    items = pd.concat([items_frame, items_frame.iloc[[1]]], ignore_index=True)
    expect_error(tmp_path, interactions_frame, items, "duplicate item ids", "line 7 ('b')")


def test_all_problems_reported_together(tmp_path, interactions_frame, items_frame):
    inter = interactions_frame.copy()
    inter["seq"] = "x"
    inter.loc[0, "user_id"] = None
    err = expect_error(tmp_path, inter, items_frame, "column 'seq'", "column 'user_id'")
    assert "11 row(s)" in err


def test_long_error_lists_are_truncated(tmp_path, items_frame):
    inter = pd.DataFrame({"user_id": ["u"] * 40, "item_id": ["nope"] * 40})
    msg = expect_error(tmp_path, inter, items_frame, "40 row(s)", "(35 more)")
    assert msg.count("line ") == 5


def test_frames_report_row_labels(interactions_frame, items_frame):
    inter = interactions_frame.copy()
    inter.loc[3, "item_id"] = None
    with pytest.raises(DataValidationError, match=r"interactions, column 'item_id'.*row 3"):
        Dataset.from_frames(inter, items_frame)


def test_bad_file_writes_nothing(tmp_path, interactions_frame, items_frame, capsys):
    inter = interactions_frame.copy()
    inter.loc[0, "item_id"] = "missing"
    i, t = write(tmp_path, inter, items_frame)
    out = tmp_path / "out"
    code = main(["run", "--interactions", str(i), "--items", str(t), "--out", str(out)])
    assert code == 2
    assert "not in the catalogue" in capsys.readouterr().err
    assert not out.exists()


def test_input_frames_are_not_modified(interactions_frame, items_frame):
    before_i, before_t = interactions_frame.copy(), items_frame.copy()
    Dataset.from_frames(interactions_frame, items_frame)
    pd.testing.assert_frame_equal(interactions_frame, before_i)
    pd.testing.assert_frame_equal(items_frame, before_t)


def test_problems_of_both_files_reported_together(tmp_path, interactions_frame, items_frame):
    inter, items = interactions_frame.copy(), items_frame.copy()
    inter.loc[0, "timestamp"] = "soon"
    items.loc[0, "title"] = ""
    expect_error(tmp_path, inter, items, "interactions.csv, column 'timestamp'",
                 "items.csv, column 'title'")


@pytest.mark.parametrize("column,value,fragment", [
    ("quantity", -1, "negative values"), ("quantity", float("inf"), "infinite values"),
    ("rating", float("-inf"), "infinite values")])
def test_numbers_must_be_finite_and_quantities_non_negative(interactions_frame, items_frame,
                                                            column, value, fragment):
    inter = interactions_frame.copy()
    inter[column] = 1.0
    inter.loc[3, column] = value
    with pytest.raises(DataValidationError, match=rf"column '{column}': {fragment}.*row 3"):
        Dataset.from_frames(inter, items_frame)


def test_zero_quantity_and_missing_price_are_accepted(interactions_frame, items_frame):
    inter, items = interactions_frame.copy(), items_frame.copy()
    inter.loc[0, "quantity"] = 0
    items.loc[0, "price"] = None
    Dataset.from_frames(inter, items)


def test_millisecond_timestamps_are_refused(interactions_frame, items_frame):
    inter = interactions_frame.copy()
    seconds = pd.to_datetime(inter["timestamp"]).astype("datetime64[s]").astype("int64")
    inter["timestamp"] = seconds * 1000
    with pytest.raises(DataValidationError, match="look like milliseconds.*divide the column "
                                                  "by 1,000"):
        Dataset.from_frames(inter, items_frame)
    inter["timestamp"] = seconds * 1_000_000
    with pytest.raises(DataValidationError, match="look like microseconds"):
        Dataset.from_frames(inter, items_frame)
