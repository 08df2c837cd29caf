"""MMRec's per-user split into train / validation / test (PROTOCOL.md).

Per user, with the user's rows ordered by item index and users visited in index order, one
``numpy.random.default_rng(seed)`` draws a permutation. A user with fewer than 10 rows gives
1 row to validation and 1 to test; otherwise ``h = floor(0.2 n)`` rows are held out,
``ceil(h / 2)`` to validation and ``floor(h / 2)`` to test: validation takes the larger half
when ``h`` is odd, as in the reference toolbox's own files (in its Amazon Baby file, every one
of the 19,445 users follows this rule; 1,123 have one validation row more than test rows, and
none the reverse).

- ``random``: validation = the permutation's first ``ceil(h / 2)`` rows, test = the next ones.
- ``time``: the same counts, held out from the latest rows (test the very latest, validation
  the ones just before); rows with equal times are ordered by the permutation.
"""

from __future__ import annotations

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
SPLITS = ("random", "time")


def held_out(n: int) -> tuple[int, int]:
    """(validation, test) counts of a user with ``n`` rows (MMRec's rule)."""
    if n < 10:
        return min(1, n), min(1, max(n - 1, 0))
    h = int(0.2 * n)
    return h - h // 2, h // 2


def split_labels(users: np.ndarray, items: np.ndarray, seed: int, how: str = "random",
                 times: np.ndarray | None = None) -> np.ndarray:
    """``x_label`` per row (0 train, 1 validation, 2 test) for rows given in any order."""
    if how not in SPLITS:
        raise ValueError(f"unknown split {how!r}")
    if how == "time" and times is None:
        raise ValueError("the time split needs times")
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
