"""Shared fixtures: tiny generic-format shops written by hand, and the real sample if present."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from locations import real_data_dir


@pytest.fixture
def items_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": ["a", "b", "c", "d", "e"],
        "title": ["Spaghetti", "Marinara Sauce", "Parmesan", "Baby Wipes", "Diapers Size 3"],
        "category": ["pantry > pasta", "pantry > sauces", "dairy > cheese",
                     "babies > wipes", "babies > diapers"],
        "price": [1.5, 3.0, 4.5, 2.0, 12.0],
    })


@pytest.fixture
def interactions_frame() -> pd.DataFrame:
    # Two users, baskets given by id, time by ISO timestamps.
    return pd.DataFrame({
        "user_id": ["u1"] * 6 + ["u2"] * 5,
        "item_id": ["a", "b", "a", "c", "a", "d", "e", "d", "e", "a", "b"],
        "basket_id": ["o1", "o1", "o2", "o2", "o3", "o3", "o4", "o4", "o5", "o6", "o6"],
        "timestamp": ["2024-01-01", "2024-01-01", "2024-01-05", "2024-01-05", "2024-02-01",
                      "2024-02-01", "2024-01-02", "2024-01-02", "2024-01-20", "2024-03-01",
                      "2024-03-01"],
        "quantity": [1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1],
    })


@pytest.fixture
def shop_dir(tmp_path, interactions_frame, items_frame) -> Path:
    interactions_frame.to_csv(tmp_path / "interactions.csv", index=False)
    items_frame.to_csv(tmp_path / "items.csv", index=False)
    return tmp_path


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty result cache for one test (fits, tables) that shares only the text
    embeddings with the session's cache: a sentence's embedding does not depend on the
    test, and encoding a catalogue again costs tens of seconds on a CPU."""
    from xsell.cache import cache_dir

    shared = cache_dir() / "embeddings"
    shared.mkdir(parents=True, exist_ok=True)
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "embeddings").symlink_to(shared, target_is_directory=True)
    monkeypatch.setenv("XSELL_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def instacart():
    from xsell.data.instacart import load_instacart

    path = real_data_dir()
    if path is None:
        pytest.skip("Instacart sample not found (set XSELL_DATA_DIR)")
    return load_instacart(path)


@pytest.fixture(scope="session")
def bookshop_dir(tmp_path_factory) -> Path:
    """A shop of another domain in the generic format: books, three-level categories, one
    item per order (no basket_id), unix-second timestamps; users with genre tastes."""
    import numpy as np

    rng = np.random.default_rng(7)
    genres = ["books > fiction > crime", "books > fiction > fantasy", "books > fiction > romance",
              "books > non-fiction > history", "books > non-fiction > science",
              "books > children > picture books", "media > audio > audiobooks",
              "media > film > documentaries"]
    items = pd.DataFrame({
        "item_id": [f"ISBN{i:05d}" for i in range(96)],
        "title": [f"{g.split(' > ')[-1].title()} title no. {i}" for i, g in
                  enumerate(np.repeat(genres, 12))],
        "category": np.repeat(genres, 12),
        "price": rng.uniform(5, 30, 96).round(2),
    })
    rows = []
    for u in range(150):
        likes = rng.choice(len(genres), size=2, replace=False)
        t = 1_700_000_000 + int(rng.integers(0, 86400 * 30))
        for _ in range(int(rng.integers(4, 12))):
            g = likes[0] if rng.random() < 0.7 else likes[1]
            item = g * 12 + int(rng.zipf(1.6)) % 12
            t += int(rng.integers(3600, 86400 * 20))
            rows.append((f"reader{u}", f"ISBN{item:05d}", t))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    folder = tmp_path_factory.mktemp("bookshop")
    inter.to_csv(folder / "interactions.csv", index=False)
    items.to_csv(folder / "items.csv", index=False)
    return folder


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A randomly initialised two-layer BERT with the real MiniLM tokenizer, saved to disk:
    loads in milliseconds, so unit tests exercise the encoder code without the real weights."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from xsell.text import DEFAULT_MODEL, resolve_model

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
