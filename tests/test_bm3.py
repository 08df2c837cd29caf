"""BM3 (docs/baselines.md section 7) against a direct dense computation on a tiny graph: the loss
without negatives, the stop-gradient on the targets, the whole-table regulariser, the scores."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import dense_norm_adj

from mgnm.data.inputs import ModelInputs
from mgnm.models.bm3 import BM3, BM3Config

N_USERS, N_ITEMS = 5, 6
# item 4 has no training interaction (zero row in the adjacency)
USERS = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4])
ITEMS = torch.tensor([0, 1, 1, 2, 3, 0, 3, 5])
BATCH_U = torch.tensor([0, 2, 2, 4, 1])
BATCH_I = torch.tensor([1, 3, 3, 5, 1])  # a repeated (user, item) row


def make_model(**cfg) -> BM3:
    g = torch.Generator().manual_seed(0)
    feats = {"image": torch.randn(N_ITEMS, 4, generator=g),
             "text": torch.randn(N_ITEMS, 3, generator=g)}
    inputs = ModelInputs(N_USERS, N_ITEMS, USERS, ITEMS, feats)
    torch.manual_seed(1)
    model = BM3(BM3Config(embedding_size=8, **cfg), inputs)
    with torch.no_grad():  # make the fine-tuned tables differ from the files
        for t in model.features.tables.values():
            t.add_(0.3)
    return model


def dense_adjacency() -> torch.Tensor:
    return dense_norm_adj(USERS, ITEMS, N_USERS, N_ITEMS, dtype=torch.float64)


def reference_tables(model: BM3, params: dict[str, torch.Tensor] | None = None):
    """``(E_U, E_I)`` in float64 from a dense adjacency; ``params`` may replace P, Q."""
    p = params["P"] if params else model.user_emb.detach().double()
    q = params["Q"] if params else model.item_emb.detach().double()
    a = dense_adjacency()
    x = e0 = torch.cat([p, q])
    acc = e0
    for _ in range(model.config.n_layers):
        x = a @ x
        acc = acc + x
    e = acc / (model.config.n_layers + 1)
    return e[:N_USERS], e[N_USERS:] + q


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine, 0 against an all-zero row (a target row that dropout zeroed entirely)."""
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-8)


def direct_loss(model: BM3, eu, ei, predictor, proj, users, items, targets=None):
    """The loss of the spec, term by term; ``targets``: (U_bar, I_bar, {m: X_bar}) or None
    for dropout 0 (targets = detached online tables)."""
    cfg = model.config
    u, i = eu[users], ei[items]
    xs = {m: proj[m](model.features[m].detach().double()[items]) for m in model.features.names}
    if targets is None:
        ub, ib, xb = u.detach(), i.detach(), {m: x.detach() for m, x in xs.items()}
    else:
        ub, ib, xb = targets
    rec = (1 - cos(predictor(u), ib).mean()) + (1 - cos(predictor(i), ub).mean())
    align = sum(1 - cos(predictor(x), ib).mean() for x in xs.values())
    mask = sum(1 - cos(predictor(xs[m]), xb[m]).mean() for m in xs)
    reg = cfg.reg_weight * (eu.pow(2).sum().sqrt() + ei.pow(2).sum().sqrt()) / N_ITEMS
    return {"loss": rec + reg + cfg.cl_weight * (align + mask), "rec": rec, "reg": reg,
            "align": cfg.cl_weight * align, "mask": cfg.cl_weight * mask}  # weighted terms


def double_layers(model: BM3):
    w, b = model.predictor.weight.detach().double(), model.predictor.bias.detach().double()
    proj = {m: (lambda x, lin=lin: x @ lin.weight.detach().double().T + lin.bias.detach().double())
            for m, lin in model.projections.items()}
    return (lambda x: x @ w.T + b), proj


def test_bm3_draws_no_negatives():
    assert BM3.uses_negatives is False
    assert BM3.needs_features is True


def test_loss_without_negatives_matches_direct_computation():
    model = make_model(dropout=0.0, reg_weight=0.1, cl_weight=2.0, n_layers=2)
    got = model.loss(BATCH_U, BATCH_I, None)
    eu, ei = reference_tables(model)
    predictor, proj = double_layers(model)
    want = direct_loss(model, eu, ei, predictor, proj, BATCH_U, BATCH_I)
    for k in want:
        torch.testing.assert_close(got[k].double(), want[k], rtol=1e-5, atol=1e-6, msg=k)


def test_loss_with_dropout_matches_seeded_recomputation():
    p = 0.5
    model = make_model(dropout=p, n_layers=1)
    torch.manual_seed(7)
    got = model.loss(BATCH_U, BATCH_I, None)
    eu, ei = reference_tables(model)
    predictor, proj = double_layers(model)
    # MMRec's targets: dropout on the whole tables, then the batch rows; the same draws in
    # the same order (user table, item table, each modality's projected table)
    torch.manual_seed(7)
    ub = F.dropout(eu.float(), p).double()[BATCH_U]
    ib = F.dropout(ei.float(), p).double()[BATCH_I]
    xb = {m: F.dropout(proj[m](model.features[m].detach().double()).float(), p).double()[BATCH_I]
          for m in model.features.names}
    # a repeated batch row shares its target's mask
    assert torch.equal(ib[1], ib[2]) and torch.equal(ub[1], ub[2])
    want = direct_loss(model, eu, ei, predictor, proj, BATCH_U, BATCH_I, (ub, ib, xb))
    for k in want:
        torch.testing.assert_close(got[k].double(), want[k], rtol=1e-5, atol=1e-6, msg=k)
    # the dropout does perturb the targets
    no_drop = direct_loss(model, eu, ei, predictor, proj, BATCH_U, BATCH_I)
    assert abs(float(got["rec"].detach()) - float(no_drop["rec"])) > 1e-3


def test_no_gradient_flows_into_the_targets():
    model = make_model(dropout=0.0, reg_weight=0.0, cl_weight=2.0)
    model.zero_grad()
    model.loss(BATCH_U, BATCH_I, None)["loss"].backward()
    got_p, got_q = model.user_emb.grad.double(), model.item_emb.grad.double()

    predictor, proj = double_layers(model)

    def grads(detach_targets: bool):
        p = model.user_emb.detach().double().requires_grad_()
        q = model.item_emb.detach().double().requires_grad_()
        eu, ei = reference_tables(model, {"P": p, "Q": q})
        if detach_targets:
            loss = direct_loss(model, eu, ei, predictor, proj, BATCH_U, BATCH_I)["loss"]
        else:  # the same loss with the targets left on the graph
            xs = {m: proj[m](model.features[m].detach().double()[BATCH_I])
                  for m in model.features.names}
            loss = direct_loss(model, eu, ei, predictor, proj, BATCH_U, BATCH_I,
                               (eu[BATCH_U], ei[BATCH_I], xs))["loss"]
        return torch.autograd.grad(loss, [p, q])

    want_p, want_q = grads(detach_targets=True)
    torch.testing.assert_close(got_p, want_p, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(got_q, want_q, rtol=1e-4, atol=1e-7)
    # the check can fail: without the stop-gradient the gradients differ
    live_p, _ = grads(detach_targets=False)
    assert (live_p - want_p).abs().max() > 1e-3


def test_regulariser_is_over_the_whole_tables_divided_by_n_items():
    model = make_model(reg_weight=0.1)
    eu, ei = reference_tables(model)
    want = 0.1 * (eu.norm() + ei.norm()) / N_ITEMS
    a = model.loss(BATCH_U, BATCH_I, None)["reg"]
    b = model.loss(torch.tensor([3]), torch.tensor([0]), None)["reg"]  # another batch
    torch.testing.assert_close(a.double(), want, rtol=1e-5, atol=0)
    torch.testing.assert_close(b.double(), want, rtol=1e-5, atol=0)
    # non-squared, not a batch-row norm: a batch-row version would differ
    rows = 0.1 * (eu[BATCH_U].norm() + ei[BATCH_I].norm()) / len(BATCH_U)
    assert abs(float(a.detach()) - float(rows)) > 1e-4


def test_gradient_reaches_fine_tuned_features_and_predictor():
    model = make_model(dropout=0.0)
    model.loss(BATCH_U, BATCH_I, None)["loss"].backward()
    for t in model.features.tables.values():
        assert t.grad is not None and t.grad[BATCH_I].abs().sum() > 0
    assert model.predictor.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("n_layers", [0, 1, 2])
def test_scores_use_the_predictor_on_both_sides(n_layers):
    model = make_model(n_layers=n_layers).eval()
    with torch.no_grad():
        u, i = model.embeddings()
    eu, ei = reference_tables(model)
    predictor, _ = double_layers(model)
    torch.testing.assert_close(u.double(), predictor(eu), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(i.double(), predictor(ei), rtol=1e-5, atol=1e-6)
