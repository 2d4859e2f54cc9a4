"""Pure-PyTorch transcription of nerfacc 0.5.2 ``traverse_grids`` (``nerfacc/cuda/csrc/grid.cu`` @d84cdf3).

It returns the samples nerfacc's CUDA kernel returns (same intervals, same count and order per ray), computed in
float32 in the kernel's operation order. Per ray:

1. Every level's box is hit with grid.cu's slab test (a hit needs the exit ahead of the origin; misses are ``inf``).
   The ``2 * levels`` entry/exit distances are sorted; each consecutive pair is a *segment*, marched in the level of
   the box just entered (after an exit: the box exited next), clipped to ``[near, far]``; unhit or empty ones skip.
2. ``t`` starts at ``near`` (not at the box entry) and moves by ``dt(t) = clamp(t * cone_angle, step_size, 1e10)``;
   a step from ``t`` has the midpoint ``t + dt / 2``.
3. Each segment is walked cell by cell by a 3-D DDA (per-axis crossing distances accumulated in float32, from the
   cell of ``t_min + 1e-6`` to the cell of ``t_max - 1e-6``). A cell left at ``c = min(crossing, t_max)`` takes the
   pending steps whose midpoint is ``< c``: an occupied cell emits them as samples ``[t, t + dt]`` (unclipped, so the
   last one may end past ``t_max`` or ``far``), recomputing ``dt`` before each; an empty cell drops them with ``dt``
   fixed when the cell is entered. At a segment start, pending steps with a midpoint ``< t_min`` are dropped the
   same way, unless the last cell that emitted or dropped anything emitted ("continuous").

See :mod:`ng_methods.kernels.ray_marching._stepping` for how this is vectorised across rays.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ng_methods.kernels.ray_marching import _stepping, _traversal

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


def marchable_rays(
    rays_o: Float[Tensor, "n 3"], rays_d: Float[Tensor, "n 3"], near: Float[Tensor, "n"], far: Float[Tensor, "n"]
) -> Bool[Tensor, "n"]:
    """Rays that can be marched: finite origin, finite non-zero direction, finite near, far not NaN (may be inf)."""
    return (
        torch.isfinite(rays_o).all(dim=-1) & torch.isfinite(rays_d).all(dim=-1) & (rays_d != 0).any(dim=-1)
        & torch.isfinite(near) & ~torch.isnan(far)
    )


def march_occupancy_grid(
    rays_o: Float[Tensor, "n_rays 3"],
    rays_d: Float[Tensor, "n_rays 3"],
    binaries: Bool[Tensor, "levels rx ry rz"],
    aabbs: Float[Tensor, "levels 6"],
    near: Float[Tensor, "n_rays"],
    far: Float[Tensor, "n_rays"],
    step_size: float,
    cone_angle: float = 0.0,
) -> Tuple[Int[Tensor, "n_samples"], Float[Tensor, "n_samples"], Float[Tensor, "n_samples"]]:
    """March rays through the occupancy grid exactly as nerfacc's ``traverse_grids`` does (see the module doc).

    Args:
        rays_o: ray origins. rays_d: unit directions.
        binaries: occupancy per level, indexed ``[level, x, y, z]``.
        aabbs: box of every level ``[x0, y0, z0, x1, y1, z1]`` (nerfacc: nested, each twice the previous).
        near, far: per-ray marching limits; the step grid starts at ``near``.
        step_size: minimum step (> 0). cone_angle: step growth with distance (0: constant steps).

    Returns:
        ``(ray_indices, t_starts, t_ends)`` in float32, sorted by ray then distance. Rays that are not
        :func:`marchable_rays`, or whose float32 step stops advancing ``t`` (``t + dt == t``; nerfacc hangs there),
        produce no samples and leave the other rays unchanged.

    Example:
        >>> occ = torch.ones(1, 4, 4, 4, dtype=torch.bool); box = torch.tensor([[-1.0, -1, -1, 1, 1, 1]])
        >>> ri, t0, t1 = march_occupancy_grid(torch.tensor([[0.0, 0, -3]]), torch.tensor([[0.0, 0, 1]]),
        ...                                   occ, box, torch.zeros(1), torch.full((1,), 10.0), 0.5)
        >>> t0.tolist()
        [2.0, 2.5, 3.0, 3.5]
    """
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    simulate = _traversal.f32(cone_angle) != 0  # constant steps have the fast exact path
    with torch.no_grad():
        return _march(rays_o, rays_d, binaries, aabbs, near, far, step_size, cone_angle, simulate)


def _march(rays_o, rays_d, binaries, aabbs, near, far, step_size, cone_angle, simulate: bool):
    """:func:`march_occupancy_grid`, with the per-ray simulation or the constant-step path (``simulate=False``)."""
    rays_o, rays_d, near, far, aabbs = (x.float().contiguous() for x in (rays_o, rays_d, near, far, aabbs))
    t_mins, t_maxs, hits = _traversal.ray_aabb_hits(rays_o, rays_d, aabbs)
    seg = _traversal.segments(t_mins, t_maxs, hits, near, far)
    seg.valid &= marchable_rays(rays_o, rays_d, near, far)[:, None]
    rays = seg.valid.any(dim=1).nonzero()[:, 0]
    seg = seg.subset(rays)
    first = torch.where(seg.valid, seg.t_min, math.inf).amin(dim=1)
    last = torch.where(seg.valid, seg.t_max, -math.inf).amax(dim=1)
    union = torch.cat([aabbs[:, :3].amin(dim=0), aabbs[:, 3:].amax(dim=0)])
    last = torch.fmin(last, ray_aabb_intersect(rays_o[rays], rays_d[rays], union)[1])  # where the cells end
    steps = _steps_estimate(first, last, step_size, cone_angle)  # steps stored per ray (about)
    width = max(int(steps.max()) if steps.numel() else 0, seg.valid.shape[1] * 3 * max(binaries.shape[1:]))
    rays_per_chunk = max(1, _MAX_CANDIDATES_PER_CHUNK // width)
    dt_fn = _traversal.step_rule(step_size, cone_angle)
    march = _stepping.cone_samples if simulate else _stepping.uniform_samples
    ray_indices, t_starts, t_ends = [rays.new_zeros(0)], [rays_o.new_zeros(0)], [rays_o.new_zeros(0)]
    for start in range(0, rays.shape[0], rays_per_chunk):
        chunk = torch.arange(start, min(start + rays_per_chunk, rays.shape[0]), device=rays.device)
        rows, t0, t1 = march(rays_o[rays[chunk]], rays_d[rays[chunk]], near[rays[chunk]], seg.subset(chunk),
                             binaries, aabbs, dt_fn)
        ray_indices.append(rays[chunk[rows]])
        t_starts.append(t0)
        t_ends.append(t1)
    return torch.cat(ray_indices), torch.cat(t_starts), torch.cat(t_ends)


def _steps_estimate(t_min: Tensor, t_max: Tensor, step_size: float, cone_angle: float) -> Tensor:
    """Approximate number of steps from ``t_min`` to ``t_max`` (float64, only sizes the chunks)."""
    t_min, t_max = t_min.double(), t_max.double()
    span = (t_max - t_min).clamp(min=0)
    if cone_angle <= 0:
        return torch.ceil(span / step_size).long() + 2
    t_switch = step_size / cone_angle  # beyond this, steps grow geometrically by (1 + cone_angle)
    linear = torch.ceil(((t_switch - t_min) / step_size).clamp(min=0))
    t_after_linear = torch.maximum(t_min + linear * step_size, t_min)
    geometric = torch.ceil(torch.log(t_max.clamp(min=1e-10) / t_after_linear.clamp(min=1e-10)) / math.log1p(cone_angle))
    steps = torch.where(t_max <= t_after_linear, torch.ceil(span / step_size), linear + geometric.clamp(min=0))
    return steps.long() + 2
