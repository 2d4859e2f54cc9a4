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


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inf_density_stays_on_its_ray(dtype):
    """Regression (issue 9): one inf density made T = [nan, nan, nan] for the whole batch (global cumsum, inf - inf).

    nerfacc 0.5.2 gives T = [1, 0, 1], w = [1, 0, 1 - e^-1]: the inf sample is opaque, its ray stops, ray 1 is fine.
    """
    t0, t1 = torch.tensor([0.0, 1.0, 0.0], dtype=dtype), torch.tensor([1.0, 2.0, 1.0], dtype=dtype)
    sigmas = torch.tensor([INF, 1.0, 1.0], dtype=dtype)
    weights, trans, alphas = vr.render_weight_from_density(t0, t1, sigmas, torch.tensor([0, 0, 1]), 2)
    e1 = 1 - torch.exp(torch.tensor(-1.0, dtype=dtype))
    assert torch.equal(trans, torch.tensor([1.0, 0.0, 1.0], dtype=dtype))
    assert torch.equal(alphas, torch.stack([torch.ones((), dtype=dtype), e1, e1]))
    assert torch.equal(weights, torch.stack([torch.ones((), dtype=dtype), torch.zeros((), dtype=dtype), e1]))


def test_nan_density_stays_on_its_ray():
    """nerfacc 0.5.2 (batched torch.cumsum per ray): a NaN poisons its own weight and what follows on its ray only."""
    t0 = torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0])
    sigmas = torch.tensor([1.0, NAN, 1.0, 1.0, 1.0])
    weights, trans, alphas = vr.render_weight_from_density(t0, t0 + 1, sigmas, torch.tensor([0, 0, 0, 1, 1]), 2)
    assert trans.isnan().tolist() == [False, False, True, False, False]
    assert weights.isnan().tolist() == [False, True, True, False, False]
    assert alphas.isnan().tolist() == [False, True, False, False, False]
    torch.testing.assert_close(weights[3:], _per_ray_loop(t0[3:], t0[3:] + 1, sigmas[3:], torch.tensor([0, 0]), 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exclusive_sum_isolates_rays_and_keeps_precision(dtype):
    """Random long batch with inf / NaN sprinkled in: every ray equals its own cumsum (no leak, no cancellation)."""
    gen = torch.Generator().manual_seed(3)
    counts = torch.randint(0, 300, (40,), generator=gen)
    rays = torch.repeat_interleave(torch.arange(40), counts)
    values = (torch.rand(rays.shape[0], generator=gen, dtype=dtype) * 1e3).requires_grad_()
    bad = torch.randint(0, rays.shape[0], (6,), generator=gen)
    values.data[bad[:3]], values.data[bad[3:]] = INF, NAN
    got = vr.exclusive_sum_per_ray(values, rays, 40)
    expected = torch.cat([torch.cumsum(torch.cat([v.new_zeros(1), v[:-1]]), 0) for v in values.split(counts.tolist())])
    tol = dict(rtol=2e-7, atol=0) if dtype == torch.float32 else dict(rtol=1e-14, atol=0)
    torch.testing.assert_close(got, expected, equal_nan=True, **tol)
    cot = torch.randn(got.shape, generator=gen, dtype=dtype)
    (grad,) = torch.autograd.grad(got, values, cot)
    (expected_grad,) = torch.autograd.grad(expected, values, cot)
    torch.testing.assert_close(grad, expected_grad, rtol=tol["rtol"], atol=1e-12)
