"""Graphs built from training interactions or item features, and fast sparse propagation.

All graphs are constants (no gradient to their values). :class:`SparseOp` wraps one sparse
matrix and multiplies it with a dense tensor inside autograd; its backward multiplies by the
transpose, which for a symmetric matrix is the matrix itself (no transpose is stored).

Storage format per device (``benchmarks/bench_propagation.py`` measures both):
on CPU, CSR with a preallocated ``addmm`` output was fastest (about 2x ``torch.sparse.mm``,
whose backward for a generic sparse tensor is slower still); on CUDA, COO is used, which was
measured fastest on an H200 (see the README's performance section).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

SPARSE_FORMATS = ("auto", "csr", "coo")


def resolve_format(fmt: str, device: torch.device | str) -> str:
    if fmt not in SPARSE_FORMATS:
        raise ValueError(f"sparse format {fmt!r} is not one of {SPARSE_FORMATS}")
    if fmt != "auto":
        return fmt
    return "coo" if torch.device(device).type == "cuda" else "csr"


class SparseOp:
    """A constant sparse matrix usable as ``op @ x`` with autograd on ``x``.

    Built from COO triplets (duplicates are summed). ``symmetric=True`` asserts that the
    matrix equals its transpose, so the backward reuses it.
    """

    def __init__(
        self,
        rows: torch.Tensor | np.ndarray,
        cols: torch.Tensor | np.ndarray,
        values: torch.Tensor | np.ndarray,
        shape: tuple[int, int],
        *,
        symmetric: bool = False,
        device: torch.device | str = "cpu",
        fmt: str = "auto",
    ) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.symmetric = symmetric
        self.device = torch.device(device)
        self.requested_fmt = fmt
        self.fmt = resolve_format(fmt, self.device)
        rows = torch.as_tensor(rows, dtype=torch.long)
        cols = torch.as_tensor(cols, dtype=torch.long)
        values = torch.as_tensor(values, dtype=torch.float32)
        self._rows, self._cols, self._vals = rows.cpu(), cols.cpu(), values.cpu()
        self._mat = self._build(rows, cols, values, self.shape)
        self._t: SparseOp | None = None

    def _build(self, rows, cols, values, shape) -> torch.Tensor:
        coo = torch.sparse_coo_tensor(
            torch.stack([rows.cpu(), cols.cpu()]), values.cpu(), shape, check_invariants=False
        ).coalesce()
        if self.fmt == "csr":
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
                csr = coo.to_sparse_csr()
                if csr.values().numel() < 2**31 and max(shape) < 2**31:
                    # 32-bit indices: the CPU product converts 64-bit ones on every call
                    csr = torch.sparse_csr_tensor(csr.crow_indices().int(),
                                                  csr.col_indices().int(), csr.values(),
                                                  csr.shape, check_invariants=False)
                return csr.to(self.device)
        return coo.to(self.device)

    @property
    def T(self) -> SparseOp:  # noqa: N802 - the usual name for a transpose
        if self.symmetric:
            return self
        if self._t is None:
            t = SparseOp.__new__(SparseOp)
            t.shape = (self.shape[1], self.shape[0])
            t.symmetric = False
            t.device, t.fmt, t.requested_fmt = self.device, self.fmt, self.requested_fmt
            t._rows, t._cols, t._vals = self._cols, self._rows, self._vals
            t._mat = t._build(t._rows, t._cols, t._vals, t.shape)
            t._t = self
            self._t = t
        return self._t

    @property
    def nnz(self) -> int:
        return int(self._vals.numel())

    def coo(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (rows, cols, values) triplets, on CPU, as given (not coalesced)."""
        return self._rows, self._cols, self._vals

    def to_dense(self) -> torch.Tensor:
        return self._mat.to_dense()

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        """``self @ x`` without autograd bookkeeping (callers normally use ``@``)."""
        x = x.contiguous()
        if self.fmt == "csr" and x.device.type == "cpu":
            return _csr_mm(self._mat, x)
        return torch.sparse.mm(self._mat, x)

    def few_entries(self, rows: torch.Tensor, share: float = 0.5) -> bool:
        """Whether ``rows`` hold at most ``share`` of the entries (CSR only)."""
        crow = self._mat.crow_indices()
        return int((crow[rows + 1] - crow[rows]).sum()) <= share * self.nnz

    def rows_mm(self, rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(self @ x)[rows]`` for distinct ``rows``: on CPU (CSR), when they hold at most
        half the entries, a product of those rows alone; otherwise the whole product, indexed.
        """
        if x.dim() != 2 or x.shape[0] != self.shape[1]:
            raise ValueError(f"cannot multiply a {self.shape} sparse matrix by {tuple(x.shape)}")
        if self.fmt != "csr" or x.device.type != "cpu" or not self.few_entries(rows):
            return (self @ x)[rows]
        if not x.requires_grad:
            return _csr_mm(csr_rows(self._mat, rows), x)
        return _SpMMRows.apply(x, self, rows, None)

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[0] != self.shape[1]:
            raise ValueError(f"cannot multiply a {self.shape} sparse matrix by {tuple(x.shape)}")
        if not x.requires_grad:
            return self.mm(x)
        return _SpMM.apply(x, self)

    def to(self, device: torch.device | str) -> SparseOp:
        device = torch.device(device)
        if device == self.device:
            return self
        return SparseOp(self._rows, self._cols, self._vals, self.shape,
                        symmetric=self.symmetric, device=device, fmt=self.requested_fmt)


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, op: SparseOp) -> torch.Tensor:  # type: ignore[override]
        ctx.op = op
        return op.mm(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return ctx.op.T.mm(grad), None


def _csr_mm(mat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``mat @ x`` for a CPU CSR ``mat``: ``addmm`` into a preallocated output, beta=0 (it
    ignores the uninitialised input); measured ~2x faster than ``torch.sparse.mm``."""
    x = x.contiguous()
    out = torch.empty(mat.shape[0], x.shape[1], dtype=x.dtype, device=x.device)
    return torch.addmm(out, mat, x, beta=0, out=out)


def _csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
        return torch.sparse_csr_tensor(crow, col, val, shape, check_invariants=False)


def _row_ranges(mat: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positions, new_crow)``: where ``rows``' entries sit in ``mat`` (row by row), and
    the row pointer of the matrix of those rows."""
    crow = mat.crow_indices()
    rows = rows.to(torch.long)
    start = crow[rows].long()
    counts = crow[rows + 1].long() - start
    new_crow = torch.zeros(rows.numel() + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=new_crow[1:])
    total = int(new_crow[-1])
    # entry k of kept row r sits at start[r] + k in mat and at new_crow[r] + k here
    idx = torch.arange(total) + torch.repeat_interleave(start - new_crow[:-1], counts,
                                                        output_size=total)
    return idx, new_crow


def csr_entries(mat: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Positions of ``rows``' entries in ``mat``'s ``col_indices``/``values``."""
    return _row_ranges(mat, rows)[0]


def csr_rows(mat: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The CSR matrix of ``mat``'s ``rows`` (in that order), copying only their entries."""
    idx, new_crow = _row_ranges(mat, rows)
    return _csr(new_crow.to(mat.crow_indices().dtype), mat.col_indices()[idx],
                mat.values()[idx], (rows.numel(), mat.shape[1]))


def stable_order(keys: torch.Tensor, n_keys: int) -> torch.Tensor:
    """The stable ascending order of integer ``keys`` in ``[0, n_keys)``: numpy's radix sort
    on 16-bit keys when they fit (~13x faster than torch's sort on 17k Baby entries),
    torch's stable sort otherwise."""
    if n_keys <= 2**16:
        order = np.argsort(keys.numpy().astype(np.uint16), kind="stable")
        return torch.from_numpy(order)
    return torch.argsort(keys, stable=True)


def csr_transpose(mat: torch.Tensor) -> torch.Tensor:
    """The CSR matrix of ``matᵀ`` (a stable sort of the entries by column)."""
    crow, col = mat.crow_indices(), mat.col_indices()
    n_rows, n_cols = mat.shape
    order = stable_order(col, n_cols)
    row_of = torch.repeat_interleave(torch.arange(n_rows, dtype=col.dtype), crow[1:] - crow[:-1],
                                     output_size=col.numel())
    new_crow = torch.zeros(n_cols + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(col, minlength=n_cols), 0, out=new_crow[1:])
    return _csr(new_crow.to(crow.dtype), row_of[order], mat.values()[order], (n_cols, n_rows))


class _SpMMRows(torch.autograd.Function):
    """``op[rows] @ x`` (``rows`` None: ``op @ x``) and, unless ``want`` is None, ``x[want]``,
    in one node. The backward multiplies by the transpose of those rows (built from their
    entries: on Baby's batch users, 15% of the matrix) and adds the picked rows' gradient
    into that product's (``index_add_``): autograd would zero-fill a whole table for the
    indexing and then add the two whole tables (LightGCN on Baby: ~11% of a step). CPU CSR
    only; ``want`` distinct."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, op: SparseOp, rows: torch.Tensor | None,  # type: ignore[override]
                want: torch.Tensor | None):
        ctx.op = op
        ctx.sub = None if rows is None else csr_rows(op._mat, rows)
        ctx.want = want
        y = op.mm(x) if rows is None else _csr_mm(ctx.sub, x)
        return y if want is None else (y, x[want])

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor, *grad_rows: torch.Tensor):  # type: ignore[override]
        if ctx.sub is None:
            grad_x = ctx.op.T.mm(grad_y)
        else:
            grad_x = _csr_mm(csr_transpose(ctx.sub), grad_y)
        if ctx.want is not None:
            grad_x.index_add_(0, ctx.want, grad_rows[0])
        return grad_x, None, None, None


# --------------------------------------------------------------------------- user-item graphs


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


def layer_mean(x0: torch.Tensor, graph: SparseOp, n_layers: int) -> torch.Tensor:
    """LightGCN's ``mean(x0, G x0, ..., G^L x0)``."""
    acc, x = x0, x0
    for _ in range(n_layers):
        x = graph @ x
        acc = acc + x
    return acc / (n_layers + 1)


def propagate(x0: torch.Tensor, graph: SparseOp, n_layers: int) -> list[torch.Tensor]:
    """``[x0, G x0, ..., G^L x0]``."""
    out = [x0]
    for _ in range(n_layers):
        out.append(graph @ out[-1])
    return out


# --------------------------------------------------------------------------- item-item graphs


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


def coo_matmul(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, x: torch.Tensor,
               n_rows: int) -> torch.Tensor:
    """``M @ x`` for a COO matrix ``M`` (duplicates summed) whose values may carry gradient.

    A gather and a scatter-add: gradient reaches both ``vals`` and ``x``. For a learned sparse
    graph (LATTICE); constant graphs use :class:`SparseOp`.
    """
    out = torch.zeros(n_rows, x.shape[1], dtype=x.dtype, device=x.device)
    return out.index_add(0, rows, vals.unsqueeze(1) * x[cols])


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


# --------------------------------------------------------------------------- user-user graphs


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



def bipartite_propagate(
    users: torch.Tensor, items: torch.Tensor, r_sym: SparseOp, n_layers: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(U^0, I^0), ..., (U^L, I^L)]`` with ``(U^{l+1}, I^{l+1}) = (R̂ I^l, R̂ᵀ U^l)``.

    ``R̂`` (users x items) is the user-item block of ``D^-1/2 A D^-1/2``, so this equals
    propagating the stack ``[U; I]`` with the full matrix, without ever stacking users and
    items (which costs a copy forward and a split backward per layer).
    """
    out = [(users, items)]
    for _ in range(n_layers):
        u, i = out[-1]
        out.append((r_sym @ i, r_sym.T @ u))
    return out


def bipartite_layer_mean(
    users: torch.Tensor, items: torch.Tensor, r_sym: SparseOp, n_layers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`layer_mean` of the stack ``[users; items]`` on ``D^-1/2 A D^-1/2``, as its user
    and item parts, computed with the user-item block only: no stacking copy, and no
    backward that zero-fills the whole stack for each half (with the same sums per row)."""
    return layer_means(bipartite_propagate(users, items, r_sym, n_layers))


def batch_row_plan(r_sym: SparseOp, n_layers: int, user_rows: torch.Tensor,
                   item_rows: torch.Tensor) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
    """The user and item rows of layers ``1..L`` that the batch rows of the layer mean need:
    layer ``L`` needs the batch rows; layer ``l < L`` the batch rows and the neighbours of the
    rows layer ``l + 1`` needs. ``None`` means every row (the whole product is computed), set
    where the rows hold more than half the entries (CSR on CPU only; otherwise always).
    Entry ``l - 1`` is layer ``l``'s ``(user rows, item rows)``, each sorted and distinct."""
    if n_layers == 0:
        return []
    plan: list[tuple[torch.Tensor | None, torch.Tensor | None]] = [(user_rows, item_rows)]
    r_t = r_sym.T
    for _ in range(n_layers - 1):
        up_u, up_i = plan[0]
        plan.insert(0, (_with_neighbours(r_t, up_i, user_rows, r_sym),
                        _with_neighbours(r_sym, up_u, item_rows, r_t)))
    return plan


def _with_neighbours(op: SparseOp, rows: torch.Tensor | None, own: torch.Tensor,
                     target: SparseOp) -> torch.Tensor | None:
    """``own`` and the columns of ``op``'s ``rows``, as rows of ``target``; None when those
    would hold more than half of ``target``'s entries (or are not known to hold fewer)."""
    if (rows is None or op.fmt != "csr" or op.device.type != "cpu"
            or not op.few_entries(rows) or not target.few_entries(own)):
        return None
    mask = torch.zeros(op.shape[1], dtype=torch.bool)
    mask[own] = True
    mask[op._mat.col_indices()[csr_entries(op._mat, rows)]] = True
    union = mask.nonzero().squeeze(1)
    return union if target.few_entries(union) else None


def bipartite_layer_mean_rows(
    users: torch.Tensor, items: torch.Tensor, r_sym: SparseOp, n_layers: int,
    user_rows: torch.Tensor, item_rows: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``user_rows`` and ``item_rows`` (sorted, distinct) of :func:`bipartite_layer_mean`
    (the mean of :func:`bipartite_layers_rows`)."""
    return layer_means(bipartite_layers_rows(users, items, r_sym, n_layers, user_rows, item_rows))


def bipartite_layers_rows(
    users: torch.Tensor, items: torch.Tensor, r_sym: SparseOp, n_layers: int,
    user_rows: torch.Tensor, item_rows: torch.Tensor,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Rows ``user_rows`` and ``item_rows`` (sorted, distinct) of every layer of
    :func:`bipartite_propagate`: ``[(U^0[user_rows], I^0[item_rows]), ...]``.

    A training step reads only its batch's rows, so each layer is propagated only for the
    rows the batch needs (:func:`batch_row_plan`; ``R̂[rows] X`` by :meth:`SparseOp.rows_mm`)
    and the mean adds only the batch rows: the same sums, in the same order, as the whole
    tables give. LightGCN's step (1 thread, the two versions alternated in one process) took
    1619 -> 433 ms at 16x Baby's size (Chung-Lu graphs of bench_scaling.py) and 164 -> 112 ms
    at 4x; on Baby itself, where the batch items hold ~60% of the entries and their
    neighbours nearly every user, it changes little (34.1 -> 32.9 ms).
    """
    r_t = r_sym.T
    if n_layers == 0:
        return [(users[user_rows], items[item_rows])]
    picked = []
    # layer l-1: whole (rows outside its part are zeros), and its part where it is one
    prev_u, prev_i, part_u, part_i = users, items, None, None
    rows_prev_u = rows_prev_i = None
    plan = batch_row_plan(r_sym, n_layers, user_rows, item_rows)
    for depth, (rows_u, rows_i) in enumerate(plan, start=1):
        # layer l from layer l-1, and layer l-1's batch rows (from its part where it is one)
        u, pick_i = _product_and_rows(r_sym, rows_u, prev_i, part_i, rows_prev_i, item_rows)
        i, pick_u = _product_and_rows(r_t, rows_i, prev_u, part_u, rows_prev_u, user_rows)
        picked.append((pick_u, pick_i))
        if depth < n_layers:
            prev_u, prev_i = _whole(u, rows_u, users.shape[0]), _whole(i, rows_i, items.shape[0])
            part_u, part_i, rows_prev_u, rows_prev_i = u, i, rows_u, rows_i
    picked.append((_pick(u, rows_u, user_rows), _pick(i, rows_i, item_rows)))
    return picked


def _product_and_rows(op: SparseOp, rows: torch.Tensor | None, x: torch.Tensor,
                      part: torch.Tensor | None, part_rows: torch.Tensor | None,
                      want: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(op @ x)`` (or its ``rows``) and the rows ``want`` of ``x``, a whole layer table
    that is a part ``part`` at ``part_rows`` unless those are None."""
    if part_rows is not None:  # x's batch rows come from its part, not the zero-filled whole
        return (op @ x if rows is None else op.rows_mm(rows, x)), _pick(part, part_rows, want)
    if not x.requires_grad or op.fmt != "csr" or x.device.type != "cpu":
        return (op @ x if rows is None else op.rows_mm(rows, x)), x[want]
    if rows is not None and not op.few_entries(rows):  # as rows_mm: the whole product
        y, picked = _SpMMRows.apply(x, op, None, want)
        return y[rows], picked
    return _SpMMRows.apply(x, op, rows, want)


def _pick(table: torch.Tensor, rows: torch.Tensor | None, want: torch.Tensor) -> torch.Tensor:
    """Rows ``want`` of a layer held whole (``rows`` None) or as its ``rows`` (sorted)."""
    if rows is None:
        return table[want]
    if rows is want:
        return table
    return table[torch.searchsorted(rows, want)]


def _whole(table: torch.Tensor, rows: torch.Tensor | None, n: int) -> torch.Tensor:
    if rows is None:
        return table
    return table.new_zeros(n, table.shape[1]).index_copy(0, rows, table)


def layer_means(layers: list[tuple[torch.Tensor, torch.Tensor]]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean user table and the mean item table of ``[(U^0, I^0), ..., (U^L, I^L)]``."""
    return (sum(u for u, _ in layers) / len(layers), sum(i for _, i in layers) / len(layers))
