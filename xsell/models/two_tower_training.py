"""The two-tower's training loop: AdamW, epochs, early stopping, the loss curve.

Kept apart from the model (:mod:`xsell.models.two_tower`) and from what is optimised
(:mod:`xsell.models.two_tower_objectives`), the way nanoGPT keeps ``train.py`` apart
from ``model.py``: the loop only knows that an objective yields batches, a loss per
batch and a validation score.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from tqdm import tqdm

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
        One entry per epoch: ``epoch``, ``train_loss``, ``validation``, ``seconds``.
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
    torch.manual_seed(config.seed)
    epochs = tqdm(range(config.max_epochs), desc="train two-tower", disable=not config.progress)
    for epoch in epochs:
        t0 = time.perf_counter()
        modules.train()
        losses = []
        for pairs in objective.batches(model, states, train_pairs, rng):
            loss = objective.loss(model, states, pairs, state_text, log_q)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        if model.top_layers_ is not None:  # history items read the refreshed table
            model.item_tower_.text = model.top_layers_.embed_all()
        modules.eval()
        score = objective.validate(model, states, val_rows, state_text)
        curve.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                      "validation": score, "seconds": time.perf_counter() - t0})
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
