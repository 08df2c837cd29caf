"""Graphs against dense computations done by hand, and the sparse autograd against dense."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgnm.data.graphs import (
    dense_knn,
    dense_symnorm,
    interaction_matrix,
    knn_graph,
    mean_adjacency,
    normalized_adjacency,
    symnorm_values,
)
from mgnm.data.sparse import SparseOp
from mgnm.models.propagation import layer_mean

# users 0,1,2; items 0,1; user 2 isolated; R = [[1,1],[0,1],[0,0]]
U = np.array([0, 0, 1])
I = np.array([0, 1, 1])


def dense_adj(n_users=3, n_items=2):
    a = np.zeros((n_users + n_items,) * 2)
    for u, i in zip(U, I, strict=True):
        a[u, n_users + i] = a[n_users + i, u] = 1
    return a


@pytest.mark.parametrize("fmt", ["csr", "coo"])
def test_normalized_adjacency_entries_by_hand(fmt):
    a = normalized_adjacency(U, I, 3, 2, fmt=fmt).to_dense().numpy()
    # degrees: u0=2, u1=1, u2=0, i0=1, i1=2
    expect = np.zeros((5, 5))
    expect[0, 3] = expect[3, 0] = 1 / np.sqrt(2 * 1)
    expect[0, 4] = expect[4, 0] = 1 / np.sqrt(2 * 2)
    expect[1, 4] = expect[4, 1] = 1 / np.sqrt(1 * 2)
    np.testing.assert_allclose(a, expect, rtol=1e-6)
    assert not a[2].any()  # isolated user: zero row


def test_interaction_matrix_norms():
    r = interaction_matrix(U, I, 3, 2).to_dense().numpy()
    np.testing.assert_array_equal(r, [[1, 1], [0, 1], [0, 0]])
    row = interaction_matrix(U, I, 3, 2, norm="row").to_dense().numpy()
    np.testing.assert_allclose(row, [[0.5, 0.5], [0, 1], [0, 0]])
    sym = interaction_matrix(U, I, 3, 2, norm="sym").to_dense().numpy()
    full = normalized_adjacency(U, I, 3, 2).to_dense().numpy()
    np.testing.assert_allclose(sym, full[:3, 3:], rtol=1e-6)


def test_mean_adjacency_rows_average_neighbours():
    m = mean_adjacency(U, I, 3, 2).to_dense().numpy()
    a = dense_adj()
    deg = a.sum(1, keepdims=True)
    np.testing.assert_allclose(m, np.divide(a, deg, out=np.zeros_like(a), where=deg > 0))


@pytest.mark.parametrize("fmt", ["csr", "coo"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_sparse_op_forward_and_gradient_match_dense(fmt, symmetric):
    g = torch.Generator().manual_seed(0)
    n, m = 7, 5
    dense = torch.rand(n, n if symmetric else m, generator=g)
    dense[dense < 0.5] = 0
    if symmetric:
        dense = dense + dense.T
    rows, cols = dense.nonzero(as_tuple=True)
    op = SparseOp(rows, cols, dense[rows, cols], tuple(dense.shape), symmetric=symmetric, fmt=fmt)
    x = torch.randn(dense.shape[1], 3, generator=g, requires_grad=True)
    w = torch.randn(dense.shape[0], 3, generator=g)
    ((op @ x) * w).sum().backward()
    grad_sparse = x.grad.clone()
    x.grad = None
    ((dense @ x) * w).sum().backward()
    torch.testing.assert_close(grad_sparse, x.grad)
    torch.testing.assert_close(op @ x.detach(), dense @ x.detach())
    torch.testing.assert_close(op.T.to_dense(), dense.T)


def test_sparse_op_gradcheck_double_chain():
    a = normalized_adjacency(U, I, 3, 2)
    x = torch.randn(5, 2, requires_grad=True)
    out = layer_mean(x, a, 2)
    dense = torch.as_tensor(a.to_dense())
    expect = (x + dense @ x + dense @ (dense @ x)) / 3
    torch.testing.assert_close(out, expect)


def test_sparse_op_rejects_wrong_shape():
    a = normalized_adjacency(U, I, 3, 2)
    with pytest.raises(ValueError, match="cannot multiply"):
        a @ torch.zeros(4, 2)


def brute_knn(x: np.ndarray, k: int) -> np.ndarray:
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    s = xn @ xn.T
    out = np.zeros_like(s)
    for r in range(len(s)):
        top = np.argsort(-s[r], kind="stable")[:k]
        out[r, top] = s[r, top]
    return out


def test_knn_graph_matches_brute_force_and_includes_self():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 4)).astype(np.float32)
    rows, cols, vals = knn_graph(torch.as_tensor(x), 3, weighted=True, chunk=5)
    got = np.zeros((12, 12), np.float32)
    got[rows.numpy(), cols.numpy()] = vals.numpy()
    np.testing.assert_allclose(got, brute_knn(x, 3), atol=1e-5)
    assert np.allclose(np.diag(got), 1.0, atol=1e-5)  # self-similarity is always kept
    _, _, bvals = knn_graph(torch.as_tensor(x), 3, weighted=False)
    assert torch.all(bvals == 1)


def test_knn_zero_feature_row_does_not_produce_nan():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    _, _, vals = knn_graph(x, 2, weighted=True)
    assert torch.isfinite(vals).all()


def test_symnorm_sparse_and_dense_agree_with_formula():
    k = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.2], [0.0, 0.0, 0.0]])
    deg = k.sum(1)
    d = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    expect = d[:, None] * k * d[None, :]
    torch.testing.assert_close(dense_symnorm(k), expect)
    rows, cols = k.nonzero(as_tuple=True)
    vals = symnorm_values(rows, cols, k[rows, cols], 3)
    torch.testing.assert_close(vals, expect[rows, cols])


def test_dense_knn_keeps_top_k_per_row_with_gradient():
    s = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8]], requires_grad=True)
    kept = dense_knn(s, 2)
    torch.testing.assert_close(kept, torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.3, 0.8]]))
    kept.sum().backward()
    torch.testing.assert_close(s.grad, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))


def test_bipartite_propagation_equals_full_adjacency_propagation():
    from mgnm.models.propagation import bipartite_propagate

    full = normalized_adjacency(U, I, 3, 2)
    block = interaction_matrix(U, I, 3, 2, norm="sym")
    x = torch.randn(5, 4)
    pairs = bipartite_propagate(x[:3], x[3:], block, 3)
    layers = [x]
    for _ in range(3):
        layers.append(full @ layers[-1])
    for (u, i), ref in zip(pairs, layers, strict=True):
        torch.testing.assert_close(torch.cat([u, i]), ref)



def test_bipartite_layer_mean_equals_layer_mean_of_the_stack():
    from mgnm.models.propagation import bipartite_layer_mean

    rng = np.random.default_rng(4)
    users, items = rng.integers(0, 25, 150), rng.integers(0, 18, 150)
    full = normalized_adjacency(users, items, 25, 18)
    block = interaction_matrix(users, items, 25, 18, norm="sym")
    x = torch.randn(43, 8)
    for n_layers in (0, 1, 3):
        u, i = bipartite_layer_mean(x[:25], x[25:], block, n_layers)
        torch.testing.assert_close(torch.cat([u, i]), layer_mean(x, full, n_layers))


def random_block(seed: int, n_users: int, n_items: int, n: int):
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    block = interaction_matrix(users, items, n_users, n_items, norm="sym")
    return block, block.to_dense()


@pytest.mark.parametrize("n_keys", [7, 70_000])  # numpy's 16-bit radix sort; torch's sort
def test_stable_order_is_numpys_stable_argsort(n_keys):
    from mgnm.data.sparse import stable_order

    keys = np.random.default_rng(1).integers(0, n_keys, 500).astype(np.int32)
    keys[:50] = keys[0]  # many ties, whose order must be kept
    got = stable_order(torch.from_numpy(keys), n_keys)
    np.testing.assert_array_equal(got.numpy(), np.argsort(keys, kind="stable"))


def test_csr_rows_and_transpose_equal_the_dense_matrix():
    from mgnm.data.sparse import csr_rows, csr_transpose

    block, dense = random_block(2, 30, 20, 120)
    rows = torch.tensor([0, 3, 4, 17, 29])
    sub = csr_rows(block._mat, rows)
    assert torch.equal(sub.to_dense(), dense[rows])
    assert torch.equal(csr_transpose(sub).to_dense(), dense[rows].T)
    assert torch.equal(csr_transpose(block._mat).to_dense(), dense.T)
    empty = csr_rows(block._mat, torch.tensor([], dtype=torch.long))
    assert empty.shape == (0, 20) and csr_transpose(empty).shape == (20, 0)


@pytest.mark.parametrize("fmt", ["csr", "coo"])
@pytest.mark.parametrize("n_rows", [3, 28])  # a few rows (their own product); most rows
def test_rows_mm_value_and_gradient_equal_dense(fmt, n_rows):
    rng = np.random.default_rng(3)
    users, items = rng.integers(0, 30, 120), rng.integers(0, 20, 120)
    op = interaction_matrix(users, items, 30, 20, norm="sym", fmt=fmt)
    dense = op.to_dense()
    rows = torch.from_numpy(np.sort(rng.choice(30, n_rows, replace=False)))
    if fmt == "csr":
        assert op.few_entries(rows) == (n_rows == 3)
    x = torch.randn(20, 4, dtype=torch.float32, requires_grad=True)
    w = torch.randn(n_rows, 4)
    (op.rows_mm(rows, x) * w).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    ref = (dense @ x_ref)[rows]
    (ref * w).sum().backward()
    torch.testing.assert_close(op.rows_mm(rows, x.detach()), ref.detach())
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_batch_row_plan_is_the_batch_neighbourhood_by_hand():
    from mgnm.models.propagation import batch_row_plan

    block, dense = random_block(6, 400, 300, 1200)  # sparse: the neighbourhoods stay small
    adj = dense.numpy() != 0
    user_rows, item_rows = torch.tensor([5, 90, 301]), torch.tensor([2, 150, 299])
    plan = batch_row_plan(block, 3, user_rows, item_rows)
    want_u, want_i = set(user_rows.tolist()), set(item_rows.tolist())
    expected = [(want_u, want_i)]
    for _ in range(2):  # a layer needs the batch rows and the neighbours of the next one's
        up_u, up_i = expected[0]
        expected.insert(0, (want_u | {int(u) for i in up_i for u in np.flatnonzero(adj[:, i])},
                            want_i | {int(i) for u in up_u for i in np.flatnonzero(adj[u])}))
    assert len(plan) == 3
    for (rows_u, rows_i), (exp_u, exp_i) in zip(plan, expected, strict=True):
        assert rows_u.tolist() == sorted(exp_u) and rows_i.tolist() == sorted(exp_i)
    assert batch_row_plan(block, 0, user_rows, item_rows) == []
    # on a dense graph the neighbours are (nearly) every row: the whole products are planned
    small, _ = random_block(5, 40, 25, 200)
    first = batch_row_plan(small, 2, torch.tensor([1, 7]), torch.arange(20))[0]
    assert first == (None, None)


@pytest.mark.parametrize("graph", ["dense", "sparse", "most"])
def test_bipartite_layer_mean_rows_are_rows_of_the_whole_mean(graph):
    """Whole layers (their products and batch rows in one node), parts, and batch rows that
    hold most entries (the whole product, indexed): the whole mean's rows and gradients."""
    from mgnm.models.propagation import batch_row_plan, bipartite_layer_mean, bipartite_layer_mean_rows

    n_u, n_i = (400, 300) if graph == "sparse" else (40, 25)
    block, _ = random_block(5, n_u, n_i, 1200 if graph == "sparse" else 200)
    user_rows, item_rows = torch.tensor([1, 7, 8, 30]), torch.tensor([0, 2, 3, 11, 12, 24])
    if graph == "most":
        user_rows, item_rows = torch.arange(3, 36), torch.arange(2, 23)
        assert not block.few_entries(user_rows) and not block.T.few_entries(item_rows)
    for n_layers in (0, 1, 2, 3):
        u0 = torch.randn(n_u, 8, requires_grad=True)
        i0 = torch.randn(n_i, 8, requires_grad=True)
        wu, wi = torch.randn(len(user_rows), 8), torch.randn(len(item_rows), 8)
        eu, ei = bipartite_layer_mean(u0, i0, block, n_layers)
        whole = (eu[user_rows] * wu).sum() + (ei[item_rows] * wi).sum()
        g_whole = torch.autograd.grad(whole, [u0, i0])
        ru, ri = bipartite_layer_mean_rows(u0, i0, block, n_layers, user_rows, item_rows)
        if graph == "sparse":  # every layer below the last one really is a part
            plan = batch_row_plan(block, n_layers, user_rows, item_rows)
            assert all(rows is not None for pair in plan for rows in pair)
        assert torch.equal(ru, eu[user_rows]) and torch.equal(ri, ei[item_rows])
        g_rows = torch.autograd.grad((ru * wu).sum() + (ri * wi).sum(), [u0, i0])
        for a, b in zip(g_rows, g_whole, strict=True):
            torch.testing.assert_close(a, b)
