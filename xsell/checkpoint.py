"""Safe files for fitted models and cached results, verified before anything is read.

A saved object is a folder. ``config.json`` holds a tree of small values (parameters,
scalars, short lists) and names the files that carry the rest: arrays in ``arrays.npz``
(read with ``allow_pickle=False``) -- an array of :data:`MMAP_BYTES` or more in a ``.npy``
file of its own, memory-mapped read-only when read, so processes that load one folder
(the workers of ``xsell serve``) share a single copy in memory --, tables in parquet,
tensors in safetensors, and nested objects in sub-folders of the same layout. ``config.json`` lists the SHA-256 of every other
file, and ``config.sha256`` holds the SHA-256 of ``config.json`` itself, so one flipped
byte anywhere is caught before a value is decoded.

None of these formats can run code when read (there is no pickle anywhere), and classes
are looked up only among ``xsell``'s own saveable classes (:class:`Saveable`), so a
planted or edited folder is refused with a :class:`CheckpointError` that says which file
and why -- never executed, and never loaded into silently wrong values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

FORMAT = "xsell-folder/1"
CONFIG = "config.json"
CONFIG_SUM = "config.sha256"
ARRAYS = "arrays.npz"
TENSORS = "tensors.safetensors"
#: Arrays this large (bytes) get a ``.npy`` file of their own and are memory-mapped on read.
MMAP_BYTES = 8 * 2**20

_PACKAGE = Path(__file__).resolve().parent
_CLASSES: dict[str, type] = {}


class CheckpointError(ValueError):
    """A saved folder is missing, damaged, foreign, or does not match what is expected."""


class UnsupportedValue(TypeError):
    """A value has no safe file format here (e.g. an arbitrary Python object)."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------- saveable classes
def class_name(cls: type) -> str:
    """``"module:Class"``, the name a class is saved under."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _lookup_class(name: str) -> type:
    """A :class:`Saveable` class by saved name; only ``xsell``'s own modules are imported."""
    if name not in _CLASSES:
        module = name.partition(":")[0]
        if not re.fullmatch(r"xsell(\.[A-Za-z_][A-Za-z0-9_]*)+", module):
            raise CheckpointError(f"class {name!r} is not one of xsell's saveable classes")
        spec = importlib.util.find_spec(module)
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is None or not origin.is_relative_to(_PACKAGE):
            raise CheckpointError(f"class {name!r} is not one of xsell's saveable classes")
        importlib.import_module(module)
    if name not in _CLASSES:
        raise CheckpointError(f"class {name!r} is not one of xsell's saveable classes")
    return _CLASSES[name]


class Saveable:
    """Objects that save to, and load from, a verified folder (:func:`write_folder`).

    scikit-learn's conventions: hyperparameters are the constructor's arguments
    (:meth:`get_params`), fitted state the attributes whose names end in ``_``. What a
    subclass can rebuild from the training data is listed in ``_derived_state`` and
    rebuilt by ``_restore_state``; a subclass whose state is not plain values
    (tensors of a network, a typed record) overrides ``_fitted_state`` and
    ``_restore_state``.
    """

    #: Fitted attributes rebuilt from the dataset on load instead of being saved.
    _derived_state: frozenset[str] = frozenset({"dataset_"})

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _CLASSES[class_name(cls)] = cls

    def get_params(self) -> dict:
        """Hyperparameters: the constructor's arguments, read from the attributes of the
        same names (scikit-learn's ``get_params``)."""
        signature = inspect.signature(type(self).__init__).parameters.values()
        return {p.name: getattr(self, p.name) for p in signature
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def _fitted_state(self) -> dict:
        """Fitted attributes to save (names ending in ``_``, less the derived ones)."""
        return {k: v for k, v in vars(self).items()
                if k.endswith("_") and not k.startswith("_") and k not in self._derived_state}

    def _restore_state(self, state: dict, dataset) -> None:
        """Set saved state back (``dataset``: the data the object was fitted on)."""
        self.dataset_ = dataset
        for key, value in state.items():
            setattr(self, key, value)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the fitted object into ``folder`` (JSON + npz/parquet/safetensors).

        The folder is replaced as a whole, atomically; a folder that exists and is not
        an xsell folder is never overwritten.
        """
        data = getattr(self, "dataset_", None)
        return write_folder(folder, {
            "class": class_name(type(self)), "params": self.get_params(),
            "state": self._fitted_state(),
            "data": None if data is None else data_identity(data)})

    @classmethod
    def load(cls, folder: str | os.PathLike, dataset) -> Saveable:
        """Read an object saved with :meth:`save`, for the data it was fitted on.

        Raises
        ------
        CheckpointError
            If the folder is damaged, holds another class, or was fitted on other data.
        """
        obj = load_object(folder, dataset)
        if not isinstance(obj, cls):
            raise CheckpointError(f"{Path(folder) / CONFIG}: holds a "
                                  f"{type(obj).__name__}, not a {cls.__name__}")
        return obj


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def data_fingerprint(dataset) -> str:
    """Hash of a dataset's interactions and catalogue (content, not object identity).

    Computed once per dataset object: datasets are treated as immutable.
    """
    if dataset not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for frame in (dataset.interactions, dataset.items):
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
            digest.update(",".join(map(str, frame.columns)).encode())
        _FINGERPRINTS[dataset] = digest.hexdigest()[:16]
    return _FINGERPRINTS[dataset]


def data_identity(dataset) -> dict:
    """What a saved object records of its training data (checked on load)."""
    return {"fingerprint": data_fingerprint(dataset), "name": dataset.name,
            "n_users": int(len(dataset.user_index)), "n_items": int(len(dataset.item_index))}


def load_object(folder: str | os.PathLike, dataset, shared: dict | None = None) -> Saveable:
    """Read any :class:`Saveable` saved with its ``save`` (see :meth:`Saveable.load`;
    ``shared``: as in :func:`read_folder`)."""
    folder = Path(folder)
    content = read_folder(folder, dataset, shared)
    for field in ("class", "params", "state", "data"):
        if field not in content:
            raise CheckpointError(f"{folder / CONFIG}: no {field!r} (not a saved model)")
    cls = _lookup_class(content["class"])
    saved = content["data"]
    if saved is not None:
        if dataset is None:
            raise CheckpointError(f"{folder}: give the dataset the model was fitted on")
        mine = data_identity(dataset)
        if saved.get("fingerprint") != mine["fingerprint"]:
            raise CheckpointError(
                f"{folder}: fitted on other data ({saved.get('name')!r}: "
                f"{saved.get('n_users')} users, {saved.get('n_items')} items, fingerprint "
                f"{saved.get('fingerprint')}); this dataset is {mine['name']!r}: "
                f"{mine['n_users']} users, {mine['n_items']} items, fingerprint "
                f"{mine['fingerprint']}")
    try:
        obj = cls(**content["params"])
    except TypeError as err:
        raise CheckpointError(f"{folder / CONFIG}: parameters do not fit "
                              f"{cls.__name__} ({err})") from err
    try:
        obj._restore_state(content["state"], dataset)
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"{folder}: state does not fit {cls.__name__} ({err})") from err
    return obj


# ---------------------------------------------------------------------- the value codec
class _Writer:
    """Turns a value into JSON, putting arrays, tables, tensors and objects in files."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.arrays: dict[str, np.ndarray] = {}
        self.tensors: dict = {}
        self.files: list[str] = []
        self.n = 0

    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def _array(self, a: np.ndarray) -> dict:
        out: dict = {}
        if a.dtype.hasobject:
            flat = a.ravel().tolist()
            if not all(isinstance(v, str) for v in flat):
                raise UnsupportedValue("an object array that is not all strings")
            a = np.array(flat, dtype=str).reshape(a.shape)
            out["object"] = True
        key = self._name("a")
        if not out and a.nbytes >= MMAP_BYTES:
            name = f"{key}.npy"
            np.save(self.folder / name, np.ascontiguousarray(a), allow_pickle=False)
            self.files.append(name)
            return {"__ndarray__": key, "npy": name}
        self.arrays[key] = np.ascontiguousarray(a)
        return {"__ndarray__": key, **out}

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, np.generic):
            return value
        if isinstance(value, np.generic):
            return self.encode(value.item())
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v) for v in value]}
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: self.encode(v) for k, v in value.items()}
            return {"__dict__": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, np.ndarray):
            return self._array(value)
        if sp.issparse(value):
            m = value.tocsc() if value.format == "csc" else value.tocsr()
            return {"__sparse__": m.format, "matrix": isinstance(value, sp.spmatrix),
                    "shape": list(m.shape), "data": self._array(m.data),
                    "indices": self._array(m.indices), "indptr": self._array(m.indptr)}
        if isinstance(value, pd.DataFrame):
            return self._frame(value)
        if isinstance(value, pd.Series):
            return {"__series__": self._frame(value.to_frame("c")), "name": self.encode(value.name)}
        if isinstance(value, pd.MultiIndex):
            return {"__multiindex__": self.encode(list(value)), "names": list(value.names)}
        if isinstance(value, pd.Index):
            return {"__index__": self._array(value.to_numpy()), "name": self.encode(value.name),
                    "dtype": str(value.dtype)}
        if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
            key = self._name("t")
            self.tensors[key] = value.detach().cpu().contiguous().clone()
            return {"__tensor__": key}
        if isinstance(value, Saveable):
            sub = self._name("part")
            value.save(self.folder / sub)
            return {"__object__": sub}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            raise UnsupportedValue(f"dataclass {type(value).__name__} (save its fields)")
        raise UnsupportedValue(f"no safe file format for a {type(value).__module__}."
                               f"{type(value).__qualname__}")

    def _frame(self, frame: pd.DataFrame) -> dict:
        name = self._name("frame") + ".parquet"
        plain = frame.set_axis([f"c{i}" for i in range(frame.shape[1])], axis=1)
        plain.attrs = {}
        for column in plain.columns:
            if plain[column].dtype == object and not all(
                    v is None or isinstance(v, (str, int, float, bool, np.generic))
                    for v in plain[column]):
                raise UnsupportedValue(f"column {frame.columns[int(column[1:])]!r} holds "
                                       "containers or objects (parquet would retype them)")
        try:
            plain.to_parquet(self.folder / name, index=True)
            # Tables are small: read it back, so a column parquet would retype (lists,
            # mixed objects) is refused here rather than served changed later.
            pd.testing.assert_frame_equal(pd.read_parquet(self.folder / name), plain)
        except Exception as err:  # pyarrow's own error types, or a changed round trip
            raise UnsupportedValue(f"a table parquet cannot store exactly "
                                   f"({type(err).__name__}: {str(err)[:200]})") from err
        self.files.append(name)
        return {"__frame__": name, "columns": self.encode(list(frame.columns)),
                "column_names": self.encode(list(frame.columns.names)),
                "attrs": self.encode(dict(frame.attrs))}

    def finish(self) -> list[str]:
        if self.arrays:
            np.savez(self.folder / ARRAYS, **self.arrays)
            self.files.append(ARRAYS)
        if self.tensors:
            from safetensors.torch import save_file

            save_file(self.tensors, str(self.folder / TENSORS))
            self.files.append(TENSORS)
        return self.files


class _Reader:
    """Decodes what :class:`_Writer` wrote (files already verified)."""

    def __init__(self, folder: Path, dataset, shared: dict | None = None):
        self.folder = folder
        self.dataset = dataset
        self.shared = shared
        self._arrays = None
        self._tensors = None

    def _array(self, spec: dict) -> np.ndarray:
        if "npy" in spec:  # read-only and shared: whoever changes it must copy it first
            name = Path(spec["npy"])
            if name.is_absolute() or len(name.parts) != 1:
                raise CheckpointError(f"{self.folder / CONFIG}: array file {name} is not "
                                      "a file of the folder")
            return np.load(self.folder / name, mmap_mode="r", allow_pickle=False)
        if self._arrays is None:
            with np.load(self.folder / ARRAYS, allow_pickle=False) as npz:
                self._arrays = {k: npz[k] for k in npz.files}
        a = self._arrays[spec["__ndarray__"]]
        return a.astype(object) if spec.get("object") else a

    def decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "__tuple__" in value:
            return tuple(self.decode(v) for v in value["__tuple__"])
        if "__dict__" in value:
            return {_hashable(self.decode(k)): self.decode(v) for k, v in value["__dict__"]}
        if "__ndarray__" in value:
            return self._array(value)
        if "__sparse__" in value:
            fmt = {"csr": sp.csr_matrix, "csc": sp.csc_matrix} if value["matrix"] else \
                {"csr": sp.csr_array, "csc": sp.csc_array}
            parts = (self._array(value["data"]), self._array(value["indices"]),
                     self._array(value["indptr"]))
            return fmt[value["__sparse__"]](parts, shape=tuple(value["shape"]))
        if "__frame__" in value:
            frame = pd.read_parquet(self.folder / value["__frame__"])
            columns = [_hashable(c) for c in self.decode(value["columns"])]
            names = self.decode(value["column_names"])
            if columns and all(isinstance(c, tuple) for c in columns):
                frame.columns = pd.MultiIndex.from_tuples(columns, names=names)
            else:
                frame.columns = pd.Index(columns, dtype=object if not columns else None,
                                         name=names[0] if names else None)
            frame.attrs = self.decode(value["attrs"])
            return frame
        if "__series__" in value:
            return self.decode(value["__series__"]).iloc[:, 0].rename(self.decode(value["name"]))
        if "__multiindex__" in value:
            return pd.MultiIndex.from_tuples([_hashable(t) for t in
                                              self.decode(value["__multiindex__"])],
                                             names=value["names"])
        if "__index__" in value:
            return pd.Index(self._array(value["__index__"]), dtype=value["dtype"],
                            name=self.decode(value["name"]))
        if "__tensor__" in value:
            if self._tensors is None:
                from safetensors.torch import load_file

                self._tensors = load_file(str(self.folder / TENSORS))
            return self._tensors[value["__tensor__"]]
        if "__object__" in value:
            sub = self.folder / value["__object__"]
            if self.shared is None:
                return load_object(sub, self.dataset)
            # identical saved objects have identical config.json, hence config.sha256
            key = (sub / CONFIG_SUM).read_text().strip()
            if key not in self.shared:
                self.shared[key] = load_object(sub, self.dataset, self.shared)
            else:  # read before: its files are still checked, a damaged copy refused
                _verify_tree(sub)
            return self.shared[key]
        return {k: self.decode(v) for k, v in value.items()}


def _hashable(value):
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


# ---------------------------------------------------------------------- folders
def write_folder(folder: str | os.PathLike, content: dict) -> Path:
    """Write ``content`` (a dict of values, see the module docstring) as a verified folder.

    The folder is built beside its target and renamed into place, so a reader sees the
    old folder or the complete new one; on any error nothing is left behind. An existing
    target is replaced only if it is an xsell folder (or empty).

    Raises
    ------
    UnsupportedValue
        If a value has no safe format (nothing is written then).
    FileExistsError
        If ``folder`` exists and is not an xsell folder.
    """
    folder = Path(folder)
    if folder.exists() and not _replaceable(folder):
        raise FileExistsError(f"{folder}: exists and is not an xsell folder; not overwriting")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        writer = _Writer(tmp)
        tree = writer.encode(content)
        files = writer.finish()
        subfolders = [p.name for p in tmp.iterdir() if p.is_dir()]
        listed = {name: sha256_file(tmp / name) for name in files}
        listed.update({f"{s}/{CONFIG_SUM}": sha256_file(tmp / s / CONFIG_SUM)
                       for s in subfolders})
        text = json.dumps({"format": FORMAT, "files": listed, "content": tree}, indent=1)
        (tmp / CONFIG).write_text(text)
        (tmp / CONFIG_SUM).write_text(hashlib.sha256(text.encode()).hexdigest() + "\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old{os.getpid()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _replaceable(folder: Path) -> bool:
    return folder.is_dir() and ((folder / CONFIG_SUM).is_file() or not any(folder.iterdir()))


def read_folder(folder: str | os.PathLike, dataset=None, shared: dict | None = None) -> dict:
    """Verify every checksum of a folder written by :func:`write_folder`, then decode it.

    Parameters
    ----------
    folder : path-like
    dataset : Dataset, optional
        The training data of any model inside (models are rebuilt for it).
    shared : dict, optional
        Read identical saved objects once and share them: objects inside whose folders
        hold the same ``config.json`` (the same class, parameters, data and file hashes)
        come back as one object (a dict to fill; e.g. the components several hybrids of
        a serving bundle have in common). For objects that are only read, not changed.

    Raises
    ------
    CheckpointError
        Naming the file that is missing, damaged or foreign.
    """
    folder = Path(folder)
    config = _verified_config(folder)
    try:
        return _Reader(folder, dataset, shared).decode(config["content"])
    except CheckpointError:
        raise
    except Exception as err:  # a verified folder that still does not decode: refuse it
        raise CheckpointError(f"{folder}: cannot be decoded ({type(err).__name__}: {err})") \
            from err


def _verified_config(folder: Path) -> dict:
    """``folder``'s config, once every file it lists matches its hash."""
    config_path, sum_path = folder / CONFIG, folder / CONFIG_SUM
    for path in (config_path, sum_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (not an xsell folder?)")
    raw = config_path.read_bytes()
    expected = sum_path.read_bytes().decode("ascii", "replace").strip()
    if hashlib.sha256(raw).hexdigest() != expected:
        raise CheckpointError(f"{config_path}: contents do not match {CONFIG_SUM} "
                              "(corrupt or edited file)")
    try:
        config = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path}: not valid JSON ({err})") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise CheckpointError(f"{config_path}: format {found!r}, expected {FORMAT!r} "
                              "(an older or foreign file)")
    for name, digest in config.get("files", {}).items():
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.is_file():
            raise CheckpointError(f"{path}: missing")
        if sha256_file(path) != digest:
            raise CheckpointError(f"{path}: contents do not match the hash in {CONFIG} "
                                  "(corrupt or replaced file)")
    return config


def _verify_tree(folder: Path) -> None:
    """Check a saved folder and every folder inside it, decoding nothing."""
    config = _verified_config(folder)
    for name in config.get("files", {}):
        if Path(name).name == CONFIG_SUM and len(Path(name).parts) == 2:
            _verify_tree(folder / Path(name).parent)
