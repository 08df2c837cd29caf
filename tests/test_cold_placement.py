"""New items placed from their content: the calibrated borrowing of trained rows.

- Every model that places new items: a new item whose features copy a trained item's ranks,
  for the users who had that item in their top 20, in the top 2 % of a 1,000-item catalogue
  by median (with the unscaled, flat 10-neighbour average this placement replaced, copies
  ranked 3-19 % down the bundled demo's catalogue).
- :func:`borrow` and :func:`calibrate` against slow references written with loops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mgnm import api
from mgnm.models import MODELS
from mgnm.models.neighbours import ContentIndex, borrow, calibrate, softmax_weights
from mgnm.predict.predictor import Predictor

PLACING = [name for name, cls in MODELS.items() if cls.needs_features]


def write_catalogue(root: Path, n_users: int = 400, n_items: int = 1000, n_groups: int = 20,
                    seed: int = 0) -> Path:
    """Users who like two of 20 item groups and pick popular items of them more often; each
    item's two modalities are noisy projections of its own latent vector (its group's centre
    plus its own part), so content says which items are alike without naming them."""
    rng = np.random.default_rng(seed)
    d = root / "catalogue"
    d.mkdir(parents=True)
    group = np.arange(n_items) % n_groups
    latent = rng.standard_normal((n_groups, 16))[group] + 0.7 * rng.standard_normal((n_items, 16))
    pop = rng.zipf(1.6, n_items).clip(max=50).astype(float)
    rows: dict[tuple[int, int], int] = {}
    for u in range(n_users):
        pool = np.flatnonzero(np.isin(group, rng.choice(n_groups, 2, replace=False)))
        picks = rng.choice(pool, size=int(rng.integers(15, 35)), replace=False,
                           p=pop[pool] / pop[pool].sum())
        for j, it in enumerate(picks):
            rows[(u, int(it))] = 1 if j < 2 else 2 if j < 4 else 0
    in_train = {i for (_, i), lab in rows.items() if lab == 0}
    for it in range(n_items):  # every item has a training interaction
        u = int(rng.integers(n_users))
        while it not in in_train and (u, it) in rows:
            u = (u + 1) % n_users
        if it not in in_train:
            rows[(u, it)] = 0
    lines = ["userID\titemID\tx_label"] + [f"{u}\t{i}\t{lab}" for (u, i), lab in sorted(rows.items())]
    (d / "catalogue.inter").write_text("\n".join(lines) + "\n")
    for m, dim in {"image": 24, "text": 12}.items():
        f = latent @ rng.standard_normal((16, dim)) + 0.3 * rng.standard_normal((n_items, dim))
        np.save(d / f"{m}_feat.npy", f.astype(np.float32))
    return d


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    return write_catalogue(tmp_path_factory.mktemp("catalogue"))


@pytest.mark.parametrize("name", PLACING)
def test_a_copy_of_a_trained_item_ranks_in_the_top_2_percent(name, catalogue, tmp_path):
    run = tmp_path / name
    api.train(name, catalogue, overrides={"epochs": 4, "batch_size": 1024, "patience": 100,
                                          "seed": 1, "topk": [20], "valid_metric": "recall@20"},
              run_dir=run)
    pred = Predictor.load(run)
    ds = api.load_run(run).dataset
    users, items = pred.user_emb, pred.item_table
    scores = users @ items.T
    rows, cols = pred._seen_pairs(np.arange(pred.n_users))
    scores[rows, cols] = -torch.inf
    top20 = scores.topk(20, dim=1).indices
    candidates = np.unique(top20.numpy())
    picks = np.random.default_rng(0).choice(candidates, min(30, candidates.size), replace=False)
    copies = pred.add_items({m: f[picks] for m, f in ds.features.items()})
    shares = []
    for j, new in zip(picks, copies, strict=True):
        who = np.flatnonzero((top20 == j).any(1).numpy())
        s_new = users[who] @ pred.item_table[pred.item_indices([new])[0]]
        rank = (scores[who] > s_new.unsqueeze(1)).sum(1) + 1  # among the trained catalogue
        shares += (rank.numpy() / ds.n_items).tolist()
    assert np.median(shares) <= 0.02, (name, np.median(shares), pred.placement.calibration)


def test_borrow_is_the_rescaled_weighted_mean():
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(30, 6, generator=gen)
    idx = torch.randint(0, 30, (4, 5), generator=gen)
    w = torch.softmax(torch.randn(4, 5, generator=gen), dim=1)
    got = borrow(table, idx, w)
    for r in range(4):
        mean = sum(float(w[r, j]) * table[idx[r, j]].double() for j in range(5))
        norm = sum(float(w[r, j]) * float(table[idx[r, j]].norm()) for j in range(5))
        torch.testing.assert_close(got[r].double(), mean / mean.norm() * norm, rtol=1e-5,
                                   atol=1e-6)
    one = torch.zeros(4, 5)
    one[:, 0] = 1
    torch.testing.assert_close(borrow(table, idx, one), table[idx[:, 0]])


def slow_reach(user_emb, item_emb, content, warm, train, targets_users, tau, k_nb, k):
    """Leave-one-out reach at one temperature, written with loops over items and users."""
    hits = pairs = 0
    for item, users in targets_users:
        sims = [(float(content[item] @ content[j]), j) for j in warm if j != item]
        sims.sort(key=lambda x: -x[0])
        near = sims[:k_nb]
        z = np.array([s for s, _ in near]) / tau
        w = np.exp(z - z.max())
        w /= w.sum()
        rows = np.stack([item_emb[j] for _, j in near]).astype(np.float64)
        mean = (w[:, None] * rows).sum(0)
        placed = mean / np.linalg.norm(mean) * (w * np.linalg.norm(rows, axis=1)).sum()
        for u in users:
            s_new = float(user_emb[u] @ placed)
            seen = {i for uu, i in train if uu == u}
            better = sum(1 for j in warm if j not in seen and float(user_emb[u] @ item_emb[j])
                         > s_new)
            hits += better + 1 <= k
            pairs += 1
    return hits / pairs


def test_calibration_matches_a_slow_reference():
    rng = np.random.default_rng(3)
    n_users, n_items, d = 25, 40, 5
    user_emb = torch.as_tensor(rng.standard_normal((n_users, d)), dtype=torch.float32)
    item_emb = torch.as_tensor(rng.standard_normal((n_items, d)), dtype=torch.float32)
    feats = {"a": torch.as_tensor(rng.standard_normal((n_items, 7)), dtype=torch.float32),
             "b": torch.as_tensor(rng.standard_normal((n_items, 3)), dtype=torch.float32)}
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, n_users, 300),
                                               rng.integers(0, n_items - 4, 300), strict=True)}
    train = sorted(pairs)  # items 36..39 never trained: not warm
    tu = np.array([u for u, _ in train])
    ti = np.array([i for _, i in train])
    warm = torch.as_tensor(np.unique(ti))
    index = ContentIndex(feats, warm, k=6)
    taus = (1.0, 0.1, 0.01)

    def place(idx, w, targets):
        return borrow(item_emb, idx, w)

    cal = calibrate(index, place, user_emb, item_emb, tu, ti, taus=taus, n_items=10,
                    n_users=1000, k=5, seed=0)
    targets = np.sort(np.random.default_rng(0).choice(warm.numpy(), size=10, replace=False))
    content = np.zeros((n_items, 10))
    content[warm.numpy()] = index.content.numpy()
    target_users = [(int(t), sorted({u for u, i in train if i == t})) for t in targets]
    for tau in taus:
        expect = slow_reach(user_emb.numpy(), item_emb.numpy(), content, warm.tolist(), train,
                            target_users, tau, 5, 5)
        assert cal.reach[tau] == pytest.approx(expect), tau
    best = max(cal.reach.values())
    se = (best * (1 - best) / cal.pairs) ** 0.5
    assert cal.tau == min(t for t in taus if cal.reach[t] >= best - se)
    assert cal.pairs == sum(len(u) for _, u in target_users)


def test_softmax_weights_follow_the_nearest_item_as_tau_shrinks():
    sims = torch.tensor([[1.0, 0.95, 0.9]])
    assert float(softmax_weights(sims, 0.001)[0, 0]) > 0.999
    torch.testing.assert_close(softmax_weights(sims, 1e6), torch.full((1, 3), 1 / 3))
