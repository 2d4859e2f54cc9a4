"""Peers: our packed volume-rendering reference against nerfacc 0.5.2's batched path and nerfstudio 1.1.5's
``RaySamples.get_weights`` and renderers. Both peers are pure PyTorch on ``[n_rays, n_samples]`` tensors (nerfacc's
packed path is CUDA only; it is checked at the end, on CUDA), so the packed inputs are padded to that layout: a
padding sample has ``sigma = 0`` and an empty interval, weight 0, and comes after the ray's real samples.

Ours -> peer:

- ``reference.render_transmittance_from_density`` / ``render_weight_from_density`` /
  ``render_visibility_from_density`` -> the nerfacc functions of the same names (values and d/dsigmas);
- ``composite`` (``backend="torch"``) -> nerfacc ``render_weight_from_density`` + ``accumulate_along_rays``, and
  -> nerfstudio ``RaySamples.get_weights`` + ``RGBRenderer`` / ``AccumulationRenderer`` / ``DepthRenderer("expected")``
  (batched and packed; values and d/dsigmas, d/drgbs);
- our weights -> nerfacc ``render_weight_from_alpha`` on our alphas (float64; the alpha form computes ``1 - alpha``);
- non-finite densities -> nerfacc batched (the semantics our docstrings promise), and nerfstudio's one deviation.

Tolerances are float rounding: both sides are the same formulas up to summation order (ours: a float64 segmented
scan; theirs: ``torch.cumsum`` per row). float64 ``rtol=1e-13, atol=1e-14`` (observed <= 8e-15 relative); float32
values ``rtol=2e-6, atol=1e-7`` (per-ray sums over up to 150 samples; the per-sample weights, transmittances, opacities
and their d/dsigmas come out bit-identical to nerfacc's on CPU, which is not asserted), gradients ``rtol=1e-5``
(observed <= 3e-6 relative, sums of O(100) terms with cancellation).
"""

from __future__ import annotations

import importlib.metadata

import nerfacc
import pytest
import torch
from nerfstudio.cameras.rays import Frustums, RaySamples
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer

from ng_methods.kernels import volume_rendering as vr
from ng_methods.kernels.volume_rendering import reference

NERFACC, NERFSTUDIO = "0.5.2", "1.1.5"  # pinned in pyproject.toml
NERFACC_ID, NERFSTUDIO_ID = f"nerfacc {NERFACC}", f"nerfstudio {NERFSTUDIO}"
TOL = {
    torch.float64: dict(fwd=dict(rtol=1e-13, atol=1e-14), bwd=dict(rtol=1e-13, atol=1e-14)),
    torch.float32: dict(fwd=dict(rtol=2e-6, atol=1e-7), bwd=dict(rtol=1e-5, atol=1e-7)),
}
DTYPES = [torch.float64, torch.float32]
COUNTS = [0, 1, 2, 7, 150, 0, 33, 64, 65, 3, 129, 1, 12]  # empty and single-sample rays, several scan steps
INF, NAN = float("inf"), float("nan")


@pytest.fixture(autouse=True)
def pinned_peers():
    assert nerfacc.__version__ == NERFACC, f"peer changed: nerfacc {nerfacc.__version__} (pinned in pyproject.toml)"
    installed = importlib.metadata.version("nerfstudio")
    assert installed == NERFSTUDIO, f"peer changed: nerfstudio {installed} (pinned in pyproject.toml)"


def _ids(peer):
    return lambda dtype: f"{peer}-{str(dtype).removeprefix('torch.')}"


def _scene(dtype, seed, counts=COUNTS, sigma_scale=30.0):
    """Packed ``(t_starts, t_ends, sigmas, rgbs, ray_indices, n_rays)`` with varying interval lengths."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.tensor(counts)
    rays = torch.repeat_interleave(torch.arange(len(counts)), counts)
    n = rays.shape[0]
    dt = torch.rand(n, generator=gen, dtype=torch.float64) * 0.05 + 1e-3
    t_starts = torch.rand(n, generator=gen, dtype=torch.float64) * 0.02 + torch.cumsum(dt, 0)
    sigmas = torch.rand(n, generator=gen, dtype=torch.float64) * sigma_scale
    sigmas[torch.rand(n, generator=gen) < 0.2] = 0.0  # empty space
    rgbs = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    return t_starts.to(dtype), (t_starts + dt).to(dtype), sigmas.to(dtype), rgbs.to(dtype), rays, len(counts)


class Batched:
    """Packed <-> padded ``[n_rays, n_samples(, c)]``: sample ``i`` sits at ``(ray_indices[i], position in ray)``."""

    def __init__(self, ray_indices, n_rays):
        counts = torch.bincount(ray_indices, minlength=n_rays)
        self.index = (ray_indices, torch.arange(ray_indices.shape[0]) - (torch.cumsum(counts, 0) - counts)[ray_indices])
        self.shape = (n_rays, int(counts.max()))

    def pad(self, x):
        """Differentiable; padding is 0."""
        return torch.zeros(self.shape + x.shape[1:], dtype=x.dtype).index_put(self.index, x)

    def unpad(self, x):
        return x[self.index]


def _grads(outputs, inputs, seed):
    """Gradients of one fixed random linear functional of ``outputs``."""
    gen = torch.Generator().manual_seed(seed)
    loss = sum((torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) * o).sum() for o in outputs)
    return torch.autograd.grad(loss, inputs)


def _assert_close(ours, theirs, names, peer, equal_nan=False, **tol):
    for name, x, y in zip(names, ours, theirs):
        torch.testing.assert_close(x, y, equal_nan=equal_nan, **tol, msg=lambda m, n=name: f"{n} vs {peer}: {m}")


# ------------------------------------------------------------------------------------------------ nerfacc
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(NERFACC_ID))
def test_weights_and_transmittance_match_nerfacc(dtype):
    """Peer: nerfacc 0.5.2 ``render_weight_from_density`` / ``render_transmittance_from_density`` (batched)."""
    t0, t1, sigmas, _, rays, n_rays = _scene(dtype, seed=1)
    sigmas.requires_grad_()
    b = Batched(rays, n_rays)
    ours = list(reference.render_weight_from_density(t0, t1, sigmas, rays, n_rays))
    theirs = [b.unpad(x) for x in nerfacc.render_weight_from_density(b.pad(t0), b.pad(t1), b.pad(sigmas))]
    _assert_close(ours, theirs, ("weights", "trans", "alphas"), NERFACC_ID, **TOL[dtype]["fwd"])
    _assert_close(_grads(ours, [sigmas], 2), _grads(theirs, [sigmas], 2), ["d/dsigmas"], NERFACC_ID,
                  **TOL[dtype]["bwd"])
    ours_t = list(reference.render_transmittance_from_density(t0, t1, sigmas, rays, n_rays))
    theirs_t = [b.unpad(x) for x in nerfacc.render_transmittance_from_density(b.pad(t0), b.pad(t1), b.pad(sigmas))]
    _assert_close(ours_t, theirs_t, ("trans", "alphas"), NERFACC_ID, **TOL[dtype]["fwd"])
    _assert_close(_grads(ours_t, [sigmas], 3), _grads(theirs_t, [sigmas], 3), ["d/dsigmas"], NERFACC_ID,
                  **TOL[dtype]["bwd"])


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(NERFACC_ID))
def test_visibility_matches_nerfacc(dtype):
    """Peer: nerfacc 0.5.2 ``render_visibility_from_density`` (batched), several thresholds."""
    t0, t1, sigmas, _, rays, n_rays = _scene(dtype, seed=4)
    b = Batched(rays, n_rays)
    for eps, alpha_thre in ((1e-4, 0.0), (1e-2, 0.05), (0.5, 0.3)):
        ours = vr.render_visibility_from_density(t0, t1, sigmas, rays, n_rays, eps, alpha_thre, backend="torch")
        theirs = nerfacc.render_visibility_from_density(
            b.pad(t0), b.pad(t1), b.pad(sigmas), early_stop_eps=eps, alpha_thre=alpha_thre
        )
        assert torch.equal(ours, b.unpad(theirs)), (eps, alpha_thre)
        assert 0 < ours.sum() < ours.numel()


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(NERFACC_ID))
def test_composite_matches_nerfacc(dtype):
    """Peer: nerfacc 0.5.2 ``render_weight_from_density`` + ``accumulate_along_rays`` (batched), d/dsigmas, d/drgbs."""
    t0, t1, sigmas, rgbs, rays, n_rays = _scene(dtype, seed=5)
    sigmas.requires_grad_()
    rgbs.requires_grad_()
    b = Batched(rays, n_rays)
    ours = list(vr.composite(t0, t1, sigmas, rgbs, rays, n_rays, backend="torch"))
    weights = nerfacc.render_weight_from_density(b.pad(t0), b.pad(t1), b.pad(sigmas))[0]
    theirs = [
        nerfacc.accumulate_along_rays(weights, b.pad(rgbs)),
        nerfacc.accumulate_along_rays(weights, b.pad((t0 + t1)[:, None] / 2)),
        nerfacc.accumulate_along_rays(weights, None),
        b.unpad(weights),
    ]
    _assert_close(ours, theirs, ("rgb", "depth", "accumulation", "weights"), NERFACC_ID, **TOL[dtype]["fwd"])
    _assert_close(_grads(ours, [sigmas, rgbs], 6), _grads(theirs, [sigmas, rgbs], 6), ["d/dsigmas", "d/drgbs"],
                  NERFACC_ID, **TOL[dtype]["bwd"])


def test_weights_match_nerfacc_from_alpha():
    """Peer: nerfacc 0.5.2 ``render_weight_from_alpha`` (``T = prod(1 - alpha)``) on our alphas, float64.

    ``1 - alpha`` cancels: its absolute error is ``eps64``, which ``T`` inherits relative to ``exp(-s)``; the
    optical depths here stay below 3, so that is at most 20 * eps64 relative per factor.
    """
    t0, t1, sigmas, _, rays, n_rays = _scene(torch.float64, seed=7, sigma_scale=30.0)
    b = Batched(rays, n_rays)
    weights, trans, alphas = reference.render_weight_from_density(t0, t1, sigmas, rays, n_rays)
    assert (sigmas * (t1 - t0)).max() < 3
    theirs_w, theirs_t = nerfacc.render_weight_from_alpha(b.pad(alphas))
    _assert_close([weights, trans], [b.unpad(theirs_w), b.unpad(theirs_t)], ("weights", "trans"), NERFACC_ID,
                  **TOL[torch.float64]["fwd"])


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(NERFACC_ID))
def test_non_finite_densities_match_nerfacc(dtype):
    """Peer: nerfacc 0.5.2 batched: inf ends its ray (T = 0 after, own weight T), NaN poisons its ray after it.

    Same values, NaNs in the same places, same gradients (NaN for a NaN ray); rays without a NaN stay finite.
    """
    t0, t1, sigmas, rgbs, rays, n_rays = _scene(dtype, seed=8)
    first = [sum(COUNTS[:r]) for r in range(len(COUNTS))]
    sigmas[[first[1], first[4] + 20, first[8] + 63]] = INF
    sigmas[[first[4] + 90, first[6] + 5, first[12] + 11]] = NAN
    sigmas[first[3]], t1[first[3]] = INF, t0[first[3]]  # inf * 0 = NaN
    sigmas.requires_grad_()
    b = Batched(rays, n_rays)
    ours = list(reference.render_weight_from_density(t0, t1, sigmas, rays, n_rays))
    theirs = [b.unpad(x) for x in nerfacc.render_weight_from_density(b.pad(t0), b.pad(t1), b.pad(sigmas))]
    _assert_close(ours, theirs, ("weights", "trans", "alphas"), NERFACC_ID, equal_nan=True, **TOL[dtype]["fwd"])
    _assert_close(_grads(ours, [sigmas], 9), _grads(theirs, [sigmas], 9), ["d/dsigmas"], NERFACC_ID,
                  equal_nan=True, **TOL[dtype]["bwd"])
    nan_rays = torch.tensor([3, 4, 6, 12])
    clean = ~torch.isin(rays, nan_rays)
    assert all(torch.isfinite(x[clean]).all() for x in ours)
    assert ours[0][~clean].isnan().any() and ours[1][first[8] + 64 : first[9]].eq(0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nerfacc's packed path is CUDA only")
def test_non_finite_densities_match_nerfacc_packed_cuda():
    """Peer: nerfacc 0.5.2 packed (CUDA per-ray scan), float32: same non-finite semantics as the batched path."""
    t0, t1, sigmas, _, rays, n_rays = [x.cuda() if torch.is_tensor(x) else x for x in _scene(torch.float32, seed=10)]
    first = [sum(COUNTS[:r]) for r in range(len(COUNTS))]
    sigmas[[first[1], first[8] + 64]], sigmas[[first[4] + 90, first[12] + 11]] = INF, NAN
    ours = reference.render_weight_from_density(t0, t1, sigmas, rays, n_rays)
    theirs = nerfacc.render_weight_from_density(t0, t1, sigmas, ray_indices=rays, n_rays=n_rays)
    # nerfacc's packed scan sums in float32 (ours in float64): the optical depth's rounding reaches T as exp(-S) S eps.
    _assert_close(ours, theirs, ("weights", "trans", "alphas"), NERFACC_ID, equal_nan=True, rtol=1e-5, atol=2e-6)


# ------------------------------------------------------------------------------------------------ nerfstudio
def _ray_samples(b, t0, t1):
    """nerfstudio ``RaySamples`` in the padded layout (only ``starts``, ``ends`` and ``deltas`` are read)."""
    starts, ends = b.pad(t0)[..., None], b.pad(t1)[..., None]
    origins = torch.zeros(starts.shape[:-1] + (3,), dtype=starts.dtype)
    ones = torch.ones_like(starts)
    frustums = Frustums(origins=origins, directions=origins, starts=starts, ends=ends, pixel_area=ones)
    return RaySamples(frustums=frustums, deltas=ends - starts)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(NERFSTUDIO_ID))
def test_weights_match_nerfstudio_get_weights(dtype):
    """Peer: nerfstudio 1.1.5 ``RaySamples.get_weights`` (batched; ``nan_to_num`` is a no-op on finite inputs)."""
    t0, t1, sigmas, _, rays, n_rays = _scene(dtype, seed=11)
    sigmas.requires_grad_()
    b = Batched(rays, n_rays)
    ours = reference.render_weight_from_density(t0, t1, sigmas, rays, n_rays)[0]
    theirs = b.unpad(_ray_samples(b, t0, t1).get_weights(b.pad(sigmas)[..., None])[..., 0])
    assert theirs.dtype == dtype
    _assert_close([ours], [theirs], ["weights"], NERFSTUDIO_ID, **TOL[dtype]["fwd"])
    _assert_close(_grads([ours], [sigmas], 12), _grads([theirs], [sigmas], 12), ["d/dsigmas"], NERFSTUDIO_ID,
                  **TOL[dtype]["bwd"])


def _nerfstudio_render(b, t0, t1, sigmas, rgbs, rays, n_rays, packed):
    """nerfstudio's pipeline: ``get_weights`` then the RGB (white background), accumulation and expected-depth
    renderers, in the batched layout or (``packed``) with ``ray_indices`` / ``num_rays``."""
    samples = _ray_samples(b, t0, t1)
    weights = samples.get_weights(b.pad(sigmas)[..., None])
    values, kwargs = (weights, b.pad(rgbs)), {}
    if packed:
        samples = samples[b.index]
        weights, values = weights[b.index], (weights[b.index], rgbs)
        kwargs = dict(ray_indices=rays, num_rays=n_rays)
    rgb = RGBRenderer(background_color="white")(rgb=values[1], weights=values[0], **kwargs)
    accumulation = AccumulationRenderer()(weights=weights, **kwargs)
    depth = DepthRenderer(method="expected")(weights=weights, ray_samples=samples, **kwargs)
    return rgb, accumulation, depth


@pytest.mark.parametrize("packed", [False, True], ids=["batched", "packed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(NERFSTUDIO_ID))
def test_composite_matches_nerfstudio_renderers(dtype, packed):
    """Peer: nerfstudio 1.1.5 ``RGBRenderer`` (training mode, white background), ``AccumulationRenderer``,
    ``DepthRenderer(method="expected")`` on ``RaySamples.get_weights``; d/dsigmas and d/drgbs.

    Our outputs go through nerfstudio's documented post-processing: ``rgb + white * (1 - acc)``, and
    ``clip(depth / (acc + 1e-10), min step, max step)`` (our depth is not normalised).
    """
    t0, t1, sigmas, rgbs, rays, n_rays = _scene(dtype, seed=13)
    sigmas.requires_grad_()
    rgbs.requires_grad_()
    b = Batched(rays, n_rays)
    rgb, depth, acc, _ = vr.composite(t0, t1, sigmas, rgbs, rays, n_rays, backend="torch")
    steps = (t0 + t1) / 2
    lo, hi = (steps if packed else b.pad(steps)).aminmax()  # the clip range nerfstudio sees (padding: t = 0)
    ours = [rgb + (1 - acc), acc, torch.clip(depth / (acc + 1e-10), lo, hi)]
    theirs = list(_nerfstudio_render(b, t0, t1, sigmas, rgbs, rays, n_rays, packed))
    _assert_close(ours, theirs, ("rgb", "accumulation", "depth"), NERFSTUDIO_ID, **TOL[dtype]["fwd"])
    _assert_close(_grads(ours, [sigmas, rgbs], 14), _grads(theirs, [sigmas, rgbs], 14), ["d/dsigmas", "d/drgbs"],
                  NERFSTUDIO_ID, **TOL[dtype]["bwd"])


def test_nan_density_nerfstudio_deviation():
    """Peer: nerfstudio 1.1.5 ``RaySamples.get_weights`` zeroes NaN weights (``nan_to_num``); we follow nerfacc and
    keep them NaN (a NaN density is a bug upstream). Where neither side is NaN the weights agree."""
    t0, t1, sigmas, _, rays, n_rays = _scene(torch.float64, seed=15)
    first = [sum(COUNTS[:r]) for r in range(len(COUNTS))]
    sigmas[first[4] + 90] = NAN
    b = Batched(rays, n_rays)
    ours = reference.render_weight_from_density(t0, t1, sigmas, rays, n_rays)[0]
    theirs = b.unpad(_ray_samples(b, t0, t1).get_weights(b.pad(sigmas)[..., None])[..., 0])
    poisoned = ours.isnan()
    assert poisoned.sum() == COUNTS[4] - 90 and torch.all(theirs[poisoned] == 0)
    torch.testing.assert_close(ours[~poisoned], theirs[~poisoned], **TOL[torch.float64]["fwd"])
