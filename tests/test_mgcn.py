"""MGCN (docs/baselines.md section 8) against a slow per-node reference on a tiny input: kNN graphs
from the raw features, purifier from the fine-tuned ones, attention, preference gates read
from the ID view, the side view divided by |M| + 1; the loss terms; InfoNCE against a loop."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import dense_norm_adj

from mgnm.data.inputs import ModelInputs
from mgnm.models.losses import info_nce
from mgnm.models.mgcn import MGCN, MGCNConfig

N_USERS, N_ITEMS, D = 5, 7, 6
# item 6 has no training interaction
USERS = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4, 1])
ITEMS = torch.tensor([0, 1, 1, 2, 3, 0, 3, 5, 4])
BATCH_U = torch.tensor([0, 2, 2, 4, 1, 0])
BATCH_I = torch.tensor([1, 3, 3, 5, 4, 0])
BATCH_J = torch.tensor([6, 0, 1, 2, 0, 3])


def features(dims=(4, 3, 2), seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # positive features: every cosine is positive, so every kNN row sum is too
    return {f"m{k}": torch.rand(N_ITEMS, dim, generator=g) + 0.05 for k, dim in enumerate(dims)}


def make_model(feats: dict[str, torch.Tensor], seed: int = 1, **cfg) -> MGCN:
    inputs = ModelInputs(N_USERS, N_ITEMS, USERS, ITEMS, feats)
    torch.manual_seed(seed)
    return MGCN(MGCNConfig(embedding_size=D, **cfg), inputs)


# ----------------------------------------------------------------------------- slow reference


def dense_adjacency() -> torch.Tensor:
    return dense_norm_adj(USERS, ITEMS, N_USERS, N_ITEMS, dtype=torch.float64)


def knn_reference(raw: torch.Tensor, k: int) -> torch.Tensor:
    """``symnorm(kNN_k(F, weighted))`` entry by entry."""
    x = raw.double()
    n = x.shape[0]
    sim = [[float(x[r] @ x[c]) / (float(x[r].norm()) * float(x[c].norm())) for c in range(n)]
           for r in range(n)]
    knn = torch.zeros(n, n, dtype=torch.float64)
    for r in range(n):
        for c in sorted(range(n), key=lambda c, r=r: -sim[r][c])[:k]:
            knn[r, c] = sim[r][c]
    deg = knn.sum(1)
    out = torch.zeros_like(knn)
    for r in range(n):
        for c in range(n):
            if knn[r, c] != 0:
                out[r, c] = knn[r, c] / math.sqrt(deg[r] * deg[c])
    return out


def lin(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    y = x @ layer.weight.detach().double().T
    return y if layer.bias is None else y + layer.bias.detach().double()


def reference_views(model: MGCN, raw: dict[str, torch.Tensor]):
    """``(E, S, C)`` computed node by node in float64."""
    cfg = model.config
    names = list(raw)
    p, q = model.user_emb.detach().double(), model.item_emb.detach().double()
    a = dense_adjacency()
    x = torch.cat([p, q])
    acc = x
    for _ in range(cfg.n_ui_layers):
        x = a @ x
        acc = acc + x
    content = acc / (cfg.n_ui_layers + 1)
    deg_u = torch.bincount(USERS, minlength=N_USERS).double()
    deg_i = torch.bincount(ITEMS, minlength=N_ITEMS).double()
    views = {}
    for m in names:
        tuned = model.features[m].detach().double()
        purified = torch.stack([
            q[i] * torch.sigmoid(lin(model.purifier_gates[m], lin(model.projections[m], tuned[i])))
            for i in range(N_ITEMS)])
        graph = knn_reference(raw[m], cfg.knn_k)  # from the raw features
        items = purified
        for _ in range(cfg.n_layers):
            items = graph @ items
        users = torch.zeros(N_USERS, D, dtype=torch.float64)
        for u, i in zip(USERS.tolist(), ITEMS.tolist(), strict=True):
            users[u] += items[i] / math.sqrt(deg_u[u] * deg_i[i])
        views[m] = torch.cat([users, items])
    w1, w2 = model.query[0], model.query[2]
    side = torch.zeros_like(content)
    for v in range(N_USERS + N_ITEMS):
        scores = torch.stack([lin(w2, torch.tanh(lin(w1, views[m][v])))[0] for m in names])
        alpha = torch.exp(scores) / torch.exp(scores).sum()
        common = sum(alpha[k] * views[m][v] for k, m in enumerate(names))
        specific = [torch.sigmoid(lin(model.preference_gates[m], content[v])) * (views[m][v] - common)
                    for m in names]
        side[v] = (common + sum(specific)) / (len(names) + 1)
    return content + side, side, content


def nce_loop(x: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """``mean_r -log(exp(cos(x_r, y_r)/tau) / sum_r' exp(cos(x_r, y_r')/tau))``, by loops."""
    total = 0.0
    for r in range(x.shape[0]):
        def c(a, b):
            return float(a @ b) / (float(a.norm()) * float(b.norm()))
        num = math.exp(c(x[r], y[r]) / tau)
        den = sum(math.exp(c(x[r], y[s]) / tau) for s in range(y.shape[0]))
        total += -math.log(num / den)
    return torch.tensor(total / x.shape[0], dtype=torch.float64)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("n_ui_layers, n_layers, knn_k", [(2, 1, 3), (1, 2, 4), (0, 0, 2)])
def test_views_match_per_node_reference(n_ui_layers, n_layers, knn_k):
    raw = features()
    model = make_model(raw, n_ui_layers=n_ui_layers, n_layers=n_layers, knn_k=knn_k)
    with torch.no_grad():  # fine-tuned tables drift away from the files: the kNN must not follow
        for t in model.features.tables.values():
            t.mul_(torch.rand_like(t) * 3 - 1)
    got = model.views()
    want = reference_views(model, raw)
    for g, w, name in zip(got, want, ("final", "side", "content"), strict=True):
        torch.testing.assert_close(g.detach().double(), w, rtol=1e-5, atol=1e-6, msg=name)


def test_side_view_is_divided_by_modalities_plus_one():
    """With identical modalities, E_m = Ebar and Ehat_m = 0, so S = E_1 / (|M| + 1)."""
    f = features(dims=(4,))["m0"]
    one = make_model({"a": f})
    with torch.no_grad():
        s1 = one.views().side
    for n_mod in (2, 3, 4):
        names = [f"m{k}" for k in range(n_mod)]
        model = make_model({m: f.clone() for m in names})
        with torch.no_grad():
            model.user_emb.copy_(one.user_emb)
            model.item_emb.copy_(one.item_emb)
            model.query.load_state_dict(one.query.state_dict())
            for m in names:
                model.features.tables[m].copy_(one.features.tables["a"])
                for mod in ("projections", "purifier_gates", "preference_gates"):
                    getattr(model, mod)[m].load_state_dict(getattr(one, mod)["a"].state_dict())
            s = model.views().side
        torch.testing.assert_close(s * (n_mod + 1), s1 * 2, rtol=1e-5, atol=1e-7)


def test_loss_terms_by_hand():
    raw = features(dims=(4, 3))
    model = make_model(raw, reg_weight=1e-2, cl_weight=0.1, reg_batch_size=2048)
    got = model.loss(BATCH_U, BATCH_I, BATCH_J)
    final, side, content = reference_views(model, raw)
    n = N_USERS
    u, i, j = final[BATCH_U], final[n + BATCH_I], final[n + BATCH_J]
    bpr = -torch.log(torch.sigmoid((u * i).sum(1) - (u * j).sum(1))).mean()
    reg = 1e-2 * 0.5 * (u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum()) / 2048
    cl = (nce_loop(side[n + BATCH_I], content[n + BATCH_I], 0.2)
          + nce_loop(side[BATCH_U], content[BATCH_U], 0.2))
    want = {"bpr": bpr, "reg": reg, "cl": 0.1 * cl, "loss": bpr + reg + 0.1 * cl}
    for k, w in want.items():
        torch.testing.assert_close(got[k].detach().double(), w, rtol=1e-5, atol=1e-7, msg=k)


def test_info_nce_equals_a_direct_loop():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.randn(5, 4, generator=g, dtype=torch.float64)
    rows = torch.tensor([0, 1, 1, 2, 4, 3, 1])  # duplicated rows are negatives too
    for tau in (0.2, 0.5):
        torch.testing.assert_close(info_nce(x[rows], y[rows], temperature=tau),
                                   nce_loop(x[rows], y[rows], tau))


def test_embeddings_are_the_final_view_and_deterministic():
    model = make_model(features()).eval()
    with torch.no_grad():
        u, i = model.embeddings()
        final = model.views().final
    torch.testing.assert_close(torch.cat([u, i]), final)


def test_defaults_and_schedule():
    assert MGCN.train_defaults == {"lr_decay": 0.96, "lr_decay_epochs": 50}
    cfg = MGCNConfig()
    assert (cfg.n_ui_layers, cfg.n_layers, cfg.knn_k, cfg.reg_weight, cfg.temperature) == \
        (2, 1, 10, 1e-4, 0.2)
    assert cfg.reg_batch_size == 2048
    assert MGCN.grid == {"cl_weight": [0.001, 0.01, 0.1]}
