"""Data-parallel two-tower training: two processes under torchrun train the one-process model.

The two-process run is the command a user types (``torchrun ... -m xsell.cli
train-two-tower``); the one-process run is the ordinary :meth:`TwoTower.fit` in this
process, at the same global batch size, on the same data. Measured on a 2-core CPU: the
weights differ by at most 3.4e-7 (the id table; the text table by 9e-8), so the
tolerance of 1e-5 is some 30 times the rounding seen and far below the 3e-4 one AdamW
step can move a weight.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from xsell.cli import SERVE_MIN_BASKETS, main
from xsell.data.prepare import prepare
from xsell.data.synthetic import make_synthetic_shop
from xsell.losses import in_batch_softmax_loss, mse_loss
from xsell.models import distributed
from xsell.models.two_tower import TwoTower
from xsell.text import EmbeddingCache, item_texts

#: The model both runs train (the CLI's flags for the two-process run).
SETTINGS = dict(dim=16, batch_size=256, max_epochs=3, seed=3, progress=False)


def test_two_processes_train_the_one_process_model(tmp_path, tiny_lm_dir, monkeypatch):
    out, cache = tmp_path / "model", tmp_path / "cache-2"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "xsell.cli", "train-two-tower", "--synthetic",
               "--users", "150", "--seed", "3", "--encoder", str(tiny_lm_dir), "--dim", "16",
               "--batch-size", "256", "--epochs", "3", "--out", str(out)]
    env = {**os.environ, "XSELL_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "trained by 2 process(es) (gloo)" in done.stdout

    # The ordinary fit, encoding the catalogue afresh (another cache) and unsharded.
    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path / "cache-1"))
    data = prepare(make_synthetic_shop(n_users=150, seed=3),
                   min_user_baskets=SERVE_MIN_BASKETS).data
    one = TwoTower(encoder=str(tiny_lm_dir), **SETTINGS).fit(data)
    two = TwoTower.load(out, data)  # refuses a model fitted on other data
    assert two.get_params() == one.get_params()
    mine, theirs = one._modules().state_dict(), two._modules().state_dict()
    assert mine.keys() == theirs.keys()
    # The catalogue's text table: each process encoded half, the halves gathered.
    assert torch.allclose(theirs.pop("item.text"), mine.pop("item.text"), rtol=0, atol=1e-6)
    for name, weights in mine.items():
        assert torch.allclose(theirs[name], weights, rtol=0, atol=1e-5), name
    assert np.allclose(two.item_vectors_, one.item_vectors_, rtol=0, atol=1e-5)

    # The same epochs, losses and early-stopping scores -- and each process did half.
    assert len(two.history_) == len(one.history_)
    for alone, shared in zip(one.history_, two.history_, strict=True):
        assert "processes" not in alone and shared["processes"] == 2
        assert shared["train_loss"] == pytest.approx(alone["train_loss"], rel=1e-6)
        assert shared["validation"] == pytest.approx(alone["validation"], abs=1e-9)
        first, second = shared["rows_per_process"]
        # Shares of a batch differ by at most one row: by at most one row per batch here.
        assert 0 < second <= first <= second + (first + second) // 100

    # Rank 0 stored the vectors the cache lacked, once, for every catalogue text.
    folders = list((cache / "embeddings").iterdir())
    assert len(folders) == 1 and len(list(folders[0].glob("*.npz"))) == 1
    assert len(EmbeddingCache(folders[0])) == item_texts(data).nunique()


def test_the_shares_losses_add_up_to_the_batch_loss():
    torch.manual_seed(0)
    u, v = torch.randn(7, 4, requires_grad=True), torch.randn(7, 4)
    codes, groups = torch.tensor([1, 2, 1, 3, 4, 5, 2]), torch.tensor([0, 0, 1, 1, 2, 2, 2])
    log_q = torch.log(torch.full((7,), 1 / 7))
    whole = in_batch_softmax_loss(u, v, codes, log_q, 0.1, groups)
    bounds = distributed.shares(7, 3)
    parts = [in_batch_softmax_loss(u[a:b], v, codes, log_q, 0.1, groups, first=a, total=7)
             for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    assert torch.isclose(sum(parts), whole)
    grad = torch.autograd.grad(whole, u)[0]
    assert torch.allclose(torch.autograd.grad(sum(parts), u)[0], grad, atol=1e-6)
    split = mse_loss(u[:3, 0], v[:3, 0], total=7) + mse_loss(u[3:, 0], v[3:, 0], total=7)
    assert torch.isclose(split, mse_loss(u[:, 0], v[:, 0]))


def test_one_process_helpers_are_the_identity():
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.shares(10, 3).tolist() == [0, 4, 7, 10]
    assert distributed.shares(1, 2).tolist() == [0, 1, 1]
    assert distributed.my_share(5) == slice(0, 5)
    block = torch.ones(3, 2, requires_grad=True)
    assert distributed.gather_rows(block, [3]) is block
    assert distributed.from_rank0(0.25) == 0.25
    assert distributed.sum_over_ranks([1.0, 2.0]).tolist() == [1.0, 2.0]


def test_bad_flags_are_named_before_any_work(tmp_path, capsys):
    from xsell.cli import DEFAULT_ENCODER
    from xsell.text import DEFAULT_MODEL

    assert DEFAULT_ENCODER == DEFAULT_MODEL
    for flags, message in ((["--epochs", "0"], "--epochs 0"),
                           (["--batch-size", "1"], "--batch-size 1"),
                           (["--lr", "0"], "--lr 0"),
                           (["--encoder", str(tmp_path / "nowhere")], "--encoder")):
        code = main(["train-two-tower", "--synthetic", "--out", str(tmp_path / "m"), *flags])
        assert code == 2 and message in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["train-two-tower", "--synthetic", "--out", str(tmp_path / "taken")]) == 2
    assert "not overwriting" in capsys.readouterr().err
