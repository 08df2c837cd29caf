"""MMGCN (Wei et al., "MMGCN: Multi-modal Graph Convolution Network for Personalized
Recommendation of Micro-video", ACM MM 2019), docs/baselines.md section 4.

One graph convolution network per modality on the user-item bipartite graph: users carry a
per-modality preference vector in the feature space, items their features; each layer
combines the mean of the neighbours' transformed representations with the node's own
transformed representation plus an ID embedding shared by all modalities.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from mgnm.data.graphs import l2_normalize, mean_adjacency
from mgnm.data.inputs import ModelInputs
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.layers import ItemFeatures
from mgnm.models.losses import bpr_loss
from mgnm.models.placement import Placement


class MMGCNConfig(ModelConfig):
    reg_weight: float = Field(1e-4, ge=0, description="lambda of the element-wise mean squares "
                                                      "of the batch's ID rows and of the "
                                                      "projected modalities' preferences")
    n_layers: int = Field(3, ge=1, description="graph convolution layers (MMRec: always 3, "
                                               "whatever its yaml says)")
    train_id_embeddings: bool = Field(
        True, description="train the ID embeddings E_id and the user preferences P_m (the "
                          "paper); false = MMRec, where they are random constants")
    latent_dim: int = Field(256, gt=0, description="width d'_m that a projected modality is "
                                                   "mapped to before the first layer")
    project_modalities: tuple[str, ...] = Field(
        ("image",), description="modalities projected to latent_dim by a linear map (MMRec: "
                                "image); the others go in raw, unless wider than max_raw_width")
    max_raw_width: int = Field(512, gt=0, description="a modality wider than this is projected "
                                                      "whatever project_modalities says")
    eval_fresh_forward: bool = Field(
        True, description="score from a fresh forward at evaluation; false = MMRec, which "
                          "scores from the last training batch's forward")

    @field_validator("project_modalities", mode="before")
    @classmethod
    def _str_to_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v


class MMGCNLayer(nn.Module):
    """One layer, concat combiner (eqs. 1, 5 and the concatenation variant of eq. 6):
    ``H = LReLU(A_mean X Wc)``, ``X^ = LReLU(X Ws + bs) + E_id``,
    ``X' = LReLU([H || X^] Wg + bg)``."""

    def __init__(self, d_in: int, d: int, first: bool) -> None:
        super().__init__()
        self.conv = nn.Linear(d_in, d_in, bias=False)
        self.self_lin = nn.Linear(d_in, d)
        self.combine = nn.Linear(d_in + d, d)
        nn.init.xavier_normal_(self.conv.weight)
        nn.init.xavier_normal_(self.self_lin.weight)
        if first:  # MMRec re-initialises the combiner of layer 1 only
            nn.init.xavier_normal_(self.combine.weight)

    def forward(self, x: torch.Tensor, graph, id_emb: torch.Tensor) -> torch.Tensor:
        return self.combine_rows(F.leaky_relu(graph @ self.conv(x)), x, id_emb)

    def combine_rows(self, h: torch.Tensor, x: torch.Tensor, id_emb: torch.Tensor) -> torch.Tensor:
        """``X' = LReLU([H || LReLU(X Ws + bs) + E_id] Wg + bg)`` for rows ``x`` whose
        aggregated neighbours are ``h``."""
        x_hat = F.leaky_relu(self.self_lin(x)) + id_emb
        return F.leaky_relu(self.combine(torch.cat([h, x_hat], dim=1)))


class MMGCNPlacement(Placement):
    """A new user: each modality's layers run for one new node whose neighbours are the
    history (``D^-1 A``: their mean), from the trained item layers, with its own preference
    ``P_m`` and ID row ``E_id`` unknown (zeros); the modalities averaged as in training.
    ``ego`` (to check the maths on a training user): ``{"preference": {m: P_m[u]}, "id":
    E_id[u]}``; with the user's own rows this is its trained row, exactly."""

    fold_in_method = "each modality's layers for a new node over the history (mean of the " \
                     "trained item layers), preference and ID rows zero"

    def __init__(self, model, trained) -> None:
        self.layers = {m: [x[model.n_users:] for x in model.modality_layers(m)[:-1]]
                       for m in model.modalities}
        super().__init__(model, trained)

    @torch.no_grad()
    def fold_in(self, items, ego=None):
        model, ego = self.model, ego or {}
        d = model.config.embedding_size
        id_row = ego.get("id", torch.zeros(d)).unsqueeze(0)
        share = torch.full((items.numel(),), 1.0 / items.numel())
        out = []
        for m in model.modalities:
            pref = ego.get("preference", {}).get(m)
            width = self.layers[m][0].shape[1]
            x = l2_normalize(pref.unsqueeze(0)) if pref is not None else torch.zeros(1, width)
            for layer, item_rows in zip(model.layers[m], self.layers[m], strict=True):
                h = F.leaky_relu((share @ layer.conv(item_rows[items])).unsqueeze(0))
                x = layer.combine_rows(h, x, id_row)
            out.append(x[0])
        return sum(out) / len(out)


class MMGCN(Recommender):
    """Per modality: ``X^0 = nrm([P_m ; F_m W_mlp + c_mlp])`` (or ``nrm([P_m ; F_m])`` for a
    raw modality), then ``n_layers`` layers on ``D^-1 A`` (mean over bipartite neighbours);
    ``Z = mean_m X^L_m``; ``s(u, i) = Z_u . Z_i``.

    Departures of MMRec from the paper, each behind a switch where it changes results:

    - ``train_id_embeddings`` (default true, the paper): MMRec keeps ``E_id`` and ``P_m`` as
      plain tensors that are never updated, which also makes its regulariser inert.
    - ``eval_fresh_forward`` (default true): MMRec scores from the output of the last
      training batch's forward (one optimiser step stale). Without such a cache (before any
      training batch, after loading a checkpoint) a fresh forward is used.
    - Modalities are averaged (MMRec); the paper sums them.
    - Layers are fixed at 3 in MMRec (``n_layers`` defaults to 3); the combiner is the
      concatenation (MMRec's ``concate = 'False'`` is a true string).

    Input width: a modality named in ``project_modalities`` (default ``image``) or wider than
    ``max_raw_width`` (default 512) is projected by ``Lin(d_m -> latent_dim)``; the others go in
    raw. This reproduces MMRec on its datasets (4096-d image projected to 256, 384-d text raw)
    and on TikTok (128-d image projected to 256, 128-d audio raw, as MMRec treats audio as its
    "text" slot).
    """

    name = "mmgcn"
    Config = MMGCNConfig
    needs_features = True
    placement_class = MMGCNPlacement
    grid = {"reg_weight": [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1],
            "learning_rate": [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]}

    def __init__(self, config: MMGCNConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        d = config.embedding_size
        self.features = ItemFeatures(inputs.features, finetune=False)
        self.modalities = list(self.features.names)
        self.projected = [m for m, dim in self.features.dims().items()
                          if m in config.project_modalities or dim > config.max_raw_width]
        self.mlp = nn.ModuleDict()
        self.layers = nn.ModuleDict()
        pref: dict[str, torch.Tensor] = {}
        for m, dim in self.features.dims().items():
            width = config.latent_dim if m in self.projected else dim
            if m in self.projected:
                self.mlp[m] = nn.Linear(dim, width)  # PyTorch default init
            pref[m] = nn.init.xavier_normal_(torch.empty(self.n_users, width))
            self.layers[m] = nn.ModuleList(
                [MMGCNLayer(width if k == 0 else d, d, first=k == 0)
                 for k in range(config.n_layers)]
            )
        id_emb = nn.init.xavier_normal_(torch.empty(self.n_users + self.n_items, d))
        if config.train_id_embeddings:
            self.id_emb = nn.Parameter(id_emb)
            self.preference = nn.ParameterDict({m: nn.Parameter(p) for m, p in pref.items()})
        else:  # constants, but saved with the model
            self.register_buffer("id_emb", id_emb)
            for m, p in pref.items():
                self.register_buffer(f"preference_{m}", p)
        self.graph = mean_adjacency(inputs.train_users.cpu(), inputs.train_items.cpu(),
                                    self.n_users, self.n_items, device=inputs.device,
                                    fmt=inputs.sparse_format)
        self._last: torch.Tensor | None = None  # MMRec's cached training forward

    # the cached forward is part of the model's state when it is what evaluation scores, so
    # that best.pt scores (mgnm evaluate) exactly as the run did at its best epoch
    def get_extra_state(self) -> dict:
        return {} if self.config.eval_fresh_forward else {"last": self._last}

    def set_extra_state(self, state: dict) -> None:
        self._last = state.get("last")

    def user_preference(self, m: str) -> torch.Tensor:
        if self.config.train_id_embeddings:
            return self.preference[m]
        return getattr(self, f"preference_{m}")

    def modality_layers(self, m: str) -> list[torch.Tensor]:
        """``X^0_m .. X^L_m`` over all ``n_U + n_I`` nodes."""
        f = self.features[m]
        items = self.mlp[m](f) if m in self.projected else f
        x = l2_normalize(torch.cat([self.user_preference(m), items]))
        out = [x]
        for layer in self.layers[m]:
            x = layer(x, self.graph, self.id_emb)
            out.append(x)
        return out

    def modality_output(self, m: str) -> torch.Tensor:
        """``X^L_m`` over all ``n_U + n_I`` nodes."""
        return self.modality_layers(m)[-1]

    def forward_all(self) -> torch.Tensor:
        """``Z = mean_m X^L_m`` (MMRec averages; the paper sums)."""
        z = self.modality_output(self.modalities[0])
        for m in self.modalities[1:]:
            z = z + self.modality_output(m)
        return z / len(self.modalities)

    def loss(self, users, pos_items, neg_items):
        z = self.forward_all()
        self._last = z.detach()
        u, i, j = z[users], z[self.n_users + pos_items], z[self.n_users + neg_items]
        bpr = bpr_loss((u * i).sum(1), (u * j).sum(1))
        # mean over the 2|b| x d entries of E_id[u]^2 + E_id[v]^2, (u, v) in {(u,i), (u,j)}
        e = self.id_emb
        eu, ei, ej = e[users], e[self.n_users + pos_items], e[self.n_users + neg_items]
        id_reg = (2 * eu.pow(2).sum() + ei.pow(2).sum() + ej.pow(2).sum()) / (2 * eu.numel())
        pref_reg = sum((self.user_preference(m).pow(2).mean() for m in self.projected),
                       torch.zeros((), device=e.device))
        reg = self.config.reg_weight * (id_reg + pref_reg)
        return {"loss": bpr + reg, "bpr": bpr, "reg": reg}

    def embeddings(self):
        if self.config.eval_fresh_forward or self._last is None:
            z = self.forward_all()
        else:
            z = self._last
        return z[: self.n_users], z[self.n_users:]
