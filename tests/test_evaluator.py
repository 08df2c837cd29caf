"""Full-ranking evaluation against a slow per-user reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mgnm.data.dataset import Dataset, Split
from mgnm.evaluation.evaluator import Evaluator, recommend_topk


def slow_eval(ds: Dataset, ue: np.ndarray, ie: np.ndarray, split: str, k: int) -> dict:
    train = {}
    for u, i in zip(ds.train.users, ds.train.items, strict=True):
        train.setdefault(int(u), set()).add(int(i))
    target = {}
    s = ds.split(split)
    for u, i in zip(s.users, s.items, strict=True):
        target.setdefault(int(u), set()).add(int(i))
    rec, ndcg = [], []
    for u, t in sorted(target.items()):
        if u not in train:
            continue  # cold user: not evaluated
        scores = ue[u] @ ie.T
        ranked = [i for i in np.argsort(-scores, kind="stable") if i not in train[u]][:k]
        hits = [1 if i in t else 0 for i in ranked]
        rec.append(sum(hits) / len(t))
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        ndcg.append(dcg / sum(1 / math.log2(r + 2) for r in range(min(len(t), k))))
    return {f"recall@{k}": float(np.mean(rec)), f"ndcg@{k}": float(np.mean(ndcg))}


def random_dataset(seed=0, n_users=50, n_items=40):
    rng = np.random.default_rng(seed)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, n_users, 600),
                                                rng.integers(0, n_items, 600), strict=True)}
    pairs = sorted(pairs)
    labels = rng.choice([0, 0, 0, 1, 2], size=len(pairs))
    u = np.array([p[0] for p in pairs])
    i = np.array([p[1] for p in pairs])
    sp = {n: Split(u[labels == c], i[labels == c]) for c, n in enumerate(["train", "valid", "test"])}
    return Dataset("r", n_users, n_items, **sp)


@pytest.mark.parametrize("batch_size", [7, 4096])
@pytest.mark.parametrize("split", ["valid", "test"])
def test_matches_slow_reference(split, batch_size):
    ds = random_dataset()
    rng = np.random.default_rng(1)
    ue = rng.standard_normal((ds.n_users, 8)).astype(np.float32)
    ie = rng.standard_normal((ds.n_items, 8)).astype(np.float32)
    ev = Evaluator(ds, ks=(5, 10, 20), batch_size=batch_size)
    got = ev.evaluate(torch.as_tensor(ue), torch.as_tensor(ie), split)
    for k in (5, 10, 20):
        ref = slow_eval(ds, ue, ie, split, k)
        assert got[f"recall@{k}"] == pytest.approx(ref[f"recall@{k}"], rel=1e-5)
        assert got[f"ndcg@{k}"] == pytest.approx(ref[f"ndcg@{k}"], rel=1e-5)


def test_train_items_masked_validation_items_not_masked_at_test():
    # one user; items 0..3; item 0 train, item 1 valid, item 2 test
    ds = Dataset("m", 1, 4, Split(np.array([0]), np.array([0])), Split(np.array([0]), np.array([1])),
                 Split(np.array([0]), np.array([2])))
    ue = torch.ones(1, 1)
    ie = torch.tensor([[10.0], [9.0], [8.0], [1.0]])  # train item scores highest
    ev = Evaluator(ds, ks=(1, 2))
    assert ev.evaluate(ue, ie, "valid")["recall@1"] == 1.0  # item 0 masked, item 1 first
    test = ev.evaluate(ue, ie, "test")
    assert test["recall@1"] == 0.0  # the validation item 1 still ranks first at test time
    assert test["recall@2"] == 1.0


def test_cold_users_are_not_evaluated():
    ds = Dataset("c", 2, 3, Split(np.array([0]), np.array([0])), Split(np.array([0, 1]),
                 np.array([1, 1])), Split(np.array([], dtype=np.int64), np.array([], dtype=np.int64)))
    ev = Evaluator(ds, ks=(1,))
    assert ev.n_users("valid") == 1


def test_per_user_values_and_recommend_excludes_train():
    ds = random_dataset(2)
    ue = torch.randn(ds.n_users, 4)
    ie = torch.randn(ds.n_items, 4)
    ev = Evaluator(ds, ks=(10,))
    per = ev.evaluate(ue, ie, "test", per_user=True)
    assert per["recall@10"].shape == (ev.n_users("test"),)
    assert per["recall@10"].mean() == pytest.approx(ev.evaluate(ue, ie, "test")["recall@10"])
    users = np.unique(ds.train.users)[:5]
    items, scores = recommend_topk(ue, ie, users, 5, (ds.train.users, ds.train.items))
    for r, u in enumerate(users):
        seen = set(ds.train.items[ds.train.users == u].tolist())
        assert not seen & set(items[r].tolist())
        assert np.all(np.diff(scores[r]) <= 0)


@pytest.mark.parametrize("n_cols,k", [(7050, 50), (1001, 20), (803, 50), (3000, 1)])
def test_topk_equals_torch_topk_values_with_ties_and_masks(n_cols, k):
    """The grouped selection returns torch.topk's values exactly, and indices that hold them."""
    from mgnm.evaluation.evaluator import topk

    gen = torch.Generator().manual_seed(n_cols)
    scores = torch.randn(37, n_cols, generator=gen)
    scores[:5] = torch.randint(0, 9, (5, n_cols), generator=gen).float()  # many ties
    scores[5:9, : n_cols - 3] = -math.inf  # rows with fewer finite scores than columns
    scores[9, :] = -math.inf
    scores[10, 0] = 1e30  # one huge score; the rest of its group is small
    values, idx = topk(scores, k)
    ref = scores.topk(k, dim=1)
    assert torch.equal(values, ref.values)
    assert torch.equal(scores.gather(1, idx), values)
    for row in idx:  # k distinct columns per row
        assert row.unique().numel() == k
    unique_rows = slice(11, None)  # continuous random scores: no ties, same indices
    assert torch.equal(idx[unique_rows], ref.indices[unique_rows])


def test_many_items_evaluation_matches_slow_reference():
    """Enough items for the grouped top-k path (items >= 16 x 50), against the slow loop."""
    ds = random_dataset(seed=3, n_users=30, n_items=900)
    rng = np.random.default_rng(5)
    ue = rng.standard_normal((ds.n_users, 8)).astype(np.float32)
    ie = rng.standard_normal((ds.n_items, 8)).astype(np.float32)
    ev = Evaluator(ds, ks=(20, 50), batch_size=11)
    for split in ("valid", "test"):
        got = ev.evaluate(torch.from_numpy(ue), torch.from_numpy(ie), split)
        ref = slow_eval(ds, ue, ie, split, 50)
        assert got["recall@50"] == pytest.approx(ref["recall@50"], abs=1e-6)
        assert got["ndcg@50"] == pytest.approx(ref["ndcg@50"], abs=1e-6)
