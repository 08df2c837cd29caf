"""Graphs built from training interactions or item features (constants: no gradient to their
values), as :class:`~mgnm.data.sparse.SparseOp` or COO triplets.

- user-item graphs: the symmetric-normalised bipartite adjacency and its user-item block, the
  mean (``D^-1 A``) and self-looped row-normalised (``D~^-1 (A + I)``) adjacencies;
- item-item graphs: k-nearest-neighbour graphs of item features and their normalisation;
- user-user co-occurrence lists (DualGNN).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from mgnm.data.sparse import SparseOp


def bipartite_edges(
    users: np.ndarray | torch.Tensor, items: np.ndarray | torch.Tensor, n_users: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both directions of the user-item edges in the (users + items) node numbering."""
    u = torch.as_tensor(users, dtype=torch.long)
    i = torch.as_tensor(items, dtype=torch.long) + n_users
    return torch.cat([u, i]), torch.cat([i, u])


def inv_sqrt_or_zero(deg: torch.Tensor) -> torch.Tensor:
    """``deg ** -0.5`` with 0 where ``deg`` is 0 (isolated nodes get a zero row)."""
    out = torch.zeros_like(deg, dtype=torch.float32)
    pos = deg > 0
    out[pos] = deg[pos].float().pow(-0.5)
    return out


def normalized_adjacency(
    users, items, n_users: int, n_items: int, *, device="cpu", fmt: str = "auto"
) -> SparseOp:
    """``D^-1/2 A D^-1/2`` of the bipartite graph ``A = [[0, R], [R^T, 0]]`` (no self loops)."""
    rows, cols = bipartite_edges(users, items, n_users)
    n = n_users + n_items
    d = inv_sqrt_or_zero(torch.bincount(rows, minlength=n))
    return SparseOp(rows, cols, d[rows] * d[cols], (n, n), symmetric=True, device=device,
                    fmt=fmt)


def interaction_matrix(
    users, items, n_users: int, n_items: int, *, norm: str = "none", device="cpu",
    fmt: str = "auto",
) -> SparseOp:
    """The ``n_users x n_items`` training matrix ``R``.

    ``norm``: ``"none"`` (binary), ``"row"`` (each user row sums to 1: the mean over the
    user's items) or ``"sym"`` (``1/sqrt(deg u * deg i)``, the user-item block of the
    normalised adjacency).
    """
    u = torch.as_tensor(users, dtype=torch.long)
    i = torch.as_tensor(items, dtype=torch.long)
    du = torch.bincount(u, minlength=n_users).float()
    di = torch.bincount(i, minlength=n_items).float()
    if norm == "none":
        vals = torch.ones(u.numel())
    elif norm == "row":
        vals = 1.0 / du[u]
    elif norm == "sym":
        vals = du[u].pow(-0.5) * di[i].pow(-0.5)
    else:
        raise ValueError(f"unknown norm {norm!r}")
    return SparseOp(u, i, vals, (n_users, n_items), device=device, fmt=fmt)


def mean_adjacency(users, items, n_users: int, n_items: int, *, device="cpu",
                   fmt: str = "auto") -> SparseOp:
    """``D^-1 A``: each node averages its bipartite neighbours (zero row when isolated)."""
    rows, cols = bipartite_edges(users, items, n_users)
    n = n_users + n_items
    deg = torch.bincount(rows, minlength=n).float()
    return SparseOp(rows, cols, 1.0 / deg[rows], (n, n), device=device, fmt=fmt)


def row_normalized_adjacency(users, items, n_users: int, n_items: int, *, device="cpu",
                             fmt: str = "auto") -> SparseOp:
    """``D~^-1 (A + I)``: the bipartite graph with self loops, each row divided by its sum
    ``deg + 1`` (LATTICE's backbone; every node, isolated ones too, keeps its own row)."""
    rows, cols = bipartite_edges(users, items, n_users)
    n = n_users + n_items
    loops = torch.arange(n)
    rows, cols = torch.cat([rows, loops]), torch.cat([cols, loops])
    deg = torch.bincount(rows, minlength=n).float()
    return SparseOp(rows, cols, 1.0 / deg[rows], (n, n), device=device, fmt=fmt)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Each row divided by ``max(||row||, eps)``: ``F.normalize(x, dim=1)`` to rounding.

    Computed as a product with the (N, 1) inverse norms: torch's version divides by the
    norms expanded to x's shape, whose backward is two full-size divisions, the costlier
    part of MGNM's fusion on a CPU.
    """
    return x * x.norm(dim=1, keepdim=True).clamp_min(eps).reciprocal()


def knn_graph(
    features: torch.Tensor, k: int, *, weighted: bool, chunk: int = 2048
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` cosine neighbours of each row (the row itself included) as COO triplets.

    ``weighted`` keeps the similarity as the edge value, otherwise 1. The similarity is
    computed in row chunks so that no ``n x n`` matrix is held at once. Rows are sorted;
    within a row, neighbours are in decreasing similarity.
    """
    x = l2_normalize(features.float())
    n = x.shape[0]
    k = min(k, n)
    rows, cols, vals = [], [], []
    with torch.no_grad():
        for start in range(0, n, chunk):
            sim = x[start:start + chunk] @ x.T
            top_v, top_i = sim.topk(k, dim=1)
            rows.append(torch.arange(start, start + sim.shape[0], device=x.device)
                        .repeat_interleave(k))
            cols.append(top_i.reshape(-1))
            vals.append(top_v.reshape(-1) if weighted else torch.ones_like(top_v).reshape(-1))
    return torch.cat(rows), torch.cat(cols), torch.cat(vals)


def symnorm_values(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor,
                   n: int) -> torch.Tensor:
    """Values of ``D^-1/2 K D^-1/2`` with ``D`` the row sums of ``K`` (zero sum -> 0)."""
    deg = torch.zeros(n, dtype=vals.dtype, device=vals.device).index_add_(0, rows, vals)
    d = torch.where(deg > 0, deg.clamp_min(1e-30).pow(-0.5), torch.zeros_like(deg))
    return d[rows] * vals * d[cols]


def dense_knn(sim: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest entries of each row of a dense similarity matrix (with grad)."""
    top_v, top_i = sim.topk(min(k, sim.shape[1]), dim=1)
    return torch.zeros_like(sim).scatter(1, top_i, top_v)


def dense_symnorm(k: torch.Tensor) -> torch.Tensor:
    """``D^-1/2 K D^-1/2`` for a dense ``K`` (row sums; zero sum -> zero row and column)."""
    deg = k.sum(dim=1)
    d = torch.where(deg > 0, deg.clamp_min(1e-30).pow(-0.5), torch.zeros_like(deg))
    return d[:, None] * k * d[None, :]


def item_knn_graph(
    features: torch.Tensor, k: int, *, weighted: bool, device="cpu", fmt: str = "auto"
) -> SparseOp:
    """``symnorm(kNN_k(features))`` as a constant sparse operator (docs/baselines.md notation).

    Not symmetric in general (row i keeps i's neighbours), so the transpose is kept for the
    backward pass.
    """
    rows, cols, vals = knn_graph(features, k, weighted=weighted)
    n = features.shape[0]
    vals = symnorm_values(rows, cols, vals, n)
    return SparseOp(rows.cpu(), cols.cpu(), vals.cpu(), (n, n), device=device, fmt=fmt)


def user_cooccurrence_topk(
    users, items, n_users: int, n_items: int, top: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each user's ``top`` most co-occurring users (DualGNN's user graph, on CPU).

    ``C = R R^T`` (sparse product of the binary training matrix) with a zero diagonal:
    ``C_uv`` is the number of training items that ``u`` and ``v`` share. Returns
    ``(neighbours, counts, lengths)``: ``(n_users, top)`` tables whose row ``u`` lists the
    users with ``C_uv > 0`` by count descending (ties in a fixed, unspecified order), padded
    with 0, and ``lengths[u] = min(top, #{v: C_uv > 0})``.
    """
    u = torch.as_tensor(users, dtype=torch.long).cpu()
    i = torch.as_tensor(items, dtype=torch.long).cpu()
    r = torch.sparse_coo_tensor(torch.stack([u, i]), torch.ones(u.numel()), (n_users, n_items),
                                check_invariants=False).coalesce()
    r = torch.sparse_coo_tensor(r.indices(), torch.ones_like(r.values()), r.shape,
                                check_invariants=False)  # binary even if pairs repeat
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
        c = torch.sparse.mm(r, r.t()).coalesce()
    rows, cols = c.indices()
    vals = c.values()
    keep = (rows != cols) & (vals > 0)
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    # order by row, then count descending (two stable sorts)
    order = torch.argsort(vals, descending=True, stable=True)
    order = order[torch.argsort(rows[order], stable=True)]
    rows, cols, vals = rows[order], cols[order], vals[order]
    per_row = torch.bincount(rows, minlength=n_users)
    start = torch.cumsum(per_row, 0) - per_row
    rank = torch.arange(rows.numel()) - start[rows]
    sel = rank < top
    neighbours = torch.zeros(n_users, top, dtype=torch.long)
    counts = torch.zeros(n_users, top, dtype=torch.float32)
    neighbours[rows[sel], rank[sel]] = cols[sel]
    counts[rows[sel], rank[sel]] = vals[sel].float()
    return neighbours, counts, per_row.clamp_max(top)
