"""LightGCN (He et al., SIGIR 2020), as MMRec trains it (docs/baselines.md section 2)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from mgnm.data.inputs import ModelInputs
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.losses import batch_norm_reg, bpr_loss
from mgnm.models.placement import Placement, item_layers
from mgnm.models.propagation import bipartite_layer_mean, bipartite_layers_rows, layer_means


class LightGCNPlacement(Placement):
    """A new user: LightGCN's layer mean over a new row of the normalised graph, from the
    trained item layers, with no ego embedding: ``e_u^l = sum_{i in H} e_i^(l-1) /
    sqrt(|H| d_i)``, row ``sum_{l=1..L} e_u^l / (L + 1)``. For a training user's own history
    (and its ego row) this is its trained row, exactly. Subclasses name their backbone."""

    fold_in_method = "normalised aggregation of the trained item layers, no ego embedding"

    def __init__(self, model, trained) -> None:
        adj, n_layers = self.backbone(model)
        self.item_layers = item_layers(model.user_emb, model.item_emb, adj, n_layers)
        super().__init__(model, trained)

    @staticmethod
    def backbone(model):
        """The model's whole normalised bipartite graph and its layer count."""
        return model.adj, model.config.n_layers

    def fold_in(self, items, ego=None):
        return self.lightgcn_fold_in(self.item_layers, items, ego)


class LightGCNConfig(ModelConfig):
    n_layers: int = Field(2, ge=0, description="propagation layers L")
    reg_weight: float = Field(1e-4, ge=0, description="lambda on the layer-0 batch rows")


class LightGCN(Recommender):
    """``E = mean(E0, A E0, ..., A^L E0)`` on the normalised bipartite graph; dot-product score."""

    name = "lightgcn"
    Config = LightGCNConfig
    grid = {"n_layers": [1, 2, 3, 4], "reg_weight": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]}
    placement_class = LightGCNPlacement

    def __init__(self, config: LightGCNConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        d = config.embedding_size
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.adj = inputs.norm_adj  # the whole graph (fold-in of new users reads it)
        self.r_sym = inputs.interactions("sym")  # its user-item block, used for training

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        return bipartite_layer_mean(self.user_emb, self.item_emb, self.r_sym,
                                    self.config.n_layers)

    def loss(self, users, pos_items, neg_items):
        # only the batch's rows of the final tables: the last layer and the mean for them alone
        user_rows, u_at = torch.unique(users, return_inverse=True)
        item_rows, i_at = torch.unique(torch.cat([pos_items, neg_items]), return_inverse=True)
        layers = bipartite_layers_rows(self.user_emb, self.item_emb, self.r_sym,
                                       self.config.n_layers, user_rows, item_rows)
        eu, ei = layer_means(layers)
        n_pos = pos_items.numel()
        # index_select: its backward is index_add_, ~2x faster than indexing's (a sort under
        # deterministic algorithms) for the same sums
        u = eu.index_select(0, u_at)
        i, j = ei.index_select(0, i_at[:n_pos]), ei.index_select(0, i_at[n_pos:])
        bpr = bpr_loss((u * i).sum(1), (u * j).sum(1))
        # the layer-0 batch rows, gathered once from the tables for the mean and the penalty:
        # each gather from a whole table costs a zero-filled whole gradient table backward
        e0u, e0i = layers[0]
        reg = self.config.reg_weight * batch_norm_reg(
            e0u.index_select(0, u_at), e0i.index_select(0, i_at[:n_pos]),
            e0i.index_select(0, i_at[n_pos:]))
        return {"loss": bpr + reg, "bpr": bpr, "reg": reg}

    def embeddings(self):
        return self.propagate()
