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

* **Double backward** (eikonal losses): the first backward is itself an autograd function of
  ``(dL/dout, positions, table)`` (``grid_encode_backward_triton``), whose backward runs one more kernel
  (``triton_second_order.py``, which derives the maths): d/d(dL/dout) (a gather: the forward on the table's cotangent
  plus the forward-mode product with the positions' cotangent), d/dtable (an atomic scatter: what the eikonal trains)
  and d/dpositions (incl. the interpolation's Hessian cross terms, as the PyTorch reference and tcnn).
  A third derivative raises (``backend="torch"`` has it). float64 positions or tables are served by the reference
  (float64 is for gradchecks).

The device code lives in ``triton_kernels.py`` and ``triton_second_order.py``; this module builds the constants,
launches the kernels and wraps them in autograd functions.
"""

from __future__ import annotations

import contextlib
import functools
from typing import ContextManager, Optional, Tuple

import torch
import triton
from jaxtyping import Float, Int
from torch import Tensor
from torch.autograd.function import once_differentiable

from ng_methods.kernels.grid_encoding.reference import check_grid_inputs, grid_encode_reference
from ng_methods.kernels.grid_encoding.spec import GridSpec
from ng_methods.kernels.grid_encoding.triton_kernels import (
    _grid_backward_kernel,
    _grid_forward_kernel,
    _grid_rows_kernel,
)
from ng_methods.kernels.grid_encoding.triton_second_order import _grid_second_order_kernel
from ng_methods.kernels.triton_fma import fma_emulated, is_interpreter

__all__ = [
    "grid_encode_triton",
    "grid_encode_backward_triton",
    "grid_level_rows_triton",
    "BLOCK",
    "SUPPORTED_N_DIMS",
    "SUPPORTED_FEATURES",
]

BLOCK = 128
"""Points per program (one point per thread at ``NUM_WARPS=4``, like tcnn's one-thread-per-point kernels)."""
NUM_WARPS = 4
SUPPORTED_N_DIMS = (1, 2, 3)
SUPPORTED_FEATURES = (1, 2, 4, 8)
_KERNEL_TABLE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_UINT32_MASK = 0xFFFFFFFF


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
    """Forward of the grid encoding with float32 ``positions``; its backward is ``_GridEncodeBackward`` (an autograd
    function itself, so the gradients are differentiable once more)."""

    @staticmethod
    def forward(ctx, positions: Tensor, table: Tensor, spec: GridSpec) -> Tensor:
        # Save the inputs themselves (not contiguous copies): a double backward must reach them through the graph.
        ctx.save_for_backward(positions, table)
        ctx.spec = spec
        return _forward(positions.contiguous(), table.contiguous(), spec)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        need_positions, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_positions or need_table):
            return None, None, None
        positions, table = ctx.saved_tensors
        grad_pos, grad_table = _GridEncodeBackward.apply(
            grad_out, positions, table, ctx.spec, bool(need_positions), bool(need_table)
        )
        return grad_pos, grad_table, None


class _GridEncodeBackward(torch.autograd.Function):
    """``(dL/dout, positions, table) -> (dL/dpositions or None, dL/dtable or None)`` and its backward (the grid's
    double backward, ``triton_second_order.py``). A third derivative raises."""

    @staticmethod
    def forward(ctx, grad_out: Tensor, positions: Tensor, table: Tensor, spec: GridSpec, need_positions: bool,
                need_table: bool):
        ctx.save_for_backward(grad_out, positions, table)
        ctx.spec = spec
        return _first_order(grad_out, positions.contiguous(), table.contiguous(), spec, need_positions, need_table)

    @staticmethod
    def backward(ctx, gg_positions: Optional[Tensor], gg_table: Optional[Tensor]):
        if torch.is_grad_enabled() and any(ctx.needs_input_grad[:3]):
            # create_graph=True through the double backward: its results would silently be constants. Refuse.
            raise RuntimeError(
                "grid_encode_triton is twice differentiable; a third derivative (create_graph=True through the "
                "double backward) is served by the PyTorch reference, use backend='torch' for it"
            )
        return _GridEncodeBackward._second_order(ctx, gg_positions, gg_table)

    @staticmethod
    @once_differentiable
    def _second_order(ctx, gg_positions: Optional[Tensor], gg_table: Optional[Tensor]):
        grad_out, positions, table = ctx.saved_tensors
        d_grad_out, d_positions, d_table = _second_order(
            grad_out, positions.contiguous(), table.contiguous(), ctx.spec, gg_positions, gg_table,
            tuple(bool(need) for need in ctx.needs_input_grad[:3]),
        )
        return d_grad_out, d_positions, d_table, None, None, None


def _forward(positions: Tensor, table: Tensor, spec: GridSpec) -> Tensor:
    """``[n, L*F]`` encoding of contiguous float32 ``positions`` (one launch)."""
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
    return out


def _first_order(grad_out: Tensor, positions: Tensor, table: Tensor, spec: GridSpec, need_positions: bool,
                 need_table: bool) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """``(dL/dpositions [n, d] float32 or None, dL/dtable in the table dtype or None)`` (one launch)."""
    n_points = positions.shape[0]
    grad_out = grad_out.to(table.dtype).contiguous()
    grad_table = torch.zeros(table.shape, dtype=torch.float32, device=table.device) if need_table else None
    grad_pos = torch.zeros(positions.shape, dtype=torch.float32, device=table.device) if need_positions else None
    if n_points > 0 and (need_positions or need_table):
        scales, meta = _level_tensors(spec, positions.device)
        dummy = grad_out  # never dereferenced: the branch using it is compiled out
        with _on_device(positions):
            _grid_backward_kernel[_grid(n_points, spec)](
                positions, table, grad_out,
                grad_table if need_table else dummy, grad_pos if need_positions else dummy,
                scales, meta, n_points, spec.n_levels,
                D=spec.n_dims, F=spec.n_features_per_level, BLOCK_SIZE=BLOCK,
                NEED_TABLE=need_table, NEED_POS=need_positions, num_warps=NUM_WARPS,
                FMA_EMULATED=fma_emulated(),
            )
    return grad_pos, (grad_table.to(table.dtype) if need_table else None)


def _second_order(
    grad_out: Tensor, positions: Tensor, table: Tensor, spec: GridSpec, gg_positions: Optional[Tensor],
    gg_table: Optional[Tensor], needs: Tuple[bool, bool, bool],
) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """``(d/d grad_out, d/d positions, d/d table)`` of ``<gg_positions, dL/dx> + <gg_table, dL/dtable>`` (one launch).

    An output is None where ``needs`` says it is not wanted or where it does not depend on the given cotangents.
    """
    has_pos, has_table = gg_positions is not None, gg_table is not None
    grad_out_dtype = grad_out.dtype
    need_grad_out = needs[0] and (has_pos or has_table)
    need_pos = needs[1] and (has_table or (has_pos and spec.n_dims > 1))
    need_table = needs[2] and has_pos
    n_points, device = positions.shape[0], positions.device
    d_grad_out = torch.zeros(grad_out.shape, dtype=torch.float32, device=device) if need_grad_out else None
    d_pos = torch.zeros(positions.shape, dtype=torch.float32, device=device) if need_pos else None
    d_table = torch.zeros(table.shape, dtype=torch.float32, device=device) if need_table else None
    if n_points > 0 and (need_grad_out or need_pos or need_table):
        grad_out = grad_out.to(table.dtype).contiguous()
        dummy = grad_out  # never dereferenced: the branches using it are compiled out
        gg_pos = gg_positions.to(torch.float32).contiguous() if has_pos else dummy
        scales, meta = _level_tensors(spec, device)
        with _on_device(positions):
            _grid_second_order_kernel[_grid(n_points, spec)](
                positions, table, grad_out, gg_table.contiguous() if has_table else dummy, gg_pos,
                d_grad_out if need_grad_out else dummy, d_table if need_table else dummy,
                d_pos if need_pos else dummy, scales, meta, n_points, spec.n_levels,
                D=spec.n_dims, F=spec.n_features_per_level, BLOCK_SIZE=BLOCK, HAS_GG_TABLE=has_table,
                HAS_GG_POS=has_pos, NEED_GRAD_OUT=need_grad_out, NEED_TABLE=need_table, NEED_POS=need_pos,
                num_warps=NUM_WARPS, FMA_EMULATED=fma_emulated(),
            )
    return (
        d_grad_out.to(grad_out_dtype) if need_grad_out else None,
        d_pos.to(positions.dtype) if need_pos else None,
        d_table.to(table.dtype) if need_table else None,
    )


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
        Differentiable twice w.r.t. ``table`` and ``positions`` (gradients of ``positions`` in their dtype), e.g.
        an eikonal loss on d out/d positions trains the table; a third derivative raises (``backend="torch"`` has
        it). float64 positions or tables are handed to the reference. Non-finite (or float32-overflowing)
        coordinates: NaN features at the affected levels and no gradient (of either order) from them, exactly as
        the reference (see ``grid_encode_reference``).

    Runs on CUDA tensors, or on any device under ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, for tests).
    """
    check_grid_inputs(positions, table, spec)
    if torch.float64 in (positions.dtype, table.dtype):
        return grid_encode_reference(positions, table, spec)
    _check_kernel_inputs(positions, table, spec)
    return _GridEncodeFunction.apply(positions.to(torch.float32), table, spec)


def grid_encode_backward_triton(
    grad_out: Float[Tensor, "n l*f"],
    positions: Float[Tensor, "n d"],
    table: Float[Tensor, "n_params f"],
    spec: GridSpec,
    need_positions: bool = True,
    need_table: bool = True,
) -> Tuple[Optional[Float[Tensor, "n d"]], Optional[Float[Tensor, "n_params f"]]]:
    """The first-order backward of ``grid_encode_triton`` as a differentiable function of its three tensors.

    Args:
        grad_out: ``[n, L*F]`` cotangent of the encoding (cast to the table dtype, as in the backward).
        positions: ``[n, d]`` points (read as float32); table, spec: as ``grid_encode_triton``.
        need_positions, need_table: which gradient to compute (the other is returned as None).

    Returns:
        ``(dL/dpositions [n, d] float32, dL/dtable [n_params, F] in the table dtype)``, differentiable once more
        w.r.t. ``grad_out``, ``positions`` and ``table`` (the grid's double backward). For callers that assemble
        their own first-order backward (``fused_mlp``'s differentiable path).
    """
    check_grid_inputs(positions, table, spec)
    _check_kernel_inputs(positions, table, spec)
    if tuple(grad_out.shape) != (positions.shape[0], spec.n_output_dims):
        raise ValueError(f"grad_out must be [n, {spec.n_output_dims}], got {tuple(grad_out.shape)}")
    return _GridEncodeBackward.apply(grad_out, positions.to(torch.float32), table, spec, need_positions, need_table)


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
