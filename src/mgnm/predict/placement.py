"""How a trained model places what it never saw: new users and new items.

- **Fold-in** (a new user from a history of items): the user row the model would compute from
  its trained item side, with nothing for the user's own ego (ID) embedding.
- **Cold items** (a new item from its content alone): rows borrowed from the trained items
  whose content is nearest, weighted by a softmax of the similarities and rescaled to the
  neighbours' norm, at a temperature chosen per run by leave-one-out on trained items
  (:mod:`mgnm.predict.neighbours`). Every model with a content side places new items so: the
  whole final item row is borrowed, except VBPR's content part, which its own projection
  computes from the features.

One class per model family, listed in :data:`PLACEMENTS`; each states its methods in
``fold_in_method`` / ``cold_method`` (shown by ``GET /health`` and docs/serving.md). A model
without a method refuses with :class:`UnsupportedError`. Every tensor kept here is detached.

The graph models' fold-in uses the training graph's item degrees ``d_i`` (an item without
training edges counts as degree 1): for the bipartite LightGCN propagation a user's layer
``l >= 1`` is ``e_u^l = sum_{i in H} e_i^{l-1} / sqrt(|H| d_i)``, so folding in a training
user's own history gives its trained row less ``e_u^0 / (L + 1)``, exactly (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from mgnm.data.graphs import l2_normalize, layer_means, propagate
from mgnm.errors import MgnmError
from mgnm.models import Recommender
from mgnm.predict.neighbours import (
    Calibration,
    ContentIndex,
    borrow,
    calibrate,
    content_vectors,
    softmax_weights,
)

MF_RIDGE = 0.1  # lambda of the least-squares fold-in, relative to trace(Q^T Q) / d

__all__ = ["PLACEMENTS", "Placement", "Trained", "UnsupportedError", "build_placement",
           "content_vectors"]


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


class UnsupportedError(MgnmError):
    """The run's model has no method for the requested placement (HTTP 501)."""


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
        if self.calibration is None:
            return ""
        return f"{self.cold_method}; softmax weights over {self.index.k} neighbours, " \
               f"{self.calibration.describe()}"

    def fold_in(self, items: torch.Tensor) -> torch.Tensor:
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

    # ---------------------------------------------------------------- shared pieces
    def graph_fold_in(self, item_layers: list[torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """LightGCN's user layer mean with no ego: ``sum_{l=1..L} e_u^l / (L + 1)``."""
        w = (self.degree[items].clamp_min(1) * items.numel()).rsqrt()
        acc = torch.zeros(item_layers[0].shape[1]) if item_layers else None
        for layer in item_layers:
            acc = acc + w @ layer[items]
        if acc is None:  # zero layers: nothing but the ego embedding, which is unknown
            raise UnsupportedError(f"model {self.name!r} has no propagation layers, so a new "
                                   f"user's embedding would be its (unknown) ego embedding")
        return acc / (len(item_layers) + 1)

    def target_features(self, targets: torch.Tensor | dict[str, torch.Tensor],
                        ) -> dict[str, torch.Tensor]:
        """The features of ``targets`` (see :meth:`place`)."""
        if isinstance(targets, dict):
            return {m: f.float() for m, f in targets.items()}
        return {m: f[targets] for m, f in self.features.items()}


def lightgcn_item_layers(user_emb: torch.Tensor, item_emb: torch.Tensor, adj,
                         n_layers: int) -> list[torch.Tensor]:
    """The item parts of LightGCN layers ``0..L-1`` on ``adj``."""
    n_users = user_emb.shape[0]
    layers = propagate(torch.cat([user_emb, item_emb]), adj, n_layers)
    return [x[n_users:] for x in layers[:n_layers]]


class LightGCNPlacement(Placement):
    fold_in_method = "normalised aggregation of the trained item layers, no ego embedding"

    def __init__(self, model, trained) -> None:
        adj, n_layers = self.backbone(model)
        self.item_layers = lightgcn_item_layers(model.user_emb, model.item_emb, adj, n_layers)
        super().__init__(model, trained)

    @staticmethod
    def backbone(model: Recommender):
        """The model's LightGCN graph and layer count."""
        return model.adj, model.config.n_layers

    def fold_in(self, items):
        return self.graph_fold_in(self.item_layers, items)


class LeastSquaresMF(Placement):
    """``u = argmin ||r - Q u||^2 + lambda ||u||^2 = (QᵀQ + lambda I)^-1 Σ_{i in H} q_i`` over the
    warm items' rows ``Q`` (``r``: 1 on the history, 0 elsewhere), ``lambda = MF_RIDGE *
    trace(QᵀQ) / d``."""

    fold_in_method = "ridge least squares on the trained item vectors (1 on the history, " \
                     "0 elsewhere)"

    def __init__(self, model, trained) -> None:
        items = trained.item_emb
        self.item_vectors = items
        q = items[torch.nonzero(trained.warm).flatten()].double()
        gram = q.T @ q
        self.ridge = MF_RIDGE * float(gram.trace()) / q.shape[1]
        eye = torch.eye(q.shape[1], dtype=torch.float64)
        self.solve = torch.linalg.inv(gram + self.ridge * eye)
        super().__init__(model, trained)

    def fold_in(self, items):
        return (self.solve @ self.item_vectors[items].double().sum(0)).float()


class VBPRPlacement(LeastSquaresMF):
    cold_method = "[Gamma borrowed from the nearest trained items by content || the trained " \
                  "projection F W + c of the item's own features]"

    def __init__(self, model, trained) -> None:
        self.gamma = model.item_emb.detach()
        self.projection = model.projection
        super().__init__(model, trained)

    @torch.no_grad()
    def place(self, idx, w, targets):
        feats = self.target_features(targets)
        content = self.projection(torch.cat([f for f in feats.values()], dim=1))
        return torch.cat([borrow(self.gamma, idx, w), content], dim=1)


class FREEDOMPlacement(LightGCNPlacement):
    @staticmethod
    def backbone(model):
        return model.norm_adj, model.config.n_ui_layers


class BM3Placement(LightGCNPlacement):
    fold_in_method = "predictor of the normalised aggregation of the trained item layers, no ego"

    def __init__(self, model, trained) -> None:
        self.model = model
        super().__init__(model, trained)

    def fold_in(self, items):
        return self.model.predictor(super().fold_in(items))


class MGNMPlacement(Placement):
    fold_in_method = "eq. 3 layer mean of the trained CGE item layers with no ego; MGE last " \
                     "layer aggregated likewise; hyperedges H_u = sum of the history's H_i"
    cold_method = "what interactions made, borrowed from the nearest trained items by " \
                  "content: the CGE layer mean (eq. 3) and each modality's last MGE layer " \
                  "(eq. 7); the global part from the item's own hyperedge logits (eq. 11; " \
                  "MGNM's purifier gates the borrowed ego row) against the trained Lambda"

    def __init__(self, model, trained) -> None:
        cfg = model.config
        self.model = model
        out = model.forward_all(training=False)
        self.cge_items = [i for _, i in out.cge_layers[: cfg.n_ui_layers]]
        self.id_items = layer_means(out.cge_layers)[1]
        k = cfg.n_mm_layers
        self.mge_items = {m: layers[k - 1][1] if k > 0 else layers[0][1]
                          for m, layers in out.mge_layers.items()}  # what a user's layer K reads
        self.mge_last = {m: layers[-1][1] for m, layers in out.mge_layers.items()}  # eq. 8's
        self.ego_items = model.item_emb.detach()
        self.logits: dict[str, torch.Tensor] = {}
        self.lam: dict[str, torch.Tensor] = {}
        if cfg.alpha > 0:  # noise-free assignments (softmax), also for LGMRec
            for m in model.modalities:
                h_i = model.hyperedge_logits(m)
                a_i = torch.softmax(h_i / cfg.hyper_temperature, dim=1)
                z = self.id_items
                for _ in range(cfg.n_hyper_layers):
                    lam = a_i.T @ z
                    z = a_i @ lam
                self.logits[m], self.lam[m] = h_i, lam
        super().__init__(model, trained)

    def _fuse(self, ids: torch.Tensor, mge: list[torch.Tensor], hyper_logits: list[torch.Tensor],
              ) -> torch.Tensor:
        cfg = self.model.config
        if cfg.local_norm == "each":  # eq. 8
            out = ids + sum(l2_normalize(x) for x in mge)
        else:
            out = ids + l2_normalize(sum(mge))
        if cfg.alpha > 0:  # eqs. 13-17, softmax assignments
            z = [torch.softmax(h / cfg.hyper_temperature, dim=1) @ self.lam[m]
                 for m, h in zip(self.model.modalities, hyper_logits, strict=True)]
            out = out + cfg.alpha * l2_normalize(sum(z))
        return out

    @torch.no_grad()
    def place(self, idx, w, targets):
        model, cfg = self.model, self.model.config
        feats = self.target_features(targets)
        ids = borrow(self.id_items, idx, w)
        mge = [borrow(self.mge_last[m], idx, w) for m in model.modalities]
        hyper = []
        if cfg.alpha > 0:  # eqs. 9-11 from the item's own features (and borrowed ego row)
            ego = borrow(self.ego_items, idx, w)
            hyper = [model.new_item_hyperedge_logits(m, feats[m], ego) for m in model.modalities]
        return self._fuse(ids, mge, hyper)

    def fold_in(self, items):
        cfg = self.model.config
        ids = self.graph_fold_in(self.cge_items, items)
        w = (self.degree[items].clamp_min(1) * items.numel()).rsqrt()
        if cfg.n_mm_layers > 0:
            mge = [w @ self.mge_items[m][items] for m in self.model.modalities]
        else:  # eq. 5: the mean of the history's projected features
            mge = [self.mge_items[m][items].mean(0) for m in self.model.modalities]
        hyper = [self.logits[m][items].sum(0, keepdim=True) for m in self.logits]
        return self._fuse(ids.unsqueeze(0), [x.unsqueeze(0) for x in mge], hyper)[0]


class ContentOnly(Placement):
    """New items by content neighbours; no fold-in method (yet) for new users."""

    why_no_fold_in = "not implemented for this model (see docs/serving.md)"


class IDOnly(Placement):
    cold_method = ""


#: model name -> its placement methods
PLACEMENTS: dict[str, type[Placement]] = {
    "bpr": LeastSquaresMF,
    "lightgcn": LightGCNPlacement,
    "vbpr": VBPRPlacement,
    "mmgcn": ContentOnly,
    "dualgnn": ContentOnly,
    "lattice": ContentOnly,
    "bm3": BM3Placement,
    "mgcn": ContentOnly,
    "freedom": FREEDOMPlacement,
    "lgmrec": MGNMPlacement,
    "mgnm": MGNMPlacement,
}


@torch.no_grad()
def build_placement(model: Recommender, trained: Trained) -> Placement:
    was = model.training
    model.eval()
    try:
        return PLACEMENTS.get(model.name, IDOnly)(model, trained)
    finally:
        model.train(was)
