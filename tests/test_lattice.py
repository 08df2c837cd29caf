"""LATTICE: the learned item graph against a dense computation, its gradient schedule (once per
epoch), the row-normalised backbone by hand, scoring from the current weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgnm.data.graphs import dense_knn, dense_symnorm, row_normalized_adjacency
from mgnm.data.inputs import build_inputs
from mgnm.data.sparse import coo_matmul
from mgnm.models.lattice import LATTICE, LATTICEConfig


def make_model(tiny, **kw) -> LATTICE:
    torch.manual_seed(0)
    inputs = build_inputs(tiny)
    # random features: the two modalities then have different neighbourhoods
    inputs.features = {m: torch.randn(f.shape) for m, f in inputs.features.items()}
    model = LATTICE(LATTICEConfig(**kw), inputs)
    with torch.no_grad():  # unequal modality weights, so that mixing errors show
        model.modal_logits.copy_(torch.tensor([0.9, -0.4]))
    return model


def cos(x: torch.Tensor) -> torch.Tensor:
    xn = x / x.norm(dim=1, keepdim=True)
    return xn @ xn.T


def dense_parts(model: LATTICE, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dense ``symnorm(sum_m w_m K_m)``, ``sum_m w_m symnorm(K_m)`` and ``sum_m w_m O_m``."""
    w = torch.softmax(model.modal_logits.detach(), 0)
    mixed = torch.zeros(model.n_items, model.n_items)
    per_mod = torch.zeros_like(mixed)
    frozen = torch.zeros_like(mixed)
    for mi, (m, f) in enumerate(model.features.items()):
        knn = dense_knn(cos(model.projections[m](f).detach()), k)
        mixed += w[mi] * knn
        per_mod += w[mi] * dense_symnorm(knn)
        # no step taken yet: the fine-tuned table still holds the file's values
        frozen += w[mi] * dense_symnorm(dense_knn(cos(f.detach()), k))
    return dense_symnorm(mixed), per_mod, frozen


@pytest.mark.parametrize("lam", [0.9, 0.3])
def test_learned_graph_matches_dense_formula(tiny, lam):
    model = make_model(tiny, knn_k=4, lambda_coeff=lam)
    learned, per_mod, frozen = dense_parts(model, 4)
    got = model.item_graph_dense().detach()
    torch.testing.assert_close(got, (1 - lam) * learned + lam * frozen, atol=1e-5, rtol=1e-5)
    # the paper's order (normalise each modality, then mix) is a different matrix here
    assert (got - ((1 - lam) * per_mod + lam * frozen)).abs().max() > 1e-3


def test_modality_weights_start_uniform(tiny):
    torch.manual_seed(0)
    model = LATTICE(LATTICEConfig(), build_inputs(tiny))
    torch.testing.assert_close(model.modality_weights(), torch.tensor([0.5, 0.5]))


def test_gradient_reaches_graph_parameters_on_the_rebuilding_batch_only(tiny):
    model = make_model(tiny, knn_k=4)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    users = torch.randint(0, tiny.n_users, (16,), generator=g)
    pos = torch.randint(0, tiny.n_items, (16,), generator=g)
    neg = torch.randint(0, tiny.n_items, (16,), generator=g)
    graph_params = {"projection": model.projections["image"].weight,
                    "features": model.features["text"], "logits": model.modal_logits}

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(users, pos, neg)["loss"].backward()

    model.pre_epoch(0)
    step()
    for name, p in graph_params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    g_first = model.item_graph_dense().detach()
    opt.step()
    # batch 2: G reused (the one built before the step), detached
    step()
    for name, p in graph_params.items():
        assert p.grad is None, name
    assert model.item_emb.grad is not None and model.item_emb.grad.abs().sum() > 0
    torch.testing.assert_close(model._graph.to_dense(), g_first)
    assert (model.item_graph_dense().detach() - g_first).abs().max() > 1e-4  # weights moved
    opt.step()
    # the next epoch rebuilds with gradient again
    model.pre_epoch(1)
    step()
    for name, p in graph_params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_legacy_zero_grads_keeps_adam_moving_graph_parameters(tiny):
    model = make_model(tiny, knn_k=4, legacy_zero_grads=True)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    users, pos, neg = torch.arange(6), torch.arange(6), torch.arange(6) + 10
    model.pre_epoch(0)
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        model.loss(users, pos, neg)["loss"].backward()
        before = model.projections["text"].weight.detach().clone()
        opt.step()
    g = model.projections["text"].weight.grad
    assert g is not None and not g.any()  # batch 2: a zero gradient, not none ...
    assert (model.projections["text"].weight - before).abs().max() > 0  # ... and momentum


def test_row_normalized_adjacency_with_self_loops_by_hand():
    # users 0,1,2 (2 isolated), items 0,1; R = [[1,1],[0,1],[0,0]]
    a = row_normalized_adjacency(np.array([0, 0, 1]), np.array([0, 1, 1]), 3, 2).to_dense()
    expect = torch.zeros(5, 5)
    expect[0, [0, 3, 4]] = 1 / 3
    expect[1, [1, 4]] = 1 / 2
    expect[2, 2] = 1.0
    expect[3, [3, 0]] = 1 / 2
    expect[4, [4, 0, 1]] = 1 / 3
    torch.testing.assert_close(a, expect)


def test_coo_matmul_sums_duplicates_and_carries_gradient():
    rows = torch.tensor([0, 0, 1, 0])
    cols = torch.tensor([1, 2, 0, 1])
    vals = torch.tensor([1.0, 2.0, 3.0, 0.5], requires_grad=True)
    x = torch.randn(3, 2, requires_grad=True)
    dense = torch.zeros(2, 3).index_put((rows, cols), vals.detach(), accumulate=True)
    out = coo_matmul(rows, cols, vals, x, 2)
    torch.testing.assert_close(out, dense @ x.detach())
    out.sum().backward()
    torch.testing.assert_close(vals.grad, x.detach().sum(1)[cols])


def test_scoring_rebuilds_graph_and_uses_row_normalised_backbone(tiny):
    model = make_model(tiny, knn_k=4)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    users, pos = torch.arange(10), torch.arange(10)
    neg = (pos + 7) % tiny.n_items
    model.pre_epoch(0)
    for _ in range(3):  # moves the weights after the epoch's graph was built
        opt.zero_grad(set_to_none=True)
        model.loss(users, pos, neg)["loss"].backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        eu, ei = model.embeddings()
        g = model.item_graph_dense()  # from the current weights
        # backbone by hand: D~^-1 (A + I), two layers, layer mean
        n = model.n_users + model.n_items
        a = torch.eye(n)
        u, i = torch.as_tensor(tiny.train.users), torch.as_tensor(tiny.train.items)
        a[u, model.n_users + i] = 1.0
        a[model.n_users + i, u] = 1.0
        a = a / a.sum(1, keepdim=True)
        e0 = torch.cat([model.user_emb, model.item_emb])
        e = (e0 + a @ e0 + a @ (a @ e0)) / 3
        h = g @ model.item_emb
        h = h / h.norm(dim=1, keepdim=True)
    torch.testing.assert_close(eu, e[: model.n_users], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ei, e[model.n_users:] + h, atol=1e-5, rtol=1e-4)


def test_squared_regulariser_divided_by_configured_batch_size(tiny):
    model = make_model(tiny, reg_weight=0.5, reg_batch_size=100)
    users, pos, neg = torch.tensor([0, 1, 1]), torch.tensor([2, 3, 4]), torch.tensor([5, 6, 7])
    out = model.loss(users, pos, neg)
    with torch.no_grad():
        eu, ei = model.embeddings()
    sq = eu[users].pow(2).sum() + ei[pos].pow(2).sum() + ei[neg].pow(2).sum()
    torch.testing.assert_close(out["reg"].detach(), 0.5 * 0.5 * sq / 100, rtol=1e-4, atol=1e-7)
