"""The catalogue of bad inputs (issue 11, part 2): one row per case.

Every row runs the ``xsell`` command on a bad input and expects exit status 2 and one
``xsell: error:`` message matching the row's pattern (file, column, line, offending value
and the accepted alternatives, where they exist). Every row runs with the model-fitting
entry points replaced by a function that fails the test, so each check is shown to come
before any model is fitted; rows that name an output file also check that nothing was
written. The same catalogue is the table in ``data/README.md``.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from xsell.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "example"
SYN = ["--synthetic", "--users", "60"]
EVAL = ["evaluate", *SYN, "--models", "popularity", "--no-tune", "--bootstrap", "10"]


def example_copy(tmp: Path, name: str = "shop") -> Path:
    folder = tmp / name
    folder.mkdir()
    for f in ("interactions.csv", "items.csv"):
        shutil.copy(EXAMPLE / f, folder / f)
    return folder


def edit(path: Path, change: Callable[[str], str]) -> None:
    path.write_text(change(path.read_text()))


def validate(folder: Path, inter: str = "interactions.csv", items: str = "items.csv") -> list:
    return ["data", "validate", "--interactions", str(folder / inter),
            "--items", str(folder / items)]


# ---------------------------------------------------------------------- input builders
# Each takes (tmp_path, monkeypatch) and returns the argument list.

def unreadable(tmp, mp):
    shop = example_copy(tmp)
    target = shop / "interactions.csv"
    target.chmod(0)
    import xsell.data.csvread as csvread

    real = csvread._open_binary

    def deny(path):  # root reads a chmod-000 file anyway: refuse it as the OS would
        if Path(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    mp.setattr(csvread, "_open_binary", deny)
    return validate(shop)


def csv_edit(file: str, change: Callable[[str], str], argv=validate):
    def build(tmp, mp):
        shop = example_copy(tmp)
        edit(shop / file, change)
        return argv(shop)
    return build


def csv_bytes(file: str, make: Callable[[bytes], bytes], name: str | None = None):
    def build(tmp, mp):
        shop = example_copy(tmp)
        data = make((shop / file).read_bytes())
        target = shop / (name or file)
        target.write_bytes(data)
        args = validate(shop)
        if name:
            args[args.index(str(shop / file))] = str(target)
        return args
    return build


def millisecond_times(text: str) -> str:
    df = pd.read_csv(pd.io.common.StringIO(text))
    df["timestamp"] = [int(pd.Timestamp(t).timestamp() * 1000) for t in df["timestamp"]]
    return df.to_csv(index=False)


def header_only(text: str) -> str:
    return text.splitlines()[0] + "\n"


def set_line(line: int, old: str, new: str) -> Callable[[str], str]:
    def change(text: str) -> str:
        lines = text.splitlines()
        assert old in lines[line - 1], (old, lines[line - 1])
        lines[line - 1] = lines[line - 1].replace(old, new, 1)
        return "\n".join(lines) + "\n"
    return change


def args(*argv):
    return lambda tmp, mp: list(argv)


def out_to(make_target: Callable[[Path], Path], command=EVAL):
    def build(tmp, mp):
        target = make_target(tmp)
        return [*command, "--out", str(target)]
    return build


def a_folder(tmp):
    (tmp / "results").mkdir()
    return tmp / "results"


def in_readonly_folder(tmp):
    folder = tmp / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "results.json"


def under_a_file(tmp):
    (tmp / "notes.txt").write_text("a file\n")
    return tmp / "notes.txt" / "results.json"


def readonly_file(tmp):
    target = tmp / "results.json"
    target.write_text("{}\n")
    target.chmod(0o444)
    return target


def no_cold_item(tmp, mp):
    shop = example_copy(tmp)
    # carol's last basket held the only product nobody bought before (B010)
    edit(shop / "interactions.csv", set_line(17, "carol,B010", "carol,B001"))
    return ["evaluate", "--data", str(shop), "--protocol", "cold-start", "--models",
            "popularity", "--no-tune", "--bootstrap", "10"]


def data_is_a_file(tmp, mp):
    return ["data", "summary", "--data", str(EXAMPLE / "items.csv")]


def example(*argv):
    return lambda tmp, mp: [argv[0], "--data", str(EXAMPLE), *argv[1:]]


@dataclass
class Case:
    id: str
    build: Callable
    pattern: str
    writes: str | None = None  # output that must not exist afterwards (relative to tmp)


CASES = [
    # --- tracebacks before
    Case("unreadable-file", unreadable,
         r"shop/interactions\.csv: cannot read the file: permission denied"),
    Case("bootstrap-0", args(*EVAL, "--bootstrap", "0"),
         r"--bootstrap 0: must be a whole number of at least 1"),
    Case("out-is-a-folder", out_to(a_folder),
         r"results: is a folder; the --out file must be a file path \(e\.g\. .*results\.json\)"),
    Case("out-in-readonly-folder", out_to(in_readonly_folder),
         r"locked/results\.json: cannot write there: the folder .*locked is read-only",
         writes="locked/results.json"),
    Case("out-under-a-file", out_to(under_a_file),
         r"notes\.txt/results\.json: cannot create it, because .*notes\.txt is a file, "
         r"not a folder"),
    Case("run-out-under-a-file",
         out_to(lambda tmp: (tmp / "f").write_text("x") and tmp / "f",
                ["run", *SYN, "--models", "popularity"]),
         r"f/run\.json: cannot create it, because .*/f is a file, not a folder"),
    Case("out-readonly-file", out_to(readonly_file),
         r"results\.json: the existing file is read-only; make it writable \(chmod u\+w\) "
         r"or choose another --out file"),
    # --- silent wrong results before
    Case("header-names-a-column-twice",
         csv_edit("interactions.csv", lambda t: t.replace("basket_id", "item_id", 1)),
         r"interactions\.csv, line 1: the header names column\(s\) 'item_id' more than once"),
    Case("millisecond-timestamps", csv_edit("interactions.csv", millisecond_times),
         r"interactions\.csv, column 'timestamp': numeric timestamps too large for unix "
         r"seconds in 24 row\(s\): line 2 \(1709288100000\).*look like milliseconds since the "
         r"epoch.*divide the column by 1,000, or write dates like 2024-03-01T10:15:00"),
    Case("k-negative-evaluate", args(*EVAL, "--k", "-3"),
         r"--k '-3': -3 is not a positive cut-off; every k must be 1 or more, e\.g\. --k 10,20"),
    Case("k-negative-recommend", example("recommend", "--user", "alice", "--k", "-3"),
         r"--k -3: must be a whole number of at least 1"),
    Case("baseline-misspelt", args(*EVAL[:-5], "--models", "popularity,buy-again",
                                   "--baseline", "popularty"),
         r"--baseline 'popularty' is not among --models \(popularity, buy-again\); choose "
         r"one of them, or --baseline none"),
    Case("cart-spans-every-department",
         example("complete", "--items", "B001,B004,B008,B009"),
         r"--items: the cart covers every department \(4: electronics, food, outdoor, sports\); "
         r"there is nothing to complete from another department"),
    Case("quantity-inf", csv_edit("interactions.csv", set_line(2, ",1", ",inf")),
         r"interactions\.csv, column 'quantity': infinite values in 1 row\(s\): line 2 \(inf\); "
         r"expected a finite number"),
    Case("quantity-negative", csv_edit("interactions.csv", set_line(3, "00,2", "00,-2")),
         r"column 'quantity': negative values in 1 row\(s\): line 3 \(-2\); a quantity must be "
         r"0 or more"),
    Case("price-negative", csv_edit("items.csv", set_line(2, "129.00", "-129.00")),
         r"items\.csv, column 'price': negative values in 1 row\(s\): line 2 \(-129\.0\); a price "
         r"must be 0 or more"),
    Case("price-inf", csv_edit("items.csv", set_line(3, "24.50", "inf")),
         r"items\.csv, column 'price': infinite values in 1 row\(s\): line 3 \(inf\)"),
    # --- unclear messages before
    Case("empty-file", csv_edit("interactions.csv", lambda t: ""),
         r"interactions\.csv: the file is empty \(0 bytes\); expected a header line naming the "
         r"columns \(user_id, item_id, \.\.\.\)"),
    Case("blank-file", csv_edit("items.csv", lambda t: "\n\n"),
         r"items\.csv: the file holds only blank lines; expected a header line naming the "
         r"columns \(item_id, title, \.\.\.\)"),
    Case("header-only-file", csv_edit("interactions.csv", header_only),
         r"interactions\.csv: the file has a header but no data rows \(line 1 only\)"),
    Case("header-only-log-evaluate",
         csv_edit("interactions.csv", header_only,
                  lambda shop: ["evaluate", "--data", str(shop), "--models", "popularity"]),
         r"interactions\.csv: the file has a header but no data rows"),
    Case("tokenizer-error", csv_edit("interactions.csv", set_line(4, ",1", ",1,extra,x")),
         r"interactions\.csv, line 4: 7 fields where the header has 5; quote a field that "
         r"contains a comma"),
    Case("not-utf8", csv_bytes("items.csv", lambda b: b.replace(b"Shoes", b"Sh\xf6es")),
         r"items\.csv, line 2: bytes that are not UTF-8 \(byte 0xf6 at byte offset 68 of the "
         r"file: .*iconv -f latin1 -t utf-8"),
    Case("utf16", csv_bytes("interactions.csv", lambda b: b.decode().encode("utf-16")),
         r"interactions\.csv: is UTF-16 text \(byte-order mark 0xfffe at the start\); xsell "
         r"reads UTF-8: convert it, e\.g\. `iconv -f UTF-16 -t utf-8"),
    Case("gzip-named-csv", csv_bytes("interactions.csv", gzip.compress),
         r"interactions\.csv: is a gzip-compressed file, not CSV text; decompress it "
         r"\(e\.g\. `gunzip -c .*\) or give it a name ending in \.csv\.gz"),
    Case("gz-name-not-gzip", csv_bytes("interactions.csv", lambda b: b, "interactions.csv.gz"),
         r"interactions\.csv\.gz: the name ends in \.gz, so it is read as a gzip file, but it "
         r"is not gzip-compressed"),
    Case("semicolon-delimiter", csv_edit("interactions.csv", lambda t: t.replace(",", ";")),
         r"interactions\.csv, line 1: the header is a single column 'user_id;item_id;.*': the "
         r"delimiter looks like ';' \(semicolon\)\. xsell reads comma-separated files"),
    Case("tab-delimiter", csv_edit("items.csv", lambda t: t.replace(",", "\t")),
         r"items\.csv, line 1: .*the delimiter looks like a tab"),
    Case("cold-start-without-cold-item", no_cold_item,
         r"--protocol cold-start: no test basket holds a cold item \(one never bought in "
         r"training\), so there is nothing to evaluate; .*another --protocol \(next-basket"),
    Case("n-origins-0", args(*EVAL, "--protocol", "rolling-origin", "--n-origins", "0"),
         r"--n-origins 0: must be a whole number of at least 1"),
    Case("zero-interactions-after-cleaning", args(*EVAL, "--min-baskets", "100"),
         r"no interactions left after cleaning: cleaning keeps users with at least 100 "
         r"baskets \(--min-baskets 100\), and none of the 60 users has that many \(the most "
         r"is \d+\); lower --min-baskets"),
    Case("min-baskets-0", args(*EVAL, "--min-baskets", "0"),
         r"--min-baskets 0: must be a whole number of at least 1"),
    Case("k-0-evaluate", args(*EVAL, "--k", "0"), r"--k '0': 0 is not a positive cut-off"),
    Case("k-0-recommend", example("recommend", "--user", "alice", "--k", "0"),
         r"--k 0: must be a whole number of at least 1"),
    Case("k-0-complete", example("complete", "--items", "B001", "--k", "0"),
         r"--k 0: must be a whole number of at least 1"),
    Case("models-empty", args(*EVAL[:-5], "--models", ""),
         r"--models '': give at least one model; available: popularity, buy-again, "),
    Case("models-unknown", args(*EVAL[:-5], "--models", "popularity,eas"),
         r"--models: unknown model 'eas'; available: popularity, .*ease"),
    Case("run-models-unknown", args("run", *SYN, "--models", "popularty"),
         r"--models: unknown model 'popularty'; available: popularity"),
    Case("k-ten", args(*EVAL, "--k", "ten"),
         r"--k 'ten': 'ten' is not a whole number; give positive whole numbers separated by "
         r"commas, e\.g\. --k 10,20"),
    Case("bootstrap-negative", args(*EVAL, "--bootstrap", "-3"),
         r"--bootstrap -3: must be a whole number of at least 1"),
    Case("seen-flags-both", args(*EVAL, "--exclude-seen", "--keep-seen"),
         r"--exclude-seen and --keep-seen contradict each other; give one of them, or "
         r"neither to follow the data"),
    Case("variants-unknown", args(*EVAL, "--variants", "all,explor"),
         r"--variants: unknown variant 'explor'; choose from all, explore, cross-category"),
    Case("users-0", args(*EVAL[:1], "--synthetic", "--users", "0", *EVAL[4:]),
         r"--users 0: must be a whole number of at least 1"),
    Case("complete-unknown-user", example("complete", "--items", "B001", "--user", "ghost"),
         r"unknown user 'ghost': not in the data \(5 users, e\.g\. 'alice', 'bob', 'carol'\); "
         r"for a new customer leave out --user"),
    Case("complete-unknown-item", example("complete", "--items", "B001,NOPE"),
         r"--items: unknown item id\(s\) 'NOPE': not in the catalogue \(12 items, e\.g\. "
         r"'B001', 'B002', 'B003'\)"),
    Case("complete-empty-cart", example("complete", "--items", " , "),
         r"--items ' , ': the cart is empty; give at least one item id"),
    Case("data-is-a-file", data_is_a_file,
         r"items\.csv: is a file, but --data expects a folder holding either the generic "
         r"format \(interactions\.csv \+ items\.csv\) or the Instacart CSV files"),
    # --- unknown ids
    Case("recommend-unknown-user", example("recommend", "--user", "ghost"),
         r"unknown user 'ghost': not in the data \(5 users, e\.g\. 'alice', 'bob', 'carol'\); "
         r"for a new customer give --history ITEM,ITEM \(what they bought\) or --new-user"),
    Case("recommend-nobody", example("recommend"),
         r"give exactly one of --user ID \(a customer in the data\), --history ITEM,ITEM"),
    Case("recommend-user-and-new-user", example("recommend", "--user", "alice", "--new-user"),
         r"give exactly one of .*; got --user and --new-user"),
    Case("recommend-history-unknown-item", example("recommend", "--history", "B001,B999"),
         r"--history: unknown item id\(s\) 'B999': not in the catalogue"),
    # --- search and the assistant
    Case("search-empty-query", example("search", "  "),
         r"search query '  ' is empty; type what you are looking for, e\.g\. 'greek yogurt'"),
    Case("search-stop-words-only", example("search", "I want the"),
         r"search query 'I want the' is made only of words that name no product"),
    Case("search-unknown-user", example("search", "shoes", "--user", "ghost"),
         r"unknown user 'ghost': not in the data \(5 users, .*\); for a new customer leave "
         r"out --user \(the ranking is then not personal\)"),
    Case("search-k-0", example("search", "shoes", "--k", "0"),
         r"--k 0: must be a whole number of at least 1"),
    Case("assist-empty-message", example("assist", "--user", "alice", " "),
         r"the message is empty; write what you need"),
    Case("assist-unknown-user", example("assist", "--user", "ghost", "where is my order"),
         r"unknown user 'ghost': not in the data .*the assistant answers shoppers whose "
         r"orders are in the data"),
    Case("assist-messages-missing", example("assist", "--user", "alice", "hi", "--messages",
                                            "/nonexistent/support"),
         r"/nonexistent/support: no customer_support_intents\.csv there"),
    Case("assist-messages-bad-columns", lambda tmp, mp: [
        "assist", "--data", str(EXAMPLE), "--user", "alice", "hi", "--messages",
        str(_bad_support_file(tmp))],
         r"customer_support_intents\.csv: missing column\(s\) intent"),
    Case("evaluate-search-bootstrap-0", example("evaluate", "--protocol", "search",
                                                "--bootstrap", "0"),
         r"--bootstrap 0: must be a whole number of at least 1"),
]


def _bad_support_file(tmp: Path) -> Path:
    path = tmp / "customer_support_intents.csv"
    path.write_text("instruction,label\nwhere is my order,track_order\n")
    return path


@pytest.fixture
def no_fitting(monkeypatch):
    """Fail the test if any model would be fitted or any evaluation started."""
    import xsell.cli
    import xsell.experiments
    import xsell.pipeline

    def refuse(*a, **k):
        raise AssertionError("a model was fitted before the input was checked")

    for module, name in ((xsell.experiments, "fit_model"),
                         (xsell.experiments, "evaluate_dataset"),
                         (xsell.experiments, "compare_models"),
                         (xsell.pipeline, "run"), (xsell.cli, "_fit_completer"),
                         (xsell.cli, "_fit_search")):
        monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_clear_error(case, tmp_path, monkeypatch, capsys, no_fitting):
    monkeypatch.delenv("XSELL_DATA_DIR", raising=False)
    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path / "cache"))
    argv = case.build(tmp_path, monkeypatch)
    before = {p for p in tmp_path.rglob("*")}
    try:
        code = main(argv)
    finally:
        for p in tmp_path.rglob("*"):  # let pytest clean up what the case locked
            if p.is_dir():
                p.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("xsell: error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "np.str_" not in err
    assert re.search(case.pattern, err, re.S), f"{case.pattern!r} not in {err!r}"
    after = {p for p in tmp_path.rglob("*")}
    assert not [p for p in after - before if p.name.endswith(".tmp")], "stray temporary file"
    if case.writes:
        assert not (tmp_path / case.writes).exists()
    assert after - before <= {tmp_path / "cache"} | set((tmp_path / "cache").rglob("*")), \
        f"wrote {sorted(after - before)}"


def test_the_catalogue_is_documented():
    """Every case of the table has a row in data/README.md (by its id)."""
    readme = (EXAMPLE.parent / "README.md").read_text()
    missing = [c.id for c in CASES if f"`{c.id}`" not in readme]
    assert not missing, f"cases missing from data/README.md: {missing}"


# ---------------------------------------------------------------------- what is accepted
def test_na_none_null_are_ids_and_titles(tmp_path, capsys):
    shop = example_copy(tmp_path)
    edit(shop / "interactions.csv", lambda t: t.replace("bob,", "NA,").replace("B006", "None"))
    edit(shop / "items.csv", lambda t: t.replace("B006", "None").replace("Yoga Mat 6mm", "null"))
    from xsell.data.dataset import Dataset

    ds = Dataset.from_csv(shop / "interactions.csv", shop / "items.csv")
    assert "NA" in set(ds.interactions["user_id"]) and "None" in set(ds.interactions["item_id"])
    assert ds.items.set_index("item_id").loc["None", "title"] == "null"
    assert ds.items["category"].notna().all()
    assert main(validate(shop)) == 0


def test_empty_id_is_still_missing(tmp_path):
    shop = example_copy(tmp_path)
    edit(shop / "interactions.csv", set_line(5, "alice,", ","))
    assert main(validate(shop)) == 2


def test_gzip_named_gz_still_loads(tmp_path):
    shop = example_copy(tmp_path)
    (shop / "interactions.csv.gz").write_bytes(gzip.compress((shop / "interactions.csv")
                                                             .read_bytes()))
    from xsell.data.dataset import Dataset

    a = Dataset.from_csv(shop / "interactions.csv", shop / "items.csv")
    b = Dataset.from_csv(shop / "interactions.csv.gz", shop / "items.csv")
    pd.testing.assert_frame_equal(a.interactions, b.interactions)


# ---------------------------------------------------------------------- writing outputs
def test_atomic_write_keeps_permissions(tmp_path):
    from xsell.fileio import save_json

    target = tmp_path / "results.json"
    target.write_text("{}")
    target.chmod(0o640)
    save_json({"a": 1}, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and '"a": 1' in target.read_text()
    fresh = save_json({}, tmp_path / "new" / "fresh.json")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_atomic_write_refuses_read_only_up_front(tmp_path):
    from xsell.errors import InputError
    from xsell.fileio import atomic_write

    target = tmp_path / "results.json"
    target.write_text("old")
    target.chmod(0o444)
    called = []
    with pytest.raises(InputError, match="read-only"):
        atomic_write(target, called.append)
    assert not called and target.read_text() == "old"


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError, ValueError])
def test_interrupted_write_leaves_no_temporary_file(tmp_path, error):
    from xsell.fileio import atomic_write

    target = tmp_path / "results.json"
    target.write_text("old")

    def write(tmp):
        Path(tmp).write_text("half")
        raise error("interrupted")

    with pytest.raises(error):
        atomic_write(target, write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    assert target.read_text() == "old"
