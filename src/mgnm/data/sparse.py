"""The sparse-product engine: one sparse constant matrix times a dense tensor, inside autograd.

:class:`SparseOp` wraps one sparse matrix (no gradient to its values) and multiplies it with a
dense tensor; its backward multiplies by the transpose, which for a symmetric matrix is the
matrix itself (no transpose is stored). ``rows_mm`` computes only some rows of a product.

Storage format per device (``benchmarks/bench_propagation.py`` measures both): on CPU, CSR with
a preallocated ``addmm`` output was fastest (about 2x ``torch.sparse.mm``, whose backward for a
generic sparse tensor is slower still); on CUDA, COO.
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


def coo_matmul(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, x: torch.Tensor,
               n_rows: int) -> torch.Tensor:
    """``M @ x`` for a COO matrix ``M`` (duplicates summed) whose values may carry gradient.

    A gather and a scatter-add: gradient reaches both ``vals`` and ``x``. For a learned sparse
    graph (LATTICE); constant graphs use :class:`SparseOp`.
    """
    out = torch.zeros(n_rows, x.shape[1], dtype=x.dtype, device=x.device)
    return out.index_add(0, rows, vals.unsqueeze(1) * x[cols])
