"""How grid.cu's ``t_last`` walks the barriers (segment starts, DDA cell exits) of a chunk of rays.

grid.cu moves ``t_last`` in three loops, all of the form "while ``t_last + dt / 2 < barrier``: ``t_last += dt``":
a segment start that is not ``continuous`` and an empty cell drop those steps with ``dt`` fixed at the loop's entry;
an occupied cell emits them and recomputes ``dt`` before every step.

* Constant steps (``cone_angle == 0``): all three loops follow one recurrence from ``near``, so a step is taken by the
  first barrier whose running maximum exceeds its midpoint: one sort and ``searchsorted`` per segment
  (:func:`uniform_samples`).
* Growing steps: the fixed ``dt`` of the dropping loops makes ``t`` depend on the cells, so every ray runs the three
  loops itself, in lockstep with the others, one step or barrier change per iteration (:func:`cone_samples`).

Both return ``(rows, t_starts, t_ends)`` sorted by row then distance, and skip rays whose float32 step no longer
advances ``t`` (``t + dt == t``: grid.cu would loop forever).
"""

from __future__ import annotations

import math
from typing import Callable, List, Tuple

import torch
from torch import Tensor

from ng_methods.kernels.ray_marching._traversal import Cells, Segments, segment_cells

_START, _EMPTY, _OCCUPIED = 0, 1, 2  # barrier kinds for cone_samples (padding: occupied at -inf, a no-op)


def _advance_until(t: Tensor, target: Tensor, dt_fn: Callable) -> Tuple[Tensor, Tensor]:
    """Step every ray until its midpoint reaches ``target``; also flags rays whose step no longer moves t."""
    t, stalled = t.clone(), torch.zeros_like(t, dtype=torch.bool)
    active = torch.arange(t.shape[0], device=t.device)
    while active.numel():
        t_a = t[active]
        dt = dt_fn(t_a)
        move = (t_a + dt * 0.5) < target[active]
        nxt = t_a + dt
        stuck = move & (nxt == t_a)
        stalled[active[stuck]] = True
        move &= ~stuck
        t[active[move]] = nxt[move]
        active = active[move]
    return t, stalled


def _record_until(t: Tensor, last: Tensor, stalled: Tensor, dt_fn: Callable) -> Tuple[Tensor, Tensor, Tensor]:
    """Step sequence ``[rays, k + 1]`` and midpoints ``[rays, k]`` until every midpoint reaches ``last``."""
    stalled = stalled.clone()
    times, mids = [t], []
    done = stalled | ~(t < last)
    while not bool(done.all()):
        dt = dt_fn(t)
        mid, nxt = t + dt * 0.5, t + dt
        stalled |= ~done & (mid < last) & (nxt == t)
        done |= ~(mid < last) | stalled
        mids.append(mid)
        times.append(nxt)
        t = nxt
    if not mids:
        return t[:, None], t.new_zeros(t.shape[0], 0), stalled
    return torch.stack(times, dim=1), torch.stack(mids, dim=1), stalled


def _take_steps(cells: Cells, seg_start: Tensor, continuous: Tensor, mids: Tensor, diff: Tensor, rows: Tensor):
    """Give one segment's cells their pending steps; marks emitted step ranges in ``diff`` (+1 / -1).

    ``seg_start`` is the running barrier after the segment start. Returns the running barrier and ``continuous``
    after the segment.
    """
    barrier = torch.fmax(seg_start[:, None], torch.cummax(cells.exits, dim=1).values)
    taken_before = torch.searchsorted(mids, barrier, side="left")  # steps with midpoint < barrier
    at_start = torch.searchsorted(mids, seg_start[:, None].contiguous(), side="left")
    first = torch.cat([at_start, taken_before[:, :-1]], dim=1)
    emitting = cells.live & cells.occupied & (taken_before > first)
    decisive = cells.live & (~cells.occupied | emitting)
    ray = rows[:, None].expand_as(first)
    ones = torch.ones(int(emitting.sum()), dtype=diff.dtype, device=diff.device)
    diff.index_put_((ray[emitting], first[emitting]), ones, accumulate=True)
    diff.index_put_((ray[emitting], taken_before[emitting]), -ones, accumulate=True)
    j = torch.arange(barrier.shape[1], device=barrier.device)
    last_decisive = torch.where(decisive, j, -1).amax(dim=1)
    emitted_last = emitting.gather(1, last_decisive.clamp(min=0)[:, None])[:, 0]
    return barrier[:, -1], torch.where(last_decisive >= 0, emitted_last, continuous)


def _all_cells(rays_o, rays_d, seg: Segments, binaries, aabbs) -> List[Tuple[int, Tensor, Cells]]:
    """``(segment, rows, cells)`` of every segment that some ray marches, in marching order."""
    out = []
    for s in range(seg.valid.shape[1]):
        rows = seg.valid[:, s].nonzero()[:, 0]
        if rows.numel():
            out.append((s, rows, segment_cells(rays_o[rows], rays_d[rows], seg.t_min[rows, s], seg.t_max[rows, s],
                                               seg.level[rows, s], binaries, aabbs)))
    return out


def uniform_samples(rays_o, rays_d, near, seg: Segments, binaries, aabbs, dt_fn: Callable):
    """Samples with a constant ``dt`` (``cone_angle == 0``); rays must have at least one valid segment."""
    cell_list = _all_cells(rays_o, rays_d, seg, binaries, aabbs)
    first = torch.where(seg.valid, seg.t_min, math.inf).amin(dim=1)
    last = torch.full_like(first, -math.inf)  # the last barrier (a segment's t_max may be inf, its cells end)
    for s, rows, cells in cell_list:
        last[rows] = torch.fmax(last[rows], torch.fmax(seg.t_min[rows, s], cells.exits.amax(dim=1)))
    # The first segment start is not continuous: steps with a midpoint before it are dropped (never stored).
    t, stalled = _advance_until(near, first, dt_fn)
    t_grid, mids, stalled = _record_until(t, last, stalled, dt_fn)
    n_steps = mids.shape[1]
    diff = torch.zeros(t_grid.shape[0], n_steps + 1, dtype=torch.int32, device=t_grid.device)
    barrier = torch.full_like(first, -math.inf)  # running maximum of the barriers passed so far
    continuous = torch.zeros_like(stalled)
    for s, rows, cells in cell_list if n_steps else []:
        seg_start = torch.where(continuous[rows], barrier[rows], torch.fmax(barrier[rows], seg.t_min[rows, s]))
        barrier[rows], continuous[rows] = _take_steps(cells, seg_start, continuous[rows], mids[rows], diff, rows)
    emit = (torch.cumsum(diff, dim=1)[:, :n_steps] > 0) & ~stalled[:, None]
    rows = torch.arange(t_grid.shape[0], device=t_grid.device)[:, None].expand_as(emit)[emit]
    return rows, t_grid[:, :-1][emit], t_grid[:, 1:][emit]


def _barrier_lists(rays_o, rays_d, seg: Segments, binaries, aabbs) -> Tuple[Tensor, Tensor, Tensor]:
    """Every ray's barriers in marching order: per valid segment its start, then its DDA cells.

    Returns ``(values, kinds, counts)``: ``[rays, n]`` distances and kinds (left-aligned, padding after
    ``counts[ray]``).
    """
    values, kinds, keep = [], [], []
    for s, rows, cells in _all_cells(rays_o, rays_d, seg, binaries, aabbs):
        value = rays_o.new_full((rays_o.shape[0], 1 + cells.exits.shape[1]), -math.inf)
        kind = torch.full(value.shape, _OCCUPIED, dtype=torch.int8, device=value.device)
        kept = torch.zeros(value.shape, dtype=torch.bool, device=value.device)
        value[rows, 0], kind[rows, 0], kept[rows, 0] = seg.t_min[rows, s], _START, True
        value[rows, 1:], kept[rows, 1:] = cells.exits, cells.live
        kind[rows, 1:] = torch.where(cells.occupied, _OCCUPIED, _EMPTY).to(torch.int8)
        values.append(value)
        kinds.append(kind)
        keep.append(kept)
    values, kinds, keep = torch.cat(values, dim=1), torch.cat(kinds, dim=1), torch.cat(keep, dim=1)
    counts = keep.sum(dim=1)
    slot = torch.cumsum(keep, dim=1) - 1
    row = torch.arange(values.shape[0], device=values.device)[:, None].expand_as(slot)
    packed = values.new_full((values.shape[0], max(int(counts.max()), 1)), -math.inf)
    packed_kinds = torch.full(packed.shape, _OCCUPIED, dtype=torch.int8, device=values.device)
    packed[row[keep], slot[keep]], packed_kinds[row[keep], slot[keep]] = values[keep], kinds[keep]
    return packed, packed_kinds, counts


def cone_samples(rays_o, rays_d, near, seg: Segments, binaries, aabbs, dt_fn: Callable):
    """Samples with any step rule: grid.cu's three loops per ray, one step or barrier per ray and iteration."""
    values, kinds, counts = _barrier_lists(rays_o, rays_d, seg, binaries, aabbs)
    t, p = near.clone(), torch.zeros_like(counts)
    dt_fixed, continuous = dt_fn(t), torch.zeros_like(t, dtype=torch.bool)
    active, stalled = counts > 0, torch.zeros_like(continuous)
    rows, starts, ends = [], [], []
    while bool(active.any()):
        value, kind = values.gather(1, p[:, None])[:, 0], kinds.gather(1, p[:, None])[:, 0]
        dt_now = dt_fn(t)
        dt = torch.where(kind == _OCCUPIED, dt_now, dt_fixed)  # dropping loops keep the dt they started with
        nxt = t + dt
        take = active & ((t + dt * 0.5) < value) & ~((kind == _START) & continuous)
        stuck = take & (nxt == t)
        stalled |= stuck
        take &= ~stuck
        emit = (take & (kind == _OCCUPIED)).nonzero()[:, 0]
        rows.append(emit)
        starts.append(t[emit])
        ends.append(nxt[emit])
        continuous[emit] = True
        move = active & ~take & ~stuck  # on to the next barrier; t is unchanged, so its fixed dt is dt_now
        continuous &= ~(move & (kind == _EMPTY))
        dt_fixed = torch.where(move, dt_now, dt_fixed)
        t = torch.where(take, nxt, t)
        p = torch.where(move, p + 1, p)
        active &= ~stuck & (p < counts)
        p.clamp_(max=values.shape[1] - 1)
    rows, starts, ends = torch.cat(rows), torch.cat(starts), torch.cat(ends)
    keep = ~stalled[rows]
    rows, order = torch.sort(rows[keep], stable=True)
    return rows, starts[keep][order], ends[keep][order]
