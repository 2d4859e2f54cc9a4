"""Pure-PyTorch volume-rendering compositing over packed ray samples (nerfacc semantics).

Samples are *packed*: a flat list of intervals ``[t_start, t_end]`` with the ray each belongs to, sorted by ray
and, within a ray, by ``t``. This is the CPU path and the spec the fused GPU kernels are checked against.

Non-finite inputs follow nerfacc 0.5.2 (its batched path is ``torch.cumsum`` per ray, its packed CUDA path a
per-ray scan; both are plain IEEE arithmetic along each ray) and never reach another ray: a ``+inf`` optical depth
``sigma * dt`` has opacity 1 and weight ``T``, and every later sample of its ray has ``T = 0`` and weight 0; a
``NaN`` optical depth has ``NaN`` opacity and weight, and every later sample of its ray has ``NaN`` transmittance
and weight (so does ``inf * 0``: an infinite density over an empty interval).
"""

from __future__ import annotations

from typing import Tuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


def exclusive_sum_per_ray(
    values: Float[Tensor, "n_samples"], ray_indices: Int[Tensor, "n_samples"], n_rays: int
) -> Float[Tensor, "n_samples"]:
    """Sum of the previous samples' ``values`` on the same ray (0 for a ray's first sample).

    A segmented scan (Hillis-Steele: ``log2(longest ray)`` vectorised steps, each adding the partial sum ``d``
    samples back when that sample is on the same ray), taken in float64 and rounded once to ``values.dtype``. Only
    samples of one ray are ever added together, so an ``inf`` / ``NaN`` stays on its ray (and only affects the
    sums *after* it), and a ray's precision does not depend on the rays before it. Differentiable (the gradient is
    the reverse exclusive sum of the incoming gradient along the ray, nerfacc's backward).

    Args:
        values: ``[n_samples]`` per-sample values, packed (sorted by ray).
        ray_indices: ``[n_samples]`` int, the ray of each sample, non-decreasing.
        n_rays: number of rays.

    Returns:
        ``[n_samples]``, same dtype as ``values``.
    """
    n = values.shape[0]
    if n == 0:
        return values
    counts = torch.bincount(ray_indices, minlength=n_rays)
    first = torch.cumsum(counts, dim=0) - counts  # index of each ray's first sample
    pos = torch.arange(n, device=values.device) - first[ray_indices]  # index within the ray
    x = values.double()
    # Shift by one sample within each ray (exclusive), then an inclusive segmented scan.
    scan = torch.where(pos > 0, torch.cat([x.new_zeros(1), x[:-1]]), 0.0)
    longest = int(counts.max())
    step = 1
    while step < longest:
        earlier = torch.where(pos[step:] >= step, scan[:-step], 0.0)  # selects, never multiplies: NaN stays put
        scan = torch.cat([scan[:step], scan[step:] + earlier])
        step *= 2
    return scan.to(values.dtype)


def render_transmittance_from_density(
    t_starts: Float[Tensor, "n_samples"],
    t_ends: Float[Tensor, "n_samples"],
    sigmas: Float[Tensor, "n_samples"],
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
) -> Tuple[Float[Tensor, "n_samples"], Float[Tensor, "n_samples"]]:
    """Transmittance before each sample and the sample's opacity (nerfacc's ``render_transmittance_from_density``).

    ``alpha = 1 - exp(-sigma * (t_end - t_start))``, ``T_i = exp(-sum_{j<i} sigma_j * dt_j)`` per ray. Non-finite
    optical depths act on their own ray only, after the sample (module docstring).

    Args:
        t_starts, t_ends: ``[n_samples]`` interval ends along the ray.
        sigmas: ``[n_samples]`` densities.
        ray_indices: ``[n_samples]`` int, non-decreasing.
        n_rays: number of rays.

    Returns:
        ``(transmittance, alphas)``, each ``[n_samples]``.
    """
    sigmas_dt = sigmas * (t_ends - t_starts)
    transmittance = torch.exp(-exclusive_sum_per_ray(sigmas_dt, ray_indices, n_rays))
    alphas = 1.0 - torch.exp(-sigmas_dt)
    return transmittance, alphas


def render_weight_from_density(
    t_starts: Float[Tensor, "n_samples"],
    t_ends: Float[Tensor, "n_samples"],
    sigmas: Float[Tensor, "n_samples"],
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
) -> Tuple[Float[Tensor, "n_samples"], Float[Tensor, "n_samples"], Float[Tensor, "n_samples"]]:
    """Compositing weights ``w_i = T_i * alpha_i`` (nerfacc's ``render_weight_from_density``).

    Inputs as :func:`render_transmittance_from_density`. An infinite density has weight ``T_i`` and the rest of its
    ray weight 0; a ``NaN`` one makes its own and the later weights of its ray ``NaN``; other rays are unaffected.

    Returns:
        ``(weights, transmittance, alphas)``, each ``[n_samples]``.

    Example:
        >>> t0 = torch.tensor([0.0, 1.0, 0.0]); t1 = t0 + 1.0
        >>> w, T, a = render_weight_from_density(t0, t1, torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0, 0, 1]), 2)
        >>> [round(x, 3) for x in w.tolist()]
        [0.632, 0.233, 0.0]
    """
    transmittance, alphas = render_transmittance_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays)
    return transmittance * alphas, transmittance, alphas


def render_visibility_from_density(
    t_starts: Float[Tensor, "n_samples"],
    t_ends: Float[Tensor, "n_samples"],
    sigmas: Float[Tensor, "n_samples"],
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
) -> Bool[Tensor, "n_samples"]:
    """Samples worth shading: transmittance still ``>= early_stop_eps`` and opacity ``>= alpha_thre`` (if > 0).

    ``[n_samples]`` bool. A ``NaN`` transmittance or opacity compares False: the samples after a ``NaN`` density
    (and, with ``alpha_thre > 0``, the ``NaN`` sample itself) are not visible, as in nerfacc.
    """
    transmittance, alphas = render_transmittance_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays)
    visible = transmittance >= early_stop_eps
    if alpha_thre > 0:
        visible = visible & (alphas >= alpha_thre)
    return visible


def accumulate_along_rays(
    weights: Float[Tensor, "n_samples"],
    values: Float[Tensor, "n_samples c"] | None,
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
) -> Float[Tensor, "n_rays c"]:
    """Per-ray weighted sum ``sum_i w_i * v_i`` (``values=None`` sums the weights: the accumulation).

    ``weights [n_samples]``, ``values [n_samples, c]`` -> ``[n_rays, c]`` (``c = 1`` without values); any sample
    order. Plain IEEE arithmetic like nerfacc's ``accumulate_along_rays`` (``index_add`` of ``w * v``): a ``NaN``
    or infinite weight or value makes its own ray's channel ``NaN`` / ``inf`` (``NaN`` also at weight 0, as
    ``0 * inf`` is ``NaN``); other rays are unaffected.
    """
    src = weights[:, None] if values is None else weights[:, None] * values
    out = torch.zeros((n_rays, src.shape[-1]), dtype=src.dtype, device=src.device)
    return out.index_add(0, ray_indices, src)
