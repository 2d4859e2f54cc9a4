"""``fmaf`` in Triton kernels, exact on every Triton version, compiled or interpreted.

Compiled kernels lower ``tl.fma`` to the GPU's fused multiply-add (``fma.rn.f32``: one rounding). Triton's CPU
interpreter (``TRITON_INTERPRET=1``, what the test suite runs) computes it with numpy instead, and how depends on the
release: Triton 3.8 evaluates ``x * y + z`` in float32, two roundings (about 0.3 % of random
``fma(a, b, 0.5)`` differ from ``fmaf``), while 3.9 returns the fused result. The grid encodings put
``fma(scale, x, 0.5)`` on the boundary between two cells, so one rounding more moves points into other table rows.

``fma_float32(..., EMULATED=True)`` computes ``fmaf`` exactly without ``tl.fma``: the float32 product is exact in
float64, TwoSum gives the float64 sum and its rounding error, the sum is nudged to the odd float64 neighbour when it is
inexact (round-to-odd), and the final float64 -> float32 rounding is then the correctly rounded float32 result
(Boldo and Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms using rounding to odd", 2008:
53 >= 2 * 24 + 2 bits). :func:`fma_emulated` says which variant a kernel must compile: the emulation only under an
interpreter whose ``tl.fma`` a probe (:func:`interpreter_fma_is_exact`) finds inexact; ``tl.fma`` everywhere else.

This module imports ``triton``: import it only from Triton backends (which are loaded lazily).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import triton
import triton.language as tl

__all__ = ["fma_float32", "fma_emulated", "interpreter_fma_is_exact", "is_interpreter"]

_PROBE_POINTS = 1 << 16
_PROBE_BLOCK = 1024


@triton.jit
def fma_float32(a, b, c, EMULATED: tl.constexpr):
    """``fmaf(a, b, c)`` of float32 operands: one rounding, via ``tl.fma`` or (``EMULATED``) round-to-odd float64.

    The emulation needs float32 results outside the subnormal range (true for the grid encodings' ``scale * x + 0.5``,
    whose non-zero results are at least ``2**-48``) and passes NaN and infinities through like ``fmaf``.
    """
    if EMULATED:
        product = a.to(tl.float64) * b.to(tl.float64)  # exact: 24 + 24 bits fit in 53
        addend = c.to(tl.float64)
        total = product + addend
        addend_part = total - product
        error = (product - (total - addend_part)) + (addend - addend_part)  # TwoSum: exact sum = total + error
        bits = total.to(tl.int64, bitcast=True)
        inexact_even = (error != 0.0) & ((bits & 1) == 0) & (total - total == 0.0)  # finite only
        toward_exact = tl.where((error > 0.0) == (total > 0.0), 1, -1)  # +1 grows the magnitude
        odd = tl.where(inexact_even, bits + toward_exact, bits).to(tl.float64, bitcast=True)
        return odd.to(tl.float32)
    else:
        return tl.fma(a, b, c)


@triton.jit
def _fma_probe_kernel(a_ptr, b_ptr, c_ptr, out_ptr, n, EMULATED: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    a = tl.load(a_ptr + offsets, mask=mask, other=0.0)
    b = tl.load(b_ptr + offsets, mask=mask, other=0.0)
    c = tl.load(c_ptr + offsets, mask=mask, other=0.0)
    tl.store(out_ptr + offsets, fma_float32(a, b, c, EMULATED), mask=mask)


def fma_kernel_values(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, emulated: bool) -> torch.Tensor:
    """Run ``fma_float32`` elementwise on equally shaped float32 tensors (for the probe and the tests)."""
    a, b, c = (t.contiguous().to(torch.float32) for t in (a, b, c))
    out = torch.empty_like(a)
    n = a.numel()
    if n:
        _fma_probe_kernel[(triton.cdiv(n, _PROBE_BLOCK),)](a, b, c, out, n, EMULATED=emulated, BLOCK=_PROBE_BLOCK)
    return out


def probe_operands(n: int = _PROBE_POINTS, seed: int = 0):
    """Float32 ``(a, b, c)`` on which ``a * b + c`` rounded twice often differs from ``fmaf``: c = 0.5 as in the
    grid encodings, ``a`` a level scale-like value in [1, 4096), ``b`` a coordinate in [0, 1)."""
    rng = np.random.default_rng(seed)
    a = torch.from_numpy(rng.uniform(1.0, 4096.0, n).astype(np.float32))
    b = torch.from_numpy(rng.uniform(0.0, 1.0, n).astype(np.float32))
    return a, b, torch.full((n,), 0.5)


def exact_fma_float32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Correctly rounded ``fmaf`` on the CPU for one addend ``c`` shared by all elements (the reference's
    ``grid_encoding.reference.fma_to_float32``: exact float64 product, TwoSum, midpoint correction)."""
    from ng_methods.kernels.grid_encoding.reference import fma_to_float32

    addend = float(c.flatten()[0]) if c.numel() else 0.0
    if not bool((c == addend).all()):
        raise ValueError("exact_fma_float32 supports one addend for all elements")
    return fma_to_float32(a.to(torch.float64), b.to(torch.float32), addend)


@functools.lru_cache(maxsize=1)
def is_interpreter() -> bool:
    """Whether Triton kernels run under the CPU interpreter (``TRITON_INTERPRET=1`` when they were decorated)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_fma_probe_kernel, InterpretedFunction)


@functools.lru_cache(maxsize=1)
def interpreter_fma_is_exact() -> bool:
    """Whether this Triton's interpreter evaluates ``tl.fma`` with one rounding on the probe operands."""
    a, b, c = probe_operands()
    return bool(torch.equal(fma_kernel_values(a, b, c, emulated=False), exact_fma_float32(a, b, c)))


def fma_emulated() -> bool:
    """The ``EMULATED`` constexpr for kernels launched now: emulate only under an interpreter with an inexact fma."""
    return is_interpreter() and not interpreter_fma_is_exact()
