"""The shared row normalisation against its definition, values and gradients."""

import torch

from mgnm.data.graphs import l2_normalize


def test_l2_normalize_rows_have_unit_norm_and_match_the_definition():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = l2_normalize(x)
    for r in range(7):  # x_r / sqrt(sum_c x_rc^2), row by row
        norm = sum(float(v) ** 2 for v in x[r]) ** 0.5
        assert torch.allclose(y[r], x[r] / norm, atol=1e-14)
    assert torch.allclose(y.norm(dim=1), torch.ones(7, dtype=torch.float64))


def test_l2_normalize_gradient_is_the_projection_off_the_row():
    # d(x/|x|)/dx applied to g is (g - y (y·g)) / |x|: check against that identity
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(6, 4, generator=g, dtype=torch.float64)
    l2_normalize(x).backward(up)
    with torch.no_grad():
        y = x / x.norm(dim=1, keepdim=True)
        expected = (up - y * (y * up).sum(1, keepdim=True)) / x.norm(dim=1, keepdim=True)
    assert torch.allclose(x.grad, expected, atol=1e-12)


def test_l2_normalize_zero_row_matches_torch_value_and_gradient():
    # a zero row is divided by eps in both; the gradient is then (1/eps) * upstream
    x = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    up = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]], dtype=torch.float64)
    y = l2_normalize(x)
    y.backward(up)
    assert torch.equal(y, torch.zeros(2, 3, dtype=torch.float64))
    assert torch.isfinite(x.grad).all()
    assert torch.allclose(x.grad, up / 1e-12)
