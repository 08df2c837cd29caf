"""Duplicate removal and iterative k-core filtering of an interaction list."""

from __future__ import annotations

import numpy as np

KEEP = ("latest", "earliest")


def one_per_pair(users: np.ndarray, items: np.ndarray, times: np.ndarray | None = None,
                 keep: str = "latest") -> np.ndarray:
    """Row indices that keep one row per (user, item) pair, returned in file order.

    ``keep="latest"``: the latest by ``times``, equal times (and logs without times) broken by
    the later position in the file (MMRec's rule). ``keep="earliest"``: the earliest, equal
    times broken by the earlier position (the Amazon Reviews 2023 benchmark's rule: a stable
    sort by time, then the first row of each pair)."""
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, not {keep!r}")
    rows = np.arange(len(users))
    keys = (rows, items, users) if times is None else (rows, times, items, users)
    order = np.lexsort(keys)
    u, i = users[order], items[order]
    edge = np.ones(len(order), dtype=bool)
    if keep == "latest":  # the last row of each (user, item) run
        edge[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    else:  # the first
        edge[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    return np.sort(order[edge])


def k_core(users: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Rows that survive repeated removal of users and items with fewer than ``k`` rows.

    Returns (boolean mask over the rows, number of removal rounds). The result is the
    largest subset in which every user and every item has at least ``k`` rows (possibly empty).
    """
    keep = np.ones(len(users), dtype=bool)
    if k <= 1:
        return keep, 0
    n_u = int(users.max()) + 1 if len(users) else 0
    n_i = int(items.max()) + 1 if len(items) else 0
    rounds = 0
    while True:
        u, i = users[keep], items[keep]
        u_ok = np.bincount(u, minlength=n_u) >= k
        i_ok = np.bincount(i, minlength=n_i) >= k
        ok = u_ok[u] & i_ok[i]
        if ok.all():
            return keep, rounds
        rounds += 1
        idx = np.flatnonzero(keep)
        keep[idx[~ok]] = False
