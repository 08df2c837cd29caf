"""Per-user splits into train / validation / test (``x_label`` 0 / 1 / 2).

MMRec's split (PROTOCOL.md), ``random`` and ``time``: per user, with the user's rows ordered by
item index and users visited in index order, one ``numpy.random.default_rng(seed)`` draws a
permutation. A user with fewer than 10 rows gives 1 row to validation and 1 to test; otherwise
``h = floor(0.2 n)`` rows are held out, ``ceil(h / 2)`` to validation and ``floor(h / 2)`` to
test: validation takes the larger half when ``h`` is odd, as in the reference toolbox's own
files (in its Amazon Baby file, every one of the 19,445 users follows this rule; 1,123 have one
validation row more than test rows, and none the reverse).

- ``random``: validation = the permutation's first ``ceil(h / 2)`` rows, test = the next ones.
- ``time``: the same counts, held out from the latest rows (test the very latest, validation
  the ones just before); rows with equal times are ordered by the permutation.

The Amazon Reviews 2023 benchmark's two protocols, which use no random numbers:

- ``loo`` (leave-last-out): per user, the latest row is the test row, the one before it the
  validation row, the rest train. Rows are ordered by time, and rows with equal times by their
  position in the input (the later line is the later interaction), which is the order a stable
  sort by time gives. A user with one row has only a test row; a user with two has a
  validation and a test row and no training row.
- ``timestamp``: absolute cuts, the same for every user: time ``< valid_from`` is train,
  ``valid_from <= time < test_from`` validation, ``time >= test_from`` test.
"""

from __future__ import annotations

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
SPLITS = ("random", "time", "loo", "timestamp")
NEEDS_TIME = ("time", "loo", "timestamp")


def held_out(n: int) -> tuple[int, int]:
    """(validation, test) counts of a user with ``n`` rows (MMRec's rule)."""
    if n < 10:
        return min(1, n), min(1, max(n - 1, 0))
    h = int(0.2 * n)
    return h - h // 2, h // 2


def leave_last_out(users: np.ndarray, times: np.ndarray,
                   positions: np.ndarray | None = None) -> np.ndarray:
    """``x_label`` per row: each user's latest row 2 (test), the one before 1, the rest 0.

    Order within a user: by ``times``, then by ``positions`` (default: the row's index), the
    larger being the later."""
    if positions is None:
        positions = np.arange(len(users))
    order = np.lexsort((positions, times, users))
    u = users[order]
    last = np.ones(len(u), dtype=bool)
    last[:-1] = u[1:] != u[:-1]
    before_last = np.zeros(len(u), dtype=bool)
    before_last[:-1] = last[1:] & ~last[:-1]  # the next row is the user's last, this is not
    labels = np.full(len(users), TRAIN, dtype=np.int8)
    labels[order[last]] = TEST
    labels[order[before_last]] = VALID
    return labels


def timestamp_cut(times: np.ndarray, valid_from: float, test_from: float) -> np.ndarray:
    """``x_label`` per row from two absolute cuts (``valid_from <= test_from``)."""
    if not valid_from <= test_from:
        raise ValueError(f"valid_from {valid_from} is after test_from {test_from}")
    labels = np.full(len(times), TRAIN, dtype=np.int8)
    labels[times >= valid_from] = VALID
    labels[times >= test_from] = TEST
    return labels


def split_labels(users: np.ndarray, items: np.ndarray, seed: int, how: str = "random",
                 times: np.ndarray | None = None, positions: np.ndarray | None = None,
                 valid_from: float | None = None, test_from: float | None = None) -> np.ndarray:
    """``x_label`` per row (0 train, 1 validation, 2 test) for rows given in any order.

    ``positions`` (``loo``): each row's place in the input, breaking ties in time;
    ``valid_from``/``test_from``: the cuts of ``timestamp``."""
    if how not in SPLITS:
        raise ValueError(f"unknown split {how!r}")
    if how in NEEDS_TIME and times is None:
        raise ValueError(f"the {how} split needs times")
    if how == "loo":
        return leave_last_out(users, times, positions)
    if how == "timestamp":
        if valid_from is None or test_from is None:
            raise ValueError("the timestamp split needs valid_from and test_from")
        return timestamp_cut(times, valid_from, test_from)
    rng = np.random.default_rng(seed)
    labels = np.full(len(users), TRAIN, dtype=np.int8)
    order = np.lexsort((items, users))  # by user, then item index
    u = users[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if len(u) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(u)]
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        n = hi - lo
        perm = rng.permutation(n)
        n_valid, n_test = held_out(n)
        rows = order[lo:hi]
        if how == "random":
            labels[rows[perm[:n_valid]]] = VALID
            labels[rows[perm[n_valid:n_valid + n_test]]] = TEST
        else:
            by_time = rows[np.lexsort((perm, times[rows]))]  # oldest first, ties by perm
            labels[by_time[n - n_test:]] = TEST
            labels[by_time[n - n_test - n_valid:n - n_test]] = VALID
    return labels
