"""The SH background model: basis values against hand formulas, per-pixel ray directions, degree schedule."""

from __future__ import annotations

import math

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras

from ng_methods.splat.sh import eval_sh, sh_basis
from ng_methods.splatfacto_wild.background import BackgroundSHField, pixel_ray_directions


def _directions(n: int = 64) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.nn.functional.normalize(torch.randn(n, 3, dtype=torch.float64), dim=-1)


def test_basis_matches_hand_formulas():
    dirs = _directions()
    x, y, z = dirs.unbind(-1)
    basis = sh_basis(4, dirs)
    assert basis.shape == (64, 25)
    torch.testing.assert_close(basis[:, 0], torch.full_like(x, 0.5 / math.sqrt(math.pi)))
    c1 = math.sqrt(3 / (4 * math.pi))
    torch.testing.assert_close(basis[:, 1:4], torch.stack([-c1 * y, c1 * z, -c1 * x], dim=-1))
    # Y_2^0 and Y_4^0 (zonal) and Y_4^4 (sectoral), from their textbook definitions
    torch.testing.assert_close(basis[:, 6], 0.25 * math.sqrt(5 / math.pi) * (3 * z**2 - 1))
    torch.testing.assert_close(basis[:, 20], 3 / 16 * math.sqrt(1 / math.pi) * (35 * z**4 - 30 * z**2 + 3))
    torch.testing.assert_close(basis[:, 24], 3 / 16 * math.sqrt(35 / math.pi) * (x**4 - 6 * x**2 * y**2 + y**4))


def test_basis_is_orthonormal_on_the_sphere():
    """Monte-Carlo: E[Y_i Y_j] * 4 pi = delta_ij for all 25 functions up to degree 4."""
    torch.manual_seed(1)
    dirs = torch.nn.functional.normalize(torch.randn(400_000, 3, dtype=torch.float64), dim=-1)
    basis = sh_basis(4, dirs)
    gram = basis.T @ basis * (4 * math.pi / dirs.shape[0])
    torch.testing.assert_close(gram, torch.eye(25, dtype=torch.float64), atol=0.03, rtol=0)


def test_eval_sh_matches_gsplat_reference():
    gsplat_torch = pytest.importorskip("gsplat.cuda._torch_impl")
    dirs = _directions().float()
    coeffs = torch.randn(64, 25, 3)
    for degree in range(5):
        expected = gsplat_torch._spherical_harmonics(degree, dirs, coeffs)
        torch.testing.assert_close(eval_sh(degree, dirs, coeffs), expected, atol=1e-5, rtol=1e-5)


def test_pixel_ray_directions_match_nerfstudio_rays_and_scale_with_resolution():
    c2w = torch.tensor([[0.0, 0.0, 1.0, 0.5], [1.0, 0.0, 0.0, -1.0], [0.0, 1.0, 0.0, 2.0]])
    camera = Cameras(camera_to_worlds=c2w[None], fx=40.0, fy=42.0, cx=16.0, cy=12.0, width=32, height=24)
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    torch.testing.assert_close(pixel_ray_directions(camera, 24, 32), rays.directions, atol=1e-5, rtol=1e-5)
    half = camera.generate_rays(camera_indices=0, keep_shape=True)  # same camera rescaled like the schedule does
    camera.rescale_output_resolution(0.5)
    half = camera.generate_rays(camera_indices=0, keep_shape=True)
    camera.rescale_output_resolution(2.0)
    torch.testing.assert_close(pixel_ray_directions(camera, 12, 16), half.directions, atol=1e-5, rtol=1e-5)


def test_background_starts_view_independent_and_caps_the_degree():
    field = BackgroundSHField(embed_dim=8)
    embedding = torch.randn(8)
    dirs = _directions(10).float()
    colours = field(embedding, dirs, degree=3)
    assert colours.shape == (10, 3)
    # zero-initialised higher orders: every direction sees the same colour at first
    torch.testing.assert_close(colours, colours[:1].expand(10, 3))
    assert field.coefficients(embedding).shape == (25, 3)
    torch.nn.init.normal_(field.mlp.sh_rest_head.weight)
    assert not torch.allclose(field(embedding, dirs, degree=4), field(embedding, dirs, degree=3))
    torch.testing.assert_close(field(embedding, dirs, degree=9), field(embedding, dirs, degree=4))
