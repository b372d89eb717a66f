"""The model bundle (``xsell fit --out``) and the HTTP API (``xsell serve``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from xsell.cli import SERVE_MIN_BASKETS, main  # noqa: E402
from xsell.data.prepare import prepare  # noqa: E402
from xsell.data.synthetic import make_synthetic_shop  # noqa: E402
from xsell.serving.app import create_app  # noqa: E402
from xsell.serving.bundle import BundleError, fit_bundle, load_bundle, write_bundle  # noqa: E402

USERS = 150  # the synthetic shop of the CLI tests


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A bundle of the synthetic shop, fitted in a cache of this module's own (sharing
    only the text embeddings), written, and loaded back."""
    from xsell.cache import cache_dir

    cache = tmp_path_factory.mktemp("cache")
    shared = cache_dir() / "embeddings"
    shared.mkdir(parents=True, exist_ok=True)
    (cache / "embeddings").symlink_to(shared, target_is_directory=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("XSELL_CACHE_DIR", str(cache))
    mp.delenv("XSELL_DATA_DIR", raising=False)
    data = prepare(make_synthetic_shop(n_users=USERS, seed=0),
                   min_user_baskets=SERVE_MIN_BASKETS).data
    fitted = fit_bundle(data)
    folder = write_bundle(fitted, tmp_path_factory.mktemp("bundles") / "shop")
    yield {"fitted": fitted, "folder": folder, "bundle": load_bundle(folder)}
    mp.undo()


@pytest.fixture(scope="module")
def client(served):
    with TestClient(create_app(served["bundle"]), raise_server_exceptions=False) as c:
        yield c


# ---------------------------------------------------------------------- the bundle
def test_loaded_bundle_ranks_as_the_fitted_models(served, monkeypatch):
    import xsell.models.fitting

    # loading never fits: any fit now fails the test
    monkeypatch.setattr(xsell.models.fitting, "fit_model",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("refit")))
    loaded = load_bundle(served["folder"])
    fitted = served["fitted"]
    users = fitted.data.user_index[:8].to_numpy()
    assert set(loaded.hybrids) == {"all", "explore", "cross-category"}
    for objective, model in fitted.hybrids.items():
        np.testing.assert_array_equal(loaded.hybrids[objective].recommend(users, k=10),
                                      model.recommend(users, k=10))
    cart = list(fitted.data.item_index[:2])
    np.testing.assert_array_equal(loaded.completer.complete(cart, k=5),
                                  fitted.completer.complete(cart, k=5))
    manifest = json.loads((served["folder"] / "bundle.json").read_text())
    assert manifest["users"] == fitted.data.n_users and manifest["format"] == "xsell-bundle/1"


def test_bundle_for_another_catalogue_is_refused(served):
    other = prepare(make_synthetic_shop(n_users=USERS, seed=1),
                    min_user_baskets=SERVE_MIN_BASKETS).data
    with pytest.raises(BundleError, match="made for another catalogue") as err:
        load_bundle(served["folder"], catalogue=other)
    assert "rebuild the bundle" in str(err.value)
    assert load_bundle(served["folder"], catalogue=served["fitted"].data).data.n_users == USERS


def test_damaged_or_foreign_bundles_are_named(served, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(served["folder"], copy)
    parquet = next((copy / "models").rglob("*.parquet"))
    raw = bytearray(parquet.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    parquet.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=parquet.name):
        load_bundle(copy)
    (copy / "bundle.json").unlink()
    with pytest.raises(BundleError, match="bundle.json: missing"):
        load_bundle(copy)
    # a folder that is not a bundle is never overwritten
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an xsell bundle"):
        write_bundle(served["fitted"], mine)
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(tmp_path.iterdir())) == 2


def test_cli_fit_checks_its_arguments_before_fitting(tmp_path, capsys, monkeypatch):
    import xsell.serving.bundle

    monkeypatch.setattr(xsell.serving.bundle, "fit_bundle",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("fitted")))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    assert main(["fit", "--synthetic", "--out", str(tmp_path / "taken")]) == 2
    assert "not an xsell bundle" in capsys.readouterr().err
    assert main(["fit", "--synthetic", "--out", str(tmp_path / "b"),
                 "--objectives", "explore,best"]) == 2
    assert "--objectives 'explore,best'" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "taken")]) == 2
    assert "bundle.json: missing" in capsys.readouterr().err


def test_cli_fit_writes_the_bundle_and_serve_checks_the_catalogue(served, tmp_path, capsys):
    # the same shop and cleaning as the fixture: the fits come back from its cache
    out = tmp_path / "bundle"
    assert main(["fit", "--synthetic", "--users", str(USERS), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert load_bundle(out).manifest["catalogue_fingerprint"] == json.loads(
        (served["folder"] / "bundle.json").read_text())["catalogue_fingerprint"]
    other = make_synthetic_shop(n_users=USERS, seed=1)
    other.items = other.items.assign(title=other.items["title"] + " (other shop)")
    other.to_csv(tmp_path / "other")
    assert main(["serve", str(out), "--data", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert "made for another catalogue" in err and "rebuild the bundle" in err


# ---------------------------------------------------------------------- the API
def test_health_and_openapi(client, served):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["users"] == served["fitted"].data.n_users
    schema = client.get("/openapi.json").json()
    assert {"/health", "/recommend", "/complete", "/items/{item_id}"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


def test_recommend_serves_each_objective_with_explanations(client, served):
    data = served["fitted"].data
    user = str(data.user_index[3])
    bought = set(data.interactions.loc[data.interactions["user_id"] == user, "item_id"])
    lists = {}
    for objective in ("all", "explore", "cross-category"):
        r = client.post("/recommend", json={"user": user, "k": 5, "objective": objective})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["objective"] == objective and len(body["items"]) == 5
        assert all(it["because"] and it["title"] for it in body["items"])
        ids = [it["item_id"] for it in body["items"]]
        assert not set(ids) & bought  # new to the shopper
        expected = served["fitted"].hybrids[objective].recommend([user], k=40,
                                                                 exclude_seen=True)[0]
        assert ids == [i for i in expected if i not in bought][:5]
        lists[objective] = ids
    assert lists["cross-category"] != lists["all"]
    bare = client.post("/recommend", json={"user": user, "k": 3, "explain": False}).json()
    assert "because" not in bare["items"][0]


@pytest.mark.parametrize("body, status, field", [
    ({"user": "nobody"}, 404, "user"),
    ({"user": "Ünïcødé 🛒"}, 404, "user"),
    ({"user": "U00003", "k": 0}, 422, "k"),
    ({"user": "U00003", "k": 10**9}, 422, "k"),
    ({"user": "U00003", "k": "ten"}, 422, "k"),
    ({"user": "U00003", "objective": "best"}, 422, "objective"),
    ({"user": "U00003", "objectve": "all"}, 422, "objectve"),
    ({"k": 3}, 422, "user"),
    ({"user": ["U00003"]}, 422, "user"),
])
def test_bad_recommend_requests_name_field_and_value(client, body, status, field):
    r = client.post("/recommend", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert detail["field"] == field and detail["message"]
    assert "Traceback" not in r.text
    if status == 404:
        assert detail["value"] == body["user"] and repr(body["user"]) in detail["message"]


def test_complete_and_items(client, served):
    data = served["fitted"].data
    cart = [str(i) for i in data.item_index[:2]]
    r = client.post("/complete", json={"items": cart, "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    cart_departments = {it["department"] for it in body["cart"]}
    assert len(body["items"]) == 4
    assert all(it["department"] not in cart_departments for it in body["items"])
    r = client.post("/complete", json={"items": [*cart, "NOPE"]})
    assert r.status_code == 404 and r.json()["detail"]["value"] == ["NOPE"]
    assert client.post("/complete", json={"items": []}).status_code == 422
    everything = data.items.groupby(data.item_category(0).reindex(data.items["item_id"])
                                    .to_numpy())["item_id"].first().astype(str).tolist()
    r = client.post("/complete", json={"items": everything})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "items"
    assert client.get(f"/items/{cart[0]}").json()["item_id"] == cart[0]
    r = client.get("/items/NOPE")
    assert r.status_code == 404 and r.json()["detail"]["field"] == "item_id"


def test_malformed_bodies_are_4xx(client):
    for raw in (b"{not json", b"", "🛒".encode() * 10, b'{"user": "U00003", "k": 3' + b" " * 2**20):
        r = client.post("/recommend", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, (raw[:20], r.status_code)
        assert len(r.content) < 5000  # the 1 MB body is not echoed back
    huge = {"user": "U00003", "padding": "x" * 2**20}
    r = client.post("/recommend", json=huge)
    assert r.status_code == 422 and len(r.json()["detail"]["value"]) < 300
    assert client.get("/health").status_code == 200


# ---------------------------------------------------------------------- a real server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_xsell_serve_answers_over_http(served):
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "xsell.cli", "serve", str(served["folder"]),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up in 120 s"
            time.sleep(0.5)
        user = str(served["fitted"].data.user_index[0])
        r = httpx.post(f"{url}/recommend", json={"user": user, "k": 3}, timeout=30)
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        r = httpx.post(f"{url}/recommend", json={"user": "nobody"}, timeout=30)
        assert r.status_code == 404 and r.json()["detail"]["field"] == "user"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert Path(served["folder"] / "bundle.json").is_file()
