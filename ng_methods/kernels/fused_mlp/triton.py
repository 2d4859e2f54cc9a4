"""Triton kernels: grid encoding + bias-free ReLU MLP fused, forward in 1 launch, backward in 1 launch.

Forward (``_fwd_kernel``, grid ``cdiv(n, BLOCK)``): a program takes ``BLOCK`` points and evaluates *all* levels at
once on ``[BLOCK, L_PAD]`` tiles (one column per level: the level loop is vectorised inside the program), with tcnn's
exact indexing: ``pos = fma(scale, x, 0.5)`` in fp32 (exact under every interpreter too: ``kernels.triton_fma``),
saturating float->int32 cell, uint32 wrap-around, tcnn 2.x's dense index or XOR-prime hash
(``GridSpec.level_indexing``), ``% table_size``. A (not unrolled) loop over the ``2**d`` corners gathers
``[BLOCK, L_PAD, F_PAD]`` tiles into the encoding, which is reshaped to the level-major ``[BLOCK, K_PAD]``
(``K_PAD = L_PAD * F_PAD >= 16`` for ``tl.dot``; padded columns meet zero weight rows) and fed through the MLP with
``tl.dot`` (fp32 weights: ``FP32_DOT_PRECISION``; fp16 weights: fp16 operands, fp32 accumulation). Only the
``[n, out]`` output is written.

Backward (``_bwd_kernel``, a persistent grid of ``min(n_blocks, 2 * SMs)`` programs looping over blocks): each block
*recomputes* the encoding and the MLP activations. Nothing but the inputs is saved: the backward needs every corner's
row and weight anyway to scatter into the table, so recomputing costs only the forward's gathers plus a few tiny dots,
while saving activations would cost ``(L*F + hidden * layers) * 4`` bytes per point written, kept and read back. It
backpropagates through the MLP, accumulates every weight gradient in registers across its blocks, scatters the
encoding gradient into the table with relaxed atomics, optionally writes position gradients (re-gathering the corner
values), and finally adds its weight-gradient partials to fp32 buffers with one atomic per element. Besides the kernel
the backward launches one zero-fill of a flat fp32 buffer holding the table and weight gradients (plus casts when the
table / weights are not fp32).

Limits: ``n_dims`` 1..3, 1 to 3 hidden layers of one width <= 256, weights all fp32 or all fp16, fp32/fp16 table.
Register use (ptxas, sm_90, checked offline): no spills for 1 hidden layer at L=16/F=2, L=8/F=2, L=1/F=4 in fp32 and
fp16; small spills (80-550 bytes) with position gradients and 2+ hidden layers.

Second order (``create_graph=True``, eikonal losses): ``triton_second_order.encode_and_mlp_backward_differentiable``
(re-exported here) assembles the first-order gradients from the grid's twice-differentiable Triton functions and torch
matmuls instead of this backward kernel.

The device code lives in ``triton_kernels.py``; this module checks inputs, builds the constants and launches it.
"""

from __future__ import annotations

import functools
import math
from typing import List, Optional, Sequence, Tuple

import torch
import triton
from torch import Tensor

from ng_methods.kernels.fused_mlp.triton_kernels import _bwd_kernel, _fwd_kernel
from ng_methods.kernels.fused_mlp.triton_second_order import (  # noqa: F401  (re-exported for __init__)
    encode_and_mlp_backward_differentiable,
)
from ng_methods.kernels.grid_encoding.spec import GridSpec
from ng_methods.kernels.triton_fma import fma_emulated, is_interpreter

FORWARD_BLOCK, BACKWARD_BLOCK = 64, 64
FORWARD_WARPS, BACKWARD_WARPS = 8, 8
# tl.dot precision for fp32 weights on a GPU (the interpreter always multiplies in full fp32). "tf32" uses tensor
# cores (10-bit mantissa operands, fp32 accumulation, ~1e-3 relative error, like torch's allow_tf32); "ieee" (exact
# fp32 FMAs) and "tf32x3" made ptxas spill kilobytes per thread in the backward kernel (sm_90, Triton 3.9).
FP32_DOT_PRECISION = "tf32"
_META_ROWS = 7  # scale bits, table size, offset, hashed, factor per dim (3)


def _next_pow2(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


def check_triton_inputs(positions: Tensor, table: Tensor, spec: GridSpec, weights: Sequence[Tensor]) -> None:
    """Raise ``ValueError`` for inputs the kernels do not handle (shapes are checked by the caller)."""
    if positions.device.type != "cuda" and not is_interpreter():
        raise ValueError(f"the triton backend needs CUDA tensors (or TRITON_INTERPRET=1), got {positions.device}")
    if not 1 <= spec.n_dims <= 3:
        raise ValueError(f"the triton backend handles n_dims 1..3, got {spec.n_dims}")
    if not 2 <= len(weights) <= 4:
        raise ValueError(f"the triton backend handles 1 to 3 hidden layers, got {len(weights) - 1}")
    if len({w.shape[0] for w in weights[:-1]}) != 1:
        raise ValueError(f"hidden layers must share one width, got {[w.shape[0] for w in weights[:-1]]}")
    if len({w.dtype for w in weights}) != 1 or weights[0].dtype not in (torch.float32, torch.float16):
        raise ValueError(f"weights must be all float32 or all float16, got {[w.dtype for w in weights]}")
    if table.dtype not in (torch.float32, torch.float16):
        raise ValueError(f"the triton backend needs a float32 or float16 table, got {table.dtype}")
    if spec.n_params * spec.n_features_per_level >= 2**31:
        raise ValueError("table too large for int32 offsets")
    if max(weights[0].shape[0], weights[-1].shape[0]) > 256:
        raise ValueError("hidden and output widths above 256 do not fit the kernel's register tiles")


@functools.lru_cache(maxsize=32)
def _level_meta(spec: GridSpec, device: torch.device) -> Tensor:
    """``[7, L_PAD]`` int32: fp32 scale bits, table size, flat offset, hashed flag, index factor per dim (uint32 bits).

    Cached per spec and device so that a call uploads nothing. Padding levels have size 1 and zero factors.
    """
    l_pad = _level_pad(spec)
    meta = torch.zeros(_META_ROWS, l_pad, dtype=torch.int64)
    meta[1] = 1
    scales = torch.tensor(spec.level_scales(), dtype=torch.float32).view(torch.int32).to(torch.int64)
    offsets = spec.level_offsets()
    for level in range(spec.n_levels):
        indexing = spec.level_indexing(level)  # tiny-cuda-nn 2.x, as the reference
        meta[:4, level] = torch.tensor([int(scales[level]), indexing.table_size, offsets[level], int(indexing.hashed)])
        meta[4 : 4 + spec.n_dims, level] = torch.tensor(indexing.factors)
    meta = torch.where(meta >= 2**31, meta - 2**32, meta)  # uint32 bit patterns as int32
    return meta.to(torch.int32).to(device)


def _level_pad(spec: GridSpec) -> int:
    """Level columns per tile: a power of two with ``L_PAD * F_PAD >= 16`` (``tl.dot``'s minimum K)."""
    return max(_next_pow2(spec.n_levels), 16 // min(16, _next_pow2(spec.n_features_per_level)))


def _constexprs(spec: GridSpec, weights: Sequence[Tensor]) -> dict:
    hidden, out = weights[0].shape[0], weights[-1].shape[0]
    return dict(D=spec.n_dims, L=spec.n_levels, F=spec.n_features_per_level, L_PAD=_level_pad(spec),
                F_PAD=_next_pow2(spec.n_features_per_level), H=hidden, O=out, H_PAD=max(16, _next_pow2(hidden)),
                O_PAD=max(16, _next_pow2(out)), N_MID=len(weights) - 2, HALF=weights[0].dtype == torch.float16,
                PRECISION=FP32_DOT_PRECISION, FMA_EMULATED=fma_emulated())


def _weight_args(weights: Sequence[Tensor]) -> List[Tensor]:
    """``(w_in, w_h1, w_h2, w_out)``; absent hidden layers get a placeholder the kernel never reads."""
    weights = [w.contiguous() for w in weights]
    middle = weights[1:-1] + [weights[0]] * (4 - len(weights))
    return [weights[0], *middle, weights[-1]]


@functools.lru_cache(maxsize=8)
def _backward_programs(device: torch.device) -> int:
    if device.type != "cuda":
        return 2  # the interpreter: still exercises the grid-stride loop and the cross-program atomics
    return 2 * torch.cuda.get_device_properties(device).multi_processor_count


def encode_and_mlp_forward(positions: Tensor, table: Tensor, spec: GridSpec, weights: Sequence[Tensor]) -> Tensor:
    """``[n, out]`` float32 output of the fused forward kernel (one launch; none for ``n == 0``)."""
    check_triton_inputs(positions, table, spec, weights)
    positions = positions if positions.dtype == torch.float32 else positions.float()
    n = positions.shape[0]
    out = torch.empty(n, weights[-1].shape[0], device=positions.device, dtype=torch.float32)
    if n == 0:
        return out
    grid = (triton.cdiv(n, FORWARD_BLOCK),)
    _fwd_kernel[grid](positions, positions.stride(0), positions.stride(1), table.contiguous(),
                      _level_meta(spec, positions.device), *_weight_args(weights), out, n,
                      BLOCK=FORWARD_BLOCK, num_warps=FORWARD_WARPS, **_constexprs(spec, weights))
    return out


def encode_and_mlp_backward(
    positions: Tensor,
    table: Tensor,
    spec: GridSpec,
    weights: Sequence[Tensor],
    grad_out: Tensor,
    positions_grad: bool,
    table_grad: bool = True,
) -> Tuple[Optional[Tensor], Optional[Tensor], List[Tensor]]:
    """``(d positions, d table, [d weight])`` for the cotangent ``grad_out [n, out]`` (one kernel launch), constants
    for autograd (``encode_and_mlp_backward_differentiable`` is the differentiable variant).

    ``d positions`` / ``d table`` are None unless ``positions_grad`` / ``table_grad``; weight gradients always come.
    """
    check_triton_inputs(positions, table, spec, weights)
    positions = positions if positions.dtype == torch.float32 else positions.float()
    n, device = positions.shape[0], positions.device
    # One zero-fill for all accumulated gradients (the kernel writes every position gradient itself).
    shapes = [tuple(table.shape) if table_grad else (1,)] + [tuple(w.shape) for w in weights]
    flat = torch.zeros(sum(math.prod(shape) for shape in shapes), device=device, dtype=torch.float32)
    g_table, *g_weights = [part.view(shape) for part, shape in zip(flat.split([math.prod(s) for s in shapes]), shapes)]
    g_pos = torch.empty(positions.shape, device=device, dtype=torch.float32) if positions_grad else None
    if n > 0:
        n_blocks = triton.cdiv(n, BACKWARD_BLOCK)
        grid = (min(n_blocks, _backward_programs(device)),)
        _bwd_kernel[grid](positions, positions.stride(0), positions.stride(1), table.contiguous(),
                          _level_meta(spec, device), *_weight_args(weights), grad_out, grad_out.stride(0),
                          grad_out.stride(1), g_table, *_weight_args(g_weights),
                          g_pos if positions_grad else g_table, n, n_blocks, TABLE_GRAD=table_grad,
                          POS_GRAD=positions_grad,
                          BLOCK=BACKWARD_BLOCK, num_warps=BACKWARD_WARPS, **_constexprs(spec, weights))
    g_weights = [g.to(w.dtype) for g, w in zip(g_weights, weights)]
    return g_pos, g_table.to(table.dtype) if table_grad else None, g_weights
