"""Ranking metrics against hand-computed values and a slow reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgnm.evaluation.metrics import (
    LIST_METRICS,
    USER_METRICS,
    Catalogue,
    RankedLists,
    check_metrics,
    rank_metrics,
    short_head,
)


def test_hand_computed_example():
    # ranked list: hit, miss, hit, miss, miss ; 3 relevant items in total
    hits = torch.tensor([[1, 0, 1, 0, 0]], dtype=torch.bool)
    m = rank_metrics(hits, torch.tensor([3]), [1, 3, 5])
    assert m["recall@1"].item() == pytest.approx(1 / 3)
    assert m["recall@3"].item() == pytest.approx(2 / 3)
    assert m["precision@3"].item() == pytest.approx(2 / 3)
    dcg3 = 1 + 1 / math.log2(4)
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@3"].item() == pytest.approx(dcg3 / idcg3)
    assert m["ndcg@5"].item() == pytest.approx(dcg3 / idcg3)  # ideal capped at 3 relevant
    assert m["ndcg@1"].item() == pytest.approx(1.0)
    # AP@5 = (P@1*1 + P@3*1) / min(3, 5) = (1 + 2/3) / 3
    assert m["map@5"].item() == pytest.approx((1 + 2 / 3) / 3)
    assert m["map@1"].item() == pytest.approx(1.0)


def test_one_relevant_item_at_rank_two():
    hits = torch.tensor([[0, 1, 0]], dtype=torch.bool)
    m = rank_metrics(hits, torch.tensor([1]), [1, 2, 3])
    assert m["recall@1"].item() == 0 and m["recall@2"].item() == 1
    assert m["ndcg@2"].item() == pytest.approx(1 / math.log2(3))
    assert m["map@3"].item() == pytest.approx(0.5)


def reference(hit_row: list[int], n_rel: int, k: int) -> dict[str, float]:
    top = hit_row[:k]
    h = sum(top)
    dcg = sum(1 / math.log2(r + 2) for r, x in enumerate(top) if x)
    idcg = sum(1 / math.log2(r + 2) for r in range(min(n_rel, k)))
    ap = 0.0
    for r in range(k):
        if top[r]:
            ap += sum(top[: r + 1]) / (r + 1)
    return {"recall": h / n_rel, "precision": h / k, "ndcg": dcg / idcg,
            "map": ap / min(n_rel, k)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.booleans(), min_size=8, max_size=8), st.integers(0, 6)),
                min_size=1, max_size=6))
def test_property_against_reference(rows):
    hits, n_rel = [], []
    for row, extra in rows:
        hits.append(row)
        n_rel.append(max(sum(row) + extra, 1))
    ht = torch.tensor(hits, dtype=torch.bool)
    m = rank_metrics(ht, torch.tensor(n_rel), [1, 4, 8])
    for k in (1, 4, 8):
        for name in ("recall", "precision", "ndcg", "map"):
            ref = np.array([reference(h, n, k)[name] for h, n in zip(hits, n_rel, strict=True)])
            np.testing.assert_allclose(m[f"{name}@{k}"].numpy(), ref, rtol=1e-5, atol=1e-7)


# --- every registered metric: a hand-worked example and a slow reference -------------------

POP = np.array([10, 5, 3, 1, 1, 0], dtype=np.float64)  # training popularity of items 0..5
N_USERS = 8


def hand_lists():
    # three users' top-3 lists and targets:
    #   u0: [0, 1, 2], targets {1, 4} -> hits [0, 1, 0]
    #   u1: [3, 0, 4], targets {3}    -> hits [1, 0, 0]
    #   u2: [1, 2, 3], targets {5}    -> hits [0, 0, 0]
    top = torch.tensor([[0, 1, 2], [3, 0, 4], [1, 2, 3]])
    hits = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    cat = Catalogue.from_counts(POP, N_USERS)
    return RankedLists(hits, torch.tensor([2, 1, 1]), top, cat), cat


def test_short_head_rule_by_hand():
    # 20 interactions; 20% = 4; item 0 alone holds 10 >= 4 -> the head is {0}
    assert short_head(POP).tolist() == [True, False, False, False, False, False]
    # 5, 5, 5, 5 (20): 4 needed -> the first item by index of the tie
    assert short_head(np.array([5, 5, 5, 5])).tolist() == [True, False, False, False]
    # 3, 2, 2, 2, 1 (10): 2 needed -> item 0 (3 >= 2)
    assert short_head(np.array([3, 2, 2, 2, 1])).tolist() == [True] + [False] * 4
    # 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 (10): 2 needed -> two items
    assert short_head(np.ones(10)).sum() == 2


def test_hand_worked_three_users():
    r, cat = hand_lists()
    at = {name: fn(r, 3).numpy() for name, fn in USER_METRICS.items()}
    # hit@3: u0 and u1 have a hit -> 1, 1, 0
    np.testing.assert_allclose(at["hit"], [1, 1, 0])
    # mrr@3: first hit at rank 2, rank 1, none -> 1/2, 1, 0 (mean 0.5)
    np.testing.assert_allclose(at["mrr"], [0.5, 1, 0])
    # recall@3: 1/2, 1/1, 0/1 ; precision@3: 1/3, 1/3, 0
    np.testing.assert_allclose(at["recall"], [0.5, 1, 0])
    np.testing.assert_allclose(at["precision"], [1 / 3, 1 / 3, 0], rtol=1e-6)
    # ndcg@3: u0 (1/log2 3) / (1 + 1/log2 3); u1 1; u2 0
    np.testing.assert_allclose(at["ndcg"], [(1 / math.log2(3)) / (1 + 1 / math.log2(3)), 1, 0],
                               rtol=1e-6)
    # map@3: u0 P@2 / min(2, 3) = (1/2)/2; u1 1; u2 0
    np.testing.assert_allclose(at["map"], [0.25, 1, 0])
    # arp@3: (10+5+3)/3 = 6, (1+10+1)/3 = 4, (5+3+1)/3 = 3
    np.testing.assert_allclose(at["arp"], [6, 4, 3], rtol=1e-6)
    # aplt@3: the head is {0}: 2/3, 2/3, 3/3
    np.testing.assert_allclose(at["aplt"], [2 / 3, 2 / 3, 1], rtol=1e-6)
    # novelty@3 with -log2(pop/8): item0 -0.321928, item1 0.678072, item2 1.415037, items 3,4: 3
    np.testing.assert_allclose(at["novelty"], [(-0.321928 + 0.678072 + 1.415037) / 3,
                                               (3 - 0.321928 + 3) / 3,
                                               (0.678072 + 1.415037 + 3) / 3], rtol=1e-5)
    # mrr@1: only u1's first item is a hit
    np.testing.assert_allclose(USER_METRICS["mrr"](r, 1).numpy(), [0, 1, 0])
    # coverage and gini over the recommendable items 0..4 (item 5 has no training interaction)
    # K = 1: items 0, 3, 1 recommended -> coverage 3/5; counts sorted [0, 0, 1, 1, 1], sum 3,
    #   gini = (0*1 + 2*1 + 4*1) / (5 * 3) = 0.4
    c1 = torch.bincount(r.top[:, :1].reshape(-1), minlength=6)
    assert LIST_METRICS["coverage"](c1, cat) == pytest.approx(0.6)
    assert LIST_METRICS["gini"](c1, cat) == pytest.approx(0.4)
    # K = 3: counts 0:2, 1:2, 2:2, 3:2, 4:1 -> coverage 1; sorted [1, 2, 2, 2, 2], sum 9,
    #   gini = (-4*1 - 2*2 + 0*2 + 2*2 + 4*2) / (5 * 9) = 4/45
    c3 = torch.bincount(r.top.reshape(-1), minlength=6)
    assert LIST_METRICS["coverage"](c3, cat) == pytest.approx(1.0)
    assert LIST_METRICS["gini"](c3, cat) == pytest.approx(4 / 45)


def slow_metrics(lists, targets, pop, n_users, k):
    """Every metric at ``k`` in plain Python from item lists and target sets."""
    total = sum(pop)
    order = sorted(range(len(pop)), key=lambda i: (-pop[i], i))
    head, acc = set(), 0.0
    for i in order:
        if acc >= 0.2 * total:
            break
        head.add(i)
        acc += pop[i]
    per = {m: [] for m in ("recall", "precision", "ndcg", "map", "hit", "mrr", "arp", "aplt",
                           "novelty")}
    for lst, t in zip(lists, targets, strict=True):
        top = lst[:k]
        rel = [1 if i in t else 0 for i in top]
        h = sum(rel)
        per["recall"].append(h / len(t))
        per["precision"].append(h / k)
        dcg = sum(x / math.log2(r + 2) for r, x in enumerate(rel))
        per["ndcg"].append(dcg / sum(1 / math.log2(r + 2) for r in range(min(len(t), k))))
        per["map"].append(sum(sum(rel[:r + 1]) / (r + 1) for r in range(len(rel)) if rel[r])
                          / min(len(t), k))
        per["hit"].append(1.0 if h else 0.0)
        per["mrr"].append(next((1 / (r + 1) for r, x in enumerate(rel) if x), 0.0))
        per["arp"].append(sum(pop[i] for i in top) / len(top))
        per["aplt"].append(sum(1 for i in top if i not in head) / len(top))
        per["novelty"].append(sum(-math.log2(max(pop[i], 1) / n_users) for i in top) / len(top))
    recommendable = [i for i in range(len(pop)) if pop[i] > 0]
    times = {i: 0 for i in recommendable}
    for lst in lists:
        for i in lst[:k]:
            if i in times:
                times[i] += 1
    c = sorted(times.values())
    n = len(c)
    out = {m: v for m, v in per.items()}
    out["coverage"] = sum(1 for v in c if v > 0) / n
    out["gini"] = sum((2 * (j + 1) - n - 1) * v for j, v in enumerate(c)) / (n * sum(c))
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_every_metric_against_slow_reference(seed):
    rng = np.random.default_rng(seed)
    n_items, n_users, kmax = 12, 7, 6
    pop = rng.integers(0, 6, n_items).astype(np.float64)
    pop[0] = max(pop[0], 1)
    lists = [list(rng.permutation(n_items)[:kmax]) for _ in range(n_users)]
    targets = [set(rng.choice(n_items, rng.integers(1, 5), replace=False).tolist())
               for _ in range(n_users)]
    top = torch.tensor(lists)
    hits = torch.tensor([[i in t for i in lst] for lst, t in zip(lists, targets, strict=True)])
    cat = Catalogue.from_counts(pop, 20)
    r = RankedLists(hits, torch.tensor([len(t) for t in targets]), top, cat)
    for k in (1, 3, 6):
        ref = slow_metrics(lists, targets, list(pop), 20, k)
        for name, fn in USER_METRICS.items():
            np.testing.assert_allclose(fn(r, k).numpy(), ref[name], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}@{k}")
        counts = torch.bincount(top[:, :k].reshape(-1), minlength=n_items)
        for name, fn in LIST_METRICS.items():
            assert fn(counts, cat) == pytest.approx(ref[name]), f"{name}@{k}"


def test_unknown_metric_names_the_known_ones():
    from mgnm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown metric 'recal'; known metrics: recall, "):
        check_metrics(["recall", "recal"])
    assert check_metrics(["gini", "recall"]) == ("recall", "gini")  # registry order
