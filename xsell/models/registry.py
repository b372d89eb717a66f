"""Models by name, as the command line and the experiments refer to them."""

from __future__ import annotations

from importlib import import_module

from xsell.models.base import Recommender

#: Model classes by command-line name, as "module.path" plus class name. They are
#: imported lazily, so ``implicit`` is only loaded when ALS or BPR is asked for.
MODELS: dict[str, str] = {
    "popularity": "xsell.models.baselines:Popularity",
    "buy-again": "xsell.models.baselines:BuyAgain",
    "itemknn": "xsell.models.neighbors:ItemKNN",
    "cooccurrence": "xsell.models.neighbors:CoOccurrence",
    "ease": "xsell.models.ease:EASE",
    "als": "xsell.models.factorization:ALS",
    "bpr": "xsell.models.factorization:BPR",
    "text-similarity": "xsell.models.text_similarity:TextSimilarity",
    "two-tower": "xsell.models.two_tower:TwoTower",
    "hybrid": "xsell.models.hybrid:WeightedFusion",
    "score-fusion": "xsell.models.hybrid:ScoreFusion",
    "rank-fusion": "xsell.models.hybrid:RankFusion",
    "reranker": "xsell.models.hybrid:LearnedReranker",
    "basket-completer": "xsell.cross_sell.completion:BasketCompleter",
}


def model_class(name: str) -> type[Recommender]:
    """The class registered under ``name``.

    Raises
    ------
    ValueError
        Naming the unknown model and listing the known ones.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(import_module(module), cls)
