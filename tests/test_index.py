"""Top-k inner-product search: the exact reference and faiss's indexes (xsell.index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xsell.index import ExactIndex, FaissIndex, build_index, recall_at_k


def _clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Unit vectors around 50 fixed centres, like items of a catalogue's categories."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(50, dim))
    x = centres[rng.integers(50, size=n)] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_index_is_a_full_sort():
    x, q = _clustered(700), _clustered(300, seed=1)
    scores, rows = ExactIndex().fit(x).search(q, 10)
    full = q @ x.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-6)
    assert rows.dtype == np.int64 and scores.dtype == np.float32


def test_exact_index_ties_go_to_the_lower_row_and_pads_short_results():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    scores, rows = ExactIndex().fit(x).search([1.0, 0.0], 5)
    assert rows.tolist() == [[0, 2, 1, -1, -1]]
    assert scores[0, :3].tolist() == [1.0, 1.0, 0.0] and np.isneginf(scores[0, 3:]).all()


@pytest.mark.parametrize("kind", ["exact", "flat", "hnsw", "ivf"])
def test_added_vectors_are_found_at_their_new_rows(kind):
    if kind != "exact":
        pytest.importorskip("faiss")
    x = _clustered(4000)
    index = build_index(x, kind=kind)
    new = _clustered(3, seed=7)
    assert index.add(new).tolist() == [4000, 4001, 4002] and len(index) == 4003
    _, rows = index.search(new, 1)
    assert rows[:, 0].tolist() == [4000, 4001, 4002]  # each is its own nearest


def test_exact_index_searches_a_memory_mapped_table_in_place(tmp_path):
    x = _clustered(1000)
    np.save(tmp_path / "table.npy", x)
    table = np.load(tmp_path / "table.npy", mmap_mode="r")
    index = ExactIndex().fit(table)
    assert np.shares_memory(index.vectors_, table)  # searched where it lies, not copied
    index.reserve(8)
    new = _clustered(5, seed=3)
    assert index.add(new).tolist() == list(range(1000, 1005))
    both = np.vstack([x, new])
    q = _clustered(20, seed=4)
    _, rows = index.search(q, 10)
    np.testing.assert_array_equal(rows, np.argsort(-(q @ both.T), axis=1, kind="stable")[:, :10])
    np.testing.assert_array_equal(index.rows(np.array([3, 1002, 999])), both[[3, 1002, 999]])
    assert not table.flags.writeable and (np.load(tmp_path / "table.npy") == x).all()


def test_a_shared_faiss_index_is_built_once_and_memory_mapped(tmp_path):
    pytest.importorskip("faiss")
    from xsell.index import shared_index

    x, q = _clustered(8000), _clustered(50, seed=1)
    path = tmp_path / "items.faiss"
    first = shared_index(x, path, kind="ivf", nprobe=8, threads=1)
    built = path.stat().st_mtime_ns
    again = shared_index(x, path, kind="ivf", nprobe=8, threads=1)
    assert path.stat().st_mtime_ns == built  # the second process maps the first's file
    maps = Path("/proc/self/maps").read_text()
    assert str(path) in maps  # read where it lies, not copied in
    reference = FaissIndex(kind="ivf", nprobe=8, threads=1).fit(x)
    np.testing.assert_array_equal(again.search(q, 10)[1], reference.search(q, 10)[1])
    # added vectors go to the process's own exact buffer, found at their new rows
    new = _clustered(3, seed=7)
    assert first.add(new).tolist() == [8000, 8001, 8002] and len(first) == 8003
    assert first.search(new, 1)[1][:, 0].tolist() == [8000, 8001, 8002]
    assert len(again) == 8000  # the other process's index is untouched
    shared_index(x[:7000], path, kind="ivf", nprobe=8, threads=1)  # other vectors: rebuilt
    assert path.stat().st_mtime_ns != built
    assert type(shared_index(x, path, kind="exact")).__name__ == "ExactIndex"


@pytest.mark.parametrize("kind, floor", [("flat", 1.0), ("hnsw", 0.99), ("ivf", 0.95)])
def test_faiss_recall_against_the_exact_reference(kind, floor):
    pytest.importorskip("faiss")
    x, q = _clustered(20_000), _clustered(500, seed=1)
    _, exact = ExactIndex().fit(x).search(q, 10)
    _, approximate = FaissIndex(kind=kind, threads=1).fit(x).search(q, 10)
    assert recall_at_k(approximate, exact) >= floor


def test_recall_at_k_counts_the_shared_rows():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert recall_at_k(exact, exact) == 1.0
    assert recall_at_k(np.array([[4, 3, 9, -1], [-1, -1, -1, -1]]), exact) == 0.25
    with pytest.raises(ValueError, match="shapes differ"):
        recall_at_k(exact[:, :2], exact)


def test_bad_input_is_named():
    index = ExactIndex().fit(_clustered(10))
    with pytest.raises(ValueError, match="dimension 3, the index holds 32"):
        index.search(np.ones((1, 3)), 5)
    with pytest.raises(ValueError, match="k must be a positive integer, not 0"):
        index.search(_clustered(1), 0)
    with pytest.raises(ValueError, match="nan or inf"):
        ExactIndex().fit(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="kind must be"):
        FaissIndex(kind="lsh").fit(_clustered(10))
    with pytest.raises(ValueError, match="takes no parameters"):
        build_index(_clustered(10), kind="exact", m=8)
