"""Pure-PyTorch volume-rendering compositing over packed ray samples (nerfacc semantics).

Samples are *packed*: a flat list of intervals ``[t_start, t_end]`` with the ray each belongs to, sorted by ray
and, within a ray, by ``t``. This is the CPU path and the spec the fused GPU kernels are checked against.
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

    The running sum is taken in float64 and the per-ray prefix is subtracted, so rays late in a large batch do not
    lose precision to the sum over all earlier rays.
    """
    if values.numel() == 0:
        return values
    running = torch.cumsum(values.double(), dim=0) - values.double()  # exclusive sum over the whole batch
    counts = torch.bincount(ray_indices, minlength=n_rays)
    first = torch.cumsum(counts, dim=0) - counts  # index of each ray's first sample
    exclusive = running - running[first[ray_indices]]  # minus everything before the sample's ray
    return exclusive.to(values.dtype)


def render_transmittance_from_density(
    t_starts: Float[Tensor, "n_samples"],
    t_ends: Float[Tensor, "n_samples"],
    sigmas: Float[Tensor, "n_samples"],
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
) -> Tuple[Float[Tensor, "n_samples"], Float[Tensor, "n_samples"]]:
    """Transmittance before each sample and the sample's opacity.

    ``alpha = 1 - exp(-sigma * (t_end - t_start))``, ``T_i = exp(-sum_{j<i} sigma_j * dt_j)`` per ray.

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
    """Samples worth shading: transmittance still ``>= early_stop_eps`` and opacity ``>= alpha_thre`` (if > 0)."""
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
    """Per-ray weighted sum ``sum_i w_i * v_i`` (``values=None`` sums the weights: the accumulation)."""
    src = weights[:, None] if values is None else weights[:, None] * values
    out = torch.zeros((n_rays, src.shape[-1]), dtype=src.dtype, device=src.device)
    return out.index_add(0, ray_indices, src)
