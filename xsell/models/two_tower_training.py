"""The two-tower's training loop: AdamW, epochs, early stopping, the loss curve.

Kept apart from the model (:mod:`xsell.models.two_tower`) and from what is optimised
(:mod:`xsell.models.two_tower_objectives`), the way nanoGPT keeps ``train.py`` apart
from ``model.py``: the loop only knows that an objective yields batches, a loss per
batch and a validation score.

Launched by ``torchrun`` (:mod:`xsell.models.distributed`), the loop is data-parallel:
every process holds the same states and draws the same batches from the same seeded
generator, computes the loss of its contiguous share of each batch, and
``DistributedDataParallel`` averages the gradients, so every step -- and so the trained
weights -- equal one process's at the same batch size, to float rounding. (Without
dropout, that is: ``id_dropout`` and, when fine-tuning, the encoder's dropout draw their
masks in each process, which are not the masks one process draws.)
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from xsell.models import distributed
from xsell.models.behaviour import States
from xsell.models.two_tower_objectives import Objective


def train(model, objective: Objective, states: States, val_rows: np.ndarray, state_text,
          rng: np.random.Generator) -> list[dict]:
    """Train ``model``'s towers (and LM layers being fine-tuned) in place.

    Each epoch runs the objective's batches through AdamW, then scores the held-out
    rows; training stops after ``patience`` epochs without a better score, and the best
    epoch's weights are restored.

    Returns
    -------
    list of dict
        One entry per epoch: ``epoch``, ``train_loss``, ``validation``, ``seconds``; under
        ``torchrun`` also ``processes`` and ``rows_per_process`` (the training rows each
        process computed the loss of).
    """
    config = model.config()
    modules = model._modules()
    params = [p for n, p in modules.named_parameters()
              if p.requires_grad and (not n.startswith("lm.") or "lora_" in n)]
    groups = [{"params": params + ([model.bias_] if objective.trains_bias else [])}]
    if model.top_layers_ is not None and not config.lora_rank:
        groups.append({"params": list(model.top_layers_.parameters()),
                       "lr": config.finetune_lr})
    # fused: one kernel per step over every parameter; on CPU about 8x faster than
    # foreach for the id table, which AdamW updates whole every step.
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay,
                                  fused=True)
    train_pairs = objective.train_pairs(states, val_rows)
    objective.start(model, states, train_pairs)
    counts = np.bincount(states.target_item[train_pairs], minlength=len(model.items_))
    log_q = torch.as_tensor(np.log(np.maximum(counts, 1) / counts.sum()), dtype=torch.float32)
    curve, best, best_state, stale = [], -np.inf, None, 0
    world, ddp = distributed.world_size(), None
    if world > 1:
        # The item table is a buffer every rank built the same way: not re-sent each step.
        ddp = DistributedDataParallel(_ShareLoss(model, objective, states, state_text, log_q,
                                                 modules), forward_sync_buffers=False)
    torch.manual_seed(config.seed)
    epochs = tqdm(range(config.max_epochs), desc="train two-tower", disable=not config.progress)
    for epoch in epochs:
        t0 = time.perf_counter()
        modules.train()
        losses, rows = [], 0
        for pairs in objective.batches(model, states, train_pairs, rng):
            if ddp is None:
                loss = objective.loss(model, states, pairs, state_text, log_q)
                optimizer.zero_grad()
                loss.backward()
            else:
                # This share's part of the batch's mean loss; DDP averages the ranks'
                # gradients, so scaling by their number gives the batch mean's gradient.
                loss = ddp(pairs)
                optimizer.zero_grad()
                (loss * world).backward()
                share = distributed.my_share(len(pairs))
                rows += share.stop - share.start
            optimizer.step()
            losses.append(loss.item())
        if model.top_layers_ is not None:  # history items read the refreshed table
            model.item_tower_.text = model.top_layers_.embed_all()
        modules.eval()
        # Every rank holds the same weights; rank 0 scores them and the others follow it.
        score = (objective.validate(model, states, val_rows, state_text)
                 if distributed.rank() == 0 else 0.0)
        score = distributed.from_rank0(score)
        entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses))}
        if ddp is not None:  # the shares' losses add up to their batch's
            mine = np.zeros(world)
            mine[distributed.rank()] = rows
            totals = distributed.sum_over_ranks([sum(losses), *mine])
            entry["train_loss"] = float(totals[0] / len(losses))
            entry.update(processes=world, rows_per_process=totals[1:].astype(int).tolist())
        curve.append({**entry, "validation": score, "seconds": time.perf_counter() - t0})
        epochs.set_postfix(loss=f"{curve[-1]['train_loss']:.3f}", val=f"{score:.4f}")
        if score > best:
            best, stale = score, 0
            best_state = copy.deepcopy((modules.state_dict(), model.bias_.data))
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        modules.load_state_dict(best_state[0])
        model.bias_.data = best_state[1]
    modules.eval()
    return curve


class _ShareLoss(torch.nn.Module):
    """The loss of this rank's share of a batch, as one module's ``forward``: what
    ``DistributedDataParallel`` wraps (it arms its gradient all-reduce in ``forward``).

    Holds the trained modules -- and the item bias when the objective trains it -- so
    DDP all-reduces the gradients of exactly what the optimiser updates.
    """

    def __init__(self, model, objective: Objective, states: States, state_text,
                 log_q: torch.Tensor, modules: torch.nn.ModuleDict):
        super().__init__()
        self.towers = modules
        if objective.trains_bias:
            self.bias = model.bias_
        self._loss = lambda pairs: objective.loss(model, states, pairs, state_text, log_q,
                                                  shard=True)

    def forward(self, pairs: np.ndarray) -> torch.Tensor:
        """This share's part of the mean loss of batch ``pairs``."""
        loss = self._loss(pairs)
        share = distributed.my_share(len(pairs))
        if share.stop == share.start:
            # A batch with fewer rows than processes leaves this one none; DDP still
            # waits for a gradient of every parameter: zeros, through a zero term.
            loss = loss + sum(p.sum() for p in self.parameters()) * 0.0
        return loss
