"""Grid-encoding reference: hand-computed blends, tcnn's indexing replayed with Python ints, layout, dtypes,
gradients (incl. double backward), presets, the ``GridEncoding`` module and (on a GPU with tinycudann) tcnn itself."""

from __future__ import annotations

import importlib.util
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from ng_methods.encodings import GridEncoding
from ng_methods.kernels.grid_encoding import (
    HASH_PRIMES,
    GridSpec,
    grid_encode,
    grid_encode_reference,
    grid_level_indices,
    hashgrid_spec,
    lowres_densegrid_spec,
    multires_densegrid_spec,
    resolve_backend,
)
from ng_methods.kernels.grid_encoding import reference as reference_module
from ng_methods.kernels.grid_encoding.reference import _fma_half_to_float32, fma_to_float32

TOL = {
    torch.float16: dict(rtol=1e-3, atol=1e-5),  # one fp16 rounding of the output (half an ulp = 4.9e-4)
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-12, atol=1e-12),
}
UINT32 = 0xFFFFFFFF
TCNN_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)  # common_device.h
TCNN_MAX_BASES = (0x0, 0xFFFFFFFF, 0xFFFF, 0x659, 0xFF, 0x54, 0x28, 0x17, 0xF, 0xB, 0x9)  # common_device.h, 2.x

# Level 0 is dense with res**d == T exactly; levels 1, 2 have res**d > T and are hashed.
BOUNDARY_2D = GridSpec(n_levels=3, log2_hashmap_size=8, base_resolution=16, per_level_scale=1.5, n_dims=2)
BOUNDARY_3D = GridSpec(n_levels=3, log2_hashmap_size=12, base_resolution=16, per_level_scale=1.5)
# Dense levels of 6**3 = 216 and 9**3 = 729 -> 736 rows: not powers of two, so `% T` sees the uint32 wraparound.
DENSE_3D = GridSpec(n_levels=2, base_resolution=6, per_level_scale=1.5, grid_type="dense")
# Index-only specs (tables too big to allocate): resolutions past tcnn 2.x's MAX_BASES[3] = 1625 (a dense grid then
# reads index 0; a hash grid hashes) and a huge level whose 1.x stride loop wrapped uint32.
DENSE_2048 = GridSpec(n_levels=1, base_resolution=2048, per_level_scale=1.0, grid_type="dense")
STRIDE_WRAP = GridSpec(n_levels=1, log2_hashmap_size=19, base_resolution=65536, per_level_scale=1.0)
# Tiny specs for gradcheck: one dense and one hashed level each.
TINY_2D = GridSpec(n_levels=2, log2_hashmap_size=4, base_resolution=3, per_level_scale=1.5, n_dims=2)
TINY_3D = GridSpec(n_levels=2, log2_hashmap_size=5, base_resolution=2, per_level_scale=2.0)


# ------------------------------------------------------------------------------- tcnn's kernel_grid in Python ints


def round_to_float32(value: Fraction) -> float:
    """Correctly rounded (nearest, ties to even) float32 of an exact rational."""
    guess = np.float32(float(value))
    candidates = [guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf))]
    # Nearest first, then the even significand.
    return float(min(candidates, key=lambda c: (abs(Fraction(float(c)) - value), int(c.view(np.uint32)) & 1)))


def tcnn_cells(point: list[float], scale: float) -> tuple[list[int], list[float]]:
    """``pos_fract``: fmaf(scale, x, 0.5), the uint32 cell ((int) saturates like CUDA's cvt) and the fraction."""
    cells, fracs = [], []
    for coord in point:
        pos = round_to_float32(Fraction(scale) * Fraction(coord) + Fraction(1, 2))
        floor = math.floor(pos)
        cells.append(min(max(floor, -(2**31)), 2**31 - 1) & UINT32)
        fracs.append(pos - floor)
    return cells, fracs


def tcnn_grid_index(local: list[int], spec: GridSpec, level: int) -> int:
    """tiny-cuda-nn 2.x ``grid_index`` (common_device.h @6ee3546, since f46b652) with uint32 wraparound: dense
    row-major over every dim while ``resolution <= MAX_BASES[d]``, else ``stride = 0xFFFFFFFF``; hashed when
    ``T < stride``."""
    resolution, table_size = spec.level_resolutions()[level], spec.level_sizes()[level]
    stride, index = 1, 0
    if resolution <= TCNN_MAX_BASES[spec.n_dims]:
        for dim in range(spec.n_dims):
            index = (index + local[dim] * stride) & UINT32
            stride = (stride * resolution) & UINT32
    else:
        stride = UINT32
    if spec.grid_type == "hash" and table_size < stride:
        index = 0
        for dim in range(spec.n_dims):
            index ^= (local[dim] * TCNN_PRIMES[dim]) & UINT32
    return index % table_size


def tcnn_level_rows(point: list[float], spec: GridSpec, level: int) -> tuple[list[int], list[float]]:
    """Rows and weights of the ``2**d`` corners, in tcnn's corner order (bit ``dim`` of the corner id)."""
    cells, fracs = tcnn_cells(point, spec.level_scales()[level])
    rows, weights = [], []
    for corner in range(1 << spec.n_dims):
        bits = [(corner >> dim) & 1 for dim in range(spec.n_dims)]
        rows.append(tcnn_grid_index([(c + b) & UINT32 for c, b in zip(cells, bits)], spec, level))
        weights.append(math.prod(f if b else 1 - f for f, b in zip(fracs, bits)))
    return rows, weights


def spec_id(spec: GridSpec) -> str:
    return f"{spec.grid_type}{spec.n_dims}d-res{spec.base_resolution}"


def random_points(n: int, n_dims: int, low: float = -1.5, high: float = 2.5, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, n_dims, generator=generator) * (high - low) + low


def random_table(spec: GridSpec, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    table = torch.rand(spec.n_params, spec.n_features_per_level, generator=generator, dtype=torch.float64)
    return (table * 2 - 1).to(dtype)


# ----------------------------------------------------------------------------------------------- hand computed


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bilinear_blend_by_hand(dtype):
    spec = GridSpec(n_levels=1, base_resolution=4, per_level_scale=1.0, n_dims=2, grid_type="dense")
    assert spec.level_scales() == [3.0] and spec.level_resolutions() == [4] and spec.level_sizes() == [16]
    rows = torch.arange(16, dtype=torch.float64)
    table = torch.stack([rows, 100 + rows * rows], dim=1).to(dtype)  # vertex (i, j) is row i + 4 j
    encoded = grid_encode_reference(torch.tensor([[0.3, 0.6]], dtype=dtype), table, spec)
    # pos = 3 * x + 0.5 = (1.4, 2.3): cell (1, 2), frac (0.4, 0.3).
    t = table.double()
    expected = 0.6 * 0.7 * t[1 + 4 * 2] + 0.4 * 0.7 * t[2 + 4 * 2] + 0.6 * 0.3 * t[1 + 4 * 3] + 0.4 * 0.3 * t[2 + 4 * 3]
    torch.testing.assert_close(encoded, expected[None].to(dtype), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_trilinear_blend_by_hand_with_dense_wraparound(dtype):
    spec = GridSpec(n_levels=1, n_features_per_level=1, base_resolution=3, per_level_scale=1.0, grid_type="dense")
    assert spec.level_resolutions() == [3] and spec.level_sizes() == [32]  # 27 vertices padded to 32 rows
    table = (torch.arange(32, dtype=torch.float64) ** 1.5)[:, None].to(dtype)
    encoded = grid_encode_reference(torch.tensor([[0.1, 0.5, 0.8]], dtype=dtype), table, spec)
    # pos = 2 * x + 0.5 = (0.7, 1.5, 2.1): cell (0, 1, 2), frac (0.7, 0.5, 0.1). The +0.5 pushes z past the last
    # vertex (2): corner z = 3 has dense index i + 3 j + 27, which wraps modulo the 32-row table.
    expected = 0.0
    for i, wi in ((0, 0.3), (1, 0.7)):
        for j, wj in ((1, 0.5), (2, 0.5)):
            for k, wk in ((2, 0.9), (3, 0.1)):
                expected += wi * wj * wk * table[(i + 3 * j + 9 * k) % 32, 0].double()
    torch.testing.assert_close(encoded, torch.tensor([[expected]], dtype=dtype), **TOL[dtype])


# ------------------------------------------------------------------------------------------ indexing vs tcnn


def test_boundary_specs_are_dense_then_hashed():
    for spec, table_size in ((BOUNDARY_2D, 2**8), (BOUNDARY_3D, 2**12)):
        resolutions = spec.level_resolutions()
        assert resolutions[0] ** spec.n_dims == table_size and resolutions[1] ** spec.n_dims > table_size
        assert spec.level_sizes() == [table_size] * 3
        assert spec.level_is_hashed() == [False, True, True]
        assert [spec.level_indexing(level).hashed for level in range(3)] == [False, True, True]


@pytest.mark.parametrize("spec", [BOUNDARY_2D, BOUNDARY_3D, DENSE_3D, DENSE_2048, STRIDE_WRAP], ids=spec_id)
def test_corner_rows_match_python_int_grid_index(spec):
    assert HASH_PRIMES == TCNN_PRIMES
    points = torch.cat([
        random_points(150, spec.n_dims),
        torch.tensor([[0.0] * spec.n_dims, [1.0] * spec.n_dims, [-1e-3] * spec.n_dims, [1 + 1e-3] * spec.n_dims]),
        torch.tensor([[-7.3] * spec.n_dims, [1e9] * spec.n_dims, [-1e9] * spec.n_dims]),  # (int) saturates
    ])
    for level in range(spec.n_levels):
        rows = grid_level_indices(points, spec, level)
        assert rows.shape == (len(points), 1 << spec.n_dims)
        expected = [tcnn_level_rows(point, spec, level)[0] for point in points.tolist()]
        assert rows.tolist() == expected


@pytest.mark.parametrize("spec", [BOUNDARY_2D, BOUNDARY_3D, DENSE_3D, DENSE_2048, STRIDE_WRAP], ids=spec_id)
def test_corner_rows_of_in_range_points_match_python_int_grid_index(spec):
    # Batches inside [0, 1]^d index dense levels without uint32 wraparound: the reference skips its emulation there.
    points = torch.cat([random_points(150, spec.n_dims, low=0.0, high=1.0, seed=4), torch.eye(spec.n_dims)])
    for level in range(spec.n_levels):
        expected = [tcnn_level_rows(point, spec, level)[0] for point in points.tolist()]
        assert grid_level_indices(points, spec, level).tolist() == expected


def test_cells_saturate_at_the_int32_bounds():
    # scale 1: pos = fmaf(1, x, 0.5) rounds to exactly +-2**31 for x = +-2**31; (int) saturates +2**31 to 2**31 - 1.
    spec = GridSpec(n_levels=1, base_resolution=2, per_level_scale=1.0, n_dims=2, grid_type="dense")
    assert spec.level_scales() == [1.0]
    points = torch.tensor([[2.0**31, -(2.0**31)], [2.0**31 - 128, 0.25], [0.25, 0.75]])
    for subset in (points[:1], points[1:], points):  # alone, the in-range points take the fast path
        expected = [tcnn_level_rows(point, spec, 0)[0] for point in subset.tolist()]
        assert grid_level_indices(subset, spec, 0).tolist() == expected


def test_huge_levels_are_hashed_as_in_tcnn_2():
    # tcnn 1.x wrapped its uint32 stride (65536**2 -> 0) and indexed such a level densely with z dropped; tcnn 2.x
    # (f46b652) hashes every level past MAX_BASES[d]. Spec, reference and the old-bug repro all agree on 2.x.
    assert STRIDE_WRAP.level_is_hashed() == [True]
    assert STRIDE_WRAP.level_indexing(0).factors == HASH_PRIMES[:3]
    wide = GridSpec(n_levels=1, n_features_per_level=1, log2_hashmap_size=22, base_resolution=2048, per_level_scale=1.0)
    assert wide.level_is_hashed() == [True]
    rows = grid_level_indices(torch.tensor([[0.3, 0.6, 0.1], [0.3, 0.6, 0.9]]), wide, 0)
    assert not set(rows[0].tolist()) & set(rows[1].tolist())  # 1.x read the same rows for both (z dropped)
    assert hashgrid_spec(1.0, 22).level_is_hashed()[15] and hashgrid_spec(1.0, 22).level_resolutions()[15] == 2048
    assert DENSE_2048.level_indexing(0).factors == (0, 0, 0)  # tcnn 2.x: a dense grid past MAX_BASES reads row 0


@pytest.mark.parametrize("spec", [hashgrid_spec(), hashgrid_spec(4.0), multires_densegrid_spec(), BOUNDARY_3D])
def test_shipped_presets_index_alike_in_tcnn_1_and_2(spec):
    # Checkpoints of the shipped presets keep their meaning: tcnn 1.x's stride loop never wraps for them.
    for level in range(spec.n_levels):
        resolution, table_size = spec.level_resolutions()[level], spec.level_sizes()[level]
        stride, dims = 1, 0
        while dims < spec.n_dims and stride <= table_size:
            stride, dims = stride * resolution, dims + 1
        hashed_1x = spec.grid_type == "hash" and table_size < stride
        assert stride < 2**32 and hashed_1x == spec.level_indexing(level).hashed
        assert hashed_1x or dims == spec.n_dims


@pytest.mark.parametrize("spec", [BOUNDARY_2D, BOUNDARY_3D, DENSE_3D], ids=spec_id)
def test_forward_matches_python_kernel_grid(spec):
    points = random_points(40, spec.n_dims, seed=1)
    table = random_table(spec, seed=1)
    encoded = grid_encode_reference(points, table, spec)
    expected = torch.zeros(len(points), spec.n_levels, spec.n_features_per_level, dtype=torch.float64)
    for p, point in enumerate(points.tolist()):
        for level in range(spec.n_levels):
            rows, weights = tcnn_level_rows(point, spec, level)
            for row, weight in zip(rows, weights):
                expected[p, level] += weight * table[spec.level_offsets()[level] + row].double()
    expected = expected.reshape(len(points), spec.n_output_dims)  # level-major
    torch.testing.assert_close(encoded, expected.float(), **TOL[torch.float32])


def test_fma_is_rounded_once():
    # Rounding scale*x + 0.5 to float64 and then float32 gives 0.5 here; a single rounding (CUDA fmaf) does not.
    scale, x = 594.551513671875, -2.5062859773661295e-11
    assert np.float32(scale * x + 0.5) == 0.5
    exact = round_to_float32(Fraction(scale) * Fraction(x) + Fraction(1, 2))
    assert exact != 0.5 and fma_to_float32(scale, torch.tensor([x]), 0.5).item() == exact
    # Near-midpoint sums drawn at random: all equal to the correctly rounded result.
    generator = np.random.default_rng(0)
    scales = generator.uniform(15, 2048, 300).astype(np.float32)
    offsets = (generator.integers(-64, 64, 300) + 0.5) * 2.0**-25
    xs = (offsets / scales).astype(np.float32)
    ours = fma_to_float32(torch.tensor(scales, dtype=torch.float64)[:, None], torch.tensor(xs)[:, None], 0.5)
    expected = [round_to_float32(Fraction(float(s)) * Fraction(float(x)) + Fraction(1, 2)) for s, x in zip(scales, xs)]
    assert ours[:, 0].tolist() == expected


def test_fma_fast_path_matches_exact_emulation():
    # The forward rounds scale*x + 0.5 to float64 and then float32, and emulates fmaf only on float32 midpoints.
    generator = np.random.default_rng(1)
    scales = [float(s) for s in generator.uniform(15, 2048, 20).astype(np.float32)] + [127.0, 15.0, 1.5, 0.0]
    for scale in scales:
        near_midpoints = (generator.integers(-64, 64, 200) + 0.5) * 2.0**-25 / max(scale, 1.0)
        xs = torch.cat([
            torch.from_numpy(generator.uniform(-2, 3, 500)).float(),
            torch.arange(-1024, 2048) / 1024,  # exact ties when scale is an integer
            torch.from_numpy(near_midpoints).float(),
            torch.tensor([0.0, -0.0, 1e-45, -1e-45, 1e-30, 1e30, -1e30, 3e38, -3e38, float("nan")]),
        ])
        ours = _fma_half_to_float32(xs.double(), scale)
        torch.testing.assert_close(ours, fma_to_float32(scale, xs, 0.5), rtol=0, atol=0, equal_nan=True)


# ------------------------------------------------------------------------------------------ layout and dtypes


def test_output_is_level_major():
    spec = BOUNDARY_3D
    offsets, features = spec.level_offsets(), spec.n_features_per_level
    table = torch.empty(spec.n_params, features)
    for level in range(spec.n_levels):  # constant per level and feature: every blend returns it
        table[offsets[level] : offsets[level + 1]] = torch.tensor([10.0 * level + f for f in range(features)])
    encoded = grid_encode_reference(random_points(64, 3), table, spec)
    expected = torch.tensor([10.0 * level + f for level in range(spec.n_levels) for f in range(features)])
    torch.testing.assert_close(encoded, expected.expand_as(encoded), **TOL[torch.float32])


def test_fp16_table_matches_fp32_within_fp16_rounding():
    spec = BOUNDARY_3D
    table16 = random_table(spec, torch.float16)
    points = random_points(256, 3, low=0.0, high=1.0)
    encoded16 = grid_encode_reference(points, table16, spec)
    assert encoded16.dtype == torch.float16
    encoded32 = grid_encode_reference(points, table16.float(), spec)
    torch.testing.assert_close(encoded16.float(), encoded32, **TOL[torch.float16])
    encoded_half_points = grid_encode_reference(points.half(), table16, spec)  # read as float32, like tcnn
    expected = grid_encode_reference(points.half().float(), table16, spec)
    torch.testing.assert_close(encoded_half_points, expected, rtol=0, atol=0)


def test_empty_batch_and_batch_dims():
    spec = BOUNDARY_3D
    table = random_table(spec).requires_grad_()
    empty = grid_encode_reference(torch.zeros(0, 3, requires_grad=True), table, spec)
    assert empty.shape == (0, spec.n_output_dims)
    empty.sum().backward()
    assert table.grad is not None and table.grad.abs().sum() == 0

    encoding = GridEncoding(spec, backend="torch")
    points = random_points(20, 3, low=0.0, high=1.0).reshape(4, 5, 3)
    encoded = encoding(points)
    assert encoded.shape == (4, 5, spec.n_output_dims)
    expected = grid_encode_reference(points.reshape(20, 3), encoding.table, spec)
    torch.testing.assert_close(encoded.reshape(20, -1), expected, rtol=0, atol=0)
    assert encoding(torch.zeros(0, 7, 3)).shape == (0, 7, spec.n_output_dims)


# ------------------------------------------------------------------------------------------------- gradients


def points_off_cell_boundaries(spec: GridSpec, n: int, margin: float = 1e-3, seed: int = 0) -> torch.Tensor:
    """float64 points whose fraction stays ``margin`` away from 0 and 1 at every level (the function kinks there)."""
    candidates = random_points(50 * n, spec.n_dims, low=0.0, high=1.0, seed=seed).double()
    keep = torch.ones(len(candidates), dtype=torch.bool)
    for scale in spec.level_scales():
        frac = torch.frac(candidates * scale + 0.5)
        keep &= ((frac > margin) & (frac < 1 - margin)).all(dim=1)
    assert keep.sum() >= n
    return candidates[keep][:n]


@pytest.mark.parametrize("row_wise", [False, True], ids=["column-gathers", "row-gathers"])
@pytest.mark.parametrize("spec", [TINY_2D, TINY_3D], ids=["2d", "3d"])
def test_gradcheck_and_gradgradcheck(spec, row_wise, monkeypatch):
    if row_wise:  # big levels read their table row-wise: force that path on these tiny tables
        monkeypatch.setattr(reference_module, "_ROW_WISE_BYTES", 0)
    assert [spec.level_indexing(level).hashed for level in range(2)] == [False, True]
    points = points_off_cell_boundaries(spec, 6).requires_grad_()
    table = random_table(spec, torch.float64).requires_grad_()

    def encode(p, t):
        return grid_encode_reference(p, t, spec)

    assert torch.autograd.gradcheck(encode, (points, table)) and torch.autograd.gradgradcheck(encode, (points, table))


@pytest.mark.parametrize("n_features", [2, 4])
def test_row_and_column_gathers_agree(n_features, monkeypatch):
    spec = GridSpec(n_levels=3, n_features_per_level=n_features, log2_hashmap_size=12, per_level_scale=1.5)
    points = random_points(300, 3, seed=2)
    table = random_table(spec, seed=2)
    grad_output = torch.randn(300, spec.n_output_dims, generator=torch.Generator().manual_seed(2))
    results = []
    for threshold in (reference_module._ROW_WISE_BYTES, 0):
        monkeypatch.setattr(reference_module, "_ROW_WISE_BYTES", threshold)
        p, t = points.clone().requires_grad_(), table.clone().requires_grad_()
        encoded = grid_encode_reference(p, t, spec)
        encoded.backward(grad_output)
        results.append((encoded.detach(), p.grad, t.grad))
    for column_wise, row_wise in zip(*results):
        torch.testing.assert_close(row_wise, column_wise, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------------ presets, module, dispatch


def test_preset_sizes():
    spec = hashgrid_spec(1.0)
    assert spec.level_resolutions() == [16, 23, 31, 43, 59, 81, 112, 154, 213, 295, 407, 562, 777, 1073, 1483, 2048]
    assert spec.level_is_hashed() == [False] * 5 + [True] * 11  # 59**3 <= 2**19 < 81**3
    assert spec.level_sizes()[:6] == [4096, 12168, 29792, 79512, 205384, 2**19]  # 23**3 = 12167 padded to 12168
    assert spec.n_params == 6098120 and spec.n_output_dims == 32
    dense = multires_densegrid_spec()
    assert dense.level_resolutions() == [16, 22, 29, 40, 53, 71, 96, 128]
    assert not any(dense.level_is_hashed()) and dense.n_params == 3591816 and dense.n_output_dims == 16
    lowres = lowres_densegrid_spec()
    assert lowres.level_resolutions() == [128] and lowres.n_params == 128**3 and lowres.n_output_dims == 4


def test_hashgrid_preset_forward_backward_smoke():
    spec = hashgrid_spec(1.0)
    encoding = GridEncoding(spec, backend="torch")
    points = random_points(512, 3, low=0.0, high=1.0).requires_grad_()
    encoding(points).square().sum().backward()
    assert encoding.table.grad.shape == (spec.n_params, 2) and points.grad.abs().sum() > 0


def test_grid_encoding_module_forward_backward_and_state_dict():
    torch.manual_seed(0)
    encoding = GridEncoding(BOUNDARY_3D, backend="torch")
    assert encoding.n_output_dims == 6 and list(encoding.state_dict()) == ["table"]
    assert encoding.table.shape == (BOUNDARY_3D.n_params, 2) and encoding.table.abs().max() <= 1e-4
    points = random_points(32, 3, low=0.0, high=1.0).requires_grad_()
    encoding(points).sum().backward()
    touched = (encoding.table.grad != 0).any(dim=1).sum().item()
    assert 0 < touched <= 32 * 8 * 3 and points.grad.shape == points.shape

    with torch.no_grad():
        encoding.table.uniform_(-1, 1)
    restored = GridEncoding(BOUNDARY_3D, backend="auto")
    restored.load_state_dict(encoding.state_dict())
    torch.testing.assert_close(restored(points), encoding(points), rtol=0, atol=0)


def test_backend_resolution_and_input_validation():
    assert resolve_backend("auto", "cpu") == "torch" and resolve_backend("torch", "cuda") == "torch"
    with pytest.raises(ValueError, match="positions"):
        grid_encode(torch.zeros(4, 2), random_table(BOUNDARY_3D), BOUNDARY_3D)
    with pytest.raises(ValueError, match="table"):
        grid_encode(torch.zeros(4, 3), torch.zeros(BOUNDARY_3D.n_params, 3), BOUNDARY_3D)
    with pytest.raises(ValueError):
        resolve_backend("cuda", "cpu")
    with pytest.raises(RuntimeError, match="tinycudann only runs on CUDA"):
        grid_encode(torch.zeros(1, 3), random_table(BOUNDARY_3D), BOUNDARY_3D, backend="tcnn")
    if importlib.util.find_spec("ng_methods.kernels.grid_encoding.triton") is None:
        with pytest.raises(RuntimeError, match="grid_encode_triton"):
            grid_encode(torch.zeros(1, 3), random_table(BOUNDARY_3D), BOUNDARY_3D, backend="triton")


def test_tcnn_backend_falls_back_with_one_warning():
    encoding = GridEncoding(BOUNDARY_3D, backend="tcnn")
    points = random_points(8, 3, low=0.0, high=1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = encoding(points), encoding(points)
    assert len(caught) == 1 and "PyTorch reference" in str(caught[0].message)
    expected = grid_encode_reference(points, encoding.table, BOUNDARY_3D)
    torch.testing.assert_close(torch.stack([first, second]), torch.stack([expected, expected]), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------- tiny-cuda-nn

requires_tcnn = pytest.mark.skipif(
    importlib.util.find_spec("tinycudann") is None or not torch.cuda.is_available(),
    reason="needs tinycudann and a CUDA device",
)
# per_level_scale = 2 keeps every level's float32 scale exact on both sides (tcnn's device exp2f is approximate),
# so cells agree and only float32 summation order differs.
TCNN_SPECS = [
    GridSpec(n_levels=8, log2_hashmap_size=14, base_resolution=16, per_level_scale=2.0),
    GridSpec(n_levels=6, n_features_per_level=4, base_resolution=64, per_level_scale=2.0, n_dims=2),  # 1024^2 > T
]
TCNN_TOL = dict(rtol=1e-4, atol=1e-4)  # fp32, fused vs unfused multiply-adds and atomics' summation order


@requires_tcnn
@pytest.mark.parametrize("spec", TCNN_SPECS, ids=["3d", "2d"])
def test_tcnn_matches_reference(spec):
    device = torch.device("cuda")
    points = random_points(5000, spec.n_dims, low=0.0, high=1.0, seed=3).to(device)
    table = random_table(spec, seed=3).to(device)
    grad_output = torch.randn(5000, spec.n_output_dims, generator=torch.Generator().manual_seed(5)).to(device)
    outputs, gradients = {}, {}
    for backend in ("tcnn", "torch"):
        p, t = points.clone().requires_grad_(), table.clone().requires_grad_()
        encoded = grid_encode(p, t, spec, backend=backend)
        encoded.backward(grad_output)
        outputs[backend], gradients[backend] = encoded.detach(), (p.grad, t.grad)
    torch.testing.assert_close(outputs["tcnn"], outputs["torch"], **TCNN_TOL)
    for tcnn_grad, torch_grad in zip(gradients["tcnn"], gradients["torch"]):
        scale = torch_grad.abs().max()  # d/dx grows with the finest resolution: compare relative to the largest
        torch.testing.assert_close(tcnn_grad / scale, torch_grad / scale, **TCNN_TOL)


@requires_tcnn
def test_tcnn_double_backward_and_module_checkpoint_match_reference():
    spec = TCNN_SPECS[0]
    reference, native = GridEncoding(spec, backend="torch").cuda(), GridEncoding(spec, backend="tcnn").cuda()
    with torch.no_grad():
        reference.table.uniform_(-1, 1, generator=torch.Generator("cuda").manual_seed(6))
    native.load_state_dict(reference.state_dict())
    points = random_points(2048, 3, low=0.0, high=1.0, seed=6).cuda()
    eikonal_grads = []
    for encoding in (native, reference):
        p = points.clone().requires_grad_()
        encoded = encoding(p)
        (d_dx,) = torch.autograd.grad(encoded[:, ::2].sum(), p, create_graph=True)
        d_dx.square().sum().backward()  # eikonal-like: d/dtable of |dy/dx|^2 (tcnn's bwd_bwd_input)
        eikonal_grads.append(encoding.table.grad.clone())
    scale = eikonal_grads[1].abs().max()
    torch.testing.assert_close(eikonal_grads[0] / scale, eikonal_grads[1] / scale, **TCNN_TOL)
