"""Ray marching through a multi-level occupancy grid, with backend dispatch.

``backend="auto"``: nerfacc's CUDA ``traverse_grids`` for CUDA tensors, the PyTorch reference otherwise. The
reference is a float32 transcription of nerfacc 0.5.2's kernel, so both backends return the same samples (bit for bit
under IEEE float32; on a GPU, nvcc's FMA contraction can move a cell face by an ulp, see ``_traversal``).
"""

from __future__ import annotations

from typing import Literal, Tuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ng_methods.kernels.ray_marching import reference
from ng_methods.kernels.ray_marching.reference import marchable_rays, occupancy_lookup, ray_aabb_intersect

Backend = Literal["auto", "torch", "nerfacc"]

__all__ = ["march_occupancy_grid", "marchable_rays", "occupancy_lookup", "ray_aabb_intersect"]


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
    """Packed ``(ray_indices, t_starts, t_ends)`` of the marching intervals in occupied space (nerfacc's samples).

    The step grid starts at ``near`` (``t[k+1] = t[k] + clamp(t[k] * cone_angle, step_size, 1e10)``), a step is kept
    while its midpoint lies in an occupied cell before ``min(far, box exit)``, and intervals are not clipped to the
    box or to ``far``. See :mod:`ng_methods.kernels.ray_marching.reference` for the exact rules.

    Non-finite inputs: a ray with a NaN/inf origin or direction component, an all-zero direction, a NaN/inf ``near``
    or a NaN ``far`` produces no samples (``far = inf`` is fine), on both backends: they are masked (``near = inf``)
    before nerfacc's kernel runs, which would otherwise loop forever on a NaN or -inf ``near``, a NaN origin or a
    zero direction with an infinite ``far``, and would treat a NaN ``far`` as infinite. A bad ray
    never changes the samples of the other rays. Marching costs one iteration per step from ``near`` on, as in
    nerfacc; a ray whose float32 step no longer advances ``t`` (``t + dt == t``, e.g. ``|near| > 2**23 * step_size``)
    gets no samples from the reference, while nerfacc's kernel would never finish it (not masked: pass sane planes).
    """
    use_nerfacc = backend == "nerfacc" or (backend == "auto" and rays_o.is_cuda)
    if use_nerfacc:
        from nerfacc.grid import traverse_grids

        near = torch.where(marchable_rays(rays_o, rays_d, near, far), near, torch.full_like(near, float("inf")))
        intervals, samples = traverse_grids(
            rays_o, rays_d, binaries, aabbs, near_planes=near, far_planes=far,
            step_size=step_size, cone_angle=cone_angle,
        )
        return samples.ray_indices, intervals.vals[intervals.is_left], intervals.vals[intervals.is_right]
    return reference.march_occupancy_grid(rays_o, rays_d, binaries, aabbs, near, far, step_size, cone_angle)
