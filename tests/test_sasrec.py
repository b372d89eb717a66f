"""SASRec: sequences and windows built by hand, and a causal mask that leaks no future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from xsell.models.sasrec import SASRec, basket_sequences, training_windows
from xsell.models.sasrec_network import SASRecNetwork, causal_mask

CODES = pd.Index(list("ABCDE"))  # codes 0..4, padding 5
PAD = 5


def _rows(baskets: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([(u, i, t) for u, h in baskets.items() for t, b in enumerate(h)
                         for i in b], columns=["user_id", "item_id", "seq"])


def test_windows_hold_every_transition_once():
    rows = _rows({"u": ["A", "B", "C", "D"], "w": ["E", "A"]})
    inputs, targets = training_windows(rows, pd.Index(["u", "w"]), CODES, max_len=2,
                                       max_basket=2)
    first = lambda a: [[int(x[0]) for x in window] for window in a]  # noqa: E731
    # u has 3 transitions (A->B, B->C, C->D): two windows, the latest (first) ending at
    # C->D. w has one (E->A): one window, left-padded.
    assert first(inputs) == [[1, 2], [PAD, 0], [PAD, 4]]
    assert first(targets) == [[2, 3], [PAD, 1], [PAD, 0]]
    # Baskets keep several items; slots beyond max_basket are dropped.
    rows = _rows({"u": ["AB", "CDE"]})
    inputs, targets = training_windows(rows, pd.Index(["u"]), CODES, 1, 2)
    assert sorted(inputs[0, 0].tolist()) == [0, 1]
    assert len(set(targets[0, 0].tolist()) & {2, 3, 4}) == 2


def test_sequences_are_the_latest_baskets_left_padded():
    rows = _rows({"u": ["A", "B", "C"], "w": ["D"]})
    seqs = basket_sequences(rows, pd.Index(["u", "w", "nobody"]), CODES, max_len=2,
                            max_basket=1)
    assert seqs[:, :, 0].tolist() == [[1, 2], [PAD, 3], [PAD, PAD]]
    # Items the network has no code for are dropped.
    seqs = basket_sequences(_rows({"u": ["Z", "A"]}), pd.Index(["u"]), CODES, 2, 1)
    assert seqs[0, :, 0].tolist() == [PAD, 0]


def test_causal_mask_by_hand():
    real = torch.tensor([[False, True, True]])
    mask = causal_mask(real)[0, 0].int().tolist()
    # Row q: what position q reads. Padding (0) reads itself only; nothing reads the future.
    assert mask == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_no_position_reads_a_later_basket():
    torch.manual_seed(0)
    net = SASRecNetwork(n_items=5, dim=8, max_len=4, layers=2, heads=2, dropout=0.0).eval()
    seq = torch.tensor([[[PAD, PAD], [0, 1], [2, PAD], [3, 4]]])
    changed = seq.clone()
    changed[0, 3] = torch.tensor([1, 2])  # another last basket
    with torch.no_grad():
        a, b = net(seq), net(changed)
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6)  # the past is untouched
    assert not torch.allclose(a[0, 3], b[0, 3])         # the changed position itself moves
    # Changing a middle basket moves it and what follows, never what precedes it.
    middle = seq.clone()
    middle[0, 1] = torch.tensor([4, PAD])
    with torch.no_grad():
        c = net(middle)
    assert torch.allclose(a[0, 0], c[0, 0], atol=1e-6)
    assert not torch.allclose(a[0, 2], c[0, 2]) and not torch.allclose(a[0, 3], c[0, 3])


def test_learns_a_sequence_and_stops_early():
    # Everyone walks A -> B -> C -> D -> E: after D comes E.
    rows = _rows({f"u{i}": ["A", "B", "C", "D", "E"][: 3 + i % 3] for i in range(40)})
    from xsell.data.dataset import Dataset

    data = Dataset.from_frames(rows.drop(columns="seq").assign(
        basket_id=rows["user_id"] + "-" + rows["seq"].astype(str)),
        pd.DataFrame({"item_id": list("ABCDE"), "title": list("ABCDE")}))
    model = SASRec(max_len=3, dim=16, lr=1e-2, max_epochs=60, patience=5, dropout=0.0,
                   validation_users=10).fit(data)
    # Among items not yet bought, the next in the walk comes first (A is as "new" as E
    # after B, C, D; D and E as new as C after A, B).
    history = _rows({"new": ["B", "C", "D"]})
    assert model.recommend(["new"], k=1, history=history, exclude_seen=True)[0, 0] == "E"
    history = _rows({"new": ["A", "B"]})
    assert model.recommend(["new"], k=1, history=history, exclude_seen=True)[0, 0] == "C"
    assert 1 <= len(model.history_) <= 60
    best = max(e["validation"] for e in model.history_)
    assert best > 0.5


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="max_len"):
        SASRec(max_len=0)._check_params()
    with pytest.raises(ValueError, match="heads"):
        SASRec(dim=10, heads=3)._check_params()
    with pytest.raises(ValueError, match="dropout"):
        SASRec(dropout=1.0)._check_params()
    assert np.prod([len(v) for v in SASRec.param_grid.values()]) <= 4


def test_sampled_loss_is_the_softmax_over_target_and_negatives():
    torch.manual_seed(0)
    model = SASRec(max_len=2, dim=8, heads=2, negatives=3, dropout=0.0)
    model.codes_ = CODES
    model.network_ = model._network().eval()
    x = torch.tensor([[[PAD, PAD], [0, 1]]])
    y = torch.tensor([[[PAD, PAD], [2, 3]]])
    log_q = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2]))
    loss = model._loss(x, y, log_q, torch.Generator().manual_seed(1))
    sample = torch.multinomial(log_q.exp(), 3, replacement=True,
                               generator=torch.Generator().manual_seed(1))
    h = model.network_(x)[0, 1]
    table = model.network_.item_table()
    expected = []
    for t in (2, 3):
        logits = torch.cat([(h @ table[t] - log_q[t])[None], h @ table[sample].T - log_q[sample]])
        expected.append(torch.log_softmax(logits, 0)[0])
    assert loss.item() == pytest.approx(-torch.stack(expected).mean().item(), rel=1e-5)
    # Full softmax: the mean log-probability of the targets among all items.
    model.negatives = None
    full = model._loss(x, y)
    log_p = torch.log_softmax(h @ table.T, 0)
    assert full.item() == pytest.approx(-(log_p[2] + log_p[3]).item() / 2, rel=1e-5)
