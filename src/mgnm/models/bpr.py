"""BPR-MF (Rendle et al., UAI 2009), as MMRec trains it (docs/baselines.md section 1)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from mgnm.data.inputs import ModelInputs
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.losses import batch_norm_reg, bpr_loss


class BPRConfig(ModelConfig):
    reg_weight: float = Field(1e-4, ge=0, description="lambda of the batch-row norm regulariser")


class BPR(Recommender):
    """Matrix factorisation: ``s(u, i) = P_u . Q_i``, tables Xavier-normal initialised."""

    name = "bpr"
    Config = BPRConfig
    grid = {"reg_weight": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]}

    def __init__(self, config: BPRConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        d = config.embedding_size
        self.user_emb = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_items, d)))

    def loss(self, users, pos_items, neg_items):
        u = self.user_emb[users]
        i = self.item_emb[pos_items]
        j = self.item_emb[neg_items]
        bpr = bpr_loss((u * i).sum(1), (u * j).sum(1))
        reg = self.config.reg_weight * batch_norm_reg(u, i, j)
        return {"loss": bpr + reg, "bpr": bpr, "reg": reg}

    def embeddings(self):
        return self.user_emb, self.item_emb
