"""DualGNN: the user co-occurrence graph and its per-epoch sample against slow references,
the user aggregation, the MMRec fusion quirk and the base-2 loss."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from mgnm.data.graphs import user_cooccurrence_topk
from mgnm.data.inputs import build_inputs
from mgnm.models.dualgnn import DualGNN, sample_user_neighbours

# users 0..5; user 4 shares no item; user 5 has no training item at all
PAIRS = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 2), (3, 0), (3, 1), (3, 2), (3, 3),
         (4, 4)]
N_USERS, N_ITEMS = 6, 5


def slow_cooccurrence(pairs, n_users):
    items = [set() for _ in range(n_users)]
    for u, i in pairs:
        items[u].add(i)
    return [{v: len(items[u] & items[v]) for v in range(n_users)
             if v != u and items[u] & items[v]} for u in range(n_users)]


def graph(pairs=PAIRS, n_users=N_USERS, n_items=N_ITEMS, top=200):
    u = torch.tensor([p[0] for p in pairs])
    i = torch.tensor([p[1] for p in pairs])
    return user_cooccurrence_topk(u, i, n_users, n_items, top)


def test_cooccurrence_by_hand():
    nbr, cnt, n = graph(top=4)
    assert n.tolist() == [3, 2, 2, 3, 0, 0]
    # shared items: 0-1: 2, 0-2: 1, 0-3: 3, 1-3: 2, 2-3: 1
    assert nbr[0, :3].tolist() == [3, 1, 2] and cnt[0, :3].tolist() == [3, 2, 1]
    assert nbr[3, :3].tolist() == [0, 1, 2] and cnt[3, :3].tolist() == [3, 2, 1]
    assert set(nbr[1, :2].tolist()) == {0, 3} and cnt[1, :2].tolist() == [2, 2]  # a tie
    assert set(nbr[2, :2].tolist()) == {0, 3} and cnt[2, :2].tolist() == [1, 1]
    assert not cnt[4].any() and not cnt[5].any()
    # the cap keeps the largest counts
    nbr2, cnt2, n2 = graph(top=2)
    assert n2.tolist() == [2, 2, 2, 2, 0, 0]
    assert nbr2[0].tolist() == [3, 1] and cnt2[0].tolist() == [3, 2]


@pytest.mark.parametrize("top", [3, 200])
def test_cooccurrence_matches_slow_reference_on_random_data(top):
    rng = np.random.default_rng(1)
    n_users, n_items = 40, 25
    pairs = sorted({(int(u), int(i)) for u, i in zip(rng.integers(0, n_users, 160),
                                                       rng.integers(0, n_items, 160),
                                                       strict=True)})
    pairs = pairs + pairs[:10]  # a repeated training pair counts once
    nbr, cnt, n = graph(pairs, n_users, n_items, top)
    ref = slow_cooccurrence(pairs, n_users)
    for u in range(n_users):
        want = sorted(ref[u].values(), reverse=True)[:top]
        assert int(n[u]) == len(want)
        got = cnt[u, : len(want)].tolist()
        assert got == want, (u, got, want)  # counts in descending order
        assert all(ref[u][int(v)] == c for v, c in zip(nbr[u, : len(want)], got, strict=True))
        assert len(set(nbr[u, : len(want)].tolist())) == len(want)


def slow_sample_check(nbr, cnt, n, k, idx, w):
    """Each row against the rules, user by user."""
    for u in range(nbr.shape[0]):
        nu = int(n[u])
        if nu == 0:
            assert not w[u].any()
            continue
        own = {int(v): float(c) for v, c in zip(nbr[u, :nu], cnt[u, :nu], strict=True)}
        take = min(nu, k)
        assert idx[u, :take].tolist() == nbr[u, :take].tolist()  # the first k, in order
        assert set(idx[u].tolist()) <= set(own)  # padding repeats the user's own list
        counts = torch.tensor([own[int(v)] for v in idx[u]])
        torch.testing.assert_close(w[u], torch.softmax(counts, 0))
        assert math.isclose(float(w[u].sum()), 1.0, rel_tol=1e-6)


def test_epoch_sample_pads_from_own_list_and_weights_by_softmax():
    nbr, cnt, n = graph(top=200)
    torch.manual_seed(0)
    seen = Counter()
    for _ in range(50):
        idx, w = sample_user_neighbours(nbr, cnt, n, k=4)
        assert idx.shape == w.shape == (N_USERS, 4)
        slow_sample_check(nbr, cnt, n, 4, idx, w)
        seen.update(idx[0, 3:].tolist())
    assert set(seen) == {1, 2, 3}  # the padding draws over the whole own list
    # n >= k: the k largest, no randomness
    idx, w = sample_user_neighbours(nbr, cnt, n, k=2)
    assert idx[0].tolist() == [3, 1]
    torch.testing.assert_close(w[0], torch.softmax(torch.tensor([3.0, 2.0]), 0))


def test_epoch_sample_on_tiny(tiny):
    u = torch.as_tensor(tiny.train.users)
    i = torch.as_tensor(tiny.train.items)
    nbr, cnt, n = user_cooccurrence_topk(u, i, tiny.n_users, tiny.n_items, 200)
    torch.manual_seed(3)
    idx, w = sample_user_neighbours(nbr, cnt, n, k=40)
    slow_sample_check(nbr, cnt, n, 40, idx, w)


def make(tiny, **kw):
    torch.manual_seed(0)
    return DualGNN(DualGNN.Config(**kw), build_inputs(tiny))


def test_user_aggregation_and_fusion(tiny):
    model = make(tiny)
    model.pre_epoch(0)
    with torch.no_grad():
        zs = model.modality_outputs()
        y_prime, items = model.forward_all()
    n_u = tiny.n_users
    w_u = model.fusion.detach()
    y = sum(w_u[:, m:m + 1] * z[:n_u] for m, z in enumerate(zs))
    expect = y.clone()
    for u in range(n_u):  # Y'_u = Y_u + sum_t w_{u,t} Y_{n(u,t)}, duplicates included
        for v, wt in zip(model.sample_index[u].tolist(), model.sample_weight[u], strict=True):
            expect[u] += wt * y[v]
    torch.testing.assert_close(y_prime, expect, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(items, zs[0][n_u:] + zs[1][n_u:])
    # Z_m = X + A X + A^2 X (a sum of hops)
    adj = build_inputs(tiny).norm_adj.to_dense()
    m = model.modalities[0]
    with torch.no_grad():
        x = torch.cat([model.preference[m], model.mlp[m](model.features[m])])
        x = x / x.norm(dim=1, keepdim=True)
    torch.testing.assert_close(zs[0], x + adj @ x + adj @ adj @ x, rtol=1e-5, atol=1e-6)


def test_mmrec_fusion_alias(tiny):
    model = make(tiny, mmrec_fusion_alias=True)
    assert model.modalities == ["image", "text"] and model.alias == "image"
    with torch.no_grad():
        z_img, z_txt = (z[: tiny.n_users] for z in model.modality_outputs())
        y_prime, _ = model.forward_all()
        w = model.fusion
        y = w[:, :1] * (z_img + z_txt) + w[:, 1:] * z_txt
        torch.testing.assert_close(y_prime, y + model.user_graph().to_dense() @ y)


def test_loss_is_base_two(tiny):
    model = make(tiny, reg_weight=0.3)
    users, pos, neg = torch.tensor([0, 1, 1]), torch.tensor([2, 3, 4]), torch.tensor([5, 6, 7])
    out = {k: v.detach() for k, v in model.loss(users, pos, neg).items()}
    with torch.no_grad():
        y, items = model.forward_all()
        diff = (y[users] * items[pos]).sum(1) - (y[users] * items[neg]).sum(1)
        bpr = -torch.log2(torch.sigmoid(diff)).mean()
        reg = sum(model.preference[m][users].pow(2).mean() for m in model.modalities)
        reg = 0.3 * (reg + model.fusion.pow(2).mean())
    torch.testing.assert_close(out["bpr"], bpr)
    torch.testing.assert_close(out["reg"], reg)


def test_sample_survives_state_dict_and_cache_rules(tiny):
    model = make(tiny, eval_fresh_forward=False)
    model.pre_epoch(0)
    other = make(tiny)
    other.pre_epoch(5)
    other.pre_epoch(6)
    with torch.no_grad():
        stale = other.forward_all()[0]  # builds (and caches) epoch 6's user graph
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(other.forward_all()[0], model.forward_all()[0])
        assert not torch.allclose(stale, model.forward_all()[0])
        users, pos, neg = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5])
        model.loss(users, pos, neg)
        cached = model.embeddings()
        assert cached[0] is model._last[0]
        # the cache is what evaluation scores, so it travels with the state (best.pt)
        restored = make(tiny, eval_fresh_forward=False)
        restored.load_state_dict(model.state_dict())
        assert torch.equal(restored.embeddings()[0], cached[0])
        assert torch.equal(restored.embeddings()[1], cached[1])
