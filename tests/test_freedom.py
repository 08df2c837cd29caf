"""FREEDOM: the frozen binary kNN item graph, degree-sensitive edge pruning (count, resampling,
re-normalisation by hand, sampling probabilities), training vs evaluation graphs, the loss."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from mgnm.data.graphs import dense_knn, dense_symnorm, knn_graph, symnorm_values
from mgnm.data.inputs import ModelInputs, build_inputs
from mgnm.models.freedom import (
    FREEDOM,
    FREEDOMConfig,
    kept_edge_count,
    modality_weights,
    sample_without_replacement,
)
from mgnm.models.losses import bpr_loss


def make_model(tiny, **kw) -> FREEDOM:
    torch.manual_seed(0)
    return FREEDOM(FREEDOMConfig(**kw), build_inputs(tiny))


def cos(x: torch.Tensor) -> torch.Tensor:
    xn = x / x.norm(dim=1, keepdim=True)
    return xn @ xn.T


def test_binary_knn_symnorm_gives_one_over_k():
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    r, c, v = knn_graph(x, 5, weighted=False)
    vals = symnorm_values(r, c, v, 30)
    torch.testing.assert_close(vals, torch.full_like(vals, 1 / 5))


def test_mixed_item_graph_matches_dense(tiny):
    model = make_model(tiny, knn_k=4)
    expect = sum(beta * dense_symnorm((dense_knn(cos(torch.as_tensor(f).float()), 4) != 0)
                                      .float())
                 for beta, f in zip([0.1, 0.9], tiny.features.values(), strict=True))
    assert list(tiny.features) == ["image", "text"]
    got = model.item_graph.to_dense()
    torch.testing.assert_close(got, expect)
    torch.testing.assert_close(got.sum(1), torch.ones(tiny.n_items))  # each row averages
    allowed = torch.tensor([0.1 / 4, 0.9 / 4, 1.0 / 4])  # one or both modalities keep it
    assert torch.isclose(got[got > 0][:, None], allowed, rtol=1e-6).any(1).all()


def test_modality_weights_rule():
    assert modality_weights(["image", "text"], 0.1) == [0.1, 0.9]
    assert modality_weights(["audio", "image"], 0.1) == [0.9, 0.1]
    assert modality_weights(["text"], 0.1) == [1.0]
    assert modality_weights(["a", "b", "image"], 0.1) == [1 / 3] * 3
    assert modality_weights(["audio", "text"], 0.1) == [0.5, 0.5]


def test_kept_edge_count_is_exact_floor():
    assert kept_edge_count(10, 0.8) == 2  # 10 * (1 - 0.8) is 1.999... in floating point
    assert kept_edge_count(59541, 0.8) == 11908
    assert kept_edge_count(7, 0.5) == 3


def test_pruning_keeps_exact_count_of_distinct_edges_and_resamples(tiny):
    model = make_model(tiny, dropout=0.7)
    n_edges = len(tiny.train.users)
    model.pre_epoch(0)
    first = model.kept_edges.clone()
    assert first.numel() == math.floor(n_edges * 0.3 + 1e-9)
    assert torch.unique(first).numel() == first.numel()
    assert model.train_adj.to_dense().count_nonzero() == 2 * first.numel()
    model.pre_epoch(1)
    assert set(first.tolist()) != set(model.kept_edges.tolist())
    torch.manual_seed(123)
    model.pre_epoch(2)
    a = model.kept_edges.clone()
    torch.manual_seed(123)
    model.pre_epoch(2)
    assert torch.equal(a, model.kept_edges)


def test_pruned_graph_renormalised_with_kept_degrees_by_hand():
    # users 0..3, items 0..3; degrees differ so that kept-degree normalisation matters
    users = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    items = torch.tensor([0, 1, 2, 0, 3, 1, 0, 1, 2, 3])
    inputs = ModelInputs(n_users=4, n_items=4, train_users=users, train_items=items,
                         features={"text": torch.randn(4, 3)})
    torch.manual_seed(0)
    model = FREEDOM(FREEDOMConfig(knn_k=2, dropout=0.4), inputs)
    # pruning probabilities from the full-graph degrees
    du, di = Counter(users.tolist()), Counter(items.tolist())
    pi = [1 / math.sqrt(du[u] * di[i]) for u, i in zip(users.tolist(), items.tolist(),
                                                       strict=True)]
    np.testing.assert_allclose(model.edge_log_prob.exp().numpy(), pi, rtol=1e-9)
    for epoch in range(3):
        model.pre_epoch(epoch)
        kept = [(int(users[e]), int(items[e])) for e in model.kept_edges]
        assert len(kept) == 6
        ku, ki = Counter(u for u, _ in kept), Counter(i for _, i in kept)
        expect = np.zeros((8, 8))
        for u, i in kept:
            expect[u, 4 + i] = expect[4 + i, u] = 1 / math.sqrt(ku[u] * ki[i])
        np.testing.assert_allclose(model.train_adj.to_dense().numpy(), expect, rtol=1e-6)


def test_sampling_probabilities():
    """One draw: P(e) = pi_e / sum pi exactly; several draws: the same inclusion frequencies
    as torch.multinomial without replacement; heavier edges kept more often."""
    pi = torch.tensor([8.0, 4.0, 2.0, 1.0, 1.0, 0.5, 0.25, 0.25], dtype=torch.float64)
    log_pi = pi.log()
    trials = 20000
    torch.manual_seed(0)
    single = torch.stack([sample_without_replacement(log_pi, 1) for _ in range(trials)])
    freq = torch.bincount(single.flatten(), minlength=8).double() / trials
    p = pi / pi.sum()
    assert torch.all((freq - p).abs() <= 4 * (p * (1 - p) / trials).sqrt() + 1e-12)

    n = 3
    ours = torch.zeros(8, dtype=torch.float64)
    ref = torch.zeros(8, dtype=torch.float64)
    for _ in range(trials):
        ours[sample_without_replacement(log_pi, n)] += 1
        ref[torch.multinomial(pi, n, replacement=False)] += 1
    ours, ref = ours / trials, ref / trials
    se = (ref * (1 - ref) * 2 / trials).sqrt()
    assert torch.all((ours - ref).abs() <= 4 * se + 1e-3)
    assert ours[0] > ours[1] > ours[2] > ours[3] > ours[5] > ours[6]


def test_training_uses_pruned_graph_and_scoring_the_full_one(tiny):
    model = make_model(tiny, dropout=0.5)
    model.train()
    model.pre_epoch(0)
    users, pos, neg = torch.arange(8), torch.arange(8), (torch.arange(8) + 5) % tiny.n_items
    out = model.loss(users, pos, neg)
    with torch.no_grad():
        eu, ei = model.propagate(model.train_adj)
        expect = bpr_loss((eu[users] * ei[pos]).sum(1), (eu[users] * ei[neg]).sum(1))
        torch.testing.assert_close(out["bpr"].detach(), expect)
        model.eval()
        su, si = model.embeddings()
        fu, fi = model.propagate(model.norm_adj)
        torch.testing.assert_close(su, fu)
        torch.testing.assert_close(si, fi)
        assert (su - eu).abs().max() > 1e-4
        # items: E'_I + S Q, the layer-0 IDs on the item graph, not normalised
        e0 = torch.cat([model.user_emb, model.item_emb])
        a = model.norm_adj.to_dense()
        e = (e0 + a @ e0 + a @ (a @ e0)) / 3
        s = model.item_graph.to_dense()
        torch.testing.assert_close(si, e[model.n_users:] + s @ model.item_emb, atol=1e-6,
                                   rtol=1e-5)


def test_dropout_zero_trains_on_full_graph(tiny):
    model = make_model(tiny, dropout=0.0)
    model.pre_epoch(0)
    assert model.train_adj is model.norm_adj


@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_loss_is_bpr_plus_feature_bpr_without_l2(tiny, lam):
    model = make_model(tiny, reg_weight=lam)
    model.pre_epoch(0)
    users, pos, neg = torch.tensor([0, 1, 2, 2]), torch.tensor([3, 4, 5, 6]), \
        torch.tensor([7, 8, 9, 10])
    out = model.loss(users, pos, neg)
    with torch.no_grad():
        eu, ei = model.propagate(model.train_adj)
        u = eu[users]
        expect = bpr_loss((u * ei[pos]).sum(1), (u * ei[neg]).sum(1))
        for m, f in model.features.items():
            x = model.projections[m](f)  # the whole table, as MMRec computes it
            expect = expect + lam * bpr_loss((u * x[pos]).sum(1), (u * x[neg]).sum(1))
    torch.testing.assert_close(out["loss"].detach(), expect)
    if lam > 0:
        out["loss"].backward()
        assert model.projections["image"].weight.grad.abs().sum() > 0
        assert model.features["text"].grad[pos].abs().sum() > 0


def test_feat_embed_dim_must_match_embedding_size():
    with pytest.raises(ValueError, match="feat_embed_dim"):
        FREEDOMConfig(feat_embed_dim=32)
