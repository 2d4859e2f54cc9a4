"""Compositing reference: nerfacc's documented values, a per-ray loop, gradients."""

import pytest
import torch

from ng_methods.kernels.volume_rendering import reference as vr

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def _per_ray_loop(t0, t1, sigmas, ray_indices, n_rays):
    weights = torch.zeros_like(sigmas)
    for ray in range(n_rays):
        idx = (ray_indices == ray).nonzero()[:, 0]
        transmittance = torch.ones((), dtype=sigmas.dtype)
        for i in idx:
            alpha = 1 - torch.exp(-sigmas[i] * (t1[i] - t0[i]))
            weights[i] = transmittance * alpha
            transmittance = transmittance * (1 - alpha)
    return weights


def test_matches_nerfacc_documented_example():
    # nerfacc.render_transmittance_from_density / render_visibility_from_density docstring values.
    t0 = torch.arange(7.0)
    t1 = t0 + 1
    sigmas = torch.tensor([0.4, 0.8, 0.1, 0.8, 0.1, 0.0, 0.9])
    rays = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    trans, alphas = vr.render_transmittance_from_density(t0, t1, sigmas, rays, 3)
    torch.testing.assert_close(trans, torch.tensor([1.00, 0.67, 0.30, 1.00, 0.45, 1.00, 1.00]), atol=5e-3, rtol=0)
    torch.testing.assert_close(alphas, torch.tensor([0.33, 0.55, 0.095, 0.55, 0.095, 0.00, 0.59]), atol=5e-3, rtol=0)
    visible = vr.render_visibility_from_density(t0, t1, sigmas, rays, 3, early_stop_eps=0.3, alpha_thre=0.2)
    assert visible.tolist() == [True, True, False, True, False, False, True]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_rays", [1, 7, 64])
def test_weights_match_per_ray_loop(dtype, n_rays):
    gen = torch.Generator().manual_seed(n_rays)
    counts = torch.randint(0, 12, (n_rays,), generator=gen)
    rays = torch.repeat_interleave(torch.arange(n_rays), counts)
    dt = torch.rand(rays.shape[0], generator=gen, dtype=dtype) * 0.1
    t0 = torch.cumsum(dt, 0)
    t1 = t0 + dt
    sigmas = torch.rand(rays.shape[0], generator=gen, dtype=dtype) * 20
    weights, _, _ = vr.render_weight_from_density(t0, t1, sigmas, rays, n_rays)
    torch.testing.assert_close(weights, _per_ray_loop(t0, t1, sigmas, rays, n_rays), **TOL[dtype])
    acc = vr.accumulate_along_rays(weights, None, rays, n_rays)[:, 0]
    assert torch.all(acc <= 1 + 1e-6)


def test_empty_rays_and_gradients():
    rays = torch.tensor([1, 1, 3])
    t0 = torch.tensor([0.0, 0.5, 0.2], dtype=torch.float64)
    t1 = t0 + 0.5
    sigmas = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64, requires_grad=True)
    colors = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)

    def render(s, c):
        w = vr.render_weight_from_density(t0, t1, s, rays, 5)[0]
        return vr.accumulate_along_rays(w, c, rays, 5)

    out = render(sigmas, colors)
    assert out.shape == (5, 3) and torch.all(out[[0, 2, 4]] == 0)
    assert torch.autograd.gradcheck(render, (sigmas, colors))
