"""The xsell command: summary, validate and the main job."""

from __future__ import annotations

import json
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
    assert "baselines on the test basket" in out
    result = json.loads((tmp_path / "run.json").read_text())
    assert result["summary"]["users"] > 150
    models = {row["model"] for row in result["comparison"]}
    assert models == {"popularity", "buy-again"}
    assert "half_life" in result["hyperparameters"]["buy-again"]["all"]
    assert {"random 7:1:2", "leave-last-basket-out", "global time"} <= set(result["splits"])


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "xsell.cli", "--help"], capture_output=True,
                          text=True, check=True)
    assert "data" in done.stdout and "run" in done.stdout


def test_committed_example_shop(capsys):
    from conftest import REPO

    assert main(["data", "summary", "--data", str(REPO / "data" / "example"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["users"] == 5 and stats["categories_per_level"] == [4, 7, 9]
