"""Triton grid-encoding kernels against the PyTorch reference (the spec): forward, both gradients, corner rows.

Without CUDA the kernels run under Triton's CPU interpreter (``TRITON_INTERPRET=1``, set below before anything imports
the kernel module), so specs and batches are small.
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

from ng_methods.kernels.grid_encoding import (  # noqa: E402
    GridSpec,
    grid_encode,
    grid_encode_reference,
    grid_level_indices,
    hashgrid_spec,
    lowres_densegrid_spec,
    multires_densegrid_spec,
)
from ng_methods.kernels.grid_encoding import triton as grid_triton  # noqa: E402
from ng_methods.kernels.grid_encoding.triton import BLOCK, grid_encode_triton, grid_level_rows_triton  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu" and not grid_triton._is_interpreted():
    pytest.skip("no CUDA, and the kernel module was imported without TRITON_INTERPRET=1", allow_module_level=True)

# One tolerance table per table dtype, for: the encoding, d/dtable, d/dpositions (bfloat16 is checked on one spec).
# * out: float32: the same corner products summed in another order (a few ulps of O(1) values). float16: both sides
#   round a float32 sum to float16 once; sums that differ in the last float32 bits may round to neighbouring
#   float16 values, 1 ulp <= 2**-10 relative (atol covers float16 subnormals).
# * table: float32 sums of weight * dL/dout in another (atomic) order. float16: our float32 sum cast once, against
#   the float32 reference gradient (the reference's own float16 gradient accumulates in float16): half an ulp.
# * positions: float32 either way (float16 tables and cotangents are exact in float32). dL/dx sums, over levels and
#   corners, terms scale_l * dweight/dfrac * (dL/dout . table[row]) that cancel: their float32 rounding is absolute,
#   ~eps * sum_l scale_l * F * |dL/dout| |table|, so atol is per unit of F * sum_l scale_l (table in [-1, 1]).
TOL = {
    torch.float32: {
        "out": dict(rtol=1e-5, atol=1e-6),
        "table": dict(rtol=1e-5, atol=1e-5),
        "positions": dict(rtol=1e-5, atol=1e-6),  # atol x F * sum(level_scales)
    },
    torch.float16: {
        "out": dict(rtol=1e-3, atol=1e-5),
        "table": dict(rtol=1e-3, atol=1e-5),
        "positions": dict(rtol=1e-5, atol=1e-6),  # atol x F * sum(level_scales)
    },
    torch.bfloat16: {  # as float16, with bfloat16's 2**-7 relative ulp
        "out": dict(rtol=8e-3, atol=1e-5),
        "table": dict(rtol=8e-3, atol=1e-5),
        "positions": dict(rtol=1e-5, atol=1e-6),  # atol x F * sum(level_scales)
    },
}

# Small variants of the NGPC configurations (scales 4, 9, 19, 39: levels 0, 1 dense, 1000 rows not a power of
# two; levels 2, 3 hashed, level 3 after a partial dense stride loop).
HASH_3D = GridSpec(n_levels=4, n_features_per_level=2, log2_hashmap_size=10, base_resolution=5, per_level_scale=2.0)
# Multi-resolution dense grid with a fractional growth factor: 216, 736, 2744 rows.
DENSE_3D = GridSpec(n_levels=3, base_resolution=6, per_level_scale=1.5, grid_type="dense")
# Single-level dense grid with F=4 (scale 16).
LOWRES_3D = GridSpec(n_levels=1, n_features_per_level=4, base_resolution=17, per_level_scale=1.0, grid_type="dense")
# 2D hash grid: level 0 dense with res**2 == T, levels 1, 2 hashed.
HASH_2D = GridSpec(n_levels=3, log2_hashmap_size=8, base_resolution=16, per_level_scale=1.5, n_dims=2)
# Remaining feature widths: F=1 (2D hash), F=8 (1D: two dense levels, one hashed).
HASH_2D_F1 = GridSpec(
    n_levels=2, n_features_per_level=1, log2_hashmap_size=6, base_resolution=5, per_level_scale=2.0, n_dims=2
)
HASH_1D_F8 = GridSpec(
    n_levels=3, n_features_per_level=8, log2_hashmap_size=4, base_resolution=5, per_level_scale=2.0, n_dims=1
)
# Index-only specs (tables too big to allocate): uint32 stride overflow in tcnn's dense loop.
DENSE_2048 = GridSpec(n_levels=1, base_resolution=2048, per_level_scale=1.0, grid_type="dense")
STRIDE_WRAP = GridSpec(n_levels=1, log2_hashmap_size=19, base_resolution=65536, per_level_scale=1.0)

SPECS = {  # spec, batch size (never a multiple of BLOCK)
    "hash3d": (HASH_3D, 300),
    "dense3d": (DENSE_3D, 200),
    "lowres3d": (LOWRES_3D, 129),
    "hash2d": (HASH_2D, 257),
    "hash2d-f1": (HASH_2D_F1, 37),
    "hash1d-f8": (HASH_1D_F8, 150),
}


def random_table(spec: GridSpec, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    table = torch.rand(spec.n_params, spec.n_features_per_level, generator=generator) * 2 - 1
    return table.to(dtype).to(DEVICE)


def boundary_coordinates(spec: GridSpec, n: int, seed: int) -> np.ndarray:
    """float32 ``x = (m - 1/2) / scale`` and its float32 neighbours: ``fmaf(scale, x, 0.5)`` on or next to integers."""
    rng = np.random.default_rng(seed)
    scales = np.float32(spec.level_scales())[rng.integers(0, spec.n_levels, n)]
    vertex = rng.integers(-2, np.ceil(scales) + 3)
    x = ((vertex - 0.5) / scales).astype(np.float32)
    return np.nextafter(x, x + rng.integers(-1, 2, n).astype(np.float32))  # -1 ulp, same, +1 ulp


def on_boundary(x: float, scale: float) -> bool:
    """Whether float32 ``fmaf(scale, x, 0.5)`` (the exact value rounded once, to nearest even) is an integer."""
    exact = Fraction(scale) * Fraction(x) + Fraction(1, 2)
    guess = np.float32(float(exact))
    candidates = (guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf)))
    rounded = min(candidates, key=lambda c: (abs(Fraction(float(c)) - exact), int(c.view(np.uint32)) & 1))
    return float(rounded).is_integer()


def sample_points(spec: GridSpec, n: int, seed: int = 0) -> torch.Tensor:
    """Half random in [-0.5, 1.5]^d (outside the unit cube too), a quarter on/next to cell boundaries, and specials."""
    generator = torch.Generator().manual_seed(seed)
    special = torch.tensor([0.0, 1.0, -0.0, 1e-3 - 1.0, 7.25, -1e4])
    n_special, n_boundary = len(special), n // 4
    n_random = n - n_special - n_boundary
    random = torch.rand(n_random, spec.n_dims, generator=generator) * 2 - 0.5
    boundary = torch.from_numpy(boundary_coordinates(spec, n_boundary * spec.n_dims, seed).reshape(-1, spec.n_dims))
    points = torch.cat([random, boundary, special[:, None].expand(-1, spec.n_dims)])
    assert points.shape == (n, spec.n_dims) and points.dtype == torch.float32
    return points.to(DEVICE)


def encode_and_grads(encode, positions, table, cotangent):
    positions = positions.detach().clone().requires_grad_()
    table = table.detach().clone().requires_grad_()
    out = encode(positions, table)
    grad_positions, grad_table = torch.autograd.grad(out, (positions, table), cotangent)
    return out.detach(), grad_table, grad_positions


def assert_matches_reference(spec: GridSpec, positions: torch.Tensor, table: torch.Tensor, seed: int = 0) -> None:
    dtype, tol = table.dtype, TOL[table.dtype]
    generator = torch.Generator().manual_seed(seed + 1)
    cotangent = torch.randn(len(positions), spec.n_output_dims, generator=generator).to(dtype).to(DEVICE)
    out, grad_table, grad_positions = encode_and_grads(
        lambda p, t: grid_encode_triton(p, t, spec), positions, table, cotangent
    )
    assert out.dtype == dtype and out.shape == (len(positions), spec.n_output_dims)
    assert grad_table.dtype == dtype and grad_positions.dtype == torch.float32
    expected = grid_encode_reference(positions, table, spec)
    torch.testing.assert_close(out, expected, **tol["out"])
    # Gradients of the float32-interpolated function, from the reference on the float32 copy of the table.
    _, expected_table, expected_positions = encode_and_grads(
        lambda p, t: grid_encode_reference(p, t, spec), positions, table.float(), cotangent.float()
    )
    torch.testing.assert_close(grad_table, expected_table.to(dtype), **tol["table"])
    torch.testing.assert_close(grad_positions, expected_positions, **positions_tolerance(spec, dtype))


def positions_tolerance(spec: GridSpec, dtype: torch.dtype) -> dict:
    tol = TOL[dtype]["positions"]
    return dict(rtol=tol["rtol"], atol=tol["atol"] * spec.n_features_per_level * sum(spec.level_scales()))


# ------------------------------------------------------------------------------------------ forward and backward


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("name", list(SPECS))
def test_forward_and_backward_match_reference(name, dtype):
    spec, n = SPECS[name]
    assert n % BLOCK != 0
    positions = sample_points(spec, n, seed=len(name))
    table = random_table(spec, dtype, seed=len(name))
    # The boundary quarter does put coordinates exactly on cell boundaries (frac == 0) at some level.
    scales = spec.level_scales()
    coords = positions.flatten().tolist()
    assert sum(on_boundary(x, s) for x in coords for s in scales) >= 5
    assert_matches_reference(spec, positions, table, seed=len(name))


def test_bfloat16_table_matches_reference():
    spec, n = SPECS["hash2d"]
    positions, table = sample_points(spec, n, seed=11), random_table(spec, torch.bfloat16, seed=11)
    assert_matches_reference(spec, positions, table, seed=11)


@pytest.mark.parametrize(
    "make_spec", [hashgrid_spec, multires_densegrid_spec, lowres_densegrid_spec], ids=["hash", "dense", "lowres"]
)
def test_ngpc_presets_match_reference(make_spec):
    spec = make_spec()
    positions = sample_points(spec, 61, seed=3)
    assert_matches_reference(spec, positions, random_table(spec, torch.float32, seed=3), seed=3)


def test_empty_batch():
    spec = HASH_3D
    positions = torch.zeros(0, 3, device=DEVICE, requires_grad=True)
    table = random_table(spec, torch.float32).requires_grad_()
    out = grid_encode_triton(positions, table, spec)
    assert out.shape == (0, spec.n_output_dims)
    grad_positions, grad_table = torch.autograd.grad(out.sum(), (positions, table))
    assert grad_positions.shape == (0, 3) and grad_table.shape == table.shape and not grad_table.any()
    assert grid_level_rows_triton(positions.detach(), spec).shape == (0, spec.n_levels, 8)


def test_single_input_gradients_match_joint_backward():
    """``ctx.needs_input_grad`` compiles out the other gradient; each alone equals the joint one."""
    spec, n = HASH_2D, 70
    positions, table = sample_points(spec, n, seed=5), random_table(spec, torch.float32, seed=5)
    cotangent = torch.randn(n, spec.n_output_dims, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    _, joint_table, joint_positions = encode_and_grads(
        lambda p, t: grid_encode_triton(p, t, spec), positions, table, cotangent
    )
    only_table = table.clone().requires_grad_()
    (grad_table,) = torch.autograd.grad(grid_encode_triton(positions, only_table, spec), only_table, cotangent)
    only_positions = positions.clone().requires_grad_()
    (grad_positions,) = torch.autograd.grad(grid_encode_triton(only_positions, table, spec), only_positions, cotangent)
    torch.testing.assert_close(grad_table, joint_table, **TOL[torch.float32]["table"])
    torch.testing.assert_close(grad_positions, joint_positions, **positions_tolerance(spec, torch.float32))


def test_third_derivative_is_refused():
    """Twice differentiable (see test_grid_encoding_double_backward.py); create_graph=True through the double
    backward raises instead of returning constants."""
    spec = HASH_2D_F1
    positions = sample_points(spec, 9).requires_grad_()
    table = random_table(spec, torch.float32).requires_grad_()
    encoded = grid_encode_triton(positions, table, spec)
    (grad_positions,) = torch.autograd.grad(encoded.sum(), positions, create_graph=True)
    assert grad_positions.requires_grad
    (grad_table,) = torch.autograd.grad(grad_positions.square().sum(), table, retain_graph=True)
    assert grad_table.abs().sum() > 0
    with pytest.raises(RuntimeError, match="third derivative.*backend='torch'"):
        torch.autograd.grad(grad_positions.square().sum(), table, create_graph=True)


# ----------------------------------------------------------------------------------------------- corner rows


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's inf - inf
@pytest.mark.parametrize(
    "spec",
    [HASH_3D, DENSE_3D, LOWRES_3D, HASH_2D, HASH_2D_F1, HASH_1D_F8, DENSE_2048, STRIDE_WRAP],
    ids=["hash3d", "dense3d", "lowres3d", "hash2d", "hash2d-f1", "hash1d-f8", "dense2048", "stride-wrap"],
)
def test_kernel_rows_match_grid_level_indices(spec):
    """The rows the kernels read (index-only twin built from the same helpers) are the reference's, level by level."""
    extreme = torch.tensor([1e9, -1e9, float("inf"), float("-inf"), float("nan"), 3e38])  # (int) saturates, NaN -> 0
    positions = torch.cat([sample_points(spec, 131, seed=7).cpu(), extreme[:, None].expand(-1, spec.n_dims)]).to(DEVICE)
    rows = grid_level_rows_triton(positions, spec)
    assert rows.shape == (len(positions), spec.n_levels, 1 << spec.n_dims) and rows.dtype == torch.int64
    for level, offset in enumerate(spec.level_offsets()[:-1]):
        torch.testing.assert_close(rows[:, level] - offset, grid_level_indices(positions, spec, level), rtol=0, atol=0)


def test_level_constants_follow_tcnn_2_indexing():
    scales, rows = grid_triton.level_constants(HASH_3D)
    assert scales == [4.0, 9.0, 19.0, 39.0]
    assert rows == [
        [128, 0, 0, 1, 5, 25],
        [1000, 128, 0, 1, 10, 100],
        [1024, 1128, 1, 1, 2654435761, 805459861],
        [1024, 2152, 1, 1, 2654435761, 805459861],
    ]
    # tcnn 1.x wrapped its uint32 stride (65536**2 -> 0) and dropped z; tcnn 2.x hashes levels past MAX_BASES.
    assert grid_triton.level_constants(STRIDE_WRAP)[1] == [[2**19, 0, 1, 1, 2654435761, 805459861]]


# ------------------------------------------------------------------------------------------ dispatch and inputs


def test_dispatch_fallbacks_and_validation():
    spec = HASH_2D
    positions, table = sample_points(spec, 20, seed=9), random_table(spec, torch.float32, seed=9)
    expected = grid_encode_triton(positions, table, spec)
    torch.testing.assert_close(grid_encode(positions, table, spec, backend="triton"), expected, rtol=0, atol=0)
    # Non-contiguous positions.
    strided = positions.t().contiguous().t()
    assert not strided.is_contiguous()
    torch.testing.assert_close(grid_encode_triton(strided, table, spec), expected, rtol=0, atol=0)
    # float64 is served by the reference, float16 positions are read as float32.
    torch.testing.assert_close(
        grid_encode_triton(positions.double(), table, spec), grid_encode_reference(positions.double(), table, spec),
        rtol=0, atol=0,
    )
    half = positions.half()
    torch.testing.assert_close(grid_encode_triton(half, table, spec), grid_encode_triton(half.float(), table, spec))
    with pytest.raises(ValueError, match="n_features_per_level"):
        three = GridSpec(n_levels=1, n_features_per_level=3, base_resolution=4, n_dims=2, grid_type="dense")
        grid_encode_triton(positions, random_table(three, torch.float32), three)
    with pytest.raises(ValueError, match="positions"):
        grid_encode_triton(positions[:, :1], table, spec)
