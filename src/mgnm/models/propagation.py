"""Propagation on the user-item graph, shared by the graph models: LightGCN-style layers and
their mean, whole or for the rows one training batch needs.
"""

from __future__ import annotations

import torch

from mgnm.data.sparse import SparseOp, _SpMMRows, csr_entries


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
