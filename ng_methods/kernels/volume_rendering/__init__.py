"""Volume-rendering compositing over packed samples, with backend dispatch.

``backend="auto"`` uses nerfacc's CUDA kernels for CUDA tensors and the PyTorch reference otherwise; both compute
the same function (see ``reference.py``).
"""

from __future__ import annotations

from typing import Literal, Tuple

from jaxtyping import Float, Int
from torch import Tensor

from ng_methods.kernels.volume_rendering import reference
from ng_methods.kernels.volume_rendering.reference import exclusive_sum_per_ray

Backend = Literal["auto", "torch", "nerfacc"]

__all__ = ["render_weight_from_density", "render_visibility_from_density", "accumulate_along_rays", "exclusive_sum_per_ray"]


def _use_nerfacc(backend: Backend, tensor: Tensor) -> bool:
    if backend == "torch":
        return False
    if backend == "nerfacc":
        return True
    return tensor.is_cuda


def render_weight_from_density(
    t_starts: Float[Tensor, "n_samples"],
    t_ends: Float[Tensor, "n_samples"],
    sigmas: Float[Tensor, "n_samples"],
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
    backend: Backend = "auto",
) -> Tuple[Float[Tensor, "n_samples"], Float[Tensor, "n_samples"], Float[Tensor, "n_samples"]]:
    """Compositing weights, transmittance and opacity of packed samples. See :func:`reference.render_weight_from_density`."""
    if _use_nerfacc(backend, sigmas):
        import nerfacc

        return nerfacc.render_weight_from_density(t_starts, t_ends, sigmas, ray_indices=ray_indices, n_rays=n_rays)
    return reference.render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays)


def render_visibility_from_density(
    t_starts: Float[Tensor, "n_samples"],
    t_ends: Float[Tensor, "n_samples"],
    sigmas: Float[Tensor, "n_samples"],
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
    backend: Backend = "auto",
):
    """Mask of samples that are still visible and opaque enough. See :func:`reference.render_visibility_from_density`."""
    if _use_nerfacc(backend, sigmas):
        import nerfacc

        return nerfacc.render_visibility_from_density(
            t_starts, t_ends, sigmas, ray_indices=ray_indices, n_rays=n_rays,
            early_stop_eps=early_stop_eps, alpha_thre=alpha_thre,
        )
    return reference.render_visibility_from_density(
        t_starts, t_ends, sigmas, ray_indices, n_rays, early_stop_eps=early_stop_eps, alpha_thre=alpha_thre
    )


def accumulate_along_rays(
    weights: Float[Tensor, "n_samples"],
    values: Float[Tensor, "n_samples c"] | None,
    ray_indices: Int[Tensor, "n_samples"],
    n_rays: int,
    backend: Backend = "auto",
) -> Float[Tensor, "n_rays c"]:
    """Per-ray weighted sums of ``values`` (or of the weights when ``values`` is None)."""
    if _use_nerfacc(backend, weights):
        import nerfacc

        return nerfacc.accumulate_along_rays(weights, values, ray_indices=ray_indices, n_rays=n_rays)
    return reference.accumulate_along_rays(weights, values, ray_indices, n_rays)
