"""What a model receives: tensors and graphs on the target device, never paths.

:class:`ModelInputs` is built once per run from a validated :class:`~mgnm.data.Dataset`;
the graphs every model shares are built lazily on first use and cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from mgnm.data.dataset import Dataset
from mgnm.data.graphs import interaction_matrix, normalized_adjacency
from mgnm.data.sparse import SparseOp


@dataclass
class ModelInputs:
    n_users: int
    n_items: int
    train_users: torch.Tensor
    train_items: torch.Tensor
    features: dict[str, torch.Tensor]
    device: torch.device = torch.device("cpu")
    sparse_format: str = "auto"
    _interaction_cache: dict[str, SparseOp] = field(default_factory=dict, repr=False)

    @property
    def n_nodes(self) -> int:
        return self.n_users + self.n_items

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    @cached_property
    def norm_adj(self) -> SparseOp:
        """``D^-1/2 A D^-1/2`` of the training bipartite graph, (users + items) squared."""
        return normalized_adjacency(
            self.train_users.cpu(), self.train_items.cpu(), self.n_users, self.n_items,
            device=self.device, fmt=self.sparse_format,
        )

    def interactions(self, norm: str = "none") -> SparseOp:
        """The training matrix ``R`` (users x items); see :func:`interaction_matrix`."""
        if norm not in self._interaction_cache:
            self._interaction_cache[norm] = interaction_matrix(
                self.train_users.cpu(), self.train_items.cpu(), self.n_users, self.n_items,
                norm=norm, device=self.device, fmt=self.sparse_format,
            )
        return self._interaction_cache[norm]


def build_inputs(
    dataset: Dataset, device: torch.device | str = "cpu", sparse_format: str = "auto"
) -> ModelInputs:
    device = torch.device(device)
    return ModelInputs(
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        train_users=torch.as_tensor(dataset.train.users, device=device),
        train_items=torch.as_tensor(dataset.train.items, device=device),
        features={m: torch.as_tensor(f, device=device) for m, f in dataset.features.items()},
        device=device,
        sparse_format=sparse_format,
    )
