"""Pure-PyTorch multi-resolution grid encoding with tiny-cuda-nn's exact indexing (``kernel_grid``, Linear).

This is the CPU path and the spec that the GPU backends are checked against. Per level ``l`` and input ``x``:

* ``pos = fmaf(scale_l, x, 0.5)`` in float32, ``cell = (uint32)(int)floor(pos)``, ``frac = pos - floor(pos)``;
* each of the ``2**d`` corners ``cell + bits`` (uint32, so negative or out-of-range inputs wrap) is turned into a
  table row by tcnn's ``grid_index``: a dense row-major index while the stride fits the level's table, the
  XOR-prime hash when the level is hashed, then ``% table_size``;
* the output is ``sum_corners prod_dim (bit ? frac : 1 - frac) * table[row]``, level-major.

uint32 arithmetic is emulated with int64 tensors masked to the low 32 bits after every add/multiply (int64
multiplication wraps modulo 2**64, so its low 32 bits are the uint32 product). Only ``frac`` carries gradients, so
autograd gives d/dtable, d/dpositions and their double backward (eikonal losses) for free.

Known differences from tcnn's kernel, all at the float rounding level: tcnn accumulates corners with fused
multiply-adds in the table dtype (fp16 tables accumulate in fp16), while this reference accumulates in float32
(float64 for float64 inputs) and casts the result once.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ng_methods.kernels.grid_encoding.spec import HASH_PRIMES, GridSpec

UINT32_MASK = 0xFFFFFFFF
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def level_indexing(spec: GridSpec, level: int) -> Tuple[int, int, int, bool]:
    """tcnn's per-level indexing constants, with its uint32 ``stride`` loop replayed in Python.

    Returns:
        ``(resolution, table_size, n_dense_dims, hashed)``: ``n_dense_dims`` is how many leading dimensions the
        dense index loop visits before ``stride > table_size`` stops it; ``hashed`` is tcnn's
        ``grid_type == Hash && table_size < stride`` with the wrapped uint32 stride.
    """
    resolution = spec.level_resolutions()[level]
    table_size = spec.level_sizes()[level]
    stride, n_dense_dims = 1, 0
    while n_dense_dims < spec.n_dims and stride <= table_size:
        stride = (stride * resolution) & UINT32_MASK
        n_dense_dims += 1
    return resolution, table_size, n_dense_dims, spec.grid_type == "hash" and table_size < stride


def corner_bits(n_dims: int, device: torch.device | str | None = None) -> Int[Tensor, "n_corners d"]:
    """Bit ``dim`` of corner ``c`` (tcnn's corner order: dimension 0 is the lowest bit)."""
    corners = torch.arange(1 << n_dims, device=device)
    return (corners[:, None] >> torch.arange(n_dims, device=device)) & 1


def fma_to_float32(scale: float, x: Float[Tensor, "*shape"], addend: float) -> Float[Tensor, "*shape"]:
    """``fmaf(scale, x, addend)`` for float32 ``x`` and float32-representable constants: one rounding to float32.

    The product of two float32 values is exact in float64, and TwoSum gives the float64 sum plus its exact
    rounding error. Rounding that float64 sum to float32 is then correct except when it lands exactly on a float32
    midpoint that the exact sum is not on (double rounding); there the sign of the error decides the direction.
    """
    product = x.to(torch.float64) * scale
    total = product + addend
    addend_part = total - product
    error = (product - (total - addend_part)) + (addend - addend_part)
    rounded = total.to(torch.float32)
    rounded_up = rounded.to(torch.float64) < total
    toward = torch.where(rounded_up, float("inf"), float("-inf")).to(torch.float32)
    neighbour = torch.nextafter(rounded, toward)  # the float32 on the other side of `total`
    on_midpoint = ((rounded.to(torch.float64) + neighbour.to(torch.float64)) * 0.5 == total) & (error != 0)
    corrected = torch.where(error > 0, torch.maximum(rounded, neighbour), torch.minimum(rounded, neighbour))
    return torch.where(on_midpoint, corrected, rounded)


def _level_cells(
    positions: Float[Tensor, "n d"], scale: float
) -> Tuple[Int[Tensor, "n d"], Float[Tensor, "n d"]]:
    """tcnn's ``pos_fract``: the uint32 cell of every coordinate and its (non-differentiable) fraction."""
    with torch.no_grad():
        if positions.dtype == torch.float64:
            pos = positions * scale + 0.5
        else:
            pos = fma_to_float32(scale, positions, 0.5)
        floor = torch.floor(pos)
        # CUDA's float->int conversion saturates and maps NaN to 0; (uint32) then reinterprets the bits.
        # (float64 holds INT32_MAX exactly; float32 would round the clamp bound up to 2**31.)
        as_int = torch.nan_to_num(floor.to(torch.float64), nan=0.0).clamp(_INT32_MIN, _INT32_MAX).to(torch.int64)
        return as_int & UINT32_MASK, pos - floor  # `pos - floor(pos)` is exact in floating point


def _corner_rows(cells: Int[Tensor, "n d"], spec: GridSpec, level: int) -> Int[Tensor, "n n_corners"]:
    """tcnn's ``grid_index`` for all ``2**d`` corners of every point's cell: rows within the level's table."""
    resolution, table_size, n_dense_dims, hashed = level_indexing(spec, level)
    bits = corner_bits(spec.n_dims, cells.device)
    corner = [(cells[:, dim, None] + bits[:, dim]) & UINT32_MASK for dim in range(spec.n_dims)]
    if hashed:
        index = torch.zeros_like(corner[0])
        for dim in range(spec.n_dims):
            index ^= (corner[dim] * HASH_PRIMES[dim]) & UINT32_MASK
    else:
        index, stride = torch.zeros_like(corner[0]), 1
        for dim in range(n_dense_dims):
            index = (index + corner[dim] * stride) & UINT32_MASK
            stride = (stride * resolution) & UINT32_MASK
    return index % table_size


def grid_level_indices(positions: Float[Tensor, "n d"], spec: GridSpec, level: int) -> Int[Tensor, "n n_corners"]:
    """Table rows (within level ``level``) that tcnn reads for every point's ``2**d`` corners.

    Corner ``c`` is ``cell + bit(c, dim)`` per dimension. Add ``spec.level_offsets()[level]`` for flat-table rows.
    """
    cells, _ = _level_cells(_as_position_dtype(positions), spec.level_scales()[level])
    return _corner_rows(cells, spec, level)


def _as_position_dtype(positions: Tensor) -> Tensor:
    # tcnn reads positions as float32; float64 is kept for gradchecks.
    return positions if positions.dtype in (torch.float32, torch.float64) else positions.to(torch.float32)


def check_grid_inputs(positions: Tensor, table: Tensor, spec: GridSpec) -> None:
    """Raise ``ValueError`` unless ``positions`` is ``[n, d]`` and ``table`` is ``[n_params, F]`` for ``spec``."""
    if positions.ndim != 2 or positions.shape[1] != spec.n_dims:
        raise ValueError(f"positions must be [n, {spec.n_dims}], got {tuple(positions.shape)}")
    expected = (spec.n_params, spec.n_features_per_level)
    if tuple(table.shape) != expected:
        raise ValueError(f"table must be [n_params, F] = {list(expected)} for this GridSpec, got {list(table.shape)}")
    if not positions.is_floating_point() or not table.is_floating_point():
        raise ValueError(f"positions and table must be floating point, got {positions.dtype} and {table.dtype}")
    if positions.device != table.device:
        raise ValueError(f"positions ({positions.device}) and table ({table.device}) must be on the same device")


def grid_encode_reference(
    positions: Float[Tensor, "n d"], table: Float[Tensor, "n_params f"], spec: GridSpec
) -> Float[Tensor, "n l*f"]:
    """Encode ``positions`` with the multi-resolution grid ``table`` (tiny-cuda-nn ``Grid``, Linear interpolation).

    Args:
        positions: ``[n, d]`` points, nominally in ``[0, 1]^d`` (outside it indices wrap like tcnn's uint32 math).
        table: ``[spec.n_params, F]`` flat table; level ``l`` owns rows ``level_offsets()[l]:level_offsets()[l+1]``.
        spec: grid hyper-parameters.

    Returns:
        ``[n, L*F]`` features, level-major (column ``l*F + f``), in ``table.dtype``. Interpolation runs in float32,
        or float64 when ``positions`` or ``table`` is float64. Differentiable w.r.t. ``table`` and ``positions``
        (twice).

    Example:
        >>> spec = GridSpec(n_levels=1, n_features_per_level=1, base_resolution=2, n_dims=1, grid_type="dense")
        >>> table = torch.tensor([[10.0], [20.0], [0.0], [0.0], [0.0], [0.0], [0.0], [0.0]])  # 2 vertices, padded to 8
        >>> grid_encode_reference(torch.tensor([[0.25]]), table, spec)  # pos = 1 * 0.25 + 0.5: frac 0.75 in cell 0
        tensor([[17.5000]])
    """
    check_grid_inputs(positions, table, spec)
    positions = _as_position_dtype(positions)
    compute_dtype = torch.float64 if torch.float64 in (positions.dtype, table.dtype) else torch.float32
    bits = corner_bits(spec.n_dims, positions.device)
    offsets = spec.level_offsets()
    n_points, n_corners, n_features = positions.shape[0], 1 << spec.n_dims, spec.n_features_per_level

    encoded_levels: List[Tensor] = []
    for level, scale in enumerate(spec.level_scales()):
        cells, frac_value = _level_cells(positions, scale)
        # frac's value is tcnn's exactly; its derivative is scale (x - x.detach() is an exact zero carrying d/dx).
        frac = (frac_value + (positions - positions.detach()) * scale).to(compute_dtype)
        one_minus_frac = 1 - frac

        weights = None  # tcnn's per-corner product order: weight = 1 * w_dim0 * w_dim1 * ...
        for dim in range(spec.n_dims):
            factor = torch.stack([one_minus_frac[:, dim], frac[:, dim]], dim=1)[:, bits[:, dim]]
            weights = factor if weights is None else weights * factor

        rows = _corner_rows(cells, spec, level) + offsets[level]
        values = table.index_select(0, rows.reshape(-1)).view(n_points, n_corners, n_features).to(compute_dtype)
        encoded = torch.zeros(n_points, n_features, dtype=compute_dtype, device=positions.device)
        for corner in range(n_corners):  # same summation order as tcnn
            encoded = encoded + weights[:, corner, None] * values[:, corner]
        encoded_levels.append(encoded)

    return torch.cat(encoded_levels, dim=1).to(table.dtype)
