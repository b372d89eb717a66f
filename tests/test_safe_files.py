"""Saved models and cache entries: no pickle, every byte verified, damage never crashes.

Every registered model saves to a folder and loads back with identical scores; a planted
pickle is never unpickled; seeded random corruptions of a cache entry and of an embedding
shard give no crash and no silent wrong load (each is detected and recomputed).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import xsell.cross_sell  # noqa: F401 - registers the basket completer
from xsell.cache import memoize
from xsell.checkpoint import (
    CheckpointError,
    UnsupportedValue,
    load_object,
    read_folder,
    write_folder,
)
from xsell.data import clean
from xsell.data.synthetic import make_synthetic_shop
from xsell.models.fitting import fit_model
from xsell.models.registry import MODELS, model_class
from xsell.text import EmbeddingCache

MARKER_NAME = "pwned"


class _Planted:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "unpickled"))


@pytest.fixture(scope="module")
def shop():
    data, _ = clean(make_synthetic_shop(n_users=80, seed=3), min_user_baskets=3)
    return data


def _small_params(name: str, lm: str) -> dict:
    tower = {"encoder": lm, "dim": 16, "max_epochs": 1, "batch_size": 128,
             "validation_users": 20, "progress": False}
    small = {"als": {"factors": 8, "iterations": 2}, "bpr": {"factors": 8, "iterations": 2},
             "text-similarity": {"encoder": lm, "progress": False},
             "two-tower": tower}
    components = {"buy-again": {}, "cooccurrence": {}, "two-tower": tower}
    for hybrid in ("hybrid", "score-fusion", "rank-fusion"):
        small[hybrid] = {"components": components, "progress": False, "cache": False}
    small["reranker"] = {"components": components, "progress": False, "cache": False,
                         "max_iter": 10}
    small["basket-completer"] = {"user_models": {"ease": {}}, "encoder": lm,
                                 "progress": False, "cache": False}
    return small.get(name, {})


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_saves_and_loads_with_identical_scores(name, shop, tiny_lm_dir, tmp_path):
    model = fit_model(name, _small_params(name, str(tiny_lm_dir)), shop)
    model.save(tmp_path / "m")
    again = model_class(name).load(tmp_path / "m", shop)
    users = shop.user_index[:12]
    assert type(again) is type(model)
    assert again.get_params() == model.get_params()
    np.testing.assert_array_equal(again.score(users), model.score(users))
    np.testing.assert_array_equal(again.recommend(users, k=5), model.recommend(users, k=5))
    for path in (tmp_path / "m").rglob("*"):
        assert path.suffix in ("", ".json", ".sha256", ".npz", ".npy", ".parquet", ".safetensors")


def test_load_refuses_other_data_another_class_and_missing_folders(shop, tmp_path):
    model = fit_model("ease", {}, shop)
    model.save(tmp_path / "m")
    other, _ = clean(make_synthetic_shop(n_users=60, seed=4), min_user_baskets=3)
    with pytest.raises(CheckpointError, match="fitted on other data"):
        model_class("ease").load(tmp_path / "m", other)
    with pytest.raises(CheckpointError, match="not a ItemKNN"):
        model_class("itemknn").load(tmp_path / "m", shop)
    with pytest.raises(CheckpointError, match="missing"):
        model_class("ease").load(tmp_path / "nowhere", shop)


def test_save_never_overwrites_a_folder_that_is_not_a_model(shop, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an xsell folder"):
        fit_model("popularity", {}, shop).save(tmp_path / "docs")
    assert (tmp_path / "docs" / "notes.txt").read_text() == "mine"
    fit_model("popularity", {}, shop).save(tmp_path / "m")
    fit_model("buy-again", {}, shop).save(tmp_path / "m")  # a model folder is replaced
    assert type(load_object(tmp_path / "m", shop)).__name__ == "BuyAgain"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no stray temp


def test_values_round_trip_exactly(tmp_path):
    frame = pd.DataFrame({"model": ["a", "b"], "value": [0.5, np.nan], "k": [10, 20]},
                         index=pd.Index(["x", "y"], name="row"))
    frame.attrs["tasks"] = {"all": {"n_users": 3}}
    value = {"frame": frame, "series": pd.Series([1.0, 2.0], index=["p", "q"], name="w"),
             "index": pd.Index(["a", "b"], name="dept"), "tuple": (1, "x", None),
             "ints": {1: "one"}, "array": np.arange(6).reshape(2, 3),
             "strings": np.array(["a", "b"], dtype=object), "nan": float("nan"),
             "sparse": sp.random(5, 4, density=0.4, format="csr", random_state=0)}
    write_folder(tmp_path / "v", {"value": value})
    back = read_folder(tmp_path / "v")["value"]
    pd.testing.assert_frame_equal(back["frame"], frame)
    assert back["frame"].attrs == frame.attrs
    pd.testing.assert_series_equal(back["series"], value["series"])
    pd.testing.assert_index_equal(back["index"], value["index"])
    assert back["tuple"] == (1, "x", None) and back["ints"] == {1: "one"}
    assert back["strings"].dtype == object and list(back["strings"]) == ["a", "b"]
    assert np.isnan(back["nan"]) and np.array_equal(back["array"], value["array"])
    assert (back["sparse"] != value["sparse"]).nnz == 0


def test_objects_without_a_safe_format_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(UnsupportedValue):
        write_folder(tmp_path / "v", {"value": object()})
    with pytest.raises(UnsupportedValue):  # parquet would change a list column
        write_folder(tmp_path / "v", {"value": pd.DataFrame({"a": [[1, 2], [3]]})})
    assert list(tmp_path.iterdir()) == []


def test_a_planted_pickle_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path / "cache"))
    marker = tmp_path / MARKER_NAME
    payload = pickle.dumps(_Planted(str(marker)))
    key = {"x": 1}
    memoize("demo", key, lambda: {"answer": 42})
    entry = next((tmp_path / "cache" / "demo").iterdir())
    # Planted as an old-format entry, as the entry itself, and inside the entry's files.
    (entry.parent / "0123456789abcdef01234567.pkl").write_bytes(payload)
    for name in ("arrays.npz", "config.json"):
        (entry / name).write_bytes(payload)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert memoize("demo", key, lambda: {"answer": 42}) == {"answer": 42}
    assert not marker.exists()
    assert any("older format" in str(w.message) for w in caught)
    assert any("discarding" in str(w.message) for w in caught)
    # A plain pickle file where the entry folder should be.
    for old in entry.parent.iterdir():
        if old.is_dir():
            import shutil

            shutil.rmtree(old)
            old.write_bytes(payload)
    with pytest.warns(UserWarning, match="discarding"):
        assert memoize("demo", key, lambda: {"answer": 42}) == {"answer": 42}
    assert not marker.exists()
    # A model folder naming a class outside xsell is refused before anything is imported.
    fit_model_entry = tmp_path / "m"
    write_folder(fit_model_entry, {"class": "os:system", "params": {}, "state": {},
                                   "data": None})
    with pytest.raises(CheckpointError, match="not one of xsell's saveable classes"):
        load_object(fit_model_entry, None)


def _corrupt(folder: Path, rng: np.random.Generator) -> str:
    """One random damage: flip a byte, truncate, or delete a file of the folder."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    path = files[rng.integers(len(files))]
    raw = bytearray(path.read_bytes())
    kind = rng.choice(["flip", "flip", "truncate", "delete"])
    if kind == "delete" or not raw:
        path.unlink()
    elif kind == "truncate":
        path.write_bytes(bytes(raw[:int(rng.integers(len(raw)))]))
    else:
        raw[int(rng.integers(len(raw)))] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(raw))
    return f"{kind} {path.name}"


def test_random_corruptions_of_a_cache_entry_never_crash_or_load_wrong(shop, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path))
    users = shop.user_index[:10]
    reference = fit_model("itemknn", {}, shop).score(users)
    fit_model("itemknn", {}, shop, cache=True)
    entry = next((tmp_path / "fit_model").iterdir())
    rng = np.random.default_rng(0)
    fits, crashes, wrong = 0, 0, 0
    real_fit = model_class("itemknn").fit

    def counting_fit(self, train):
        nonlocal fits
        fits += 1
        return real_fit(self, train)

    monkeypatch.setattr(model_class("itemknn"), "fit", counting_fit)
    for _ in range(100):
        _corrupt(entry, rng)
        before = fits
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = fit_model("itemknn", {}, shop, cache=True)
        except Exception:  # noqa: BLE001 - counting crashes is the point
            crashes += 1
            continue
        if not np.array_equal(model.score(users), reference):
            wrong += 1
        assert fits == before + 1  # every corruption was detected and recomputed
    assert (crashes, wrong) == (0, 0)


def test_random_corruptions_of_an_embedding_shard_never_crash_or_load_wrong(tmp_path):
    rng = np.random.default_rng(1)
    texts = [f"product {i}" for i in range(40)]
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    crashes, wrong = 0, 0
    for _ in range(100):
        folder = tmp_path / f"c{_}"
        EmbeddingCache(folder).put(texts, vectors)
        _corrupt(folder, rng)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found, missing = EmbeddingCache(folder).get(texts)
        except Exception:  # noqa: BLE001
            crashes += 1
            continue
        for i, v in enumerate(found):
            if v is not None and not np.array_equal(v, vectors[i]):
                wrong += 1
        assert missing == list(range(40))  # the whole shard was discarded
    assert (crashes, wrong) == (0, 0)


def test_a_truncated_shard_warns_once_and_is_re_encoded(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put(["a", "b"], np.eye(2, dtype=np.float32))
    shard = next(tmp_path.glob("*.npz"))
    shard.write_bytes(shard.read_bytes()[:50])
    with pytest.warns(UserWarning, match="discarded 1 damaged shard"):
        _, missing = EmbeddingCache(tmp_path).get(["a", "b"])
    assert missing == [0, 1] and not shard.exists()


def test_tree_arrays_predict_exactly_what_scikit_learn_predicts():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from xsell.models.trees import decision_function, tree_arrays

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 6))
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values take the learnt side
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) ** 2 + rng.normal(size=2000)) > 1
    model = HistGradientBoostingClassifier(max_iter=30, early_stopping=False,
                                           random_state=0).fit(X, y)
    test = rng.normal(size=(500, 6))
    test[rng.random(test.shape) < 0.05] = np.nan
    np.testing.assert_array_equal(decision_function(tree_arrays(model), test),
                                  model.decision_function(test))


@pytest.mark.parametrize("n_classes", [2, 5])
def test_department_transitions_predict_what_logistic_regression_predicts(n_classes):
    from sklearn.linear_model import LogisticRegression

    from xsell.cross_sell.transitions import _log_proba

    rng = np.random.default_rng(n_classes)
    X = (rng.random((300, 6)) < 0.4).astype(float)
    y = rng.integers(n_classes, size=300)
    model = LogisticRegression(max_iter=500).fit(X, y)
    np.testing.assert_array_equal(_log_proba(X, model.coef_, model.intercept_),
                                  model.predict_log_proba(X))


def test_a_folder_cannot_point_outside_itself(tmp_path):
    import hashlib
    import json

    outside = tmp_path / "outside.txt"
    outside.write_text("not mine")
    write_folder(tmp_path / "v", {"value": np.arange(3)})
    for name in (str(outside), "../outside.txt"):
        config = json.loads((tmp_path / "v" / "config.json").read_text())
        config["files"] = {name: hashlib.sha256(outside.read_bytes()).hexdigest()}
        text = json.dumps(config)
        (tmp_path / "v" / "config.json").write_text(text)
        (tmp_path / "v" / "config.sha256").write_text(hashlib.sha256(text.encode()).hexdigest())
        with pytest.raises(CheckpointError, match="missing"):
            read_folder(tmp_path / "v")
