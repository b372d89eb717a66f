"""The one data-preparation recipe: clean, then split each user's baskets in time.

``xsell run``, ``xsell evaluate``, ``xsell recommend`` / ``complete``, the benchmarks
and every chapter prepare data with :func:`prepare`, so a number in the book and the
same number from the command line come from the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from xsell.data.cleaning import CleaningReport, clean
from xsell.data.dataset import Dataset
from xsell.data.splits import Split, leave_last_basket_out

#: Users need this many baskets (train + validation + test) to stay.
MIN_USER_BASKETS = 3
#: Users whose log purchase volume lies further than this many MADs from the median are
#: dropped as outliers (:func:`xsell.data.cleaning.clean`).
MAX_USER_MAD = 5.0


@dataclass
class PreparedData:
    """Cleaned data, what cleaning removed, and the temporal split of it.

    Attributes
    ----------
    data : Dataset
        The cleaned dataset (what models are fitted on when serving).
    report : CleaningReport
        Rows, users and items removed by each cleaning step.
    split : Split
        Leave-last-basket-out: per user, test = the last basket, validation = the one
        before, train = the rest.
    """

    data: Dataset
    report: CleaningReport
    split: Split


def prepare(dataset: Dataset, min_user_baskets: int = MIN_USER_BASKETS,
            max_user_mad: float | None = MAX_USER_MAD) -> PreparedData:
    """Clean ``dataset`` and split it leave-last-basket-out (the module's recipe).

    Parameters
    ----------
    dataset : Dataset
        Validated data (:func:`xsell.data.loaders.load_dataset`).
    min_user_baskets : int
        Users with fewer baskets are dropped.
    max_user_mad : float, optional
        Outlier threshold on users' log purchase volume; ``None`` keeps every user.
    """
    data, report = clean(dataset, min_user_baskets=min_user_baskets, max_user_mad=max_user_mad)
    return PreparedData(data, report, leave_last_basket_out(data))
