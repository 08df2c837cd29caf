"""What every model shares to place what it never saw: new users and new items.

Each model says how it places them: its class names a :class:`Placement` subclass
(``Recommender.placement_class``), written in the model's own module beside the maths it
reuses. This module holds what they share:

- :class:`Trained`: what placement needs of a trained run (its final tables, the training
  pairs, the items' features, which items have a training interaction);
- **new users** (fold-in, from a history of items): :func:`fold_in_layers` runs a linear
  bipartite propagation for one new row, from the trained item layers, with the user's own
  ego (ID) row unknown (zeros) or, to check the maths, given;
- **new items** (from their content): :meth:`Placement.cold_items` borrows rows from the
  trained items whose content is nearest (:mod:`mgnm.models.neighbours`), at a temperature
  calibrated per run. By default the whole final row is borrowed; a model whose rows have a
  part computed from an item's own features overrides :meth:`Placement.place`.

A model without a method refuses with :class:`~mgnm.errors.UnsupportedError` (HTTP 501).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from mgnm.errors import UnsupportedError
from mgnm.models.neighbours import (
    Calibration,
    ContentIndex,
    borrow,
    calibrate,
    content_vectors,
    softmax_weights,
)

if TYPE_CHECKING:
    from mgnm.models.base import Recommender


@dataclass
class Trained:
    """What placement needs of a trained run: its final tables (items: the dataset's), the
    training pairs, the items' features (the run's modalities) and which items have a
    training interaction."""

    user_emb: torch.Tensor
    item_emb: torch.Tensor
    train_users: np.ndarray
    train_items: np.ndarray
    features: dict[str, torch.Tensor]
    warm: torch.Tensor  # bool, one per item


def fold_in_layers(item_layers: Sequence[torch.Tensor], items: torch.Tensor,
                   weights: torch.Tensor, ego: torch.Tensor | None = None,
                   self_weight: float = 0.0) -> list[torch.Tensor]:
    """A new user's layers ``0..L`` of a linear bipartite propagation:
    ``u^l = self_weight u^(l-1) + sum_{i in H} weights_i e_i^(l-1)``, ``u^0 = ego`` (zeros when
    unknown), from the trained item layers ``e^0..e^(L-1)`` (each ``n_items x d``)."""
    d = item_layers[0].shape[1] if item_layers else (ego.shape[-1] if ego is not None else 0)
    u = torch.zeros(d) if ego is None else ego
    out = [u]
    for layer in item_layers:
        u = self_weight * u + weights @ layer[items]
        out.append(u)
    return out


def item_layers(user_emb: torch.Tensor, item_emb: torch.Tensor, adj, n_layers: int,
                ) -> list[torch.Tensor]:
    """The item parts of the propagation layers ``0..L-1`` of ``[user_emb; item_emb]`` on the
    whole bipartite graph ``adj`` (what a new user's layers ``1..L`` read)."""
    from mgnm.models.propagation import propagate

    n_users = user_emb.shape[0]
    layers = propagate(torch.cat([user_emb, item_emb]), adj, n_layers)
    return [x[n_users:] for x in layers[:n_layers]]


def sym_weights(degree: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """The new row of ``D^-1/2 A D^-1/2`` for a user with history ``items``:
    ``1 / sqrt(|H| d_i)`` (an item without training edges counts as degree 1)."""
    return (degree[items].clamp_min(1) * items.numel()).rsqrt()


class Placement:
    """Base: the trained tables, the training graph's item degrees and, for a model with a
    content side, the trained items' content index and the calibrated borrowing of rows."""

    fold_in_method: ClassVar[str] = ""
    #: how a model with a content side places new items (``""``: it has none)
    cold_method: ClassVar[str] = "the whole item row borrowed from the nearest trained " \
                                 "items by content"
    why_no_cold: ClassVar[str] = "it is ID-only (no content side)"
    why_no_fold_in: ClassVar[str] = "this model has no method to place users from a history"

    def __init__(self, model: Recommender, trained: Trained) -> None:
        self.model = model
        self.name = model.name
        self.n_items = model.n_items
        self.trained = trained
        self.degree = torch.bincount(torch.as_tensor(trained.train_items),
                                     minlength=self.n_items).float()
        self.features = {m: f.float() for m, f in trained.features.items()}
        self.warm = torch.nonzero(trained.warm).flatten()  # items with a training interaction
        self.index: ContentIndex | None = None
        self.calibration: Calibration | None = None
        if self.cold_method and model.needs_features and self.features and self.warm.numel():
            self.index = ContentIndex(self.features, self.warm)
            self.calibration = calibrate(self.index, self.place, trained.user_emb,
                                         trained.item_emb, trained.train_users,
                                         trained.train_items)

    @property
    def can_fold_in(self) -> bool:
        return bool(self.fold_in_method)

    @property
    def can_place_items(self) -> bool:
        return self.index is not None

    def describe_cold(self) -> str:
        """The cold-item method with its calibrated temperature (``""``: none)."""
        if self.calibration is None or self.index is None:
            return ""
        return f"{self.cold_method}; softmax weights over {self.index.k} neighbours, " \
               f"{self.calibration.describe()}"

    def fold_in(self, items: torch.Tensor, ego: Any = None) -> torch.Tensor:
        """The row of a new user with history ``items`` (item indices). ``ego``: what the
        model would know of a training user (its own ID rows; model-specific), to check the
        maths against the trained row; ``None`` for a new user."""
        raise UnsupportedError(f"model {self.name!r} cannot embed a new user: "
                               f"{self.why_no_fold_in}")

    def cold_items(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rows of new items from their features (one row per item in every modality)."""
        if self.index is None or self.calibration is None:
            raise UnsupportedError(f"model {self.name!r} cannot embed new items: "
                                   f"{self.why_no_cold}")
        sims, idx = self.index.search(content_vectors(features))
        w = softmax_weights(sims, self.calibration.tau)
        return self.place(idx, w, features)

    def place(self, idx: torch.Tensor, w: torch.Tensor,
              targets: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """Rows placed from neighbours ``idx`` with weights ``w``. ``targets``: the new
        items' features, or (calibration) the trained items placed as if new. The default
        borrows whole final rows; a model whose rows have a part computed from content
        overrides this."""
        return borrow(self.trained.item_emb, idx, w)

    def target_features(self, targets: torch.Tensor | dict[str, torch.Tensor],
                        ) -> dict[str, torch.Tensor]:
        """The features of ``targets`` (see :meth:`place`)."""
        if isinstance(targets, dict):
            return {m: f.float() for m, f in targets.items()}
        return {m: f[targets] for m, f in self.features.items()}

    def sym_weights(self, items: torch.Tensor) -> torch.Tensor:
        return sym_weights(self.degree, items)

    def lightgcn_fold_in(self, item_layers: Sequence[torch.Tensor], items: torch.Tensor,
                         ego: torch.Tensor | None) -> torch.Tensor:
        """LightGCN's layer mean ``sum_{l=0..L} u^l / (L + 1)`` for a new row of the
        symmetric-normalised graph (``u^0`` = ``ego`` or zeros)."""
        if not item_layers and ego is None:  # nothing but the (unknown) ego embedding
            raise UnsupportedError(f"model {self.name!r} has no propagation layers, so a new "
                                   f"user's embedding would be its (unknown) ego embedding")
        layers = fold_in_layers(item_layers, items, self.sym_weights(items), ego)
        return sum(layers) / len(layers)


class IDOnly(Placement):
    """A model without a content side and without a fold-in method."""

    cold_method = ""


@torch.no_grad()
def build_placement(model: Recommender, trained: Trained) -> Placement:
    """The model's placement (its ``placement_class``), built in eval mode."""
    was = model.training
    model.eval()
    try:
        return model.placement_class(model, trained)
    finally:
        model.train(was)
