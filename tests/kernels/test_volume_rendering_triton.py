"""Triton compositing (forward + backward) against the PyTorch reference; the torch ``composite`` against the
reference functions; nerfacc on CUDA. Without CUDA the kernels run under the Triton interpreter (CPU)."""

import os

import torch

if not torch.cuda.is_available():  # before anything imports Triton: kernels are decorated in interpreter mode
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

pytest.importorskip("triton")

from ng_methods.kernels import volume_rendering as vr  # noqa: E402
from ng_methods.kernels.volume_rendering import reference  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")

# Triton vs the torch reference, per input dtype. fp32: kernel and reference both in fp32 (the reference sums optical
# depth in fp64), differences are summation order. Half inputs: compared with the reference run on the same inputs
# upcast to fp32; the kernel computes in fp32 too, so only the half-precision rounding of the outputs remains.
TOL = {
    torch.float32: dict(fwd=dict(rtol=1e-5, atol=2e-6), bwd=dict(rtol=1e-4, atol=2e-5)),
    torch.float16: dict(fwd=dict(rtol=2e-3, atol=2e-3), bwd=dict(rtol=2e-3, atol=2e-3)),
    torch.bfloat16: dict(fwd=dict(rtol=1.6e-2, atol=1.6e-2), bwd=dict(rtol=1.6e-2, atol=1.6e-2)),
}

# Samples per ray: empty rays, single samples, rays longer than a chunk (64), a ray count that is a multiple of nothing.
COUNTS = {
    "mixed": [0, 1, 5, 130, 0, 3, 70, 1, 64, 65, 0, 2, 17],
    "single_ray_long": [200],
    "all_empty": [0, 0, 0, 0, 0],
}


def _packed(counts, seed, sigma_scale=20.0, dtype=torch.float32, channels=3):
    """Fresh random packed inputs: sorted by ray, increasing ``t`` within a ray."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.tensor(counts, dtype=torch.int64)
    ray_indices = torch.repeat_interleave(torch.arange(len(counts)), counts)
    n = int(counts.sum())
    dt = torch.rand(n, generator=gen) * 0.1 + 1e-3
    t_starts = torch.rand(n, generator=gen) * 0.05 + torch.cumsum(dt, 0)
    t_ends = t_starts + dt
    sigmas = torch.rand(n, generator=gen) * sigma_scale
    rgbs = torch.rand(n, channels, generator=gen)
    cast = [x.to(DEVICE, dtype) for x in (t_starts, t_ends, sigmas, rgbs)]
    return (*cast, ray_indices.to(DEVICE), len(counts))


def _run(backend, t0, t1, sigmas, rgbs, rays, n_rays, eps, cotangents, seed):
    sigmas = sigmas.detach().clone().requires_grad_()
    rgbs = rgbs.detach().clone().requires_grad_()
    outs = vr.composite(t0, t1, sigmas, rgbs, rays, n_rays, early_stop_eps=eps, backend=backend)
    if cotangents is None:
        gen = torch.Generator().manual_seed(seed + 1)
        cotangents = [torch.randn(o.shape, generator=gen).to(o) for o in outs]
    loss = sum((o.float() * c.float()).sum() for o, c in zip(outs, cotangents))
    grads = torch.autograd.grad(loss, (sigmas, rgbs), allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, (sigmas, rgbs))]
    return [o.detach() for o in outs], grads, cotangents


def _assert_close(actual, expected, tol, what):
    for a, e, name in zip(actual, expected, what):
        torch.testing.assert_close(a.float(), e.float(), **tol, msg=lambda m, name=name: f"{name}: {m}")


OUT_NAMES = ("rgb", "depth", "accumulation", "weights")


@pytest.mark.parametrize("case", sorted(COUNTS))
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_composite_triton_matches_reference(case, eps):
    seed = 10 * sorted(COUNTS).index(case) + (eps > 0)
    inputs = _packed(COUNTS[case], seed)
    ref_out, ref_grads, cot = _run("torch", *inputs, eps, None, seed)
    tri_out, tri_grads, _ = _run("triton", *inputs, eps, cot, seed)
    _assert_close(tri_out, ref_out, TOL[torch.float32]["fwd"], OUT_NAMES)
    _assert_close(tri_grads, ref_grads, TOL[torch.float32]["bwd"], ("d_sigmas", "d_rgbs"))
    assert tri_out[0].shape == (inputs[-1], 3) and tri_out[1].shape == tri_out[2].shape == (inputs[-1], 1)


def test_early_termination_large_sigmas():
    """Opaque rays: the kernel stops marching, dropped samples get weight and gradient 0, like the reference."""
    inputs = _packed([300, 1, 0, 90, 200, 7, 129], seed=3, sigma_scale=400.0)
    t0, t1, sigmas, rgbs, rays, n_rays = inputs
    eps = 1e-4
    ref_out, ref_grads, cot = _run("torch", *inputs, eps, None, 3)
    tri_out, tri_grads, _ = _run("triton", *inputs, eps, cot, 3)
    _assert_close(tri_out, ref_out, TOL[torch.float32]["fwd"], OUT_NAMES)
    _assert_close(tri_grads, ref_grads, TOL[torch.float32]["bwd"], ("d_sigmas", "d_rgbs"))
    trans, _ = reference.render_transmittance_from_density(t0, t1, sigmas, rays, n_rays)
    dropped = trans < eps
    assert dropped.sum() > 300  # most of the long rays are past termination
    assert torch.all(tri_out[3][dropped] == 0) and torch.all(tri_grads[0][dropped] == 0)
    # The forward stopped marching: the backward's start point is well before the ray ends.
    from ng_methods.kernels.volume_rendering import triton as vt

    offsets = vt.packed_offsets(rays, n_rays)
    *_, alive_end = vt._march_forward(t0, t1, sigmas, rgbs, offsets, eps, True, True, False, torch.float32)
    assert torch.all(alive_end <= offsets[1:]) and torch.all(alive_end >= offsets[:-1])
    assert (offsets[1:] - alive_end).sum() > 300
    # Without early stopping the same inputs keep their (tiny) far weights.
    out0, _, _ = _run("triton", *inputs, 0.0, cot, 3)
    torch.testing.assert_close(out0[2], ref_out[2], atol=eps * 2, rtol=0)


def test_composite_partial_cotangents_and_inference():
    """Only some outputs used (the model's case: rgb, depth, accumulation), and the no-grad path."""
    t0, t1, sigmas, rgbs, rays, n_rays = _packed(COUNTS["mixed"], seed=11)
    results = {}
    for backend in ("torch", "triton"):
        s = sigmas.clone().requires_grad_()
        c = rgbs.clone().requires_grad_()
        rgb, depth, acc, _ = vr.composite(t0, t1, s, c, rays, n_rays, backend=backend)
        (rgb.sum() + (depth / acc.clamp(min=1e-10)).sum() + acc.square().sum()).backward()
        with torch.no_grad():
            plain = vr.composite(t0, t1, sigmas, rgbs, rays, n_rays, backend=backend)
        results[backend] = (s.grad, c.grad, *plain)
    _assert_close(results["triton"][:2], results["torch"][:2], TOL[torch.float32]["bwd"], ("d_sigmas", "d_rgbs"))
    _assert_close(results["triton"][2:], results["torch"][2:], TOL[torch.float32]["fwd"], OUT_NAMES)
    # Only the colours need a gradient.
    c = rgbs.clone().requires_grad_()
    vr.composite(t0, t1, sigmas, c, rays, n_rays, backend="triton")[0].sum().backward()
    weights = vr.composite(t0, t1, sigmas, rgbs, rays, n_rays, backend="torch")[3]
    torch.testing.assert_close(c.grad, weights[:, None].expand(-1, 3), **TOL[torch.float32]["fwd"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_composite_half_inputs(dtype):
    inputs = _packed(COUNTS["mixed"], seed=5, dtype=dtype)
    upcast = [x.float() if x.is_floating_point() else x for x in inputs[:-1]] + [inputs[-1]]
    n_rays, n = inputs[-1], inputs[2].shape[0]
    gen = torch.Generator().manual_seed(6)
    shapes = [(n_rays, 3), (n_rays, 1), (n_rays, 1), (n,)]
    cot = [torch.randn(shape, generator=gen).to(DEVICE, dtype) for shape in shapes]  # same values for both runs
    ref_out, ref_grads, _ = _run("torch", *upcast, 0.0, [c.float() for c in cot], 5)
    tri_out, tri_grads, _ = _run("triton", *inputs, 0.0, cot, 5)
    assert all(o.dtype == dtype for o in tri_out) and all(g.dtype == dtype for g in tri_grads)
    _assert_close(tri_out, ref_out, TOL[dtype]["fwd"], OUT_NAMES)
    # Gradients scale with the cotangents (unit normal); compare relative to each gradient's size.
    for g, r, name in zip(tri_grads, ref_grads, ("d_sigmas", "d_rgbs")):
        scale = r.abs().max().clamp(min=1.0)
        torch.testing.assert_close(g.float() / scale, r / scale, **TOL[dtype]["bwd"], msg=lambda m, n=name: f"{n}: {m}")


def test_composite_channels_and_no_rays():
    t0, t1, sigmas, rgbs, rays, n_rays = _packed([3, 0, 70, 1], seed=8, channels=5)
    ref_out, ref_grads, cot = _run("torch", t0, t1, sigmas, rgbs, rays, n_rays, 0.0, None, 8)
    tri_out, tri_grads, _ = _run("triton", t0, t1, sigmas, rgbs, rays, n_rays, 0.0, cot, 8)
    _assert_close(tri_out, ref_out, TOL[torch.float32]["fwd"], OUT_NAMES)
    _assert_close(tri_grads, ref_grads, TOL[torch.float32]["bwd"], ("d_sigmas", "d_rgbs"))
    empty = _packed([], seed=0)
    for backend in ("torch", "triton"):
        outs = vr.composite(*empty, backend=backend)
        assert [tuple(o.shape) for o in outs] == [(0, 3), (0, 1), (0, 1), (0,)]


def test_render_weight_and_accumulate_triton():
    t0, t1, sigmas, rgbs, rays, n_rays = _packed(COUNTS["mixed"], seed=21)
    gen = torch.Generator().manual_seed(22)
    cot = [torch.randn(sigmas.shape, generator=gen).to(DEVICE) for _ in range(3)]
    g_rgb = torch.randn((n_rays, 3), generator=gen).to(DEVICE)
    g_w = torch.randn((n_rays, 1), generator=gen).to(DEVICE)
    got = {}
    for backend in ("torch", "triton"):
        s = sigmas.clone().requires_grad_()
        outs = vr.render_weight_from_density(t0, t1, s, rays, n_rays, backend=backend)
        (grad,) = torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cot)), s)
        w = outs[0].detach().clone().requires_grad_()
        v = rgbs.clone().requires_grad_()
        acc_rgb = vr.accumulate_along_rays(w, v, rays, n_rays, backend=backend)
        acc_w = vr.accumulate_along_rays(w, None, rays, n_rays, backend=backend)
        gw, gv = torch.autograd.grad((acc_rgb * g_rgb).sum() + (acc_w * g_w).sum(), (w, v))
        vis = vr.render_visibility_from_density(t0, t1, sigmas, rays, n_rays, 1e-2, 0.5, backend=backend)
        got[backend] = [o.detach() for o in outs] + [grad, acc_rgb.detach(), acc_w.detach(), gw, gv, vis]
    names = ("weights", "trans", "alphas", "d_sigmas", "acc_rgb", "acc_w", "d_w", "d_v")
    _assert_close(got["triton"][:3], got["torch"][:3], TOL[torch.float32]["fwd"], names[:3])
    _assert_close(got["triton"][3:4], got["torch"][3:4], TOL[torch.float32]["bwd"], names[3:4])
    _assert_close(got["triton"][4:8], got["torch"][4:8], TOL[torch.float32]["fwd"], names[4:8])
    assert torch.equal(got["triton"][8], got["torch"][8])


def test_torch_composite_matches_reference_functions():
    """eps=0: the reference functions composed; eps>0: nerfacc's pipeline (drop invisible samples, then render)."""
    t0, t1, sigmas, rgbs, rays, n_rays = [x.cpu() for x in _packed(COUNTS["mixed"], seed=31, sigma_scale=60.0)[:-1]] + [
        len(COUNTS["mixed"])
    ]
    weights = reference.render_weight_from_density(t0, t1, sigmas, rays, n_rays)[0]
    expected = (
        reference.accumulate_along_rays(weights, rgbs, rays, n_rays),
        reference.accumulate_along_rays(weights, ((t0 + t1) / 2)[:, None], rays, n_rays),
        reference.accumulate_along_rays(weights, None, rays, n_rays),
        weights,
    )
    for backend in ("torch", "auto"):  # auto on CPU is the torch path
        got = vr.composite(t0, t1, sigmas, rgbs, rays, n_rays, backend=backend)
        for g, e in zip(got, expected):
            assert torch.equal(g, e)
    eps = 1e-2
    keep = reference.render_visibility_from_density(t0, t1, sigmas, rays, n_rays, early_stop_eps=eps)
    assert 0 < keep.sum() < keep.numel()
    w_keep = reference.render_weight_from_density(t0[keep], t1[keep], sigmas[keep], rays[keep], n_rays)[0]
    got = vr.composite(t0, t1, sigmas, rgbs, rays, n_rays, early_stop_eps=eps, backend="torch")
    torch.testing.assert_close(got[0], reference.accumulate_along_rays(w_keep, rgbs[keep], rays[keep], n_rays))
    torch.testing.assert_close(got[2], reference.accumulate_along_rays(w_keep, None, rays[keep], n_rays))
    torch.testing.assert_close(got[3][keep], w_keep)
    assert torch.all(got[3][~keep] == 0)


def test_dispatch():
    t0, t1, sigmas, rgbs, rays, n_rays = _packed([2, 3], seed=1)
    with pytest.raises(ValueError, match="backend"):
        vr.composite(t0, t1, sigmas, rgbs, rays, n_rays, backend="cuda")
    with pytest.raises(ValueError, match="t_starts"):
        vr.composite(t0.clone().requires_grad_(), t1, sigmas, rgbs, rays, n_rays, backend="triton")
    assert vr.triton_available()
    assert vr._resolve("auto", sigmas.cpu()) == "torch"
    if CUDA:
        assert vr._resolve("auto", sigmas) == "triton"
        assert vr._resolve("auto", sigmas.double()) == "nerfacc"
        assert vr._resolve("auto", sigmas, (t0,), t_grad=True) == "nerfacc"


@requires_cuda
@pytest.mark.parametrize("eps", [0.0, 1e-4])
def test_matches_nerfacc_on_cuda(eps):
    inputs = _packed(COUNTS["mixed"] * 50, seed=41, sigma_scale=100.0)
    ref_out, ref_grads, cot = _run("nerfacc", *inputs, eps, None, 41)
    for backend in ("triton", "torch"):
        out, grads, _ = _run(backend, *inputs, eps, cot, 41)
        _assert_close(out, ref_out, TOL[torch.float32]["fwd"], OUT_NAMES)
        _assert_close(grads, ref_grads, TOL[torch.float32]["bwd"], ("d_sigmas", "d_rgbs"))


INF, NAN = float("inf"), float("nan")
# The interpreter runs the kernels in numpy, which warns about the (discarded) fast-path ``inf - inf``.
NON_FINITE = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


@NON_FINITE
def test_inf_density_repro_triton():
    """Regression (issue 9): the kernel took ``cumsum(s) - s``, so an inf density had ``T = inf - inf = NaN``.

    nerfacc 0.5.2 and the reference: ``T = [1, 0, 1]``, ``w = [1, 0, 1 - e^-1]``.
    """
    t0, t1 = torch.tensor([0.0, 1.0, 0.0], device=DEVICE), torch.tensor([1.0, 2.0, 1.0], device=DEVICE)
    rays = torch.tensor([0, 0, 1], device=DEVICE)
    for sigmas in ([INF, 1.0, 1.0], [NAN, 1.0, 1.0]):
        s = torch.tensor(sigmas, device=DEVICE)
        got = vr.render_weight_from_density(t0, t1, s, rays, 2, backend="triton")
        expected = reference.render_weight_from_density(t0, t1, s, rays, 2)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, equal_nan=True, **TOL[torch.float32]["fwd"])
    assert got[1].isnan().tolist() == [False, True, False]  # NaN: T of its own sample stays 1


def _poisoned(seed):
    """Mixed packed batch with inf / NaN densities at a ray's start, middle and chunk boundaries, plus NaN and +-inf
    colours (ray 7: its d/dsigmas hold +-inf, which an inexact suffix sum turns into NaN)."""
    counts = [5, 70, 3, 130, 4, 65, 9, 20]
    t0, t1, sigmas, rgbs, rays, n_rays = _packed(counts, seed, sigma_scale=5.0)
    first = [sum(counts[:r]) for r in range(len(counts))]
    sigmas[first[0] + 2] = INF
    sigmas[first[1] + 64] = NAN  # first sample of the ray's second chunk
    sigmas[first[3] + 63] = INF  # last sample of a chunk
    sigmas[first[5]] = NAN
    rgbs[first[6] + 4, 1] = NAN
    rgbs[first[7] + 7, 0], rgbs[first[7] + 12, 2] = INF, -INF
    clean = torch.tensor([r in (0, 2, 3, 4) for r in range(n_rays)], device=DEVICE)  # no NaN: inf rays end opaque
    return (t0, t1, sigmas, rgbs, rays, n_rays), clean


@NON_FINITE
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_non_finite_inputs_triton_matches_reference(eps):
    """Forward and gradients equal the reference, NaNs in the same places; rays without a NaN stay finite."""
    inputs, clean = _poisoned(seed=51)
    ref_out, ref_grads, cot = _run("torch", *inputs, eps, None, 51)
    tri_out, tri_grads, _ = _run("triton", *inputs, eps, cot, 51)
    for a, e, name in zip(tri_out + tri_grads, ref_out + ref_grads, OUT_NAMES + ("d_sigmas", "d_rgbs")):
        tol = TOL[torch.float32]["fwd" if name in OUT_NAMES else "bwd"]
        torch.testing.assert_close(a, e, equal_nan=True, **tol, msg=lambda m, name=name: f"{name}: {m}")
    rays = inputs[4]
    assert all(torch.isfinite(o[clean]).all() for o in tri_out[:3])
    assert torch.isfinite(tri_out[3][clean[rays]]).all() and torch.isfinite(tri_grads[0][clean[rays]]).all()
    assert tri_out[0].isnan().any(dim=1).tolist() == [False, eps == 0, False, False, False, True, True, False]
    assert tri_out[0][7].isinf().tolist() == [True, False, True] and tri_grads[0].isinf().any()


@NON_FINITE
def test_non_finite_render_weight_and_accumulate_triton():
    inputs, clean = _poisoned(seed=52)
    t0, t1, sigmas, rgbs, rays, n_rays = inputs
    gen = torch.Generator().manual_seed(53)
    cot = [torch.randn(sigmas.shape, generator=gen).to(DEVICE) for _ in range(3)]
    got = {}
    for backend in ("torch", "triton"):
        s = sigmas.clone().requires_grad_()
        outs = vr.render_weight_from_density(t0, t1, s, rays, n_rays, backend=backend)
        (grad,) = torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs, cot)), s)
        acc = vr.accumulate_along_rays(outs[0].detach(), rgbs, rays, n_rays, backend=backend)
        got[backend] = [o.detach() for o in outs] + [grad, acc]
    for a, e, name in zip(got["triton"], got["torch"], ("weights", "trans", "alphas", "d_sigmas", "acc_rgb")):
        tol = TOL[torch.float32]["bwd" if name == "d_sigmas" else "fwd"]
        torch.testing.assert_close(a, e, equal_nan=True, **tol, msg=lambda m, name=name: f"{name}: {m}")
    assert torch.isfinite(got["triton"][4][clean]).all()
