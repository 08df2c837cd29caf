"""How a trained model places what it never saw: new users and new items.

- **Fold-in** (a new user from a history of items): the user row the model would compute from
  its trained item side, with nothing for the user's own ego (ID) embedding.
- **Cold items** (a new item from its content alone): the item row from the trained modality
  side, the ID part borrowed from the item's nearest training items in feature space.

One class per model family, listed in :data:`PLACEMENTS`; each states its methods in
``fold_in_method`` / ``cold_method`` (shown by ``GET /health`` and docs/serving.md). A model
without a method refuses with :class:`UnsupportedError`. Every tensor kept here is detached.

The graph models' fold-in uses the training graph's item degrees ``d_i`` (an item without
training edges counts as degree 1): for the bipartite LightGCN propagation a user's layer
``l >= 1`` is ``e_u^l = sum_{i in H} e_i^{l-1} / sqrt(|H| d_i)``, so folding in a training
user's own history gives its trained row less ``e_u^0 / (L + 1)``, exactly (tested).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from mgnm.data.graphs import l2_normalize, layer_mean, layer_means, propagate
from mgnm.errors import MgnmError
from mgnm.models import Recommender
from mgnm.models.freedom import modality_weights

KNN_NEIGHBOURS = 10  # training items whose ID side a cold item borrows
MF_RIDGE = 0.1  # lambda of the least-squares fold-in, relative to trace(Q^T Q) / d


class UnsupportedError(MgnmError):
    """The run's model has no method for the requested placement (HTTP 501)."""


def content_vectors(features: dict[str, torch.Tensor]) -> torch.Tensor:
    """Concatenated per-modality unit rows scaled by ``1/sqrt(M)``: the dot product of two
    rows is the mean over modalities of their cosine similarities."""
    parts = [l2_normalize(f.float()) for f in features.values()]
    return torch.cat(parts, dim=1) / len(parts) ** 0.5


def knn_weights(query: torch.Tensor, base: torch.Tensor, k: int = KNN_NEIGHBOURS,
                weighted: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` rows of ``base`` most similar (dot product) to each row of ``query``, with
    weights summing to 1: the similarities clipped at 0 (uniform where all are <= 0), or
    uniform with ``weighted=False``."""
    sim = query @ base.T
    top = sim.topk(min(k, base.shape[0]), dim=1)
    w = top.values.clamp_min(0) if weighted else torch.ones_like(top.values)
    total = w.sum(1, keepdim=True)
    w = torch.where(total > 0, w / total.clamp_min(1e-30), torch.full_like(w, 1 / w.shape[1]))
    return top.indices, w


class Placement:
    """Base: knows the training graph's item degrees and the warm items' content."""

    fold_in_method: ClassVar[str] = ""
    cold_method: ClassVar[str] = ""
    why_no_cold: ClassVar[str] = "this model has no method to place items without interactions"
    why_no_fold_in: ClassVar[str] = "this model has no method to place users from a history"

    def __init__(self, model: Recommender, train_items: torch.Tensor,
                 features: dict[str, torch.Tensor], warm: torch.Tensor) -> None:
        self.name = model.name
        self.n_items = model.n_items
        self.degree = torch.bincount(train_items, minlength=self.n_items).float()
        self.features = {m: f.float() for m, f in features.items()}
        self.warm = torch.nonzero(warm).flatten()  # items with a training interaction
        self.warm_content = (content_vectors({m: f[self.warm] for m, f in self.features.items()})
                             if features else None)

    @property
    def can_fold_in(self) -> bool:
        return bool(self.fold_in_method)

    @property
    def can_place_items(self) -> bool:
        return bool(self.cold_method)

    def fold_in(self, items: torch.Tensor) -> torch.Tensor:
        raise UnsupportedError(f"model {self.name!r} cannot embed a new user: "
                               f"{self.why_no_fold_in}")

    def cold_items(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        raise UnsupportedError(f"model {self.name!r} cannot embed new items: {self.why_no_cold}")

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

    def neighbours(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(warm item indices, weights) of the nearest warm items of each new item."""
        assert self.warm_content is not None
        idx, w = knn_weights(content_vectors(features), self.warm_content)
        return self.warm[idx], w

    @staticmethod
    def borrow(table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``sum_j w_j table[idx_j]`` per new item."""
        return (w.unsqueeze(2) * table[idx]).sum(1)


def lightgcn_item_layers(user_emb: torch.Tensor, item_emb: torch.Tensor, adj,
                         n_layers: int) -> list[torch.Tensor]:
    """The item parts of LightGCN layers ``0..L-1`` on ``adj``."""
    n_users = user_emb.shape[0]
    layers = propagate(torch.cat([user_emb, item_emb]), adj, n_layers)
    return [x[n_users:] for x in layers[:n_layers]]


class LightGCNPlacement(Placement):
    fold_in_method = "normalised aggregation of the trained item layers, no ego embedding"
    why_no_cold = "it is ID-only (no content side)"

    def __init__(self, model, train_items, features, warm) -> None:
        super().__init__(model, train_items, features, warm)
        adj, n_layers = self.backbone(model)
        self.item_layers = lightgcn_item_layers(model.user_emb, model.item_emb, adj, n_layers)

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
    why_no_cold = "it is ID-only (no content side)"

    def __init__(self, model, train_items, features, warm) -> None:
        super().__init__(model, train_items, features, warm)
        _, items = model.final_embeddings()
        self.item_vectors = items
        q = items[self.warm].double()
        gram = q.T @ q
        self.ridge = MF_RIDGE * float(gram.trace()) / q.shape[1]
        eye = torch.eye(q.shape[1], dtype=torch.float64)
        self.solve = torch.linalg.inv(gram + self.ridge * eye)

    def fold_in(self, items):
        return (self.solve @ self.item_vectors[items].double().sum(0)).float()


class VBPRPlacement(LeastSquaresMF):
    cold_method = "[similarity-weighted mean of the nearest training items' Gamma || " \
                  "trained projection F W + c]"

    def __init__(self, model, train_items, features, warm) -> None:
        super().__init__(model, train_items, features, warm)
        self.gamma = model.item_emb.detach()
        self.projection = model.projection

    @torch.no_grad()
    def cold_items(self, features):
        idx, w = self.neighbours(features)
        content = self.projection(torch.cat([f.float() for f in features.values()], dim=1))
        return torch.cat([self.borrow(self.gamma, idx, w), content], dim=1)


class FREEDOMPlacement(LightGCNPlacement):
    cold_method = "ID part: similarity-weighted mean of the nearest training items' LightGCN " \
                  "rows; item-graph part: FREEDOM's kNN mixture (uniform over each " \
                  "modality's knn_k nearest training items, modality weights beta_m)"

    @staticmethod
    def backbone(model):
        return model.norm_adj, model.config.n_ui_layers

    def __init__(self, model, train_items, features, warm) -> None:
        super().__init__(model, train_items, features, warm)
        cfg = model.config
        full = torch.cat([model.user_emb, model.item_emb])
        self.lgn_items = layer_mean(full, model.norm_adj, cfg.n_ui_layers)[model.n_users:]
        h = model.item_emb
        for _ in range(max(cfg.n_mm_layers - 1, 0)):
            h = model.item_graph @ h
        self.h_prev = h  # S^{L_mm - 1} Q: what a new row of S would average
        self.betas = modality_weights(list(features), cfg.mm_image_weight)
        self.knn_k = cfg.knn_k

    def cold_items(self, features):
        idx, w = self.neighbours(features)
        out = self.borrow(self.lgn_items, idx, w)
        for beta, (m, f) in zip(self.betas, features.items(), strict=True):
            nb, wm = knn_weights(l2_normalize(f.float()),
                                 l2_normalize(self.features[m][self.warm]), self.knn_k,
                                 weighted=False)
            out = out + beta * self.borrow(self.h_prev, self.warm[nb], wm)
        return out


class BM3Placement(LightGCNPlacement):
    fold_in_method = "predictor of the normalised aggregation of the trained item layers, no ego"
    cold_method = "predictor(e), e in the direction of the mean over modalities of " \
                  "predictor(T_m F_m) (BM3's alignment target) with the nearest training " \
                  "items' similarity-weighted norm"

    def __init__(self, model, train_items, features, warm) -> None:
        super().__init__(model, train_items, features, warm)
        self.model = model
        _, self.pre_items = model.propagate()

    def fold_in(self, items):
        return self.model.predictor(super().fold_in(items))

    def cold_items(self, features):
        m = self.model
        aligned = sum(m.predictor(m.projections[k](f.float())) for k, f in features.items())
        idx, w = self.neighbours(features)
        norm = (w * self.pre_items[idx].norm(dim=2)).sum(1, keepdim=True)
        return m.predictor(l2_normalize(aligned) * norm)


class MGNMPlacement(Placement):
    fold_in_method = "eq. 3 layer mean of the trained CGE item layers with no ego; MGE last " \
                     "layer aggregated likewise; hyperedges H_u = sum of the history's H_i"
    cold_method = "ID part: similarity-weighted mean of the nearest training items' CGE rows " \
                  "(their ego rows for the purifier); MGE: norm(F W_m); hyperedges from the " \
                  "item's own logits against the trained Lambda"

    def __init__(self, model, train_items, features, warm) -> None:
        super().__init__(model, train_items, features, warm)
        cfg = model.config
        self.model = model
        out = model.forward_all(training=False)
        self.cge_items = [i for _, i in out.cge_layers[: cfg.n_ui_layers]]
        self.id_items = layer_means(out.cge_layers)[1]
        k = cfg.n_mm_layers
        self.mge_items = {m: layers[k - 1][1] if k > 0 else layers[0][1]
                          for m, layers in out.mge_layers.items()}
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

    def cold_items(self, features):
        model, cfg = self.model, self.model.config
        idx, w = self.neighbours(features)
        ids = self.borrow(self.id_items, idx, w)
        mge = [features[m].float() @ model.proj[model._key(m)] for m in model.modalities]
        hyper = []
        if cfg.alpha > 0:
            ego = self.borrow(model.item_emb, idx, w)
            for m in model.modalities:
                key, f = model._key(m), features[m].float()
                if cfg.purifier:  # eqs. 9-11 with the borrowed ego row
                    gate = torch.sigmoid((f @ model.pur_w1[key] + model.pur_b1[key])
                                         @ model.pur_w2[key] + model.pur_b2[key])
                    hyper.append((ego * gate) @ model.hyper_t[key].T)
                else:
                    hyper.append(f @ model.hyper_v[key])
        return self._fuse(ids, mge, hyper)


class Unsupported(Placement):
    why_no_cold = "not implemented for this model (see docs/serving.md)"
    why_no_fold_in = "not implemented for this model (see docs/serving.md)"


#: model name -> its placement methods
PLACEMENTS: dict[str, type[Placement]] = {
    "bpr": LeastSquaresMF,
    "lightgcn": LightGCNPlacement,
    "vbpr": VBPRPlacement,
    "mmgcn": Unsupported,
    "dualgnn": Unsupported,
    "lattice": Unsupported,
    "bm3": BM3Placement,
    "mgcn": Unsupported,
    "freedom": FREEDOMPlacement,
    "lgmrec": MGNMPlacement,
    "mgnm": MGNMPlacement,
}


@torch.no_grad()
def build_placement(model: Recommender, train_items: torch.Tensor,
                    features: dict[str, torch.Tensor], warm: torch.Tensor) -> Placement:
    was = model.training
    model.eval()
    try:
        return PLACEMENTS.get(model.name, Unsupported)(model, train_items, features, warm)
    finally:
        model.train(was)
