"""Fine-tuning the top layers of the language model inside the item tower (CPU-sized).

Full fine-tuning re-runs the whole encoder for every item of every batch, which a laptop
CPU cannot afford. Two savings make it practical on a small catalogue:

* the frozen lower layers are run once: their output for every item is stored, and only
  the top ``k`` layers run during training;
* optionally those top layers stay frozen too and learn low-rank adapters instead (LoRA,
  Hu et al., 2021): :math:`W x + \\frac{\\alpha}{r} B A x` with :math:`A \\in
  \\mathbb{R}^{r \\times d}`, :math:`B \\in \\mathbb{R}^{d \\times r}`, ``B`` starting at zero
  so training starts exactly from the pre-trained model.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Sequence

import torch
from torch import nn
from tqdm import tqdm

from xsell.text import TextEncoder, mean_pool


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update.

    Parameters
    ----------
    base : torch.nn.Linear
        The pre-trained layer (frozen here).
    rank : int
        Rank ``r`` of the update.
    alpha : float
        Scale numerator: the update is multiplied by ``alpha / rank``.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float = 16.0):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(rank))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the scaled low-rank correction."""
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


_LOWER: dict = {}  # the last lower-layer outputs computed, by (model, layer, texts)
_KEEP_BYTES = 512 * 2**20  # larger ones (a whole big catalogue) are not kept


def lower_layer_outputs(encoder: TextEncoder, texts: Sequence[str], layer: int,
                        progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states after ``layer`` of every text (float16) and their token masks.

    Texts run in length-sorted batches, each padded only to its own longest text (the
    results are stored padded to the longest overall). The last result (up to 512 MiB)
    is kept, so comparing fine-tuning settings on one catalogue runs the frozen layers
    once.
    """
    texts = [str(t) for t in texts]
    key = (encoder.model_id, layer, hashlib.sha256("\n".join(texts).encode()).hexdigest())
    if key in _LOWER:
        return _LOWER[key]
    tokens = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)
    lengths = torch.tensor([len(ids) for ids in tokens["input_ids"]])
    width = int(lengths.max()) if len(texts) else 0
    lower = torch.zeros(len(texts), width, encoder.lm.config.hidden_size, dtype=torch.float16)
    mask = torch.arange(width)[None, :] < lengths[:, None]
    order = torch.argsort(lengths, descending=True, stable=True)
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), encoder.batch_size), desc="lower layers",
                          disable=not progress):
            idx = order[start:start + encoder.batch_size]
            batch = encoder.tokenize([texts[i] for i in idx])
            out = encoder.lm(**batch, output_hidden_states=True).hidden_states[layer]
            lower[idx, :out.shape[1]] = out.to(torch.float16)
    _LOWER.clear()
    if lower.numel() * lower.element_size() <= _KEEP_BYTES:
        _LOWER[key] = (lower, mask)
    return lower, mask


class TopLayers(nn.Module):
    """The top ``k`` encoder layers, trainable, run on stored outputs of the frozen rest.

    Parameters
    ----------
    encoder : xsell.text.TextEncoder
        Supplies the pre-trained model and tokenizer.
    texts : sequence of str
        One text per catalogue item.
    k : int
        Layers to fine-tune (from the top).
    lora_rank : int
        0: fine-tune all weights of those layers; > 0: LoRA adapters on their query and
        value projections, everything else frozen.
    progress : bool
        Progress bar while storing the lower layers' outputs.
    """

    def __init__(self, encoder: TextEncoder, texts: Sequence[str], k: int, lora_rank: int = 0,
                 progress: bool = True):
        super().__init__()
        lm = encoder.lm
        n_layers = len(lm.encoder.layer)
        if not 1 <= k <= n_layers:
            raise ValueError(f"finetune_layers must be in 1..{n_layers}, not {k}")
        self.layers = copy.deepcopy(lm.encoder.layer[n_layers - k:])
        if lora_rank:
            self.layers.requires_grad_(False)
            for layer in self.layers:
                attn = layer.attention.self
                attn.query = LoRALinear(attn.query, lora_rank)
                attn.value = LoRALinear(attn.value, lora_rank)
        else:
            self.layers.requires_grad_(True)
        lower, mask = lower_layer_outputs(encoder, texts, n_layers - k, progress)
        self.register_buffer("lower", lower, persistent=False)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings of items ``codes`` through the trainable top layers."""
        mask = self.mask[codes]
        width = int(mask.sum(1).max())  # trim padding shared by the whole batch
        mask = mask[:, :width]
        hidden = self.lower[codes][:, :width].float()
        additive = (~mask[:, None, None, :]).float() * torch.finfo(hidden.dtype).min
        for layer in self.layers:
            out = layer(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        return mean_pool(hidden, mask.long())

    @torch.no_grad()
    def embed_all(self, chunk: int = 512) -> torch.Tensor:
        """Embeddings of every item (for the stored table the history side reads)."""
        codes = torch.arange(len(self.mask))
        return torch.cat([self(codes[s:s + chunk]) for s in range(0, len(codes), chunk)])
