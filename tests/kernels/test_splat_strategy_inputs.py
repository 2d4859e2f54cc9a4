"""The reference rasteriser's extras that gsplat's DefaultStrategy and Splatfacto-W rely on: ``absgrad`` and the
antialiased (compensated) opacities."""

import pytest
import torch

from ng_methods.kernels.splat.reference import rasterize_reference


def _scene(dtype=torch.float64):
    gen = torch.Generator().manual_seed(3)
    n, W, H, f = 6, 12, 10, 14.0
    means = torch.cat([torch.rand(n, 2, generator=gen, dtype=dtype) - 0.5, 2.5 + torch.rand(n, 1, generator=gen,
                                                                                           dtype=dtype)], 1)
    quats = torch.randn(n, 4, generator=gen, dtype=dtype)
    scales = 0.05 + 0.2 * torch.rand(n, 3, generator=gen, dtype=dtype)
    opacities = 0.3 + 0.6 * torch.rand(n, generator=gen, dtype=dtype)
    colors = torch.rand(n, 3, generator=gen, dtype=dtype)
    vm = torch.eye(4, dtype=dtype)[None]
    K = torch.tensor([[f, 0.0, W / 2], [0.0, f, H / 2], [0.0, 0.0, 1.0]], dtype=dtype)[None]
    return means, quats, scales, opacities, colors, vm, K, W, H


def test_absgrad_is_sum_over_pixels_of_absolute_gradients():
    means, quats, scales, opacities, colors, vm, K, W, H = _scene()
    means.requires_grad_(True)
    weights = torch.randn(H, W, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    render, _, meta = rasterize_reference(means, quats, scales, opacities, colors, vm, K, W, H, absgrad=True)
    means2d = meta["means2d"]
    means2d.retain_grad()
    (render[0] * weights).sum().backward()
    absgrad = means2d.absgrad

    # Brute force: each pixel's own gradient w.r.t. the screen-space means, then |.| summed over pixels.
    expected = torch.zeros_like(absgrad)
    for y in range(H):
        for x in range(W):
            render_p, _, meta_p = rasterize_reference(means, quats, scales, opacities, colors, vm, K, W, H)
            (grad,) = torch.autograd.grad((render_p[0, y, x] * weights[y, x]).sum(), meta_p["means2d"],
                                          allow_unused=True)
            if grad is not None:
                expected += grad.abs()
    assert expected.abs().sum() > 0
    torch.testing.assert_close(absgrad, expected, atol=1e-10, rtol=0)
    # and the plain gradient is unaffected: |sum| <= sum |.|
    assert torch.all(means2d.grad.abs() <= absgrad + 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_antialiased_scales_opacities_by_compensation(dtype):
    means, quats, scales, opacities, colors, vm, K, W, H = _scene(dtype)
    aa, aa_alpha, meta = rasterize_reference(means, quats, scales, opacities, colors, vm, K, W, H,
                                             rasterize_mode="antialiased")
    eps2d = 0.3
    # compensation = sqrt(det(cov2d) / det(cov2d + eps2d I)); recover det(cov2d + eps I) from the conics.
    conics = meta["conics"][0]
    det_blur = 1.0 / (conics[:, 0] * conics[:, 2] - conics[:, 1] ** 2)
    a, b, c = conics[:, 2] * det_blur, -conics[:, 1] * det_blur, conics[:, 0] * det_blur  # cov2d + eps I
    det_raw = (a - eps2d) * (c - eps2d) - b * b
    compensation = torch.sqrt(torch.clamp(det_raw / det_blur, min=0))
    classic, classic_alpha, _ = rasterize_reference(means, quats, scales, opacities * compensation, colors, vm, K,
                                                    W, H)
    tol = {torch.float32: 1e-5, torch.float64: 1e-10}[dtype]
    torch.testing.assert_close(aa, classic, atol=tol, rtol=0)
    torch.testing.assert_close(aa_alpha, classic_alpha, atol=tol, rtol=0)
    assert torch.all(compensation <= 1.0 + tol) and torch.any(compensation < 0.99)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_recomputed_tiles_give_the_same_values_and_gradients(monkeypatch, dtype):
    """Large tiles recompute their intermediates in backward (memory-bounded at full resolution); forcing that path
    for every tile must change neither the image nor any gradient, ``absgrad`` included."""
    from ng_methods.kernels.splat import reference

    def render_and_grads(min_pairs):
        monkeypatch.setattr(reference, "RECOMPUTE_MIN_PAIRS", min_pairs)
        means, quats, scales, opacities, colors, vm, K, W, H = _scene(dtype)
        params = [t.clone().requires_grad_(True) for t in (means, quats, scales, opacities, colors)]
        weights = torch.randn(H, W, 3, generator=torch.Generator().manual_seed(4), dtype=dtype)
        render, alpha, meta = rasterize_reference(*params, vm, K, W, H, absgrad=True, render_mode="RGB+ED",
                                                  backgrounds=torch.full((1, 3), 0.2, dtype=dtype))
        ((render[..., :3] * weights).sum() + render[..., 3].sum() + alpha.sum()).backward()
        return [render.detach(), alpha.detach(), meta["means2d"].absgrad] + [p.grad for p in params]

    plain = render_and_grads(1 << 62)
    recomputed = render_and_grads(0)
    for a, b in zip(plain, recomputed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
