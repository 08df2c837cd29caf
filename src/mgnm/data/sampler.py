"""Vectorised BPR triple sampling (docs/protocol.md, "Training").

One epoch is every training pair once, in a fresh random order, cut into batches. Each pair
gets one negative drawn uniformly from the items that occur in the train split and redrawn
while it is one of the user's training items. The random stream of epoch ``e`` depends only
on ``(seed, e)``, so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mgnm.errors import DataError


class BPRSampler:
    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        n_items: int,
        *,
        batch_size: int,
        seed: int,
        negatives: bool = True,
        device: torch.device | str = "cpu",
    ) -> None:
        self.users = np.asarray(users, dtype=np.int64)
        self.items = np.asarray(items, dtype=np.int64)
        self.n_items = int(n_items)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.negatives = negatives
        self.device = torch.device(device)
        self.candidates = np.unique(self.items)
        self._keys = np.unique(self.users * self.n_items + self.items)
        if negatives:
            deg = np.bincount(self.users)
            full = np.flatnonzero(deg >= self.candidates.size)
            if full.size:
                raise DataError(
                    f"user {full[0]} has a training interaction with every training item, "
                    f"so no negative item can be drawn for it"
                )

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-self.users.size // self.batch_size)

    def rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])

    def is_train_pair(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, self._keys.size - 1)
        return self._keys[pos] == keys

    def sample_negatives(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        neg = self.candidates[rng.integers(0, self.candidates.size, users.size)]
        redo = np.flatnonzero(self.is_train_pair(users, neg))
        while redo.size:
            neg[redo] = self.candidates[rng.integers(0, self.candidates.size, redo.size)]
            redo = redo[self.is_train_pair(users[redo], neg[redo])]
        return neg

    def epoch_triples(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The whole epoch's (users, positives, negatives) in batch order."""
        rng = self.rng(epoch)
        order = rng.permutation(self.users.size)
        u, i = self.users[order], self.items[order]
        j = self.sample_negatives(u, rng) if self.negatives else None
        return u, i, j

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches of ``(users, pos_items, neg_items)``; ``(users, pos_items)`` without negatives."""
        arrays = [a for a in self.epoch_triples(epoch) if a is not None]
        tensors = [torch.from_numpy(a).to(self.device) for a in arrays]
        for start in range(0, self.users.size, self.batch_size):
            yield tuple(t[start:start + self.batch_size] for t in tensors)
