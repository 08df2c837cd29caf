"""MGCN (Yu et al., "Multi-View Graph Convolutional Network for Multimedia Recommendation",
ACM MM 2023), as MMRec trains it (docs/baselines.md section 8).

Three views: the user-item view (LightGCN on IDs); the item-item view, where each modality's
projected features gate ("purify") the item IDs, which are propagated on a frozen kNN graph of
that modality and aggregated to users; and a behaviour-aware fuser that splits the modality
views into a common part (attention) and specific parts weighted by preference gates read from
the ID view. An InfoNCE loss aligns the fused modality view with the ID view.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from pydantic import Field
from torch import nn

from mgnm.data.graphs import item_knn_graph
from mgnm.data.inputs import ModelInputs
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.layers import ItemFeatures
from mgnm.models.losses import bpr_loss, info_nce, squared_reg
from mgnm.models.placement import Placement, item_layers
from mgnm.models.propagation import layer_mean


class MGCNConfig(ModelConfig):
    n_ui_layers: int = Field(2, ge=0, description="LightGCN layers of the user-item (ID) view")
    n_layers: int = Field(1, ge=0, description="propagation hops on the item-item kNN graphs")
    knn_k: int = Field(10, gt=0, description="k of each modality's kNN item graph")
    reg_weight: float = Field(1e-4, ge=0, description="lambda of the squared regulariser on "
                                                      "the final batch rows")
    reg_batch_size: int = Field(2048, gt=0, description="the regulariser's divisor (MMRec: the "
                                                        "configured training batch size)")
    cl_weight: float = Field(0.01, ge=0, description="lambda_cl of the InfoNCE loss (MMRec: "
                                                     "cl_loss)")
    temperature: float = Field(0.2, gt=0, description="tau of the InfoNCE loss")


class MGCNViews(NamedTuple):
    """The (users + items) tables of one forward pass."""

    final: torch.Tensor  # E = C + S
    side: torch.Tensor  # S, the fused modality view
    content: torch.Tensor  # C, the ID view


class MGCNPlacement(Placement):
    """A new user: the content view ``C_u`` as LightGCN's fold-in (no ego), each modality's
    user row ``U_m = sum_{i in H} I_m[i] / sqrt(|H| d_i)`` (a new row of ``R``), then MGCN's
    own attention and fusion of the views; with a training user's ego row this is its trained
    row, exactly."""

    fold_in_method = "content view as LightGCN's fold-in (no ego), modality views from a new " \
                     "row of R, MGCN's attention and fusion"

    def __init__(self, model, trained) -> None:
        self.item_layers = item_layers(model.user_emb, model.item_emb, model.adj,
                                       model.config.n_ui_layers)
        self.modal_items = model.modal_items()
        super().__init__(model, trained)

    def fold_in(self, items, ego=None):
        content = self.lightgcn_fold_in(self.item_layers, items, ego)
        w = self.sym_weights(items)
        modal = torch.stack([(w @ m[items]).unsqueeze(0) for m in self.modal_items])
        return self.model.fuse_views(content.unsqueeze(0), modal).final[0]


class MGCN(Recommender):
    """MGCN, generalised to any number of modalities ``M``.

    1. ``C = LGN_{L_ui}([P; Q]; A)``;
    2. purifier ``Edot_m = Q * sigmoid(Wp_m T_m(F_m))`` (fine-tuned features);
    3. ``I_m = S_m^{L_ii} Edot_m``, ``U_m = R I_m`` with ``S_m = symnorm(kNN_k(raw F_m))`` and
       ``R`` the user-item block of the normalised adjacency;
    4. attention ``alpha_{v,m} = softmax_m q(E_m[v])``, common ``Ebar = sum_m alpha E_m``;
    5. specific ``Ehat_m = sigmoid(Wpi_m C) * (E_m - Ebar)``;
    6. ``S = (Ebar + sum_m Ehat_m) / (|M| + 1)`` (MMRec, two modalities: /3); ``E = C + S``.

    Loss: BPR on ``E`` + ``reg_weight * 1/2 sum ||rows||^2 / reg_batch_size`` +
    ``cl_weight * [NCE(S_I[i], C_I[i]) + NCE(S_U[u], C_U[u])]`` with in-batch negatives.
    """

    name = "mgcn"
    Config = MGCNConfig
    needs_features = True
    placement_class = MGCNPlacement
    train_defaults = {"lr_decay": 0.96, "lr_decay_epochs": 50}
    grid = {"cl_weight": [0.001, 0.01, 0.1]}

    def __init__(self, config: MGCNConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        d = config.embedding_size
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.features = ItemFeatures(inputs.features, finetune=True)
        dims = self.features.dims()
        self.projections = nn.ModuleDict({m: nn.Linear(dim, d) for m, dim in dims.items()})
        self.purifier_gates = nn.ModuleDict({m: nn.Linear(d, d) for m in dims})
        self.preference_gates = nn.ModuleDict({m: nn.Linear(d, d) for m in dims})
        # shared attention query q(x) = w2^T tanh(W1 x + b1)
        self.query = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))
        self.adj = inputs.norm_adj
        self.user_item = inputs.interactions(norm="sym")
        # frozen kNN graphs, from the raw (not fine-tuned) features
        self.item_graphs = {
            m: item_knn_graph(f, config.knn_k, weighted=True, device=inputs.device,
                              fmt=inputs.sparse_format)
            for m, f in inputs.features.items()
        }

    def modal_items(self) -> list[torch.Tensor]:
        """``I_m = S_m^{L_ii} Edot_m`` per modality (steps 2-3)."""
        out = []
        for m in self.features.names:
            items = self.item_emb * torch.sigmoid(
                self.purifier_gates[m](self.projections[m](self.features[m])))
            for _ in range(self.config.n_layers):
                items = self.item_graphs[m] @ items
            out.append(items)
        return out

    def views(self) -> MGCNViews:
        cfg = self.config
        content = layer_mean(torch.cat([self.user_emb, self.item_emb]), self.adj, cfg.n_ui_layers)
        modal = torch.stack([torch.cat([self.user_item @ items, items])
                             for items in self.modal_items()])  # (|M|, N, d)
        return self.fuse_views(content, modal)

    def fuse_views(self, content: torch.Tensor, modal: torch.Tensor) -> MGCNViews:
        """Steps 4-6 for any set of rows: ``content`` (n x d), ``modal`` (|M| x n x d)."""
        alpha = torch.softmax(self.query(modal), dim=0)  # (|M|, n, 1): softmax over modalities
        common = (alpha * modal).sum(0)
        side = common
        for k, m in enumerate(self.features.names):
            side = side + torch.sigmoid(self.preference_gates[m](content)) * (modal[k] - common)
        side = side / (modal.shape[0] + 1)
        return MGCNViews(content + side, side, content)

    def loss(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        final, side, content = self.views()
        n = self.n_users
        u, i, j = final[users], final[n + pos_items], final[n + neg_items]
        bpr = bpr_loss((u * i).sum(1), (u * j).sum(1))
        reg = cfg.reg_weight * squared_reg(u, i, j, denominator=cfg.reg_batch_size)
        cl = (info_nce(side[n + pos_items], content[n + pos_items], temperature=cfg.temperature)
              + info_nce(side[users], content[users], temperature=cfg.temperature))
        cl = cfg.cl_weight * cl
        return {"loss": bpr + reg + cl, "bpr": bpr, "reg": reg, "cl": cl}

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        final = self.views().final
        return final[: self.n_users], final[self.n_users:]
