"""The pre-trained language-model two-tower recommender.

Item tower: the product's text (title, category path, brand, price bucket) embedded by a
frozen sentence encoder (:mod:`xsell.text`), projected to ``dim`` dimensions, optionally
plus a learned id vector (:class:`~xsell.models.towers.ItemTower`). User tower: the
time-decayed history of item vectors, pooled or attended
(:class:`~xsell.models.towers.UserTower`), or the seed's variant -- the history written
out as text and embedded by the same LM (:class:`~xsell.models.towers.TextUserTower`).
Score: :math:`\\hat r_{ui} = v_u \\cdot s_i`.

Training (:meth:`TwoTower.fit`): every (user, basket ``t``) gives a history (baskets before
``t``) and targets (items of ``t``). ``objective="softmax"`` minimises the in-batch sampled
softmax with log-Q correction and a temperature; ``objective="mse"`` is the seed's
rating-style formulation, regressing the score onto purchase counts. AdamW, early stopping
on a validation basket held out from the training data, seeded, with a progress bar and
the loss curve in ``history_``.
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
from xsell.losses import in_batch_softmax_loss, mse_loss
from xsell.metrics import recall_at_k
from xsell.models.base import Recommender, interaction_matrix
from xsell.models.behaviour import States, decay_weights, top_items, training_states
from xsell.models.towers import ItemTower, TextUserTower, UserTower
from xsell.text import DEFAULT_MODEL, TextEncoder, history_text, item_texts


class TwoTower(Recommender):
    """Two-tower recommender over pre-trained LM item embeddings.

    Parameters
    ----------
    encoder : str
        Sentence encoder, hub name or folder (:func:`xsell.text.resolve_model`).
    pretrained : bool
        ``False`` replaces the encoder's weights by random ones (same architecture):
        the control that shows what pre-training buys.
    item_features : {"text", "id", "text+id"}
        What the item tower reads. ``"id"`` is a classic embedding model (no text, cannot
        score items unseen in training).
    text_items : {"all", "seen"}
        Whose text the LM encodes: the whole catalogue, or only items bought in the
        training data. Training and the scores of bought items are the same either way
        (never-bought items take no part in training); ``"seen"`` saves encoding time on a
        large catalogue -- or with a fresh encoder -- but cannot score never-bought items.
    user_tower : {"mean", "attention", "transformer", "text"}
        How a history becomes a user vector; ``"text"`` is the seed's serialised-history
        variant (the LM reads the titles of the heaviest history items).
    dim : int
        Shared dimension of user and item vectors.
    half_life : float, optional
        Half-life of a purchase's weight in the history, in baskets (``None``: no decay).
    max_history : int
        Heaviest history items the user tower reads.
    targets : {"all", "new"}
        Train on every item of the next basket, or only on items new to the user (the
        default: repeats are buy-again's strength, discovery is this model's job).
    objective : {"softmax", "mse"}
        In-batch sampled softmax on next baskets, or MSE on purchase counts.
    temperature : float
        Softmax temperature (user and item vectors are unit length with ``"softmax"``).
    logq : float
        Weight of the log-Q popularity correction (0 = none, 1 = full).
    lr, weight_decay : float
        AdamW settings.
    batch_size : int
        Training pairs per step (= in-batch negatives + 1).
    max_epochs, patience : int
        Stop after ``patience`` epochs without a better validation score.
    validation_users : int
        Users whose last training basket is held out for early stopping.
    history_text_items : int
        Items written into the serialised history (``user_tower="text"``).
    max_states_per_user : int, optional
        Train on each user's last few baskets only (bounds the LM work of
        ``user_tower="text"``, which embeds one serialised history per training state).
    id_dropout : float
        Training-time probability of dropping an item's id vector (text + id), so that
        the text path learns to score items alone -- as it must for cold items.
    finetune_layers : int
        0 (the CPU default): the LM is frozen. ``k > 0``: also train its top ``k`` layers
        (:mod:`xsell.models.finetune`; practical on small catalogues or a GPU). History
        items read a table of item embeddings refreshed after every epoch; batch items
        go through the layers being trained.
    lora_rank : int
        With ``finetune_layers``: 0 = train all weights of those layers, ``r > 0`` = LoRA
        adapters of rank ``r`` only.
    finetune_lr : float
        AdamW learning rate of the LM weights (LoRA adapters use ``lr``).
    seed : int
        Seeds the weights, the validation users and the batch order.
    progress : bool
        Show progress bars.
    """

    #: Grid of :func:`xsell.tuning.tune` (each point is a training run: kept small).
    param_grid: dict = {"half_life": [4.0, 8.0]}

    def __init__(self, encoder: str = DEFAULT_MODEL, pretrained: bool = True,
                 item_features: str = "text+id", text_items: str = "all",
                 user_tower: str = "attention", dim: int = 256,
                 half_life: float | None = 4.0, max_history: int = 50, targets: str = "new",
                 objective: str = "softmax", temperature: float = 0.05, logq: float = 1.0,
                 lr: float = 3e-4, weight_decay: float = 1e-4, batch_size: int = 1024,
                 max_epochs: int = 20, patience: int = 2, validation_users: int = 500,
                 history_text_items: int = 20, max_states_per_user: int | None = None,
                 id_dropout: float = 0.0, finetune_layers: int = 0, lora_rank: int = 0, finetune_lr: float = 5e-5,
                 seed: int = 0, progress: bool = True):
        self.encoder = encoder
        self.pretrained = pretrained
        self.item_features = item_features
        self.text_items = text_items
        self.user_tower = user_tower
        self.dim = dim
        self.half_life = half_life
        self.max_history = max_history
        self.targets = targets
        self.objective = objective
        self.temperature = temperature
        self.logq = logq
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_users = validation_users
        self.history_text_items = history_text_items
        self.max_states_per_user = max_states_per_user
        self.id_dropout = id_dropout
        self.finetune_layers = finetune_layers
        self.lora_rank = lora_rank
        self.finetune_lr = finetune_lr
        self.seed = seed
        self.progress = progress

    @property
    def scores_unseen_items(self) -> bool:  # type: ignore[override]
        """Items never bought in training are scored through their text (not with ``"id"``
        or ``text_items="seen"``)."""
        return self.item_features != "id" and self.text_items == "all"

    # ------------------------------------------------------------------ building blocks
    def _check(self) -> None:
        choices = {"item_features": ("text", "id", "text+id"), "text_items": ("all", "seen"),
                   "user_tower": ("mean", "attention", "transformer", "text"),
                   "targets": ("all", "new"), "objective": ("softmax", "mse")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if self.user_tower == "text" and self.objective == "mse":
            raise ValueError("user_tower='text' is implemented for objective='softmax' only")
        if self.text_items == "seen" and self.finetune_layers:
            raise ValueError("fine-tuning refreshes every item's text embedding: it needs "
                             "text_items='all'")

    def _text_encoder(self) -> TextEncoder:
        if getattr(self, "_encoder", None) is None:
            self._encoder = TextEncoder(self.encoder, pretrained=self.pretrained,
                                        seed=self.seed, progress=self.progress)
        return self._encoder

    def _build(self, text: torch.Tensor | None, n_items: int, text_dim: int,
               id_items: torch.Tensor | None) -> None:
        torch.manual_seed(self.seed)
        self.item_tower_ = ItemTower(text, n_items, self.dim, "id" in self.item_features,
                                     id_items, self.id_dropout)
        self.user_tower_ = (TextUserTower(text_dim, self.dim) if self.user_tower == "text"
                            else UserTower(self.dim, self.user_tower))
        # MSE predicts counts: a global mean and an item bias carry what a dot product cannot.
        self.bias_ = torch.nn.Parameter(torch.zeros(n_items + 1))

    def _modules(self) -> torch.nn.ModuleDict:
        parts = {"item": self.item_tower_, "user": self.user_tower_}
        if getattr(self, "top_layers_", None) is not None:
            parts["lm"] = self.top_layers_
        return torch.nn.ModuleDict(parts)

    def history_matrix(self, interactions: pd.DataFrame, users: pd.Index) -> sp.csr_matrix:
        """Time-decayed purchase weights per (user, item) (:mod:`xsell.models.behaviour`)."""
        return decay_weights(interactions, users, self.items_, self.half_life)

    def _history_texts(self, codes: np.ndarray) -> list[str]:
        titles = self.dataset_.items[S.TITLE].astype(str).to_numpy()
        k = self.history_text_items
        return [history_text([titles[c] for c in row[:k] if c >= 0]) for row in codes]

    def _user_vectors(self, codes: np.ndarray, weights: np.ndarray,
                      text: torch.Tensor | None = None) -> torch.Tensor:
        """User vectors of padded histories (or of serialised-history embeddings)."""
        if self.user_tower == "text":
            u = self.user_tower_(text)
        else:
            # Histories share items: run the item tower once per distinct item, then gather.
            distinct, inverse = np.unique(np.maximum(codes, 0), return_inverse=True)
            vec = self.item_tower_(torch.as_tensor(distinct))[torch.as_tensor(inverse)]
            u = self.user_tower_(vec.reshape(*codes.shape, -1), torch.as_tensor(weights))
        return torch.nn.functional.normalize(u, dim=-1) if self.objective == "softmax" else u

    def _item_vectors(self, codes: torch.Tensor, tuned: bool = False) -> torch.Tensor:
        top = getattr(self, "top_layers_", None)
        v = self.item_tower_(codes, top(codes) if tuned and top is not None else None)
        return torch.nn.functional.normalize(v, dim=-1) if self.objective == "softmax" else v

    # ------------------------------------------------------------------ fit
    def fit(self, train: Dataset) -> TwoTower:
        """Encode the catalogue (cached), build the training states, train with early stopping."""
        self._check()
        start = time.perf_counter()
        self._remember(train)
        rng = np.random.default_rng(self.seed)
        n_items = len(self.items_)
        text = None
        text_dim = 0
        if self.item_features != "id" or self.user_tower == "text":
            texts = item_texts(train).tolist()
            if self.text_items == "all":
                embeddings = self._text_encoder().encode(texts)
            else:  # never-bought rows stay zero: no training pair or scored item reads them
                seen = np.flatnonzero(self.seen_items_)
                part = self._text_encoder().encode([texts[i] for i in seen])
                embeddings = np.zeros((len(texts), part.shape[1]), dtype=part.dtype)
                embeddings[seen] = part
            text_dim = embeddings.shape[1]
            text = torch.as_tensor(embeddings) if self.item_features != "id" else None
        self._build(text, n_items, text_dim, torch.as_tensor(np.flatnonzero(self.seen_items_)))
        self.top_layers_ = None
        if self.finetune_layers:
            if text is None:
                raise ValueError("finetune_layers needs a text item tower")
            from xsell.models.finetune import TopLayers

            self.top_layers_ = TopLayers(self._text_encoder(), texts, self.finetune_layers,
                                         self.lora_rank, self.progress)
        if self.objective == "mse":
            states, val_rows = self._rating_pairs(train, rng)
        else:
            states = training_states(train.interactions, self.users_, self.items_,
                                     self.half_life, self.max_history, self.targets)
            if self.max_states_per_user is not None:
                states = states.last_per_user(self.max_states_per_user)
            val_rows = self._validation_states(states, rng)
        state_text = None
        if self.user_tower == "text":
            state_text = torch.as_tensor(self._text_encoder().encode(
                self._history_texts(states.items)))
        self.history_ = self._train(states, val_rows, state_text, rng)
        self.top_layers_ = None  # its output now lives in the item tower's table
        self.item_vectors_ = self._all_item_vectors()
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _validation_states(self, states: States, rng: np.random.Generator) -> np.ndarray:
        """The last state of up to ``validation_users`` users (their targets are held out)."""
        last = pd.Series(np.arange(len(states))).groupby(states.user).max()
        has_target = np.isin(last.to_numpy(), states.target_state)
        candidates = last.to_numpy()[has_target]
        n = min(self.validation_users, len(candidates) // 5)
        return np.sort(rng.choice(candidates, size=n, replace=False)) if n else np.empty(0, int)

    def _rating_pairs(self, train: Dataset, rng: np.random.Generator) -> tuple[States, np.ndarray]:
        """MSE data: each user's whole history as one state; targets = (item, count) pairs."""
        weights = self.history_matrix(train.interactions, self.users_)
        codes, w = top_items(weights, self.max_history)
        # The rating: a ``rating`` column where the data has one (the seed's count triples),
        # else the number of purchase rows of the (user, item) pair.
        inter = train.interactions
        values = inter[S.RATING].to_numpy() if S.RATING in inter else None
        counts = interaction_matrix(inter, self.users_, self.items_, values).tocoo()
        states = States(np.arange(len(self.users_)), np.zeros(len(self.users_), int), codes, w,
                        counts.row.astype(np.int64), counts.col.astype(np.int64),
                        counts.data.astype(np.float32))
        n_val = len(counts.data) // 10
        return states, np.sort(rng.choice(len(counts.data), size=n_val, replace=False))

    def _batch_users(self, states: States, rows: np.ndarray, state_text, mask_items=None):
        codes, weights = states.items[rows], states.weights[rows].copy()
        if mask_items is not None:  # MSE: a count must not be read off its own history entry
            weights[codes == mask_items[:, None]] = 0.0
        text = state_text[torch.as_tensor(rows)] if state_text is not None else None
        return self._user_vectors(codes, weights, text)

    def _train(self, states: States, val_rows: np.ndarray, state_text, rng) -> list[dict]:
        mse = self.objective == "mse"
        params = [p for n, p in self._modules().named_parameters()
                  if p.requires_grad and (not n.startswith("lm.") or "lora_" in n)]
        groups = [{"params": params + ([self.bias_] if mse else [])}]
        if self.top_layers_ is not None and not self.lora_rank:
            groups.append({"params": list(self.top_layers_.parameters()),
                           "lr": self.finetune_lr})
        optimizer = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay,
                                      foreach=True)
        if mse:
            train_pairs = np.setdiff1d(np.arange(len(states.target_item)), val_rows)
            self.bias_.data[-1] = float(states.target_count[train_pairs].mean())
        else:
            train_pairs = np.flatnonzero(~np.isin(states.target_state, val_rows))
        counts = np.bincount(states.target_item[train_pairs], minlength=len(self.items_))
        log_q = torch.as_tensor(np.log(np.maximum(counts, 1) / counts.sum()), dtype=torch.float32)
        curve, best, best_state, stale = [], -np.inf, None, 0
        torch.manual_seed(self.seed)
        epochs = tqdm(range(self.max_epochs), desc="train two-tower", disable=not self.progress)
        for epoch in epochs:
            t0 = time.perf_counter()
            self._modules().train()
            losses = []
            for pairs in self._batches(states, train_pairs, rng):
                items = torch.as_tensor(states.target_item[pairs])
                srows = states.target_state[pairs]
                if mse:
                    u = self._batch_users(states, srows, state_text, states.target_item[pairs])
                else:  # one user vector per history, shared by its basket's items
                    distinct, inverse = np.unique(srows, return_inverse=True)
                    u = self._batch_users(states, distinct, state_text)[torch.as_tensor(inverse)]
                v = self._item_vectors(items, tuned=True)
                if mse:
                    pred = (u * v).sum(-1) + self.bias_[items] + self.bias_[-1]
                    loss = mse_loss(pred, torch.as_tensor(states.target_count[pairs]))
                else:
                    loss = in_batch_softmax_loss(u, v, items, self.logq * log_q[items],
                                                 self.temperature, torch.as_tensor(srows))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            if self.top_layers_ is not None:  # history items read the refreshed table
                self.item_tower_.text = self.top_layers_.embed_all()
            score = self._validate(states, val_rows, state_text)
            curve.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                          "validation": score, "seconds": time.perf_counter() - t0})
            epochs.set_postfix(loss=f"{curve[-1]['train_loss']:.3f}", val=f"{score:.4f}")
            if score > best:
                best, stale = score, 0
                best_state = copy.deepcopy((self._modules().state_dict(), self.bias_.data))
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            self._modules().load_state_dict(best_state[0])
            self.bias_.data = best_state[1]
        self._modules().eval()
        return curve

    def _batches(self, states: States, pairs: np.ndarray, rng: np.random.Generator):
        """Shuffled batches of about ``batch_size`` pairs; softmax batches take whole baskets."""
        if self.objective == "mse":
            order = rng.permutation(pairs)
            for start in range(0, len(order), self.batch_size):
                yield order[start:start + self.batch_size]
            return
        pairs = np.sort(pairs)  # grouped by state (states are built in order)
        state_ids, starts = np.unique(states.target_state[pairs], return_index=True)
        ends = np.r_[starts[1:], len(pairs)]
        per_batch = max(1, int(self.batch_size * len(state_ids) / max(len(pairs), 1)))
        order = rng.permutation(len(state_ids))
        for start in range(0, len(order), per_batch):
            chosen = order[start:start + per_batch]
            batch = np.concatenate([pairs[starts[i]:ends[i]] for i in chosen])
            if len(batch) >= 2:
                yield batch

    @torch.no_grad()
    def _validate(self, states: States, val_rows: np.ndarray, state_text) -> float:
        """Recall@20 on the held-out baskets (softmax) or minus MSE on held-out pairs (mse)."""
        self._modules().eval()
        if len(val_rows) == 0:
            return 0.0
        if self.objective == "mse":
            items = torch.as_tensor(states.target_item[val_rows])
            u = self._batch_users(states, states.target_state[val_rows], state_text,
                                  states.target_item[val_rows])
            pred = (u * self._item_vectors(items)).sum(-1) + self.bias_[items] + self.bias_[-1]
            return -float(mse_loss(pred, torch.as_tensor(states.target_count[val_rows])))
        u = self._batch_users(states, val_rows, state_text).numpy()
        scores = u @ self._all_item_vectors().T
        scores[:, ~self._train_items_mask(states, val_rows)] = -np.inf
        if self.targets == "new":
            rows = np.repeat(np.arange(len(val_rows)), states.items.shape[1])
            cols = states.items[val_rows].ravel()
            scores[rows[cols >= 0], cols[cols >= 0]] = -np.inf
        top = np.argpartition(-scores, 19, axis=1)[:, :20]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
        targets = pd.Series(states.target_item).groupby(states.target_state).unique()
        return float(np.mean(recall_at_k(top, [targets[r] for r in val_rows], 20)))

    def _train_items_mask(self, states: States, val_rows: np.ndarray) -> np.ndarray:
        """Items that are a target of some training state (what validation may rank)."""
        mask = np.zeros(len(self.items_), dtype=bool)
        mask[states.target_item[~np.isin(states.target_state, val_rows)]] = True
        return mask

    @torch.no_grad()
    def _all_item_vectors(self) -> np.ndarray:
        self._modules().eval()
        codes = torch.arange(len(self.items_))
        return np.vstack([self._item_vectors(codes[s:s + 8192]).numpy()
                          for s in range(0, len(codes), 8192)])

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def user_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        """User vectors from history rows (as built by :meth:`history_matrix`)."""
        codes, weights = top_items(history, self.max_history)
        text = None
        if self.user_tower == "text":
            text = torch.as_tensor(self._text_encoder().encode(self._history_texts(codes)))
        return self._user_vectors(codes, weights, text).numpy()

    def _score_history(self, history: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
        scores = self.user_vectors(history) @ self.item_vectors_.T
        if self.objective == "mse":
            bias = self.bias_.detach().numpy()
            scores += bias[:-1] + bias[-1]
        return scores

    # ------------------------------------------------------------------ saving
    def _fitted_state(self) -> dict:
        """The networks' weights (safetensors) and the training record; the item table
        is recomputed from them on load, as at the end of :meth:`fit`."""
        text = self.item_tower_.text
        return {"weights": dict(self._modules().state_dict()), "bias": self.bias_.data,
                "text_dim": int(text.shape[-1]) if text.numel() else 0,
                "history_": self.history_, "fit_seconds_": self.fit_seconds_}

    def _restore_state(self, state: dict, dataset: Dataset) -> None:
        self._check()
        self._remember(dataset)
        tensors = dict(state["weights"])
        text = tensors.get("item.text")
        rows, id_items = tensors.get("item.id_rows"), None
        if rows is not None:  # items with an id vector; the padding row is the table's last
            id_items = torch.nonzero(rows < tensors["item.ids.weight"].shape[0] - 1).flatten()
        self._build(text if text is not None and text.numel() else None, len(self.items_),
                    state["text_dim"], id_items)
        self.bias_.data = state["bias"]
        self.top_layers_ = None
        self._modules().load_state_dict(tensors)
        self._modules().eval()
        self.history_, self.fit_seconds_ = state["history_"], state["fit_seconds_"]
        self.item_vectors_ = self._all_item_vectors()
