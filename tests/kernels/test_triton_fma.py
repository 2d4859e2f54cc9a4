"""``fmaf`` inside Triton kernels: the exact emulation against correctly rounded rational arithmetic, on every Triton.

Triton 3.8's interpreter rounds ``tl.fma`` twice (``x * y + z`` in float32); 3.9's rounds once. The grid encodings
must read the same table rows on both, so their kernels take ``fma_emulated()``: the emulation wherever the
interpreter's ``tl.fma`` is inexact. These tests check the emulation itself on every version.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from ng_methods.kernels import triton_fma  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu" and not triton_fma.is_interpreter():
    pytest.skip("no CUDA, and the kernel module was imported without TRITON_INTERPRET=1", allow_module_level=True)


def fractions_fma(a: float, b: float, c: float) -> float:
    """fmaf by exact rational arithmetic, rounded once to the nearest float32 (ties to even)."""
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    guess = np.float32(float(exact))
    candidates = [guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf))]
    return float(min(candidates, key=lambda v: (abs(Fraction(float(v)) - exact), int(v.view(np.uint32)) & 1)))


def kernel_fma(a, b, c, emulated: bool) -> torch.Tensor:
    to = dict(dtype=torch.float32, device=DEVICE)
    a, b, c = (torch.as_tensor(v, **to) for v in (a, b, c))
    return triton_fma.fma_kernel_values(a, b, c, emulated=emulated).cpu()


def test_emulation_equals_exact_rounding_on_the_probe_operands():
    a, b, c = triton_fma.probe_operands(4096, seed=1)
    got = kernel_fma(a, b, c, emulated=True)
    expected = [fractions_fma(x, y, z) for x, y, z in zip(a.tolist(), b.tolist(), c.tolist())]
    assert got.tolist() == expected


def test_emulation_handles_general_addends_and_special_values():
    rng = np.random.default_rng(3)
    a = np.concatenate([rng.normal(0, 100, 2000), [1 + 2**-12, -(1 + 2**-12), 3.0, 0.0]]).astype(np.float32)
    b = np.concatenate([rng.normal(0, 1, 2000), [1 + 2**-12, 1 + 2**-12, 1 / 3, 5.0]]).astype(np.float32)
    c = np.concatenate([rng.normal(0, 10, 2000), [-1.0, 1.0, -1.0, -0.0]]).astype(np.float32)
    got = kernel_fma(a, b, c, emulated=True).tolist()
    assert got == [fractions_fma(x, y, z) for x, y, z in zip(a.tolist(), b.tolist(), c.tolist())]
    special = kernel_fma([np.nan, np.inf, 2.0, 1e30], [1.0, 2.0, np.inf, 1e30], [0.5, 0.5, -np.inf, 0.5], True)
    assert np.isnan(special[0]) and special[1] == np.inf and np.isnan(special[2]) and special[3] == np.inf


def test_kernels_choose_an_exact_fma():
    # Whatever this Triton's interpreter does, the variant the kernels compile is exact on the probe.
    a, b, c = triton_fma.probe_operands()
    chosen = kernel_fma(a, b, c, emulated=triton_fma.fma_emulated())
    assert torch.equal(chosen, triton_fma.exact_fma_float32(a, b, c))
    if DEVICE.type == "cpu":
        assert triton_fma.fma_emulated() == (not triton_fma.interpreter_fma_is_exact())
    else:
        assert not triton_fma.fma_emulated()  # compiled kernels use the hardware fma
