"""DualGNN (Wang et al., "DualGNN: Dual Graph Neural Network for Multimedia Recommendation",
IEEE Transactions on Multimedia 2021), as MMRec trains it (docs/baselines.md section 5).

Per-modality propagation on the user-item graph gives modality-specific user and item
representations; each user fuses its modalities with learned weights; a user-user
co-occurrence graph then lets a user borrow the fused representations of the users who share
its items (its "modality fusion pattern").
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from mgnm.data.graphs import l2_normalize, user_cooccurrence_topk
from mgnm.data.inputs import ModelInputs
from mgnm.data.sparse import SparseOp
from mgnm.models.base import ModelConfig, Recommender
from mgnm.models.layers import ItemFeatures
from mgnm.models.losses import bpr_loss
from mgnm.models.placement import Placement, fold_in_layers, item_layers


class DualGNNConfig(ModelConfig):
    reg_weight: float = Field(1e-4, ge=0, description="lambda of the element-wise mean squares "
                                                      "of the batch's user preferences and of "
                                                      "the user fusion weights")
    n_layers: int = Field(2, ge=0, description="propagation hops; Z = X + A X + ... + A^L X "
                                               "(MMRec: 2, hard-coded)")
    user_neighbors: int = Field(40, gt=0, description="k, the co-occurring users sampled per "
                                                      "user and epoch (MMRec: 40, hard-coded)")
    user_graph_size: int = Field(200, gt=0, description="co-occurring users kept per user, by "
                                                        "count (MMRec's preprocessing: 200)")
    eval_fresh_forward: bool = Field(
        True, description="score from a fresh forward at evaluation; false = MMRec, which "
                          "scores from the last training batch's forward")
    mmrec_fusion_alias: bool = Field(
        False, description="reproduce MMRec's in-place aliasing with several modalities: the "
                           "image (else the first) modality's user part is replaced by the sum "
                           "over all modalities before the fusion weights apply")


def sample_user_neighbours(
    neighbours: torch.Tensor, counts: torch.Tensor, lengths: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch's neighbour sample (draws from torch's global RNG).

    Each user takes the first ``k`` entries of its list; a user with ``0 < n < k`` entries
    fills the remaining slots with entries drawn uniformly from its own ``n`` (with their
    counts). Weights are the softmax over the ``k`` raw counts (duplicates included); a user
    without neighbours gets zero weights. Returns ``(index, weights)``, both ``(n_users, k)``.
    """
    n_users = neighbours.shape[0]
    dev = neighbours.device
    n = lengths.to(dev).view(-1, 1)
    slot = torch.arange(k, device=dev).view(1, -1)
    draw = (torch.rand(n_users, k, device=dev) * n.clamp_min(1)).long()
    draw = torch.minimum(draw, (n - 1).clamp_min(0))
    src = torch.where(slot < n, slot, draw)  # slot < n <= table width
    index = neighbours.gather(1, src)
    weights = torch.softmax(counts.gather(1, src), dim=1) * (n > 0)
    return index, weights


class DualGNNPlacement(Placement):
    """A new user, by DualGNN's own maths with nothing of the user's own rows:

    - per modality ``Z_m[u] = sum_{l=0..L} h^l``, ``h^0 = nrm(P_m[u])`` = 0 (no ego),
      ``h^l = sum_{i in H} h_i^(l-1) / sqrt(|H| d_i)`` from the trained item layers;
    - the fusion weights ``W_U[u]``: the mean of the trained users' rows;
    - the user graph: the ``user_neighbors`` training users who share most items with the
      history (ties by index), weighted by the softmax of those counts, as DualGNN weights a
      sampled neighbour.

    ``ego`` (to check the maths on a training user): ``{"preference": {m: P_m[u]},
    "fusion": W_U[u], "neighbours": (indices, weights)}``; with the user's own rows and the
    epoch's sample this is its trained row, exactly."""

    fold_in_method = "per-modality sum of hops from the trained item layers (no ego), mean " \
                     "fusion weights, user graph from the users who share most items"

    def __init__(self, model, trained) -> None:
        self.layers = {}
        for m, x in zip(model.modalities, model.modality_inputs(), strict=True):
            self.layers[m] = item_layers(x[: model.n_users], x[model.n_users:], model.adj,
                                         model.config.n_layers)
        zs = model.modality_outputs()
        self.users = model.fuse_users([z[: model.n_users] for z in zs])  # Y before the graph
        self.mean_fusion = model.fusion.mean(0) if len(model.modalities) > 1 else None
        order = torch.argsort(torch.as_tensor(trained.train_items), stable=True)
        self.item_users = torch.as_tensor(trained.train_users)[order]
        self.item_ptr = torch.searchsorted(torch.as_tensor(trained.train_items)[order],
                                           torch.arange(model.n_items + 1))
        super().__init__(model, trained)

    def neighbours(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        users = torch.cat([self.item_users[self.item_ptr[i]:self.item_ptr[i + 1]]
                           for i in items.tolist()])
        counts = torch.bincount(users, minlength=self.model.n_users).float()
        k = min(self.model.config.user_neighbors, int((counts > 0).sum()))
        if k == 0:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0)
        top = torch.sort(-counts, stable=True).indices[:k]  # most shared items, ties by index
        return top, torch.softmax(counts[top], dim=0)

    @torch.no_grad()
    def fold_in(self, items, ego=None):
        model, ego = self.model, ego or {}
        w = self.sym_weights(items)
        parts = []
        for m in model.modalities:
            pref = ego.get("preference", {}).get(m)
            x0 = None if pref is None else l2_normalize(pref.unsqueeze(0))[0]
            parts.append(sum(fold_in_layers(self.layers[m], items, w, x0)).unsqueeze(0))
        fusion = ego.get("fusion", self.mean_fusion)
        y = model.fuse_users(parts, None if fusion is None else fusion.unsqueeze(0))[0]
        idx, weights = ego.get("neighbours") or self.neighbours(items)
        return y + weights @ self.users[idx]


class DualGNN(Recommender):
    """Per modality ``X_m = nrm([P_m ; MLP_m(F_m)])``, ``Z_m = sum_{l=0..L} A^l X_m``;
    items ``Z_I = sum_m Z_m[items]``; users ``Y = sum_m W_U[:, m] Z_m[users]`` (one modality:
    ``Y = Z_m[users]``), ``Y' = Y + S Y`` with ``S`` the epoch's sampled, softmax-weighted
    user co-occurrence graph; ``s(u, i) = Y'_u . Z_I,i``. Items carry no ID embedding.

    Loss: ``-mean log2 sigmoid(s+ - s-)`` (MMRec's base-2 logarithm) plus
    ``lambda [sum_m mean(P_m[u_b]^2) + mean(W_U^2)]``.

    Departures from MMRec: ``eval_fresh_forward`` (default true) scores from a fresh forward,
    where MMRec scores from the last training batch's output (a fresh forward is also used
    when there is no such output, e.g. after loading a checkpoint); ``mmrec_fusion_alias``
    (default false) reproduces an in-place addition of MMRec's that makes the image user part
    the sum of both modalities; the item fusion table ``W_I``, which MMRec only regularises
    and never uses, is left out (it changes no score), as are the per-modality edge-dropped
    graphs that MMRec builds and never uses; with one modality there is no ``W_U``. Padding a
    short neighbour list draws uniformly from the user's own list (MMRec draws from the
    growing padded list).
    """

    name = "dualgnn"
    Config = DualGNNConfig
    needs_features = True
    placement_class = DualGNNPlacement
    grid = {"learning_rate": [0.1, 0.01, 1e-3, 1e-4, 1e-5],
            "reg_weight": [0.1, 0.01, 1e-3, 1e-4, 1e-5]}

    def __init__(self, config: DualGNNConfig, inputs: ModelInputs) -> None:
        super().__init__(config, inputs)
        d = config.embedding_size
        self.features = ItemFeatures(inputs.features, finetune=False)
        self.modalities = list(self.features.names)
        self.preference = nn.ParameterDict({
            m: nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d)))
            for m in self.modalities
        })
        self.mlp = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(dim, 4 * d), nn.LeakyReLU(), nn.Linear(4 * d, d))
            for m, dim in self.features.dims().items()
        })
        if len(self.modalities) > 1:
            w = nn.init.xavier_normal_(torch.empty(self.n_users, len(self.modalities)))
            self.fusion = nn.Parameter(torch.softmax(w, dim=1))  # then trained freely
        self.alias = ("image" if "image" in self.modalities else self.modalities[0]) \
            if config.mmrec_fusion_alias and len(self.modalities) > 1 else None
        self.adj = inputs.norm_adj
        nbr, cnt, length = user_cooccurrence_topk(
            inputs.train_users.cpu(), inputs.train_items.cpu(), self.n_users, self.n_items,
            config.user_graph_size,
        )
        self.register_buffer("user_nbr", nbr, persistent=False)
        self.register_buffer("user_cnt", cnt, persistent=False)
        self.register_buffer("user_len", length, persistent=False)
        # the epoch's sample is saved with the model, so that best.pt scores as it did
        idx, w = sample_user_neighbours(nbr, cnt, length, config.user_neighbors)
        self.register_buffer("sample_index", idx)
        self.register_buffer("sample_weight", w)
        self._user_graph: SparseOp | None = None
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        self.register_load_state_dict_post_hook(lambda module, keys: module._drop_graph())

    def _drop_graph(self) -> None:
        self._user_graph = None

    # the cached forward is part of the model's state when it is what evaluation scores, so
    # that best.pt scores (mgnm evaluate) exactly as the run did at its best epoch
    def get_extra_state(self) -> dict:
        return {} if self.config.eval_fresh_forward else {"last": self._last}

    def set_extra_state(self, state: dict) -> None:
        self._last = state.get("last")

    def pre_epoch(self, epoch: int) -> None:
        """Resample each user's ``k`` neighbours and their softmax weights."""
        idx, w = sample_user_neighbours(self.user_nbr, self.user_cnt, self.user_len,
                                        self.config.user_neighbors)
        self.sample_index.copy_(idx)
        self.sample_weight.copy_(w)
        self._user_graph = None

    def user_graph(self) -> SparseOp:
        """``S`` (``n_U x n_U``): row ``u`` holds the weights of its sampled neighbours
        (a neighbour drawn twice has its weights summed)."""
        if self._user_graph is None:
            k = self.config.user_neighbors
            rows = torch.arange(self.n_users, device=self.sample_index.device)
            rows = rows.repeat_interleave(k)
            cols, vals = self.sample_index.reshape(-1), self.sample_weight.reshape(-1)
            keep = vals > 0
            self._user_graph = SparseOp(rows[keep], cols[keep], vals[keep],
                                        (self.n_users, self.n_users),
                                        device=self.sample_weight.device, fmt=self.adj.requested_fmt)
        return self._user_graph

    def modality_inputs(self) -> list[torch.Tensor]:
        """``X_m = nrm([P_m ; MLP_m(F_m)])`` per modality."""
        return [l2_normalize(torch.cat([self.preference[m], self.mlp[m](self.features[m])]))
                for m in self.modalities]

    def modality_outputs(self) -> list[torch.Tensor]:
        """``Z_m = sum_{l=0..L} A^l X_m`` per modality (the sum of hops)."""
        out = []
        for x in self.modality_inputs():
            z, h = x, x
            for _ in range(self.config.n_layers):
                h = self.adj @ h
                z = z + h
            out.append(z)
        return out

    def forward_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Y', Z_I)``."""
        zs = self.modality_outputs()
        items = zs[0][self.n_users:]
        for z in zs[1:]:
            items = items + z[self.n_users:]
        y = self.fuse_users([z[: self.n_users] for z in zs])
        y = y + self.user_graph() @ y
        return y, items

    def fuse_users(self, parts: list[torch.Tensor],
                   fusion: torch.Tensor | None = None) -> torch.Tensor:
        """``Y = sum_m W_U[:, m] Z_m[users]`` for rows ``parts`` (one per modality) with
        fusion rows ``fusion`` (default: every user's ``W_U``); one modality: ``Z_m``."""
        if len(parts) == 1:
            return parts[0]
        parts = list(parts)
        if self.alias is not None:
            parts[self.modalities.index(self.alias)] = sum(parts[1:], parts[0])
        fusion = self.fusion if fusion is None else fusion
        return sum((fusion[:, m:m + 1] * p for m, p in enumerate(parts)))

    def loss(self, users, pos_items, neg_items):
        y, items = self.forward_all()
        self._last = (y.detach(), items.detach())
        u = y[users]
        bpr = bpr_loss((u * items[pos_items]).sum(1), (u * items[neg_items]).sum(1)) / math.log(2)
        reg = sum(self.preference[m][users].pow(2).mean() for m in self.modalities)
        if len(self.modalities) > 1:
            reg = reg + self.fusion.pow(2).mean()
        reg = self.config.reg_weight * reg
        return {"loss": bpr + reg, "bpr": bpr, "reg": reg}

    def embeddings(self):
        if self.config.eval_fresh_forward or self._last is None:
            return self.forward_all()
        return self._last
