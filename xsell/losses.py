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
                          groups: torch.Tensor | None = None, first: int = 0,
                          total: int | None = None) -> torch.Tensor:
    """Mean in-batch softmax cross-entropy; row ``b``'s positive is column ``b``.

    Parameters
    ----------
    users, items : torch.Tensor
        ``(batch, dim)`` user and positive-item vectors (``users`` may be a slice of the
        batch's rows: see ``first``).
    item_codes : torch.Tensor
        ``(batch,)`` item codes: another row's copy of the same item is not a negative.
    log_q : torch.Tensor, optional
        ``(batch,)`` log sampling probability of each row's item (log-Q correction).
    temperature : float
        Divides the dot products; small values sharpen the softmax.
    groups : torch.Tensor, optional
        ``(batch,)`` group of each row (e.g. the basket it came from): items of the same
        basket are all positives of that history, so they are not each other's negatives.
    first : int
        ``users`` are the batch's rows ``first, first + 1, ...`` (one process's share of
        a batch split across processes); their positives are those columns.
    total : int, optional
        Rows of the whole batch: the loss is then the sum over ``users``' rows divided by
        ``total`` -- this share's part of the batch's mean, so the shares' losses add up
        to it.
    """
    logits = users @ items.T / temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    rows = slice(first, first + len(users))
    positives = torch.arange(rows.start, rows.stop, device=users.device)
    same = item_codes[rows, None] == item_codes[None, :]
    if groups is not None:
        same |= groups[rows, None] == groups[None, :]
    same[torch.arange(len(users), device=users.device), positives] = False
    logits = logits.masked_fill(same, float("-inf"))
    if total is None:
        return F.cross_entropy(logits, positives)
    return F.cross_entropy(logits, positives, reduction="sum") / total


def mse_loss(predicted: torch.Tensor, target: torch.Tensor,
             total: int | None = None) -> torch.Tensor:
    """Mean squared error between predicted and observed ratings.

    ``total``: rows of the whole batch when these are one process's share of it (as in
    :func:`in_batch_softmax_loss`): the sum of squared errors divided by ``total``.
    """
    if total is None:
        return F.mse_loss(predicted, target)
    return F.mse_loss(predicted, target, reduction="sum") / total
