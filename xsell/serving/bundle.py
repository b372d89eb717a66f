"""A model bundle: everything ``xsell serve`` needs, fitted once, loaded in seconds.

``xsell fit --out DIR`` writes one folder::

    DIR/bundle.json    format, xsell version, date, the data's and catalogue's fingerprints
    DIR/data/          the cleaned training data the models were fitted on
    DIR/models/        the hybrid of each objective, the basket completer, the explainer,
                       the product search and the customer-service assistant

``data/`` and ``models/`` are verified folders of :mod:`xsell.checkpoint` (JSON + parquet
+ npz + safetensors, every file's SHA-256 checked before it is decoded, no pickle), and
every model inside records the fingerprint of the data it was fitted on, so a model
folder copied in from another bundle is refused. The bundle is built beside its target
and renamed into place: a reader sees the old bundle or the complete new one.

The hybrids share their components (and the search its behaviour models): each is
written inside every model that holds it, so that every model folder stands alone, and
files of identical contents are then hard-linked -- on Instacart 668 MiB on disk instead
of 2,043. On load, identical model folders are read once and shared
(:func:`xsell.checkpoint.read_folder`'s ``shared``).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from xsell import __version__
from xsell.apps.assistant import ServiceAssistant
from xsell.apps.search import ProductSearch
from xsell.checkpoint import (
    CheckpointError,
    data_fingerprint,
    read_folder,
    sha256_file,
    write_folder,
)
from xsell.cross_sell.completion import BasketCompleter
from xsell.cross_sell.explain import Explainer
from xsell.data.dataset import Dataset
from xsell.data.support import SupportMessages, load_support_messages
from xsell.models.fitting import fit_model
from xsell.models.hybrid import OBJECTIVES, Hybrid

__all__ = ["BUNDLE_FORMAT", "Bundle", "BundleError", "bundle_size", "catalogue_fingerprint",
           "check_bundle_target", "fit_bundle", "load_bundle", "read_manifest", "write_bundle"]

BUNDLE_FORMAT = "xsell-bundle/2"
MANIFEST = "bundle.json"


class BundleError(ValueError):
    """A bundle is missing, damaged, of another format, or made for another catalogue."""


def catalogue_fingerprint(dataset: Dataset) -> str:
    """Hash of the catalogue alone (item ids, texts, categories): what a bundle serves."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(dataset.items, index=False).to_numpy().tobytes())
    digest.update(",".join(map(str, dataset.items.columns)).encode())
    return digest.hexdigest()[:16]


@dataclass
class Bundle:
    """A loaded (or freshly fitted) bundle.

    Attributes
    ----------
    data : Dataset
        The cleaned training data.
    hybrids : dict
        ``{objective: fitted hybrid}`` (:class:`~xsell.models.hybrid.Hybrid`).
    completer : xsell.cross_sell.completion.BasketCompleter
        The fitted basket completer.
    explainer : xsell.cross_sell.explain.Explainer
        "Because you bought" evidence, fitted on ``data``.
    search : xsell.apps.search.ProductSearch
        The personalised product search.
    assistant : xsell.apps.assistant.ServiceAssistant
        The customer-service assistant (using ``search`` and ``completer``).
    manifest : dict
        ``bundle.json`` (format, version, fingerprints, what it holds).
    """

    data: Dataset
    hybrids: dict[str, Hybrid]
    completer: BasketCompleter
    explainer: Explainer
    search: ProductSearch
    assistant: ServiceAssistant
    manifest: dict = field(default_factory=dict)

    @property
    def two_tower(self):
        """The fitted LM two-tower, the first hybrid's component (None when the hybrids
        were fitted without one)."""
        return next((h.components_["two-tower"] for h in self.hybrids.values()
                     if "two-tower" in h.components_), None)


def fit_bundle(data: Dataset, objectives: Sequence[str] = OBJECTIVES,
               messages: SupportMessages | None = None, cache: bool = True,
               progress: bool = False) -> Bundle:
    """Fit what serving needs on cleaned ``data`` (through the result cache by default).

    Parameters
    ----------
    data : Dataset
        Cleaned training data (as the ``recommend`` command cleans it).
    objectives : sequence of str
        The hybrids' objectives (``/recommend``'s ``objective``).
    cache : bool
        Fit through the on-disk cache (:mod:`xsell.cache`): a model the commands or the
        chapters fitted with the same data and hyperparameters is read back.
    messages : xsell.data.support.SupportMessages, optional
        What the assistant's intent classifier learns from (default
        :func:`~xsell.data.support.load_support_messages`: Bitext's messages under
        ``$XSELL_DATA_DIR``, else the built-in stand-in).
    progress : bool
        Show progress bars (encoding, training).
    """
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives:
        raise ValueError(f"objectives: {', '.join(map(repr, unknown)) or 'none given'}; "
                         f"choose from {', '.join(OBJECTIVES)}")
    hybrids = {o: fit_model("hybrid", {"objective": o}, data, cache=cache) for o in objectives}
    completer = fit_model("basket-completer", {}, data, cache=cache)
    # The search's behaviour signals are the hybrids' components (the same fits).
    search = ProductSearch(cache=cache, progress=progress).fit(data)
    messages = load_support_messages() if messages is None else messages
    assistant = ServiceAssistant(search=search, completer=completer).fit(messages, data)
    return Bundle(data, hybrids, completer, Explainer().fit(data), search, assistant)


def check_bundle_target(folder: str | Path) -> Path:
    """``folder`` if a bundle may be written there (new, empty, or an earlier bundle).

    Raises
    ------
    FileExistsError
        If ``folder`` exists and is not a bundle (it is never overwritten).
    """
    folder = Path(folder)
    if folder.exists() and not (folder.is_dir() and ((folder / MANIFEST).is_file()
                                                     or not any(folder.iterdir()))):
        raise FileExistsError(f"{folder}: exists and is not an xsell bundle; not overwriting")
    return folder


def write_bundle(bundle: Bundle, folder: str | Path) -> Path:
    """Write ``bundle`` to ``folder`` atomically; an existing folder is replaced only if it
    is a bundle (or empty).

    Raises
    ------
    FileExistsError
        If ``folder`` exists and is not a bundle.
    """
    folder = check_bundle_target(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        data = bundle.data
        write_folder(tmp / "data", {"interactions": data.interactions, "items": data.items,
                                    "name": data.name, "info": _plain(data.info)})
        models = {f"hybrid-{o}": m for o, m in bundle.hybrids.items()}
        models["basket-completer"] = bundle.completer
        models["explainer"] = bundle.explainer
        models["search"] = bundle.search
        # the assistant's search and completer are the bundle's own: stored once
        assistant = copy.copy(bundle.assistant)
        assistant.search = assistant.completer = None
        models["assistant"] = assistant
        write_folder(tmp / "models", models)
        manifest = {"format": BUNDLE_FORMAT, "xsell_version": __version__,
                    "created": datetime.datetime.now(datetime.timezone.utc)
                    .isoformat(timespec="seconds"),
                    "dataset": data.name, "data_fingerprint": data_fingerprint(data),
                    "catalogue_fingerprint": catalogue_fingerprint(data),
                    "users": int(data.n_users), "items": int(data.n_items),
                    "objectives": list(bundle.hybrids),
                    # the last logged event the training data holds (xsell fit --events)
                    "events_through": int(data.info.get("events", {}).get("through", 0)),
                    "files": {name: sha256_file(tmp / name / "config.json")
                              for name in ("data", "models")}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        _link_duplicates(tmp)
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{time.time_ns()}")
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_manifest(folder: str | Path, catalogue: Dataset | None = None) -> dict:
    """A bundle's ``bundle.json``, once its format and the files it lists are checked
    (the models are not read: see :func:`load_bundle`).

    Raises
    ------
    BundleError
        As :func:`load_bundle`, for the manifest and the catalogue.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: missing (not an xsell bundle? make one with "
                          "`xsell fit --out DIR`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BundleError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BundleError(f"{path}: format {found!r}, expected {BUNDLE_FORMAT!r}")
    for name in ("data", "models"):
        config = folder / name / "config.json"
        expected = manifest.get("files", {}).get(name)
        if not config.is_file() or sha256_file(config) != expected:
            raise BundleError(f"{config}: missing or not the file {path} lists")
    if catalogue is not None and catalogue_fingerprint(catalogue) != manifest.get(
            "catalogue_fingerprint"):
        raise BundleError(
            f"{folder}: made for another catalogue ({manifest.get('dataset')!r}, "
            f"{manifest.get('items')} items, fingerprint {manifest.get('catalogue_fingerprint')}"
            f"); the data given is {catalogue.name!r}, {catalogue.n_items} items, fingerprint "
            f"{catalogue_fingerprint(catalogue)}: rebuild the bundle with `xsell fit --out`")
    return manifest


def load_bundle(folder: str | Path, catalogue: Dataset | None = None) -> Bundle:
    """Read a bundle written by :func:`write_bundle`; never refits.

    Parameters
    ----------
    folder : path-like
        The bundle.
    catalogue : Dataset, optional
        Data whose catalogue the bundle must have been made for (``xsell serve --data``).

    Raises
    ------
    BundleError
        Naming the file that is missing or damaged, or the two catalogues that differ.
    """
    folder = Path(folder)
    manifest = read_manifest(folder, catalogue)
    path = folder / MANIFEST
    try:
        raw = read_folder(folder / "data")
        data = Dataset(raw["interactions"], raw["items"], name=raw["name"], info=raw["info"])
        if data_fingerprint(data) != manifest.get("data_fingerprint"):
            raise BundleError(f"{folder / 'data'}: not the data {path} was made from")
        # the hybrids share their components, the search its signal models: read once
        models = read_folder(folder / "models", data, shared={})
    except CheckpointError as err:
        raise BundleError(str(err)) from None
    hybrids = {o: models.get(f"hybrid-{o}") for o in manifest.get("objectives", [])}
    completer, explainer = models.get("basket-completer"), models.get("explainer")
    search, assistant = models.get("search"), models.get("assistant")
    if not hybrids or not all(isinstance(m, Hybrid) for m in hybrids.values()) or not (
            isinstance(completer, BasketCompleter) and isinstance(explainer, Explainer)
            and isinstance(search, ProductSearch)
            and isinstance(assistant, ServiceAssistant)):
        raise BundleError(f"{folder / 'models'}: does not hold the hybrids "
                          f"{manifest.get('objectives')}, a basket completer, an explainer, "
                          "a product search and an assistant")
    assistant.search, assistant.completer = search, completer
    return Bundle(data, hybrids, completer, explainer, search, assistant, manifest)


def bundle_size(folder: str | Path) -> int:
    """Bytes a bundle takes on disk (a hard-linked file counted once)."""
    files = {}
    for path in Path(folder).rglob("*"):
        if path.is_file():
            stat = path.stat()
            files[(stat.st_dev, stat.st_ino)] = stat.st_size
    return sum(files.values())


def _link_duplicates(folder: Path) -> None:
    """Hard-link files of identical contents (the components the hybrids share are
    written once per hybrid): the bundle takes their space once; every file still reads
    and verifies as written. Where the file system has no hard links, copies stay."""
    seen: dict[tuple[int, str], Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = (path.stat().st_size, sha256_file(path))
        first = seen.setdefault(key, path)
        if first is path:
            continue
        link = path.with_name(path.name + ".link")
        try:
            os.link(first, link)
        except OSError:
            return
        os.replace(link, path)


def _plain(value):
    """JSON's view of provenance notes (paths and numbers become strings where needed)."""
    return json.loads(json.dumps(value, default=str))
