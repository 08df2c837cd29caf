"""Ranking metrics against hand-computed values and a slow reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgnm.evaluation.metrics import rank_metrics


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
