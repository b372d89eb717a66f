"""The two towers as small ``torch`` modules: items from text (and ids), users from history.

Both map into the same ``dim``-dimensional space, where a user-item score is the dot
product :math:`\\hat r_{ui} = v_u \\cdot s_i` (the seed's formulation).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ItemTower(nn.Module):
    """:math:`s_i = W e_i + b + z_i`: a projection of the frozen text embedding plus an id vector.

    Parameters
    ----------
    text : torch.Tensor or None
        ``(n_items, text_dim)`` frozen LM embeddings, one row per catalogue item (a buffer,
        not trained); ``None`` for an id-only tower.
    n_items : int
        Catalogue size.
    dim : int
        Shared dimension.
    use_ids : bool
        Add a learned vector :math:`z_i` per item. It starts at zero, so an item never
        seen in training keeps exactly its text vector (that is how cold items are scored).
    id_items : torch.Tensor, optional
        Codes of the items that get an id vector (default all); the others get zero.
    id_dropout : float
        In training, the probability of dropping an item's id vector (text + id towers).
    """

    def __init__(self, text: torch.Tensor | None, n_items: int, dim: int, use_ids: bool,
                 id_items: torch.Tensor | None = None, id_dropout: float = 0.0):
        super().__init__()
        self.id_dropout = id_dropout
        if text is None and not use_ids:
            raise ValueError("an item tower needs text, ids or both")
        self.register_buffer("text", text if text is not None else torch.empty(0))
        self.proj = nn.Linear(text.shape[1], dim) if text is not None else None
        self.ids = None
        if use_ids:
            # Only items seen in training get a row (the rest share a zero padding row), so
            # the table -- and every optimiser step over it -- is as small as it can be.
            id_items = torch.arange(n_items) if id_items is None else id_items
            rows = torch.full((n_items,), len(id_items), dtype=torch.long)
            rows[id_items] = torch.arange(len(id_items))
            self.register_buffer("id_rows", rows)
            self.ids = nn.Embedding(len(id_items) + 1, dim, padding_idx=len(id_items))
            with torch.no_grad():
                if self.proj is not None:
                    self.ids.weight.zero_()
                else:
                    nn.init.normal_(self.ids.weight, std=1.0 / math.sqrt(dim))
                    self.ids.weight[-1].zero_()

    def forward(self, codes: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors of items ``codes``; ``text`` overrides the stored embeddings (fine-tuning)."""
        out = 0
        if self.proj is not None:
            out = self.proj(self.text[codes] if text is None else text)
        if self.ids is not None:
            z = self.ids(self.id_rows[codes])
            if self.training and self.id_dropout and self.proj is not None:
                # Drop whole id vectors at random, so the text path alone must score well:
                # that is all a never-bought (cold) item has at prediction time.
                keep = torch.rand(z.shape[:-1] + (1,)) >= self.id_dropout
                z = z * keep
            out = out + z
        return out


class UserTower(nn.Module):
    """A user vector from the vectors of their history items and their decayed weights.

    ``kind``:

    - ``"mean"``: :math:`v_u = W_u \\sum_j \\tilde w_{uj} s_j` with
      :math:`\\tilde w = w / \\sum w` (time-decayed average);
    - ``"attention"``: one learned query attends over the history with the decay as a
      prior, :math:`a_j \\propto \\exp(q \\cdot s_j / \\sqrt d + \\beta \\log w_{uj})`, added
      to the decayed average;
    - ``"transformer"``: one self-attention layer lets history items interact before
      the decayed average.

    Parameters
    ----------
    dim : int
        Shared dimension.
    kind : {"mean", "attention", "transformer"}
        Pooling.
    """

    KINDS = ("mean", "attention", "transformer")

    def __init__(self, dim: int, kind: str = "mean"):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"user tower kind must be one of {self.KINDS}, not {kind!r}")
        self.kind = kind
        self.out = nn.Linear(dim, dim)
        with torch.no_grad():  # start as the identity: pooling alone is a sound first guess
            self.out.weight.copy_(torch.eye(dim))
            self.out.bias.zero_()
        if kind == "attention":
            self.query = nn.Parameter(torch.zeros(dim))
            self.beta = nn.Parameter(torch.ones(()))
        if kind == "transformer":
            self.layer = nn.TransformerEncoderLayer(dim, nhead=4 if dim % 4 == 0 else 1,
                                                    dim_feedforward=2 * dim, dropout=0.0,
                                                    batch_first=True)

    def forward(self, items: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``items``: (batch, L, dim) history vectors; ``weights``: (batch, L), 0 = padding."""
        valid = weights > 0
        share = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
        if self.kind == "transformer":
            # Rows without history would give NaN attention; let them attend to themselves.
            pad = ~valid & valid.any(1, keepdim=True)
            items = self.layer(items, src_key_padding_mask=pad)
        pooled = (share.unsqueeze(-1) * items).sum(1)
        if self.kind == "attention":
            logits = items @ self.query / math.sqrt(items.shape[-1])
            logits = logits + self.beta * torch.log(weights.clamp(min=1e-12))
            attn = torch.softmax(logits.masked_fill(~valid, -1e9), dim=1) * valid
            pooled = pooled + (attn.unsqueeze(-1) * items).sum(1)
        return self.out(pooled)


class TextUserTower(nn.Module):
    """The seed's variant: the history serialised as text, embedded by the LM, projected.

    Parameters
    ----------
    text_dim, dim : int
        LM embedding and shared dimensions.
    """

    def __init__(self, text_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(text_dim, dim)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """``text``: (batch, text_dim) embeddings of the serialised histories."""
        return self.proj(text)
