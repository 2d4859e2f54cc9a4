"""Pure-PyTorch ray marching through a multi-level binary occupancy grid (nerfacc ``traverse_grids`` behaviour).

Each ray marches from ``max(near, entry into the outermost grid)`` to ``min(far, exit)`` with step
``dt = clamp(t * cone_angle, step_size, 1e10)`` (constant for ``cone_angle = 0``; growing linearly with distance
otherwise, as Instant-NGP does for unbounded scenes). An interval is kept when its midpoint lies in an occupied cell
of the finest grid level that contains it. Levels are nested boxes, level ``l`` covering ``aabbs[l]``.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

_MAX_CANDIDATES_PER_CHUNK = 1 << 21


def ray_aabb_intersect(
    rays_o: Float[Tensor, "n 3"], rays_d: Float[Tensor, "n 3"], aabb: Float[Tensor, "6"]
) -> Tuple[Float[Tensor, "n"], Float[Tensor, "n"]]:
    """Entry and exit distance of each ray through an axis-aligned box (``t_far < t_near`` when it misses)."""
    inv_d = 1.0 / torch.where(rays_d.abs() < 1e-10, torch.full_like(rays_d, 1e-10), rays_d)
    t0 = (aabb[:3] - rays_o) * inv_d
    t1 = (aabb[3:] - rays_o) * inv_d
    t_near = torch.minimum(t0, t1).amax(dim=-1)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    return t_near, t_far


def _steps_needed(t_min: Tensor, t_max: Tensor, step_size: float, cone_angle: float) -> Tensor:
    """Number of marching steps from ``t_min`` past ``t_max`` for the step rule above."""
    span = (t_max - t_min).clamp(min=0)
    if cone_angle <= 0:
        return torch.ceil(span / step_size).long()
    t_switch = step_size / cone_angle  # beyond this, steps grow geometrically by (1 + cone_angle)
    linear = torch.ceil(((t_switch - t_min) / step_size).clamp(min=0))
    t_after_linear = torch.maximum(t_min + linear * step_size, t_min)
    geometric = torch.ceil(torch.log(t_max.clamp(min=1e-10) / t_after_linear.clamp(min=1e-10)) / math.log1p(cone_angle))
    steps = torch.where(t_max <= t_after_linear, torch.ceil(span / step_size), linear + geometric.clamp(min=0))
    return steps.long()


def _marching_positions(
    t_min: Tensor, n_steps: int, step_size: float, cone_angle: float
) -> Float[Tensor, "n k"]:
    """``t_k`` for ``k = 0..n_steps`` on every ray (closed form of the step recursion)."""
    k = torch.arange(n_steps + 1, device=t_min.device, dtype=t_min.dtype)[None, :]
    linear_t = t_min[:, None] + k * step_size
    if cone_angle <= 0:
        return linear_t
    t_switch = step_size / cone_angle
    n_linear = torch.ceil(((t_switch - t_min) / step_size).clamp(min=0))[:, None]
    t_start_geo = t_min[:, None] + n_linear * step_size
    geometric_t = t_start_geo * torch.pow(1.0 + cone_angle, (k - n_linear).clamp(min=0))
    return torch.where(k <= n_linear, linear_t, geometric_t)


def occupancy_lookup(
    points: Float[Tensor, "m 3"], binaries: Bool[Tensor, "levels r r r"], aabbs: Float[Tensor, "levels 6"]
) -> Bool[Tensor, "m"]:
    """Occupancy of each point in the finest level whose box contains it (False outside every level)."""
    occupied = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    unresolved = torch.ones_like(occupied)
    resolution = torch.tensor(binaries.shape[1:], device=points.device)
    for level in range(binaries.shape[0]):
        lo, hi = aabbs[level, :3], aabbs[level, 3:]
        inside = unresolved & ((points >= lo) & (points <= hi)).all(dim=-1)
        if inside.any():
            cell = ((points[inside] - lo) / (hi - lo) * resolution).long()
            cell = torch.minimum(cell.clamp(min=0), resolution - 1)
            occupied[inside] = binaries[level, cell[:, 0], cell[:, 1], cell[:, 2]]
        unresolved &= ~inside
    return occupied


def march_occupancy_grid(
    rays_o: Float[Tensor, "n_rays 3"],
    rays_d: Float[Tensor, "n_rays 3"],
    binaries: Bool[Tensor, "levels r r r"],
    aabbs: Float[Tensor, "levels 6"],
    near: Float[Tensor, "n_rays"],
    far: Float[Tensor, "n_rays"],
    step_size: float,
    cone_angle: float = 0.0,
) -> Tuple[Int[Tensor, "n_samples"], Float[Tensor, "n_samples"], Float[Tensor, "n_samples"]]:
    """March rays through the occupancy grid and return the packed intervals in occupied space.

    Args:
        rays_o: ray origins. rays_d: unit directions.
        binaries: occupancy per level, indexed ``[level, x, y, z]``.
        aabbs: box of every level ``[x0, y0, z0, x1, y1, z1]``, nested from finest to coarsest.
        near, far: per-ray marching limits (further clipped to the outermost box).
        step_size: minimum step. cone_angle: step growth with distance (0: constant steps).

    Returns:
        ``(ray_indices, t_starts, t_ends)``, sorted by ray then distance.

    Example:
        >>> occ = torch.ones(1, 4, 4, 4, dtype=torch.bool); box = torch.tensor([[-1.0, -1, -1, 1, 1, 1]])
        >>> ri, t0, t1 = march_occupancy_grid(torch.tensor([[0.0, 0, -3]]), torch.tensor([[0.0, 0, 1]]),
        ...                                   occ, box, torch.zeros(1), torch.full((1,), 10.0), 0.5)
        >>> t0.tolist()
        [2.0, 2.5, 3.0, 3.5]
    """
    with torch.no_grad():
        entry, exit_ = ray_aabb_intersect(rays_o, rays_d, aabbs[-1])
        t_min = torch.maximum(near, entry)
        t_max = torch.minimum(far, exit_)
        n_steps = _steps_needed(t_min, t_max, step_size, cone_angle)
        n_steps = torch.where(t_max > t_min, n_steps, torch.zeros_like(n_steps))
        outputs = []
        ray_order = torch.arange(rays_o.shape[0], device=rays_o.device)
        # Chunk rays so that rays x candidates stays bounded in memory (one host sync for the whole batch).
        widest_overall = int(n_steps.max()) if n_steps.numel() else 0
        rays_per_chunk = max(1, _MAX_CANDIDATES_PER_CHUNK // max(widest_overall, 1))
        for start in range(0, rays_o.shape[0] if widest_overall > 0 else 0, rays_per_chunk):
            rays = ray_order[start : start + rays_per_chunk]
            widest = int(n_steps[rays].max())
            if widest > 0:
                outputs.append(
                    _march_chunk(rays_o, rays_d, binaries, aabbs, t_min, t_max, n_steps, rays, widest, step_size,
                                 cone_angle)
                )
        if not outputs:
            empty = rays_o.new_zeros(0)
            return torch.zeros(0, dtype=torch.long, device=rays_o.device), empty, empty
        ray_indices, t_starts, t_ends = (torch.cat(parts) for parts in zip(*outputs))
        return ray_indices, t_starts, t_ends


def _march_chunk(rays_o, rays_d, binaries, aabbs, t_min, t_max, n_steps, rays, widest, step_size, cone_angle):
    t = _marching_positions(t_min[rays], widest, step_size, cone_angle)  # [r, widest + 1]
    t_starts, t_ends = t[:, :-1], torch.minimum(t[:, 1:], t_max[rays, None])
    valid = torch.arange(widest, device=t.device)[None, :] < n_steps[rays, None]
    valid &= t_starts < t_max[rays, None]
    mids = 0.5 * (t_starts + t_ends)
    points = rays_o[rays, None, :] + mids[..., None] * rays_d[rays, None, :]
    keep = valid.clone()
    keep[valid] = occupancy_lookup(points[valid], binaries, aabbs)
    ray_indices = rays[:, None].expand_as(keep)[keep]
    return ray_indices, t_starts[keep], t_ends[keep]
