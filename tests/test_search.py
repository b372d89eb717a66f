"""Personalised product search: query normalisation, retrieval, the protocol, the ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xsell.apps.query import EmptyQueryError, QueryNormalizer, fold_plural
from xsell.apps.retrieval import DenseIndex, LexicalIndex, search_text
from xsell.apps.search import ProductSearch, harmonic_mean, standardise
from xsell.apps.search_protocol import (
    add_typo,
    build_queries,
    per_query_metrics,
    query_table,
    search_queries,
    title_fragment,
)
from xsell.data.prepare import prepare
from xsell.data.synthetic import make_synthetic_shop


@pytest.fixture(scope="module")
def shop():
    data = prepare(make_synthetic_shop(n_users=150, seed=1))
    return data


@pytest.fixture(scope="module")
def engine(shop, tiny_lm_dir):
    train = shop.split.train_dataset(include_validation=True)
    return ProductSearch(signal_models={"buy-again": {}, "cooccurrence": {}},
                         encoder=str(tiny_lm_dir), max_queries=400, cache=False,
                         progress=False).fit(train)


# ---------------------------------------------------------------------- queries
def test_plurals_fold_to_one_stem():
    assert [fold_plural(w) for w in ["berries", "tomatoes", "boxes", "apples", "glass",
                                     "hummus", "eggs"]] == [
        "berry", "tomato", "box", "apple", "glass", "hummus", "egg"]


def test_normaliser_corrects_typos_against_the_catalogue():
    norm = QueryNormalizer.from_documents(["Strawberry Jam", "Greek Yogurt", "Whole Milk"])
    assert norm.query_tokens("Strawbery Jams") == ["strawberry", "jam"]
    assert norm.query_tokens("the GREEK yoghurt") == ["greek", "yogurt"]  # one edit away
    assert norm.query_tokens("yougurt") == ["yogurt"]                     # swapped letters
    assert norm.query_tokens("milk") == ["milk"]


@pytest.mark.parametrize("query", ["", "   ", "the of and", "I want to buy something"])
def test_empty_or_stop_word_queries_are_clear_errors(query):
    with pytest.raises(EmptyQueryError, match="search query"):
        QueryNormalizer().query_tokens(query)


def test_lexical_and_dense_retrieval_find_the_matching_product():
    texts = ["Greek Yogurt dairy", "Whole Milk dairy", "Pasta Sauce pantry"]
    lexical = LexicalIndex(texts)
    scores = lexical.scores(lexical.normalizer.query_tokens("greek yogurts"))
    assert scores.argmax() == 0 and scores[2] == 0
    assert lexical.matched(["greek", "milk"], 0) == ["greek"]
    dense = DenseIndex(np.eye(3) * 5)
    assert np.allclose(dense.scores(np.array([0, 2.0, 0])), [0, 1, 0])
    scores, rows = dense.search(np.array([[0, 2.0, 1.0]]), 2)
    assert rows.tolist() == [[1, 2]] and np.allclose(scores, [[2 / 5**0.5, 1 / 5**0.5]])
    assert np.allclose(dense.pair_scores(np.array([[0, 2.0, 0], [3.0, 0, 0]]),
                                         np.array([0, 1, 1]), np.array([1, 0, 1])), [1, 1, 0])
    assert dense.add(np.array([[0, 1.0, 1.0]])).tolist() == [3] and len(dense) == 4
    assert dense.search(np.array([0, 1.0, 1.0]), 1)[1].tolist() == [[3]]


def test_search_text_holds_title_and_every_category_level(shop):
    text = search_text(shop.data)
    first = shop.data.items.iloc[0]
    assert first["title"] in text.iloc[0] and first["category"].split(" > ")[-1] in text.iloc[0]


# ---------------------------------------------------------------------- protocol
def test_category_queries_are_leaf_names_and_new_is_relative_to_history(shop):
    q = search_queries(shop.split, "test", kind="category")
    leaf = shop.data.items.set_index("item_id")["category"].str.split(" > ").str[-1]
    assert (q["query"].to_numpy() == leaf.reindex(q["item_id"]).to_numpy()).all()
    history = pd.concat([shop.split.train, shop.split.validation])
    seen = set(zip(history["user_id"], history["item_id"], strict=True))
    expected_new = [(u, i) not in seen for u, i in zip(q["user_id"], q["item_id"], strict=True)]
    assert q["new"].tolist() == expected_new
    # one query per (shopper, text): several targets share it
    assert q.groupby("query_id")[["user_id", "query"]].nunique().max().max() == 1


def test_title_fragments_are_seeded_and_short():
    rng_a, rng_b = np.random.default_rng(4), np.random.default_rng(4)
    a = [title_fragment("Organic Honeycrisp Apples", rng_a) for _ in range(20)]
    b = [title_fragment("Organic Honeycrisp Apples", rng_b) for _ in range(20)]
    assert a == b and all(1 <= len(f.split()) <= 2 for f in a)
    typo = add_typo("strawberry", np.random.default_rng(0))
    assert typo != "strawberry" and typo[0] == "s" and abs(len(typo) - 10) <= 1


def test_per_query_metrics_by_hand():
    queries = pd.DataFrame({"query_id": [0, 0, 1], "user_id": ["u", "u", "v"],
                            "query": ["milk", "milk", "jam"], "item_id": ["a", "b", "c"],
                            "new": [False, True, True]})
    ranked = [np.array(["b", "x", "a"]), np.array(["x", "y"])]
    m = per_query_metrics(ranked, queries, k=2).set_index(["variant", "query_id"])
    # query 0, all: b at rank 1 (a at 3, beyond k=2) -> dcg 1, idcg 1 + 1/log2(3)
    assert m.loc[("all", 0), "ndcg"] == pytest.approx(1 / (1 + 1 / np.log2(3)))
    assert m.loc[("all", 0), "recall"] == pytest.approx(0.5)
    assert m.loc[("all", 0), "mrr"] == pytest.approx(1.0)
    assert m.loc[("new", 0), "ndcg"] == pytest.approx(1.0)   # only b is new
    assert m.loc[("all", 1), "ndcg"] == 0 and m.loc[("all", 1), "mrr"] == 0


def test_build_queries_skips_titles_of_function_words_only(shop):
    rows = pd.DataFrame({"user_id": ["U1"], "item_id": [shop.data.items["item_id"].iloc[0]]})
    q = build_queries(rows, shop.data, rows.iloc[:0], kind="title", seed=0)
    assert len(q) == 1 and q["new"].all()
    with pytest.raises(ValueError, match="query kind"):
        build_queries(rows, shop.data, rows, kind="brand")


# ---------------------------------------------------------------------- ranking
def test_standardise_over_a_mask():
    values = np.array([[1.0], [3.0], [5.0], [7.0]])
    row = np.array([0, 0, 1, 1])
    z = standardise(values, row, 2)
    assert np.allclose(z.ravel(), [-1, 1, -1, 1])
    masked = standardise(values, row, 2, mask=np.array([True, True, True, False]))
    assert np.allclose(masked.ravel(), [-1, 1, 0, 0])
    assert harmonic_mean(2.0, 1.0) == pytest.approx(4 / 3) and harmonic_mean(0, 1) == 0


def test_weights_are_learnt_and_reported(engine):
    for system in ("fusion", "fusion-popularity", "personalized"):
        assert sum(engine.weights_[system].values()) == pytest.approx(1, abs=1e-3)
    assert "new:popularity" in engine.features_ and "buy-again" in engine.weights_[
        "personalized"]
    assert engine.validation_["queries"]["queries"] <= 400
    assert set(engine.validation_["personalized"]) == {"category", "title"}


def test_search_explains_and_personalises(engine, shop):
    data = engine.dataset_
    inter = data.interactions
    user = inter["user_id"].value_counts().index[0]
    favourite = inter[inter["user_id"] == user]["item_id"].value_counts().index[0]
    leaf = data.items.set_index("item_id").loc[favourite, "category"].split(" > ")[-1]
    table = engine.search(leaf, user=user, k=5)
    assert len(table) == 5 and list(table.columns[:3]) == ["item_id", "title", "department"]
    assert "price" in table and table.attrs["note"] is None
    bought = inter[inter["user_id"] == user]["item_id"].value_counts()
    for item, why in zip(table["item_id"], table["why"], strict=True):
        if item in bought.index:
            assert f"you buy this ({bought[item]}x)" in why
    assert favourite in table["item_id"].tolist()  # their most-bought product, in its aisle
    anonymous = engine.search(leaf, k=5)
    assert "not personalised" in anonymous.attrs["note"]
    others = [u for u in inter["user_id"].unique() if u != user]
    lists = {tuple(engine.search(leaf, user=u, k=5)["item_id"]) for u in others[:20]}
    assert len(lists) > 1  # different shoppers, different rankings
    with pytest.raises(KeyError, match="unknown user 'nobody'"):
        engine.search(leaf, user="nobody")
    with pytest.raises(EmptyQueryError):
        engine.search("the", user=user)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        engine.search(leaf, k=0)


def test_rank_systems_equals_rank_one_by_one(engine, shop):
    q = query_table(search_queries(shop.split, "test", kind="category")).iloc[:30]
    texts, users = q["query"].tolist(), q["user_id"].tolist()
    together = engine.rank_systems(texts, users, depth=20)
    for system in ("bm25", "personalized"):
        alone = engine.rank(texts, users, system=system, depth=20)
        assert all((a == b).all() for a, b in zip(alone, together[system], strict=True))
    with pytest.raises(ValueError, match="system must be one of"):
        engine.rank(texts, users, system="magic")


def test_dense_retrieval_through_an_approximate_index_finds_the_exact_lists(engine, shop):
    pytest.importorskip("faiss")
    import copy

    q = query_table(search_queries(shop.split, "test", kind="title")).iloc[:60]
    texts, users = q["query"].tolist(), q["user_id"].tolist()
    exact = engine.rank_systems(texts, users, systems=("dense", "personalized"), depth=10)
    graph = copy.copy(engine)
    graph.dense_ = DenseIndex(engine.dense_.vectors, kind="hnsw")
    assert type(graph.dense_.index).__name__ == "FaissIndex"
    approx = graph.rank_systems(texts, users, systems=("dense", "personalized"), depth=10)
    found = {system: np.mean([len(set(a) & set(e)) / len(e)
                              for a, e in zip(approx[system], exact[system], strict=True)])
             for system in ("dense", "personalized")}
    assert found["dense"] >= 0.99, found
    # a pool that differs in a few items moves the features standardised over it
    assert found["personalized"] >= 0.9, found
    # deeper than the dense pool: the dense system asks the index for more
    deep = engine.rank(texts[:3], users[:3], system="dense", depth=engine.dense_pool + 5)
    assert all(len(r) == min(engine.dense_pool + 5, len(engine.items_)) for r in deep)


def test_a_shared_dense_index_is_memory_mapped_and_ranks_as_a_private_one(engine, tmp_path):
    pytest.importorskip("faiss")
    from pathlib import Path

    vectors = engine.dense_.vectors
    shared = DenseIndex(vectors, kind="ivf", index_file=tmp_path / "dense.faiss", nprobe=4)
    private = DenseIndex(vectors, kind="ivf", nprobe=4)
    assert str(tmp_path / "dense.faiss") in Path("/proc/self/maps").read_text()
    q = vectors[:20] + 0.01
    np.testing.assert_array_equal(shared.search(q, 10)[1], private.search(q, 10)[1])
    rows = np.arange(20)
    np.testing.assert_allclose(shared.pair_scores(q, rows, rows),
                               engine.dense_.pair_scores(q, rows, rows), rtol=1e-6)
    new = vectors[:1] * -1
    assert shared.add(new).tolist() == [len(vectors)]
    assert shared.search(new, 1)[1].tolist() == [[len(vectors)]]
    assert np.allclose(shared.pair_scores(new, np.array([0]), np.array([len(vectors)])), 1.0)


def test_products_added_after_the_fit_are_found_at_once(engine, shop):
    import copy

    from xsell.text import item_texts

    live = copy.deepcopy(engine)
    catalogue = shop.data.items
    twin = catalogue.iloc[[0]].assign(item_id="NEW-TWIN")  # an existing product's text
    new = pd.DataFrame({"item_id": ["NEW-1"], "title": ["Zorbly Quinoa Crunch"],
                        "category": [catalogue["category"].iloc[3]]})
    rows = pd.concat([twin, new], ignore_index=True)
    vectors = live.text_encoder_.encode(item_texts(live.dataset_, rows).tolist())
    live.add_items(rows, vectors)
    assert len(live.items_) == len(engine.items_) + 2
    # BM25 of an added copy is the original's, by the statistics the index was built with
    tokens = live._tokens(catalogue["title"].iloc[0])
    scores = live.lexical_.scores(tokens)
    assert scores[-2] == pytest.approx(scores[0], rel=1e-5) and scores[0] > 0
    # its words are found, a typo of them corrected to them, and it ranks first
    user = shop.split.train["user_id"].iloc[0]
    for query in ("zorbly crunch", "zorbli"):
        found = live.search(query, user=user, k=5)
        assert found["item_id"].iloc[0] == "NEW-1", found
        assert "text match: zorbly" in found["why"].iloc[0]
    assert live.rank(["zorbly"], system="dense", depth=len(live.items_))[0].tolist().count(
        "NEW-1") == 1
    # the fitted engine is untouched; an id already in the catalogue is refused
    assert len(engine.items_) == len(engine.dense_) == len(engine.lexical_)
    with pytest.raises(ValueError, match="already in the catalogue"):
        live.add_items(new, vectors[1:])


def test_buy_again_is_required():
    with pytest.raises(ValueError, match="must include 'buy-again'"):
        ProductSearch(signal_models={"cooccurrence": {}}, cache=False).fit(
            make_synthetic_shop(n_users=20, seed=0))


@pytest.mark.parametrize("setting", ["lexical_pool", "dense_pool", "max_queries"])
def test_a_bad_pool_size_is_refused_by_its_name(setting):
    with pytest.raises(ValueError, match=f"{setting} must be a positive integer, not 0"):
        ProductSearch(**{setting: 0}, cache=False).fit(make_synthetic_shop(n_users=20, seed=0))


def test_evaluate_search_scores_once_and_reads_back_the_same(tmp_path, monkeypatch):
    from locations import REPO

    from xsell.apps.search import evaluate_search
    from xsell.data.loaders import load_dataset

    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path / "cache"))
    split = prepare(load_dataset(REPO / "data" / "example")).split
    first = evaluate_search(split, n_boot=20, progress=False)
    again = evaluate_search(split, n_boot=20, progress=False)
    pd.testing.assert_frame_equal(first.summary, again.summary)
    assert set(first.per_query) == {(k, s) for k in ("category", "title") for s in (
        "bm25", "dense", "fusion", "fusion-popularity", "personalized")}
    for key, table in first.per_query.items():
        pd.testing.assert_frame_equal(table, again.per_query[key])
    gains = again.gains()
    assert list(gains.columns) == ["kind", "variant", "personalized", "best_peer", "peer",
                                   "ratio"]
    assert (gains["ratio"] > 0).all()
    shown = again.table()
    assert shown.shape == (5, 4) and "[" in shown.iloc[0, 0]
