"""Recommenders, one module per family, all behind :class:`~xsell.models.base.Recommender`."""

from xsell.models.base import Recommender
from xsell.models.baselines import BuyAgain, Popularity
from xsell.models.ease import EASE
from xsell.models.factorization import ALS, BPR
from xsell.models.hybrid import LearnedReranker, RankFusion, ScoreFusion, WeightedFusion
from xsell.models.neighbors import CoOccurrence, ItemKNN
from xsell.models.tifu_knn import TIFUKNN

__all__ = ["ALS", "BPR", "EASE", "BuyAgain", "CoOccurrence", "ItemKNN", "LearnedReranker",
           "Popularity", "RankFusion", "Recommender", "ScoreFusion", "TIFUKNN",
           "WeightedFusion"]
