"""BPR sampling: every pair once per epoch, valid negatives, uniform, reproducible."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mgnm.data.sampler import BPRSampler


def small():
    users = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    items = np.array([0, 1, 2, 2, 3, 0, 1, 4])
    # item 5 exists (n_items=6) but never occurs in training: never a negative
    return BPRSampler(users, items, 6, batch_size=3, seed=7)


def test_epoch_is_a_permutation_of_the_train_pairs_in_batches():
    s = small()
    batches = list(s.batches(0))
    assert [len(b[0]) for b in batches] == [3, 3, 2] and len(s) == 3
    got = sorted(zip(np.concatenate([b[0].numpy() for b in batches]),
                     np.concatenate([b[1].numpy() for b in batches]), strict=True))
    assert got == sorted(zip(s.users, s.items, strict=True))


def test_negatives_are_train_items_never_seen_by_the_user():
    s = small()
    train = set(zip(s.users.tolist(), s.items.tolist(), strict=True))
    for epoch in range(50):
        u, _, j = s.epoch_triples(epoch)
        assert all((a, b) not in train for a, b in zip(u.tolist(), j.tolist(), strict=True))
        assert set(j.tolist()) <= {0, 1, 2, 3, 4}


def test_negatives_are_uniform_over_allowed_items():
    # user 0 saw item 0 of items {0..4}: each of 1..4 should get ~1/4 of the draws
    users = np.zeros(1, dtype=np.int64)
    s = BPRSampler(np.array([0, 1, 1, 1, 1]), np.array([0, 1, 2, 3, 4]), 5,
                   batch_size=10, seed=1)
    draws = s.sample_negatives(np.repeat(users, 40000), s.rng(0))
    freq = np.bincount(draws, minlength=5) / draws.size
    assert freq[0] == 0
    np.testing.assert_allclose(freq[1:], 0.25, atol=0.01)


def test_same_seed_and_epoch_give_same_batches_other_epochs_differ():
    a, b = small(), small()
    for x, y in zip(a.batches(3), b.batches(3), strict=True):
        for tx, ty in zip(x, y, strict=True):
            assert tx.equal(ty)
    u3, _, _ = a.epoch_triples(3)
    u4, _, _ = a.epoch_triples(4)
    assert not np.array_equal(u3, u4)


def test_without_negatives_yields_pairs():
    s = BPRSampler(np.array([0, 1]), np.array([0, 1]), 2, batch_size=8, seed=0, negatives=False)
    (batch,) = list(s.batches(0))
    assert len(batch) == 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 9)), min_size=1, max_size=40,
                unique=True), st.integers(0, 10_000))
def test_property_negatives_valid(pairs, seed):
    users = np.array([p[0] for p in pairs])
    items = np.array([p[1] for p in pairs])
    cand = set(items.tolist())
    per_user = {u: {i for uu, i in pairs if uu == u} for u in set(users.tolist())}
    if any(len(v) >= len(cand) for v in per_user.values()):
        return  # a user who saw every training item has no negative (a DataError)
    s = BPRSampler(users, items, 10, batch_size=4, seed=seed)
    u, _, j = s.epoch_triples(0)
    for a, b in zip(u.tolist(), j.tolist(), strict=True):
        assert b in cand and b not in per_user[a]
