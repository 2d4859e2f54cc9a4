"""Device code of the Triton grid encoding (see ``triton.py`` for the design): the per-level setup and corner
helpers, the forward kernel, the first-order backward kernel and the index-only rows kernel.

Imported lazily with ``triton.py`` (it imports ``triton``); nothing compiles until the first launch. The second-order
kernel (``triton_second_order.py``) reuses the helpers below.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ng_methods.kernels.triton_fma import fma_float32


@triton.jit
def _cell_and_frac(pos_ptr, points, mask, scale, dim: tl.constexpr, D: tl.constexpr, FMA_EMULATED: tl.constexpr):
    """tcnn's ``pos_fract`` for coordinate ``dim``: the uint32 cell and the float32 fraction."""
    x = tl.load(pos_ptr + points * D + dim, mask=mask, other=0.0)
    pos = fma_float32(tl.broadcast_to(scale, x.shape), x, tl.full(x.shape, 0.5, tl.float32), FMA_EMULATED)
    floor = tl.floor(pos)
    frac = pos - floor  # exact
    # (int)floor as CUDA's cvt.rzi.s32.f32: saturating, NaN -> 0 (clamp first: out-of-range casts are undefined).
    # 2147483520 is the largest float32 below 2**31; integral floats >= 2**31 saturate to INT32_MAX.
    floor = tl.where(floor == floor, floor, 0.0)
    clamped = tl.minimum(tl.maximum(floor, -2147483648.0), 2147483520.0).to(tl.int32)
    cell = tl.where(floor >= 2147483648.0, 2147483647, clamped)
    return cell.to(tl.uint32, bitcast=True), frac


@triton.jit
def _level_setup(pos_ptr, scales_ptr, meta_ptr, points, mask, level, D: tl.constexpr, FMA_EMULATED: tl.constexpr):
    """Per-level constants and the cell/fraction of every coordinate (dims >= D get dummies that are never used)."""
    scale = tl.load(scales_ptr + level)
    meta = meta_ptr + level * (3 + D)
    table_size = tl.load(meta).to(tl.uint32)
    offset = tl.load(meta + 1)
    hashed = tl.load(meta + 2) != 0
    k0 = tl.load(meta + 3).to(tl.uint32)
    c0, f0 = _cell_and_frac(pos_ptr, points, mask, scale, 0, D, FMA_EMULATED)
    k1, c1, f1 = k0, c0, f0
    k2, c2, f2 = k0, c0, f0
    if D > 1:
        k1 = tl.load(meta + 4).to(tl.uint32)
        c1, f1 = _cell_and_frac(pos_ptr, points, mask, scale, 1, D, FMA_EMULATED)
    if D > 2:
        k2 = tl.load(meta + 5).to(tl.uint32)
        c2, f2 = _cell_and_frac(pos_ptr, points, mask, scale, 2, D, FMA_EMULATED)
    return scale, table_size, offset, hashed, k0, k1, k2, c0, c1, c2, f0, f1, f2


@triton.jit
def _corner_row(c0, c1, c2, k0, k1, k2, hashed, table_size, offset, corner: tl.constexpr, D: tl.constexpr):
    """Flat-table row of corner ``corner`` (bit ``dim`` = +1 along ``dim``): tcnn's ``grid_index`` plus the offset."""
    term = (c0 + (corner & 1)) * k0  # uint32: wraps mod 2**32
    index_sum = term
    index_xor = term
    if D > 1:
        term = (c1 + ((corner >> 1) & 1)) * k1
        index_sum = index_sum + term
        index_xor = index_xor ^ term
    if D > 2:
        term = (c2 + ((corner >> 2) & 1)) * k2
        index_sum = index_sum + term
        index_xor = index_xor ^ term
    index = tl.where(hashed, index_xor, index_sum) % table_size
    return offset + index.to(tl.int64)  # uint32 -> int64 zero-extends


@triton.jit
def _corner_factor(frac, bit: tl.constexpr):
    """tcnn's per-dim weight factor ``bit ? frac : 1 - frac`` and its derivative sign d/dfrac."""
    if bit:
        return frac, 1.0
    else:
        return 1.0 - frac, -1.0


@triton.jit
def _grid_forward_kernel(
    pos_ptr, table_ptr, out_ptr, scales_ptr, meta_ptr, n_points, n_levels,
    D: tl.constexpr, F: tl.constexpr, BLOCK_SIZE: tl.constexpr, FMA_EMULATED: tl.constexpr,
):
    level = tl.program_id(1)
    points = (tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)).to(tl.int64)
    mask = points < n_points
    features = tl.arange(0, F)
    scale, table_size, offset, hashed, k0, k1, k2, c0, c1, c2, f0, f1, f2 = _level_setup(
        pos_ptr, scales_ptr, meta_ptr, points, mask, level, D, FMA_EMULATED
    )
    acc = tl.zeros([BLOCK_SIZE, F], dtype=tl.float32)
    for corner in tl.static_range(1 << D):
        weight, _ = _corner_factor(f0, corner & 1)
        if D > 1:
            factor, _ = _corner_factor(f1, (corner >> 1) & 1)
            weight = weight * factor
        if D > 2:
            factor, _ = _corner_factor(f2, (corner >> 2) & 1)
            weight = weight * factor
        row = _corner_row(c0, c1, c2, k0, k1, k2, hashed, table_size, offset, corner, D)
        values = tl.load(table_ptr + row[:, None] * F + features[None, :], mask=mask[:, None], other=0.0)
        acc += weight[:, None] * values.to(tl.float32)
    out = out_ptr + points[:, None] * (n_levels * F) + level * F + features[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=mask[:, None])


@triton.jit
def _grid_backward_kernel(
    pos_ptr, table_ptr, grad_out_ptr, grad_table_ptr, grad_pos_ptr, scales_ptr, meta_ptr, n_points, n_levels,
    D: tl.constexpr, F: tl.constexpr, BLOCK_SIZE: tl.constexpr, NEED_TABLE: tl.constexpr, NEED_POS: tl.constexpr,
    FMA_EMULATED: tl.constexpr,
):
    level = tl.program_id(1)
    points = (tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)).to(tl.int64)
    mask = points < n_points
    features = tl.arange(0, F)
    scale, table_size, offset, hashed, k0, k1, k2, c0, c1, c2, f0, f1, f2 = _level_setup(
        pos_ptr, scales_ptr, meta_ptr, points, mask, level, D, FMA_EMULATED
    )
    grad_ptrs = grad_out_ptr + points[:, None] * (n_levels * F) + level * F + features[None, :]
    grad = tl.load(grad_ptrs, mask=mask[:, None], other=0.0).to(tl.float32)  # [BLOCK, F]
    # A NaN fraction (non-finite or overflowing coordinate) gave NaN features; it must add nothing to any gradient.
    bad = (f0 != f0) | (f1 != f1) | (f2 != f2)
    grad = tl.where(bad[:, None], 0.0, grad)
    f0 = tl.where(bad, 0.0, f0)
    f1 = tl.where(bad, 0.0, f1)
    f2 = tl.where(bad, 0.0, f2)
    dx0 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    dx1 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    dx2 = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for corner in tl.static_range(1 << D):
        a0, s0 = _corner_factor(f0, corner & 1)
        a1, s1 = _corner_factor(f1, (corner >> 1) & 1)
        a2, s2 = _corner_factor(f2, (corner >> 2) & 1)
        row = _corner_row(c0, c1, c2, k0, k1, k2, hashed, table_size, offset, corner, D)
        entries = row[:, None] * F + features[None, :]
        if NEED_TABLE:
            weight = a0
            if D > 1:
                weight = weight * a1
            if D > 2:
                weight = weight * a2
            tl.atomic_add(grad_table_ptr + entries, weight[:, None] * grad, mask=mask[:, None], sem="relaxed")
        if NEED_POS:
            values = tl.load(table_ptr + entries, mask=mask[:, None], other=0.0).to(tl.float32)
            dot = tl.sum(values * grad, axis=1)  # dL/dweight of this corner
            if D == 1:
                dx0 += s0 * dot
            if D == 2:
                dx0 += (s0 * a1) * dot
                dx1 += (a0 * s1) * dot
            if D == 3:
                dx0 += (s0 * a1 * a2) * dot
                dx1 += (a0 * s1 * a2) * dot
                dx2 += (a0 * a1 * s2) * dot
    if NEED_POS:  # d frac / d x = scale; the L level programs meet in the atomics
        tl.atomic_add(grad_pos_ptr + points * D, dx0 * scale, mask=mask, sem="relaxed")
        if D > 1:
            tl.atomic_add(grad_pos_ptr + points * D + 1, dx1 * scale, mask=mask, sem="relaxed")
        if D > 2:
            tl.atomic_add(grad_pos_ptr + points * D + 2, dx2 * scale, mask=mask, sem="relaxed")


@triton.jit
def _grid_rows_kernel(pos_ptr, rows_ptr, scales_ptr, meta_ptr, n_points, n_levels, D: tl.constexpr,
                      BLOCK_SIZE: tl.constexpr, FMA_EMULATED: tl.constexpr):
    """Index-only twin of the forward kernel (same helpers): the flat rows of every corner, ``[n, L, 2**d]``."""
    level = tl.program_id(1)
    points = (tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)).to(tl.int64)
    mask = points < n_points
    scale, table_size, offset, hashed, k0, k1, k2, c0, c1, c2, f0, f1, f2 = _level_setup(
        pos_ptr, scales_ptr, meta_ptr, points, mask, level, D, FMA_EMULATED
    )
    for corner in tl.static_range(1 << D):
        row = _corner_row(c0, c1, c2, k0, k1, k2, hashed, table_size, offset, corner, D)
        tl.store(rows_ptr + (points * n_levels + level) * (1 << D) + corner, row, mask=mask)

