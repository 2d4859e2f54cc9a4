"""Building blocks of the nerfacc 0.5.2 ``traverse_grids`` transcription (``grid.cu``/``utils_grid.cuh`` @d84cdf3).

All distances are float32 and every expression keeps grid.cu's operation order, so results are bit-identical to an
IEEE float32 evaluation of the kernel. (nvcc may fuse ``a * b + c`` into an FMA in ``setup_traversal``; that can only
move a DDA cell boundary by an ulp, i.e. change which cell a midpoint lying within an ulp of a face belongs to.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import torch
from torch import Tensor

_EPS = 1e-6  # grid.cu's eps: the DDA starts at t_min + eps and ends in the cell of t_max - eps
_Z_Y_X = (2, 1, 0)  # single_traversal steps z on ties, then y, then x


def f32(x: float) -> float:
    """``x`` rounded to float32 (as a C++ ``float`` parameter receives it), as a Python float."""
    return float(torch.tensor(x, dtype=torch.float32))


def ray_aabb_hits(rays_o: Tensor, rays_d: Tensor, aabbs: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``(t_mins, t_maxs, hits)``, each ``[n_rays, levels]``: grid.cu's ``ray_aabb_intersect`` (misses are inf)."""
    o, inv = rays_o[:, None, :], (1.0 / rays_d)[:, None, :]
    lo, hi = aabbs[None, :, :3], aabbs[None, :, 3:]
    forward = inv >= 0
    t_lo = torch.where(forward, lo - o, hi - o) * inv
    t_hi = torch.where(forward, hi - o, lo - o) * inv
    t_min, t_max = t_lo[..., 0], t_hi[..., 0]
    hit = torch.ones_like(t_min, dtype=torch.bool)
    for axis in (1, 2):
        t_min_a, t_max_a = t_lo[..., axis], t_hi[..., axis]
        hit &= ~((t_min > t_max_a) | (t_min_a > t_max))
        t_min = torch.where(t_min_a > t_min, t_min_a, t_min)
        t_max = torch.where(t_max_a < t_max, t_max_a, t_max)
    hit &= ~(t_max <= 0)
    # fmaxf/fminf against the (infinite) planes traverse_grids passes: only turns NaN into -inf / inf.
    t_min, t_max = torch.fmax(t_min, torch.tensor(-math.inf)), torch.fmin(t_max, torch.tensor(math.inf))
    return torch.where(hit, t_min, math.inf), torch.where(hit, t_max, math.inf), hit


@dataclass
class Segments:
    """The ``2 * levels - 1`` candidate segments of every ray, in marching order."""

    t_min: Tensor  # [n_rays, s]: max(sorted t, near)
    t_max: Tensor  # [n_rays, s]: min(next sorted t, far)
    level: Tensor  # [n_rays, s]: grid level the segment is marched in
    valid: Tensor  # [n_rays, s]: marched at all

    def subset(self, rows: Tensor) -> "Segments":
        return Segments(self.t_min[rows], self.t_max[rows], self.level[rows], self.valid[rows])


def segments(t_mins: Tensor, t_maxs: Tensor, hits: Tensor, near: Tensor, far: Tensor) -> Segments:
    """traverse_grids' segment loop over the sorted box entries/exits (``t_sorted``, ``t_indices``)."""
    n_rays, levels = hits.shape
    t_all = torch.cat([t_mins, t_maxs], dim=-1)
    if levels > 1:  # CUDA sorts unstably; ties only arise between boxes sharing a face, or between misses (skipped)
        t_sorted, t_indices = torch.sort(t_all, dim=-1, stable=True)
    else:
        t_sorted = t_all
        t_indices = torch.arange(2, device=t_all.device).expand(n_rays, 2)
    entering, level = t_indices < levels, t_indices % levels
    hit = hits.gather(1, level)
    valid = hit[:, :-1] & (entering[:, :-1] | (~entering[:, 1:] & hit[:, 1:]))
    t_min = torch.fmax(t_sorted[:, :-1], near[:, None])
    t_max = torch.fmin(t_sorted[:, 1:], far[:, None])
    valid &= ~(t_min >= t_max)
    return Segments(t_min, t_max, torch.where(entering[:, :-1], level[:, :-1], level[:, 1:]), valid)


def step_rule(step_size: float, cone_angle: float):
    """grid.cu's ``_calc_dt``: ``dt(t) = clamp(t * cone_angle, step_size, 1e10)`` in float32."""
    step, cone = f32(step_size), f32(cone_angle)

    def dt(t: Tensor) -> Tensor:
        return (t * cone).clamp(max=1e10).clamp(min=step)  # fmaxf(step, fminf(t * cone, 1e10))

    return dt


@dataclass
class Cells:
    """DDA cells of one segment per ray, in visiting order (padded)."""

    exits: Tensor  # [r, j]: fminf(t_traverse, t_max); -inf past the last cell
    occupied: Tensor  # [r, j]
    live: Tensor  # [r, j]: visited before the DDA stops


def _cell_of(points: Tensor, lo: Tensor, hi: Tensor, res: Tensor) -> Tensor:
    """``clamp(make_int3(roi_to_unit(p) * res), 0, res - 1)`` (float->int truncates; CUDA maps NaN to 0)."""
    scaled = ((points - lo) / (hi - lo)) * res.float()
    scaled = torch.nan_to_num(scaled, nan=0.0).clamp(-1.0, float(res.max()))
    return torch.minimum(scaled.long().clamp(min=0), res - 1)


def _crossings(rays_o, rays_d, t_min, t_max, lo, hi, res):
    """setup_traversal + the per-axis crossing distances ``tdist`` takes: ``[r, 3, w]`` and counts/indices."""
    eps = torch.tensor(_EPS, dtype=torch.float32, device=t_min.device)
    voxel = (hi - lo) / res.float()
    ray_start = rays_o + rays_d * (t_min + eps)[:, None]
    ray_end = rays_o + rays_d * (t_max - eps)[:, None]
    current, final = _cell_of(ray_start, lo, hi, res), _cell_of(ray_end, lo, hi, res)
    inv = 1.0 / rays_d
    step = torch.sign(rays_d)
    crossing = ((lo + (((current + (rays_d > 0).long()).float() * voxel) - ray_start)) * inv) + t_min[:, None]
    along = rays_d == 0
    tdist = torch.where(along, t_max[:, None], crossing)
    delta = torch.where(along, t_max[:, None], (voxel * inv) * step)
    step_index = step.long()
    n_cells = (final - current) * step_index + 1  # stepping an axis from its n-th cell stops the DDA
    behind = n_cells < 1  # end cell behind the start (segment < 2 eps): that axis never stops the DDA
    width = int(n_cells.masked_fill(behind, 1).max())
    n_cells = torch.where(behind, width, n_cells)
    times = tdist.new_empty(tdist.shape + (width,))
    times[..., 0] = tdist
    for i in range(1, width):
        times[..., i] = times[..., i - 1] + delta
    return times, n_cells, behind, current, step_index


def segment_cells(rays_o, rays_d, t_min, t_max, level, binaries, aabbs) -> Cells:
    """The cells the DDA visits in one segment of each ray, their exit distances and occupancy."""
    res = torch.tensor(binaries.shape[1:], device=t_min.device)
    lo, hi = aabbs[level, :3], aabbs[level, 3:]
    times, n_cells, behind, current, step_index = _crossings(rays_o, rays_d, t_min, t_max, lo, hi, res)
    r, _, width = times.shape
    order = torch.tensor(_Z_Y_X, device=t_min.device)
    exists = torch.arange(width, device=t_min.device) < n_cells[:, order, None]
    values = torch.where(exists, times[:, order], math.inf).reshape(r, 3 * width)
    values, perm = torch.sort(values, dim=1, stable=True)  # == single_traversal's merge of the three axes
    slot, i = perm // width, perm % width
    axis = order[slot]
    exists = exists.reshape(r, 3 * width).gather(1, perm)
    stops = exists & (i == n_cells.gather(1, axis) - 1) & ~behind.gather(1, axis)
    last = torch.where(stops.any(dim=1), stops.int().argmax(dim=1), exists.sum(dim=1) - 1)
    live = torch.arange(3 * width, device=t_min.device) <= last[:, None]
    one_hot = torch.nn.functional.one_hot(axis, 3)
    index = current[:, None, :] + step_index[:, None, :] * (torch.cumsum(one_hot, dim=1) - one_hot)
    index = torch.minimum(index.clamp(min=0), res - 1)
    cell_id = ((level[:, None] * res[0] + index[..., 0]) * res[1] + index[..., 1]) * res[2] + index[..., 2]
    occupied = binaries.reshape(-1)[cell_id]
    exits = torch.where(live, torch.fmin(values, t_max[:, None]), -math.inf)
    return Cells(exits, occupied, live)
