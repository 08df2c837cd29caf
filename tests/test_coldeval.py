"""``evaluate-cold`` on the whole catalogue: metrics and cold shares against a slow reference,
the references (content kNN, popularity), and the command as users run it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from clitools import assert_user_error, run_mgnm
from conftest import write_dataset

from mgnm import api
from mgnm.data import load_dataset
from mgnm.predict.coldeval import evaluate_cold, rank_catalogue
from mgnm.predict.coldsplit import cold_split

FAST = {"epochs": 2, "batch_size": 64, "patience": 100, "device": "cpu", "topk": [5, 10],
        "valid_metric": "recall@10", "seed": 3}


@pytest.fixture(scope="module")
def cold_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cold")
    src = write_dataset(root / "d", n_users=90, n_items=60)
    cold_split(src, root / "cold", fraction=0.2, seed=4)
    return root / "cold"


def slow_catalogue(scores: np.ndarray, ds, split: str, eligible: np.ndarray, k: int):
    """Recall@k, NDCG@k and the cold share of the top-k slots, with loops per user."""
    s = ds.split(split)
    warm = np.bincount(ds.train.items, minlength=ds.n_items) > 0
    recalls, ndcgs, cold_slots, slots = [], [], 0, 0
    for u in sorted(set(s.users[~warm[s.items]].tolist())):
        seen = set(ds.train.items[ds.train.users == u].tolist())
        if not seen:
            continue
        rel = set(s.items[(s.users == u) & ~warm[s.items]].tolist())
        cand = [i for i in range(eligible.size) if eligible[i] and i not in seen]
        ranked = sorted(cand, key=lambda i: -scores[u, i])[:k]
        hits = [i in rel for i in ranked]
        recalls.append(sum(hits) / len(rel))
        dcg = sum(1 / np.log2(r + 2) for r, h in enumerate(hits) if h)
        ndcgs.append(dcg / sum(1 / np.log2(r + 2) for r in range(min(len(rel), k))))
        cold_slots += sum(1 for i in ranked if i < ds.n_items and not warm[i])
        slots += len(ranked)
    return np.mean(recalls), np.mean(ndcgs), cold_slots / slots


def test_whole_catalogue_ranking_equals_a_slow_reference(cold_data):
    ds = load_dataset(cold_data)
    gen = torch.Generator().manual_seed(0)
    table = torch.rand(ds.n_users, ds.n_items + 3, generator=gen)  # 3 extra (added) items
    eligible = np.ones(ds.n_items + 3, dtype=bool)
    eligible[[0, 7]] = False
    res = rank_catalogue(lambda users: table[torch.as_tensor(users)], ds, "test", eligible,
                         ks=(5, 10))
    for k in (5, 10):
        recall, ndcg, share = slow_catalogue(table.numpy(), ds, "test", eligible, k)
        assert res["metrics"][f"recall@{k}"] == pytest.approx(recall, abs=1e-6)
        assert res["metrics"][f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-6)
        assert res["cold_share_of_top"][f"cold_share@{k}"] == pytest.approx(share)
    warm = np.bincount(ds.train.items, minlength=ds.n_items) > 0
    n_cold = int((~warm & eligible[:ds.n_items]).sum())
    assert res["cold_share_of_catalogue"] == pytest.approx(n_cold / eligible.sum())


def test_references_on_the_whole_catalogue(cold_data):
    pop = evaluate_cold(None, data=cold_data, reference="popularity", ks=(5, 10))
    # a cold item has no training interaction, so popularity never recommends one
    assert pop["metrics"]["recall@10"] == 0 and pop["cold_share_of_top"]["cold_share@10"] == 0
    knn = evaluate_cold(None, data=cold_data, ks=(5, 10))
    assert knn["scorer"] == "content-knn" and knn["catalogue"] == "all"
    only_cold = evaluate_cold(None, data=cold_data, ks=(5, 10), catalogue="cold")
    # among the cold items only, the same scorer can only do better
    assert only_cold["metrics"]["recall@10"] >= knn["metrics"]["recall@10"]


def test_evaluate_cold_command(cold_data, tmp_path):
    run = tmp_path / "run"
    api.train("mgnm", cold_data, overrides=FAST, run_dir=run)
    res = run_mgnm("evaluate-cold", run, "--json")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    r = json.loads(res.out)
    assert r["catalogue"] == "all" and r["scorer"] == "mgnm" and r["cold_items"] == 6
    assert set(r["cold_share_of_top"]) == {"cold_share@10", "cold_share@20", "cold_share@50"}
    line = run_mgnm("evaluate-cold", run)
    assert line.code == 0 and "(all items)" in line.out and "cold share of top-20" in line.out
    cold = json.loads(run_mgnm("evaluate-cold", run, "--catalogue", "cold", "--json").out)
    assert cold["catalogue"] == "cold" and "cold_share_of_top" not in cold
    assert_user_error(run_mgnm("evaluate-cold", "--reference", "popularity", "--data", cold_data,
                               "--catalogue", "cold"), "popularity", "--catalogue all")
    res = run_mgnm("evaluate-cold", "--content-knn", "--reference", "popularity", "--data",
                   cold_data)
    assert res.code == 2 and "not both" in res.err and "Traceback" not in res.err
    res = run_mgnm("evaluate-cold", run, "--reference", "popularity")
    assert res.code == 2 and "give a RUN_DIR, or --reference" in res.err
