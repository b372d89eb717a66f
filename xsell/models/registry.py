"""Models by name, as the command line and the experiments refer to them."""

from __future__ import annotations

from importlib import import_module

from xsell.models.base import Recommender

#: Model classes by command-line name, as "module.path" plus class name. They are
#: imported lazily, so ``implicit`` is only loaded when ALS or BPR is asked for.
#: Models built from other models by name register themselves (:func:`register`) when
#: their module is imported -- the hybrids with ``xsell.models``, the basket completer
#: with ``xsell.cross_sell`` -- so that this table names no module that imports it.
MODELS: dict[str, str] = {
    "popularity": "xsell.models.baselines:Popularity",
    "buy-again": "xsell.models.baselines:BuyAgain",
    "itemknn": "xsell.models.neighbors:ItemKNN",
    "cooccurrence": "xsell.models.neighbors:CoOccurrence",
    "ease": "xsell.models.ease:EASE",
    "tifu-knn": "xsell.models.tifu_knn:TIFUKNN",
    "sasrec": "xsell.models.sasrec:SASRec",
    "als": "xsell.models.factorization:ALS",
    "bpr": "xsell.models.factorization:BPR",
    "text-similarity": "xsell.models.text_similarity:TextSimilarity",
    "two-tower": "xsell.models.two_tower:TwoTower",
}


def register(name: str, target: str) -> None:
    """Add a model by name, as ``"module.path:Class"``.

    Composite models register themselves when their module is imported (see
    :data:`MODELS`), so the registry names no module above it.
    """
    if MODELS.get(name, target) != target:
        raise ValueError(f"model name {name!r} is taken by {MODELS[name]}")
    MODELS[name] = target


def model_class(name: str) -> type[Recommender]:
    """The class registered under ``name``.

    Raises
    ------
    ValueError
        Naming the unknown model and listing the known ones.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)} (models "
                         "of other packages register on import, e.g. import xsell.cross_sell "
                         "for 'basket-completer')")
    module, cls = MODELS[name].split(":")
    return getattr(import_module(module), cls)
