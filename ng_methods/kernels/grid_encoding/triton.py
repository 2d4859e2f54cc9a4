"""Triton kernels for the multi-resolution grid encoding (tiny-cuda-nn ``Grid`` semantics, Linear interpolation).

The function computed is ``reference.grid_encode_reference`` (the spec; see it for tcnn's indexing): the same rows and
bitwise the same corner weights, features summed in float32 in another order (rounding-level differences only).
This module is imported lazily by ``ng_methods.kernels.grid_encoding`` (it imports ``triton`` at import time) and
nothing is compiled until the first call: the kernels JIT-compile per ``(n_dims, F, dtype)``.

Kernel design (like tcnn's ``kernel_grid``):

* **Launch grid** ``(cdiv(n, BLOCK), L)``: one program per block of ``BLOCK`` points and one level. Per-level
  constants live in two small device tensors built once per ``(spec, device)`` and loaded in-kernel, so one compiled
  kernel serves every level: ``scales`` (float32, tcnn's ``scale``) and an int64 ``[L, 3 + d]`` row per level,
  ``(table_size, offset, hashed, factor_0 .. factor_{d-1})`` from ``GridSpec.level_indexing`` (tiny-cuda-nn 2.x):
  ``factor`` is the hash prime of the dim for hashed levels, else the dense stride ``resolution**dim`` (so the
  dense index is ``sum_dim local_dim * factor_dim`` and the hash ``xor_dim local_dim * factor_dim``, both in
  wrapping uint32 arithmetic, then ``% table_size``).
* **Per point**: ``pos = fma(scale, x, 0.5)`` in float32 (one rounding, as ``fmaf``: ``tl.fma`` when compiled, an
  exact emulation under an interpreter whose ``tl.fma`` rounds twice, see ``ng_methods.kernels.triton_fma``),
  ``cell = (uint32)(int)floor(pos)`` with CUDA's saturating float->int conversion (NaN -> 0) made explicit, and
  ``frac = pos - floor(pos)``. The ``2**d`` corners are unrolled at compile time; corner weights are tcnn's product
  ``w_0 * w_1 * ...`` (bitwise the reference's); features are accumulated in float32 and stored in the table dtype.
* **Backward** (one kernel, same launch grid; the work for an input whose ``ctx.needs_input_grad`` is False is
  compiled out): d/dtable scatters ``weight * dL/dout`` with ``tl.atomic_add(sem="relaxed")`` into a zeroed float32
  ``[n_params, F]`` buffer (cast to the table dtype at the end); d/dpositions sums, per program, over the level's
  corners ``dL/dout . table[row] * dweight/dfrac_dim * scale`` and adds the result to a zeroed float32 ``[n, d]``
  buffer with one relaxed ``tl.atomic_add`` per point and dim, which combines the ``L`` level programs.
  Both gradients are therefore summed in a run-to-run varying order (float32 rounding-level nondeterminism).

The backward is ``once_differentiable``: double backward (e.g. eikonal losses) is served by the PyTorch reference
(``backend="torch"``); a backward with ``create_graph=True`` raises instead of returning gradients that silently do
not depend on the table. float64 positions or tables are also served by the reference (float64 is for gradchecks).
"""

from __future__ import annotations

import contextlib
import functools
from typing import ContextManager, Tuple

import torch
import triton
import triton.language as tl
from jaxtyping import Float, Int
from torch import Tensor
from torch.autograd.function import once_differentiable

from ng_methods.kernels.grid_encoding.reference import check_grid_inputs, grid_encode_reference
from ng_methods.kernels.grid_encoding.spec import GridSpec
from ng_methods.kernels.triton_fma import fma_emulated, fma_float32, is_interpreter

__all__ = ["grid_encode_triton", "grid_level_rows_triton", "BLOCK", "SUPPORTED_N_DIMS", "SUPPORTED_FEATURES"]

BLOCK = 128
"""Points per program (one point per thread at ``NUM_WARPS=4``, like tcnn's one-thread-per-point kernels)."""
NUM_WARPS = 4
SUPPORTED_N_DIMS = (1, 2, 3)
SUPPORTED_FEATURES = (1, 2, 4, 8)
_KERNEL_TABLE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_UINT32_MASK = 0xFFFFFFFF


# ------------------------------------------------------------------------------------------------------- kernels


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


# ------------------------------------------------------------------------------------------------------- host side


def level_constants(spec: GridSpec) -> Tuple[list, list]:
    """Per-level kernel constants: float32 scales and ``(table_size, offset, hashed, factor_0..factor_{d-1})``.

    Both come from the spec (``GridSpec.level_scales`` and ``GridSpec.level_indexing``, tiny-cuda-nn 2.x), exactly
    as the reference uses them.
    """
    offsets = spec.level_offsets()
    rows = []
    for level in range(spec.n_levels):
        indexing = spec.level_indexing(level)
        rows.append([indexing.table_size, offsets[level], int(indexing.hashed), *indexing.factors])
    return spec.level_scales(), rows


@functools.lru_cache(maxsize=64)
def _level_tensors(spec: GridSpec, device: torch.device) -> Tuple[Tensor, Tensor]:
    scales, rows = level_constants(spec)
    return (
        torch.tensor(scales, dtype=torch.float32, device=device),
        torch.tensor(rows, dtype=torch.int64, device=device),
    )


_is_interpreted = is_interpreter  # kernels decorated under TRITON_INTERPRET=1 (all of ours are alike)


def _check_kernel_inputs(positions: Tensor, table: Tensor, spec: GridSpec) -> None:
    if spec.n_dims not in SUPPORTED_N_DIMS:
        raise ValueError(f"the Triton grid encoding supports n_dims in {SUPPORTED_N_DIMS}, got {spec.n_dims}")
    if spec.n_features_per_level not in SUPPORTED_FEATURES:
        raise ValueError(
            f"the Triton grid encoding supports n_features_per_level in {SUPPORTED_FEATURES}, "
            f"got {spec.n_features_per_level}"
        )
    if table.dtype not in _KERNEL_TABLE_DTYPES:
        raise ValueError(f"the Triton grid encoding needs a float32/float16/bfloat16 table, got {table.dtype}")
    if positions.device.type != "cuda" and not _is_interpreted():
        raise ValueError(
            f"the Triton grid encoding runs on CUDA tensors (or anywhere under TRITON_INTERPRET=1), got "
            f"{positions.device}; use backend='torch'"
        )


def _grid(n_points: int, spec: GridSpec) -> Tuple[int, int]:
    return (triton.cdiv(n_points, BLOCK), spec.n_levels)


def _on_device(tensor: Tensor) -> ContextManager:
    """Launch on the tensor's GPU (Triton launches on the current device)."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()


class _GridEncodeFunction(torch.autograd.Function):
    """Forward and first-order backward of the grid encoding with float32 ``positions`` (once differentiable)."""

    @staticmethod
    def forward(ctx, positions: Tensor, table: Tensor, spec: GridSpec) -> Tensor:
        positions, table = positions.contiguous(), table.contiguous()
        n_points = positions.shape[0]
        out = torch.empty(n_points, spec.n_output_dims, dtype=table.dtype, device=table.device)
        if n_points > 0:
            scales, meta = _level_tensors(spec, positions.device)
            with _on_device(positions):
                _grid_forward_kernel[_grid(n_points, spec)](
                    positions, table, out, scales, meta, n_points, spec.n_levels,
                    D=spec.n_dims, F=spec.n_features_per_level, BLOCK_SIZE=BLOCK, num_warps=NUM_WARPS,
                    FMA_EMULATED=fma_emulated(),
                )
        ctx.save_for_backward(positions, table)
        ctx.spec = spec
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if torch.is_grad_enabled() and any(ctx.needs_input_grad[:2]):
            # create_graph=True: the gradients would silently not depend on table/positions (once_differentiable only
            # raises when grad_out itself requires grad), so an eikonal-style loss would train nothing. Refuse.
            raise RuntimeError(
                "grid_encode_triton is only once differentiable: double backward (create_graph=True) is served by "
                "the PyTorch reference, use backend='torch' for it"
            )
        return _GridEncodeFunction._backward(ctx, grad_out)

    @staticmethod
    @once_differentiable
    def _backward(ctx, grad_out: Tensor):
        need_positions, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_positions or need_table):
            return None, None, None
        positions, table = ctx.saved_tensors
        spec: GridSpec = ctx.spec
        n_points = positions.shape[0]
        grad_out = grad_out.to(table.dtype).contiguous()
        grad_table = torch.zeros(table.shape, dtype=torch.float32, device=table.device) if need_table else None
        grad_pos = torch.zeros(positions.shape, dtype=torch.float32, device=table.device) if need_positions else None
        if n_points > 0:
            scales, meta = _level_tensors(spec, positions.device)
            dummy = grad_out  # never dereferenced: the branch using it is compiled out
            with _on_device(positions):
                _grid_backward_kernel[_grid(n_points, spec)](
                    positions, table, grad_out,
                    grad_table if need_table else dummy, grad_pos if need_positions else dummy,
                    scales, meta, n_points, spec.n_levels,
                    D=spec.n_dims, F=spec.n_features_per_level, BLOCK_SIZE=BLOCK,
                    NEED_TABLE=bool(need_table), NEED_POS=bool(need_positions), num_warps=NUM_WARPS,
                    FMA_EMULATED=fma_emulated(),
                )
        return grad_pos, (grad_table.to(table.dtype) if need_table else None), None


def grid_encode_triton(
    positions: Float[Tensor, "n d"], table: Float[Tensor, "n_params f"], spec: GridSpec
) -> Float[Tensor, "n l*f"]:
    """Multi-resolution grid encoding with fused Triton kernels; the same function as ``grid_encode_reference``.

    Args:
        positions: ``[n, d]`` points (d in {1, 2, 3}), nominally in ``[0, 1]^d``; read as float32 like tcnn
            (outside the unit cube the uint32 cell indices wrap, as in tcnn and the reference).
        table: ``[spec.n_params, F]`` flat table (F in {1, 2, 4, 8}; float32, float16 or bfloat16), level ``l`` at
            rows ``spec.level_offsets()[l]:[l+1]``.
        spec: grid hyper-parameters.

    Returns:
        ``[n, L*F]`` level-major features (column ``l*F + f``) in ``table.dtype``, interpolated in float32.
        Differentiable once w.r.t. ``table`` and ``positions`` (gradients of ``positions`` in their dtype); double
        backward is only available from the PyTorch reference (``backend="torch"``). float64 positions or tables are
        handed to the reference. Non-finite (or float32-overflowing) coordinates: NaN features at the affected
        levels and no gradient from them, exactly as the reference (see ``grid_encode_reference``).

    Runs on CUDA tensors, or on any device under ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, for tests).
    """
    check_grid_inputs(positions, table, spec)
    if torch.float64 in (positions.dtype, table.dtype):
        return grid_encode_reference(positions, table, spec)
    _check_kernel_inputs(positions, table, spec)
    return _GridEncodeFunction.apply(positions.to(torch.float32), table, spec)


def grid_level_rows_triton(positions: Float[Tensor, "n d"], spec: GridSpec) -> Int[Tensor, "n l n_corners"]:
    """Flat-table rows the kernels read for every point, level and corner (index-only kernel, for tests/debugging).

    Level ``l``'s rows minus ``spec.level_offsets()[l]`` equal ``reference.grid_level_indices(positions, spec, l)``.
    """
    if positions.ndim != 2 or positions.shape[1] != spec.n_dims:
        raise ValueError(f"positions must be [n, {spec.n_dims}], got {tuple(positions.shape)}")
    dummy_table = torch.empty(0, spec.n_features_per_level, device=positions.device)
    _check_kernel_inputs(positions, dummy_table, spec)
    positions = positions.to(torch.float32).contiguous()
    n_points = positions.shape[0]
    rows = torch.empty(n_points, spec.n_levels, 1 << spec.n_dims, dtype=torch.int64, device=positions.device)
    if n_points > 0:
        scales, meta = _level_tensors(spec, positions.device)
        with _on_device(positions):
            _grid_rows_kernel[_grid(n_points, spec)](
                positions, rows, scales, meta, n_points, spec.n_levels, D=spec.n_dims, BLOCK_SIZE=BLOCK,
                num_warps=NUM_WARPS, FMA_EMULATED=fma_emulated(),
            )
    return rows
