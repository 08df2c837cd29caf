"""MGNM and LGMRec, equation by equation, against values computed another way."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import dense_norm_adj

from mgnm.data.inputs import build_inputs
from mgnm.models.losses import contrast_all
from mgnm.models.mgnm import MGNM, LGMRec, LGMRecConfig, MGNMConfig, adaptive_ddr, decorrelation


def make_model(tiny, cls=MGNM, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = cls.Config(**kw)
    return cls(cfg, build_inputs(tiny))


def dense_r(ds) -> torch.Tensor:
    r = torch.zeros(ds.n_users, ds.n_items)
    r[ds.train.users, ds.train.items] = 1.0
    return r


def dense_adj(ds) -> torch.Tensor:
    return dense_norm_adj(ds.train.users, ds.train.items, ds.n_users, ds.n_items)


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def reference_forward(model: MGNM, ds) -> torch.Tensor:
    """docs/model.md written densely and plainly: E* for evaluation (no noise, no dropout)."""
    cfg = model.config
    r = dense_r(ds)
    adj = dense_adj(ds)
    e = torch.cat([model.user_emb, model.item_emb])
    layers = [e]
    for _ in range(cfg.n_ui_layers):
        layers.append(adj @ layers[-1])
    e_id_loc = sum(layers) / len(layers)
    local_sum = torch.zeros_like(e)
    hyper_sum = torch.zeros_like(e)
    for m in model.modalities:
        feats = torch.as_tensor(ds.features[m])
        items = feats @ model.proj[m]
        users = (r @ items) / r.sum(1, keepdim=True).clamp_min(1)
        x = torch.cat([users, items])
        for _ in range(cfg.n_mm_layers):
            x = adj @ x
        local_sum = local_sum + unit(x)
        if cfg.purifier:
            gate = torch.sigmoid((feats @ model.pur_w1[m] + model.pur_b1[m]) @ model.pur_w2[m]
                                 + model.pur_b2[m])
            h_i = (model.item_emb * gate) @ model.hyper_t[m].T
        else:
            h_i = feats @ model.hyper_v[m]
        h_u = r @ h_i
        a_i = torch.softmax(h_i / cfg.hyper_temperature, 1)
        a_u = torch.softmax(h_u / cfg.hyper_temperature, 1)
        z_items = e_id_loc[ds.n_users:]
        hyper_sum = hyper_sum + torch.cat([(a_u @ a_i.T) @ z_items, (a_i @ a_i.T) @ z_items])
    return e_id_loc + local_sum + cfg.alpha * unit(hyper_sum)


@pytest.mark.parametrize("cls", [MGNM, LGMRec])
def test_forward_equals_dense_reference(tiny, cls):
    model = make_model(tiny, cls, eval_gumbel=False)
    model.eval()
    with torch.no_grad():
        got = model.forward_all(training=False).final
        ref = reference_forward(model, tiny)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_model_uses_the_symmetric_normalised_adjacency(tiny):
    model = make_model(tiny)
    # propagation uses the user-item block of D^-1/2 A D^-1/2 (the rest of A is zero)
    torch.testing.assert_close(model.r_sym.to_dense(), dense_adj(tiny)[:60, 60:])


def test_user_modality_features_are_neighbour_means(tiny):
    model = make_model(tiny)
    with torch.no_grad():
        out = model.forward_all(training=False)
    for m in model.modalities:
        layer0 = torch.cat(out.mge_layers[m][0])
        items = layer0[tiny.n_users:]
        for u in range(tiny.n_users):
            mine = tiny.train.items[tiny.train.users == u]
            torch.testing.assert_close(layer0[u], items[mine].mean(0))


def test_decorrelation_equals_direct_formula_and_vanishes_for_decorrelated_columns():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 6)) @ rng.standard_normal((6, 6))  # correlated columns
    corr = np.corrcoef(x, rowvar=False)
    direct = np.linalg.norm(corr - np.eye(6)) / math.sqrt(2)
    upper = np.sqrt((np.triu(corr, 1) ** 2).sum())
    got = decorrelation(torch.as_tensor(x, dtype=torch.float64)).item()
    assert got == pytest.approx(direct, rel=1e-9) and got == pytest.approx(upper, rel=1e-9)
    q, _ = np.linalg.qr(rng.standard_normal((50, 6)) - 0.0)
    q = q - q.mean(0)  # centred ...
    q, _ = np.linalg.qr(q)  # ... and orthogonal: zero correlation
    assert decorrelation(torch.as_tensor(q)).item() < 1e-6


def test_adaptive_weights_sum_to_one_and_carry_no_gradient():
    torch.manual_seed(0)
    layers = [torch.randn(40, 5, dtype=torch.float64) @ torch.randn(5, 5, dtype=torch.float64)
              for _ in range(3)]
    xs = [x.clone().requires_grad_(True) for x in layers]
    value = adaptive_ddr(xs)
    c = np.array([decorrelation(x).item() for x in layers])
    mu = (1 / c) / (1 / c).sum()
    assert mu.sum() == pytest.approx(1.0)
    assert value.item() == pytest.approx(float((mu * c).sum()), rel=1e-10)
    value.backward()
    for x, xv, weight in zip(layers, xs, mu, strict=True):
        xg = x.clone().requires_grad_(True)
        decorrelation(xg).backward()
        # if mu depended on x, the gradient would carry d(mu)/dx terms as well
        torch.testing.assert_close(xv.grad, weight * xg.grad)


def test_purifier_gate_in_unit_interval_and_gradients_reach_w1_w2_and_ids(tiny):
    model = make_model(tiny)
    for m in model.modalities:
        feats = model.features[m]
        gate = torch.sigmoid((feats @ model.pur_w1[m] + model.pur_b1[m]) @ model.pur_w2[m]
                             + model.pur_b2[m])
        assert bool(((gate > 0) & (gate < 1)).all())
    users = torch.arange(10)
    items = torch.as_tensor(tiny.train.items[:10])
    neg = (items + 1) % tiny.n_items
    model.loss(users, items, neg)["loss"].backward()
    for m in model.modalities:
        for p in (model.pur_w1[m], model.pur_w2[m], model.hyper_t[m], model.proj[m]):
            assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.item_emb.grad.abs().sum() > 0 and model.user_emb.grad.abs().sum() > 0


def test_factorised_hypergraph_equals_dense_product(tiny):
    model = make_model(tiny, n_hyper_layers=2)
    model.eval()
    with torch.no_grad():
        out = model.forward_all(training=False)
        e_id_loc = sum(torch.cat(x) for x in out.cge_layers) / len(out.cge_layers)
        z0 = e_id_loc[tiny.n_users:]
        r = dense_r(tiny)
        for m in model.modalities:
            h_i = model.hyperedge_logits(m)
            a_i = torch.softmax(h_i / 0.2, 1)
            a_u = torch.softmax((r @ h_i) / 0.2, 1)
            hh_i = a_i @ a_i.T  # the q x q matrix the model never forms
            z_i = hh_i @ (hh_i @ z0)
            z_u = (a_u @ a_i.T) @ (hh_i @ z0)
            torch.testing.assert_close(torch.cat(out.hyper[m]), torch.cat([z_u, z_i]), rtol=1e-4,
                                       atol=1e-6)


def test_hcl_equals_a_direct_loop():
    torch.manual_seed(1)
    anchor, positive = torch.randn(12, 4), torch.randn(12, 4)
    index = torch.tensor([3, 3, 0, 7, 11, 3, 5])  # repeats, as batches have
    got = contrast_all(anchor, positive, index, 0.2)
    ref = 0.0
    for r in index.tolist():
        a = anchor[r] / anchor[r].norm()
        num = math.exp(float(a @ (positive[r] / positive[r].norm())) / 0.2)
        den = sum(math.exp(float(a @ (positive[c] / positive[c].norm())) / 0.2) for c in range(12))
        ref += -math.log(num / den)
    assert got.item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("block,min_rows", [(1 << 19, 8), (20, 1), (1, 1), (1, 2)])
@pytest.mark.parametrize("dim", [5, 20])  # gradients of narrow and of wide rows
def test_hcl_gradient_matches_autograd_of_plain_formula(monkeypatch, block, min_rows, dim):
    """Also when the exponentials are formed a few rows at a time (``LSE_BLOCK`` entries,
    at least ``LSE_MIN_ROWS`` rows)."""
    from mgnm.models import losses

    monkeypatch.setattr(losses, "LSE_BLOCK", block)
    monkeypatch.setattr(losses, "LSE_MIN_ROWS", min_rows)
    torch.manual_seed(2)
    a1 = torch.randn(9, dim, dtype=torch.float64, requires_grad=True)
    p1 = torch.randn(9, dim, dtype=torch.float64, requires_grad=True)
    a2, p2 = a1.detach().clone().requires_grad_(True), p1.detach().clone().requires_grad_(True)
    index = torch.tensor([0, 2, 2, 8, 4])
    # scaled, as eq. 26 weights it: the gradients are formed in the forward pass and the
    # backward only multiplies them by the incoming scalar
    (-2.5 * contrast_all(a1, p1, index, 0.3)).backward()
    an, pn = F.normalize(a2, dim=1), F.normalize(p2, dim=1)
    logits = an[index] @ pn.T / 0.3
    plain = (torch.logsumexp(logits, 1) - (an[index] * pn[index]).sum(1) / 0.3).sum()
    (-2.5 * plain).backward()
    torch.testing.assert_close(a1.grad, a2.grad)
    torch.testing.assert_close(p1.grad, p2.grad)


def test_hcl_without_gradients_has_the_same_value():
    torch.manual_seed(3)
    a = torch.randn(10, 6, requires_grad=True)
    p = torch.randn(10, 6, requires_grad=True)
    index = torch.tensor([1, 1, 4, 9])
    with torch.no_grad():
        quiet = contrast_all(a, p, index, 0.2)
    assert not quiet.requires_grad
    assert quiet.item() == pytest.approx(contrast_all(a, p, index, 0.2).item(), rel=1e-6)


def test_hcl_is_summed_over_every_modality_pair(tiny3):
    model = make_model(tiny3, ddr_weight=0, ddr_mm_weight=0, cl_weight=0.5)
    users = torch.tensor([0, 1, 1, 5])
    items = torch.as_tensor(tiny3.train.items[:4])
    torch.manual_seed(5)
    losses = model.loss(users, items, (items + 1) % tiny3.n_items)
    torch.manual_seed(5)
    out = model.forward_all(training=True)
    expect = 0.0
    for a, b in combinations(model.modalities, 2):  # no "image": the first name anchors
        expect += contrast_all(out.hyper[a][0], out.hyper[b][0], users, 0.2).item()
        expect += contrast_all(out.hyper[a][1], out.hyper[b][1], items, 0.2).item()
    assert len(list(combinations(model.modalities, 2))) == 3
    assert losses["hcl"].item() == pytest.approx(0.5 * expect, rel=1e-5)


def plain_hcl(anchor: torch.Tensor, other: torch.Tensor, rows, tau: float) -> float:
    """Eq. 16 written out row by row in float64: the anchor's batch row against every row
    of the other modality's table, summed over the batch (repeats included)."""
    a, o = anchor.double(), other.double()
    total = 0.0
    for r in rows:  # a row zeroed by hyperedge dropout has cosine 0 with everything
        cos = [float(a[r] @ o[c] / (max(a[r].norm(), 1e-12) * max(o[c].norm(), 1e-12)))
               for c in range(o.shape[0])]
        total += -math.log(math.exp(cos[r] / tau) / sum(math.exp(x / tau) for x in cos))
    return total


@pytest.mark.parametrize("anchor", ["image", "audio"])
def test_hcl_anchors_the_configured_modality(tmp_path, anchor):
    """MMRec's LGMRec anchors image against every audio row (ssl_triple_loss(v[b], t[b], t));
    'audio' sorts first, which must not decide the direction."""
    from conftest import write_dataset

    from mgnm.data import load_dataset

    ds = load_dataset(write_dataset(tmp_path, n_users=12, n_items=18,
                                    modalities={"audio": 3, "image": 4}))
    model = make_model(ds, LGMRec, hcl_anchor=anchor, cl_weight=1.0, reg_weight=0.0)
    assert model.hcl_pairs() == [(anchor, "audio" if anchor == "image" else "image")]
    users = torch.tensor([0, 3, 3, 7])
    items = torch.tensor([1, 2, 2, 17])
    torch.manual_seed(11)
    got = model.loss(users, items, (items + 1) % ds.n_items)["hcl"].item()
    torch.manual_seed(11)
    with torch.no_grad():
        out = model.forward_all(training=True)
    other = "audio" if anchor == "image" else "image"
    want = sum(plain_hcl(out.hyper[anchor][side], out.hyper[other][side], rows, 0.2)
               for side, rows in ((0, users.tolist()), (1, items.tolist())))
    flipped = sum(plain_hcl(out.hyper[other][side], out.hyper[anchor][side], rows, 0.2)
                  for side, rows in ((0, users.tolist()), (1, items.tolist())))
    assert got == pytest.approx(want, rel=1e-5)
    assert got != pytest.approx(flipped, rel=1e-3)  # the direction is observable


@pytest.fixture
def tiny3(tmp_path):
    from conftest import write_dataset

    from mgnm.data import load_dataset

    return load_dataset(write_dataset(tmp_path, modalities={"a": 4, "b": 6, "c": 3}))


def test_lgmrec_switches_make_mgnm_lgmrec(tiny):
    lg = make_model(tiny, LGMRec, seed=3)
    mg = make_model(tiny, MGNM, seed=3, purifier=False, ddr_weight=0.0, ddr_mm_weight=0.0,
                    eval_gumbel=True)
    assert LGMRecConfig().model_dump() == mg.config.model_dump()
    assert lg.state_dict().keys() == mg.state_dict().keys()
    for k, v in lg.state_dict().items():
        torch.testing.assert_close(v, mg.state_dict()[k])
    users = torch.arange(8)
    items = torch.as_tensor(tiny.train.items[:8])
    neg = (items + 2) % tiny.n_items
    torch.manual_seed(9)
    la = lg.loss(users, items, neg)
    torch.manual_seed(9)
    lb = mg.loss(users, items, neg)
    for k in la:
        torch.testing.assert_close(la[k], lb[k])
    assert la["ddr"].item() == 0 and la["ddr_mm"].item() == 0


def test_alpha_zero_removes_the_global_part(tiny):
    model = make_model(tiny, alpha=0.0)
    with torch.no_grad():
        out = model.forward_all(training=False)
        e_id_loc = sum(torch.cat(x) for x in out.cge_layers) / len(out.cge_layers)
        local = e_id_loc + sum(unit(torch.cat(out.mge_layers[m][-1])) for m in model.modalities)
    torch.testing.assert_close(out.final, local)


def test_local_norm_sum_normalises_the_sum(tiny):
    model = make_model(tiny, local_norm="sum", alpha=0.0)
    with torch.no_grad():
        out = model.forward_all(training=False)
        e_id_loc = sum(torch.cat(x) for x in out.cge_layers) / len(out.cge_layers)
        local = e_id_loc + unit(sum(torch.cat(out.mge_layers[m][-1]) for m in model.modalities))
    torch.testing.assert_close(out.final, local)


def test_ddr_from_layer_skips_the_first_layers(tiny):
    m0 = make_model(tiny, ddr_from_layer=0, cl_weight=0.0)
    m1 = make_model(tiny, ddr_from_layer=1, cl_weight=0.0)
    users, items = torch.arange(5), torch.as_tensor(tiny.train.items[:5])
    neg = (items + 1) % tiny.n_items
    torch.manual_seed(0)
    l0 = m0.loss(users, items, neg)
    torch.manual_seed(0)
    l1 = m1.loss(users, items, neg)
    with torch.no_grad():
        out = m1.forward_all(training=False)
        n = tiny.n_users
        full = [torch.cat(x) for x in out.cge_layers[1:]]
        expect = adaptive_ddr([x[:n] for x in full]) + adaptive_ddr([x[n:] for x in full])
    assert l1["ddr"].item() == pytest.approx(1e-4 * expect.item(), rel=1e-5)  # beta = 1e-4
    assert l0["ddr"].item() != pytest.approx(l1["ddr"].item())


def test_eval_scores_deterministic_unless_eval_gumbel(tiny):
    model = make_model(tiny)
    model.eval()
    with torch.no_grad():
        a, b = model.embeddings()[0].clone(), model.embeddings()[0]
    torch.testing.assert_close(a, b)
    noisy = make_model(tiny, eval_gumbel=True)
    noisy.eval()
    with torch.no_grad():
        assert not torch.equal(noisy.embeddings()[0].clone(), noisy.embeddings()[0])


def test_one_training_step_lowers_the_loss_on_the_same_batch(tiny):
    model = make_model(tiny, seed=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    users = torch.as_tensor(tiny.train.users)
    items = torch.as_tensor(tiny.train.items)
    neg = (items + 7) % tiny.n_items
    torch.manual_seed(11)
    before = model.loss(users, items, neg)["loss"]
    opt.zero_grad()
    before.backward()
    opt.step()
    torch.manual_seed(11)  # the same Gumbel noise and dropout mask
    after = model.loss(users, items, neg)["loss"]
    assert after.item() < before.item()


def test_every_loss_term_is_weighted_as_eq_26(tiny):
    """Each reported term is weight x the unweighted term (the same model with weight 1)."""
    weights = dict(cl_weight=0.5, ddr_weight=0.25, ddr_mm_weight=0.125, reg_weight=0.1)
    users, items = torch.arange(6), torch.as_tensor(tiny.train.items[:6])
    torch.manual_seed(2)
    t = make_model(tiny, **weights).loss(users, items, (items + 1) % tiny.n_items)
    torch.manual_seed(2)
    ones = make_model(tiny, **dict.fromkeys(weights, 1.0)).loss(users, items,
                                                                (items + 1) % tiny.n_items)
    for term, key in (("hcl", "cl_weight"), ("ddr", "ddr_weight"),
                      ("ddr_mm", "ddr_mm_weight"), ("reg", "reg_weight")):
        torch.testing.assert_close(t[term], weights[key] * ones[term])
        assert ones[term].item() > 0
    torch.testing.assert_close(t["loss"], t["bpr"] + t["hcl"] + t["ddr"] + t["ddr_mm"] + t["reg"])


def test_configs_reject_bad_values():
    with pytest.raises(ValueError):
        MGNMConfig(keep_rate=0)
    with pytest.raises(ValueError):
        MGNMConfig(local_norm="mean")
    with pytest.raises(ValueError):
        MGNMConfig(ddr_wieght=1.0)


def test_decorrelation_gradient_matches_plain_autograd():
    torch.manual_seed(3)
    x = torch.randn(30, 5, dtype=torch.float64) @ torch.randn(5, 5, dtype=torch.float64)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    decorrelation(a).backward()
    plain = torch.linalg.norm(torch.corrcoef(b.T) - torch.eye(5, dtype=torch.float64)) / math.sqrt(2)
    plain.backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_lowrank_hcl_equals_full_width_hcl_with_gradients():
    from mgnm.models.losses import contrast_all_lowrank

    torch.manual_seed(7)
    anchor = torch.randn(20, 16, dtype=torch.float64, requires_grad=True)
    weights = torch.softmax(torch.randn(20, 3, dtype=torch.float64), 1).requires_grad_(True)
    basis = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([4, 4, 0, 19, 7, 4])
    low = contrast_all_lowrank(anchor, weights, basis, index, 0.2)
    grads_low = torch.autograd.grad(low, [anchor, weights, basis])
    full = contrast_all(anchor, weights @ basis, index, 0.2)
    grads_full = torch.autograd.grad(full, [anchor, weights, basis])
    torch.testing.assert_close(low, full)
    for g1, g2 in zip(grads_low, grads_full, strict=True):
        torch.testing.assert_close(g1, g2)


def test_bfloat16_feature_product_matches_float64_within_bfloat16_rounding():
    from mgnm.models.layers import ItemFeatures

    gen = torch.Generator().manual_seed(11)
    table = torch.rand(300, 96, generator=gen)
    feats = ItemFeatures({"image": table}, finetune=False, dtype="bfloat16")
    assert feats["image"].dtype == torch.bfloat16
    w = torch.randn(96, 12, generator=gen, requires_grad=True)
    out = feats.product("image", w)
    assert out.dtype == torch.float32
    grad = torch.randn(300, 12, generator=gen)
    out.backward(grad)
    out = out.detach()
    f64 = table.double()
    ref = f64 @ w.detach().double()
    ref_grad = f64.T @ grad.double()
    # bfloat16 keeps 8 significant bits: each rounding is within 2^-8 relative
    assert float((out.double() - ref).norm() / ref.norm()) < 2 ** -7
    assert float((w.grad.double() - ref_grad).norm() / ref_grad.norm()) < 2 ** -7
    # and it is really the bfloat16 computation, not a float32 one
    assert not torch.allclose(out, (table @ w.detach()), rtol=1e-6, atol=0)


def test_mgnm_bfloat16_features_give_nearly_the_float32_loss_and_gradients(tiny):
    users, pos, neg = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7])
    out = {}
    for dtype in ("float32", "bfloat16"):
        model = make_model(tiny, seed=5, feature_dtype=dtype)
        torch.manual_seed(9)  # the same Gumbel noise and dropout for both
        loss = model.loss(users, pos, neg)["loss"]
        loss.backward()
        out[dtype] = (loss.item(), model.proj["image"].grad.clone())
    assert out["bfloat16"][0] == pytest.approx(out["float32"][0], rel=1e-2)
    g32, g16 = out["float32"][1], out["bfloat16"][1]
    assert float((g16 - g32).norm() / g32.norm()) < 0.05


def test_bfloat16_features_cannot_be_fine_tuned():
    with pytest.raises(ValueError, match="feature_dtype=float32"):
        MGNMConfig(finetune_features=True, feature_dtype="bfloat16")
