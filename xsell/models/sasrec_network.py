"""SASRec's network: a causal transformer over a user's last baskets (Kang & McAuley, ICDM 2018).

Each position holds one basket, embedded as the mean of its items' id vectors (a basket
of one item -- a review-style log -- is exactly SASRec's item token); learned position
vectors are added, and pre-norm self-attention blocks let each position read only itself
and the baskets before it. The output at position :math:`t` scores the items of basket
:math:`t+1` by a dot product with the same item table (tied input and output vectors).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def causal_mask(real: torch.Tensor) -> torch.Tensor:
    """``(batch, 1, L, L)`` boolean: position ``q`` may read position ``k``.

    ``k <= q`` (nothing from the future) and ``k`` holds a basket; a padding position
    reads itself only, so no row of the attention is empty.
    """
    length = real.shape[1]
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=real.device))
    allowed = causal & real[:, None, :]
    allowed = allowed | torch.eye(length, dtype=torch.bool, device=real.device)
    return allowed[:, None]


class CausalBlock(nn.Module):
    """Pre-norm transformer block: masked self-attention, then a position-wise MLP."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim),
                                 nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x``: (batch, L, dim); ``mask``: :func:`causal_mask`."""
        b, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(dim, dim=2)
        q, k, v = (t.view(b, length, self.heads, dim // self.heads).transpose(1, 2)
                   for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, length, dim)))
        return x + self.mlp(self.norm2(x))


class SASRecNetwork(nn.Module):
    """Item table, position table, causal blocks.

    Parameters
    ----------
    n_items : int
        Items with a vector; code ``n_items`` is the padding code.
    dim : int
        Vector size.
    max_len : int
        Baskets read (the last ones).
    layers, heads : int
        Transformer blocks and attention heads.
    dropout : float
        Dropout on the inputs, attention and MLP outputs.
    """

    def __init__(self, n_items: int, dim: int, max_len: int, layers: int, heads: int,
                 dropout: float):
        super().__init__()
        self.pad = n_items
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        nn.init.normal_(self.items.weight, std=1.0 / math.sqrt(dim))
        with torch.no_grad():
            self.items.weight[n_items].zero_()
        self.positions = nn.Embedding(max_len, dim)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.blocks = nn.ModuleList(CausalBlock(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, baskets: torch.Tensor) -> torch.Tensor:
        """``baskets``: (batch, L, S) item codes, left-padded with ``pad`` -> (batch, L, dim)."""
        present = baskets != self.pad
        size = present.sum(-1, keepdim=True).clamp(min=1)
        x = self.items(baskets).sum(2) / size  # the padding row is zero
        real = present.any(-1)
        length = baskets.shape[1]
        x = x * math.sqrt(x.shape[-1]) + self.positions.weight[-length:]
        x = self.drop(x) * real[..., None]
        mask = causal_mask(real)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def item_table(self) -> torch.Tensor:
        """(n_items, dim): the output vectors (tied with the inputs)."""
        return self.items.weight[:-1]
