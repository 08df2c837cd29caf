"""LATTICE (Zhang et al., "Mining Latent Structures for Multimedia Recommendation", ACM MM 2021),
as MMRec trains it (docs/baselines.md section 6).

Each modality's fine-tuned features are projected and turned into a learned item-item kNN graph;
the modalities are mixed with softmax weights, anchored to the frozen graphs of the raw
features, and the item ID embeddings are convolved on the result. The output, L2-normalised,
is added to the item embeddings of a LightGCN backbone on the row-normalised ``A + I``.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from mgnm.data.graphs import knn_graph, l2_normalize, row_normalized_adjacency, symnorm_values
from mgnm.data.inputs import ModelInputs
from mgnm.data.sparse import SparseOp, coo_matmul
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.layers import ItemFeatures
from mgnm.models.losses import bpr_loss, squared_reg
from mgnm.models.placement import Placement, fold_in_layers, item_layers
from mgnm.models.propagation import layer_mean


class LATTICEConfig(ModelConfig):
    feat_embed_dim: int = Field(64, gt=0, description="width of the projected features T_m(F_m)")
    knn_k: int = Field(10, gt=0, description="k of the item-item kNN graphs (self included)")
    lambda_coeff: float = Field(0.9, ge=0, le=1, description="lambda of G = (1 - lambda) K + "
                                                             "lambda O (weight of the frozen graph)")
    n_layers: int = Field(1, ge=0, description="L_i: hops of the item IDs on the item graph G")
    n_ui_layers: int = Field(2, ge=0, description="LightGCN layers of the backbone (MMRec: "
                                                  "len(weight_size) = 2)")
    reg_weight: float = Field(0.0, ge=0, description="lambda of the squared regulariser on the "
                                                     "final batch rows")
    reg_batch_size: int = Field(2048, gt=0, description="the regulariser's divisor (MMRec: the "
                                                        "configured training batch size)")
    legacy_zero_grads: bool = Field(
        False, description="on the batches that reuse G, give T_m, F~_m and the modality logits "
                           "zero gradients instead of none, as MMRec's zero_grad() did before "
                           "PyTorch 2.0 (Adam then keeps moving them on momentum)")


class LATTICEPlacement(Placement):
    """A new user: LATTICE's users are the LightGCN layer mean on ``D~^-1 (A + I)``, so a new
    row of that graph gives ``e_u^l = (e_u^(l-1) + sum_{i in H} e_i^(l-1)) / (|H| + 1)`` from
    the trained item layers, ``e_u^0`` = 0 (no ego); with a training user's ego row this is
    its trained row, exactly."""

    fold_in_method = "layer mean over a new row of D~^-1 (A + I) from the trained item " \
                     "layers, no ego embedding"

    def __init__(self, model, trained) -> None:
        self.item_layers = item_layers(model.user_emb, model.item_emb, model.adj,
                                       model.config.n_ui_layers)
        super().__init__(model, trained)

    def fold_in(self, items, ego=None):
        if not self.item_layers and ego is None:
            return super().fold_in(items)  # refuses: the row would be the unknown ego alone
        share = 1.0 / (items.numel() + 1)
        weights = torch.full((items.numel(),), share)
        layers = fold_in_layers(self.item_layers, items, weights, ego, self_weight=share)
        return sum(layers) / len(layers)


class LATTICE(Recommender):
    """LATTICE with a LightGCN backbone, for any number of modalities ``M``.

    - ``O_m = symnorm(kNN_k(F_m, weighted))`` from the raw features, built once, frozen;
    - ``K_m = kNN_k(T_m(F~_m), weighted)``, ``w = softmax(a)`` (equal logits at init),
      ``G = (1 - lambda) symnorm(sum_m w_m K_m) + lambda sum_m w_m O_m``;
    - ``h = G^{L_i} Q``, ``E = LGN_2([P; Q]; D~^-1 (A + I))``, items ``E_I + nrm(h)``;
    - loss ``BPR + reg_weight * 1/2 sum ||rows||^2 / reg_batch_size`` on the final rows.

    As in MMRec (and not in the paper, docs/baselines.md "Where MMRec departs"): ``G`` is rebuilt
    with gradient on the first batch of each epoch only and reused detached on the others, so
    ``T_m``, ``F~_m`` and ``a`` get a gradient once per epoch (the trainer sets gradients to
    None, so Adam skips them on the other batches); and the learned part normalises the
    weighted *sum* of the raw kNN matrices, while the frozen graphs are normalised per modality.
    Scoring rebuilds ``G`` from the current weights, without gradient.
    ``legacy_zero_grads=True`` reproduces MMRec under PyTorch < 2.0, where ``zero_grad()``
    zeroed gradients instead of dropping them and Adam kept moving ``T_m``, ``F~_m`` and ``a``
    on momentum on every batch; it changes results (TikTok, seed 999: test R@20 0.0877 against
    0.0731 with the default), so record the PyTorch version with LATTICE's numbers.

    ``G`` has at most ``2 |M| k`` entries per row, so it is kept sparse: its values carry the
    gradient (cosines of the kept pairs recomputed from the projections, which is the
    gradient of MMRec's dense top-k), the product is a gather/scatter, and no ``n_I x n_I``
    matrix is materialised (the top-k search runs in row chunks).
    """

    name = "lattice"
    Config = LATTICEConfig
    needs_features = True
    placement_class = LATTICEPlacement
    train_defaults = {"lr_decay": 0.96, "lr_decay_epochs": 50}
    grid = {"reg_weight": [0.0, 1e-5, 1e-4, 1e-3], "learning_rate": [1e-4, 5e-4, 1e-3, 5e-3]}

    def __init__(self, config: LATTICEConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        d = config.embedding_size
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.features = ItemFeatures(inputs.features, finetune=True)
        self.projections = nn.ModuleDict(
            {m: nn.Linear(dim, config.feat_embed_dim) for m, dim in self.features.dims().items()}
        )
        # MMRec: nn.Parameter([0.5, 0.5]); softmax makes any equal init uniform
        self.modal_logits = nn.Parameter(torch.full((len(self.features.names),), 0.5))
        self.sparse_format = inputs.sparse_format
        self.adj = row_normalized_adjacency(
            inputs.train_users.cpu(), inputs.train_items.cpu(), self.n_users, self.n_items,
            device=inputs.device, fmt=inputs.sparse_format,
        )
        # frozen graphs O_m, stacked as COO triplets with the modality index of each entry
        rows, cols, vals, mods = [], [], [], []
        for mi, f in enumerate(inputs.features.values()):
            r, c, v = knn_graph(f, config.knn_k, weighted=True)
            rows.append(r)
            cols.append(c)
            vals.append(symnorm_values(r, c, v, self.n_items))
            mods.append(torch.full_like(r, mi))
        self.register_buffer("init_rows", torch.cat(rows), persistent=False)
        self.register_buffer("init_cols", torch.cat(cols), persistent=False)
        self.register_buffer("init_vals", torch.cat(vals), persistent=False)
        self.register_buffer("init_mods", torch.cat(mods), persistent=False)
        self._rebuild = True
        self._graph: SparseOp | None = None  # the epoch's G, detached

    def modality_weights(self) -> torch.Tensor:
        return torch.softmax(self.modal_logits, dim=0)

    def item_graph(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``G`` as COO triplets (duplicates to be summed); the values carry gradient."""
        n, k, lam = self.n_items, self.config.knn_k, self.config.lambda_coeff
        w = self.modality_weights()
        rows, cols, vals = [], [], []
        for mi, (m, f) in enumerate(self.features.items()):
            x = l2_normalize(self.projections[m](f))
            r, c, _ = knn_graph(x.detach(), k, weighted=False)  # indices only (no gradient)
            rows.append(r)
            cols.append(c)
            vals.append(w[mi] * (x[r] * x[c]).sum(1))  # w_m K_m: the kept cosines
        r, c = torch.cat(rows), torch.cat(cols)
        learned = (1.0 - lam) * symnorm_values(r, c, torch.cat(vals), n)
        frozen = lam * w[self.init_mods] * self.init_vals
        return (torch.cat([r, self.init_rows]), torch.cat([c, self.init_cols]),
                torch.cat([learned, frozen]))

    def item_graph_dense(self) -> torch.Tensor:
        """``G`` as a dense ``n_I x n_I`` matrix (for inspection and tests)."""
        r, c, v = self.item_graph()
        g = torch.zeros(self.n_items, self.n_items, dtype=v.dtype, device=v.device)
        return g.index_put((r, c), v, accumulate=True)

    def propagate(self, graph_mm) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.item_emb
        for _ in range(self.config.n_layers):
            h = graph_mm(h)
        e = layer_mean(torch.cat([self.user_emb, self.item_emb]), self.adj,
                       self.config.n_ui_layers)
        return e[: self.n_users], e[self.n_users:] + l2_normalize(h)

    def pre_epoch(self, epoch: int) -> None:
        self._rebuild = True  # rebuild G, with gradient, on the epoch's first batch

    def loss(self, users, pos_items, neg_items):
        if self._rebuild or self._graph is None:
            r, c, v = self.item_graph()
            self._graph = SparseOp(r, c, v.detach(), (self.n_items, self.n_items),
                                   device=v.device, fmt=self.sparse_format)
            self._rebuild = False

            def graph_mm(x: torch.Tensor) -> torch.Tensor:
                return coo_matmul(r, c, v, x, self.n_items)
            zero = None
        else:
            graph_mm = self._graph.__matmul__
            zero = self._zero_graph_term() if self.config.legacy_zero_grads else None
        eu, ei = self.propagate(graph_mm)
        u, i, j = eu[users], ei[pos_items], ei[neg_items]
        bpr = bpr_loss((u * i).sum(1), (u * j).sum(1))
        reg = self.config.reg_weight * squared_reg(u, i, j,
                                                   denominator=self.config.reg_batch_size)
        total = bpr + reg if zero is None else bpr + reg + zero
        return {"loss": total, "bpr": bpr, "reg": reg}

    def _zero_graph_term(self) -> torch.Tensor:
        """0 * (sum of the graph-learning parameters): their gradients become zeros."""
        params = [self.modal_logits, *self.projections.parameters(),
                  *(f for _, f in self.features.items())]
        return 0.0 * sum(p.sum() for p in params)

    def embeddings(self):
        with torch.no_grad():
            r, c, v = self.item_graph()
        return self.propagate(lambda x: coo_matmul(r, c, v, x, self.n_items))
