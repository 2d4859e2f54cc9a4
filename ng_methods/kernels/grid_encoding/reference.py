"""Pure-PyTorch multi-resolution grid encoding with tiny-cuda-nn's exact indexing (``kernel_grid``, Linear).

This is the CPU path and the spec that the GPU backends are checked against. Per level ``l`` and input ``x``:

* ``pos = fmaf(scale_l, x, 0.5)`` in float32, ``cell = (uint32)(int)floor(pos)``, ``frac = pos - floor(pos)``;
* each of the ``2**d`` corners ``cell + bits`` (uint32, so negative or out-of-range inputs wrap) is turned into a
  table row by tiny-cuda-nn 2.x's ``grid_index`` (``GridSpec.level_indexing``): a dense row-major index while
  ``resolution**d`` fits the level's table, the XOR-prime hash otherwise, then ``% table_size``;
* the level scales are ``GridSpec.level_scales()``: correctly rounded float32, the same values for every backend;
* the output is ``sum_corners prod_dim (bit ? frac : 1 - frac) * table[row]``, level-major.

How it is computed (for speed on CPU, where short inner dimensions, large fresh temporaries and row-wise
gathers / scatters are what cost):

* levels are looped over (per-level temporaries stay small enough for the allocator to recycle them), and points
  are handled as ``[d, n]`` / ``[2**d, n]`` (coordinate- / corner-major) tensors, so that every elementwise op runs
  along ``n``;
* uint32 arithmetic is emulated with int64 tensors, reducing modulo 2**32 (or a power-of-two table size) only where
  needed, and in int32 where no wraparound can occur (see ``_corner_rows``);
* the fmaf is emulated exactly, but only where float64 rounding followed by float32 rounding can differ from one
  rounding (see ``_fma_half_to_float32``);
* gathering, blending and scattering into the table gradient is a custom autograd function (``_BlendCorners``,
  written with differentiable ops, so double backward works).

Only ``frac`` carries gradients (its value is tcnn's exactly; its derivative is ``scale``), so this gives d/dtable,
d/dpositions and their double backward (eikonal losses).

Known differences from tcnn's kernel, all at the float rounding level: tcnn accumulates corners one after the other
with fused multiply-adds in the table dtype (fp16 tables accumulate in fp16), while this reference sums the weighted
corners in float32 (float64 for float64 inputs) in ``torch.sum``'s / ``embedding_bag``'s order and casts the result
once. The corner
weights themselves are tcnn's bit for bit (``1 * w_dim0 * w_dim1 * ...``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ng_methods.kernels.grid_encoding.spec import GridSpec

UINT32_MASK = 0xFFFFFFFF
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
# Levels whose table is larger than this (about a cache) are gathered row-wise (see _BlendCorners).
_ROW_WISE_BYTES = 8 << 20
# A float64 whose 29 bits below float32 precision read 100...0 sits exactly on a float32 rounding midpoint.
_FLOAT32_DROPPED_BITS, _FLOAT32_MIDPOINT_BITS = (1 << 29) - 1, 1 << 28


def corner_bits(n_dims: int, device: torch.device | str | None = None) -> Int[Tensor, "n_corners d"]:
    """Bit ``dim`` of corner ``c`` (tcnn's corner order: dimension 0 is the lowest bit)."""
    corners = torch.arange(1 << n_dims, device=device)
    return (corners[:, None] >> torch.arange(n_dims, device=device)) & 1


def fma_to_float32(scale: float | Tensor, x: Float[Tensor, "*shape"], addend: float) -> Float[Tensor, "*shape"]:
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


@dataclass(frozen=True)
class _Level:
    """One level's constants for the vectorized index arithmetic."""

    scale: float
    hashed: bool
    factors: Tuple[int, ...]  # per dim: the hash prime, or the dense stride (``GridSpec.level_indexing``)
    table_size: int
    offset: int  # start row in the flat table

    @property
    def power_of_two(self) -> bool:  # then `uint32 % T` is `& (T - 1)` of any integer congruent to it mod 2**32
        return self.table_size & (self.table_size - 1) == 0

    @property
    def mask(self) -> int:  # reducing modulo this keeps everything `index % T` depends on
        return self.table_size - 1 if self.power_of_two else UINT32_MASK


@functools.lru_cache(maxsize=64)
def _levels(spec: GridSpec) -> Tuple[_Level, ...]:
    levels = []
    for level, (scale, offset) in enumerate(zip(spec.level_scales(), spec.level_offsets())):
        indexing = spec.level_indexing(level)
        levels.append(_Level(scale, indexing.hashed, indexing.factors, indexing.table_size, offset))
    return tuple(levels)


def _fma_half_to_float32(x: Float[Tensor, "*shape"], scale: float) -> Float[Tensor, "*shape"]:
    """``fma_to_float32(scale, x, 0.5)`` for float32 values ``x`` held in float64, emulating only where needed.

    ``scale * x`` is exact in float64, so ``total = scale * x + 0.5`` is rounded once to float64, and rounding it on
    to float32 differs from one direct rounding only if ``total`` lies exactly on a float32 midpoint (otherwise a
    midpoint would sit strictly between ``total`` and the exact sum, and be a closer float64). Such totals are rare
    and spotted from their low bits; only they go through the TwoSum emulation. (Float32 subnormals, whose midpoints
    look different, cannot occur: a non-zero ``scale * x + 0.5`` is at least 2**-48 in magnitude.)
    """
    total = (x * scale).add_(0.5)
    rounded = total.to(torch.float32)
    suspect = (total.view(torch.int64) & _FLOAT32_DROPPED_BITS) == _FLOAT32_MIDPOINT_BITS
    if suspect.any():
        where = suspect.nonzero(as_tuple=True)
        rounded[where] = fma_to_float32(scale, x[where], 0.5)
    return rounded


def _level_cells(
    coords: Float[Tensor, "d n"], scale: float, coords64: Float[Tensor, "d n"] | None = None
) -> Tuple[Int[Tensor, "d n"], Float[Tensor, "d n"]]:
    """tcnn's ``pos_fract``: the cell of every coordinate and its (non-differentiable) fraction.

    Cells are ``(int)floor(pos)`` as int64 in ``[-2**31, 2**31)``, congruent modulo 2**32 to tcnn's uint32 cell,
    which is all the index arithmetic needs. ``coords64`` is ``coords`` in float64, if already at hand.
    """
    with torch.no_grad():
        if coords.dtype == torch.float64:
            pos = coords * scale + 0.5
        else:
            pos = _fma_half_to_float32(coords.to(torch.float64) if coords64 is None else coords64, scale)
        floor = torch.floor(pos)
        low, high = torch.aminmax(floor) if floor.numel() else (0, 0)
        if low >= _INT32_MIN and high < 2**31:  # false for NaN (2**31 - 1 would round to 2**31 in float32)
            cells = floor.to(torch.int64)
        else:
            # CUDA's float->int conversion saturates and maps NaN to 0. (float64 holds INT32_MAX exactly; float32
            # would round the clamp bound up to 2**31.)
            cells = torch.nan_to_num(floor.to(torch.float64), nan=0.0).clamp(_INT32_MIN, _INT32_MAX).to(torch.int64)
        return cells, pos - floor  # `pos - floor(pos)` is exact in floating point


def _corner_rows(cells: Int[Tensor, "d n"], level: _Level) -> Int[Tensor, "n_corners n"]:
    """tcnn's ``grid_index`` for all ``2**d`` corners of every point's cell: rows within the level's table.

    A corner's index combines one term per dim, ``(cell + bit) * factor``: XOR-ed (hash) or summed (dense), modulo
    2**32. |cell + bit| <= 2**31 and factor < 2**32, so each term is exact in int64; reducing the terms modulo 2**32
    (or modulo a power-of-two T) keeps their combination (< d * 2**32) exact too, and one more reduction gives the
    uint32 index, or directly ``index % T``. Combinations that provably stay below 2**31 run in (cheaper) int32.
    """
    n_dims = cells.shape[0]
    factors = torch.tensor(level.factors, dtype=torch.int64, device=cells.device)[:, None]
    term = cells * factors
    terms = torch.stack([term, term + factors])  # [bit, d, n]
    mask = level.mask
    if not level.hashed and cells.numel():
        low, high = (int(bound) for bound in torch.aminmax(cells))
        if low >= 0 and (high + 1) * sum(level.factors) <= _INT32_MAX:  # no uint32 wraparound: nothing to reduce
            mask = None
    if mask is not None:
        terms &= mask
    if mask is None or (mask if level.hashed else n_dims * mask) <= _INT32_MAX:
        terms = terms.to(torch.int32)
    rows = terms[:, 0]
    for dim in range(1, n_dims):  # corner c = sum_dim bit_dim << dim: the new dim is the major axis
        rows = (terms[:, dim, None] ^ rows if level.hashed else terms[:, dim, None] + rows).flatten(0, 1)
    if mask is not None and not level.hashed:
        rows &= mask  # (an XOR of reduced terms is already reduced)
    if not level.power_of_two:
        return rows % level.table_size
    return rows if mask is not None else rows & (level.table_size - 1)


def _corner_weights(frac: Float[Tensor, "d n"]) -> Float[Tensor, "n_corners n"]:
    """tcnn's corner weights ``1 * w_dim0 * w_dim1 * ...`` (same product order), ``w = bit ? frac : 1 - frac``."""
    factors = torch.stack([1 - frac, frac])  # [bit, d, n]
    weights = factors[:, 0]
    for dim in range(1, frac.shape[0]):
        weights = (factors[:, dim, None] * weights).flatten(0, 1)
    return weights


class _BlendCorners(torch.autograd.Function):
    """``out[:, l, f] = sum_c weights[l][c] * table[rows[l][c], f]`` for every level ``l``, flattened level-major.

    Rows and weights are corner-major ``[2**d, n]``. How a level reads its table depends on its size: while it stays
    cache resident, 1-D ``index_select`` / ``index_add_`` on one feature column at a time are several times faster
    on CPU than their row-wise versions; past that, each row costs a cache miss per column, and ``embedding_bag``
    (fused, prefetching, row-wise, on point-major copies) wins. Every level's scatter goes into one table gradient
    (autograd of per-level gathers would build a dense one per level). The backward is written with differentiable
    ops, so double backward works.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, table: Tensor, row_wise: Tuple[bool, ...], *rows_and_weights: Tensor
    ) -> Tensor:
        n_levels, n_features = len(row_wise), table.shape[1]
        ctx.row_wise, ctx.table_shape = row_wise, table.shape
        # The table's values only matter for d/dweights (saving it needlessly would forbid in-place updates).
        ctx.save_for_backward(table if any(ctx.needs_input_grad[2 + n_levels :]) else None, *rows_and_weights)
        rows, weights = rows_and_weights[:n_levels], rows_and_weights[n_levels:]
        encoded = table.new_empty(rows[0].shape[1], n_levels, n_features)
        for level in range(n_levels):
            if row_wise[level]:
                bags, bag_weights = rows[level].t().contiguous(), weights[level].t().contiguous()
                encoded[:, level] = F.embedding_bag(bags, table, per_sample_weights=bag_weights, mode="sum")
                continue
            for feature in range(n_features):
                values = table[:, feature].index_select(0, rows[level].view(-1)).view(rows[level].shape)
                torch.sum(values.mul_(weights[level]), dim=0, out=encoded[:, level, feature])
        return encoded.flatten(1)

    @staticmethod
    def backward(ctx, grad_encoded: Tensor):  # type: ignore[override]
        table, *rows_and_weights = ctx.saved_tensors
        n_levels, n_features = len(ctx.row_wise), ctx.table_shape[1]
        rows, weights = rows_and_weights[:n_levels], rows_and_weights[n_levels:]
        grad_encoded = grad_encoded.t().contiguous().view(n_levels, n_features, -1)  # contiguous per level, feature
        grad_table = grad_encoded.new_zeros(ctx.table_shape) if ctx.needs_input_grad[0] else None
        grad_weights: List[Tensor | None] = [None] * n_levels
        for level in range(n_levels):
            level_rows = rows[level].view(-1)
            if grad_table is not None and ctx.row_wise[level]:  # scatter_add_ runs the columns in parallel
                corner_grads = (weights[level] * grad_encoded[level][:, None]).view(n_features, -1)
                columns = level_rows.to(torch.int64).expand(n_features, -1)
                grad_table.t().scatter_add_(1, columns, corner_grads)
            elif grad_table is not None:
                for feature in range(n_features):
                    corner_grads = weights[level] * grad_encoded[level, feature]
                    grad_table[:, feature].index_add_(0, level_rows, corner_grads.view(-1))
            if not ctx.needs_input_grad[2 + n_levels + level]:
                continue
            if ctx.row_wise[level]:  # embedding_bag with one-row bags is a fast row gather
                ones = grad_encoded.new_ones(level_rows.shape[0], 1)
                values = F.embedding_bag(level_rows[:, None], table, per_sample_weights=ones, mode="sum")
                values = values.view(*rows[level].shape, n_features).unbind(-1)
            else:
                values = [table[:, f].index_select(0, level_rows).view(rows[level].shape) for f in range(n_features)]
            grad_weights[level] = values[0] * grad_encoded[level, 0]
            for feature in range(1, n_features):
                grad_weights[level] = torch.addcmul(grad_weights[level], values[feature], grad_encoded[level, feature])
        return grad_table, None, *([None] * n_levels), *grad_weights


def grid_level_indices(positions: Float[Tensor, "n d"], spec: GridSpec, level: int) -> Int[Tensor, "n n_corners"]:
    """Table rows (within level ``level``) that tcnn reads for every point's ``2**d`` corners.

    Corner ``c`` is ``cell + bit(c, dim)`` per dimension. Add ``spec.level_offsets()[level]`` for flat-table rows.
    """
    cells, _ = _level_cells(_as_position_dtype(positions).t(), spec.level_scales()[level])
    return _corner_rows(cells, _levels(spec)[level]).to(torch.int64).t().contiguous()


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

    Non-finite input: where a coordinate is NaN or infinite, or ``scale * x`` overflows float32 at a level (so
    tcnn's fraction is NaN), that point's features at that level are NaN, as tiny-cuda-nn's; unlike tcnn, such a
    (point, level) adds nothing to the table gradient (tcnn scatters NaN into the rows of its cell, poisoning them
    for every other point) and its position gradient is 0.

    Example:
        >>> spec = GridSpec(n_levels=1, n_features_per_level=1, base_resolution=2, n_dims=1, grid_type="dense")
        >>> table = torch.tensor([[10.0], [20.0], [0.0], [0.0], [0.0], [0.0], [0.0], [0.0]])  # 2 vertices, padded to 8
        >>> grid_encode_reference(torch.tensor([[0.25]]), table, spec)  # pos = 1 * 0.25 + 0.5: frac 0.75 in cell 0
        tensor([[17.5000]])
    """
    check_grid_inputs(positions, table, spec)
    positions = _as_position_dtype(positions)
    compute_dtype = torch.float64 if torch.float64 in (positions.dtype, table.dtype) else torch.float32
    coords = positions.detach().t().contiguous()  # [d, n]
    coords64 = coords.to(torch.float64)  # exact; shared by every level's fmaf
    carries_grad = torch.is_grad_enabled() and positions.requires_grad
    if carries_grad:  # an exact zero carrying d/dx: frac + zero * scale has frac's value and derivative scale
        zero_with_grad = (positions - positions.detach()).t().contiguous()

    rows, weights, not_finite = [], [], []
    any_not_finite = False  # each level's check is one reduction (a host sync on CUDA): take it once
    row_dtype = torch.int32 if spec.n_params <= _INT32_MAX else torch.int64
    for level in _levels(spec):
        cells, frac = _level_cells(coords, level.scale, coords64)
        rows.append(_corner_rows(cells, level).to(row_dtype).add_(level.offset))
        if carries_grad:
            frac = frac + zero_with_grad * level.scale
        bad = frac.isnan().any(dim=0)  # a coordinate that is not finite, or overflows float32 at this scale
        if bad.any():  # such a (point, level) gives NaN features and no gradient (see grid_encode)
            frac = torch.where(bad, 0.0, frac)
            any_not_finite = True
        not_finite.append(bad)
        weights.append(_corner_weights(frac.to(compute_dtype)))
    blend_table = table.to(compute_dtype)
    bytes_per_row = blend_table.shape[1] * blend_table.element_size()
    row_wise = tuple(level.table_size * bytes_per_row > _ROW_WISE_BYTES for level in _levels(spec))
    encoded = _BlendCorners.apply(blend_table, row_wise, *rows, *weights)
    if any_not_finite:
        bad = torch.stack(not_finite, dim=1).repeat_interleave(spec.n_features_per_level, dim=1)
        encoded = torch.where(bad, float("nan"), encoded)
    return encoded.to(table.dtype)
