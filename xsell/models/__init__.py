"""Recommenders, one module per family, all behind :class:`~xsell.models.base.Recommender`."""

from xsell.models.base import Recommender
from xsell.models.baselines import BuyAgain, Popularity

__all__ = ["BuyAgain", "Popularity", "Recommender"]
