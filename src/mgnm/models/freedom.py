"""FREEDOM (Zhou and Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for
Multimodal Recommendation", ACM MM 2023), as MMRec trains it (docs/baselines.md section 9).

LATTICE with the item-item graph frozen (a mixture of per-modality binary kNN graphs of the raw
features), plus denoising of the user-item graph: every epoch, degree-sensitive edge pruning
keeps a random subset of the training edges, drawn with probability favouring edges between
low-degree nodes, and the LightGCN backbone trains on that pruned graph.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator
from torch import nn

from mgnm.data.graphs import knn_graph, normalized_adjacency, symnorm_values
from mgnm.data.inputs import ModelInputs
from mgnm.data.sparse import SparseOp
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.layers import ItemFeatures
from mgnm.models.lightgcn import LightGCNPlacement
from mgnm.models.losses import bpr_loss
from mgnm.models.propagation import layer_mean


class FREEDOMPlacement(LightGCNPlacement):
    """Users are FREEDOM's LightGCN part alone (the item graph acts on items only)."""

    @staticmethod
    def backbone(model):
        return model.norm_adj, model.config.n_ui_layers


class FREEDOMConfig(ModelConfig):
    feat_embed_dim: int = Field(64, gt=0, description="width of the projected features; must "
                                                      "equal embedding_size (they are scored "
                                                      "against user embeddings)")
    knn_k: int = Field(10, gt=0, description="k of each modality's binary kNN item graph")
    n_mm_layers: int = Field(1, ge=0, description="L_mm: hops of the item IDs on the item graph")
    n_ui_layers: int = Field(2, ge=0, description="L_ui: LightGCN layers on the user-item graph")
    mm_image_weight: float = Field(
        0.1, ge=0, le=1,
        description="beta of the 'image' modality when there are exactly two modalities and one "
                    "is 'image' (the other gets 1 - beta, as MMRec's text slot); with any other "
                    "set of modalities the weights are uniform",
    )
    dropout: float = Field(0.8, ge=0, lt=1, description="rho: the fraction of training edges "
                                                        "dropped by degree-sensitive pruning")
    reg_weight: float = Field(0.0, ge=0, description="lambda of the auxiliary BPR loss on the "
                                                     "projected features (not a regulariser)")

    @model_validator(mode="after")
    def _feat_dim_matches(self) -> FREEDOMConfig:
        if self.feat_embed_dim != self.embedding_size:
            raise ValueError(f"feat_embed_dim ({self.feat_embed_dim}) must equal embedding_size "
                             f"({self.embedding_size})")
        return self


def modality_weights(names: list[str], image_weight: float) -> list[float]:
    """``beta_m``: MMRec's ``(mm_image_weight, 1 - mm_image_weight)`` for two modalities of which
    one is ``image``; uniform otherwise (1 for a single modality)."""
    if len(names) == 2 and "image" in names:
        return [image_weight if m == "image" else 1.0 - image_weight for m in names]
    return [1.0 / len(names)] * len(names)


def kept_edge_count(n_edges: int, drop_ratio: float) -> int:
    """``floor(|E| (1 - rho))`` (rounded first so that 10 * (1 - 0.8) gives 2, not 1)."""
    return math.floor(round(n_edges * (1.0 - drop_ratio), 6))


def sample_without_replacement(log_weights: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of ``n`` distinct entries drawn one after another without replacement, each
    draw with probability proportional to ``exp(log_weights)`` among the entries left.

    Gumbel-top-k: the ``n`` largest ``log w + G``, ``G = -log E``, ``E ~ Exp(1)``; the same
    distribution as ``torch.multinomial(w, n, replacement=False)``, for any number of entries.
    Uses torch's global RNG.
    """
    e = torch.empty_like(log_weights, dtype=torch.float64).exponential_()
    return (log_weights.double() - e.log()).topk(n, sorted=False).indices


class FREEDOM(Recommender):
    """FREEDOM, for any number of modalities ``M``.

    - ``S = sum_m beta_m symnorm(kNN_k(F_m, binary))`` from the raw features, built once
      (each kept entry of ``S_m`` is ``1/k``);
    - ``h = S^{L_mm} Q``; ``(E_U, E'_I) = LGN_{L_ui}([P; Q]; G)``; items ``E'_I + h``;
    - ``G`` in training: the pruned graph of the epoch (``pre_epoch``): ``floor(|E|(1 - rho))``
      distinct edges drawn with probability ``∝ 1/sqrt(deg u deg i)`` (full-graph degrees),
      re-normalised with the kept graph's own degrees; in evaluation: the full ``Â``;
    - loss ``BPR(E_u.E_i, E_u.E_j) + reg_weight * sum_m BPR(E_u.X_m,i, E_u.X_m,j)``,
      ``X_m = T_m(F~_m)`` on fine-tuned features; no L2 term.

    The projections are applied to the batch's item rows only (what the loss reads); with
    ``reg_weight = 0`` the auxiliary term is skipped (MMRec computes it and multiplies by 0:
    the parameters then get zero gradients and Adam leaves them where they are, as here).
    Modality weights: MMRec has an image slot (``mm_image_weight``) and a text slot; two
    modalities of which one is ``image`` fill those slots (TikTok: image + audio), any other
    set gets uniform weights.
    """

    name = "freedom"
    Config = FREEDOMConfig
    needs_features = True
    placement_class = FREEDOMPlacement
    grid = {"dropout": [0.8, 0.9], "reg_weight": [0.0, 1e-5, 1e-4, 1e-3]}

    def __init__(self, config: FREEDOMConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        d = config.embedding_size
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.features = ItemFeatures(inputs.features, finetune=True)
        self.projections = nn.ModuleDict(
            {m: nn.Linear(dim, d) for m, dim in self.features.dims().items()}
        )
        self.sparse_format = inputs.sparse_format
        self.norm_adj = inputs.norm_adj
        # the frozen item-item graph S
        betas = modality_weights(list(inputs.features), config.mm_image_weight)
        rows, cols, vals = [], [], []
        for beta, f in zip(betas, inputs.features.values(), strict=True):
            r, c, v = knn_graph(f, config.knn_k, weighted=False)
            rows.append(r)
            cols.append(c)
            vals.append(beta * symnorm_values(r, c, v, self.n_items))
        self.item_graph = SparseOp(torch.cat(rows), torch.cat(cols), torch.cat(vals),
                                   (self.n_items, self.n_items), device=inputs.device,
                                   fmt=inputs.sparse_format)
        # training edges and their pruning log-probabilities log(1/sqrt(deg u deg i))
        u = inputs.train_users.long()
        i = inputs.train_items.long()
        du = torch.bincount(u, minlength=self.n_users).double()
        di = torch.bincount(i, minlength=self.n_items).double()
        self.register_buffer("edge_users", u, persistent=False)
        self.register_buffer("edge_items", i, persistent=False)
        self.register_buffer("edge_log_prob", -0.5 * (du[u].log() + di[i].log()),
                             persistent=False)
        self.n_keep = kept_edge_count(u.numel(), config.dropout)
        self.kept_edges: torch.Tensor | None = None  # indices into the training edges
        self.train_adj: SparseOp | None = None

    def prune(self) -> SparseOp:
        """Draw the epoch's training graph (degree-sensitive pruning) and return it."""
        if self.config.dropout <= 0.0:
            self.kept_edges = torch.arange(self.edge_users.numel(), device=self.edge_users.device)
            self.train_adj = self.norm_adj
            return self.train_adj
        self.kept_edges = sample_without_replacement(self.edge_log_prob, self.n_keep)
        self.train_adj = normalized_adjacency(
            self.edge_users[self.kept_edges], self.edge_items[self.kept_edges],
            self.n_users, self.n_items, device=self.edge_users.device, fmt=self.sparse_format,
        )
        return self.train_adj

    def pre_epoch(self, epoch: int) -> None:
        self.prune()

    def propagate(self, adj: SparseOp) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.item_emb
        for _ in range(self.config.n_mm_layers):
            h = self.item_graph @ h
        e = layer_mean(torch.cat([self.user_emb, self.item_emb]), adj, self.config.n_ui_layers)
        return e[: self.n_users], e[self.n_users:] + h

    def loss(self, users, pos_items, neg_items):
        adj = self.train_adj if self.train_adj is not None else self.prune()
        eu, ei = self.propagate(adj)
        u, i, j = eu[users], ei[pos_items], ei[neg_items]
        bpr = bpr_loss((u * i).sum(1), (u * j).sum(1))
        feat = torch.zeros((), device=u.device)
        if self.config.reg_weight > 0:
            for m, f in self.features.items():
                xi = self.projections[m](f[pos_items])
                xj = self.projections[m](f[neg_items])
                feat = feat + bpr_loss((u * xi).sum(1), (u * xj).sum(1))
        feat = self.config.reg_weight * feat
        return {"loss": bpr + feat, "bpr": bpr, "feat_bpr": feat}

    def embeddings(self):
        return self.propagate(self.norm_adj)
