"""NeuS alpha, logistic density and compositing against hand-computed values (NeuS2 testbed_nerf.cu)."""

import math

import torch

from ng_methods.neus2.rendering import (
    inv_s_from_variance,
    logistic_density,
    neus_alpha,
    neus_weights,
    transmittance_from_alpha,
)


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_alpha_of_a_section_crossing_the_surface():
    # Ray along +z towards a surface whose SDF falls along the ray (gradient -z): cos = -1, iter_cos = -1.
    sdf, dt, inv_s = torch.tensor([0.0]), torch.tensor([0.1]), torch.tensor(10.0)
    alpha = neus_alpha(sdf, torch.tensor([[0.0, 0.0, -1.0]]), torch.tensor([[0.0, 0.0, 1.0]]), dt, inv_s)
    prev_cdf, next_cdf = _sigmoid(0.05 * 10), _sigmoid(-0.05 * 10)
    expected = (prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)
    assert math.isclose(float(alpha), expected, rel_tol=1e-6)


def test_alpha_with_annealing_and_when_leaving_the_surface():
    directions, dt, inv_s = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0.2]), torch.tensor(5.0)
    # Leaving (cos > 0): with ratio 1 the section is transparent up to the 1e-5 terms.
    leaving = neus_alpha(torch.tensor([0.1]), torch.tensor([[0.5, 0.0, 0.0]]), directions, dt, inv_s)
    assert float(leaving) < 1e-4
    # Ratio 0: iter_cos = -relu(0.5 - 0.5 cos) = -0.25 for cos = 0.5.
    annealed = neus_alpha(torch.tensor([0.1]), torch.tensor([[0.5, 0.0, 0.0]]), directions, dt, inv_s, 0.0)
    prev_cdf, next_cdf = _sigmoid((0.1 + 0.25 * 0.1) * 5), _sigmoid((0.1 - 0.25 * 0.1) * 5)
    assert math.isclose(float(annealed), (prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5), rel_tol=1e-6)


def test_variance_and_density():
    assert math.isclose(float(inv_s_from_variance(torch.tensor(0.3))), math.exp(3.0), rel_tol=1e-6)
    density = logistic_density(torch.tensor([0.0, 0.2]), torch.tensor(20.0))
    assert math.isclose(float(density[0]), 5.0, rel_tol=1e-6)  # s / 4 on the surface
    assert math.isclose(float(density[1]), 20.0 * _sigmoid(4.0) * (1.0 - _sigmoid(4.0)), rel_tol=1e-5)


def test_weights_are_alpha_times_exclusive_transmittance_with_early_stop():
    alphas = torch.tensor([0.5, 0.5, 0.2, 0.99999, 0.5, 0.3], requires_grad=True)
    rays = torch.tensor([0, 0, 0, 1, 1, 2])
    transmittance = transmittance_from_alpha(alphas, rays, 3)
    expected = torch.tensor([1.0, 0.5, 0.25, 1.0, 1e-5, 1.0])
    torch.testing.assert_close(transmittance.detach(), expected, rtol=1e-5, atol=1e-7)
    weights, rendered = neus_weights(alphas, rays, 3)
    # The sample behind T < 1e-4 is dropped (the official early stop).
    assert rendered.tolist() == [True, True, True, True, False, True]
    torch.testing.assert_close(weights.detach(), torch.tensor([0.5, 0.25, 0.05, 0.99999, 0.0, 0.3]))
    weights.sum().backward()
    assert torch.isfinite(alphas.grad).all()
