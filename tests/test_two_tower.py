"""The two-tower model: history states, losses, training, inference, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xsell.checkpoint import CheckpointError, write_folder
from xsell.data.synthetic import make_synthetic_shop
from xsell.losses import in_batch_softmax_loss
from xsell.models.behaviour import top_items, training_states
from xsell.models.towers import UserTower
from xsell.models.two_tower import TwoTower
from xsell.text import item_texts


@pytest.fixture(scope="module")
def shop():
    return make_synthetic_shop(n_users=150, seed=3)


def small(tiny_lm_dir, **kw) -> TwoTower:
    params = dict(encoder=str(tiny_lm_dir), dim=16, max_epochs=3, batch_size=256,
                  validation_users=20, progress=False)
    return TwoTower(**{**params, **kw})


def test_training_states_follow_the_decay_formula(interactions_frame, items_frame):
    from xsell.data.dataset import Dataset

    ds = Dataset.from_frames(interactions_frame, items_frame)
    st = training_states(ds.interactions, ds.user_index, ds.item_index, half_life=1.0,
                         max_items=5)
    # u1 bought a,b | a,c | a,d: the state before basket 2 weighs a = 1 + 0.5, c = 1, b = 0.5.
    u1 = ds.user_codes(["u1"])[0]
    row = np.flatnonzero((st.user == u1) & (st.seq == 2))[0]
    got = dict(zip(ds.item_index[st.items[row][st.items[row] >= 0]], st.weights[row],
                   strict=False))
    assert got == pytest.approx({"a": 1.5, "c": 1.0, "b": 0.5})
    targets = set(ds.item_index[st.target_item[st.target_state == row]])
    assert targets == {"a", "d"}
    new = training_states(ds.interactions, ds.user_index, ds.item_index, 1.0, 5, targets="new")
    row = np.flatnonzero((new.user == u1) & (new.seq == 2))[0]
    assert set(ds.item_index[new.target_item[new.target_state == row]]) == {"d"}


def test_top_items_keeps_the_heaviest():
    import scipy.sparse as sp

    codes, weights = top_items(sp.csr_matrix(np.array([[0.1, 3, 0, 2], [0, 0, 0, 0]])), 2)
    assert codes.tolist() == [[1, 3], [-1, -1]] and weights[0].tolist() == [3, 2]


def test_in_batch_softmax_matches_cross_entropy_and_masks_duplicates():
    torch.manual_seed(0)
    u, v = torch.randn(4, 8), torch.randn(4, 8)
    codes = torch.tensor([0, 1, 2, 3])
    ref = torch.nn.functional.cross_entropy(u @ v.T / 0.1, torch.arange(4))
    assert torch.isclose(in_batch_softmax_loss(u, v, codes, temperature=0.1), ref)
    # Row 0 and row 2 both bought item 7: neither is the other's negative.
    dup = torch.tensor([7, 1, 7, 3])
    logits = u @ v.T / 0.1
    logits[0, 2] = logits[2, 0] = float("-inf")
    ref = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    assert torch.isclose(in_batch_softmax_loss(u, v, dup, temperature=0.1), ref)
    # log-Q: subtracting log q_j from column j.
    log_q = torch.log(torch.tensor([0.5, 0.2, 0.2, 0.1]))
    ref = torch.nn.functional.cross_entropy(u @ v.T / 0.1 - log_q[None], torch.arange(4))
    assert torch.isclose(in_batch_softmax_loss(u, v, codes, log_q, 0.1), ref)


@pytest.mark.parametrize("kind", UserTower.KINDS)
def test_user_tower_ignores_padding(kind):
    torch.manual_seed(0)
    tower = UserTower(8, kind)
    items = torch.randn(1, 3, 8)
    w = torch.tensor([[1.0, 0.5, 0.0]])
    padded = items.clone()
    padded[0, 2] = 100.0
    assert torch.allclose(tower(items, w), tower(padded, w), atol=1e-5)


def test_fit_learns_and_scores_cold_items_through_text(shop, tiny_lm_dir):
    model = small(tiny_lm_dir, max_epochs=4).fit(shop)
    assert len(model.history_) >= 2
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]
    users = shop.user_index[:5]
    scores = model.score(users)
    assert scores.shape == (5, shop.n_items) and np.isfinite(scores).all()
    recs = model.recommend(users, k=10)
    assert recs.shape == (5, 10)
    # A catalogue item nobody bought still gets a real (text) score, and can be recommended.
    assert model.scores_unseen_items
    cold = np.flatnonzero(~model.seen_items_)
    assert len(cold) and np.unique(scores[:, cold]).size > 1
    # A product added after the fit is placed by the same text path as a cold item.
    text = model._text_encoder().encode(item_texts(shop).iloc[cold].tolist())
    assert np.allclose(model.text_item_vectors(text), model.item_vectors_[cold], atol=1e-6)
    assert np.allclose(model.score_text_items(users, text), scores[:, cold], atol=1e-5)


def test_id_only_tower_cannot_score_cold_items(tiny_lm_dir, shop):
    model = small(tiny_lm_dir, item_features="id", max_epochs=1)
    assert not model.scores_unseen_items
    model.fit(shop)
    with pytest.raises(ValueError, match="item ids only"):
        model.text_item_vectors(np.zeros((1, 32), dtype=np.float32))


def test_history_argument_and_seeded_reproducibility(shop, tiny_lm_dir):
    a = small(tiny_lm_dir, seed=5).fit(shop)
    b = small(tiny_lm_dir, seed=5).fit(shop)
    user = shop.user_index[0]
    assert np.allclose(a.score([user]), b.score([user]), atol=1e-6)
    own = shop.interactions[shop.interactions["user_id"] == user]
    # The user's own training rows given as a history score exactly like the user id.
    assert np.allclose(a.score([user], history=own), a.score([user]), atol=1e-5)
    new_user = own.assign(user_id="someone-new")
    assert a.recommend(["someone-new"], k=5, history=new_user).shape == (1, 5)


@pytest.mark.parametrize("variant", [dict(user_tower="text"), dict(objective="mse"),
                                     dict(user_tower="transformer", targets="new"),
                                     dict(pretrained=False, item_features="text")])
def test_variants_fit_and_score(shop, tiny_lm_dir, variant):
    model = small(tiny_lm_dir, max_epochs=2, **variant).fit(shop)
    users = shop.user_index[:3]
    full = model.score(users)
    assert np.isfinite(full).all()
    # Scoring a few items computes only those columns, and gives the same numbers.
    some = shop.item_index[[7, 2, 11]]
    assert np.allclose(model.score(users, items=some), full[:, [7, 2, 11]], atol=1e-6)


def test_encoding_only_bought_items_trains_the_same_model(shop, tiny_lm_dir):
    full = small(tiny_lm_dir, max_epochs=2).fit(shop)
    seen_only = small(tiny_lm_dir, max_epochs=2, text_items="seen").fit(shop)
    bought = full.seen_items_
    assert (~bought).any()  # the catalogue has never-bought products
    assert [r["train_loss"] for r in seen_only.history_] == pytest.approx(
        [r["train_loss"] for r in full.history_])
    assert np.allclose(seen_only.item_vectors_[bought], full.item_vectors_[bought], atol=1e-5)
    assert full.scores_unseen_items and not seen_only.scores_unseen_items
    with pytest.raises(ValueError, match="text_items"):
        small(tiny_lm_dir, text_items="seen", finetune_layers=1).fit(shop)


def test_bad_settings_are_named(tiny_lm_dir, shop):
    with pytest.raises(ValueError, match="user_tower"):
        small(tiny_lm_dir, user_tower="lstm").fit(shop)


def test_checkpoint_roundtrip_and_refusals(shop, tiny_lm_dir, tmp_path):
    model = small(tiny_lm_dir, max_epochs=1).fit(shop)
    model.save(tmp_path / "ckpt")
    again = TwoTower.load(tmp_path / "ckpt", shop)
    users = shop.user_index[:4]
    assert np.allclose(again.score(users), model.score(users), atol=1e-5)
    # Another catalogue: refused, naming the folder.
    other = make_synthetic_shop(n_users=60, seed=9)
    items = other.items.iloc[:-1]
    smaller = type(other).from_frames(other.interactions[other.interactions["item_id"]
                                                         .isin(items["item_id"])], items)
    with pytest.raises(CheckpointError, match="fitted on other data.*items"):
        TwoTower.load(tmp_path / "ckpt", smaller)
    # A flipped byte in the weights: refused by the hash check.
    weights = tmp_path / "ckpt" / "tensors.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        TwoTower.load(tmp_path / "ckpt", shop)


def test_checkpoint_refuses_wrong_model_and_bad_json(shop, tmp_path):
    from xsell.models.baselines import Popularity

    Popularity().fit(shop).save(tmp_path / "c")
    with pytest.raises(CheckpointError, match="not a TwoTower"):
        TwoTower.load(tmp_path / "c", shop)
    write_folder(tmp_path / "w", {"weights": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="not a saved model"):
        TwoTower.load(tmp_path / "w", shop)
    (tmp_path / "c" / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="do not match config.sha256"):
        TwoTower.load(tmp_path / "c", shop)
    with pytest.raises(CheckpointError, match="missing"):
        TwoTower.load(tmp_path / "nowhere", shop)


def test_two_tower_is_registered_with_a_tunable_grid():
    from xsell.models.registry import model_class
    from xsell.tuning import parameter_grid

    assert model_class("two-tower") is TwoTower
    grid = parameter_grid(TwoTower.param_grid)
    assert len(grid) >= 2 and all(set(g) <= set(TwoTower().get_params()) for g in grid)


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_finetuning_changes_the_item_text_table(shop, tiny_lm_dir, lora_rank):
    frozen = small(tiny_lm_dir, max_epochs=1, item_features="text").fit(shop)
    tuned = small(tiny_lm_dir, max_epochs=1, item_features="text", finetune_layers=1,
                  lora_rank=lora_rank, lr=1e-2, finetune_lr=1e-3).fit(shop)
    assert not torch.allclose(frozen.item_tower_.text, tuned.item_tower_.text)
    assert np.isfinite(tuned.score(shop.user_index[:2])).all()


def test_lora_starts_as_the_base_layer():
    from xsell.models.finetune import LoRALinear

    base = torch.nn.Linear(6, 4)
    lora = LoRALinear(base, rank=2)
    x = torch.randn(3, 6)
    assert torch.allclose(lora(x), base(x))
    assert [n for n, p in lora.named_parameters() if p.requires_grad] == ["lora_a", "lora_b"]


def test_text_similarity_recommends_look_alikes(tiny_lm_dir, interactions_frame, items_frame):
    from xsell.data.dataset import Dataset
    from xsell.models.text_similarity import TextSimilarity

    ds = Dataset.from_frames(interactions_frame, items_frame)
    model = TextSimilarity(encoder=str(tiny_lm_dir), progress=False).fit(ds)
    scores = model.score(["u1"])
    # The score is the dot product of the decayed mean history embedding with each item.
    w = model.history_matrix(ds.interactions, ds.user_index)[ds.user_codes(["u1"])]
    user = (w @ model.embeddings_) / w.sum()
    assert np.allclose(scores, user @ model.embeddings_.T, atol=1e-6)


def test_compare_configs_and_cached_fit(shop, tiny_lm_dir, tmp_path, monkeypatch):
    from xsell.data.splits import leave_last_basket_out
    from xsell.experiments import compare_configs, fit_model

    monkeypatch.setenv("XSELL_CACHE_DIR", str(tmp_path))
    split = leave_last_basket_out(shop)
    base = dict(encoder=str(tiny_lm_dir), dim=8, max_epochs=1, validation_users=10,
                progress=False)
    table = compare_configs(split, {"text": ("two-tower", {**base, "item_features": "text"}),
                                    "pop": ("popularity", {})},
                            variants=("explore",), ks=(20,), metrics=("recall",),
                            progress=False, cache=True)
    assert set(table["model"]) == {"text", "pop"} and table["value"].notna().all()
    train = split.train_dataset(include_validation=True)
    first = fit_model("two-tower", base, train, cache=True)
    again = fit_model("two-tower", base, train, cache=True)  # from disk, no training
    assert np.allclose(first.score(train.user_index[:3]), again.score(train.user_index[:3]))


def test_mse_formulation_learns_counts_on_the_rating_split(tiny_lm_dir):
    from xsell.data.splits import random_rating_split
    from xsell.evaluation import evaluate_rating

    shop = make_synthetic_shop(n_users=120, seed=4)
    split = random_rating_split(shop, seed=0)
    table = evaluate_rating({"mse": lambda: small(tiny_lm_dir, objective="mse",
                                                  user_tower="mean", max_epochs=5)},
                            split, n_boot=50)
    rmse = table.query("metric == 'rmse'").set_index("model")["value"]
    # Trained on counts (not row counts), its calibrated predictions beat the global mean.
    assert rmse["mse"] < rmse["global mean"]


def test_lower_layers_run_in_length_sorted_batches_and_once(tiny_lm_dir, tmp_path):
    from xsell.models import finetune
    from xsell.text import TextEncoder

    enc = TextEncoder(str(tiny_lm_dir), batch_size=2, cache=False, progress=False)
    texts = ["a", "organic whole milk half gallon", "eggs", "dark chocolate sea salt bar", "x"]
    finetune._LOWER.clear()
    lower, mask = finetune.lower_layer_outputs(enc, texts, layer=1, progress=False)
    # Reference: every text padded to the longest, in input order.
    tokens = enc.tokenize(texts)
    with torch.inference_mode():
        ref = enc.lm(**tokens, output_hidden_states=True).hidden_states[1]
    assert torch.equal(mask, tokens["attention_mask"].bool())
    assert torch.allclose(lower.float()[mask], ref[mask], atol=1e-2)
    assert finetune.lower_layer_outputs(enc, texts, layer=1)[0] is lower  # kept, not rerun
    assert finetune.lower_layer_outputs(enc, texts[:3], layer=1)[0] is not lower


def test_validation_targets_are_each_states_distinct_items(shop):
    import pandas as pd

    from xsell.models.two_tower_objectives import SoftmaxObjective, _targets_of

    model = TwoTower(progress=False)
    model._remember(shop)
    states, rows = SoftmaxObjective().training_data(model, shop, np.random.default_rng(0))
    expected = pd.Series(states.target_item).groupby(states.target_state).unique()
    got = _targets_of(states, rows)
    assert len(rows) > 0 and len(got) == len(rows)
    assert all(sorted(g) == sorted(expected[r]) for g, r in zip(got, rows, strict=True))
