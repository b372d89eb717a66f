"""The xsell command: summary, validate and the main job."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from xsell.cli import main


def test_summary_generic(shop_dir, capsys):
    assert main(["data", "summary", "--interactions", str(shop_dir / "interactions.csv"),
                 "--items", str(shop_dir / "items.csv")]) == 0
    out = capsys.readouterr().out
    assert "users              2" in out and "baskets            6" in out
    assert "L0: 3, L1: 5" in out and "baskets/user" in out


def test_summary_json(shop_dir, capsys):
    main(["data", "summary", "--data", str(shop_dir), "--json"])
    stats = json.loads(capsys.readouterr().out)
    assert stats["interactions"] == 11 and stats["categories_per_level"] == [3, 5]


def test_data_embed_encodes_the_catalogue_into_the_cache_once(tmp_path, monkeypatch, capsys):
    import numpy as np
    from locations import REPO

    from xsell.data import load_dataset
    from xsell.text import TextEncoder, item_texts

    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path / "cache"))
    shop = REPO / "data" / "example"
    texts = item_texts(load_dataset(shop)).tolist()
    assert main(["data", "embed", "--data", str(shop)]) == 0
    out = capsys.readouterr().out
    assert f"{len(texts)} catalogue texts ({len(set(texts))} distinct), " \
           f"{len(set(texts))} encoded now" in out
    assert main(["data", "embed", "--data", str(shop)]) == 0
    assert ", 0 encoded now" in capsys.readouterr().out
    # What a model reads later comes from the cache, and equals a fresh encoding.
    found, missing = TextEncoder().cache.get(texts)
    assert not missing
    np.testing.assert_allclose(np.vstack(found), TextEncoder(cache=False).encode(texts),
                               atol=1e-6)
    monkeypatch.setenv("XSELL_CACHE", "off")
    assert main(["data", "embed", "--data", str(shop)]) == 2
    assert "XSELL_CACHE='off'" in capsys.readouterr().err


def test_validate_reports_errors(shop_dir, capsys):
    (shop_dir / "items.csv").write_text("item_id,title\na,\n")
    code = main(["data", "validate", "--interactions", str(shop_dir / "interactions.csv"),
                 "--items", str(shop_dir / "items.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "empty titles" in err and "line 2" in err


def test_run_synthetic_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("XSELL_DATA_DIR", raising=False)
    assert main(["run", "--users", "200", "--models", "popularity,buy-again", "--tune",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "leave-last-basket-out" in out and "global time" in out
    assert "models on the test basket" in out
    result = json.loads((tmp_path / "run.json").read_text())
    assert result["summary"]["users"] > 150
    models = {row["model"] for row in result["comparison"]}
    assert models == {"popularity", "buy-again"}
    assert "half_life" in result["hyperparameters"]["buy-again"]["all"]
    assert {"random 7:1:2", "leave-last-basket-out", "global time"} <= set(result["splits"])


def test_run_fits_through_the_cache_and_reads_it_back(tmp_path, monkeypatch):
    """`xsell run` stores its fits, so the chapters (and a second run) reuse them."""
    from xsell.data.synthetic import make_synthetic_shop
    from xsell.pipeline import run

    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path / "cache"))
    shop = make_synthetic_shop(n_users=120, seed=1)
    first = run(shop, models=("popularity", "itemknn"), progress=False)
    fits = sorted((tmp_path / "cache" / "fit_model").iterdir())
    assert len(fits) == 2  # one entry per model: every variant shares the default fit
    second = run(shop, models=("popularity", "itemknn"), progress=False)
    assert second.comparison.equals(first.comparison)
    assert sorted((tmp_path / "cache" / "fit_model").iterdir()) == fits
    run(shop, models=("popularity",), progress=False, cache=False)
    assert sorted((tmp_path / "cache" / "fit_model").iterdir()) == fits


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "xsell.cli", "--help"], capture_output=True,
                          text=True, check=True)
    assert "data" in done.stdout and "run" in done.stdout


def test_committed_example_shop(capsys):
    from locations import REPO

    assert main(["data", "summary", "--data", str(REPO / "data" / "example"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["users"] == 5 and stats["categories_per_level"] == [4, 7, 9]


def test_recommend_and_complete_on_the_synthetic_shop(fresh_cache, capsys):
    # The default hybrid and completer, with the real MiniLM weights, end to end.
    args = ["--synthetic", "--users", "150"]
    assert main(["recommend", *args, "--user", "U00003", "--k", "4"]) == 0
    out = capsys.readouterr().out
    assert "because" in out and "new_department" in out and len(out.splitlines()) == 5
    assert main(["recommend", *args, "--user", "nobody", "--k", "3"]) == 2
    err = capsys.readouterr().err
    assert "unknown user 'nobody'" in err and "--new-user" in err and "--history" in err
    assert main(["recommend", *args, "--new-user", "--k", "3"]) == 0
    assert "cold-start fallback" in capsys.readouterr().out
    assert main(["recommend", *args, "--history", "P00001,P00131", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "because" in out and len(out.splitlines()) == 4
    assert main(["complete", *args, "--items", "P00001,P00131", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "complements from other departments" in out and "Fuji Apples" in out
    assert main(["complete", *args, "--items", "P00001,NOPE"]) == 2
    assert "NOPE" in capsys.readouterr().err


def test_evaluate_out_is_checked_before_the_evaluation(tmp_path, capsys, monkeypatch):
    import xsell.experiments

    monkeypatch.delenv("XSELL_DATA_DIR", raising=False)
    monkeypatch.setattr(xsell.experiments, "evaluate_dataset",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("evaluated")))
    (tmp_path / "results").mkdir()
    code = main(["evaluate", "--synthetic", "--users", "60", "--models", "popularity",
                 "--out", str(tmp_path / "results")])
    assert code == 2 and "is a folder" in capsys.readouterr().err


def test_evaluate_default_baseline_and_none(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("XSELL_DATA_DIR", raising=False)
    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    base = ["evaluate", "--synthetic", "--users", "60", "--models", "popularity,buy-again",
            "--no-tune", "--bootstrap", "10", "--variants", "all", "--k", "10"]
    assert main([*base, "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert any(r["p_value"] is not None for r in rows if r["model"] == "buy-again")
    assert main([*base, "--baseline", "none", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert all(r["p_value"] is None for r in rows)


def test_recommend_and_complete_on_the_example_shop(tmp_path, capsys, monkeypatch):
    """The README's own five-customer shop: too small to learn weights on (the hybrid and
    the completer fall back to equal weights, with a warning), still served properly."""
    import pandas as pd
    from locations import REPO

    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path / "cache"))
    shop = REPO / "data" / "example"
    inter = pd.read_csv(shop / "interactions.csv", dtype=str)
    items = pd.read_csv(shop / "items.csv", dtype=str).set_index("item_id")
    def listed_titles(out: str) -> list[str]:  # the first column of each ranked row
        return [m.group(1) for m in re.finditer(r"^\s*\d+\s+(\S.*?)\s{2,}", out, re.M)]

    assert main(["recommend", "--data", str(shop), "--user", "alice", "--k", "10"]) == 0
    listed = listed_titles(capsys.readouterr().out)
    bought = set(items.loc[inter.loc[inter["user_id"] == "alice", "item_id"], "title"])
    assert listed and not bought & set(listed)  # new items only, no padding with old ones
    assert main(["complete", "--data", str(shop), "--items", "B001", "--k", "10"]) == 0
    listed = listed_titles(capsys.readouterr().out.split("other departments:")[-1])
    sports = set(items.loc[items["category"].str.startswith("sports"), "title"])
    assert listed and not set(listed) & sports  # B001 is sports: nothing from sports


def test_search_and_assist_on_the_synthetic_shop(fresh_cache, capsys, monkeypatch):
    import io

    monkeypatch.delenv("XSELL_DATA_DIR", raising=False)
    args = ["--synthetic", "--users", "100"]
    # Bad input fails before anything is fitted, naming the value.
    assert main(["search", "the", *args]) == 2
    assert "search query 'the'" in capsys.readouterr().err
    assert main(["search", "apples", *args, "--user", "nobody"]) == 2
    assert "unknown user 'nobody'" in capsys.readouterr().err
    assert main(["search", "apples", *args, "--k", "0"]) == 2
    assert "--k 0" in capsys.readouterr().err
    assert main(["assist", *args, "--user", "U00003", "  "]) == 2
    assert "the message is empty" in capsys.readouterr().err
    assert [p.name for p in fresh_cache.iterdir()] == ["embeddings"]  # nothing fitted

    assert main(["search", "apples", *args, "--user", "U00003", "--k", "4"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"^\d+\s", line)]
    assert len(rows) == 4 and "why" in out and "text match: apple" in out
    assert main(["search", "apples", *args, "--k", "3"]) == 0
    assert "not personalised" in capsys.readouterr().out

    assert main(["assist", *args, "--user", "U00003", "where is my order?"]) == 0
    out = capsys.readouterr().out
    assert "assistant [track_order, order]" in out and "holds" in out
    monkeypatch.setattr("sys.stdin", io.StringIO("where is my order\n\nlet me talk to a human\n"))
    assert main(["assist", *args, "--user", "U00003"]) == 0
    out = capsys.readouterr().out
    assert out.count("assistant [") == 2 and "passing you to a person" in out


def test_evaluate_search_protocol_on_the_example_shop(tmp_path, capsys, monkeypatch):
    from locations import REPO

    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path / "cache"))
    shop = REPO / "data" / "example"
    out = tmp_path / "search.json"
    assert main(["evaluate", "--protocol", "search", "--data", str(shop), "--bootstrap", "20",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "personalised over the best non-personal system" in printed
    report = json.loads(out.read_text())
    systems = {r["system"] for r in report["results"]}
    assert systems == {"bm25", "dense", "fusion", "fusion-popularity", "personalized"}
    assert {r["kind"] for r in report["results"]} == {"category", "title"}
    assert all(0 <= r["value"] <= 1 for r in report["results"])
