"""Slicing 4D Gaussians at a time agrees with conditioning the 4D Gaussian computed independently."""

from __future__ import annotations

import math

import torch

from ng_methods.rotor4d.rotor import identity_rotors
from ng_methods.rotor4d.slicing import TEMPORAL_CULL_EXPONENT, covariance_4d, slice_gaussians


def _random_gaussians(num=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num, 3, generator=g, dtype=torch.float64)
    times = torch.rand(num, generator=g, dtype=torch.float64)
    scales = 0.05 + torch.rand(num, 4, generator=g, dtype=torch.float64)
    rotors = torch.randn(num, 8, generator=g, dtype=torch.float64)  # unnormalised, as the model uses them
    opacities = torch.rand(num, generator=g, dtype=torch.float64)
    return means, times, scales, rotors, opacities


def test_identity_rotor_covariance_is_diagonal():
    scales = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    torch.testing.assert_close(covariance_4d(scales, identity_rotors(1).double()), torch.diag_embed(scales**2))


def test_slice_matches_conditioning_through_the_precision_matrix():
    """Conditional of N(mu, S) on t: covariance (Lambda_xx)^-1, mean mu_x - (Lambda_xx)^-1 Lambda_xt (t - mu_t)."""
    means, times, scales, rotors, opacities = _random_gaussians()
    t = 0.37
    sliced = slice_gaussians(means, times, scales, rotors, opacities, t, cull_exponent=float("inf"))

    sigma = covariance_4d(scales, rotors)
    precision = torch.linalg.inv(sigma)
    cond_cov = torch.linalg.inv(precision[:, :3, :3])
    cond_mean = means - (cond_cov @ precision[:, :3, 3:4])[..., 0] * (t - times)[:, None]
    torch.testing.assert_close(sliced.covars, cond_cov, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(sliced.means, cond_mean, atol=1e-8, rtol=1e-6)

    # temporal opacity: the marginal density of t relative to its peak
    marginal_var = sigma[:, 3, 3]
    expected = opacities * torch.exp(-0.5 * (t - times) ** 2 / marginal_var)
    torch.testing.assert_close(sliced.opacities, expected)
    assert sliced.visible.all()


def test_covariance_is_symmetric_positive_definite():
    means, times, scales, rotors, opacities = _random_gaussians(seed=3)
    covars = slice_gaussians(means, times, scales, rotors, opacities, 0.5).covars
    torch.testing.assert_close(covars, covars.transpose(-1, -2))
    assert torch.linalg.eigvalsh(covars).min() > 0


def test_temporal_opacity_and_culling():
    num = 5
    means = torch.zeros(num, 3)
    times = torch.zeros(num)
    st = 0.1
    scales = torch.tensor([[1.0, 1.0, 1.0, st]]).repeat(num, 1)
    opacities = torch.full((num,), 0.8)
    # exponents 0.5 (dt / st)^2 = 0, 2, 15.68, 16.245, 50 for these dt
    dts = torch.tensor([0.0, 0.2, 0.56, 0.57, 1.0])
    rotors = identity_rotors(num)
    for i, dt in enumerate(dts):
        sliced = slice_gaussians(means[i:i + 1], times[i:i + 1], scales[i:i + 1], rotors[i:i + 1],
                                 opacities[i:i + 1], float(dt))
        exponent = 0.5 * (float(dt) / st) ** 2
        assert math.isclose(float(sliced.opacities[0]), 0.8 * math.exp(-exponent), rel_tol=1e-5)
        assert bool(sliced.visible[0]) == (exponent < TEMPORAL_CULL_EXPONENT)
    # an axis-aligned 4D Gaussian does not move
    sliced = slice_gaussians(means, times, scales, rotors, opacities, 0.3)
    torch.testing.assert_close(sliced.velocities, torch.zeros(num, 3))
    torch.testing.assert_close(sliced.means, means)
