"""The Dual-Domain Deformation Model against a hand-written formula, and the time mapping."""

from __future__ import annotations

import math

import pytest
import torch

from ng_methods.gaussian_flow.dddm import dddm_basis, dddm_residual, map_time


def hand_residual(coefficients, t):
    n, order, dim, _ = coefficients.shape
    out = torch.zeros(n, dim, dtype=torch.float64)
    for i in range(n):
        for d in range(dim):
            for degree in range(order):
                a, b, c = coefficients[i, degree, d].double().tolist()
                ti = float(t[i])
                out[i, d] += (a * ti**degree + b * math.sin(2 * math.pi * degree * ti)
                              + c * math.cos(2 * math.pi * degree * ti))
    return out / order


@pytest.mark.parametrize("order", [1, 2, 5])
def test_residual_matches_hand_formula(order):
    torch.manual_seed(order)
    coefficients = torch.randn(7, order, 3, 3, dtype=torch.float64)
    t = torch.rand(7, dtype=torch.float64) * 1.2 - 0.1
    torch.testing.assert_close(dddm_residual(coefficients, t), hand_residual(coefficients, t))


def test_polynomial_and_fourier_terms_separately():
    t = torch.tensor([0.25])
    coefficients = torch.zeros(1, 3, 1, 3)
    coefficients[0, 2, 0, 0] = 1.0  # a_2 t^2
    assert dddm_residual(coefficients, t).item() == pytest.approx(0.25**2 / 3)
    coefficients.zero_()
    coefficients[0, 1, 0, 1] = 1.0  # b_1 sin(2 pi t) = sin(pi/2) = 1
    assert dddm_residual(coefficients, t).item() == pytest.approx(1 / 3)
    coefficients.zero_()
    coefficients[0, 2, 0, 2] = 1.0  # c_2 cos(4 pi t) = cos(pi) = -1
    assert dddm_residual(coefficients, t).item() == pytest.approx(-1 / 3)


def test_at_time_zero_only_the_constant_terms_remain():
    """t = 0: t^0 = 1, sin = 0, cos = 1, t^l = 0 for l > 0, so the offset is (a_0 + sum_l c_l) / L."""
    torch.manual_seed(0)
    coefficients = torch.randn(5, 4, 3, 3)
    expected = (coefficients[:, 0, :, 0] + coefficients[:, :, :, 2].sum(dim=1)) / 4
    torch.testing.assert_close(dddm_residual(coefficients, torch.zeros(5)), expected)
    basis = dddm_basis(torch.zeros(1), 4)
    torch.testing.assert_close(basis[0, :, 1], torch.zeros(4))


def test_zero_coefficients_are_static_and_gradients_reach_coefficients_and_time():
    coefficients = torch.zeros(6, 3, 4, 3, requires_grad=True)
    t = torch.rand(6, requires_grad=True)
    residual = dddm_residual(coefficients, t)
    assert torch.equal(residual, torch.zeros(6, 4))
    residual.square().sum().backward()  # zero at the zero point
    (dddm_residual(coefficients, t) * torch.randn(6, 4)).sum().backward()
    assert coefficients.grad.abs().sum() > 0
    filled = torch.randn(6, 3, 4, 3)
    (dddm_residual(filled, t).sum()).backward()
    assert t.grad is not None and t.grad.abs().sum() > 0


def test_time_derivative_is_exact():
    torch.manual_seed(1)
    coefficients = torch.randn(3, 4, 2, 3, dtype=torch.float64)
    t = torch.rand(3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(dddm_residual(coefficients, t).sum(), t)
    eps = 1e-6
    numeric = (dddm_residual(coefficients, t + eps).sum(1) - dddm_residual(coefficients, t - eps).sum(1)) / (2 * eps)
    torch.testing.assert_close(grad, numeric.detach(), rtol=1e-6, atol=1e-6)


def test_time_mapping_uses_scale_shift_and_per_gaussian_offsets():
    offsets = torch.tensor([[0.0], [0.05], [-0.1]])
    mapped = map_time(torch.tensor([[0.4]]), offsets, time_scale=0.5, time_shift=0.1)
    torch.testing.assert_close(mapped, torch.tensor([0.3, 0.25, 0.4]))
