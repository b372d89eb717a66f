"""Top-k inner-product search over item vectors: exact (NumPy) and approximate (faiss).

The two-tower scores an item by ``v . s`` and the dense search by cosine similarity (an
inner product of unit vectors): both ask for the catalogue rows with the largest inner
product with a query vector. :class:`ExactIndex` answers with one matrix product per
block of queries and is the reference every approximate answer is measured against
(:func:`recall_at_k`). :class:`FaissIndex` answers from an index of the ``faiss-cpu``
library (the optional extra ``xsell[serve]``): ``"flat"`` (exact, faiss's kernels),
``"hnsw"`` (a navigable small-world graph) or ``"ivf"`` (k-means cells, a few probed per
query). :func:`build_index` chooses by catalogue size; ``benchmarks/bench_index.py``
measures the choice (build time, memory, latency, recall) from 50k to 5M vectors.

Both keep rows in insertion order: row ``i`` is the ``i``-th vector given to
``fit`` or ``add`` (a catalogue code), and ``-1`` pads a result row when the
index holds fewer than ``k`` vectors.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xsell.models.base import top_k

__all__ = ["EXACT_UP_TO", "ExactIndex", "FaissIndex", "GrowingRows", "build_index",
           "recall_at_k", "shared_index"]

#: Catalogues up to this many vectors are searched exactly by :func:`build_index`: a
#: matrix product over them takes about a millisecond per query on one core.
EXACT_UP_TO = 100_000
#: Scores the exact search holds at once (a block of queries x the catalogue): 128 MB.
BLOCK_SCORES = 2**25


def _matrix(vectors, name: str, dim: int | None = None) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must be a (rows, dim) matrix, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} have dimension {x.shape[1]}, the index holds {dim}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contain nan or inf")
    return np.ascontiguousarray(x)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, not {k!r}")
    return int(k)


def _padded(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Results widened to ``k`` columns: score ``-inf`` and row ``-1`` where none."""
    if rows.shape[1] >= k:
        return scores, rows
    pad = k - rows.shape[1]
    return (np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf),
            np.pad(rows, ((0, 0), (0, pad)), constant_values=-1))


class GrowingRows:
    """A float32 matrix that rows are appended to in amortised constant time.

    Appending to a NumPy array copies it whole; here the rows live in a buffer with
    spare room that doubles when full, so a served ``POST /items`` copies only the new row.

    Parameters
    ----------
    rows : numpy.ndarray
        The first rows, ``(n, dim)`` (``n`` may be 0).
    """

    def __init__(self, rows: np.ndarray):
        self._buffer = np.array(_matrix(rows, "vectors"))  # its own, writable copy
        self._n = len(self._buffer)

    @property
    def array(self) -> np.ndarray:
        """The rows appended so far, a view that the next :meth:`append` may replace."""
        return self._buffer[:self._n]

    def __len__(self) -> int:
        return self._n

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` more rows now (one copy), so the next appends copy none."""
        if self._n + rows > len(self._buffer):
            grown = np.empty((self._n + rows, self._buffer.shape[1]), dtype=np.float32)
            grown[:self._n] = self.array
            self._buffer = grown

    def append(self, rows: np.ndarray) -> None:
        """Append ``rows`` (already checked to be float32 of the right dimension)."""
        need = self._n + len(rows)
        if need > len(self._buffer):
            self.reserve(max(len(rows), self._n, 16))  # doubling: amortised constant time
        self._buffer[self._n:need] = rows
        self._n = need


class ExactIndex:
    """Exact top-k inner-product search: the reference.

    The indexed vectors are never copied or written: a memory-mapped, read-only array
    (as :func:`xsell.checkpoint.read_folder` returns large arrays) is searched where it
    lies, so server processes that map the same file share one copy in memory. Vectors
    added later live in a small buffer of this index's own.

    Ties are broken by row order (the lower row first), so a search is reproducible.
    """

    def fit(self, vectors) -> ExactIndex:
        """Index ``vectors`` (rows, dim), replacing anything indexed before."""
        self._base = _matrix(vectors, "vectors")
        self._added = GrowingRows(np.empty((0, self._base.shape[1]), dtype=np.float32))
        return self

    @property
    def vectors_(self) -> np.ndarray:
        """The indexed vectors, float32, one row per item (a copy when some were added)."""
        if not len(self._added):
            return self._base
        return np.vstack([self._base, self._added.array])

    def rows(self, codes: np.ndarray) -> np.ndarray:
        """The vectors of rows ``codes`` (a gather; no copy of the index)."""
        codes = np.asarray(codes)
        n = len(self._base)
        if not len(self._added) or (codes < n).all():
            return self._base[codes]
        out = np.empty((len(codes), self.dim), dtype=np.float32)
        base = codes < n
        out[base] = self._base[codes[base]]
        out[~base] = self._added.array[codes[~base] - n]
        return out

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` more vectors now, so that adding them copies nothing."""
        self._added.reserve(rows)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self._base.shape[1])

    def __len__(self) -> int:
        return len(self._base) + len(self._added)

    def add(self, vectors) -> np.ndarray:
        """Append ``vectors``; the rows they were given."""
        new = _matrix(vectors, "vectors", self.dim)
        start = len(self)
        self._added.append(new)
        return np.arange(start, start + len(new))

    def _scores(self, queries: np.ndarray) -> np.ndarray:
        scores = queries @ self._base.T
        if len(self._added):
            scores = np.hstack([scores, queries @ self._added.array.T])
        return scores

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows with the largest inner product with each query.

        Returns
        -------
        scores : numpy.ndarray
            ``(n_queries, k)`` float32 inner products, best first.
        rows : numpy.ndarray
            ``(n_queries, k)`` int64 rows of the index.
        """
        q, k = _matrix(queries, "queries", self.dim), _check_k(k)
        depth = min(k, len(self))
        scores = np.empty((len(q), depth), dtype=np.float32)
        rows = np.empty((len(q), depth), dtype=np.int64)
        step = max(1, BLOCK_SCORES // max(len(self), 1))
        for start in range(0, len(q), step):
            block = self._scores(q[start:start + step])
            top = top_k(block, depth)
            rows[start:start + len(block)] = top
            scores[start:start + len(block)] = np.take_along_axis(block, top, axis=1)
        return _padded(scores, rows, k)


class FaissIndex:
    """Approximate (or exact) top-k inner-product search with faiss.

    Parameters
    ----------
    kind : {"hnsw", "ivf", "flat"}
        ``"hnsw"``: a graph of ``m`` links per vector, searched with a beam of
        ``ef_search``; ``"ivf"``: ``nlist`` k-means cells, ``nprobe`` of them scanned per
        query; ``"flat"``: every vector scanned (exact).
    m, ef_construction, ef_search : int
        HNSW's links per vector and beam widths when building and searching (a wider
        search beam: higher recall, slower queries).
    nlist : int, optional
        IVF cells (default ``4 * sqrt(n)``, at most ``n // 39`` so k-means has 39
        training vectors per cell).
    nprobe : int
        IVF cells scanned per query.
    seed : int
        Seed of IVF's k-means.
    threads : int, optional
        faiss's OpenMP threads (default: faiss's own, every core).
    """

    def __init__(self, kind: str = "hnsw", m: int = 32, ef_construction: int = 200,
                 ef_search: int = 128, nlist: int | None = None, nprobe: int = 16,
                 seed: int = 0, threads: int | None = None):
        self.kind = kind
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.seed = seed
        self.threads = threads

    def _faiss(self):
        try:
            import faiss
        except ImportError as err:  # the optional extra
            raise ImportError("FaissIndex needs faiss-cpu: pip install 'xsell[serve]' "
                              "(or build_index(..., kind='exact'))") from err
        if self.threads is not None:
            faiss.omp_set_num_threads(int(self.threads))
        return faiss

    def fit(self, vectors) -> FaissIndex:
        """Build the index over ``vectors`` (rows, dim), replacing anything indexed before."""
        if self.kind not in ("hnsw", "ivf", "flat"):
            raise ValueError(f"kind must be 'hnsw', 'ivf' or 'flat', not {self.kind!r}")
        for name in ("m", "ef_construction", "ef_search", "nprobe"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        faiss = self._faiss()
        x = _matrix(vectors, "vectors")
        n, dim = x.shape
        if self.kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, self.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef_search
        else:
            nlist = self.nlist or int(4 * np.sqrt(n))
            nlist = max(1, min(nlist, n // 39))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            # k-means on a seeded sample: 64 vectors per cell place the centres well, and
            # faiss would otherwise take up to 256 per cell (minutes at millions).
            rng = np.random.default_rng(self.seed)
            sample = x if n <= 64 * nlist else x[np.sort(rng.choice(n, 64 * nlist,
                                                                    replace=False))]
            index.cp.seed = self.seed
            index.train(sample)
            index.nprobe = min(self.nprobe, nlist)
        index.add(x)
        self.index_ = index
        self._added = None  # vectors added to a memory-mapped index (see open)
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to ``path`` (a reader sees the old file or the whole new one)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self._faiss().write_index(self.index_, str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def open(cls, path: str | os.PathLike, **params) -> FaissIndex:
        """An index :meth:`save` wrote, memory-mapped read-only (IVF's vectors are read
        where they lie: processes that open one file share one copy in memory).

        faiss cannot add to a mapped index, so vectors added later are kept in a small
        exact buffer of this process's own and searched beside it. ``params``: the search
        settings (``nprobe``, ``ef_search``, ``threads``).
        """
        index = cls(**params)
        faiss = index._faiss()
        index.index_ = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        ivf = faiss.try_extract_index_ivf(index.index_)
        if ivf is not None:
            index.kind, ivf.nprobe = "ivf", min(index.nprobe, ivf.nlist)
        elif hasattr(index.index_, "hnsw"):
            index.kind, index.index_.hnsw.efSearch = "hnsw", index.ef_search
        else:
            index.kind = "flat"
        index._added = GrowingRows(np.empty((0, index.index_.d), dtype=np.float32))
        return index

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.index_.d)

    def __len__(self) -> int:
        return int(self.index_.ntotal) + (len(self._added) if self._added is not None else 0)

    def reserve(self, rows: int) -> None:
        """Room for ``rows`` more vectors in a mapped index's buffer (faiss grows its own)."""
        if self._added is not None:
            self._added.reserve(rows)

    def add(self, vectors) -> np.ndarray:
        """Append ``vectors`` (IVF places them in its trained cells; a mapped index keeps
        them in its exact buffer); the rows they were given."""
        new = _matrix(vectors, "vectors", self.dim)
        start = len(self)
        if self._added is not None:
            self._added.append(new)
        else:
            self.index_.add(new)
        return np.arange(start, start + len(new))

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`ExactIndex.search`, approximately (``-1`` rows where none found)."""
        q, k = _matrix(queries, "queries", self.dim), _check_k(k)
        scores, rows = self.index_.search(q, k)
        rows = rows.astype(np.int64)
        scores = np.where(rows >= 0, scores, -np.inf).astype(np.float32)
        if self._added is not None and len(self._added):  # and the buffer, exactly
            extra = q @ self._added.array.T
            scores = np.hstack([scores, extra])
            rows = np.hstack([rows, np.broadcast_to(
                np.arange(len(self._added)) + self.index_.ntotal, extra.shape)])
            best = top_k(scores, k)
            scores, rows = (np.take_along_axis(scores, best, axis=1),
                            np.take_along_axis(rows, best, axis=1))
        return scores, rows


def build_index(vectors, kind: str = "auto", **params) -> ExactIndex | FaissIndex:
    """An index over ``vectors``: exact up to :data:`EXACT_UP_TO` rows, else faiss IVF
    (HNSW answers as fast at the same recall, but its graph takes minutes to build per
    hundred thousand vectors on 2 cores: ``benchmarks/bench_index.py``).

    ``kind`` names one instead: ``"exact"`` (NumPy), or a :class:`FaissIndex` kind;
    ``params`` go to :class:`FaissIndex`.
    """
    n = len(vectors)
    if kind == "auto":
        kind = "exact" if n <= EXACT_UP_TO else "ivf"
    if kind == "exact":
        if params:
            raise ValueError(f"the exact index takes no parameters, got {sorted(params)}")
        return ExactIndex().fit(vectors)
    return FaissIndex(kind=kind, **params).fit(vectors)


def shared_index(vectors, path: str | os.PathLike, kind: str = "auto",
                 **params) -> ExactIndex | FaissIndex:
    """:func:`build_index`, for several processes on one machine: a faiss index is built
    once into ``path`` and memory-mapped by every process (:meth:`FaissIndex.open`).

    A file lock makes one process build while the others wait; ``path`` is kept with a
    fingerprint of the vectors and settings beside it (``.json``), so a later start on
    the same vectors maps it at once and one on other vectors builds it again. The exact
    index needs no file: it searches ``vectors`` where they lie (memory-mapped already
    when they come from a saved model).
    """
    n = len(vectors)
    if kind == "auto":
        kind = "exact" if n <= EXACT_UP_TO else "ivf"
    if kind == "exact":
        return build_index(vectors, kind="exact", **params)
    import fcntl
    import hashlib
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = _matrix(vectors, "vectors")
    digest = hashlib.sha256(x.data).hexdigest()
    settings = {"kind": kind, "vectors": digest, "shape": list(x.shape),
                **{k: v for k, v in sorted(params.items()) if k != "threads"}}
    stamp = path.with_suffix(".json")
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process builds; the others then map it
        try:
            current = json.loads(stamp.read_text()) if stamp.is_file() else None
        except ValueError:
            current = None
        if current != settings or not path.is_file():
            FaissIndex(kind=kind, **params).fit(x).save(path)
            stamp.write_text(json.dumps(settings))
    search = {k: v for k, v in params.items() if k in ("nprobe", "ef_search", "threads")}
    return FaissIndex.open(path, **search)


def recall_at_k(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each exact top-k row list found in the approximate one (order ignored).

    Both are ``(n_queries, k)`` row arrays; ``-1`` (none) never counts as found.
    """
    approximate, exact = np.asarray(approximate), np.asarray(exact)
    if approximate.shape != exact.shape:
        raise ValueError(f"result shapes differ: {approximate.shape} vs {exact.shape}")
    if exact.size == 0:
        return float("nan")
    found = [len(set(a[a >= 0]) & set(e[e >= 0])) / max(int((e >= 0).sum()), 1)
             for a, e in zip(approximate, exact, strict=True)]
    return float(np.mean(found))
