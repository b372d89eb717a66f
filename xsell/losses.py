"""Training objectives of the two-tower model.

*In-batch sampled softmax* (implicit feedback): each (user, bought item) pair in a batch
is a positive; the other pairs' items are its negatives. With user vectors :math:`v_u`,
item vectors :math:`s_i` and temperature :math:`\\tau`,

.. math:: \\ell = -\\log \\frac{\\exp(v_u\\cdot s_i/\\tau - \\log q_i)}
          {\\sum_{j \\in B} \\exp(v_u\\cdot s_j/\\tau - \\log q_j)} .

Popular items appear as in-batch negatives more often than uniform sampling would put
them there, so without correction the model learns to push them down; subtracting
:math:`\\log q_j` (their sampling probability; Yi et al., 2019) undoes that bias.

*Mean squared error* (the seed's rating-style formulation): regress the score on a
purchase count, :math:`\\ell = (\\hat r_{ui} - r_{ui})^2`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def in_batch_softmax_loss(users: torch.Tensor, items: torch.Tensor, item_codes: torch.Tensor,
                          log_q: torch.Tensor | None = None, temperature: float = 0.05,
                          groups: torch.Tensor | None = None) -> torch.Tensor:
    """Mean in-batch softmax cross-entropy; row ``b``'s positive is column ``b``.

    Parameters
    ----------
    users, items : torch.Tensor
        ``(batch, dim)`` user and positive-item vectors.
    item_codes : torch.Tensor
        ``(batch,)`` item codes: another row's copy of the same item is not a negative.
    log_q : torch.Tensor, optional
        ``(batch,)`` log sampling probability of each row's item (log-Q correction).
    temperature : float
        Divides the dot products; small values sharpen the softmax.
    groups : torch.Tensor, optional
        ``(batch,)`` group of each row (e.g. the basket it came from): items of the same
        basket are all positives of that history, so they are not each other's negatives.
    """
    logits = users @ items.T / temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    same = item_codes[:, None] == item_codes[None, :]
    if groups is not None:
        same |= groups[:, None] == groups[None, :]
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(users), device=users.device))


def mse_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and observed ratings."""
    return F.mse_loss(predicted, target)
