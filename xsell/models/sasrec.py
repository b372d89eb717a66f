"""SASRec: the sequential recommender of Kang & McAuley (ICDM 2018), over baskets.

A causal transformer (:mod:`xsell.models.sasrec_network`) reads a user's last
``max_len`` baskets and scores every item for the next one with a full softmax over the
items bought in training: at every position :math:`t` of a training sequence the loss is

.. math:: \\ell_t = -\\frac{1}{|B_{t+1}|}\\sum_{i \\in B_{t+1}}
          \\log \\frac{\\exp(h_t \\cdot e_i)}{\\sum_j \\exp(h_t \\cdot e_j)},

the next basket's items as targets. Trained with a full softmax, SASRec matches or beats
newer generative sequential recommenders (Klenitskiy & Vasilev, *Turning Dross Into
Gold Loss: is BERT4Rec really better than SASRec?*, RecSys 2023). Training stops early on
NDCG@10 of a held-out last basket of ``validation_users`` users. Items nobody bought in
training have no vector and rank last; a user with no history gets the most popular
items.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from tqdm import tqdm

from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.metrics import ndcg_at_k
from xsell.models.base import Recommender, popularity_tiebreak, top_k
from xsell.models.sasrec_network import SASRecNetwork


def _positions(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's basket index from its user's first (0) and the user's basket count."""
    rank = frame.groupby("u")["s"].rank(method="dense").to_numpy().astype(np.int64) - 1
    n = frame.groupby("u")["s"].transform("nunique").to_numpy()
    return rank, n


def _slots(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    return frame.groupby(keys, sort=False).cumcount().to_numpy()


def basket_sequences(interactions: pd.DataFrame, users: pd.Index, codes: pd.Index,
                     max_len: int, max_basket: int) -> np.ndarray:
    """``(len(users), max_len, max_basket)`` codes of each user's last baskets, left-padded.

    ``codes`` maps item ids to network codes (items outside it are dropped); the padding
    code is ``len(codes)``. The latest basket is at the last position; a basket keeps its
    first ``max_basket`` items.
    """
    out = np.full((len(users), max_len, max_basket), len(codes), dtype=np.int64)
    frame = _frame(interactions, users, codes)
    if len(frame):
        rank, n = _positions(frame)
        back = n - 1 - rank  # 0 = the latest basket
        frame = frame.assign(p=max_len - 1 - back)
        frame = frame[frame["p"] >= 0]
        slot = _slots(frame, ["u", "p"])
        keep = slot < max_basket
        out[frame["u"].to_numpy()[keep], frame["p"].to_numpy()[keep], slot[keep]] = \
            frame["c"].to_numpy()[keep]
    return out


def _frame(interactions: pd.DataFrame, users: pd.Index, codes: pd.Index) -> pd.DataFrame:
    """Rows as (u = user position, s = basket order, c = item code), known items only."""
    seq = interactions[S.SEQ] if S.SEQ in interactions else pd.Series(0, index=interactions.index)
    frame = pd.DataFrame({"u": users.get_indexer(interactions[S.USER]), "s": seq.to_numpy(),
                          "c": codes.get_indexer(interactions[S.ITEM])})
    frame = frame[(frame["u"] >= 0) & (frame["c"] >= 0)].drop_duplicates()
    return frame.sort_values(["u", "s"], kind="stable")


def training_windows(interactions: pd.DataFrame, users: pd.Index, codes: pd.Index,
                     max_len: int, max_basket: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (basket, next basket) transition, cut into windows of ``max_len`` positions.

    Returns
    -------
    inputs, targets : numpy.ndarray
        ``(n_windows, max_len, max_basket)`` codes, left-padded with ``len(codes)``:
        position ``j`` of a window holds a basket and, in ``targets``, the basket after
        it. A user's latest window ends at their last transition; earlier transitions
        fill earlier windows, so none is lost.
    """
    pad = len(codes)
    frame = _frame(interactions, users, codes)
    if not len(frame):
        empty = np.full((0, max_len, max_basket), pad, dtype=np.int64)
        return empty, empty.copy()
    rank, n = _positions(frame)
    per_user = frame.assign(n=n).groupby("u")["n"].first()
    windows = np.maximum(per_user.to_numpy() - 1, 0)  # transitions per user
    windows = -(-windows // max_len)  # ceil: windows per user
    offset = pd.Series(np.concatenate([[0], np.cumsum(windows)[:-1]]), index=per_user.index)
    inputs = np.full((int(windows.sum()), max_len, max_basket), pad, dtype=np.int64)
    targets = inputs.copy()
    u, c = frame["u"].to_numpy(), frame["c"].to_numpy()
    first = offset.reindex(u).to_numpy()
    for as_input, array in ((True, inputs), (False, targets)):
        b = rank if as_input else rank - 1  # the input basket this row belongs to
        ok = (b >= 0) & (b <= n - 2)
        back = (n - 2 - b)[ok]  # 0 = the user's last input basket
        window = first[ok] + back // max_len
        position = max_len - 1 - back % max_len
        part = pd.DataFrame({"w": window, "p": position})
        slot = _slots(part, ["w", "p"])
        keep = slot < max_basket
        array[window[keep], position[keep], slot[keep]] = c[ok][keep]
    return inputs, targets


class SASRec(Recommender):
    """Self-attentive sequential recommendation over baskets (see :mod:`xsell.models.sasrec`).

    Parameters
    ----------
    max_len : int
        Baskets read, the latest ones.
    dim : int
        Vector size.
    layers, heads : int
        Transformer blocks and attention heads.
    dropout : float
        Dropout rate.
    negatives : int, optional
        ``None``: full softmax over every item (the strong form of the loss). A number:
        sampled softmax against that many popularity-drawn items per batch with the
        log-Q correction -- several times faster on a large catalogue.
    max_basket : int
        Items kept per basket.
    lr, weight_decay : float
        AdamW's step size and decay.
    batch_size : int
        Windows per step.
    max_epochs, patience : int
        Epoch limit; stop after ``patience`` epochs without a better validation score.
    validation_users : int
        Users whose last training basket is held out for early stopping.
    seed : int
        Seed of the initialisation, the shuffling and the validation users.
    progress : bool
        Show a progress bar over the epochs.

    Attributes
    ----------
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``validation`` (NDCG@10), ``seconds``.
    """

    #: Values tried by :func:`xsell.tuning.tune`.
    param_grid: dict = {"max_len": [10, 30], "dropout": [0.2, 0.5]}

    def __init__(self, max_len: int = 20, dim: int = 64, layers: int = 2, heads: int = 2,
                 dropout: float = 0.2, negatives: int | None = None, max_basket: int = 30,
                 lr: float = 3e-3,
                 weight_decay: float = 0.0, batch_size: int = 64, max_epochs: int = 20,
                 patience: int = 3, validation_users: int = 300, seed: int = 0,
                 progress: bool = False):
        self.max_len = max_len
        self.dim = dim
        self.layers = layers
        self.heads = heads
        self.dropout = dropout
        self.negatives = negatives
        self.max_basket = max_basket
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_users = validation_users
        self.seed = seed
        self.progress = progress

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        for name in ("max_len", "dim", "layers", "heads", "max_basket", "batch_size",
                     "max_epochs", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.negatives is not None and (isinstance(self.negatives, bool) or not isinstance(
                self.negatives, (int, np.integer)) or self.negatives < 1):
            raise ValueError(f"negatives must be None (full softmax) or a positive integer, "
                             f"not {self.negatives!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout!r}")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")

    def _network(self) -> SASRecNetwork:
        return SASRecNetwork(len(self.codes_), self.dim, self.max_len, self.layers,
                             self.heads, self.dropout)

    def fit(self, train: Dataset) -> SASRec:
        """Train the network on every transition, stopping early on held-out baskets."""
        self._check_params()
        start = time.perf_counter()
        self._remember(train)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.codes_ = pd.Index(self.items_[self.seen_items_])
        inter = train.interactions
        held_users, held_out = self._held_out(inter, rng)
        fit_rows = inter.drop(index=held_out.index)
        inputs, targets = training_windows(fit_rows, self.users_, self.codes_, self.max_len,
                                           self.max_basket)
        val_inputs = basket_sequences(fit_rows, held_users, self.codes_, self.max_len,
                                      self.max_basket)
        val_targets = held_out.groupby(S.USER)[S.ITEM].unique().reindex(held_users)
        self.network_ = self._network()
        self.history_ = self._train(inputs, targets, val_inputs, list(val_targets), rng)
        self.tiebreak_ = popularity_tiebreak(self.train_history_)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _held_out(self, inter: pd.DataFrame, rng: np.random.Generator
                  ) -> tuple[pd.Index, pd.DataFrame]:
        """The last basket of ``validation_users`` users with at least two baskets."""
        last = inter.groupby(S.USER)[S.SEQ].transform("max")
        baskets = inter.groupby(S.USER)[S.SEQ].nunique()
        eligible = np.sort(baskets[baskets >= 2].index.to_numpy())
        n = min(int(self.validation_users), len(eligible))
        chosen = pd.Index(rng.choice(eligible, size=n, replace=False) if n else [])
        held = inter[inter[S.USER].isin(chosen) & (inter[S.SEQ] == last)]
        held = held[held[S.ITEM].isin(self.codes_)]
        return pd.Index(held[S.USER].unique()), held

    def _train(self, inputs: np.ndarray, targets: np.ndarray, val_inputs: np.ndarray,
               val_targets: list, rng: np.random.Generator) -> list[dict]:
        net = self.network_
        optimizer = torch.optim.AdamW(net.parameters(), lr=self.lr,
                                      weight_decay=self.weight_decay)
        x_all, y_all = torch.as_tensor(inputs), torch.as_tensor(targets)
        # Sampling distribution of the negatives: the items' share of the targets.
        counts = np.bincount(targets[targets < len(self.codes_)], minlength=len(self.codes_))
        log_q = torch.as_tensor(np.log(np.maximum(counts, 1) / max(counts.sum(), 1)),
                                dtype=torch.float32)
        generator = torch.Generator().manual_seed(self.seed)
        curve, best, best_state, stale = [], -np.inf, None, 0
        epochs = tqdm(range(self.max_epochs), desc="train SASRec", disable=not self.progress)
        for epoch in epochs:
            t0 = time.perf_counter()
            net.train()
            losses = []
            for batch in np.array_split(rng.permutation(len(inputs)),
                                        max(1, -(-len(inputs) // self.batch_size))):
                if not len(batch):
                    continue
                loss = self._loss(x_all[batch], y_all[batch], log_q, generator)
                if loss is None:
                    continue
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            net.eval()
            score = self._validation_ndcg(val_inputs, val_targets)
            curve.append({"epoch": epoch + 1,
                          "train_loss": float(np.mean(losses)) if losses else float("nan"),
                          "validation": score, "seconds": time.perf_counter() - t0})
            epochs.set_postfix(loss=f"{curve[-1]['train_loss']:.3f}", val=f"{score:.4f}")
            if score > best:
                best, stale, best_state = score, 0, copy.deepcopy(net.state_dict())
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return curve

    def _loss(self, x: torch.Tensor, y: torch.Tensor, log_q: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Mean over positions of the next basket's mean softmax cross-entropy.

        Full softmax over every item with a vector; with ``negatives``, each target
        competes with ``negatives`` items drawn by popularity for the whole batch, every
        logit corrected by :math:`-\\log Q(i)` (log-Q), so the sampled loss estimates the
        full one instead of pushing popular items down.
        """
        pad = self.network_.pad
        h = self.network_(x)
        has_target = (y != pad).any(-1)
        if not has_target.any():
            return None
        h, target = h[has_target], y[has_target]
        valid = target != pad
        target = target.clamp(max=pad - 1)
        table = self.network_.item_table()
        if self.negatives is None:
            log_p = torch.log_softmax(h @ table.T, dim=-1)
            picked = log_p.gather(1, target) * valid
        else:
            sample = torch.multinomial(log_q.exp(), int(self.negatives), replacement=True,
                                       generator=generator)
            positive = (h[:, None, :] * table[target]).sum(-1) - log_q[target]
            negative = h @ table[sample].T - log_q[sample]  # (P, negatives)
            # Each target against the shared negatives: log softmax over [target, negatives].
            rest = torch.logsumexp(negative, dim=1, keepdim=True)
            picked = (positive - torch.logaddexp(positive, rest)) * valid
        return -(picked.sum(1) / valid.sum(1)).mean()

    @torch.no_grad()
    def _validation_ndcg(self, inputs: np.ndarray, targets: list, k: int = 10) -> float:
        """NDCG@10 of the held-out baskets (rank-sensitive: it rarely saturates)."""
        if not len(targets):
            return 0.0
        scores = self._network_scores(inputs)
        top = top_k(scores, min(k, scores.shape[1]))
        values = ndcg_at_k(top, [self.codes_.get_indexer(t) for t in targets], top.shape[1])
        return float(np.nanmean(values)) if np.isfinite(values).any() else 0.0

    @torch.no_grad()
    def _network_scores(self, sequences: np.ndarray) -> np.ndarray:
        """Scores of the network's items after each sequence's last basket."""
        out = []
        table = self.network_.item_table()
        for start in range(0, len(sequences), 512):
            h = self.network_(torch.as_tensor(sequences[start:start + 512]))[:, -1]
            out.append((h @ table.T).numpy())
        return np.vstack(out) if out else np.zeros((0, len(self.codes_)), dtype=np.float32)

    # ------------------------------------------------------------------ scoring
    def _score_users(self, users: np.ndarray, matrix: sp.csr_matrix, rows: np.ndarray,
                     history: pd.DataFrame | None) -> np.ndarray:
        # The order of baskets matters here, so the raw rows are read, not the matrix.
        index = pd.Index(users)
        if history is None:
            inter = self.dataset_.interactions
            history = inter[inter[S.USER].isin(index)]
        sequences = basket_sequences(history, index, self.codes_, self.max_len,
                                     self.max_basket)
        own = self._network_scores(sequences).astype(float)
        scores = np.zeros((len(users), len(self.items_)))
        if own.size:
            # Items without a vector score below every item with one.
            scores += own.min(axis=1, keepdims=True) - 1.0
            scores[:, self.items_.get_indexer(self.codes_)] = own
        empty = (sequences == len(self.codes_)).all(axis=(1, 2))
        scores[empty] = 0.0  # no history: popularity (the tie-breaker) alone
        return scores + self.tiebreak_

    def _score_history(self, history: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError("SASRec scores from the order of baskets (_score_users)")

    # ------------------------------------------------------------------ saving
    def _fitted_state(self) -> dict:
        return {"weights": dict(self.network_.state_dict()), "codes": self.codes_.to_numpy(),
                "tiebreak_": self.tiebreak_, "history_": self.history_,
                "fit_seconds_": self.fit_seconds_}

    def _restore_state(self, state: dict, dataset: Dataset) -> None:
        self._remember(dataset)
        self.codes_ = pd.Index(state["codes"])
        self.network_ = self._network()
        self.network_.load_state_dict(dict(state["weights"]))
        self.network_.eval()
        self.tiebreak_ = state["tiebreak_"]
        self.history_, self.fit_seconds_ = state["history_"], state["fit_seconds_"]
