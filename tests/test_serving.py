"""The model bundle (``xsell fit --out``) and the HTTP API (``xsell serve``)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from xsell.cli import SERVE_MIN_BASKETS, main  # noqa: E402
from xsell.data.prepare import prepare  # noqa: E402
from xsell.data.synthetic import make_synthetic_shop  # noqa: E402
from xsell.serving.app import create_app  # noqa: E402
from xsell.serving.bundle import BundleError, fit_bundle, load_bundle, write_bundle  # noqa: E402
from xsell.serving.events import EventLog  # noqa: E402

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
    # arrays of a kilobyte and more memory-mapped, as a real catalogue's are (8 MB and
    # more): every serving test then runs on read-only, shared arrays
    mp.setattr("xsell.checkpoint.MMAP_BYTES", 2**10)
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
    for query in ("apples", "something for breakfast"):
        np.testing.assert_array_equal(
            loaded.search.rank([query] * 3, users[:3], store=False),
            fitted.search.rank([query] * 3, users[:3], store=False))
    message = "I want to track my order"
    assert loaded.assistant.reply(users[0], message).text == fitted.assistant.reply(
        users[0], message).text
    assert loaded.assistant.search is loaded.search  # stored once
    # the hybrids' shared components are stored once (hard links) and read once
    towers = [h.components_["two-tower"] for h in loaded.hybrids.values()]
    assert all(t is towers[0] for t in towers) and loaded.search.models_["two-tower"] is towers[0]
    files = [f for f in served["folder"].rglob("*") if f.is_file()]
    assert len({f.stat().st_ino for f in files}) < 0.6 * len(files)
    manifest = json.loads((served["folder"] / "bundle.json").read_text())
    assert manifest["users"] == fitted.data.n_users and manifest["format"] == "xsell-bundle/2"


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
    # a damaged copy of a component read once for several hybrids is caught too
    again = tmp_path / "again"
    shutil.copytree(served["folder"], again)
    hybrids = sorted(f for f in (again / "models").glob("part*/part*/*")
                     if f.suffix in (".npz", ".npy"))
    contents = [f.read_bytes() for f in hybrids]
    twin = next(f for n, f in enumerate(hybrids) if contents[n] in contents[:n])
    raw = bytearray(twin.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    twin.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=str(twin.relative_to(again))):
        load_bundle(again)
    (copy / "bundle.json").unlink()
    with pytest.raises(BundleError, match="bundle.json: missing"):
        load_bundle(copy)
    # a folder that is not a bundle is never overwritten
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an xsell bundle"):
        write_bundle(served["fitted"], mine)
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(tmp_path.iterdir())) == 3


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
    assert not (tmp_path / "taken-events.sqlite").exists()  # nothing written for a non-bundle


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
    (tmp_path / "log.txt").write_text("not a database " * 100)
    assert main(["serve", str(out), "--events", str(tmp_path / "log.txt")]) == 2
    assert "log.txt: not an xsell event log" in capsys.readouterr().err


# ---------------------------------------------------------------------- the API
def test_health_and_openapi(client, served):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["users"] == served["fitted"].data.n_users
    schema = client.get("/openapi.json").json()
    assert {"/health", "/recommend", "/complete", "/search", "/assist", "/events",
            "/items/{item_id}"} <= set(schema["paths"])
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


def test_two_tower_alone_is_served_from_its_index(client, served):
    bundle = served["bundle"]
    data = bundle.data
    for user in map(str, data.user_index[:4]):
        r = client.post("/recommend", json={"user": user, "k": 6, "model": "two-tower"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "two-tower" and all(it["because"] for it in body["items"])
        expected = bundle.two_tower.recommend([user], k=6, exclude_seen=True)[0]
        assert [it["item_id"] for it in body["items"]] == list(expected)
    r = client.post("/recommend", json={"user": "U00003", "model": "two-tower",
                                        "objective": "cross-category"})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "objective"
    r = client.post("/recommend", json={"user": "nobody", "model": "two-tower"})
    assert r.status_code == 404 and r.json()["detail"]["value"] == "nobody"


@pytest.mark.parametrize("body, status, field", [
    ({"user": "nobody"}, 404, "user"),
    ({"user": "Ünïcødé 🛒"}, 404, "user"),
    ({"user": "U00003", "k": 0}, 422, "k"),
    ({"user": "U00003", "k": 10**9}, 422, "k"),
    ({"user": "U00003", "k": "ten"}, 422, "k"),
    ({"user": "U00003", "objective": "best"}, 422, "objective"),
    ({"user": "U00003", "objectve": "all"}, 422, "objectve"),
    ({"user": "U00003", "model": "gpt"}, 422, "model"),
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


def test_search_ranks_as_the_fitted_engine_and_names_bad_queries(client, served):
    data, engine = served["fitted"].data, served["fitted"].search
    user = str(data.user_index[2])
    r = client.get("/search", params={"q": "apples", "user": user, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["personalized"] and "note" not in body
    expected = engine.search("apples", user=user, k=5)
    assert [it["item_id"] for it in body["items"]] == expected["item_id"].tolist()
    assert all(it["why"] for it in body["items"])
    anonymous = client.get("/search", params={"q": "apples", "k": 5}).json()
    assert not anonymous["personalized"] and "not personalised" in anonymous["note"]
    for params, status, field in [({"q": "the of and"}, 422, "q"), ({"q": ""}, 422, "q"),
                                  ({"k": 3}, 422, "q"), ({"q": "milk", "k": 0}, 422, "k"),
                                  ({"q": "milk", "user": "nobody"}, 404, "user"),
                                  ({"q": "milk", "quary": "x"}, 422, "quary")]:
        r = client.get("/search", params=params)
        assert r.status_code == status and r.json()["detail"]["field"] == field, (params, r.text)


def test_assist_answers_from_the_shoppers_orders(client, served):
    data = served["fitted"].data
    user = str(data.user_index[4])
    r = client.post("/assist", json={"user": user, "message": "where is my order?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["intent"] == "track_order" and body["route"] == "order"
    mine = data.interactions[data.interactions["user_id"] == user]
    latest = mine.loc[mine["seq"].idxmax(), "basket_id"]
    assert {"kind": "latest_order", "value": str(latest)} in body["facts"]
    assert f"#{latest}" in body["text"]
    for payload, status, field in [({"user": "nobody", "message": "hi"}, 404, "user"),
                                   ({"user": user, "message": ""}, 422, "message"),
                                   ({"user": user, "message": "   "}, 422, "message"),
                                   ({"user": user}, 422, "message")]:
        r = client.post("/assist", json=payload)
        assert r.status_code == status and r.json()["detail"]["field"] == field, r.text


def test_malformed_bodies_are_4xx(client):
    for raw in (b"{not json", b"", "🛒".encode() * 10, b'{"user": "U00003", "k": 3' + b" " * 2**20):
        r = client.post("/recommend", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, (raw[:20], r.status_code)
        assert len(r.content) < 5000  # the 1 MB body is not echoed back
    huge = {"user": "U00003", "padding": "x" * 2**20}
    r = client.post("/recommend", json=huge)
    assert r.status_code == 422 and len(r.json()["detail"]["value"]) < 300
    assert client.get("/health").status_code == 200


# ---------------------------------------------------------------------- live events
def test_shared_lock_lets_readers_share_and_a_writer_go_alone_before_new_readers():
    import threading

    from xsell.serving.catalogue import SharedLock

    lock, order = SharedLock(), []
    inside, release = threading.Event(), threading.Event()

    def reader(name, hold=None):
        with lock.reading():
            inside.set()
            if hold is not None:
                hold.wait(5)
            order.append(name)

    def writer():
        with lock.writing():
            order.append("writer")

    first = threading.Thread(target=reader, args=("first reader", release))
    first.start()
    assert inside.wait(5)
    with lock.reading():  # readers share the lock
        order.append("second reader")
    late = [threading.Thread(target=writer), threading.Thread(target=reader, args=("late",))]
    late[0].start()
    time.sleep(0.2)
    late[1].start()  # comes after the writer began to wait: goes after it
    time.sleep(0.2)
    assert order == ["second reader"]  # the writer waits for the first reader
    release.set()
    for thread in (first, *late):
        thread.join(5)
    assert order == ["second reader", "first reader", "writer", "late"]


def test_event_log_survives_reopening_and_refuses_other_files(tmp_path):
    log = EventLog(tmp_path / "events.sqlite")
    first = log.append("U1", ["P1", "P2"], "2026-12-05T10:00:00")
    log.append(7, [3])
    log.close()
    again = EventLog(tmp_path / "events.sqlite")
    assert len(again) == 2 and again.events()[0] == first
    assert [e.items for e in again.events(after=first.event_id)] == [("3",)]
    (tmp_path / "notes.txt").write_text("not a database " * 100)
    with pytest.raises(ValueError, match="notes.txt: not an xsell event log"):
        EventLog(tmp_path / "notes.txt")
    import sqlite3

    other = sqlite3.connect(tmp_path / "other.sqlite")
    other.execute("CREATE TABLE events (x TEXT)")
    other.commit()
    other.close()
    with pytest.raises(ValueError, match="columns"):
        EventLog(tmp_path / "other.sqlite")


def test_an_event_changes_the_next_list_without_a_refit(served, tmp_path):
    from xsell.cross_sell.service import recommend_for_user

    bundle, data = served["bundle"], served["bundle"].data
    log = EventLog(tmp_path / "events.sqlite")
    with TestClient(create_app(bundle, log), raise_server_exceptions=False) as c:
        user = str(data.user_index[5])
        before = [it["item_id"] for it in c.post("/recommend", json={"user": user, "k": 8})
                  .json()["items"]]
        tower = {"user": user, "k": 8, "model": "two-tower"}
        tower_before = [it["item_id"] for it in c.post("/recommend", json=tower).json()["items"]]
        bought = before[:3]  # they buy three of the items they were shown
        r = c.post("/events", json={"user": user, "items": bought,
                                     "timestamp": "2026-12-05T10:00:00"})
        assert r.status_code == 201, r.text
        assert r.json()["baskets_since_fit"] == 1 and r.json()["event_id"] == 1
        after = [it["item_id"] for it in c.post("/recommend", json={"user": user, "k": 8})
                 .json()["items"]]
        assert not set(bought) & set(after) and after != before
        # the same list as the model scoring the history with the basket appended
        rows = data.interactions[data.interactions["user_id"] == user][
            ["user_id", "item_id", "basket_id", "seq"]]
        basket = rows.iloc[:0].reindex(range(3)).assign(
            user_id=user, item_id=bought, basket_id="new", seq=rows["seq"].max() + 1)
        expected = recommend_for_user(bundle.hybrids["explore"], k=8,
                                      interactions=pd.concat([rows, basket]))
        assert after == list(expected.index)
        # the two-tower's list: the user tower ran on the new history at the event
        tower_after = [it["item_id"] for it in c.post("/recommend", json=tower).json()["items"]]
        history = pd.concat([rows, basket])
        assert tower_after != tower_before and not set(bought) & set(tower_after)
        assert tower_after == list(bundle.two_tower.recommend(
            [user], k=8, exclude_seen=True, history=history)[0])
        # a shopper new since the fit is served from their events alone
        assert c.post("/recommend", json={"user": "newcomer"}).status_code == 404
        assert c.post("/events", json={"user": "newcomer", "items": bought}).status_code == 201
        fresh = c.post("/recommend", json={"user": "newcomer", "k": 5})
        assert fresh.status_code == 200 and len(fresh.json()["items"]) == 5
        assert not set(bought) & {it["item_id"] for it in fresh.json()["items"]}
        fresh = c.post("/recommend", json={"user": "newcomer", "k": 5, "model": "two-tower"})
        assert fresh.status_code == 200 and len(fresh.json()["items"]) == 5
        r = c.post("/events", json={"user": user, "items": ["NOPE"]})
        assert r.status_code == 404 and r.json()["detail"]["value"] == ["NOPE"]
        assert c.post("/events", json={"user": user, "items": []}).status_code == 422
        r = c.post("/events", json={"user": user, "items": bought, "timestamp": "yesterday"})
        assert r.status_code == 422 and r.json()["detail"]["field"] == "timestamp"
        assert c.get("/health").json()["events"] == 2
    assert len(EventLog(tmp_path / "events.sqlite")) == 2


def test_a_new_item_is_searchable_and_recommendable_at_once(served, tmp_path):
    from xsell.text import item_texts

    bundle = load_bundle(served["folder"])  # its own: the app grows its search index
    data, model = bundle.data, bundle.two_tower
    catalogue = data.items.set_index("item_id")
    ids = np.append(data.item_index.to_numpy(), "NEW-1")
    # a shopper whose two-tower top 10 the new product enters, by the model's own scores:
    # a variant of a product the model ranks first for them
    for user in map(str, data.user_index[:20]):
        top = catalogue.loc[model.recommend([user], k=1, exclude_seen=True)[0][0]]
        fields = {"title": f"Zorbly {top['title']}", "category": top["category"],
                  "price": 3.5}
        row = pd.DataFrame([{"item_id": "NEW-1", **fields}])
        text = bundle.search.text_encoder_.encode(item_texts(data, row).tolist(), store=False)
        scores = np.append(model.score([user])[0], model.score_text_items([user], text)[0])
        scores[data.item_index.get_indexer(data.user_interactions(user)["item_id"])] = -np.inf
        expected = list(ids[np.argsort(-scores, kind="stable")[:10]])
        if "NEW-1" in expected:
            break
    assert "NEW-1" in expected, "the new product enters no shopper's top 10"
    log = EventLog(tmp_path / "events.sqlite")
    with TestClient(create_app(bundle, log), raise_server_exceptions=False) as c:
        tower = {"user": user, "k": 10, "model": "two-tower"}
        r = c.post("/items", json={"item_id": "NEW-1", **fields})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["serves"] == ["search", "recommend:two-tower"]
        assert "recommend:hybrid" in body["ignores"] and body["took_ms"] > 0
        assert body["item"] == {"item_id": "NEW-1", "title": fields["title"],
                                "department": fields["category"].split(" > ")[0]}
        served_list = c.post("/recommend", json=tower).json()["items"]
        assert [it["item_id"] for it in served_list] == expected
        new = next(it for it in served_list if it["item_id"] == "NEW-1")
        assert new["title"] == fields["title"] and "because" not in new
        found = c.get("/search", params={"q": "zorbly", "user": user}).json()
        assert found["items"][0]["item_id"] == "NEW-1", found
        assert c.get("/items/NEW-1").json()["title"] == fields["title"]
        # the hybrids and cart completion know it from the next fit; an event may name it
        assert c.post("/recommend", json={"user": user}).status_code == 200
        r = c.post("/complete", json={"items": ["NEW-1"]})
        assert r.status_code == 422 and r.json()["detail"]["value"] == ["NEW-1"]
        assert c.post("/events", json={"user": user, "items": ["NEW-1"]}).status_code == 201
        after = [it["item_id"] for it in c.post("/recommend", json=tower).json()["items"]]
        assert "NEW-1" not in after  # bought: no longer recommended to them
        assert c.post("/recommend", json={"user": user}).status_code == 200
        # refused: an id taken (by the fit or an addition), a body without a title
        for taken in ("NEW-1", str(data.item_index[0])):
            r = c.post("/items", json={"item_id": taken, "title": "x"})
            assert r.status_code == 409 and r.json()["detail"]["value"] == taken
        r = c.post("/items", json={"item_id": "NEW-2"})
        assert r.status_code == 422 and r.json()["detail"]["field"] == "title"
        # an id another server process logged a moment ago (this one has not read it yet)
        log.add_item("NEW-3", {"title": "Zorbly Rye Crackers"})
        r = c.post("/items", json={"item_id": "NEW-3", "title": "Zorbly Oat Bar"})
        assert r.status_code == 409 and "another server process" in r.json()["detail"]["message"]
        assert c.get("/health").json()["items_added"] == 1
    log.close()
    # the restarted server below reads both products from the log
    # a restarted server indexes the logged product again and replays the purchase
    with TestClient(create_app(load_bundle(served["folder"]),
                               EventLog(tmp_path / "events.sqlite")),
                    raise_server_exceptions=False) as c:
        assert c.get("/health").json()["items_added"] == 2
        assert c.get("/health").json()["events"] == 1
        assert c.post("/recommend", json=tower).json()["items"][0]["item_id"] == after[0]
        found = c.get("/search", params={"q": "zorbli"}).json()  # a typo of their word
        assert {it["item_id"] for it in found["items"][:2]} == {"NEW-1", "NEW-3"}


# ---------------------------------------------------------------------- a real server
def _start_server(folder: Path, events: Path, workers: int = 1, args: tuple = ()
                  ) -> tuple[subprocess.Popen, str]:
    """``xsell serve`` in a process of its own; returns once /health answers."""
    from xsell.serving.process import ServerProcess

    server = ServerProcess(folder, events, workers, env={"OMP_NUM_THREADS": "1"},
                           args=args).start()
    return server.proc, server.url


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_xsell_serve_answers_over_http(served, tmp_path):
    """A real server: answers, and concurrent events for one shopper are served in the
    order of the log, so a restarted server (replaying it) gives the same list."""
    from concurrent.futures import ThreadPoolExecutor

    items = [str(i) for i in served["fitted"].data.item_index]
    user = str(served["fitted"].data.user_index[0])
    proc, url = _start_server(served["folder"], tmp_path / "events.sqlite")
    try:
        r = httpx.post(f"{url}/recommend", json={"user": user, "k": 3}, timeout=30)
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        r = httpx.post(f"{url}/recommend", json={"user": "nobody"}, timeout=30)
        assert r.status_code == 404 and r.json()["detail"]["field"] == "user"

        def post(n: int) -> int:
            body = {"user": user, "items": items[7 * n:7 * n + 2]}
            return httpx.post(f"{url}/events", json=body, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post, range(24))) == {201}
        served_list = httpx.post(f"{url}/recommend", json={"user": user, "k": 10},
                                 timeout=30).json()["items"]
    finally:
        _stop(proc)
    proc, url = _start_server(served["folder"], tmp_path / "events.sqlite")
    try:
        assert httpx.get(f"{url}/health").json()["events"] == 24
        assert httpx.post(f"{url}/recommend", json={"user": user, "k": 10},
                          timeout=30).json()["items"] == served_list
    finally:
        _stop(proc)


def test_a_killed_server_restores_every_acknowledged_event(served, tmp_path):
    """kill -9 in the middle of an event load (8 concurrent clients), restart: every
    event answered 2xx is in the log and in the served state, and the shoppers whose
    events all landed before the load get the lists they got before the crash."""
    import random
    import signal
    from concurrent.futures import ThreadPoolExecutor

    data = served["fitted"].data
    users = [str(u) for u in data.user_index[:40]]
    items = [str(i) for i in data.item_index]
    events = tmp_path / "events.sqlite"
    proc, url = _start_server(served["folder"], events)
    acked: list[int] = []
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            fitted = {u: c.post("/recommend", json={"user": u, "k": 10}).json()["items"]
                      for u in users[:4]}
            for n, user in enumerate(users[:4]):  # before the load: all acknowledged
                r = c.post("/events", json={"user": user, "items": items[n * 3:n * 3 + 3]})
                assert r.status_code == 201
                acked.append(r.json()["event_id"])
            before = {u: c.post("/recommend", json={"user": u, "k": 10}).json()["items"]
                      for u in users[:4]}
        assert before != fitted  # the events changed lists: a lost replay would show
        stop = time.monotonic() + 60  # the load stops by itself

        answered: list[int] = []  # acknowledged by the load's clients (appends are atomic)

        def load(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=url, timeout=10) as c:
                while time.monotonic() < stop:
                    body = {"user": rng.choice(users[4:]), "items": rng.sample(items, 2)}
                    try:
                        r = c.post("/events", json=body)
                    except httpx.TransportError:
                        return  # the server is gone
                    assert r.status_code == 201, r.text
                    answered.append(r.json()["event_id"])

        reader = EventLog(events)
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(load, seed) for seed in range(8)]
            while len(answered) < 60 and time.monotonic() < stop:
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)  # mid-load
            proc.wait()
            for f in futures:
                f.result()  # a failed request fails the test here
        acked.extend(answered)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acked) >= 60 and len(set(acked)) == len(acked)
    logged = {e.event_id for e in reader.events()}
    reader.close()
    assert set(acked) <= logged  # every acknowledged event is on disk
    proc, url = _start_server(served["folder"], events)
    try:
        health = httpx.get(f"{url}/health").json()
        assert health["events"] == len(logged) >= len(acked)
        with httpx.Client(base_url=url, timeout=30) as c:
            after = {u: c.post("/recommend", json={"user": u, "k": 10}).json()["items"]
                     for u in users[:4]}
        assert after == before
    finally:
        _stop(proc)


def test_a_bounded_mixed_load_at_concurrency_8_and_32_gets_no_5xx(served, tmp_path):
    from xsell.serving.load import request_mix, run_load

    proc, url = _start_server(served["folder"], tmp_path / "events.sqlite")
    try:
        for concurrency in (8, 32):
            plan = request_mix(served["fitted"].data, 80, seed=concurrency)
            result = run_load(url, plan, concurrency, max_seconds=120)
            table = result.summary()
            assert table.loc["all", "requests"] == len(plan)  # it did not hit the time limit
            assert table.loc["all", "2xx"] == len(plan), table  # valid ids: all served
            assert set(table.index) == {"all", "recommend", "two-tower", "complete", "search",
                                        "assist", "events"}
            assert table.loc["all", "p99 ms"] >= table.loc["all", "p50 ms"] > 0
        assert httpx.get(f"{url}/health").json()["events"] == (
            table.loc["events", "requests"] + sum(1 for r in request_mix(
                served["fitted"].data, 80, seed=8) if r[0] == "events"))
    finally:
        _stop(proc)


def test_several_workers_share_the_mapped_index_and_follow_the_log(served, tmp_path):
    """``xsell serve --workers 2``: two processes answer, both map the two-tower's item
    table from the one bundle file and the two-tower's and the search's faiss indexes
    from the files built once, and what one of them logs the other serves."""
    table = served["bundle"].two_tower.item_vectors_
    assert isinstance(table, np.memmap) and not table.flags.writeable
    mapped = Path(table.filename).resolve()
    assert Path(served["folder"]).resolve() in mapped.parents
    pytest.importorskip("faiss")
    bundle = tmp_path / "shop"  # a bundle of its own: its index is built beside it
    bundle.symlink_to(Path(served["folder"]).resolve(), target_is_directory=True)
    proc, url = _start_server(bundle, tmp_path / "events.sqlite", workers=2,
                              args=("--index", "ivf"))
    index_files = [tmp_path / "shop-index" / f"{name}.faiss"
                   for name in ("two-tower", "search-dense")]
    try:
        def health_of_each() -> dict:  # new connections until both have answered (60 s)
            found, deadline = {}, time.monotonic() + 60
            while len(found) < 2 and time.monotonic() < deadline:
                with httpx.Client(timeout=30) as c:
                    h = c.get(f"{url}/health").json()
                found[h["worker"]] = h
            return found

        workers = health_of_each()
        assert len(workers) == 2, workers
        assert all(f.is_file() for f in index_files)  # built once, beside the bundle
        for pid in workers:  # each process maps the very files, read-only
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
            for path in (mapped, *(f.resolve() for f in index_files)):
                assert any(str(path) in line and " r--" in line for line in maps), path
        user = str(served["bundle"].data.user_index[2])
        item = {"item_id": "NEW-W", "title": "Zorbly Oat Bar", "category": "snacks > bars"}
        assert httpx.post(f"{url}/items", json=item, timeout=30).status_code == 201
        bought = [str(i) for i in served["bundle"].data.item_index[:2]]
        r = httpx.post(f"{url}/events", json={"user": user, "items": bought}, timeout=30)
        assert r.status_code == 201
        time.sleep(1.0)  # ten reads of the log
        for h in health_of_each().values():
            assert h["items_added"] == 1 and h["events"] == 1, h
        for _ in range(6):  # whichever process answers knows the product
            found = httpx.get(f"{url}/search", params={"q": "zorbly"}, timeout=30).json()
            assert found["items"][0]["item_id"] == "NEW-W"
    finally:
        _stop(proc)


def test_a_malformed_request_fuzz_gets_only_2xx_and_4xx(served, tmp_path):
    """Wrong types, missing and unknown fields, huge k, unicode, 1 MB and non-JSON bodies,
    unknown ids and a burst of events for one shopper, 8 at a time: no 5xx, no dropped
    connection, every acknowledged event logged once, and the server healthy after."""
    from xsell.serving.fuzz import BURST_USER_EVENTS, malformed_requests
    from xsell.serving.load import run_load

    data = served["fitted"].data
    events = tmp_path / "events.sqlite"
    plan = malformed_requests(data, 240, seed=3)
    proc, url = _start_server(served["folder"], events)
    try:
        result = run_load(url, plan, concurrency=8, max_seconds=120)
        frame = pd.DataFrame(result.rows, columns=["request", "status", "ms"])
        assert len(frame) == len(plan)  # it did not hit the time limit
        bad = frame[~frame["status"].between(200, 499)]
        assert bad.empty, bad
        assert frame["status"].between(400, 499).sum() >= 200  # it was malformed
        burst = frame[frame["request"] == "burst"]
        assert len(burst) == BURST_USER_EVENTS and (burst["status"] == 201).all()
        logged = frame["request"].isin(["burst", "events: malformed"]) & (frame["status"] == 201)
        added = (frame["request"] == "items: malformed") & (frame["status"] == 201)
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok" and health["events"] == logged.sum()
        assert health["items_added"] == added.sum()
        user = str(data.user_index[0])
        r = httpx.post(f"{url}/recommend", json={"user": user, "k": 3}, timeout=30)
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        r = httpx.get(f"{url}/search", params={"q": "oat bar", "user": user}, timeout=30)
        assert r.status_code == 200 and r.json()["items"]
    finally:
        _stop(proc)
    log = EventLog(events)
    mine = [e for e in log.events() if e.user == str(data.user_index[0]) and len(e.items) == 1]
    assert len(log) == logged.sum() and len(mine) >= BURST_USER_EVENTS
    assert len(log.items()) == added.sum()


def test_with_events_appends_baskets_in_the_datas_id_types():
    from xsell.data.dataset import Dataset
    from xsell.serving.events import Event, LoggedItem, with_events

    inter = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 10],
                          "basket_id": [100, 100, 101], "seq": [0, 0, 0],
                          "timestamp": pd.to_datetime(["2017-01-01"] * 3),
                          "reordered": np.array([0, 1, 0], dtype="int8")})
    items = pd.DataFrame({"item_id": [10, 11, 12], "title": ["a", "b", "c"]})
    data = Dataset(inter, items, name="tiny")
    events = [Event(1, "1", ("12", "10"), "2017-02-01T10:00:00+01:00", 0.0),
              Event(2, "visitor", ("10",), None, 0.0),   # a text id where ids are numbers
              Event(3, "2", ("99",), None, 0.0),         # an item the catalogue lacks
              Event(4, "3", ("11",), None, 1.7e9)]       # a new shopper
    logged = [LoggedItem("13", {"title": "d", "price": 2.0}, 0.0),  # no price column: dropped
              LoggedItem("12", {"title": "c"}, 0.0),  # in the catalogue already
              LoggedItem("x1", {"title": "e"}, 0.0)]  # a text id where ids are numbers
    events.append(Event(5, "2", ("13",), None, 0.0))  # buys the product added while serving
    merged, counts = with_events(data, events, logged)
    assert counts == {"items": 1, "bad_items": 1, "events": 5, "baskets": 3,
                      "unknown_items": 1, "bad_users": 1, "through": 5}
    assert merged.items["item_id"].tolist() == [10, 11, 12, 13]
    assert list(merged.items.columns) == ["item_id", "title"]
    assert merged.interactions["item_id"].iloc[-1] == 13
    new = merged.interactions.iloc[3:-1]
    assert new["user_id"].tolist() == [1, 1, 3] and new["item_id"].tolist() == [12, 10, 11]
    assert new["basket_id"].tolist() == [102, 102, 103] and new["seq"].tolist() == [1, 1, 0]
    assert merged.interactions["user_id"].dtype == np.int64
    assert new["timestamp"].iloc[0] == pd.Timestamp("2017-02-01 09:00:00")  # UTC, naive
    assert new["reordered"].isna().all() and merged.info["events"] == counts


def test_a_nightly_fit_learns_the_logged_events_and_serves_only_later_ones(served, tmp_path,
                                                                           capsys):
    data = served["fitted"].data
    user, items = str(data.user_index[1]), [str(i) for i in data.item_index[-2:]]
    path = tmp_path / "events.sqlite"
    log = EventLog(path)
    log.add_item("NEW-9", {"title": "Zorbly Oat Bar", "category": "snacks > bars"})
    log.append(user, items + ["NEW-9"])  # buys the product added while serving too
    log.append(user, ["NOPE"])
    log.close()
    assert main(["fit", "--synthetic", "--users", str(USERS), "--objectives", "explore",
                 "--events", str(tmp_path / "missing.sqlite"), "--out",
                 str(tmp_path / "x")]) == 2
    assert "missing.sqlite: no such file" in capsys.readouterr().err
    out = tmp_path / "next"
    assert main(["fit", "--synthetic", "--users", str(USERS), "--objectives", "explore",
                 "--events", str(path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 products added while serving join" in err and "1 of 2 logged purchases" in err
    bundle = load_bundle(out)
    assert bundle.manifest["events_through"] == 2
    mine = bundle.data.user_interactions(user)
    assert set(mine.loc[mine["seq"] == mine["seq"].max(), "item_id"]) == {*items, "NEW-9"}
    assert bundle.data.items.set_index("item_id").loc["NEW-9", "title"] == "Zorbly Oat Bar"
    log = EventLog(path)
    log.append(user, items[:1])  # after the fit: the only event the new server replays
    with TestClient(create_app(bundle, log), raise_server_exceptions=False) as c:
        health = c.get("/health").json()
        assert health["events"] == 1 and health["items_added"] == 0  # in the catalogue now
        assert c.post("/complete", json={"items": ["NEW-9"]}).status_code == 200
