"""Placing a new item from its content: rows borrowed from its nearest trained items.

A new item has content but no interaction, so the collaborative part of its row cannot be
learned; it is estimated from the trained items whose content is closest:

- **similarity**: the mean over modalities of the cosine similarities (:func:`content_vectors`);
- **weights**: a softmax of the similarities to the ``k`` nearest trained items at temperature
  ``tau``: small ``tau`` follows the nearest item (an exact copy of a trained item's features
  gets, in effect, that item's row), large ``tau`` averages the neighbours;
- **norm**: the weighted mean of ``k`` rows is shorter than the rows themselves (their
  directions differ), and in dot-product scoring a short row loses to every trained item;
  the borrowed row is rescaled to the neighbours' weighted mean norm.

``tau`` is chosen per trained run by **leave-one-out on trained items** (:func:`calibrate`):
a sample of trained items is placed as if new, from neighbours other than themselves, and the
``tau`` whose placed rows most often reach the top ``K`` of those items' own training users
(their other training items masked, every trained item competing) wins; among temperatures
within one standard error of the best, the sharpest. Models differ: on the bundled demo the
choice was 0.1 for MGNM and 0.02 or below for VBPR, FREEDOM and BM3.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mgnm.data.graphs import l2_normalize

NEIGHBOURS = 50  # trained items a new item borrows from
TAUS = (1.0, 0.3, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)  # tried by calibrate()
CALIBRATION_ITEMS = 256  # trained items placed as if new
CALIBRATION_USERS = 32  # of each such item's training users, at most
CALIBRATION_K = 20  # a placed row "reaches" a user when it ranks in the top K
SEARCH_BLOCK = 2048  # query rows per similarity block


def content_vectors(features: dict[str, torch.Tensor]) -> torch.Tensor:
    """Concatenated per-modality unit rows scaled by ``1/sqrt(M)``: the dot product of two
    rows is the mean over modalities of their cosine similarities."""
    parts = [l2_normalize(f.float()) for f in features.values()]
    return torch.cat(parts, dim=1) / len(parts) ** 0.5


def softmax_weights(sims: torch.Tensor, tau: float) -> torch.Tensor:
    """Row-wise ``softmax(sims / tau)``."""
    return torch.softmax(sims / tau, dim=1)


def borrow(table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``sum_j w_j table[idx_j]`` per row, rescaled to ``sum_j w_j |table[idx_j]|``."""
    rows = table[idx]  # n x k x d
    mean = (w.unsqueeze(2) * rows).sum(1)
    norm = (w * rows.norm(dim=2)).sum(1, keepdim=True)
    return l2_normalize(mean) * norm


class ContentIndex:
    """The trained items' content, searched by similarity."""

    def __init__(self, features: dict[str, torch.Tensor], warm: torch.Tensor,
                 k: int = NEIGHBOURS) -> None:
        self.warm = warm  # indices of the trained items
        self.content = content_vectors({m: f[warm] for m, f in features.items()})
        self.k = min(k, int(warm.numel()))

    def search(self, query: torch.Tensor, exclude: torch.Tensor | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(similarities, item indices) of the ``k`` nearest trained items of each row of
        ``query`` (content vectors), best first; ``exclude[r]`` (a position in the trained
        items) is left out of row ``r``'s neighbours."""
        k = self.k - (1 if exclude is not None else 0)
        sims, idx = [], []
        for start in range(0, query.shape[0], SEARCH_BLOCK):
            sim = query[start:start + SEARCH_BLOCK] @ self.content.T
            if exclude is not None:
                part = exclude[start:start + SEARCH_BLOCK]
                sim[torch.arange(part.numel()), part] = -torch.inf
            top = sim.topk(k, dim=1)
            sims.append(top.values)
            idx.append(self.warm[top.indices])
        return torch.cat(sims), torch.cat(idx)


@dataclass
class Calibration:
    """The chosen temperature and, per temperature tried, the share of (item, user) pairs
    whose placed row reached the user's top ``k`` (leave-one-out on trained items)."""

    tau: float
    reach: dict[float, float] = field(default_factory=dict)
    items: int = 0
    pairs: int = 0
    k: int = CALIBRATION_K

    def describe(self) -> str:
        if not self.reach:
            return f"tau {self.tau:g} (not calibrated: too few trained items with users)"
        return (f"tau {self.tau:g}, chosen by leave-one-out on {self.items} trained items "
                f"({self.pairs} item-user pairs; placed row in the user's top {self.k}: "
                f"{self.reach[self.tau]:.3f})")


#: ``place(neighbour_items, weights, targets) -> rows``: the rows of ``targets`` (item indices)
#: placed from their neighbours; calibration passes trained items as ``targets``
PlaceFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def calibrate(index: ContentIndex, place: PlaceFn, user_emb: torch.Tensor,
              item_emb: torch.Tensor, train_users: np.ndarray, train_items: np.ndarray,
              taus: Sequence[float] = TAUS, n_items: int = CALIBRATION_ITEMS,
              n_users: int = CALIBRATION_USERS, k: int = CALIBRATION_K,
              seed: int = 0) -> Calibration:
    """Choose the softmax temperature by leave-one-out on trained items (module docstring).

    A seeded sample of trained items; each is placed from its nearest *other* trained items
    at every ``tau``, and scored for up to ``n_users`` of its training users against every
    trained item except itself, each user's training items masked. The sharpest ``tau``
    whose reach is within one standard error of the best is taken: where the held-out items
    cannot tell temperatures apart, the sharper one keeps a new item closer to its nearest
    trained items (an exact copy of a trained item's features then ranks near that item)
    instead of averaging it into its neighbourhood."""
    warm = index.warm.numpy()
    order = np.argsort(train_users, kind="stable")
    t_users, t_items = train_users[order], train_items[order]
    ptr = np.searchsorted(t_users, np.arange(user_emb.shape[0] + 1))
    by_item = np.argsort(train_items, kind="stable")
    item_ptr = np.searchsorted(train_items[by_item], np.arange(item_emb.shape[0] + 1))
    rng = np.random.default_rng(seed)
    targets = np.sort(rng.choice(warm, size=min(n_items, warm.size), replace=False))
    if warm.size <= 2 or targets.size == 0:
        return Calibration(tau=0.05)
    pos = np.searchsorted(warm, targets)
    sims, idx = index.search(index.content[torch.as_tensor(pos)], torch.as_tensor(pos))
    # targets x taus x d: every temperature's placed rows
    placed = torch.stack([place(idx, softmax_weights(sims, tau), torch.as_tensor(targets))
                          for tau in taus], dim=1)
    is_warm = np.zeros(item_emb.shape[0], dtype=bool)
    is_warm[warm] = True
    blocked = torch.as_tensor(~is_warm)
    hits = torch.zeros(len(taus), dtype=torch.long)
    pairs = 0
    for r, item in enumerate(targets):
        users = train_users[by_item[item_ptr[item]:item_ptr[item + 1]]]
        if users.size > n_users:
            users = np.sort(rng.choice(users, size=n_users, replace=False))
        scores = user_emb[torch.as_tensor(users)] @ item_emb.T
        scores[:, blocked] = -torch.inf
        counts = ptr[users + 1] - ptr[users]
        rows = np.repeat(np.arange(users.size), counts)
        cols = np.concatenate([t_items[ptr[u]:ptr[u + 1]] for u in users])
        scores[torch.as_tensor(rows), torch.as_tensor(cols)] = -torch.inf  # item itself too
        s_new = user_emb[torch.as_tensor(users)] @ placed[r].T  # users x taus
        rank = (scores.unsqueeze(2) > s_new.unsqueeze(1)).sum(1) + 1
        hits += (rank <= k).sum(0)
        pairs += users.size
    reach = {tau: int(h) / max(pairs, 1) for tau, h in zip(taus, hits, strict=True)}
    best = max(reach.values())
    se = (best * (1 - best) / max(pairs, 1)) ** 0.5
    tau = min(t for t in taus if reach[t] >= best - se)
    return Calibration(tau=tau, reach=reach, items=int(targets.size), pairs=pairs, k=k)
