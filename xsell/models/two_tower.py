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

The model is this module; its settings as a checked record are
:mod:`~xsell.models.two_tower_config`, the two formulations
:mod:`~xsell.models.two_tower_objectives` and the training loop
:mod:`~xsell.models.two_tower_training`.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from xsell.data import schema as S
from xsell.data.dataset import Dataset
from xsell.models import distributed
from xsell.models.base import Recommender
from xsell.models.behaviour import States, decay_weights, top_items
from xsell.models.towers import ItemTower, TextUserTower, UserTower
from xsell.models.two_tower_config import TwoTowerConfig
from xsell.models.two_tower_objectives import OBJECTIVES
from xsell.models.two_tower_training import train as train_towers
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
        At most this many users -- and at most a fifth of those with a target in their
        last training basket -- have that basket held out for early stopping (the number
        used is ``validation_users_``).
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
    def config(self) -> TwoTowerConfig:
        """The settings as a checked record (raises ValueError naming a bad one)."""
        return TwoTowerConfig(**self.get_params())

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
            # index_select, not [], to gather: its backward (index_add) is about 2x faster.
            vec = self.item_tower_(torch.as_tensor(distinct)).index_select(
                0, torch.as_tensor(inverse.ravel()))
            u = self.user_tower_(vec.reshape(*codes.shape, -1), torch.as_tensor(weights))
        return torch.nn.functional.normalize(u, dim=-1) if self.objective == "softmax" else u

    def _item_vectors(self, codes: torch.Tensor, tuned: bool = False) -> torch.Tensor:
        top = getattr(self, "top_layers_", None)
        v = self.item_tower_(codes, top(codes) if tuned and top is not None else None)
        return torch.nn.functional.normalize(v, dim=-1) if self.objective == "softmax" else v

    # ------------------------------------------------------------------ fit
    def fit(self, train: Dataset) -> TwoTower:
        """Encode the catalogue (cached), build the training states, train with early stopping.

        Under ``torchrun`` (:mod:`xsell.models.distributed`) each process encodes its
        share of the texts and trains on its share of every batch; the fitted model is
        the one-process model at the same ``batch_size``, to float rounding.
        """
        config = self.config()
        start = time.perf_counter()
        self._remember(train)
        rng = np.random.default_rng(self.seed)
        n_items = len(self.items_)
        text = None
        text_dim = 0
        if config.reads_text:
            texts = item_texts(train).tolist()
            if self.text_items == "all":
                embeddings = distributed.encode_texts(self._text_encoder(), texts)
            else:  # never-bought rows stay zero: no training pair or scored item reads them
                seen = np.flatnonzero(self.seen_items_)
                part = distributed.encode_texts(self._text_encoder(), [texts[i] for i in seen])
                embeddings = np.zeros((len(texts), part.shape[1]), dtype=part.dtype)
                embeddings[seen] = part
            text_dim = embeddings.shape[1]
            text = torch.as_tensor(embeddings) if self.item_features != "id" else None
        self._build(text, n_items, text_dim, torch.as_tensor(np.flatnonzero(self.seen_items_)))
        self.top_layers_ = None
        if self.finetune_layers:
            from xsell.models.finetune import TopLayers

            self.top_layers_ = TopLayers(self._text_encoder(), texts, self.finetune_layers,
                                         self.lora_rank, self.progress)
        objective = OBJECTIVES[self.objective]
        states, val_rows = objective.training_data(self, train, rng)
        state_text = None
        if self.user_tower == "text":
            state_text = torch.as_tensor(distributed.encode_texts(
                self._text_encoder(), self._history_texts(states.items)))
        self.validation_users_ = len(val_rows)
        self.history_ = train_towers(self, objective, states, val_rows, state_text, rng)
        self.top_layers_ = None  # its output now lives in the item tower's table
        self.item_vectors_ = self._all_item_vectors()
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _batch_users(self, states: States, rows: np.ndarray, state_text, mask_items=None):
        """User vectors of training states (``mask_items``: zero that item's own weight)."""
        codes, weights = states.items[rows], states.weights[rows].copy()
        if mask_items is not None:
            weights[codes == mask_items[:, None]] = 0.0
        text = state_text[torch.as_tensor(rows)] if state_text is not None else None
        return self._user_vectors(codes, weights, text)

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

    def _score_history(self, history: sp.csr_matrix, rows: np.ndarray,
                       codes: np.ndarray | None = None) -> np.ndarray:
        items = self.item_vectors_ if codes is None else self.item_vectors_[codes]
        scores = self.user_vectors(history) @ items.T
        if self.objective == "mse":
            bias = self.bias_.detach().numpy()
            scores += (bias[:-1] if codes is None else bias[codes]) + bias[-1]
        return scores

    def score(self, users, items=None, history: pd.DataFrame | None = None) -> np.ndarray:
        """:meth:`~xsell.models.base.Recommender.score`; with ``items`` only those columns are computed (a
        search re-ranks a few hundred products, not the catalogue)."""
        if items is None:
            return super().score(users, items, history)
        matrix, rows = self._histories(users, history)
        return self._score_history(matrix, rows, self.dataset_.item_codes(items))

    @torch.no_grad()
    def text_item_vectors(self, embeddings: np.ndarray) -> np.ndarray:
        """Item vectors of products the fit never saw, from their text embeddings (this
        model's encoder, :func:`xsell.text.item_texts` form): the item tower's text path
        alone, as for a catalogue item with no id vector.

        Raises
        ------
        ValueError
            If the model reads no text (``item_features="id"``).
        """
        if self.item_tower_.proj is None:
            raise ValueError("this two-tower reads item ids only (item_features='id'): it "
                             "cannot place a product it was not fitted on")
        self._modules().eval()
        v = self.item_tower_.proj(torch.as_tensor(np.asarray(embeddings, dtype=np.float32)))
        return (torch.nn.functional.normalize(v, dim=-1) if self.objective == "softmax"
                else v).numpy()

    def score_text_items(self, users, embeddings: np.ndarray) -> np.ndarray:
        """Scores of ``users`` for products the fit never saw (:meth:`text_item_vectors`;
        with the MSE objective, the global mean and no item bias)."""
        matrix, _ = self._histories(users, None)
        scores = self.user_vectors(matrix) @ self.text_item_vectors(embeddings).T
        if self.objective == "mse":
            scores += float(self.bias_[-1])
        return scores

    # ------------------------------------------------------------------ saving
    def _fitted_state(self) -> dict:
        """The networks' weights (safetensors), the training record and the item table --
        what the end of :meth:`fit` computes from the weights, saved so that serving
        processes memory-map one copy of it (:mod:`xsell.checkpoint`)."""
        text = self.item_tower_.text
        return {"weights": dict(self._modules().state_dict()), "bias": self.bias_.data,
                "item_vectors_": self.item_vectors_,
                "text_dim": int(text.shape[-1]) if text.numel() else 0,
                "history_": self.history_, "fit_seconds_": self.fit_seconds_,
                "validation_users_": self.validation_users_}

    def _restore_state(self, state: dict, dataset: Dataset) -> None:
        self.config()
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
        self.validation_users_ = state["validation_users_"]
        self.item_vectors_ = state.get("item_vectors_")  # read-only (perhaps memory-mapped)
        if self.item_vectors_ is None:  # saved before the table was
            self.item_vectors_ = self._all_item_vectors()
