"""BPR-MF (Rendle et al., UAI 2009), as MMRec trains it (docs/baselines.md section 1)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from mgnm.data.inputs import ModelInputs
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.losses import batch_norm_reg, bpr_loss
from mgnm.models.placement import Placement

MF_RIDGE = 0.1  # lambda of the least-squares fold-in, relative to trace(Q^T Q) / d


class LeastSquaresFoldIn(Placement):
    """``u = argmin ||r - Q u||^2 + lambda ||u||^2 = (QᵀQ + lambda I)^-1 Σ_{i in H} q_i`` over the
    warm items' rows ``Q`` (``r``: 1 on the history, 0 elsewhere), ``lambda = MF_RIDGE *
    trace(QᵀQ) / d``. A matrix factorisation has no graph to run a history through; least
    squares accounts for the geometry of the whole item table (popular directions are not
    counted twice, as in a plain mean of the history's rows)."""

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

    def fold_in(self, items, ego=None):
        return (self.solve @ self.item_vectors[items].double().sum(0)).float()


class BPRConfig(ModelConfig):
    reg_weight: float = Field(1e-4, ge=0, description="lambda of the batch-row norm regulariser")


class BPR(Recommender):
    """Matrix factorisation: ``s(u, i) = P_u . Q_i``, tables Xavier-normal initialised."""

    name = "bpr"
    Config = BPRConfig
    grid = {"reg_weight": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]}
    placement_class = LeastSquaresFoldIn

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
