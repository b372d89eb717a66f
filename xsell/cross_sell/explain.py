""""Because you bought X": which history or cart item supports a recommendation most.

The evidence of history item :math:`i` for recommended item :math:`j` is
:math:`h_i \\hat P(j \\mid i)` -- its weight in the history times how often baskets with
:math:`i` also hold :math:`j` (the co-occurrence model). The explanation is the item with
the most evidence and its *contribution*, its share of the total. When no history item
was ever bought with :math:`j` (a new or long-tail product), the evidence is the frozen
LM's cosine similarity instead, and the explanation says so.

This is a post-hoc account through the item-to-item signals the hybrids and the basket
completer use, not a decomposition of the two-tower's attention.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xsell.checkpoint import Saveable
from xsell.data.dataset import Dataset
from xsell.text import DEFAULT_MODEL, TextEncoder, item_texts


class Explainer(Saveable):
    """Attributes recommendations to history items (saved and loaded like a model).

    Parameters
    ----------
    encoder : str
        Sentence encoder of the fallback text evidence.
    cache : bool
        Reuse the co-occurrence fit from the on-disk cache.
    progress : bool
        Progress bar while encoding (cached on disk).
    """

    def __init__(self, encoder: str = DEFAULT_MODEL, cache: bool = True,
                 progress: bool = False):
        self.encoder = encoder
        self.cache = cache
        self.progress = progress

    def fit(self, train: Dataset) -> Explainer:
        """Fit the co-occurrence evidence and embed the catalogue."""
        from xsell.models.fitting import fit_model

        self.dataset_ = train
        self.cooc_ = fit_model("cooccurrence", {"normalize": "conditional"}, train,
                               cache=self.cache).weights_.tocsr()
        self.embeddings_ = TextEncoder(self.encoder, progress=self.progress).encode(
            item_texts(train).tolist())
        return self

    def explain(self, history_items, recommended, history_weights=None) -> pd.DataFrame:
        """The strongest supporting history item of each recommended item.

        Parameters
        ----------
        history_items : array-like
            Item ids of the history or cart.
        recommended : array-like
            Item ids to explain.
        history_weights : array-like, optional
            Weight of each history item (e.g. purchase counts; default 1).

        Returns
        -------
        pandas.DataFrame
            One row per recommended item: ``because`` (item id), ``evidence``
            ("bought together" or "similar text"), ``contribution`` (share of the total
            evidence, 0-1) and ``strength`` (the winning item's raw evidence).
        """
        data = self.dataset_
        h = data.item_codes(history_items)
        w = np.ones(len(h)) if history_weights is None else np.asarray(history_weights, float)
        r = data.item_codes(recommended)
        together = self.cooc_[h][:, r].toarray() * w[:, None]  # history x recommended
        similar = (self.embeddings_[h] @ self.embeddings_[r].T).clip(min=0) * w[:, None]
        rows = []
        for col in range(len(r)):
            use_cooc = together[:, col].sum() > 0
            evidence = together[:, col] if use_cooc else similar[:, col]
            best = int(np.argmax(evidence))
            total = evidence.sum()
            rows.append({"because": data.item_index[h[best]],
                         "evidence": "bought together" if use_cooc else "similar text",
                         "contribution": float(evidence[best] / total) if total > 0 else 0.0,
                         "strength": float(evidence[best] / w[best]) if w[best] else 0.0})
        return pd.DataFrame(rows, index=pd.Index(data.item_index[r], name="item_id"))
