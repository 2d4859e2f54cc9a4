"""Line-by-line scalar transcription of nerfacc 0.5.2 ``traverse_grids``.

Source: ``nerfacc/cuda/csrc/grid.cu``, ``include/utils_grid.cuh`` @d84cdf3afd7dcfc42150e0f0506db58a5ce62812 (v0.5.2).

One ray at a time, float32 via ``numpy.float32`` scalars, following ``traverse_grids_kernel``,
``ray_aabb_intersect``, ``setup_traversal`` and ``single_traversal`` (``include/utils_grid.cuh``) statement by
statement, with CUDA's NaN-ignoring ``fminf``/``fmaxf``/``min``. Used as the test peer of the vectorised reference.
"""

from __future__ import annotations

import numpy as np

F = np.float32
EPS = F(1e-6)
HALF = F(0.5)
INF = F(np.inf)


def _calc_dt(t, cone_angle, step_size):
    return np.fmax(step_size, np.fmin(t * cone_angle, F(1e10)))  # clamp(t * cone_angle, dt_min, dt_max)


def _ray_aabb_intersect(o, d, inv, lo, hi):
    """utils_grid.cuh ray_aabb_intersect with ray.tmin = -inf, ray.tmax = inf (grid.py's defaults)."""
    def slab(a):
        if inv[a] >= 0:
            return (lo[a] - o[a]) * inv[a], (hi[a] - o[a]) * inv[a]
        return (hi[a] - o[a]) * inv[a], (lo[a] - o[a]) * inv[a]

    tmin, tmax = slab(0)
    for a in (1, 2):
        tmin_temp, tmax_temp = slab(a)
        if tmin > tmax_temp or tmin_temp > tmax:
            return False, INF, INF
        if tmin_temp > tmin:
            tmin = tmin_temp
        if tmax_temp < tmax:
            tmax = tmax_temp
    if tmax <= 0:
        return False, INF, INF
    return True, np.fmax(tmin, -INF), np.fmin(tmax, INF)


def _float_to_int(x):
    """CUDA's float -> int conversion (cvt.rzi.s32.f32): truncation, saturating, NaN -> 0."""
    if np.isnan(x):
        return 0
    return int(np.clip(np.float64(x), -(2.0**31), 2.0**31 - 1))


def _setup_traversal(o, d, inv, tmin, tmax, lo, hi, res):
    res_f = [F(r) for r in res]
    voxel = [(hi[a] - lo[a]) / res_f[a] for a in range(3)]
    ray_start = [o[a] + d[a] * (tmin + EPS) for a in range(3)]
    ray_end = [o[a] + d[a] * (tmax - EPS) for a in range(3)]

    def index(p, a):  # make_int3(apply_contraction(p, AABB) * res), clamped
        return min(max(_float_to_int(((p[a] - lo[a]) / (hi[a] - lo[a])) * res_f[a]), 0), res[a] - 1)

    current = [index(ray_start, a) for a in range(3)]
    final = [index(ray_end, a) for a in range(3)]
    tdist, delta, step = [], [], []
    for a in range(3):
        start_index = current[a] + (1 if d[a] > 0 else 0)
        tmax_xyz = ((lo[a] + ((F(start_index) * voxel[a]) - ray_start[a])) * inv[a]) + tmin
        step_f = F(0) if d[a] == 0 else (F(1) if d[a] > 0 else F(-1))
        tdist.append(tmax if d[a] == 0 else tmax_xyz)
        delta.append(tmax if d[a] == 0 else (voxel[a] * inv[a]) * step_f)
        step.append(int(step_f))
    return tdist, delta, step, current, final


def _single_traversal(tdist, current, overflow, step, delta):
    if tdist[0] < tdist[1] and tdist[0] < tdist[2]:
        a = 0
    elif tdist[1] < tdist[2]:
        a = 1
    else:
        a = 2
    current[a] += step[a]
    tdist[a] = tdist[a] + delta[a]
    return current[a] != overflow[a]


class _Ray:
    """The per-thread state of traverse_grids_kernel: t_last, continuous, the samples written so far."""

    def __init__(self, near, step_size, cone_angle, max_iterations):
        self.t_last, self.continuous, self.samples = near, False, []
        self.step_size, self.cone_angle, self.budget = step_size, cone_angle, max_iterations

    def tick(self):
        self.budget -= 1
        assert self.budget > 0, "grid.cu would not terminate on this ray"

    def skip_to(self, t_target):
        """``dt`` computed once, then "march until t_mid is right after" ``t_target`` (no samples)."""
        dt = _calc_dt(self.t_last, self.cone_angle, self.step_size)
        while not self.t_last + dt * HALF >= t_target:
            self.t_last = self.t_last + dt
            self.tick()

    def emit_to(self, t_traverse):
        """The occupied-cell loop: ``dt`` recomputed before every step, each step written as a sample."""
        while True:
            self.tick()
            dt = _calc_dt(self.t_last, self.cone_angle, self.step_size)
            if self.t_last + dt * HALF >= t_traverse:
                break
            t_next = self.t_last + dt
            self.samples.append((self.t_last, t_next))
            self.continuous = True
            self.t_last = t_next
            if t_next >= t_traverse:
                break


def _walk_segment(ray, o, d, inv, this_tmin, this_tmax, level, binaries, aabb):
    lo, hi = [F(x) for x in aabb[:3]], [F(x) for x in aabb[3:]]
    tdist, delta, step, current, final = _setup_traversal(o, d, inv, this_tmin, this_tmax, lo, hi, binaries.shape[1:])
    overflow = [final[a] + step[a] for a in range(3)]
    while True:
        ray.tick()
        t_traverse = np.fmin(np.fmin(tdist[0], np.fmin(tdist[1], tdist[2])), this_tmax)
        if not binaries[level, current[0], current[1], current[2]]:
            ray.skip_to(t_traverse)
            ray.continuous = False
        else:
            ray.emit_to(t_traverse)
        if not _single_traversal(tdist, current, overflow, step, delta):
            break


def traverse_ray(o, d, binaries, aabbs, near, far, step_size, cone_angle, max_iterations=10**6):
    """Samples ``[(t_start, t_end), ...]`` of one ray, as grid.cu writes them (intervals is_left / is_right)."""
    o, d = [F(x) for x in o], [F(x) for x in d]
    near, far = F(near), F(far)
    n_grids = binaries.shape[0]
    ray = _Ray(near, F(step_size), F(cone_angle), max_iterations)
    with np.errstate(all="ignore"):
        inv = [F(1) / x for x in d]
        hits_t = [_ray_aabb_intersect(o, d, inv, [F(x) for x in box[:3]], [F(x) for x in box[3:]]) for box in aabbs]
        hits = [h for h, _, _ in hits_t]
        t_all = [tmin for _, tmin, _ in hits_t] + [tmax for _, _, tmax in hits_t]
        t_indices = sorted(range(2 * n_grids), key=lambda k: t_all[k]) if n_grids > 1 else [0, 1]
        t_sorted = [t_all[k] for k in t_indices]
        for i in range(2 * n_grids - 1):
            is_entering = t_indices[i] < n_grids
            level = t_indices[i] % n_grids
            if not hits[level]:
                continue
            if not is_entering:
                if t_indices[i + 1] < n_grids:
                    continue
                level = t_indices[i + 1] % n_grids
                if not hits[level]:
                    continue
            this_tmin = np.fmax(t_sorted[i], near)
            this_tmax = np.fmin(t_sorted[i + 1], far)
            if this_tmin >= this_tmax:
                continue
            if not ray.continuous:
                ray.skip_to(this_tmin)
            _walk_segment(ray, o, d, inv, this_tmin, this_tmax, level, binaries, aabbs[level])
    return ray.samples
