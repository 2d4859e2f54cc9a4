"""Ray marching through a multi-level occupancy grid, with backend dispatch.

``backend="auto"``: nerfacc's CUDA ``traverse_grids`` for CUDA tensors, the PyTorch reference otherwise.
"""

from __future__ import annotations

from typing import Literal, Tuple

from jaxtyping import Bool, Float, Int
from torch import Tensor

from ng_methods.kernels.ray_marching import reference
from ng_methods.kernels.ray_marching.reference import occupancy_lookup, ray_aabb_intersect

Backend = Literal["auto", "torch", "nerfacc"]

__all__ = ["march_occupancy_grid", "occupancy_lookup", "ray_aabb_intersect"]


def march_occupancy_grid(
    rays_o: Float[Tensor, "n_rays 3"],
    rays_d: Float[Tensor, "n_rays 3"],
    binaries: Bool[Tensor, "levels r r r"],
    aabbs: Float[Tensor, "levels 6"],
    near: Float[Tensor, "n_rays"],
    far: Float[Tensor, "n_rays"],
    step_size: float,
    cone_angle: float = 0.0,
    backend: Backend = "auto",
) -> Tuple[Int[Tensor, "n_samples"], Float[Tensor, "n_samples"], Float[Tensor, "n_samples"]]:
    """Packed ``(ray_indices, t_starts, t_ends)`` of the marching intervals in occupied space.

    See :func:`ng_methods.kernels.ray_marching.reference.march_occupancy_grid` for the semantics.
    """
    use_nerfacc = backend == "nerfacc" or (backend == "auto" and rays_o.is_cuda)
    if use_nerfacc:
        from nerfacc.grid import traverse_grids

        intervals, samples = traverse_grids(
            rays_o, rays_d, binaries, aabbs, near_planes=near, far_planes=far,
            step_size=step_size, cone_angle=cone_angle,
        )
        return samples.ray_indices, intervals.vals[intervals.is_left], intervals.vals[intervals.is_right]
    return reference.march_occupancy_grid(rays_o, rays_d, binaries, aabbs, near, far, step_size, cone_angle)
