"""Fitting registered models by name, each configuration once (with the on-disk cache).

The comparisons, the hybrids, the basket completer and the chapters all fit through
:func:`fit_model`. With ``cache=True`` a fit is stored as a verified model folder
(:meth:`~xsell.checkpoint.Saveable.save`) under a key made of the model's full
configuration -- the constructor's signature with its defaults filled in (scikit-learn's
``get_params``), so ``{}`` and the spelled-out defaults share an entry -- and of the
training data's fingerprint.
"""

from __future__ import annotations

import inspect
import json

from xsell.cache import memoize
from xsell.checkpoint import data_fingerprint
from xsell.data.dataset import Dataset
from xsell.models.base import Recommender
from xsell.models.registry import model_class

#: Constructor arguments that do not change a fit (left out of its cache key).
NOT_IN_KEY = ("progress",)


def full_params(name: str, params: dict) -> dict:
    """``params`` with every other constructor argument of model ``name`` at its default."""
    signature = inspect.signature(model_class(name).__init__).parameters.values()
    full = {p.name: p.default for p in signature if p.default is not inspect.Parameter.empty}
    unknown = sorted(set(params) - set(full))
    if unknown:
        raise ValueError(f"model {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                         f"its parameters: {', '.join(full)}")
    full.update(params)
    return full


def fit_key(name: str, params: dict, train: Dataset) -> dict:
    """The cache key of one fit: data fingerprint, model name and full configuration."""
    full = {k: v for k, v in full_params(name, params).items() if k not in NOT_IN_KEY}
    return {"data": data_fingerprint(train), "name": name, "params": full}


def fit_model(name: str, params: dict, train: Dataset, cache: bool = False) -> Recommender:
    """Fit one registered model; with ``cache``, reuse an identical earlier fit from disk.

    Parameters
    ----------
    name : str
        A name of :data:`xsell.models.registry.MODELS`.
    params : dict
        Hyperparameters (the others keep their defaults).
    train : Dataset
        Training data.
    cache : bool
        Read (or store) the fit in the on-disk cache (:mod:`xsell.cache`).
    """
    def compute() -> Recommender:
        return model_class(name)(**params).fit(train)

    if not cache:
        return compute()
    key = fit_key(name, params, train)
    model = memoize("fit_model", key, compute, dataset=train)
    # Same key, same fit (what the disk cache already relies on): lets hybrids over the
    # same components reuse their candidates within one process.
    model._fit_key = json.dumps(key, sort_keys=True, default=str)
    return model


def store_fit(name: str, params: dict, train: Dataset, model: Recommender) -> None:
    """Put a model fitted elsewhere (e.g. during tuning) where :func:`fit_model` finds it."""
    memoize("fit_model", fit_key(name, params, train), lambda: model, dataset=train)
