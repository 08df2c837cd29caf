"""VBPR: scores and loss against a hand computation in float64 numpy."""

from __future__ import annotations

import numpy as np
import torch

from mgnm.data.inputs import build_inputs
from mgnm.models.vbpr import VBPR


def model_and_features(tiny, reg_weight=0.1):
    torch.manual_seed(0)
    model = VBPR(VBPR.Config(reg_weight=reg_weight), build_inputs(tiny))
    f = np.concatenate([tiny.features[m].astype(np.float64) for m in tiny.features], axis=1)
    return model, f


def by_hand(model, f):
    u = model.user_emb.detach().double().numpy()
    gamma = model.item_emb.detach().double().numpy()
    w = model.projection.weight.detach().double().numpy().T  # (sum d_m) x d
    c = model.projection.bias.detach().double().numpy()
    return u, np.concatenate([gamma, f @ w + c], axis=1)


def test_scores_are_user_times_id_and_projected_content(tiny):
    model, f = model_and_features(tiny)
    # a non-zero bias, so that c is checked too
    with torch.no_grad():
        model.projection.bias.uniform_(-1, 1)
    u, q = by_hand(model, f)
    assert u.shape[1] == q.shape[1] == 2 * model.config.embedding_size
    ue, ie = model.embeddings()
    np.testing.assert_allclose((ue @ ie.T).detach().numpy(), u @ q.T, rtol=1e-4, atol=1e-6)


def test_loss_regularises_the_full_2d_rows(tiny):
    model, f = model_and_features(tiny, reg_weight=0.1)
    with torch.no_grad():
        model.projection.bias.uniform_(-1, 1)
    users = torch.tensor([0, 3, 3, 7])
    pos = torch.tensor([1, 2, 5, 9])
    neg = torch.tensor([4, 4, 0, 11])
    out = {k: v.detach() for k, v in model.loss(users, pos, neg).items()}
    u, q = by_hand(model, f)
    ub, qi, qj = u[users.numpy()], q[pos.numpy()], q[neg.numpy()]
    diff = (ub * qi).sum(1) - (ub * qj).sum(1)
    bpr = np.mean(np.log1p(np.exp(-diff)))
    reg = 0.1 * (np.linalg.norm(ub) + np.linalg.norm(qi) + np.linalg.norm(qj)) / 4
    np.testing.assert_allclose(float(out["bpr"]), bpr, rtol=1e-5)
    np.testing.assert_allclose(float(out["reg"]), reg, rtol=1e-5)
    np.testing.assert_allclose(float(out["loss"]), bpr + reg, rtol=1e-5)
