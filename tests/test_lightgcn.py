"""LightGCN's training loss against a dense computation of its formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import dense_norm_adj

from mgnm.config import resolve_config
from mgnm.train.trainer import Trainer


@pytest.mark.parametrize("batch", [6, 60])  # few rows (products of their own); most rows
def test_loss_and_gradients_equal_the_dense_formula(tiny, batch):
    t = Trainer(resolve_config({"model": "lightgcn", "n_layers": 3, "device": "cpu"}), tiny)
    model = t.model
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, tiny.n_users, (batch,), generator=g)  # with repeats
    pos = torch.randint(0, tiny.n_items, (batch,), generator=g)
    neg = torch.randint(0, tiny.n_items, (batch,), generator=g)
    few = (model.r_sym.few_entries(users.unique()),
           model.r_sym.T.few_entries(torch.cat([pos, neg]).unique()))
    assert few == ((True, True) if batch == 6 else (False, False))
    out = model.loss(users, pos, neg)
    grads = torch.autograd.grad(out["loss"], [model.user_emb, model.item_emb])

    a = dense_norm_adj(tiny.train.users, tiny.train.items, tiny.n_users, tiny.n_items, dtype=torch.float64)
    e0 = torch.cat([model.user_emb, model.item_emb]).detach().double().requires_grad_(True)
    layers = [e0]
    for _ in range(3):
        layers.append(a @ layers[-1])
    e = torch.stack(layers).mean(0)
    eu, ei = e[: tiny.n_users], e[tiny.n_users:]
    u, i, j = eu[users], ei[pos], ei[neg]
    bpr = F.softplus((u * j).sum(1) - (u * i).sum(1)).mean()
    rows = [e0[users], e0[tiny.n_users + pos], e0[tiny.n_users + neg]]
    reg = 1e-4 * sum(r.norm() for r in rows) / batch
    ref = bpr + reg
    (g_ref,) = torch.autograd.grad(ref, [e0])

    torch.testing.assert_close(out["bpr"].double(), bpr, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss"].double(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat(grads).double(), g_ref, rtol=1e-4, atol=1e-6)
