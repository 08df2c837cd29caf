"""VBPR (He and McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback",
AAAI 2016), as MMRec trains it (docs/baselines.md section 3).

BPR-MF whose item vector is extended by a linear projection of the item's content features,
and whose user vector by a matching content-preference part.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from mgnm.data.inputs import ModelInputs
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.bpr import LeastSquaresFoldIn
from mgnm.models.layers import ItemFeatures
from mgnm.models.losses import batch_norm_reg, bpr_loss
from mgnm.models.neighbours import borrow


class VBPRConfig(ModelConfig):
    reg_weight: float = Field(1e-4, ge=0, description="lambda of the batch-row norm regulariser "
                                                      "on the full 2d-wide user and item rows")


class VBPRPlacement(LeastSquaresFoldIn):
    """New users by least squares (as BPR); a new item's content part is the trained
    projection of its own features, exactly, and only ``Gamma`` is borrowed."""

    cold_method = "[Gamma borrowed from the nearest trained items by content || the trained " \
                  "projection F W + c of the item's own features]"

    @torch.no_grad()
    def place(self, idx, w, targets):
        feats = self.target_features(targets)
        content = self.model.project(torch.cat(list(feats.values()), dim=1))
        return torch.cat([borrow(self.model.item_emb.detach(), idx, w), content], dim=1)


class VBPR(Recommender):
    """``s(u, i) = U_u . [Gamma_i || F_i W + c]`` with ``F`` the concatenated, frozen features.

    ``U`` (``n_U x 2d``) and ``Gamma`` (``n_I x d``) are Xavier-uniform, ``W`` Xavier-normal,
    ``c`` zero. As in MMRec there are none of the paper's bias terms (item bias, visual bias,
    global offset), and every modality enters one projection of the concatenation (the paper
    has visual features only); features are used raw. The loss projects only the batch's
    items (MMRec projects all items every batch: same gradients).
    """

    name = "vbpr"
    Config = VBPRConfig
    needs_features = True
    grid = {"reg_weight": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]}
    placement_class = VBPRPlacement

    def __init__(self, config: VBPRConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        d = config.embedding_size
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        # a single map of the concatenation = the sum of per-modality maps (order irrelevant)
        concat = torch.cat([f.float() for f in inputs.features.values()], dim=1)
        self.features = ItemFeatures({"concat": concat}, finetune=False)
        self.projection = nn.Linear(concat.shape[1], d)
        nn.init.xavier_normal_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """``Q = [Gamma || F W + c]`` for ``items`` (all items when None)."""
        f = self.features["concat"]
        if items is None:
            return torch.cat([self.item_emb, self.project(f)], dim=1)
        return torch.cat([self.item_emb[items], self.project(f[items])], dim=1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """``F W + c`` for rows of the concatenated features (in the run's modality order)."""
        return self.projection(features)

    def loss(self, users, pos_items, neg_items):
        u = self.user_emb[users]
        i = self.item_vectors(pos_items)
        j = self.item_vectors(neg_items)
        bpr = bpr_loss((u * i).sum(1), (u * j).sum(1))
        reg = self.config.reg_weight * batch_norm_reg(u, i, j)
        return {"loss": bpr + reg, "bpr": bpr, "reg": reg}

    def embeddings(self):
        return self.user_emb, self.item_vectors()
