"""MMGCN: the forward against a slow per-node reference (mean aggregation, concat combiner,
E_id after the activation, modalities averaged), which tables train, and MMRec's cached
scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgnm.data.inputs import ModelInputs, build_inputs
from mgnm.models.mmgcn import MMGCN


def make(tiny, **kw):
    torch.manual_seed(0)
    kw.setdefault("latent_dim", 6)
    return MMGCN(MMGCN.Config(**kw), build_inputs(tiny))


def lrelu(x):
    return np.where(x > 0, x, 0.01 * x)


def slow_forward(model, tiny) -> np.ndarray:
    """Per node, the mean over its bipartite neighbours written as a loop."""
    n_u, n_i = tiny.n_users, tiny.n_items
    nbrs: list[list[int]] = [[] for _ in range(n_u + n_i)]
    for u, i in zip(tiny.train.users, tiny.train.items, strict=True):
        nbrs[int(u)].append(n_u + int(i))
        nbrs[n_u + int(i)].append(int(u))
    e_id = model.id_emb.detach().double().numpy()

    def p(t):
        return t.detach().double().numpy()

    outs = []
    for m in model.modalities:
        f = tiny.features[m].astype(np.float64)
        if m in model.projected:
            f = f @ p(model.mlp[m].weight).T + p(model.mlp[m].bias)
        x = np.concatenate([p(model.user_preference(m)), f])
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        for layer in model.layers[m]:
            xw = x @ p(layer.conv.weight).T
            agg = np.zeros_like(xw)
            for v, nb in enumerate(nbrs):
                if nb:
                    agg[v] = sum(xw[w] for w in nb) / len(nb)
            h = lrelu(agg)
            x_hat = lrelu(x @ p(layer.self_lin.weight).T + p(layer.self_lin.bias)) + e_id
            x = lrelu(np.concatenate([h, x_hat], 1) @ p(layer.combine.weight).T
                      + p(layer.combine.bias))
        outs.append(x)
    return sum(outs) / len(outs)


def test_forward_matches_slow_reference(tiny):
    model = make(tiny)
    assert model.projected == ["image"]  # text (5-d) goes in raw
    assert model.layers["image"][0].conv.weight.shape == (6, 6)
    assert model.layers["text"][0].conv.weight.shape == (5, 5)
    with torch.no_grad():
        z = model.forward_all().double().numpy()
    np.testing.assert_allclose(z, slow_forward(model, tiny), rtol=1e-4, atol=1e-6)


def test_projection_rule_on_tiktok_widths():
    inputs = ModelInputs(n_users=4, n_items=3, train_users=torch.tensor([0, 1, 2, 3]),
                         train_items=torch.tensor([0, 1, 2, 0]),
                         features={"audio": torch.randn(3, 128), "image": torch.randn(3, 128),
                                   "text": torch.randn(3, 600)})
    model = MMGCN(MMGCN.Config(), inputs)
    # image by name, text by width (> 512), audio raw
    assert model.projected == ["image", "text"]
    assert model.user_preference("image").shape == (4, 256)
    assert model.user_preference("audio").shape == (4, 128)
    cfg = MMGCN.Config(project_modalities="audio, image")
    assert cfg.project_modalities == ("audio", "image")


def step(model, tiny):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    users = torch.as_tensor(tiny.train.users[:16])
    pos = torch.as_tensor(tiny.train.items[:16])
    neg = (pos + 7) % tiny.n_items
    out = model.loss(users, pos, neg)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    return out


@pytest.mark.parametrize("train_ids", [True, False])
def test_id_embeddings_and_preferences_train_only_when_asked(tiny, train_ids):
    model = make(tiny, train_id_embeddings=train_ids, reg_weight=1e-2)
    before = {"id": model.id_emb.detach().clone()}
    for m in model.modalities:
        before[m] = model.user_preference(m).detach().clone()
    w_before = model.layers["text"][0].conv.weight.detach().clone()
    step(model, tiny)
    changed = {k: not torch.equal(v, model.id_emb if k == "id" else model.user_preference(k))
               for k, v in before.items()}
    assert all(changed.values()) if train_ids else not any(changed.values()), changed
    assert not torch.equal(w_before, model.layers["text"][0].conv.weight)  # weights train
    # either way they are saved with the model
    assert "id_emb" in model.state_dict()


def test_regulariser_value(tiny):
    model = make(tiny, reg_weight=0.5)
    users, pos, neg = torch.tensor([0, 0, 5]), torch.tensor([1, 2, 3]), torch.tensor([4, 6, 8])
    out = model.loss(users, pos, neg)
    e = model.id_emb.detach().double().numpy()
    n_u = tiny.n_users
    pairs = [(u, n_u + i) for u, i, j in zip(users.tolist(), pos.tolist(), neg.tolist(),
                                             strict=True)
             for i in (i, j)]
    id_reg = np.mean([e[u] ** 2 + e[v] ** 2 for u, v in pairs])
    pref_reg = np.mean(model.user_preference("image").detach().double().numpy() ** 2)
    np.testing.assert_allclose(float(out["reg"].detach()), 0.5 * (id_reg + pref_reg), rtol=1e-5)


def test_eval_scores_from_cached_training_forward_when_asked(tiny):
    model = make(tiny, eval_fresh_forward=False)
    model.eval()
    with torch.no_grad():
        fresh0 = model.embeddings()[0].clone()  # no cache yet: a fresh forward
        torch.testing.assert_close(fresh0, model.forward_all()[: tiny.n_users])
    model.train()
    with torch.no_grad():
        z_before_step = model.forward_all()
    step(model, tiny)
    model.eval()
    with torch.no_grad():
        u, i = model.embeddings()
        torch.testing.assert_close(u, z_before_step[: tiny.n_users])  # one step stale
        fresh = model.forward_all()
    assert not torch.allclose(u, fresh[: tiny.n_users])
    # the cache is what evaluation scores, so it travels with the state (best.pt, checkpoints)
    restored = make(tiny, eval_fresh_forward=False)
    restored.load_state_dict(model.state_dict())
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored.embeddings()[0], u, rtol=0, atol=0)

    fresh_model = make(tiny, eval_fresh_forward=True)
    step(fresh_model, tiny)
    with torch.no_grad():
        torch.testing.assert_close(fresh_model.embeddings()[1],
                                   fresh_model.forward_all()[tiny.n_users:])
