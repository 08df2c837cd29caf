"""MGNM (Mo et al.) and its parent LGMRec (Guo et al., AAAI 2024): one implementation.

The reading of the paper's equations is ``docs/model.md``; equation numbers in
comments are the paper's. LGMRec is this model with the purifier and the de-redundancy
losses off and Gumbel noise at evaluation on (:class:`LGMRecConfig`), not a copy.

Per training step, once:

1. collaborative graph embedding, eqs. 2-3: ``E^{l+1} = Â E^l``, ``E_id_loc = mean_l E^l``;
2. modality graph embedding, eqs. 4-7: ``ê_i = F_m W_m``, users = mean of their items,
   ``K`` propagations, the last layer kept;
3. local fusion, eq. 8: ``E_loc = E_id_loc + Σ_m norm(E_loc^m)``;
4. modality-guided purifier, eqs. 9-10: ``Ë = E_id_items ⊙ σ((F W1 + b1) W2 + b2)``;
5. hyperedges, eqs. 11-12: ``H_i = Ë Tᵀ``, ``H_u = R H_i``, Gumbel-softmax, dropout;
6. factorised hypergraph propagation, eqs. 13-14: ``Λ = H̃_iᵀ Z_i``, ``Z ← H̃ Λ``;
7. global fusion, eqs. 15, 17: ``E* = E_loc + α norm(Σ_m E^{m,H})``;

and the loss, eq. 26: ``BPR + ω (HCL_u + HCL_i) + β L_ddr + δ L_ddr_mm + λ reg``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from mgnm.data.graphs import l2_normalize
from mgnm.data.inputs import ModelInputs
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.layers import ItemFeatures
from mgnm.models.losses import batch_norm_reg, bpr_loss, contrast_all, contrast_all_lowrank
from mgnm.models.neighbours import borrow
from mgnm.models.placement import Placement
from mgnm.models.propagation import bipartite_propagate, layer_means


class MGNMConfig(ModelConfig):
    """MGNM's hyperparameters; defaults are the paper's (Section V-A) and docs/model.md's."""

    n_ui_layers: int = Field(2, ge=0, description="L, collaborative graph layers (eq. 2)")
    n_mm_layers: int = Field(2, ge=0, description="K, modality graph layers (eq. 7)")
    n_hyper_layers: int = Field(1, ge=1, description="hypergraph propagation layers (eqs. 13-14)")
    n_hyperedges: int = Field(4, ge=1, description="B, hyperedges per modality (eq. 11)")
    keep_rate: float = Field(0.5, gt=0, le=1, description="hyperedge dropout keep rate")
    alpha: float = Field(0.3, ge=0, description="weight of the global part (eq. 17); 0 = off")
    hyper_temperature: float = Field(0.2, gt=0, description="Gumbel-softmax temperature")
    cl_weight: float = Field(1e-4, ge=0, description="omega, weight of HCL (eq. 26)")
    cl_temperature: float = Field(0.2, gt=0, description="tau of HCL (eq. 16)")
    hcl_anchor: str = Field("image", description="the modality whose batch rows HCL contrasts "
                                                 "against the other modality's whole table "
                                                 "(MMRec: image); pairs without it anchor the "
                                                 "name that sorts first")
    reg_weight: float = Field(1e-6, ge=0, description="lambda of the batch-row norm regulariser")
    ddr_weight: float = Field(1e-4, ge=0, description="beta, DDR on the collaborative layers")
    ddr_mm_weight: float = Field(1e-4, ge=0, description="delta, DDR on the modality layers")
    ddr_from_layer: int = Field(0, ge=0, description="first layer in the DDR sums (AFDGCF: 1)")
    purifier: bool = Field(True, description="modality-guided purifier (eqs. 9-10); false = "
                                             "LGMRec's hyperedges from raw features")
    purifier_hidden: int | None = Field(None, gt=0, description="h of W1 (default: d)")
    local_norm: Literal["each", "sum"] = Field(
        "each", description="eq. 8: normalise each modality ('each') or their sum ('sum')")
    eval_gumbel: bool = Field(False, description="sample Gumbel noise at evaluation (LGMRec)")
    finetune_features: bool = Field(False, description="train the feature tables")
    feature_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="storage and product precision of the frozen feature tables: "
                               "bfloat16 halves their memory and runs F W ~2x faster on CPUs "
                               "with AVX512-BF16 (float32 accumulation, weights and results)")

    @model_validator(mode="after")
    def _finetune_is_float32(self):
        if self.finetune_features and self.feature_dtype != "float32":
            raise ValueError("finetune_features=true needs feature_dtype=float32")
        return self


class LGMRecConfig(MGNMConfig):
    """LGMRec's defaults (MMRec's Baby yaml): MGNM without purifier and DDR."""

    purifier: bool = Field(False, description="MGNM's purifier (off in LGMRec: hyperedges F V)")
    ddr_weight: float = Field(0.0, ge=0, description="beta, MGNM's DDR (off in LGMRec)")
    ddr_mm_weight: float = Field(0.0, ge=0, description="delta, MGNM's DDR (off in LGMRec)")
    eval_gumbel: bool = Field(True, description="sample Gumbel noise at evaluation, from a "
                                                "generator seeded by (seed, epoch, split)")


@dataclass
class Forward:
    """Everything one forward pass produces, as (users, items) pairs of tables."""

    users: torch.Tensor  # E*, p x d
    items: torch.Tensor  # E*, q x d
    cge_layers: list[tuple[torch.Tensor, torch.Tensor]]  # E^0..E^L
    mge_layers: dict[str, list[tuple[torch.Tensor, torch.Tensor]]]  # Ê^{m,0..K}
    hyper: dict[str, tuple[torch.Tensor, torch.Tensor]]  # E^{m,H}
    # E^{m,H} = (H̃_u Λ, H̃_i Λ): the soft assignments (p x B, q x B) and the last Λ (B x d)
    factors: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

    @property
    def final(self) -> torch.Tensor:
        """E* with users first, then items."""
        return torch.cat([self.users, self.items])


class _CenteredGram(torch.autograd.Function):
    """``X_cᵀ X_c`` with ``X_c = X - mean_rows(X)``; backward ``X_c (G + Gᵀ)``.

    That is the whole gradient: the centring's own backward would subtract the row mean of
    ``X_c (G + Gᵀ)``, which is ``mean(X_c) (G + Gᵀ) = 0``. Autograd would form it anyway
    (and split the product in two), each a pass over a users-by-d table per DDR layer.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        xc = x - x.mean(dim=0, keepdim=True)
        ctx.save_for_backward(xc)
        return xc.T @ xc

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (xc,) = ctx.saved_tensors
        return xc @ (grad + grad.T)


def gumbel_softmax(logits: torch.Tensor, tau: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``softmax((logits + g) / tau)`` with ``g = -log(Exp(1))`` Gumbel noise, drawn from
    ``generator`` (torch's global stream when None, which equals ``F.gumbel_softmax``)."""
    gumbels = -torch.empty_like(logits).exponential_(generator=generator).log()
    return torch.softmax((logits + gumbels) / tau, dim=1)


def decorrelation(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``||corr(X) - I||_F / sqrt(2)`` over the columns of ``X`` (eqs. 20-22).

    Computed as the norm of corr's off-diagonal part divided by sqrt(2), which equals the
    formula wherever corr is defined and stays finite for a constant column.
    """
    cov = _CenteredGram.apply(x)
    inv_std = cov.diagonal().clamp_min(eps).rsqrt()
    corr = cov * inv_std[:, None] * inv_std[None, :]
    off = corr - torch.diag_embed(corr.diagonal())
    return off.norm() / math.sqrt(2.0)


def adaptive_ddr(layers: list[torch.Tensor]) -> torch.Tensor:
    """``Σ_l μ^l c(X^l)`` with ``μ^l = (1/c_l) / Σ_k 1/c_k`` as constants (eqs. 23-25)."""
    c = torch.stack([decorrelation(x) for x in layers])
    inv = 1.0 / c.detach().clamp_min(1e-12)
    mu = inv / inv.sum()
    return (mu * c).sum()


class MGNMPlacement(Placement):
    """New users and new items by MGNM's own fusion (eqs. 8, 15, 17) of what each part can
    know without the user's or item's own trained rows:

    - fold-in: the CGE layers as LightGCN's fold-in (eq. 2-3, no ego); each modality's last
      MGE layer aggregated the same way from the trained item layer ``K - 1`` (``K = 0``: the
      mean of the history's projected features, eq. 5); hyperedges ``H_u = sum_{i in H} H_i``
      (eq. 12) against the trained ``Lambda``, softmax assignments (no Gumbel noise, also for
      LGMRec). With a training user's ego row this is its trained row, exactly;
    - a new item: what interactions made (the CGE layer mean, each last MGE layer) borrowed
      from its content neighbours; the global part from its own hyperedge logits (eq. 11).
    """

    fold_in_method = "eq. 3 layer mean of the trained CGE item layers with no ego; MGE last " \
                     "layer aggregated likewise; hyperedges H_u = sum of the history's H_i"
    cold_method = "what interactions made, borrowed from the nearest trained items by " \
                  "content: the CGE layer mean (eq. 3) and each modality's last MGE layer " \
                  "(eq. 7); the global part from the item's own hyperedge logits (eq. 11; " \
                  "MGNM's purifier gates the borrowed ego row) against the trained Lambda"

    def __init__(self, model, trained) -> None:
        cfg = model.config
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
        if cfg.alpha > 0:  # Lambda from noise-free assignments (softmax), also for LGMRec
            for m in model.modalities:
                h_i = model.hyperedge_logits(m)
                a_i = torch.softmax(h_i / cfg.hyper_temperature, dim=1)
                z = self.id_items
                for _ in range(cfg.n_hyper_layers):  # eqs. 13-14
                    lam = a_i.T @ z
                    z = a_i @ lam
                self.logits[m], self.lam[m] = h_i, lam
        super().__init__(model, trained)

    def _global(self, local: torch.Tensor, logits: list[torch.Tensor]) -> torch.Tensor:
        """Eqs. 13-17 with softmax (noise-free) assignments against the trained Lambda."""
        model = self.model
        if model.config.alpha <= 0:
            return local
        tau = model.config.hyper_temperature
        z = [torch.softmax(h / tau, dim=1) @ self.lam[m]
             for m, h in zip(model.modalities, logits, strict=True)]
        return model.global_fusion(local, z)

    @torch.no_grad()
    def fold_in(self, items, ego=None):
        model = self.model
        ids = self.lightgcn_fold_in(self.cge_items, items, ego)
        w = self.sym_weights(items)
        if model.config.n_mm_layers > 0:
            mge = [w @ self.mge_items[m][items] for m in model.modalities]
        else:  # eq. 5: the mean of the history's projected features
            mge = [self.mge_items[m][items].mean(0) for m in model.modalities]
        local = model.local_fusion(ids.unsqueeze(0), [x.unsqueeze(0) for x in mge])
        hyper = [self.logits[m][items].sum(0, keepdim=True) for m in self.logits]  # eq. 12
        return self._global(local, hyper)[0]

    @torch.no_grad()
    def place(self, idx, w, targets):
        model = self.model
        feats = self.target_features(targets)
        local = model.local_fusion(borrow(self.id_items, idx, w),
                                   [borrow(self.mge_last[m], idx, w) for m in model.modalities])
        hyper = []
        if model.config.alpha > 0:  # eqs. 9-11 from the item's own features
            ego = borrow(self.ego_items, idx, w)
            hyper = [model.new_item_hyperedge_logits(m, feats[m], ego) for m in model.modalities]
        return self._global(local, hyper)


class MGNM(Recommender):
    """MGNM: local (CGE + MGE) and global (purified hypergraph) interaction, with DDR.

    ``purifier=false, ddr_weight=ddr_mm_weight=0`` gives exactly LGMRec (``eval_gumbel``
    only changes how evaluation scores are drawn).
    """

    name = "mgnm"
    Config = MGNMConfig
    needs_features = True
    placement_class = MGNMPlacement
    grid = {"ddr_weight": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
            "ddr_mm_weight": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]}

    def __init__(self, config: MGNMConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        d = config.embedding_size
        h = config.purifier_hidden or d
        b = config.n_hyperedges
        self.modalities = list(inputs.features)
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.features = ItemFeatures(inputs.features, finetune=config.finetune_features,
                                     dtype=config.feature_dtype)
        dims = self.features.dims()

        def xavier(*shape: int) -> nn.Parameter:
            return nn.Parameter(nn.init.xavier_uniform_(torch.empty(*shape)))

        keys = {m: self._key(m) for m in self.modalities}
        self.proj = nn.ParameterDict({keys[m]: xavier(dims[m], d) for m in self.modalities})  # W_m, eq. 4
        if config.purifier:
            self.pur_w1 = nn.ParameterDict({keys[m]: xavier(dims[m], h) for m in self.modalities})
            self.pur_b1 = nn.ParameterDict({keys[m]: nn.Parameter(torch.zeros(h))
                                            for m in self.modalities})
            self.pur_w2 = nn.ParameterDict({keys[m]: xavier(h, d) for m in self.modalities})
            self.pur_b2 = nn.ParameterDict({keys[m]: nn.Parameter(torch.zeros(d))
                                            for m in self.modalities})
            self.hyper_t = nn.ParameterDict({keys[m]: xavier(b, d) for m in self.modalities})
        else:
            self.hyper_v = nn.ParameterDict({keys[m]: xavier(dims[m], b) for m in self.modalities})
        # the user-item block of D^-1/2 A D^-1/2: propagating (users, items) with it equals
        # propagating their stack with the full (p+q)^2 matrix, without stacking (eqs. 2, 7)
        self.r_sym = inputs.interactions("sym")
        self.r_mean = inputs.interactions("row")  # eq. 5: mean over the user's items
        self.r = inputs.interactions("none")  # eq. 12: H_u = R H_i

    @staticmethod
    def _key(modality: str) -> str:
        return modality.replace(".", "_")

    # ------------------------------------------------------------------ forward
    def _hyper_weights(self, m: str) -> torch.Tensor:
        """The weights the hyperedges read the features with: ``W1`` (eq. 9) or LGMRec's ``V``."""
        k = self._key(m)
        return self.pur_w1[k] if self.config.purifier else self.hyper_v[k]

    def feature_products(self, m: str, hyper: bool
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``F_m W_m`` (eq. 4) and, with ``hyper``, ``F_m W1`` (eq. 9) or LGMRec's ``F_m V``.

        Both come from one product of the feature table with the two weights side by side:
        the table (the largest operand: 4096-d image features in the paper) is read once, and
        the backward's ``Fᵀ G`` is one product as well.
        """
        proj = self.proj[self._key(m)]
        if not hyper:
            return self.features.product(m, proj), None
        second = self._hyper_weights(m)
        both = self.features.product(m, torch.cat([proj, second], dim=1))
        # split, not slicing: its backward is one concatenation, not a zero-filled copy per half
        first, rest = both.split([proj.shape[1], second.shape[1]], dim=1)
        return first, rest

    def hyperedge_logits(self, m: str, first: torch.Tensor | None = None) -> torch.Tensor:
        """Item-to-hyperedge logits ``H_i^m`` (q x B), eqs. 9-11 (or LGMRec's ``F V``).

        ``first``: ``F_m W1`` (or ``F_m V``) when already computed (:meth:`feature_products`).
        """
        if first is None:
            first = self.features.product(m, self._hyper_weights(m))
        return self._logits_from(m, first, self.item_emb)

    def new_item_hyperedge_logits(self, m: str, features: torch.Tensor,
                                  ego: torch.Tensor) -> torch.Tensor:
        """``H^m`` of items that are not in the tables (new items, placed from content): their
        features ``F_m`` (n x f) and ego rows ``E_id`` (n x d; only the purifier reads them)."""
        return self._logits_from(m, features.float() @ self._hyper_weights(m), ego)

    def _logits_from(self, m: str, first: torch.Tensor, ego: torch.Tensor) -> torch.Tensor:
        if not self.config.purifier:
            return first  # LGMRec: F V
        k = self._key(m)
        hidden = first + self.pur_b1[k]  # eq. 9
        gate = torch.sigmoid(hidden @ self.pur_w2[k] + self.pur_b2[k])  # eq. 10
        purified = ego * gate
        return purified @ self.hyper_t[k].T  # eq. 11

    @property
    def stochastic_eval(self) -> bool:
        return self.config.eval_gumbel

    def _soft_assign(self, logits: torch.Tensor, training: bool) -> torch.Tensor:
        tau = self.config.hyper_temperature
        if training or self.config.eval_gumbel:
            gen = None if training else self.eval_generator
            out = gumbel_softmax(logits, tau, gen)
        else:
            out = torch.softmax(logits / tau, dim=1)
        if training and self.config.keep_rate < 1:
            out = F.dropout(out, p=1.0 - self.config.keep_rate, training=True)
        return out

    def forward_all(self, training: bool) -> Forward:
        cfg = self.config
        need_hyper = cfg.alpha > 0 or (training and cfg.cl_weight > 0)
        cge = bipartite_propagate(self.user_emb, self.item_emb, self.r_sym, cfg.n_ui_layers)  # eq. 2
        id_u, id_i = layer_means(cge)  # eq. 3, LightGCN's layer mean

        mge: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        firsts: dict[str, torch.Tensor | None] = {}
        for m in self.modalities:
            items, firsts[m] = self.feature_products(m, need_hyper)  # eq. 4
            users = self.r_mean @ items  # eq. 5
            mge[m] = bipartite_propagate(users, items, self.r_sym, cfg.n_mm_layers)  # eqs. 6-7
        last = [mge[m][-1] for m in self.modalities]
        loc_u = self.local_fusion(id_u, [u for u, _ in last])
        loc_i = self.local_fusion(id_i, [i for _, i in last])

        hyper: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        factors: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        if need_hyper:
            for m in self.modalities:
                h_i = self.hyperedge_logits(m, firsts[m])
                h_u = self.r @ h_i  # eq. 12
                a_i = self._soft_assign(h_i, training)
                a_u = self._soft_assign(h_u, training)
                z_i = id_i
                for _ in range(cfg.n_hyper_layers):  # eqs. 13-14, never forming H H^T
                    lam = a_i.T @ z_i
                    z_i = a_i @ lam
                    z_u = a_u @ lam
                hyper[m] = (z_u, z_i)
                factors[m] = (a_u, a_i, lam)
        if cfg.alpha > 0:  # eqs. 15, 17
            fin_u = self.global_fusion(loc_u, [z[0] for z in hyper.values()])
            fin_i = self.global_fusion(loc_i, [z[1] for z in hyper.values()])
        else:
            fin_u, fin_i = loc_u, loc_i
        return Forward(fin_u, fin_i, cge, mge, hyper, factors)

    def local_fusion(self, ids: torch.Tensor, mge_last: list[torch.Tensor]) -> torch.Tensor:
        """Eq. 8: ``E_loc = E_id_loc + sum_m norm(E^m)`` (``local_norm='sum'``: the norm of
        the sum) from the last MGE layer of each modality."""
        if self.config.local_norm == "each":
            return ids + sum(l2_normalize(x) for x in mge_last)
        return ids + l2_normalize(sum(mge_last))

    def global_fusion(self, local: torch.Tensor, hyper: list[torch.Tensor]) -> torch.Tensor:
        """Eqs. 15, 17: ``E* = E_loc + alpha norm(sum_m E^{m,H})``."""
        return local + self.config.alpha * l2_normalize(sum(hyper))

    # ------------------------------------------------------------------ objective
    def loss(self, users, pos_items, neg_items):
        cfg = self.config
        out = self.forward_all(training=True)
        u, i, j = out.users[users], out.items[pos_items], out.items[neg_items]
        bpr = bpr_loss((u * i).sum(1), (u * j).sum(1))  # eq. 19
        reg = batch_norm_reg(u, i, j)
        zero = bpr.new_zeros(())
        hcl_u = hcl_i = zero
        if cfg.cl_weight > 0:
            for a, b in self.hcl_pairs():  # eq. 16, every modality pair
                hcl_u = hcl_u + self._hcl(out, a, b, 0, users)
                hcl_i = hcl_i + self._hcl(out, a, b, 1, pos_items)
        ddr = ddr_mm = zero
        first = cfg.ddr_from_layer
        if cfg.ddr_weight > 0:  # eq. 23 over the CGE layers
            ddr = self._ddr(out.cge_layers[first:])
        if cfg.ddr_mm_weight > 0:  # the same over every modality's MGE layers
            for m in self.modalities:
                ddr_mm = ddr_mm + self._ddr(out.mge_layers[m][first:])
        # eq. 26; every term is reported as weighted, so the terms add up to the loss
        terms = {"bpr": bpr, "hcl": cfg.cl_weight * (hcl_u + hcl_i), "ddr": cfg.ddr_weight * ddr,
                 "ddr_mm": cfg.ddr_mm_weight * ddr_mm, "reg": cfg.reg_weight * reg}
        return {"loss": sum(terms.values()), **terms}

    def hcl_pairs(self) -> list[tuple[str, str]]:
        """The (anchor, other) modality pairs of HCL (eq. 16).

        The anchor's batch rows are contrasted against every row of the other modality's
        table. In each pair the ``hcl_anchor`` modality is the anchor (MMRec's LGMRec anchors
        the image features: ``ssl_triple_loss(v[batch], t[batch], t)``); a pair without it
        anchors the modality whose name sorts first.
        """
        anchor = self.config.hcl_anchor
        return [(b, a) if b == anchor else (a, b) for a, b in combinations(self.modalities, 2)]

    def _hcl(self, out: Forward, a: str, b: str, side: int, index: torch.Tensor) -> torch.Tensor:
        """Eq. 16 for modality ``a`` against ``b`` on the users (side 0) or items (side 1)."""
        anchor = out.hyper[a][side]
        weights, basis = out.factors[b][side], out.factors[b][2]
        tau = self.config.cl_temperature
        if basis.shape[0] < basis.shape[1]:  # B < d: the cheaper, identical low-rank form
            return contrast_all_lowrank(anchor, weights, basis, index, tau)
        return contrast_all(anchor, out.hyper[b][side], index, tau)

    @staticmethod
    def _ddr(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Eq. 23: the adaptive DDR of the user tables plus that of the item tables."""
        return adaptive_ddr([u for u, _ in layers]) + adaptive_ddr([i for _, i in layers])

    def embeddings(self):
        out = self.forward_all(training=False)
        return out.users, out.items


class LGMRec(MGNM):
    """LGMRec: local graph embeddings plus hypergraph embeddings from raw features (Guo et al.)."""

    name = "lgmrec"
    Config = LGMRecConfig
    grid = {"n_hyperedges": [2, 4, 8, 16, 32, 64, 128, 256],
            "keep_rate": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
            "alpha": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}
