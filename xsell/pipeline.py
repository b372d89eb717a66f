"""The main job behind ``xsell run``: load, validate, clean, split, fit the baselines,
evaluate them on the temporal split, report.

Later chapters add the language-model two-tower and the hybrid to the same pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from xsell.data.cleaning import CleaningReport
from xsell.data.dataset import Dataset
from xsell.data.loaders import describe_source
from xsell.data.prepare import MAX_USER_MAD, MIN_USER_BASKETS, prepare
from xsell.data.splits import Split, global_time_split, random_split
from xsell.metrics import HISTORY_METRICS


@dataclass
class RunResult:
    """Everything one run produced, ready to print or save."""

    source: str
    summary: dict
    cleaning: CleaningReport
    splits: dict[str, Split]
    summary_text: str = ""
    comparison: pd.DataFrame | None = None
    hyperparameters: dict = field(default_factory=dict)
    tuned: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable view."""
        return {
            "source": self.source,
            "summary": self.summary,
            "cleaning": self.cleaning.to_frame().to_dict(orient="records"),
            "splits": {name: s.sizes().reset_index().to_dict(orient="records")
                       for name, s in self.splits.items()},
            "comparison": (None if self.comparison is None else
                           self.comparison.astype(object).where(self.comparison.notna(), None)
                           .to_dict(orient="records")),
            "hyperparameters": self.hyperparameters,
            "seconds": self.seconds,
        }

    def report(self) -> str:
        """Human-readable report."""
        out = [f"data: {self.source}", "", self.summary_text, "", "cleaning:", str(self.cleaning)]
        for name, s in self.splits.items():
            out += ["", f"split {name}:", s.sizes().to_string(float_format=lambda x: f"{x:.3f}")]
        if self.comparison is not None:
            from xsell.evaluation import headline_rows

            headline = headline_rows(self.comparison)
            wide = headline.assign(cell=[f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(
                headline["value"], headline["ci_low"], headline["ci_high"], strict=True)]
            ).pivot_table(index="model", columns=["variant", "metric", "k"], values="cell",
                          aggfunc="first", sort=False)
            how = "tuned on the validation basket" if self.tuned else "default hyperparameters"
            out += ["", f"models on the test basket (leave-last-basket-out, {how}; "
                    "value [95% CI over users]):", wide.to_string()]
            if self.comparison["metric"].isin(list(HISTORY_METRICS)).any():
                from xsell.evaluation import repeat_explore_table

                parts = repeat_explore_table(self.comparison, k=10)
                out += ["", "the 'all' lists split into items bought before and new ones "
                        "(Li et al. 2023):", parts.to_string(float_format=lambda x: f"{x:.3f}")]
        out += ["", "time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())]
        return "\n".join(out)


#: Models ``xsell run`` fits and compares (the baselines and the LM two-tower).
RUN_MODELS = ("popularity", "buy-again", "itemknn", "cooccurrence", "tifu-knn", "als",
              "two-tower")


def run(dataset: Dataset, *, min_user_baskets: int = MIN_USER_BASKETS,
        max_user_mad: float | None = MAX_USER_MAD,
        seed: int = 0, models: Sequence[str] = RUN_MODELS, tuned: bool = False,
        progress: bool = True, cache: bool = True) -> RunResult:
    """Clean a loaded dataset, build the three splits and compare the baselines.

    Parameters
    ----------
    dataset : Dataset
        Validated data (from :func:`xsell.data.loaders.load_dataset`).
    min_user_baskets : int
        Users need this many baskets (train + validation + test) to stay.
    max_user_mad : float, optional
        Outlier threshold (:func:`xsell.data.prepare.prepare`, the recipe every chapter
        and command uses).
    seed : int
        Seed of the random split and of the bootstrap.
    models : sequence of str
        Baselines to fit and evaluate (names in :data:`xsell.models.registry.MODELS`);
        empty to skip the comparison.
    tuned : bool
        Tune each baseline on the validation basket first.
    progress : bool
        Show progress bars.
    cache : bool
        Fit through the on-disk cache (:mod:`xsell.cache`), as the other commands and the
        chapters do: a second run reads its models back, and a chapter asking for a model
        with the same data and hyperparameters (the two-tower's defaults are its tuned
        values on Instacart) reads this run's fit.
    """
    seconds = {}
    t = time.perf_counter()
    prepared = prepare(dataset, min_user_baskets=min_user_baskets, max_user_mad=max_user_mad)
    cleaned, report = prepared.data, prepared.report
    seconds["clean"] = time.perf_counter() - t
    t = time.perf_counter()
    splits = {"random 7:1:2": random_split(cleaned, seed=seed),
              "leave-last-basket-out": prepared.split}
    if "timestamp" in cleaned.interactions:
        splits["global time"] = global_time_split(cleaned)
    seconds["split"] = time.perf_counter() - t
    comparison, hyper = None, {}
    if models:
        from xsell.experiments import compare_models

        t = time.perf_counter()
        comparison, hyper = compare_models(splits["leave-last-basket-out"], list(models),
                                           ks=(10, 20),
                                           metrics=("recall", "ndcg", *HISTORY_METRICS),
                                           tuned=tuned, seed=seed, progress=progress,
                                           cache=cache)
        seconds["baselines"] = time.perf_counter() - t
    return RunResult(describe_source(dataset), cleaned.summary(), report, splits,
                     summary_text=cleaned.summary_text(), comparison=comparison,
                     hyperparameters=hyper, tuned=tuned, seconds=seconds)
