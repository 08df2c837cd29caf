"""BM3 (Zhou et al., "Bootstrap Latent Representations for Multi-modal Recommendation",
WWW 2023), as MMRec trains it (docs/baselines.md section 7).

Self-supervised training without negative samples: online embeddings pass through a shared
predictor and are pulled (by cosine) towards *targets*, which are dropout-perturbed copies of
the online embeddings with the gradient stopped. There is no separate target network and no
moving average.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mgnm.data.inputs import ModelInputs
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.layers import ItemFeatures
from mgnm.models.lightgcn import LightGCNPlacement
from mgnm.models.propagation import bipartite_layer_mean


class BM3Placement(LightGCNPlacement):
    """A new user: the LightGCN fold-in of the trained item layers, through BM3's predictor."""

    fold_in_method = "predictor of the normalised aggregation of the trained item layers, no ego"

    def fold_in(self, items, ego=None):
        return self.model.predictor(super().fold_in(items, ego))


class BM3Config(ModelConfig):
    n_layers: int = Field(1, ge=0, description="LightGCN layers L on the user-item graph")
    dropout: float = Field(0.5, ge=0, lt=1, description="p of the element-wise dropout that "
                                                        "perturbs the targets")
    reg_weight: float = Field(0.1, ge=0, description="lambda_reg of (||E_U|| + ||E_I||) / n_I "
                                                     "over the whole tables (non-squared)")
    cl_weight: float = Field(2.0, ge=0, description="lambda_cl of the feature alignment and "
                                                    "masking losses")


def cosine_loss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - mean_r cos(online_r, target_r)``."""
    return 1.0 - F.cosine_similarity(online, target, dim=-1).mean()


class BM3(Recommender):
    """BM3: LightGCN ID embeddings and projected (fine-tuned) features, bootstrapped.

    Forward: ``(E_U, E'_I) = LGN_L([P; Q]; A)``, ``E_I = E'_I + Q``, ``X_m = T_m(F_m)``.
    Loss on a batch of positive pairs ``(u, i)`` (no negatives):
    ``L_rec + lambda_reg (||E_U|| + ||E_I||) / n_I + lambda_cl sum_m (L_align,m + L_mask,m)``,
    every term a ``1 - mean cos(f(online), Drop_p(target))`` with the target detached and the
    predictor ``f`` shared by users, items and all modalities. Scored by ``f(E_U) . f(E_I)``.

    The predictor and the feature projections are applied to the batch rows only (the same
    values as MMRec's whole-table computation, then indexed); the dropout masks are drawn for
    the whole tables, as MMRec does, so a user or item repeated in a batch shares one mask.
    """

    name = "bm3"
    Config = BM3Config
    needs_features = True
    placement_class = BM3Placement
    uses_negatives = False
    grid = {"n_layers": [1, 2], "dropout": [0.3, 0.5], "reg_weight": [0.1, 0.01]}

    def __init__(self, config: BM3Config, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        d = config.embedding_size
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.predictor = nn.Linear(d, d)
        nn.init.xavier_normal_(self.predictor.weight)
        self.features = ItemFeatures(inputs.features, finetune=True)
        self.projections = nn.ModuleDict()
        for m, dim in self.features.dims().items():
            proj = nn.Linear(dim, d)
            nn.init.xavier_normal_(proj.weight)
            self.projections[m] = proj
        self.adj = inputs.norm_adj  # the whole graph (fold-in of new users reads it)
        self.r_sym = inputs.interactions("sym")  # its user-item block, used for training

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E_U, E_I)``: the layer mean, with the layer-0 item IDs added once more."""
        eu, ei = bipartite_layer_mean(self.user_emb, self.item_emb, self.r_sym,
                                      self.config.n_layers)
        return eu, ei + self.item_emb

    def _target(self, rows: torch.Tensor, index: torch.Tensor, n_table: int) -> torch.Tensor:
        """``Drop_p(X)[index]`` without gradient (the stop-gradient target), given the rows
        ``X[index]``: one dropout mask is drawn for the whole ``n_table x d`` table (the draws
        of ``F.dropout`` on the table) and indexed like the rows."""
        p = self.config.dropout
        with torch.no_grad():
            if p == 0:
                return rows.detach()
            keep = torch.empty(n_table, rows.shape[1], dtype=rows.dtype, device=rows.device)
            keep.bernoulli_(1 - p).div_(1 - p)
            return rows.detach() * keep[index]

    def loss(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        eu, ei = self.propagate()
        u, i = eu[users], ei[pos_items]
        u_target = self._target(u, users, self.n_users)
        i_target = self._target(i, pos_items, self.n_items)
        rec = cosine_loss(self.predictor(u), i_target) + cosine_loss(self.predictor(i), u_target)
        reg = cfg.reg_weight * (eu.norm(p=2) + ei.norm(p=2)) / self.n_items
        align = mask = rec.new_zeros(())
        for m, proj in self.projections.items():
            x = proj(self.features[m][pos_items])
            x_online = self.predictor(x)
            align = align + cosine_loss(x_online, i_target)
            mask = mask + cosine_loss(x_online, self._target(x, pos_items, self.n_items))
        align, mask = cfg.cl_weight * align, cfg.cl_weight * mask
        return {"loss": rec + reg + align + mask, "rec": rec, "reg": reg, "align": align,
                "mask": mask}

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        eu, ei = self.propagate()
        return self.predictor(eu), self.predictor(ei)
