"""The text side: product text, model resolution, the encoder and its on-disk cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xsell.data.dataset import Dataset
from xsell.text import (
    DEFAULT_MODEL,
    EmbeddingCache,
    TextEncoder,
    history_text,
    item_texts,
    mean_pool,
    resolve_model,
)


def test_item_texts_join_title_category_and_price_bucket(interactions_frame, items_frame):
    ds = Dataset.from_frames(interactions_frame, items_frame)
    text = item_texts(ds)
    assert list(text.index) == list(ds.item_index)
    assert text["a"] == "Spaghetti | pantry > pasta | budget"
    assert text["e"].endswith("| premium")


def test_item_texts_without_optional_columns(interactions_frame, items_frame):
    ds = Dataset.from_frames(interactions_frame, items_frame[["item_id", "title"]])
    assert item_texts(ds)["b"] == "Marinara Sauce"


def test_history_text_is_readable():
    assert history_text(["milk", "eggs"]) == "recently bought: milk, eggs"


def test_default_model_resolves_to_the_offline_copy():
    path = resolve_model(DEFAULT_MODEL)
    assert (__import__("pathlib").Path(path) / "config.json").is_file()


def test_mean_pool_ignores_padding():
    import torch

    hidden = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(mean_pool(hidden, mask, normalize=False), torch.tensor([[2.0, 0.0]]))
    assert torch.allclose(mean_pool(hidden, mask).norm(dim=-1), torch.ones(1))


def test_encoder_is_order_independent_and_cached(tiny_lm_dir, tmp_path, monkeypatch):
    texts = ["organic bananas", "whole milk, 1 gallon", "a much longer product title " * 5, "x"]
    enc = TextEncoder(str(tiny_lm_dir), cache=tmp_path, batch_size=2, progress=False)
    first = enc.encode(texts)
    assert first.shape == (4, 32) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    # Length-sorted batching must not change any vector: compare with one text at a time.
    alone = TextEncoder(str(tiny_lm_dir), cache=False, batch_size=1, progress=False)
    assert np.allclose(first, alone.encode(texts), atol=1e-5)
    # A second encoder over the same folder encodes nothing.
    again = TextEncoder(str(tiny_lm_dir), cache=tmp_path, progress=False)
    monkeypatch.setattr(again, "_encode_uncached",
                        lambda t: pytest.fail(f"re-encoded {len(t)} cached texts"))
    assert np.array_equal(again.encode(texts[::-1]), first[::-1])


def test_random_encoder_differs_and_is_cached_separately(tiny_lm_dir, tmp_path):
    pre = TextEncoder(str(tiny_lm_dir), cache=tmp_path, progress=False)
    rnd = TextEncoder(str(tiny_lm_dir), pretrained=False, seed=1, cache=tmp_path, progress=False)
    assert pre.model_id != rnd.model_id
    assert not np.allclose(pre.encode(["milk"]), rnd.encode(["milk"]))


def test_damaged_cache_shard_is_recomputed(tiny_lm_dir, tmp_path):
    enc = TextEncoder(str(tiny_lm_dir), cache=tmp_path, progress=False)
    ref = enc.encode(["milk", "eggs"])
    shard = next(enc.cache.folder.glob("*.npz"))
    shard.write_bytes(b"not a numpy file")
    fresh = TextEncoder(str(tiny_lm_dir), cache=tmp_path, progress=False)
    with pytest.warns(UserWarning, match="damaged shard"):
        again = fresh.encode(["milk", "eggs"])
    assert np.allclose(again, ref, atol=1e-6)


def test_embedding_cache_roundtrip(tmp_path):
    cache = EmbeddingCache(tmp_path / "m")
    cache.put(["a", "b"], np.eye(2, dtype=np.float32))
    found, missing = EmbeddingCache(tmp_path / "m").get(["b", "c"])
    assert missing == [1] and np.array_equal(found[0], [0, 1])


def test_embedding_cache_reload_reads_another_writers_shards(tmp_path):
    reader, writer = EmbeddingCache(tmp_path / "m"), EmbeddingCache(tmp_path / "m")
    assert reader.get(["a"])[1] == [0]
    writer.put(["a"], np.ones((1, 3), dtype=np.float32))
    assert reader.get(["a"])[1] == [0]  # what it read before
    reader.reload()
    found, missing = reader.get(["a"])
    assert missing == [] and np.array_equal(found[0], [1, 1, 1])


def test_real_minilm_matches_sentence_transformers_reference():
    """The real weights: similar products are closer than unrelated ones, and our mean pooling
    reproduces sentence-transformers' all-MiniLM-L6-v2 embedding of a fixed text."""
    enc = TextEncoder(cache=False, progress=False)
    e = enc.encode(["organic whole milk", "2% reduced fat milk", "dog food chicken recipe"])
    assert e.shape == (3, 384)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(resolve_model(DEFAULT_MODEL), device="cpu")
    ref = st.encode(["organic whole milk"], normalize_embeddings=True)
    assert np.allclose(e[0], ref[0], atol=1e-5)


def test_item_texts_of_real_catalogue(instacart):
    text = item_texts(instacart)
    assert len(text) == instacart.n_items
    assert text.str.contains(" > ").mean() > 0.99
    assert isinstance(text, pd.Series)


def test_a_warm_cache_encodes_without_loading_the_model(tiny_lm_dir, tmp_path, monkeypatch):
    import xsell.text as T

    texts = ["organic bananas", "whole milk"]
    first = TextEncoder(str(tiny_lm_dir), cache=tmp_path, progress=False).encode(texts)

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded although every text was cached")

    monkeypatch.setattr(T, "load_language_model", refuse)
    again = TextEncoder(str(tiny_lm_dir), cache=tmp_path, progress=False).encode(texts)
    assert np.array_equal(first, again)
